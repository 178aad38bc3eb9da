//! The HTTP fetcher:
//! - `POST /v1/fetch/join/<name>` and `POST /v1/fetch/groupby/<name>` take a JSON array of key
//!   sets (or one key set) and `?at_millis=T` (default: now), and answer
//!   `{"results": [{"status": "Success", "entityKeys": {...}, "features": {...}}]}`;
//! - `POST /v1/log/flush` commits the fetch log written so far and answers the logger's counters
//!   (`{"written", "dropped", "failed_writes", "pending"}`): what it reports as written is
//!   acknowledged, a restart does not lose it; 404 when fetches are not logged;
//! - `GET /health`; `GET /metrics` (the fetch log's counters) on the fetcher's own port.
//!
//! Unknown names are 404, unreadable bodies, query strings and keys 400, a KV store that cannot
//! be reached 503; a Join part that fails is an `<prefix>_exception` feature, and the request
//! still succeeds. Every error is a JSON `{"error": "..."}`.
//!
//! [`FetchLimits`] bound what one request can ask: a body over `max_body_bytes` or more than
//! `max_keys_per_request` key sets is 413, and beyond `max_concurrent_fetches` fetches in flight
//! a request is refused at once with 503 and `Retry-After`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::KeySet;
use crate::error::ServeError;
use crate::fetched::Fetched;
use crate::fetcher::Fetcher;
use crate::server::{self, ServerLimits};

#[derive(Debug, Deserialize)]
struct FetchParams {
    at_millis: Option<i64>,
}

/// Bounds on what fetch requests may ask of the fetcher.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    /// Key sets in one request.
    pub max_keys_per_request: usize,
    /// Size of a request body, in bytes.
    pub max_body_bytes: usize,
    /// Fetches answered at once; more are refused with 503.
    pub max_concurrent_fetches: usize,
}

impl Default for FetchLimits {
    /// 1,000 key sets answer in a few milliseconds and a response of about 1 MB; callers with
    /// more keys split them, which also spreads them over the fetcher's cores. 1 MiB of body holds
    /// 1,000 key sets of 1 KB. 64 fetches in flight keep at most 64,000 key sets in memory.
    fn default() -> FetchLimits {
        FetchLimits {
            max_keys_per_request: 1_000,
            max_body_bytes: 1 << 20,
            max_concurrent_fetches: 64,
        }
    }
}

struct Served {
    fetcher: Arc<Fetcher>,
    limits: FetchLimits,
    /// One permit per fetch in flight.
    fetches: Semaphore,
}

/// The fetcher's routes.
pub fn router(fetcher: Arc<Fetcher>, limits: FetchLimits) -> Router {
    let served = Arc::new(Served {
        fetcher,
        fetches: Semaphore::new(limits.max_concurrent_fetches.max(1)),
        limits: limits.clone(),
    });
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/fetch/join/{*name}", post(fetch_join))
        .route("/v1/fetch/groupby/{*name}", post(fetch_group_by))
        .route("/v1/log/flush", post(flush_log))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(served)
}

async fn flush_log(State(served): State<Arc<Served>>) -> Response {
    match served.fetcher.logger() {
        Some(logger) => axum::Json(logger.flush().await).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "fetches are not logged by this server".to_owned(),
        ),
    }
}

/// The fetcher's own `/metrics` (its port alone; `standalone` exports the same families on the
/// scheduler's `/metrics`).
fn metrics_router(fetcher: Arc<Fetcher>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let fetcher = fetcher.clone();
            async move {
                let mut text = String::new();
                if let Some(logger) = fetcher.logger() {
                    logger.render_metrics(&mut text);
                }
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
            }
        }),
    )
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(i64::MAX))
}

async fn fetch_join(
    State(served): State<Arc<Served>>,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<FetchParams>, QueryRejection>,
    request: Request,
) -> Response {
    fetch(&served, Kind::Join, name, params, request).await
}

async fn fetch_group_by(
    State(served): State<Arc<Served>>,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<FetchParams>, QueryRejection>,
    request: Request,
) -> Response {
    fetch(&served, Kind::GroupBy, name, params, request).await
}

enum Kind {
    Join,
    GroupBy,
}

async fn fetch(
    served: &Served,
    kind: Kind,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<FetchParams>, QueryRejection>,
    request: Request,
) -> Response {
    // Refused before the body is read, so a saturated fetcher buffers no more bodies.
    let Ok(_permit) = served.fetches.try_acquire() else {
        let message = format!(
            "the fetcher is answering {} requests already (--max-concurrent-fetches): retry later",
            served.limits.max_concurrent_fetches
        );
        let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let name = match name {
        Ok(Path(name)) => name,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad name in the path: {e}"),
            );
        }
    };
    let params = match params {
        Ok(Query(params)) => params,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad query string: {e}")),
    };
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
            let message = format!(
                "the request body is larger than {} bytes (--max-body-bytes): split the key sets \
                 over several requests",
                served.limits.max_body_bytes
            );
            return error(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let requests = match parse_key_sets(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let max = served.limits.max_keys_per_request;
    if requests.len() > max {
        let message = format!(
            "{} key sets in one request, more than the limit of {max} \
             (--max-keys-per-request): split them over several requests",
            requests.len()
        );
        return error(StatusCode::PAYLOAD_TOO_LARGE, message);
    }
    let at = params.at_millis.unwrap_or_else(now_millis);
    let result = match kind {
        Kind::Join => served.fetcher.fetch_join_values(&name, &requests, at).await,
        Kind::GroupBy => {
            served
                .fetcher
                .fetch_group_by_values(&name, &requests, at)
                .await
        }
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

/// The response: per key set its status, keys and features, written straight from the values
/// (`Fetched::response_json`). Building it as a `Value` first cloned every key set and doubled
/// the memory a request holds; a map per key set cost a third of a one-key fetch's time.
fn respond(result: Result<Fetched, ServeError>, requests: &[KeySet]) -> Response {
    match result.map(|fetched| fetched.response_json(requests)) {
        Ok(Ok(body)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writing the response: {e}"),
        ),
        Err(e) => error(status_of(&e), e.to_string()),
    }
}

/// The HTTP status of a fetch error.
pub fn status_of(e: &ServeError) -> StatusCode {
    match e {
        ServeError::UnknownName { .. } => StatusCode::NOT_FOUND,
        ServeError::BadRequest(_)
        | ServeError::Engine(chronoflow_engine::EngineError::BeforeBatch { .. }) => {
            StatusCode::BAD_REQUEST
        }
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
    fetch_limits: FetchLimits,
    server_limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    server::serve(
        listener,
        router(fetcher.clone(), fetch_limits).merge(metrics_router(fetcher)),
        server_limits,
        shutdown,
    )
    .await
}
