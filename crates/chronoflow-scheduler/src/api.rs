//! The JSON REST API (axum), its OpenAPI document and Prometheus metrics. The pages are the
//! web crate's (`chronoflow-web`), which serves this router behind its guard.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::clock::Clock;
use crate::consistency::ConsistencySource;
use crate::error::SchedulerError;
use crate::metrics::Metrics;
use crate::state::TaskState;
use crate::store::{RunTrigger, Store};

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Where `/api/v1/joins/{join}/consistency` reads figures; `None` in a process without a
    /// warehouse (the route then answers 404).
    pub consistency: Option<Arc<dyn ConsistencySource>>,
}

pub fn router(state: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/health", get(health))
        .route("/api/v1/dags", get(list_dags))
        .route("/api/v1/dags/{dag_id}", get(get_dag))
        .route("/api/v1/dags/{dag_id}/pause", post(pause))
        .route("/api/v1/dags/{dag_id}/unpause", post(unpause))
        .route("/api/v1/dags/{dag_id}/runs", post(trigger))
        .route("/api/v1/dags/{dag_id}/backfill", post(backfill))
        .route("/api/v1/runs", get(list_runs))
        .route("/api/v1/streams", get(list_streams))
        .route("/api/v1/joins/{join}/consistency", get(join_consistency))
        .route("/api/v1/dags/{dag_id}/runs/{run_id}/tasks", get(list_tasks))
        .route(
            "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear",
            post(clear),
        )
        .route(
            "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark",
            post(mark),
        )
        .route(
            "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/stop",
            post(stop),
        )
        .route(
            "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs",
            get(logs),
        )
        .with_state(state)
}

/// Errors as JSON: 404 for unknown names, 400 for bad requests, 500 for the system's own.
pub enum ApiError {
    Store(SchedulerError),
    /// A path, query string or body the extractors could not read.
    Malformed(String),
    /// A route this process cannot answer (404).
    NotServed(String),
}

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        ApiError::Store(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = match self {
            ApiError::Store(e) => e,
            ApiError::Malformed(message) => {
                return (StatusCode::BAD_REQUEST, Json(json!({ "error": message })))
                    .into_response();
            }
            ApiError::NotServed(message) => {
                return (StatusCode::NOT_FOUND, Json(json!({ "error": message }))).into_response();
            }
        };
        let status = match &e {
            SchedulerError::UnknownDag(_)
            | SchedulerError::UnknownRun { .. }
            | SchedulerError::UnknownTask { .. }
            | SchedulerError::UnknownJoin(_) => StatusCode::NOT_FOUND,
            e if e.is_client_error() => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "API request failed");
        }
        (status, Json(json!({ "error": e.to_string() }))).into_response()
    }
}

/// axum's `Path`, `Query` and `Json`, whose rejections (plain text, some 422) answer like every
/// other error of this API: JSON, 400. The router is served without the web crate's guard too
/// (tests, embedders), so it cannot rely on the guard to rewrite them.
struct ApiPath<T>(T);
struct ApiQuery<T>(T);
struct ApiJson<T>(T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::Malformed(e.body_text()))
    }
}

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::Malformed(e.body_text()))
    }
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Json::from_request(request, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|e| ApiError::Malformed(format!("body: {}", e.body_text())))
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn health(State(s): State<ApiState>) -> ApiResult<Json<serde_json::Value>> {
    let plan = s.store.plan_status().await?;
    Ok(Json(json!({
        "status": "ok",
        "plan": plan.map(|(ok, message, updated_ms)| json!({"ok": ok, "message": message, "updated_ms": updated_ms})),
    })))
}

async fn list_dags(State(s): State<ApiState>) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(json!({ "dags": s.store.dags().await? })))
}

async fn get_dag(
    State(s): State<ApiState>,
    ApiPath(dag_id): ApiPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let dag = s.store.dag(&dag_id).await?;
    let spec = s.store.spec(&dag_id, dag.version).await?;
    Ok(Json(json!({ "dag": dag, "spec": *spec })))
}

