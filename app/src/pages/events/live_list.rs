//! The first page of the list, live: it follows the stream from where the page was read, so
//! new events appear at the top (marked for a moment) and a retry of an event on screen updates
//! its row. Pause holds what arrives behind a badge; `j`/`k` move through the rows, Enter opens
//! one, `p` pauses. At most [`WINDOW`] rows stay in memory; older ones are a page away.

use leptos::{ev, prelude::*};
use leptos_router::hooks::use_navigate;

use super::EventTable;
use crate::{
    live::follow,
    model::{
        DeliveryRole, EventFilter, EventSummary, LiveDelivery, SignatureVerdict, TypeCount,
        TypeCounts,
    },
};

/// The most rows the live list keeps.
pub const WINDOW: usize = 500;

/// A row of the list: an event, where it opens, and whether it just arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub summary: EventSummary,
    pub href: String,
    pub fresh: bool,
}

impl Row {
    /// A row of the list as the server read it.
    pub fn listed(summary: EventSummary) -> Self {
        Self {
            href: format!("/events/{}", summary.key),
            summary,
            fresh: false,
        }
    }

    /// A row for an event that just opened with `d`.
    fn arrived(d: LiveDelivery) -> Self {
        let href = match d.event_key {
            Some(key) => format!("/events/{key}"),
            // Listed a moment after its message: the server finds its event by the delivery.
            None => format!("/deliveries/{}", d.delivery_id),
        };
        let valid = i64::from(d.signature == SignatureVerdict::Valid);
        let summary = EventSummary {
            key: d.event_key.unwrap_or_default(),
            source: d.source,
            event_id: d.event_id,
            event_type: d.event_type,
            version: None,
            date_occurred: d.date_occurred,
            received_at: d.received_at.clone(),
            last_received_at: d.received_at,
            delivery_count: 1,
            signature: d.signature,
            valid_deliveries: valid,
            verdicts_differ: false,
            body_kind: d.body_kind,
            parse_error: None,
            body_differs: false,
        };
        Self {
            summary,
            href,
            fresh: true,
        }
    }

    /// Changes whenever what the row shows does, so the list redraws just that row.
    pub fn render_key(&self) -> String {
        let s = &self.summary;
        format!(
            "{}|{}|{}|{}",
            self.href, s.delivery_count, s.last_received_at, self.fresh
        )
    }

    /// True when `d` is a delivery of this row's event.
    fn holds(&self, d: &LiveDelivery) -> bool {
        d.event_id.is_some()
            && self.summary.event_id == d.event_id
            && self.summary.source == d.source
    }

    /// Counts a later delivery of this row's event.
    fn count_retry(&mut self, d: &LiveDelivery) {
        let s = &mut self.summary;
        s.delivery_count += 1;
        s.last_received_at = d.received_at.clone();
        s.body_differs |= d.body_differs;
        s.valid_deliveries += i64::from(d.signature == SignatureVerdict::Valid);
        s.verdicts_differ |= d.signature != s.signature;
        self.fresh = true;
    }
}

/// Adds `d` to `rows`: a new event at the top, a retry into its row. A delivery the page shows
/// already (a new event listed just as the page was read) changes nothing. Returns the type of
/// the new event it added, if it added one.
pub fn merge(rows: &mut Vec<Row>, d: LiveDelivery) -> Option<Option<String>> {
    match rows.iter_mut().find(|row| row.holds(&d)) {
        Some(row) if d.role == DeliveryRole::Retry => row.count_retry(&d),
        Some(_) => {}
        // A retry of an event further down the list (not on screen) leaves the window as it is.
        None if d.role == DeliveryRole::Retry && d.event_id.is_some() => {}
        None => {
            let event_type = d.event_type.clone();
            rows.insert(0, Row::arrived(d));
            rows.truncate(WINDOW);
            return Some(event_type);
        }
    }
    None
}

