//! The server functions the pages call. They are thin: each asks the [`Backend`] that the
//! server put in context, so the UI never touches storage directly and the JSON API and the
//! pages read through the same code.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::{EventDetail, EventFilter, EventPage, TypeCounts};

/// What the event list page needs: a page of events, and where webhooks should be sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventsView {
    pub page: EventPage,
    /// True when a filter narrowed the list (an empty list then means "no match").
    pub filtered: bool,
    /// The base URL senders post to, e.g. `http://127.0.0.1:3000/hooks/`.
    pub hooks_url: String,
    /// Every type with its count under the rest of the filter, and how many events match.
    pub counts: TypeCounts,
}

/// What the server provides to answer the UI's questions.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A page of events matching `filter`; `Err` carries a message for the user.
    async fn list_events(&self, filter: EventFilter) -> Result<EventPage, String>;
    /// Every type with its count under the rest of `filter`, and how many events match it.
    async fn type_counts(&self, filter: EventFilter) -> Result<TypeCounts, String>;
    /// One event in full, or `None`.
    async fn event_detail(&self, key: i64) -> Result<Option<EventDetail>, String>;
}

/// The backend the server provided, as a shared handle.
#[cfg(feature = "ssr")]
pub type SharedBackend = std::sync::Arc<dyn Backend>;

#[cfg(feature = "ssr")]
fn backend() -> Result<SharedBackend, ServerFnError> {
    use_context::<SharedBackend>()
        .ok_or_else(|| ServerFnError::new("the server provided no backend"))
}

/// The event list for the UI.
#[server(prefix = "/api/ui", endpoint = "events")]
pub async fn load_events(
    // An empty filter has nothing to encode: without a default the argument would be missing.
    #[server(default)] filter: EventFilter,
) -> Result<EventsView, ServerFnError> {
    let filtered = !filter.is_unfiltered();
    let backend = backend()?;
    let page = backend
        .list_events(filter.clone())
        .await
        .map_err(ServerFnError::new)?;
    let counts = backend
        .type_counts(filter)
        .await
        .map_err(ServerFnError::new)?;
    let headers: http::HeaderMap = leptos_axum::extract().await?;
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:3000");
    Ok(EventsView {
        page,
        filtered,
        hooks_url: format!("http://{host}/hooks/"),
        counts,
    })
}

/// One event for the UI.
#[server(prefix = "/api/ui", endpoint = "event")]
pub async fn load_event(key: i64) -> Result<Option<EventDetail>, ServerFnError> {
    backend()?
        .event_detail(key)
        .await
        .map_err(ServerFnError::new)
}