async fn pause(
    State(s): State<ApiState>,
    ApiPath(dag_id): ApiPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    s.store.set_paused(&dag_id, true, s.clock.now_ms()).await?;
    Ok(Json(json!({ "dag_id": dag_id, "paused": true })))
}

async fn unpause(
    State(s): State<ApiState>,
    ApiPath(dag_id): ApiPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    s.store.set_paused(&dag_id, false, s.clock.now_ms()).await?;
    Ok(Json(json!({ "dag_id": dag_id, "paused": false })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeBody {
    start_ds: String,
    end_ds: String,
}

/// A trigger's range; `step_days` cuts a manual DAG's range into one run per chunk.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    start_ds: String,
    end_ds: String,
    #[serde(default)]
    step_days: Option<u32>,
}

async fn trigger(
    State(s): State<ApiState>,
    ApiPath(dag_id): ApiPath<String>,
    ApiJson(body): ApiJson<TriggerBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let trigger = match body.step_days {
        Some(step_days) => RunTrigger::Steps {
            start_ds: body.start_ds,
            end_ds: body.end_ds,
            step_days,
        },
        None => RunTrigger::Manual {
            start_ds: body.start_ds,
            end_ds: body.end_ds,
        },
    };
    create_runs(&s, dag_id, trigger).await
}

async fn backfill(
    State(s): State<ApiState>,
    ApiPath(dag_id): ApiPath<String>,
    ApiJson(body): ApiJson<RangeBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let trigger = RunTrigger::Backfill {
        start_ds: body.start_ds,
        end_ds: body.end_ds,
    };
    create_runs(&s, dag_id, trigger).await
}

async fn create_runs(
    s: &ApiState,
    dag_id: String,
    trigger: RunTrigger,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let ids = s.store.trigger(&dag_id, trigger, s.clock.now_ms()).await?;
    // A backfill whose dates all have runs creates nothing: that is not a 201.
    let status = if ids.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(json!({ "dag_id": dag_id, "run_ids": ids }))))
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    dag_id: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_runs(
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    // `?state=&dag_id=` (a form's empty fields) filter nothing.
    fn given(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|v| !v.is_empty())
    }
    let runs = s
        .store
        .runs(
            given(&q.dag_id),
            given(&q.state),
            // Below 1 is the store's 400 (it was silently 1); above 10,000 reads 10,000.
            q.limit.unwrap_or(100).min(10_000),
        )
        .await?;
    Ok(Json(json!({ "runs": runs })))
}

/// Every stream, as its supervisor last recorded it (`GET /api/v1/streams`).
async fn list_streams(State(s): State<ApiState>) -> ApiResult<Json<serde_json::Value>> {
    // Streams run in wall time, whatever the scheduler's clock.
    let now = crate::clock::SystemClock.now_ms();
    let streams: Vec<serde_json::Value> = s
        .store
        .streaming_jobs()
        .await?
        .into_iter()
        .map(|row| stream_view(row, now))
        .collect();
    Ok(Json(json!({ "streams": streams })))
}

/// A stream's row as the API and `streams list --format json` show it: the row, plus `stale`
/// (its supervisor stopped writing: the worker died or hangs) and `up` as of `now_ms` (wall
/// time).
pub fn stream_view(row: crate::store::StreamingJob, now_ms: i64) -> serde_json::Value {
    let (stale, up) = (row.observed_state(now_ms) == "stale", row.is_up(now_ms));
    let mut value = serde_json::to_value(row).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("stale".to_owned(), stale.into());
        object.insert("up".to_owned(), up.into());
    }
    value
}

async fn list_tasks(
    State(s): State<ApiState>,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(
        json!({ "task_instances": s.store.task_instances(&dag_id, &run_id).await? }),
    ))
}

#[derive(Debug, Deserialize)]
struct ClearQuery {
    #[serde(default)]
    downstream: bool,
}

