//! `standalone`, `scheduler` and `worker`: the long-running processes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chronoflow_engine::Warehouse;
use chronoflow_scheduler::api::ApiState;
use chronoflow_scheduler::clock::{Clock, ScaledClock, SystemClock, clock_from_env};
use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::consistency::{ConsistencyPublisher, WarehouseConsistency};
use chronoflow_scheduler::executor::{EngineExecutor, Executors};
use chronoflow_scheduler::failpoint::FailPoints;
use chronoflow_scheduler::history::JobRunWriter;
use chronoflow_scheduler::metrics::Metrics;
use chronoflow_scheduler::scheduler::{Scheduler, SpecSource};
use chronoflow_scheduler::spec::{DagSpec, profile_errors, specs_from_plan};
use chronoflow_scheduler::store::Store;
use chronoflow_scheduler::streams::{ChildProcessLauncher, StreamLauncher, StreamSupervisor};
use chronoflow_scheduler::worker::Worker;
use chronoflow_serve::Fetcher;
use chronoflow_serve::http::FetchLimits;
use chronoflow_serve::kv::SharedKv;
use chronoflow_serve::logging::FetchLogger;
use tokio::sync::watch;

use super::WarehouseSpec;
use crate::cli::{SchedulerArgs, SourceArgs, StandaloneArgs, StateArgs, WorkerArgs};

/// Where `standalone` serves its HTTP API unless told otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:8686";

/// Plans the repo (or reads a specs file) whenever the scheduler asks.
pub struct RepoSource {
    repo: PathBuf,
    specs_file: Option<PathBuf>,
    config: Arc<SchedulerConfig>,
}

