//! `/events/:key`: one event: the envelope at a glance, the payload pretty-printed, and every
//! delivery with its headers, size and signature verdict.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::{
    api::load_event,
    components::{HeadersTable, SignatureBadge, answer_not_found, short_time},
    live::follow,
    model::{Delivery, EventDetail, EventFilter},
};

#[component]
pub fn EventDetailPage() -> impl IntoView {
    let params = use_params_map();
    let key = move || {
        params
            .read()
            .get_str("key")
            .and_then(|k| k.parse::<i64>().ok())
    };
    let detail = Resource::new(key, |key| async move {
        match key {
            Some(key) => load_event(key).await,
            None => Ok(None),
        }
    });
    let detail_resource = detail;
    view! {
        <p><a href="/">"← All events"</a></p>
        <Suspense fallback=|| view! { <p class="notice">"Loading the event…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Err(e) => view! { <p class="error" role="alert">{format!("Could not load the event: {e}")}</p> }.into_any(),
                    Ok(None) => {
                        answer_not_found();
                        view! { <p class="notice">"There is no event with this key."</p> }.into_any()
                    }
                    Ok(Some(detail)) => {
                        view! { <EventView detail on_delivery=move || detail_refetch(detail_resource)/> }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}

/// Loads the event again (a new delivery of it arrived).
fn detail_refetch(detail: Resource<Result<Option<EventDetail>, ServerFnError>>) {
    detail.refetch();
}

#[component]
fn EventView(detail: EventDetail, on_delivery: impl Fn() + 'static) -> impl IntoView {
    let s = detail.summary;
    // A new delivery of this event (a retry) shows as it arrives: the page loads again.
    if let Some(event_id) = s.event_id.clone() {
        let filter = EventFilter {
            source: Some(s.source.clone()),
            ..EventFilter::default()
        };
        follow(filter, detail.stream_cursor.clone(), move |d| {
            if d.event_id.as_deref() == Some(event_id.as_str()) {
                on_delivery();
            }
        });
    }
    let title = s
        .event_type
        .clone()
        .unwrap_or_else(|| format!("Unparsed body ({})", s.body_kind.as_str()));
    let payload = match (&detail.payload, &detail.raw_text) {
        (Some(json), _) => serde_json::to_string_pretty(json).unwrap_or_default(),
        (None, Some(text)) => text.clone(),
        (None, None) => {
            "(no body, or a body that is not text: see the raw bytes of a delivery)".into()
        }
    };
    let dash = || "—".to_owned();
    view! {
        <h1>{title}</h1>
        {s.parse_error.clone().map(|e| view! { <p class="warn-box">{e}</p> })}
        {s.body_differs.then(|| view! {
            <p class="warn-box">"A later delivery of this event carried a different body from the first."</p>
        })}
        <dl class="envelope">
            <dt>"Event id"</dt><dd class="mono">{s.event_id.clone().unwrap_or_else(dash)}</dd>
            <dt>"Type"</dt><dd>{s.event_type.clone().unwrap_or_else(dash)}</dd>
            <dt>"Version"</dt><dd>{s.version.clone().unwrap_or_else(dash)}</dd>
            <dt>"Occurred"</dt><dd>{s.date_occurred.clone().unwrap_or_else(dash)}</dd>
            <dt>"Source"</dt><dd>{s.source.clone()}</dd>
            <dt>"First received"</dt><dd>{s.received_at.clone()}</dd>
            <dt>"Deliveries"</dt><dd class="delivery-count">{s.delivery_count}</dd>
            <dt>"Signature"</dt>
            <dd>
                <SignatureBadge verdict=s.signature/>
                {(s.delivery_count > 1).then_some(" (the first delivery's)")}
                {s.verdicts_note().map(|note| view! { <span class="verdicts-note">{note}</span> })}
            </dd>
        </dl>
        <h2>"Payload"</h2>
        <pre class="payload">{payload}</pre>
        <h2>"Deliveries"</h2>
        <ol class="deliveries">
            {detail.deliveries.into_iter().map(|d| view! { <DeliveryItem delivery=d/> }).collect_view()}
        </ol>
    }
}

#[component]
fn DeliveryItem(delivery: Delivery) -> impl IntoView {
    let raw_href = format!("/api/deliveries/{}/raw", delivery.id);
    let target = match &delivery.query {
        Some(q) => format!("{} {}?{q}", delivery.method, delivery.path),
        None => format!("{} {}", delivery.method, delivery.path),
    };
    let mut flags = Vec::new();
    if delivery.rejected {
        flags.push("rejected: signature enforced");
    }
    if delivery.too_large {
        flags.push("refused: over the size limit");
    }
    if delivery.body_differs {
        flags.push("body differs from the first delivery");
    }
    view! {
        <li class="delivery">
            <div class="delivery-line">
                <span class="time">{short_time(&delivery.received_at)}</span>
                <span class="mono">{target}</span>
                <span>{format!("{} bytes", delivery.size)}</span>
                <span>{format!("answered {}", delivery.response_status)}</span>
                <SignatureBadge verdict=delivery.signature/>
                {flags.into_iter().map(|f| view! { <span class="flag">{f}</span> }).collect_view()}
                <a href=raw_href target="_blank">"Raw bytes"</a>
            </div>
            {delivery.signature_reason.map(|r| view! { <p class="reason">{r}</p> })}
            <div class="meta">
                {format!("from {}", delivery.remote_addr.unwrap_or_else(|| "an unknown address".into()))}
                " · id " <span class="mono">{delivery.id}</span>
            </div>
            <HeadersTable headers=delivery.headers/>
        </li>
    }
}
