//! Executors: what runs a job task. Which one a team uses is configuration.

mod command;
#[cfg(feature = "engine")]
mod engine;
pub mod profile;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

pub use command::CommandExecutor;
pub(crate) use command::{die_with_parent, open_log};
#[cfg(feature = "engine")]
pub use engine::EngineExecutor;

use crate::config::{ExecutorConfig, IN_PROCESS, SchedulerConfig};
use crate::spec::JobRef;

/// One try of one job task.
#[derive(Debug, Clone)]
pub struct TaskRun {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: i64,
    /// The run's logical date, and the range a manual or catch-up run covers.
    pub ds: String,
    pub start_ds: String,
    pub end_ds: String,
    pub job: JobRef,
    /// Where the try's output goes (the executor appends to it).
    pub log_path: PathBuf,
}

/// What a try used, as measured by its executor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The command's exit status; negative when a signal killed it (`-9`: SIGKILL). `None`
    /// for in-process jobs.
    pub exit_code: Option<i64>,
    /// User + system CPU time.
    pub cpu_ms: Option<i64>,
    /// Peak resident memory, KiB.
    pub max_rss_kb: Option<i64>,
}

impl Usage {
    /// The usage of two jobs run one after the other in one try (metadata uploads): CPU adds
    /// up, memory is the larger peak, the exit code is the first failure's (else the last).
    pub fn then(self, next: Usage) -> Usage {
        let add = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        Usage {
            exit_code: match self.exit_code {
                Some(code) if code != 0 => Some(code),
                _ => next.exit_code.or(self.exit_code),
            },
            cpu_ms: add(self.cpu_ms, next.cpu_ms),
            max_rss_kb: self.max_rss_kb.max(next.max_rss_kb),
        }
    }
}

/// How a try of a job ended: its result (`Err` as a user reads it; it ends up in alerts) and,
/// when the executor could measure it, what it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryReport {
    pub result: Result<(), String>,
    pub usage: Option<Usage>,
}

impl TryReport {
    pub fn ok() -> Self {
        TryReport {
            result: Ok(()),
            usage: None,
        }
    }

    pub fn failed(error: impl Into<String>) -> Self {
        TryReport {
            result: Err(error.into()),
            usage: None,
        }
    }
}

impl From<Result<(), String>> for TryReport {
    fn from(result: Result<(), String>) -> Self {
        TryReport {
            result,
            usage: None,
        }
    }
}

/// Runs jobs.
pub trait Executor: Send + Sync {
    fn run<'a>(&'a self, task: &'a TaskRun) -> BoxFuture<'a, TryReport>;

    /// Starts a long-running job (a streaming job) that outlives this try; returns its process
    /// id. The worker's keep-alive decides when to call it (start if absent, restart if dead).
    fn start_detached<'a>(&'a self, task: &'a TaskRun) -> BoxFuture<'a, Result<u32, String>> {
        Box::pin(async move {
            Err(format!(
                "mode {} of {} needs a command executor (give team {:?} one in chronoflow.toml)",
                task.job.mode, task.job.config, task.job.team
            ))
        })
    }
}

/// Does nothing, after an optional sleep: benchmarks and tests of the scheduler itself.
#[derive(Debug, Default)]
pub struct NoopExecutor {
    pub sleep: Duration,
}

impl Executor for NoopExecutor {
    fn run<'a>(&'a self, _task: &'a TaskRun) -> BoxFuture<'a, TryReport> {
        Box::pin(async move {
            if !self.sleep.is_zero() {
                tokio::time::sleep(self.sleep).await;
            }
            TryReport::ok()
        })
    }
}

/// The executors of a worker, by name, and which team uses which.
#[derive(Clone)]
pub struct Executors {
    by_name: BTreeMap<String, Arc<dyn Executor>>,
    config: Arc<SchedulerConfig>,
}

impl Executors {
    /// Builds the configured executors. `engine` is the in-process one (it needs the repo and
    /// the warehouse, which the caller has). With `[profiles]`, command executors resolve each
    /// try's profile into their placeholders and the in-process one logs it.
    pub fn new(
        config: Arc<SchedulerConfig>,
        engine: Arc<dyn Executor>,
        repo: Option<PathBuf>,
    ) -> Self {
        let profiles = Arc::new(config.profiles.clone());
        let engine: Arc<dyn Executor> = if profiles.is_empty() {
            engine
        } else {
            Arc::new(profile::LoggingProfile::new(
                engine,
                profiles.clone(),
                repo.clone(),
            ))
        };
        let mut by_name: BTreeMap<String, Arc<dyn Executor>> = BTreeMap::new();
        by_name.insert(IN_PROCESS.to_owned(), engine);
        for (name, e) in &config.executors {
            let executor: Arc<dyn Executor> = match e {
                ExecutorConfig::InProcess => by_name[IN_PROCESS].clone(),
                ExecutorConfig::Command { argv, env } => Arc::new(
                    CommandExecutor::new(
                        argv.clone(),
                        env.clone(),
                        repo.clone(),
                        config.environment.clone(),
                    )
                    .with_profiles(profiles.clone()),
                ),
                ExecutorConfig::Noop { sleep_ms } => Arc::new(NoopExecutor {
                    sleep: Duration::from_millis(*sleep_ms),
                }),
            };
            by_name.insert(name.clone(), executor);
        }
        Executors { by_name, config }
    }

    /// The executor of `team` (configuration is validated, so the name exists).
    pub fn for_team(&self, team: &str) -> Arc<dyn Executor> {
        let name = self.config.executor_of(team);
        self.by_name
            .get(name)
            .unwrap_or(&self.by_name[IN_PROCESS])
            .clone()
    }
}