async fn clear(
    State(s): State<ApiState>,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<ClearQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let cleared = s
        .store
        .clear(&dag_id, &run_id, &task_id, q.downstream, s.clock.now_ms())
        .await?;
    Ok(Json(json!({ "cleared": cleared })))
}

#[derive(Debug, Deserialize)]
struct MarkBody {
    state: String,
}

async fn mark(
    State(s): State<ApiState>,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<MarkBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let bad = |message: String| SchedulerError::InvalidRequest {
        dag_id: dag_id.clone(),
        message,
    };
    let state = match body.state.as_str() {
        "success" => TaskState::Success,
        "failed" => TaskState::Failed,
        other => {
            return Err(bad(format!(
                "state must be \"success\" or \"failed\", not {other:?}"
            ))
            .into());
        }
    };
    let previous = s
        .store
        .mark(&dag_id, &run_id, &task_id, state, s.clock.now_ms())
        .await?;
    Ok(Json(json!({
        "dag_id": dag_id, "run_id": run_id, "task_id": task_id,
        "state": state, "previous": previous,
    })))
}

async fn stop(
    State(s): State<ApiState>,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    s.store
        .stop(&dag_id, &run_id, &task_id, s.clock.now_ms())
        .await?;
    Ok(Json(json!({
        "dag_id": dag_id, "run_id": run_id, "task_id": task_id, "state": TaskState::Failed,
    })))
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(rename = "try")]
    try_number: Option<i64>,
    /// Text, so a bad value is our 400 with a JSON message rather than the extractor's.
    offset: Option<String>,
}

async fn logs(
    State(s): State<ApiState>,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Response> {
    let offset = match q.offset.as_deref() {
        None | Some("") => 0,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| SchedulerError::InvalidRequest {
                dag_id: dag_id.clone(),
                message: format!("offset must be a byte offset (0 or more), not {text:?}"),
            })?,
    };
    let chunk = read_log_from(&s.store, &dag_id, &run_id, &task_id, q.try_number, offset).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::HeaderName::from_static("x-log-offset"),
                chunk.next_offset.to_string(),
            ),
            (
                header::HeaderName::from_static("x-log-complete"),
                chunk.complete.to_string(),
            ),
        ],
        chunk.text,
    )
        .into_response())
}

/// Part of a try's log, for polling while the try runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// From the requested offset to the end of the file as it is now (at offset 0 preceded by
    /// a `# try N on worker (state)` line, which offsets do not count).
    pub text: Vec<u8>,
    /// Where the next read starts.
    pub next_offset: u64,
    /// The try had ended before the file was read, and nothing is left after `next_offset`.
    pub complete: bool,
}

/// At most this much of a log per read (the caller reads on from `next_offset`).
const LOG_CHUNK: u64 = 4 << 20;

/// The log of a try (the last one by default), as its worker wrote it.
pub async fn read_log(
    store: &Store,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: Option<i64>,
) -> Result<String, SchedulerError> {
    let tries = store.tries(dag_id, run_id, task_id).await?;
    let t = chosen_try(&tries, dag_id, run_id, task_id, try_number)?;
    let mut text = log_header(t);
    match &t.log_path {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(log) => text.push_str(&log),
            Err(e) => text.push_str(&unreadable(path, &e)),
        },
        None => text.push_str("# this try wrote no log\n"),
    }
    Ok(text)
}

