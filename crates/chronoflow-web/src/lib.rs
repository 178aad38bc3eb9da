//! The web UI: one page application embedded in the binary, the JSON routes its pages read, and
//! the guard every request on the API port passes (Host check, cross-site check, tokens and
//! sessions, team-scoped roles).
//!
//! Layers: `guard` decides who a request is and whether it may go on; the route modules
//! (`operate`, `dashboards`, `repo`, `tables`, `online`) only read the state store, the repo and
//! the warehouse, and act through the scheduler's own store functions. Nothing here is needed to
//! schedule or serve: a process without the UI runs the same.

mod assets;
mod dashboards;
mod error;
mod guard;
mod online;
mod operate;
mod repo;
mod tables;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use chronoflow_engine::Warehouse;
use chronoflow_scheduler::api::ApiState;
use chronoflow_scheduler::clock::Clock;
use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::store::Store;
use chronoflow_serve::Fetcher;
use chronoflow_serve::kv::SharedKv;
use chronoflow_serve::server::ServerLimits;

pub use error::{Result, WebError};
pub use guard::{GuardOptions, check_listener};

/// What the pages read, shared by every request.
pub struct WebContext {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub warehouse: Arc<Warehouse>,
    /// The config repo the scheduler plans (for lineage, configs, freshness).
    pub repo_dir: PathBuf,
    pub scheduler_config: Arc<SchedulerConfig>,
    /// The fetcher of this process (standalone), for the online pages; `None` without serving.
    pub fetcher: Option<Arc<Fetcher>>,
    pub kv: Option<SharedKv>,
    /// A partition is flagged when its row count is below `ratio` × the trailing median, or
    /// above the median / `ratio`.
    pub quality_ratio: f64,
    pub guard: guard::Guard,
    repo_cache: repo::RepoCache,
    grid_cache: operate::GridCache,
    list_cache: operate::ListCache,
}

impl WebContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        warehouse: Arc<Warehouse>,
        repo_dir: PathBuf,
        scheduler_config: Arc<SchedulerConfig>,
        fetcher: Option<Arc<Fetcher>>,
        kv: Option<SharedKv>,
        quality_ratio: f64,
        guard: GuardOptions,
    ) -> Result<WebContext> {
        if !(quality_ratio > 0.0 && quality_ratio <= 1.0) {
            return Err(WebError::BadRequest(format!(
                "--quality-ratio must be in (0, 1], got {quality_ratio}"
            )));
        }
        Ok(WebContext {
            store,
            clock,
            warehouse,
            repo_dir,
            scheduler_config,
            fetcher,
            kv,
            quality_ratio,
            guard: guard::Guard::new(guard)?,
            repo_cache: repo::RepoCache::default(),
            grid_cache: operate::GridCache::default(),
            list_cache: operate::ListCache::default(),
        })
    }
}

pub type WebState = Arc<WebContext>;

/// The whole API port: the scheduler's REST API, the UI and its routes, and `extra` (the
/// fetch routes), all behind the guard.
pub fn app(api: ApiState, ctx: WebState, extra: Option<Router>) -> Router {
    let ui: Router = Router::new()
        .merge(assets::routes())
        .merge(guard::routes())
        .merge(operate::routes())
        .merge(dashboards::routes())
        .merge(repo::routes())
        .merge(tables::routes())
        .merge(online::routes())
        .with_state(ctx.clone());
    let mut app = chronoflow_scheduler::api::router(api).merge(ui);
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    // Unknown paths and methods answer JSON like every other error (axum's own are empty). Set
    // here, on the merged router: a fallback on one of the routers merged above would clash.
    app.fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(ctx, guard::check))
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> axum::response::Response {
    json_error(
        axum::http::StatusCode::NOT_FOUND,
        format!("no route {method} {}", uri.path()),
    )
}

async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    json_error(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not answer {method}", uri.path()),
    )
}

fn json_error(status: axum::http::StatusCode, message: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Serves `app` on `listener` with the default [`ServerLimits`] until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_with_limits(listener, app, ServerLimits::default(), shutdown).await
}

/// Serves `app` on `listener` until `shutdown` turns true, on the bounded server every port of
/// chronoflow runs on (header and request timeouts, a cap on connections).
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ServerLimits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    chronoflow_serve::server::serve(listener, app, limits, async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    })
    .await
}