impl SpecSource for RepoSource {
    fn specs(&self) -> Result<Vec<DagSpec>, String> {
        if let Some(file) = &self.specs_file {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            return serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()));
        }
        let repo = chronoflow_config::fs::load_repo(&self.repo)
            .map_err(|e| format!("loading repo {}: {e}", self.repo.display()))?;
        let plan = chronoflow_plan::plan(&repo);
        let errors: Vec<String> = plan
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        if !errors.is_empty() {
            let shown = errors
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n");
            let more = errors.len().saturating_sub(10);
            return Err(format!(
                "the repo {} has {} error(s); fix them (chronoflow check) for the change to take effect:\n{shown}{}",
                self.repo.display(),
                errors.len(),
                if more > 0 {
                    format!("\n… and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        // Each try of such a job would fail on its profile: keep the last good DAGs instead.
        let profile_errors = profile_errors(&plan, &self.config);
        if !profile_errors.is_empty() {
            return Err(format!(
                "the repo {} has config tags naming no [profiles] entry of the scheduler config; fix them for the change to take effect:\n{}",
                self.repo.display(),
                profile_errors.join("\n")
            ));
        }
        Ok(specs_from_plan(&plan, &self.config))
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn load_config(state: &StateArgs, repo: &Path) -> anyhow::Result<Arc<SchedulerConfig>> {
    let path = state
        .config
        .clone()
        .unwrap_or_else(|| repo.join("chronoflow.toml"));
    if state.config.is_some() && !path.exists() {
        anyhow::bail!("scheduler config {} does not exist", path.display());
    }
    Ok(Arc::new(SchedulerConfig::load(&path)?))
}

pub async fn open_store(state: &StateArgs, config: &SchedulerConfig) -> anyhow::Result<Arc<Store>> {
    let store = if let Some(path) = state.database_url.strip_prefix("sqlite://") {
        Store::open_sqlite(Path::new(path)).await?
    } else {
        Store::open(&state.database_url).await?
    };
    store.set_team_limits(
        config
            .teams
            .iter()
            .filter_map(|(team, t)| t.concurrency.map(|c| (team.clone(), c)))
            .collect(),
    );
    Ok(Arc::new(store))
}

struct Parts {
    store: Arc<Store>,
    config: Arc<SchedulerConfig>,
    warehouse: Arc<Warehouse>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

async fn parts(state: &StateArgs, repo: &Path, warehouse: &WarehouseSpec) -> anyhow::Result<Parts> {
    let config = load_config(state, repo)?;
    let store = open_store(state, &config).await?;
    let warehouse = Arc::new(warehouse.open()?);
    Ok(Parts {
        store,
        config,
        warehouse,
        metrics: Arc::new(Metrics::default()),
        clock: {
            let clock = clock_from_env().map_err(anyhow::Error::msg)?;
            if std::env::var_os(ScaledClock::ENV).is_some() {
                tracing::warn!(
                    now_ms = clock.now_ms(),
                    "running on simulated time ({})",
                    ScaledClock::ENV
                );
            }
            clock
        },
    })
}

fn source(args: &SourceArgs, config: Arc<SchedulerConfig>) -> Arc<dyn SpecSource> {
    Arc::new(RepoSource {
        repo: args.repo.repo.clone(),
        specs_file: args.specs.clone(),
        config,
    })
}

fn worker(
    p: &Parts,
    repo: &Path,
    state: &StateArgs,
    warehouse: &WarehouseSpec,
    kv: SharedKv,
    slots: Option<usize>,
    id: Option<String>,
) -> anyhow::Result<Arc<Worker>> {
    let streams_kv = kv.clone();
    // The OOC DAG's metrics jobs publish their figures: gauges in the store, alerts.
    let publisher = ConsistencyPublisher::new(p.store.clone(), p.config.clone(), p.clock.clone());
    let engine = EngineExecutor::new(repo.to_owned(), warehouse.open()?, kv)
        .with_publisher(Arc::new(publisher));
    let executors = Executors::new(p.config.clone(), Arc::new(engine), Some(repo.to_owned()));
    let slots = slots.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let id = id.unwrap_or_else(|| {
        format!(
            "{}-{}",
            chronoflow_scheduler::worker::hostname(),
            std::process::id()
        )
    });
    // Every finished try also lands in the warehouse's `chronoflow.job_runs` (flushed when the
    // worker stops).
    let history = JobRunWriter::start(warehouse.open()?, Duration::from_secs(5));
    let streams = stream_supervisor(p, repo, state, warehouse, streams_kv, &id)?;
    Ok(Arc::new(
        Worker::new(
            id,
            p.store.clone(),
            p.clock.clone(),
            p.config.clone(),
            executors,
            slots,
            state.home.join("logs"),
            p.metrics.clone(),
            Arc::new(FailPoints::default()),
        )
        .with_history(Arc::new(history))
        .with_streams(streams),
    ))
}

/// The supervisor of the streams this worker runs (teams on the in-process executor). With a
/// Redis KV store each stream is a child process (`chronoflow run --mode streaming`), so a crash
/// stays in it; with the embedded store it runs in this process, because only one process can
/// open the redb file (standalone's fetcher holds it).
fn stream_supervisor(
    p: &Parts,
    repo: &Path,
    state: &StateArgs,
    warehouse: &WarehouseSpec,
    kv: SharedKv,
    worker_id: &str,
) -> anyhow::Result<Arc<StreamSupervisor>> {
    let streaming = &p.config.streaming;
    let redis = kv.spec().starts_with("redis://") || kv.spec().starts_with("rediss://");
    let launcher: Arc<dyn StreamLauncher> = if redis {
        let exe = std::env::current_exe().context("finding this program (streams run it)")?;
        Arc::new(
            ChildProcessLauncher::chronoflow(
                &exe,
                repo,
                &warehouse.uri,
                kv.spec(),
                streaming.kafka_brokers.as_deref(),
                Duration::from_secs(streaming.stop_grace_seconds),
            )
            .with_fetch_options(streaming.fetch_max_wait_ms, streaming.max_fetch_bytes),
        )
    } else {
        in_process_launcher(
            repo,
            warehouse,
            kv,
            streaming.kafka_brokers.clone(),
            FetchOptions {
                max_wait: streaming.fetch_max_wait_ms.map(Duration::from_millis),
                max_bytes: streaming.max_fetch_bytes,
            },
        )
    };
    Ok(Arc::new(StreamSupervisor::new(
        worker_id.to_owned(),
        p.store.clone(),
        p.config.clone(),
        state.home.join("logs").join("streaming"),
        launcher,
    )))
}

/// Runs streams in this process, on its shared KV handle: the embedded store is one file only
/// one process can open, and `standalone`'s fetcher holds it, so its streams run beside it. A
/// stream's panic is caught and reported as a crash; the supervisor restarts it.
pub fn in_process_launcher(
    repo: &Path,
    warehouse: &WarehouseSpec,
    kv: SharedKv,
    kafka_brokers: Option<String>,
    fetch: FetchOptions,
) -> Arc<dyn StreamLauncher> {
    Arc::new(InProcessLauncher {
        repo: repo.to_owned(),
        warehouse: warehouse.clone(),
        kv,
        kafka_brokers,
        fetch,
    })
}

/// `[streaming]`'s fetch settings for in-process consumers; unset, the consumer's defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchOptions {
    pub max_wait: Option<Duration>,
    pub max_bytes: Option<i32>,
}

struct InProcessLauncher {
    repo: PathBuf,
    warehouse: WarehouseSpec,
    kv: SharedKv,
    kafka_brokers: Option<String>,
    fetch: FetchOptions,
}

impl StreamLauncher for InProcessLauncher {
    fn run(
        &self,
        job: chronoflow_scheduler::spec::JobRef,
        status_file: PathBuf,
        _log_path: PathBuf,
        stop: watch::Receiver<bool>,
    ) -> futures::future::BoxFuture<'static, Result<(), String>> {
        let repo_dir = self.repo.clone();
        let warehouse = self.warehouse.clone();
        let kv = self.kv.clone();
        let fetch = self.fetch;
        let brokers: Vec<String> = self
            .kafka_brokers
            .iter()
            .flat_map(|b| b.split(','))
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty())
            .collect();
        let stream = move || async move {
            let repo = chronoflow_config::fs::load_repo(&repo_dir).map_err(|e| e.to_string())?;
            let loaded = repo
                .configs
                .iter()
                .find(|c| c.path == job.conf_path)
                .ok_or_else(|| format!("{} is not in the repo (any more)", job.conf_path))?;
            let warehouse = warehouse.open().map_err(|e| format!("{e:#}"))?;
            let kv = kv.get().await.map_err(|e| e.to_string())?;
            let defaults = chronoflow_stream::StreamOptions::default();
            let options = chronoflow_stream::StreamOptions {
                brokers,
                status_file: Some(status_file),
                repo_dir: Some(repo_dir.clone()),
                max_wait: fetch.max_wait.unwrap_or(defaults.max_wait),
                max_fetch_bytes: fetch.max_bytes.unwrap_or(defaults.max_fetch_bytes),
                ..defaults
            };
            let status = Arc::new(std::sync::Mutex::new(
                chronoflow_stream::StreamStatus::default(),
            ));
            chronoflow_stream::run_stream(loaded, &warehouse, kv, options, status, stop)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        // The stream runs on a thread of its own, driven by this runtime: its future borrows
        // the repo it loaded (not `Send` in general), and a panic stays on that thread.
        let handle = tokio::runtime::Handle::current();
        Box::pin(async move {
            let ran = tokio::task::spawn_blocking(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle.block_on(stream())))
            })
            .await;
            match ran {
                Ok(Ok(result)) => result,
                Ok(Err(panic)) => Err(format!(
                    "the stream panicked: {}",
                    panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default()
                )),
                Err(e) => Err(format!("the stream's thread failed: {e}")),
            }
        })
    }
}

/// Turns true on the first Ctrl-C (or SIGTERM); a second one exits at once.
pub(crate) fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("shutting down: draining running tasks (Ctrl-C again to exit now)");
        let _ = tx.send(true);
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
    rx
}

