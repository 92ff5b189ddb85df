//! The API's errors: one enum, mapped once to a status code and a `{"error": ...}` body.
//! Internal errors are logged in full and answered opaquely.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::storage::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is wrong; the message tells the caller how.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("a valid token or login session is needed")]
    Unauthorized,
    /// Refused whoever asks, such as a request from another site.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadFilter(message) => Self::BadRequest(message),
            QueryError::Database(e) => Self::Internal(e.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": "internal error"})),
                )
                    .into_response();
            }
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}
