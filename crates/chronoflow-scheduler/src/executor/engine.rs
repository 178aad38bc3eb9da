//! The in-process executor: the engine's jobs, run in the worker.

use std::io::Write;
use std::path::PathBuf;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};

use chronoflow_config::{LoadedConfig, PartitionDate, Repo};
use chronoflow_engine::Warehouse;
use chronoflow_engine::backfill::{BackfillOptions, backfill_range};
use chronoflow_engine::consistency::ConsistencyJob;
use chronoflow_plan::partitions::PartitionRange;
use chronoflow_serve::kv::SharedKv;
use chronoflow_serve::upload as online;
use futures::future::BoxFuture;

use super::command::open_log;
use super::{Executor, TaskRun, TryReport, Usage};
use crate::consistency::ConsistencyPublisher;

pub struct EngineExecutor {
    repo_dir: PathBuf,
    warehouse: Arc<Warehouse>,
    /// The online KV store uploads load and metadata goes to.
    kv: SharedKv,
    repo: Mutex<Option<Arc<Repo>>>,
    /// Publishes each day's figures after `consistency-metrics-compute` (gauges, alerts).
    publisher: Option<Arc<ConsistencyPublisher>>,
}

impl EngineExecutor {
    pub fn new(repo_dir: PathBuf, warehouse: Warehouse, kv: SharedKv) -> Self {
        EngineExecutor {
            repo_dir,
            warehouse: Arc::new(warehouse),
            kv,
            repo: Mutex::new(None),
            publisher: None,
        }
    }

    /// Publishes the figures of every `consistency-metrics-compute` this executor runs.
    pub fn with_publisher(mut self, publisher: Arc<ConsistencyPublisher>) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// The config of the task's job, as planned (reloading the repo when it changed).
    fn config(&self, task: &TaskRun) -> Result<(Arc<Repo>, usize), String> {
        let find = |repo: &Repo| {
            repo.configs.iter().position(|c| {
                c.path == task.job.conf_path && c.content_hash == task.job.content_hash
            })
        };
        let mut cached = self.repo.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(repo) = cached.as_ref()
            && let Some(i) = find(repo)
        {
            return Ok((repo.clone(), i));
        }
        let repo = chronoflow_config::fs::load_repo(&self.repo_dir)
            .map_err(|e| format!("loading repo {}: {e}", self.repo_dir.display()))?;
        let repo = Arc::new(repo);
        *cached = Some(repo.clone());
        match find(&repo) {
            Some(i) => Ok((repo, i)),
            None => Err(format!(
                "config {} changed or disappeared since this run was planned (the run uses the version with hash {})",
                task.job.conf_path, task.job.content_hash
            )),
        }
    }

    /// The engine's futures are not `Send` (DataFusion plans borrow across awaits), so a job
    /// runs on a blocking thread driving its own `block_on`: off the scheduler's async workers,
    /// which is where CPU-heavy work belongs anyway.
    ///
    /// Its usage is the process's CPU time during the job (`RUSAGE_SELF` before and after, not
    /// `RUSAGE_THREAD`: DataFusion spawns its work onto the runtime's threads) and the process's
    /// peak RSS. Tries running at once in this process therefore share (and each count) the
    /// same CPU and memory.
    async fn job(&self, task: &TaskRun, repo: Arc<Repo>, index: usize) -> TryReport {
        let warehouse = self.warehouse.clone();
        let kv = self.kv.clone();
        let repo_dir = self.repo_dir.clone();
        let publisher = self.publisher.clone();
        let task = task.clone();
        let handle = tokio::runtime::Handle::current();
        let ran = tokio::task::spawn_blocking(move || {
            let loaded = &repo.configs[index];
            let job = Job {
                warehouse: warehouse.as_ref(),
                kv: &kv,
                repo_dir: &repo_dir,
                task: &task,
                loaded,
                publisher: publisher.as_deref(),
            };
            let before = process_usage();
            let result = handle.block_on(job.run());
            let after = process_usage();
            let usage = match (before, after) {
                (Some(before), Some(after)) => Some(Usage {
                    exit_code: None,
                    cpu_ms: after.cpu_ms.zip(before.cpu_ms).map(|(a, b)| (a - b).max(0)),
                    max_rss_kb: after.max_rss_kb,
                }),
                _ => None,
            };
            TryReport { result, usage }
        })
        .await;
        ran.unwrap_or_else(|e| TryReport::failed(format!("the job panicked: {e}")))
    }
}

/// This process's CPU time and peak RSS so far.
fn process_usage() -> Option<Usage> {
    // SAFETY: `r` is a plain C struct the kernel fills.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    (unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) } == 0)
        .then(|| super::command::usage_of(&r))
}

