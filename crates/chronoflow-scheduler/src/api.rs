//! The JSON REST API (axum), its OpenAPI document, Prometheus metrics and a small status page.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::clock::Clock;
use crate::error::SchedulerError;
use crate::metrics::Metrics;
use crate::store::{RunTrigger, Store};

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
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
        .route("/api/v1/dags/{dag_id}/runs/{run_id}/tasks", get(list_tasks))
        .route(
            "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear",
            post(clear),
        )
        .route(
            "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs",
            get(logs),
        )
        .with_state(state)
}

/// Errors as JSON: 404 for unknown names, 400 for bad requests, 500 for the system's own.
pub struct ApiError(SchedulerError);

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            SchedulerError::UnknownDag(_)
            | SchedulerError::UnknownRun { .. }
            | SchedulerError::UnknownTask { .. } => StatusCode::NOT_FOUND,
            e if e.is_client_error() => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.0, "API request failed");
        }
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
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
    Path(dag_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let dag = s.store.dag(&dag_id).await?;
    let spec = s.store.spec(&dag_id, dag.version).await?;
    Ok(Json(json!({ "dag": dag, "spec": *spec })))
}

async fn pause(
    State(s): State<ApiState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    s.store.set_paused(&dag_id, true, s.clock.now_ms()).await?;
    Ok(Json(json!({ "dag_id": dag_id, "paused": true })))
}

async fn unpause(
    State(s): State<ApiState>,
    Path(dag_id): Path<String>,
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

async fn trigger(
    State(s): State<ApiState>,
    Path(dag_id): Path<String>,
    Json(body): Json<RangeBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let trigger = RunTrigger::Manual {
        start_ds: body.start_ds,
        end_ds: body.end_ds,
    };
    create_runs(&s, dag_id, trigger).await
}

async fn backfill(
    State(s): State<ApiState>,
    Path(dag_id): Path<String>,
    Json(body): Json<RangeBody>,
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
    Ok((
        StatusCode::CREATED,
        Json(json!({ "dag_id": dag_id, "run_ids": ids })),
    ))
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    dag_id: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_runs(
    State(s): State<ApiState>,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let runs = s
        .store
        .runs(
            q.dag_id.as_deref(),
            q.state.as_deref(),
            q.limit.unwrap_or(100).clamp(1, 10_000),
        )
        .await?;
    Ok(Json(json!({ "runs": runs })))
}

async fn list_tasks(
    State(s): State<ApiState>,
    Path((dag_id, run_id)): Path<(String, String)>,
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
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(q): Query<ClearQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let cleared = s
        .store
        .clear(&dag_id, &run_id, &task_id, q.downstream, s.clock.now_ms())
        .await?;
    Ok(Json(json!({ "cleared": cleared })))
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(rename = "try")]
    try_number: Option<i64>,
}

async fn logs(
    State(s): State<ApiState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    let text = read_log(&s.store, &dag_id, &run_id, &task_id, q.try_number).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// The log of a try (the last one by default), as its worker wrote it.
pub async fn read_log(
    store: &Store,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: Option<i64>,
) -> Result<String, SchedulerError> {
    let tries = store.tries(dag_id, run_id, task_id).await?;
    let chosen = match try_number {
        Some(n) => tries.iter().find(|t| t.try_number == n),
        None => tries.last(),
    };
    let Some(t) = chosen else {
        return Err(SchedulerError::InvalidRequest {
            dag_id: dag_id.to_owned(),
            message: match try_number {
                Some(n) => format!("task {task_id:?} of run {run_id:?} has no try {n}"),
                None => format!("task {task_id:?} of run {run_id:?} has not run yet"),
            },
        });
    };
    let mut text = format!(
        "# try {} on {} ({}){}\n",
        t.try_number,
        t.worker_id,
        t.state,
        t.error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    match &t.log_path {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(log) => text.push_str(&log),
            Err(e) => text.push_str(&format!("# the log {path} is not readable here: {e}\n")),
        },
        None => text.push_str("# this try wrote no log\n"),
    }
    Ok(text)
}

async fn metrics(State(s): State<ApiState>) -> ApiResult<Response> {
    let states = s.store.state_counts().await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&states),
    )
        .into_response())
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
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