/// Counts a new event of `event_type` in the filter bar's counts.
fn count_new(counts: &mut TypeCounts, event_type: Option<String>) {
    counts.matching += 1;
    let Some(event_type) = event_type else {
        return;
    };
    match counts
        .types
        .binary_search_by(|t| t.event_type.cmp(&event_type))
    {
        Ok(i) => counts.types[i].count += 1,
        Err(i) => counts.types.insert(
            i,
            TypeCount {
                event_type,
                count: 1,
            },
        ),
    }
}

#[component]
pub fn LiveList(
    events: Vec<EventSummary>,
    filter: EventFilter,
    cursor: String,
    next: Option<String>,
    empty: ViewFn,
    /// The filter bar's counts, which new events add to.
    counts: RwSignal<TypeCounts>,
) -> impl IntoView {
    let rows = RwSignal::new(events.into_iter().map(Row::listed).collect::<Vec<_>>());
    let paused = RwSignal::new(false);
    let waiting = RwSignal::new(Vec::<LiveDelivery>::new());
    let selected = RwSignal::new(None::<usize>);
    let show = move |d: LiveDelivery| {
        if let Some(added) = rows.try_update(|rows| merge(rows, d)).flatten() {
            counts.update(|c| count_new(c, added));
        }
    };
    let status = follow(filter, cursor, move |d| {
        if paused.get_untracked() {
            waiting.update(|w| w.push(d));
        } else {
            show(d);
        }
    });
    let toggle_pause = move || {
        if paused.get_untracked() {
            let held = waiting.try_update(std::mem::take).unwrap_or_default();
            held.into_iter().for_each(show);
        }
        paused.update(|p| *p = !*p);
    };
    follow_keys(rows, selected, toggle_pause);
    let count = move || rows.with(Vec::len);
    view! {
        <div class="live-bar">
            <span class=move || format!("connection conn-{}", status.get().label()) role="status">
                {move || status.get().label()}
            </span>
            <button type="button" class="pause" on:click=move |_| toggle_pause()>
                {move || if paused.get() { "Resume" } else { "Pause" }}
            </button>
            <Show when=move || !waiting.with(Vec::is_empty)>
                <span class="badge waiting">{move || format!("{} waiting", waiting.with(Vec::len))}</span>
            </Show>
            <span class="match-count">{move || match count() {
                1 => "1 event".to_owned(),
                n => format!("{n} events"),
            }}</span>
        </div>
        <Show when=move || { count() > 0 } fallback=empty>
            <EventTable rows=rows next=next.clone() selected=selected/>
        </Show>
    }
}

/// `j`/`k` move the selection, Enter opens the selected row, `p` pauses, unless a form field
/// has the focus.
fn follow_keys(
    rows: RwSignal<Vec<Row>>,
    selected: RwSignal<Option<usize>>,
    toggle_pause: impl Fn() + Clone + 'static,
) {
    let navigate = use_navigate();
    let handle = window_event_listener(ev::keydown, move |event| {
        let typing = event
            .target()
            .and_then(|t| {
                leptos::wasm_bindgen::JsCast::dyn_into::<leptos::web_sys::HtmlElement>(t).ok()
            })
            .is_some_and(|el| matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"));
        if typing || event.ctrl_key() || event.meta_key() || event.alt_key() {
            return;
        }
        let last = rows.with_untracked(Vec::len).checked_sub(1);
        match event.key().as_str() {
            "j" => selected.update(|s| *s = last.map(|last| s.map_or(0, |i| (i + 1).min(last)))),
            "k" => selected.update(|s| *s = s.map(|i| i.saturating_sub(1)).or(last.map(|_| 0))),
            "p" => toggle_pause(),
            "Enter" => {
                let href = selected
                    .get_untracked()
                    .and_then(|i| rows.with_untracked(|rows| rows.get(i).map(|r| r.href.clone())));
                if let Some(href) = href {
                    navigate(&href, Default::default());
                }
            }
            _ => {}
        }
    });
    on_cleanup(move || handle.remove());
}