impl Executor for EngineExecutor {
    fn run<'a>(&'a self, task: &'a TaskRun) -> BoxFuture<'a, TryReport> {
        Box::pin(async move {
            let (repo, i) = match self.config(task) {
                Ok(found) => found,
                Err(e) => return TryReport::failed(e),
            };
            match task.job.mode.as_str() {
                "backfill"
                | "upload"
                | "upload-to-kv"
                | "metadata-upload"
                | "log-flattener"
                | "build-comparison-table"
                | "consistency-metrics-compute" => self.job(task, repo, i).await,
                mode => TryReport::failed(format!(
                    "mode {mode} of {} is not run by the in-process executor yet; give team {:?} a command executor in chronoflow.toml",
                    task.job.config, task.job.team
                )),
            }
        })
    }
}

/// One in-process job and what it needs.
struct Job<'a> {
    warehouse: &'a Warehouse,
    kv: &'a SharedKv,
    repo_dir: &'a std::path::Path,
    task: &'a TaskRun,
    loaded: &'a LoadedConfig,
    publisher: Option<&'a ConsistencyPublisher>,
}

impl Job<'_> {
    async fn run(&self) -> Result<(), String> {
        let (task, loaded) = (self.task, self.loaded);
        let parse = |s: &str| PartitionDate::parse(s).map_err(|e| e.to_string());
        let range = PartitionRange::new(parse(&task.start_ds)?, parse(&task.end_ds)?)
            .map_err(|e| e.to_string())?;
        let mut log = open_log(&task.log_path)?;
        let name = loaded.name();
        let failed = |what: &str| {
            let what = what.to_owned();
            move |e: chronoflow_serve::ServeError| format!("{what} {name}: {e}")
        };
        match task.job.mode.as_str() {
            "backfill" => return backfill(self.warehouse, loaded, range, &mut log).await,
            "upload" => {
                let config = self.stored_config()?;
                for ds in range.dates() {
                    let info = online::upload(self.warehouse, loaded, config.clone(), ds)
                        .await
                        .map_err(failed("uploading"))?;
                    let _ = writeln!(
                        log,
                        "upload {name} ds={ds}: {} keys",
                        info.rows.saturating_sub(1)
                    );
                }
            }
            "upload-to-kv" => {
                let kv = self.kv.get().await.map_err(failed("loading"))?;
                for ds in range.dates() {
                    let total = online::upload_to_kv(
                        self.warehouse,
                        kv.as_ref(),
                        loaded,
                        ds,
                        &mut |done, total| {
                            let _ = writeln!(
                                log,
                                "upload-to-kv {name} ds={ds}: loaded {done}/{total} entries"
                            );
                        },
                    )
                    .await
                    .map_err(failed("loading"))?;
                    let _ = writeln!(log, "upload-to-kv {name} ds={ds}: {total} entries serving");
                }
            }
            "metadata-upload" => {
                let kv = self
                    .kv
                    .get()
                    .await
                    .map_err(failed("uploading the metadata of"))?;
                let stored = online::metadata_upload(kv.as_ref(), loaded, self.stored_config()?)
                    .await
                    .map_err(failed("uploading the metadata of"))?;
                let what = if stored { "stored" } else { "unchanged" };
                let _ = writeln!(
                    log,
                    "metadata-upload {name}: {what} (hash {})",
                    loaded.content_hash
                );
            }
            mode => {
                let Some(job) = ConsistencyJob::from_mode(mode) else {
                    unreachable!("mode {mode} is routed elsewhere")
                };
                for ds in range.dates() {
                    let lines = job
                        .run(self.warehouse, loaded, ds)
                        .await
                        .map_err(|e| format!("{mode} {name} ds={ds}: {e}"))?;
                    for line in lines {
                        let _ = writeln!(log, "{line}");
                    }
                    if job == ConsistencyJob::ConsistencyMetricsCompute
                        && let Some(publisher) = self.publisher
                    {
                        // The figures are committed: a failure to publish them is reported
                        // (log, warning) but does not fail the job that computed them.
                        match publisher.publish(self.warehouse, loaded, task, ds).await {
                            Ok(lines) => {
                                for line in lines {
                                    let _ = writeln!(log, "{line}");
                                }
                            }
                            Err(e) => {
                                tracing::warn!(join = name, %ds, error = %e, "publishing consistency figures");
                                let _ = writeln!(log, "publishing {name} ds={ds} failed: {e}");
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn stored_config(&self) -> Result<chronoflow_serve::codec::StoredConfig, String> {
        online::stored_config(self.repo_dir, self.loaded).map_err(|e| e.to_string())
    }
}

async fn backfill(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    range: PartitionRange,
    log: &mut std::fs::File,
) -> Result<(), String> {
    let _ = writeln!(log, "backfill {} over {range}", loaded.name());
    let steps = backfill_range(
        warehouse,
        loaded,
        range,
        BackfillOptions::default(),
        &mut |step| {
            let _ = writeln!(
                log,
                "step={}/{} table={} range={} partitions={} rows={}",
                step.index, step.total, step.output, step.range, step.partitions, step.rows
            );
        },
    )
    .await
    .map_err(|e| format!("backfilling {}: {e}", loaded.name()))?;
    if steps.is_empty() {
        let _ = writeln!(log, "every partition of {range} exists");
    }
    Ok(())
}
