//! The HTTP fetcher:
//! - `POST /v1/fetch/join/<name>` and `POST /v1/fetch/groupby/<name>` take a JSON array of key
//!   sets (or one key set) and `?at_millis=T` (default: now), and answer
//!   `{"results": [{"status": "Success", "entityKeys": {...}, "features": {...}}]}`;
//! - `GET /health`.
//!
//! Unknown names are 404, unreadable bodies and keys 400, a KV store that cannot be reached 503;
//! a Join part that fails is an `<prefix>_exception` feature, and the request still succeeds.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ServeError;
use crate::fetcher::{Features, Fetcher, KeySet};

#[derive(Debug, Deserialize)]
struct FetchParams {
    at_millis: Option<i64>,
}

/// The fetcher's routes.
pub fn router(fetcher: Arc<Fetcher>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/fetch/join/{*name}", post(fetch_join))
        .route("/v1/fetch/groupby/{*name}", post(fetch_group_by))
        .with_state(fetcher)
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn fetch_join(
    State(fetcher): State<Arc<Fetcher>>,
    Path(name): Path<String>,
    Query(params): Query<FetchParams>,
    body: Bytes,
) -> Response {
    fetch(&fetcher, Kind::Join, &name, params, &body).await
}

async fn fetch_group_by(
    State(fetcher): State<Arc<Fetcher>>,
    Path(name): Path<String>,
    Query(params): Query<FetchParams>,
    body: Bytes,
) -> Response {
    fetch(&fetcher, Kind::GroupBy, &name, params, &body).await
}

enum Kind {
    Join,
    GroupBy,
}

async fn fetch(
    fetcher: &Fetcher,
    kind: Kind,
    name: &str,
    params: FetchParams,
    body: &[u8],
) -> Response {
    let requests = match parse_key_sets(body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let at = params.at_millis.unwrap_or_else(now_millis);
    let result = match kind {
        Kind::Join => fetcher.fetch_join(name, &requests, at).await,
        Kind::GroupBy => fetcher.fetch_group_by(name, &requests, at).await,
    };
    respond(result, &requests)
}

/// A JSON array of key sets, or a single key set.
pub fn parse_key_sets(body: &[u8]) -> Result<Vec<KeySet>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(_) => vec![value],
        other => {
            return Err(format!(
                "the body must be a key set or an array of key sets, got {other}"
            ));
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(m) => Ok(m),
            other => Err(format!("key set {i} must be an object, got {other}")),
        })
        .collect()
}

fn respond(result: Result<Vec<Features>, ServeError>, requests: &[KeySet]) -> Response {
    match result {
        Ok(features) => {
            let results: Vec<Value> = requests
                .iter()
                .zip(features)
                .map(|(keys, features)| {
                    json!({"status": "Success", "entityKeys": keys, "features": features})
                })
                .collect();
            axum::Json(json!({ "results": results })).into_response()
        }
        Err(e) => error(status_of(&e), e.to_string()),
    }
}

/// The HTTP status of a fetch error.
pub fn status_of(e: &ServeError) -> StatusCode {
    match e {
        ServeError::UnknownName { .. } => StatusCode::NOT_FOUND,
        ServeError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ServeError::Embedded { .. } | ServeError::Redis { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ServeError::Config { .. } => StatusCode::NOT_IMPLEMENTED,
        ServeError::Dataset { .. } | ServeError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Serves the fetcher on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    fetcher: Arc<Fetcher>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(fetcher))
        .with_graceful_shutdown(shutdown)
        .await
}
