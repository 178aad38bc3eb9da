//! The web crate's one error type, and how each becomes an HTTP answer.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chronoflow_engine::EngineError;
use chronoflow_scheduler::SchedulerError;
use chronoflow_serve::ServeError;
use serde_json::json;
use thiserror::Error;

pub type Result<T, E = WebError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum WebError {
    /// An id the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this, a cross-site request, or a foreign Host.
    #[error("{0}")]
    Forbidden(String),
    /// A listener that would expose the API without authentication.
    #[error("{0}")]
    Unsafe(String),
    /// The system's random source failed (CSRF tokens cannot be made).
    #[error("{0}")]
    Randomness(String),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::Unsafe(_) | WebError::Randomness(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::Scheduler(
                SchedulerError::UnknownDag(_)
                | SchedulerError::UnknownRun { .. }
                | SchedulerError::UnknownTask { .. },
            ) => StatusCode::NOT_FOUND,
            WebError::Scheduler(e) if e.is_client_error() => StatusCode::BAD_REQUEST,
            WebError::Serve(e) => chronoflow_serve::http::status_of(e),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "web request failed");
        }
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}
