//! The dashboard pages: Leptos routes rendered on the server, with the [`app::api::Backend`]
//! that answers the UI's server functions provided through context.

use std::sync::Arc;

use app::{
    api::{Backend, SharedBackend},
    model::{EventDetail, EventFilter, EventPage, TypeCounts},
};
use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};

use crate::{
    AppState,
    storage::{EventQuery, QueryError, Store, Writer},
};

/// The page routes, the server functions and the static files (`/pkg`).
pub fn routes(state: &AppState) -> Router<AppState> {
    let backend: SharedBackend = Arc::new(StoreBackend {
        store: state.store.clone(),
        writer: state.writer.clone(),
    });
    let options = state.leptos_options.clone();
    Router::new()
        .leptos_routes_with_context(
            state,
            generate_route_list(app::App),
            move || provide_context(backend.clone()),
            move || app::shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            app::shell,
        ))
}

/// Answers the UI from the store, once the writer has made every acknowledged delivery visible.
struct StoreBackend {
    store: Store,
    writer: Writer,
}

impl StoreBackend {
    /// See `Store::catch_up`.
    async fn catch_up(&self) -> Result<u64, String> {
        self.store
            .catch_up(&self.writer)
            .await
            .map_err(|e| message(e.into()))
    }
}

fn message(e: QueryError) -> String {
    match e {
        QueryError::BadFilter(m) => m,
        QueryError::Database(e) => {
            tracing::error!(error = %e, "a UI query failed");
            "the database could not answer".to_owned()
        }
    }
}

#[async_trait::async_trait]
impl Backend for StoreBackend {
    async fn list_events(&self, filter: EventFilter) -> Result<EventPage, String> {
        let query = EventQuery::parse(&filter).map_err(message)?;
        let pending = self.catch_up().await?;
        let page = self.store.list_events(&query).await.map_err(message)?;
        Ok(EventPage { pending, ..page })
    }

    async fn type_counts(&self, filter: EventFilter) -> Result<TypeCounts, String> {
        let query = EventQuery::parse(&filter).map_err(message)?;
        self.store.type_counts(&query).await.map_err(message)
    }

    async fn event_detail(&self, key: i64) -> Result<Option<EventDetail>, String> {
        self.catch_up().await?;
        self.store.event_detail(key).await.map_err(message)
    }
}

/// `GET /deliveries/{id}`: the page of the event holding delivery `id` (a live row links here
/// before its event is listed; by the time it is opened, it is).
pub async fn open_delivery(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> axum::response::Response {
    use axum::response::{IntoResponse, Redirect};
    let _ = state.store.catch_up(&state.writer).await;
    match state.store.event_of_delivery(&id).await {
        Ok(Some(key)) => Redirect::to(&format!("/events/{key}")).into_response(),
        Ok(None) => (
            axum::http::StatusCode::NOT_FOUND,
            "There is no delivery with this id.",
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "finding a delivery's event");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
