//! `/`: the event list, newest first, 50 to a page with a link to the next. The URL's query
//! string is the filter, so a filtered page can be bookmarked and shared.

use leptos::prelude::*;
use leptos_router::{hooks::use_query_map, params::ParamsMap};

use crate::{
    api::load_events,
    components::{EmptyState, SignatureBadge, short_time},
    model::{EventFilter, EventSummary, SignatureVerdict},
};

/// Reads the list's filter from the URL's query string.
fn filter_from_query(query: &ParamsMap) -> EventFilter {
    EventFilter {
        types: query.get_all("type").unwrap_or_default(),
        source: query.get("source"),
        from: query.get("from"),
        to: query.get("to"),
        occurred_from: query.get("occurredFrom"),
        occurred_to: query.get("occurredTo"),
        signature: query.get_str("signature").and_then(SignatureVerdict::parse),
        limit: query.get_str("limit").and_then(|l| l.parse().ok()),
        cursor: query.get("cursor"),
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

fn urlencode(value: &str) -> String {
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
                let list = match events {
                    Err(e) => view! { <p class="error" role="alert">{format!("Could not load events: {e}")}</p> }.into_any(),
                    // Nothing listed yet, but the notice says more is coming.
                    Ok(view) if view.page.items.is_empty() && view.page.pending > 0 => ().into_any(),
                    Ok(view) if view.page.items.is_empty() && !view.filtered && filter.read().cursor.is_none() => {
                        view! { <EmptyState hooks_url=view.hooks_url/> }.into_any()
                    }
                    Ok(view) if view.page.items.is_empty() => {
                        view! { <p class="notice">"No events match this filter."</p> }.into_any()
                    }
                    Ok(view) => {
                        let next = view.page.next_cursor.map(|c| next_page_href(&filter.read(), &c));
                        view! { <EventTable events=view.page.items next=next/> }.into_any()
                    }
                };
                view! { <PendingNotice pending/> {list} }
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
fn EventTable(events: Vec<EventSummary>, next: Option<String>) -> impl IntoView {
    view! {
        <table class="events">
            <thead>
                <tr>
                    <th>"Type"</th><th>"Event id"</th><th>"Source"</th><th>"Occurred"</th>
                    <th>"Received"</th><th>"Deliveries"</th><th>"Signature"</th>
                </tr>
            </thead>
            <tbody>
                {events.into_iter().map(|e| view! { <EventRow event=e/> }).collect_view()}
            </tbody>
        </table>
        {next.map(|href| view! { <a class="next-page" href=href>"Older events →"</a> })}
    }
}

#[component]
fn EventRow(event: EventSummary) -> impl IntoView {
    let href = format!("/events/{}", event.key);
    let type_label = event
        .event_type
        .clone()
        .unwrap_or_else(|| format!("({})", event.body_kind.as_str()));
    let duplicate = (event.delivery_count > 1).then_some("duplicate");
    view! {
        <tr class="event-row" data-key=event.key>
            <td><a href=href>{type_label}</a></td>
            <td class="mono">{event.event_id.clone().unwrap_or_else(|| "—".into())}</td>
            <td>{event.source.clone()}</td>
            <td class="time">{event.date_occurred.as_deref().map(short_time).unwrap_or_else(|| "—".into())}</td>
            <td class="time">{short_time(&event.received_at)}</td>
            <td class=duplicate>
                {event.delivery_count}
                {event.body_differs.then(|| view! { <span class="warn" title="a later delivery's body differs from the first">" ≠"</span> })}
            </td>
            <td>
                <SignatureBadge verdict=event.signature/>
                {event.verdicts_note().map(|note| view! { <span class="verdicts-note">{note}</span> })}
            </td>
        </tr>
    }
}
