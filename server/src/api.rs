//! The JSON API under `/api` (behind [`crate::auth`]): the event list with its filters, one
//! event in full, and a delivery's raw bytes.

use app::model::{EventDetail, EventFilter, EventPage, TypeCounts};
use axum::{
    Json,
    extract::{Path, RawQuery, State},
    http::header,
    response::{IntoResponse, Response},
};

use crate::{AppState, error::ApiError, storage::EventQuery};

/// The list's filter from a query string.
fn parse_filter(query: Option<String>) -> Result<EventQuery, ApiError> {
    let query = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let filter = EventFilter::from_query_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(ApiError::BadRequest)?;
    Ok(EventQuery::parse(&filter)?)
}

/// `GET /api/events`: newest first, filtered, keyset-paginated.
pub async fn list_events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
    let query = parse_filter(query)?;
    let pending = catch_up(&state).await?;
    let page = state.store.list_events(&query).await?;
    Ok(Json(EventPage { pending, ..page }))
}

/// `GET /api/types`: every type with its count under the rest of the filter (the list's
/// parameters), and how many events match the whole filter.
pub async fn type_counts(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<TypeCounts>, ApiError> {
    let query = parse_filter(query)?;
    catch_up(&state).await?;
    Ok(Json(state.store.type_counts(&query).await?))
}

/// `GET /api/events/{key}`: the summary, the payload and every delivery.
pub async fn event_detail(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<EventDetail>, ApiError> {
    const NO_EVENT: &str = "no event has that key";
    let key: i64 = key.parse().map_err(|_| ApiError::NotFound(NO_EVENT))?;
    catch_up(&state).await?;
    let detail = state.store.event_detail(key).await?;
    detail.map(Json).ok_or(ApiError::NotFound(NO_EVENT))
}

/// `GET /api/deliveries/{id}/raw`: the bytes received, with the original content type.
pub async fn raw_delivery(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let raw = state
        .store
        .raw_body(&id)
        .await?
        .ok_or(ApiError::NotFound("no delivery has that id"))?;
    let content_type = raw
        .content_type
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    Ok(([(header::CONTENT_TYPE, content_type)], raw.body).into_response())
}

/// Any other path under `/api`: a JSON 404 like the rest of the API, not an HTML page.
pub async fn no_such_route() -> ApiError {
    ApiError::NotFound("no such API route; see the README for the routes there are")
}

/// Lets the writer list what was acknowledged so far, for the read that follows (waiting at
/// most `storage::READ_WAIT`); returns how many deliveries are not listed yet.
async fn catch_up(state: &AppState) -> Result<u64, ApiError> {
    state
        .store
        .catch_up(&state.writer)
        .await
        .map_err(|e| ApiError::Internal(e.into()))
}