/// The API port's listener. Bound before the state store or the KV store is opened, so an
/// address that is taken fails without creating either.
async fn bind_api(listen: Option<&str>) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    Ok(Some(listener))
}

/// Serves the scheduler API and the web UI, and with a fetcher its `/v1/fetch/...` routes, on
/// one port behind the web guard.
async fn serve_api(
    listener: tokio::net::TcpListener,
    p: &Parts,
    args: &SchedulerArgs,
    serving: Option<(Arc<Fetcher>, SharedKv, FetchLimits)>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let address = listener.local_addr()?;
    chronoflow_web::check_listener(
        address,
        p.store.has_live_tokens().await?,
        args.web.insecure_no_auth,
    )?;
    tracing::info!(address = %address, "HTTP API and web UI listening (http://{address}/ui)");
    let state = ApiState {
        store: p.store.clone(),
        clock: p.clock.clone(),
        metrics: p.metrics.clone(),
        consistency: Some(Arc::new(WarehouseConsistency::new(
            p.warehouse.clone(),
            args.source.repo.repo.clone(),
            p.config.clone(),
        ))),
    };
    let (fetcher, kv, fetch_limits) = match serving {
        Some((fetcher, kv, limits)) => (Some(fetcher), Some(kv), limits),
        None => (None, None, FetchLimits::default()),
    };
    let web = Arc::new(chronoflow_web::WebContext::new(
        p.store.clone(),
        p.clock.clone(),
        p.warehouse.clone(),
        args.source.repo.repo.clone(),
        p.config.clone(),
        fetcher.clone(),
        kv,
        args.web.quality_ratio,
        chronoflow_web::GuardOptions {
            allowed_hosts: args.web.allowed_hosts.clone(),
        },
    )?);
    let fetch_routes = fetcher.map(|f| chronoflow_serve::http::router(f, fetch_limits));
    let app = chronoflow_web::app(state, web, fetch_routes);
    let limits = args.server.limits();
    Ok(tokio::spawn(async move {
        if let Err(e) = chronoflow_web::serve_with_limits(listener, app, limits, shutdown).await {
            tracing::error!(error = %e, "HTTP API stopped");
        }
    }))
}

