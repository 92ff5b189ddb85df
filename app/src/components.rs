//! The pieces the pages share.

use leptos::prelude::*;

use crate::model::{Header, SignatureVerdict};

/// A time as RFC 3339 shortened for a table: date and time to the second, in UTC.
pub fn short_time(rfc3339: &str) -> String {
    let trimmed: String = rfc3339.chars().take(19).collect();
    trimmed.replacen('T', " ", 1)
}

/// The verdict as a coloured label.
#[component]
pub fn SignatureBadge(verdict: SignatureVerdict) -> impl IntoView {
    let class = format!("badge sig-{}", verdict.as_str());
    view! { <span class=class>{verdict.as_str()}</span> }
}

/// A delivery's headers, folded away until asked for (the toggle needs the hydrated page).
#[component]
pub fn HeadersTable(headers: Vec<Header>) -> impl IntoView {
    let open = RwSignal::new(false);
    let count = headers.len();
    view! {
        <div class="headers">
            <button type="button" class="toggle-headers" aria-expanded=move || open.get().to_string()
                on:click=move |_| open.update(|o| *o = !*o)>
                {move || if open.get() { format!("Hide headers ({count})") } else { format!("Show headers ({count})") }}
            </button>
            <table class="header-table" hidden=move || !open.get()>
                <tbody>
                    {headers.into_iter().map(|h| view! {
                        <tr><th class="mono">{h.name}</th><td class="mono">{h.value}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// What the list shows before the first event: where to send webhooks, and a command that
/// sends a sample KeldairHR event.
#[component]
pub fn EmptyState(hooks_url: String) -> impl IntoView {
    let url = format!("{hooks_url}keldair");
    let command = sample_curl(&url);
    let copied = RwSignal::new(None::<&'static str>);
    let copy_text = command.clone();
    let copy = move |_| copy_to_clipboard(copy_text.clone(), copied);
    view! {
        <section class="empty">
            <h2>"No events yet"</h2>
            <p>"Point your webhook sender (KeldairHR or any other) at"</p>
            <p><code class="ingest-url">{url}</code></p>
            <p>"Any name after " <code>"/hooks/"</code> " makes a source. Or send a sample KeldairHR event now:"</p>
            <pre class="curl">{command}</pre>
            <button type="button" class="copy" on:click=copy>
                {move || copied.get().unwrap_or("Copy command")}
            </button>
        </section>
    }
}

/// A `curl` command that posts a sample `applicant.hired` event to `url`.
fn sample_curl(url: &str) -> String {
    let event = r#"{"id":"1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d","type":"applicant.hired","version":"2022-02-23","dateOccurred":"2022-02-23T18:46:43+00:00","data":{"applicant":{"id":"apl_7Qm2xK","firstName":"Amara","lastName":"Okafor","jobId":"job_3391"}}}"#;
    format!("curl -X POST {url} \\\n  -H 'content-type: application/json' \\\n  -d '{event}'")
}

/// Copies `text` to the clipboard and reports the outcome in `status`.
#[cfg(feature = "hydrate")]
fn copy_to_clipboard(text: String, status: RwSignal<Option<&'static str>>) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let promise = window.navigator().clipboard().write_text(&text);
    leptos::task::spawn_local(async move {
        let copied = wasm_bindgen_futures::JsFuture::from(promise).await.is_ok();
        status.set(Some(if copied {
            "Copied"
        } else {
            "Copy failed: select the command instead"
        }));
    });
}

// The button only exists for a hydrated page; on the server it is never clicked.
#[cfg(not(feature = "hydrate"))]
fn copy_to_clipboard(_text: String, _status: RwSignal<Option<&'static str>>) {}

/// Makes the server's answer a 404 when rendered there (in the browser there is no answer to
/// change). For a route rendered with `SsrMode::Async` or outside any `<Suspense>`, since a
/// streamed page has sent its status before its suspended parts render.
pub fn answer_not_found() {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
}
