//! The in-process executor: the engine's jobs, run in the worker.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chronoflow_config::{LoadedConfig, PartitionDate, Repo};
use chronoflow_engine::Warehouse;
use chronoflow_engine::backfill::{BackfillOptions, backfill_range};
use chronoflow_plan::partitions::PartitionRange;
use futures::future::BoxFuture;

use super::command::open_log;
use super::{Executor, TaskRun};

pub struct EngineExecutor {
    repo_dir: PathBuf,
    warehouse: Arc<Warehouse>,
    /// Where `metadata-upload` writes the configs the fetcher serves.
    metadata_dir: PathBuf,
    repo: Mutex<Option<Arc<Repo>>>,
}

impl EngineExecutor {
    pub fn new(repo_dir: PathBuf, warehouse: Warehouse, metadata_dir: PathBuf) -> Self {
        EngineExecutor {
            repo_dir,
            warehouse: Arc::new(warehouse),
            metadata_dir,
            repo: Mutex::new(None),
        }
    }

    /// The config of the task's job, as planned (reloading the repo when it changed).
    fn config(&self, task: &TaskRun) -> Result<(Arc<Repo>, usize), String> {
        let find = |repo: &Repo| {
            repo.configs.iter().position(|c| {
                c.path == task.job.conf_path && c.content_hash == task.job.content_hash
            })
        };
        let mut cached = self.repo.lock().unwrap();
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
    async fn backfill(&self, task: &TaskRun, repo: Arc<Repo>, index: usize) -> Result<(), String> {
        let warehouse = self.warehouse.clone();
        let task = task.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(backfill(warehouse.as_ref(), &task, &repo.configs[index]))
        })
        .await
        .map_err(|e| format!("the job panicked: {e}"))?
    }

    /// Stores the compiled config where the fetcher reads definitions (atomically: a reader
    /// sees the old file or the new one).
    fn upload_metadata(&self, task: &TaskRun, loaded: &LoadedConfig) -> Result<(), String> {
        let source = self.repo_dir.join(&loaded.path);
        let bytes = std::fs::read(&source).map_err(|e| format!("{}: {e}", source.display()))?;
        std::fs::create_dir_all(&self.metadata_dir)
            .map_err(|e| format!("{}: {e}", self.metadata_dir.display()))?;
        let target = self.metadata_dir.join(format!("{}.json", loaded.name()));
        let tmp = target.with_extension(format!("json.tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &target).map_err(|e| format!("{}: {e}", target.display()))?;
        let mut log = open_log(&task.log_path)?;
        let _ = writeln!(
            log,
            "uploaded the metadata of {} to {}",
            loaded.name(),
            target.display()
        );
        Ok(())
    }
}

impl Executor for EngineExecutor {
    fn run<'a>(&'a self, task: &'a TaskRun) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (repo, i) = self.config(task)?;
            let loaded = &repo.configs[i];
            match task.job.mode.as_str() {
                "backfill" => self.backfill(task, repo.clone(), i).await,
                "metadata-upload" => self.upload_metadata(task, loaded),
                mode => Err(format!(
                    "mode {mode} of {} is not run by the in-process executor yet; give team {:?} a command executor in chronoflow.toml",
                    task.job.config, task.job.team
                )),
            }
        })
    }
}

async fn backfill(
    warehouse: &Warehouse,
    task: &TaskRun,
    loaded: &LoadedConfig,
) -> Result<(), String> {
    let parse = |s: &str| PartitionDate::parse(s).map_err(|e| e.to_string());
    let range = PartitionRange::new(parse(&task.start_ds)?, parse(&task.end_ds)?)
        .map_err(|e| e.to_string())?;
    let mut log = open_log(&task.log_path)?;
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