fn new_scheduler(p: &Parts) -> Scheduler {
    Scheduler::new(
        p.store.clone(),
        p.clock.clone(),
        p.config.clone(),
        Some(p.warehouse.clone() as Arc<dyn chronoflow_scheduler::scheduler::PartitionCatalog>),
        p.metrics.clone(),
        Arc::new(FailPoints::default()),
    )
}

pub fn standalone(args: &StandaloneArgs) -> anyhow::Result<ExitCode> {
    let s = &args.scheduler;
    runtime()?.block_on(async {
        let listener = bind_api(match (&s.listen, args.no_api) {
            (_, true) => None,
            (Some(listen), false) => Some(listen.as_str()),
            (None, false) => Some(DEFAULT_LISTEN),
        })
        .await?;
        let warehouse = s.warehouse.spec(Some(&s.source.repo.repo))?;
        let p = parts(&s.state, &s.source.repo.repo, &warehouse).await?;
        let shutdown = shutdown_signal();
        let (stop_tx, stop_rx) = watch::channel(false);
        // Either a signal or `--until-idle` stops everything.
        let mut sig = shutdown.clone();
        let forward = stop_tx.clone();
        tokio::spawn(async move {
            let _ = sig.wait_for(|s| *s).await;
            let _ = forward.send(true);
        });
        let scheduler = Arc::new(new_scheduler(&p));
        let source = source(&s.source, p.config.clone());
        // Plan before anything runs, so a broken repo is reported at once.
        scheduler.replan(source.clone()).await?;
        if let Some((false, message, _)) = p.store.plan_status().await? {
            tracing::error!(error = %message, "the repo does not plan");
        }
        // One KV handle for the uploads the worker runs and the fetches the API answers: the
        // embedded store can be open in one process only.
        let kv = SharedKv::new(args.kv.kv.clone());
        let logger = FetchLogger::start(warehouse.open()?, Duration::from_secs(5));
        let exported = logger.clone();
        p.metrics
            .add_source(Box::new(move |out| exported.render_metrics(out)));
        let fetcher = Arc::new(Fetcher::new(kv.clone(), Some(logger.clone())));
        let api = match listener {
            Some(listener) => {
                let serving = Some((fetcher, kv.clone(), args.fetch_limits.limits()));
                Some(serve_api(listener, &p, s, serving, stop_rx.clone()).await?)
            }
            None => None,
        };
        let worker = worker(
            &p,
            &s.source.repo.repo,
            &s.state,
            &warehouse,
            kv,
            args.slots,
            None,
        )?;
        let worker_task = tokio::spawn(worker.clone().run(stop_rx.clone()));
        let sched = scheduler.clone();
        let every = Duration::from_secs(s.source.replan_seconds.max(1));
        let tick = Duration::from_millis(s.tick_ms.max(1));
        let sched_rx = stop_rx.clone();
        let sched_task =
            tokio::spawn(async move { sched.run(tick, Some((source, every)), sched_rx).await });
        if args.until_idle {
            let store = p.store.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let busy = async {
                        let running = store.runs(None, Some("running"), 1).await?;
                        let queued = store.runs(None, Some("queued"), 1).await?;
                        anyhow::Ok(!running.is_empty() || !queued.is_empty())
                    };
                    if let Ok(false) = busy.await {
                        let _ = stop_tx.send(true);
                        return;
                    }
                }
            });
        }
        sched_task.await?;
        worker_task.await??;
        if let Some(api) = api {
            api.await?;
        }
        logger.flush().await;
        report_runs(&p.store).await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// What ran: one line per run of this session's store, newest first.
