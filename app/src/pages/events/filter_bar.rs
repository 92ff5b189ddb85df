//! The filter bar above the list: event types (every type seen, with its count under the rest
//! of the filter), source, signature verdict, a received-within preset, custom ranges on receipt
//! and on occurrence, and a way to clear it all. It is a plain GET form of the list's URL
//! parameters: it works before the wasm has loaded, and once hydrated the router submits it in
//! place (the list, its counts and its live feed follow the new URL).

use leptos::prelude::*;
use leptos_router::components::Form;

use crate::model::{EventFilter, SignatureVerdict, TypeCounts};

#[component]
pub fn FilterBar(filter: EventFilter, counts: RwSignal<TypeCounts>) -> impl IntoView {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    // The list of types is drawn once; the counts follow the live list.
    let types: Vec<_> = counts
        .get_untracked()
        .types
        .into_iter()
        .map(|t| {
            let checked = filter.types.contains(&t.event_type);
            let name = t.event_type.clone();
            view! {
                <label class="type-option">
                    <input type="checkbox" name="type" value=t.event_type.clone() checked=checked/>
                    {t.event_type.clone()}
                    <span class="count">{move || type_count(counts, &name)}</span>
                </label>
            }
        })
        .collect();
    let verdicts = SignatureVerdict::ALL.map(|v| {
        let selected = filter.signature == Some(v);
        view! { <option value=v.as_str() selected=selected>{v.as_str()}</option> }
    });
    let presets = EventFilter::WITHIN.map(|(preset, label)| {
        let selected = filter.within.as_deref() == Some(preset);
        view! { <option value=preset selected=selected>{label}</option> }
    });
    let matching = move || match counts.with(|c| c.matching) {
        1 => "1 event matches".to_owned(),
        n => format!("{n} events match"),
    };
    view! {
        <Form method="GET" action="/">
            <fieldset class="filter-bar">
                <div class="types">{types}</div>
                <label>"Source " <input type="text" name="source" value=value(&filter.source) placeholder="any"/></label>
                <label>"Signature "
                    <select name="signature">
                        <option value="">"any"</option>
                        {verdicts.into_iter().collect_view()}
                    </select>
                </label>
                <label>"Received "
                    <select name="within">
                        <option value="">"any time"</option>
                        {presets.into_iter().collect_view()}
                    </select>
                </label>
                <details class="ranges" open=filter.from.is_some() || filter.to.is_some() || filter.occurred_from.is_some() || filter.occurred_to.is_some()>
                    <summary>"Custom dates (RFC 3339)"</summary>
                    <label>"Received from " <input type="text" name="from" value=value(&filter.from) placeholder="2026-12-01T00:00:00Z"/></label>
                    <label>"to " <input type="text" name="to" value=value(&filter.to)/></label>
                    <label>"Occurred from " <input type="text" name="occurredFrom" value=value(&filter.occurred_from)/></label>
                    <label>"to " <input type="text" name="occurredTo" value=value(&filter.occurred_to)/></label>
                </details>
                <button type="submit">"Apply"</button>
                <a class="clear" href="/">"Clear"</a>
                <span class="matching" role="status">{matching}</span>
            </fieldset>
        </Form>
    }
}

fn type_count(counts: RwSignal<TypeCounts>, event_type: &str) -> i64 {
    counts.with(|c| {
        c.types
            .iter()
            .find(|t| t.event_type == event_type)
            .map_or(0, |t| t.count)
    })
}
