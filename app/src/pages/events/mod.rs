//! `/`: the event list, newest first, 50 to a page with a link to the next. The URL's query
//! string is the filter, so a filtered page can be bookmarked and shared. The first page is
//! live once hydrated (`live_list`): new events appear at the top as they are acknowledged.

use leptos::prelude::*;
use leptos_router::{hooks::use_query_map, params::ParamsMap};

pub use self::live_list::Row;
use self::{filter_bar::FilterBar, live_list::LiveList};
use crate::{
    api::load_events,
    components::{EmptyState, SignatureBadge, short_time},
    model::{EventFilter, SignatureVerdict},
};

mod filter_bar;
mod live_list;

/// Reads the list's filter from the URL's query string.
fn filter_from_query(query: &ParamsMap) -> EventFilter {
    // An empty field of the submitted filter form filters nothing.
    let get = |key: &str| query.get(key).filter(|v| !v.is_empty());
    EventFilter {
        types: query
            .get_all("type")
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect(),
        source: get("source"),
        from: get("from"),
        to: get("to"),
        within: get("within").filter(|w| EventFilter::within_seconds(w).is_some()),
        occurred_from: get("occurredFrom"),
        occurred_to: get("occurredTo"),
        signature: get("signature")
            .as_deref()
            .and_then(SignatureVerdict::parse),
        limit: get("limit").and_then(|l| l.parse().ok()),
        cursor: get("cursor"),
    }
}

/// The URL of the page after this one, keeping the filter.
fn next_page_href(filter: &EventFilter, cursor: &str) -> String {
    let next = EventFilter {
        cursor: Some(cursor.to_owned()),
        ..filter.clone()
    };
    let query: Vec<String> = next
        .to_query_pairs()
        .into_iter()
        .map(|(k, v)| format!("{k}={}", urlencode(&v)))
        .collect();
    format!("/?{}", query.join("&"))
}

/// Percent-encodes a query string value.
pub fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[component]
pub fn EventsPage() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| filter_from_query(&query.read()));
    let events = Resource::new(move || filter.get(), load_events);
    view! {
        <h1>"Events"</h1>
        <Suspense fallback=|| view! { <p class="notice">"Loading events…"</p> }>
            {move || Suspend::new(async move {
                let events = events.await;
                let pending = events.as_ref().map_or(0, |view| view.page.pending);
                // The bar's counts follow the live list.
                let counts = RwSignal::new(events.as_ref().map(|v| v.counts.clone()).unwrap_or_default());
                let bar = events.is_ok().then(|| {
                    view! { <FilterBar filter=filter.get_untracked() counts/> }
                });
                let list = match events {
                    Err(e) => view! { <p class="error" role="alert">{format!("Could not load events: {e}")}</p> }.into_any(),
                    // The first page follows the live stream, from where the page was read.
                    Ok(view) if filter.read().cursor.is_none() => {
                        let next = view.page.next_cursor.as_ref().map(|c| next_page_href(&filter.read(), c));
                        let hooks_url = view.hooks_url.clone();
                        let empty = if view.filtered {
                            ViewFn::from(|| view! { <p class="notice">"No events match this filter."</p> })
                        } else {
                            ViewFn::from(move || view! { <EmptyState hooks_url=hooks_url.clone()/> })
                        };
                        view! {
                            <LiveList
                                events=view.page.items
                                filter=filter.get_untracked()
                                cursor=view.page.stream_cursor
                                next
                                empty
                                counts
                            />
                        }.into_any()
                    }
                    Ok(view) if view.page.items.is_empty() => {
                        view! { <p class="notice">"No events match this filter."</p> }.into_any()
                    }
                    Ok(view) => {
                        let next = view.page.next_cursor.map(|c| next_page_href(&filter.read(), &c));
                        let rows = view.page.items.into_iter().map(Row::listed).collect();
                        view! { <EventTable rows=Signal::stored(rows) next selected=Signal::stored(None)/> }.into_any()
                    }
                };
                view! { {bar} <PendingNotice pending/> {list} }
            })}
        </Suspense>
    }
}

/// Says how many acknowledged deliveries are not listed yet (only right after a long burst).
#[component]
fn PendingNotice(pending: u64) -> impl IntoView {
    (pending > 0).then(|| {
        let deliveries = if pending == 1 { "delivery" } else { "deliveries" };
        view! {
            <p class="notice pending" role="status">
                {format!("{pending} more {deliveries} received and stored, still being grouped into events: reload in a moment to see them.")}
            </p>
        }
    })
}

#[component]
fn EventTable(
    #[prop(into)] rows: Signal<Vec<Row>>,
    next: Option<String>,
    #[prop(into)] selected: Signal<Option<usize>>,
) -> impl IntoView {
    view! {
        <table class="events">
            <thead>
                <tr>
                    <th>"Type"</th><th>"Event id"</th><th>"Source"</th><th>"Occurred"</th>
                    <th>"Last received"</th><th>"Deliveries"</th><th>"Signature"</th>
                </tr>
            </thead>
            <tbody>
                <For
                    each=move || rows.get().into_iter().enumerate()
                    key=|(_, row)| row.render_key()
                    children=move |(index, row)| {
                        let selected = move || selected.get() == Some(index);
                        view! { <EventRow row selected/> }
                    }
                />
            </tbody>
        </table>
        {next.map(|href| view! { <a class="next-page" href=href>"Older events →"</a> })}
    }
    .into_any()
}

#[component]
fn EventRow(row: Row, selected: impl Fn() -> bool + Send + Sync + 'static) -> impl IntoView {
    let event = row.summary;
    let type_label = event
        .event_type
        .clone()
        .unwrap_or_else(|| format!("({})", event.body_kind.as_str()));
    let duplicate = (event.delivery_count > 1).then_some("duplicate");
    let class = move || {
        let mut class = String::from("event-row");
        if row.fresh {
            class.push_str(" fresh");
        }
        if selected() {
            class.push_str(" selected");
        }
        class
    };
    view! {
        <tr class=class data-key=event.key>
            <td><a href=row.href>{type_label}</a></td>
            <td class="mono">{event.event_id.clone().unwrap_or_else(|| "—".into())}</td>
            <td>{event.source.clone()}</td>
            <td class="time">{event.date_occurred.as_deref().map(short_time).unwrap_or_else(|| "—".into())}</td>
            <td class="time">{short_time(&event.last_received_at)}</td>
            <td class=duplicate>
                <span class="delivery-count">{event.delivery_count}</span>
                {event.body_differs.then(|| view! { <span class="warn" title="a later delivery's body differs from the first">" ≠"</span> })}
            </td>
            <td>
                <SignatureBadge verdict=event.signature/>
                {event.verdicts_note().map(|note| view! { <span class="verdicts-note">{note}</span> })}
            </td>
        </tr>
    }
}