/// The log of a try from byte `offset` of its file (up to 4 MiB). The try's state is read
/// before the file, so `complete` never hides a last write.
pub async fn read_log_from(
    store: &Store,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: Option<i64>,
    offset: u64,
) -> Result<LogChunk, SchedulerError> {
    use std::io::{Read, Seek, SeekFrom};
    let tries = store.tries(dag_id, run_id, task_id).await?;
    let t = chosen_try(&tries, dag_id, run_id, task_id, try_number)?;
    let ended = t.ended_ms.is_some();
    let file = t.log_path.as_deref().map(|p| (p, std::fs::File::open(p)));
    let mut text = Vec::new();
    if offset == 0 {
        text.extend_from_slice(log_header(t).as_bytes());
        match &file {
            Some((path, Err(e))) if ended || e.kind() != std::io::ErrorKind::NotFound => {
                text.extend_from_slice(unreadable(path, e).as_bytes())
            }
            None if ended => text.extend_from_slice(b"# this try wrote no log\n"),
            // A running try's log may not exist yet.
            _ => {}
        }
    }
    let (mut file, len) = match file {
        Some((_, Ok(f))) => {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            (Some(f), len)
        }
        _ => (None, 0),
    };
    if offset > len {
        return Err(SchedulerError::InvalidRequest {
            dag_id: dag_id.to_owned(),
            message: format!(
                "offset {offset} is past the end of the log of try {} ({len} bytes)",
                t.try_number
            ),
        });
    }
    let mut read = 0;
    if let Some(f) = file.as_mut() {
        f.seek(SeekFrom::Start(offset))?;
        // Up to the length seen above: bytes written since then come with the next read.
        read = f
            .take((len - offset).min(LOG_CHUNK))
            .read_to_end(&mut text)? as u64;
    }
    let next_offset = offset + read;
    Ok(LogChunk {
        text,
        next_offset,
        complete: ended && next_offset >= len,
    })
}

fn chosen_try<'a>(
    tries: &'a [crate::store::TaskTryRow],
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: Option<i64>,
) -> Result<&'a crate::store::TaskTryRow, SchedulerError> {
    let chosen = match try_number {
        Some(n) => tries.iter().find(|t| t.try_number == n),
        None => tries.last(),
    };
    chosen.ok_or_else(|| SchedulerError::InvalidRequest {
        dag_id: dag_id.to_owned(),
        message: match try_number {
            Some(n) => format!("task {task_id:?} of run {run_id:?} has no try {n}"),
            None => format!("task {task_id:?} of run {run_id:?} has not run yet"),
        },
    })
}

/// Why a try's log cannot be shown. The path is recorded when the try starts, so a missing file
/// is a try that wrote nothing, or one that ran on another machine.
fn unreadable(path: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("# no log at {path} (the try wrote none, or ran on another machine)\n")
    } else {
        format!("# the log {path} is not readable here: {e}\n")
    }
}

fn log_header(t: &crate::store::TaskTryRow) -> String {
    format!(
        "# try {} on {} ({}){}\n",
        t.try_number,
        t.worker_id,
        t.state,
        t.error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    )
}

async fn metrics(State(s): State<ApiState>) -> ApiResult<Response> {
    let states = s.store.state_counts().await?;
    let mut text = s.metrics.render(&states);
    // Streams run in wall time, whatever the scheduler's clock. A row that cannot be read must
    // not take the task metrics down with it.
    match s.store.streaming_jobs().await {
        Ok(streams) => {
            crate::metrics::render_streams(&mut text, &streams, crate::clock::SystemClock.now_ms())
        }
        Err(e) => tracing::warn!(error = %e, "reading streams for /metrics"),
    }
    match s.store.consistency_gauges().await {
        Ok(gauges) => crate::consistency::render_gauges(&mut text, &gauges),
        Err(e) => tracing::warn!(error = %e, "reading consistency gauges for /metrics"),
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    start_ds: Option<String>,
    end_ds: Option<String>,
}

/// A Join's daily consistency figures: what `chronoflow consistency <join> --format json`
/// prints (one reader, `consistency::join_report`).
async fn join_consistency(
    State(s): State<ApiState>,
    ApiPath(join): ApiPath<String>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let Some(source) = &s.consistency else {
        return Err(ApiError::NotServed(
            "this process reads no warehouse: consistency figures are served by standalone and scheduler --listen".to_owned(),
        ));
    };
    let report = source
        .report(&join, q.start_ds.as_deref(), q.end_ds.as_deref())
        .await?;
    Ok(Json(report))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// Serves the API on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    extra: Option<axum::Router>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = match extra {
        Some(extra) => router(state).merge(extra),
        None => router(state),
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}