async fn report_runs(store: &Store) -> anyhow::Result<()> {
    let runs = store.runs(None, None, 20).await?;
    for r in runs {
        eprintln!(
            "run {}/{} ds={} range={}..{} {}",
            r.dag_id, r.run_id, r.ds, r.start_ds, r.end_ds, r.state
        );
    }
    Ok(())
}

pub fn scheduler(args: &SchedulerArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let listener = bind_api(args.listen.as_deref()).await?;
        let warehouse = args.warehouse.spec(Some(&args.source.repo.repo))?;
        let p = parts(&args.state, &args.source.repo.repo, &warehouse).await?;
        let shutdown = shutdown_signal();
        let scheduler = new_scheduler(&p);
        let api = match listener {
            Some(listener) => Some(serve_api(listener, &p, args, None, shutdown.clone()).await?),
            None => None,
        };
        let every = Duration::from_secs(args.source.replan_seconds.max(1));
        scheduler
            .run(
                Duration::from_millis(args.tick_ms.max(1)),
                Some((source(&args.source, p.config.clone()), every)),
                shutdown,
            )
            .await;
        if let Some(api) = api {
            api.await?;
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

pub fn worker_command(args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let warehouse = args.warehouse.spec(Some(&args.repo.repo))?;
        let p = parts(&args.state, &args.repo.repo, &warehouse).await?;
        let shutdown = shutdown_signal();
        let w = worker(
            &p,
            &args.repo.repo,
            &args.state,
            &warehouse,
            SharedKv::new(args.kv.kv.clone()),
            args.slots,
            args.id.clone(),
        )?;
        w.run(shutdown).await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// `dags sync`: one re-planning.
pub fn sync(source_args: &SourceArgs, state: &StateArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let config = load_config(state, &source_args.repo.repo)?;
        let store = open_store(state, &config).await?;
        let specs = source(source_args, config.clone())
            .specs()
            .map_err(anyhow::Error::msg)?;
        let report = store.sync_dags(&specs, SystemClock.now_ms()).await?;
        println!(
            "{} DAGs: {} added, {} changed, {} removed, {} unchanged",
            specs.len(),
            report.added.len(),
            report.changed.len(),
            report.removed.len(),
            report.unchanged
        );
        for (dag, why) in &report.rejected {
            println!("rejected {dag}: {why}");
        }
        Ok(if report.rejected.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
