//! The resource profile of a try (`[profiles]`, `chronoflow_plan::profile`), resolved the same
//! way for every executor: the command executor passes it to its argv and env, the in-process
//! executor only logs it (it runs in the worker, on no cluster).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use chronoflow_config::Repo;
use chronoflow_plan::profile::{Profiles, ResolvedProfile, mode_named};
use futures::future::BoxFuture;

use super::{Executor, TaskRun, TryReport};

/// Environment variables a command gets when its job has a profile (unset fields are absent).
pub const PROFILE_ENV: [(&str, &str); 6] = [
    ("CHRONOFLOW_PROFILE", "name"),
    ("CHRONOFLOW_PROFILE_CPU", "cpu"),
    ("CHRONOFLOW_PROFILE_MEMORY", "memory"),
    ("CHRONOFLOW_PROFILE_CLUSTER", "cluster"),
    ("CHRONOFLOW_PROFILE_POOL", "pool"),
    ("CHRONOFLOW_PROFILE_QUEUE", "queue"),
];

/// One field of a profile by the name placeholders use (`{profile.<field>}`).
pub fn field<'p>(profile: &'p ResolvedProfile, name: &str) -> Option<&'p str> {
    match name {
        "name" => Some(profile.name.as_str()),
        "cpu" => profile.cpu.as_deref(),
        "memory" => profile.memory.as_deref(),
        "cluster" => profile.cluster.as_deref(),
        "pool" => profile.pool.as_deref(),
        "queue" => profile.queue.as_deref(),
        _ => None,
    }
}

/// The placeholders of a profile: `{profile.name}`, `{profile.cpu}`, `{profile.memory}`,
/// `{profile.cluster}`, `{profile.pool}`, `{profile.queue}`; each is empty when the job has no
/// profile or its profile leaves the field unset.
pub fn placeholders(profile: Option<&ResolvedProfile>) -> Vec<(String, String)> {
    PROFILE_ENV
        .iter()
        .map(|(_, name)| {
            let value = profile.and_then(|p| field(p, name)).unwrap_or_default();
            (format!("{{profile.{name}}}"), value.to_owned())
        })
        .collect()
}

/// The `CHRONOFLOW_PROFILE*` variables of a profile.
pub fn env(profile: Option<&ResolvedProfile>) -> BTreeMap<String, String> {
    let Some(p) = profile else {
        return BTreeMap::new();
    };
    PROFILE_ENV
        .iter()
        .filter_map(|(var, name)| field(p, name).map(|v| ((*var).to_owned(), v.to_owned())))
        .collect()
}

/// The line a try's log starts with when its job has a profile.
pub fn log_line(p: &ResolvedProfile) -> String {
    let fields: Vec<String> = PROFILE_ENV[1..]
        .iter()
        .filter_map(|(_, name)| field(p, name).map(|v| format!("{name}={v}")))
        .collect();
    format!(
        "profile {} (selected by {}): {}",
        p.name,
        p.selected_by,
        if fields.is_empty() {
            "no resources set".to_owned()
        } else {
            fields.join(" ")
        }
    )
}

/// The profile of `task`'s job, its tags read from `repo` (a config the repo no longer has
/// carries none). An error names the bad tag or selector.
pub fn resolve(
    profiles: &Profiles,
    repo: Option<&Repo>,
    task: &TaskRun,
) -> Result<Option<ResolvedProfile>, String> {
    if profiles.is_empty() {
        return Ok(None);
    }
    let Some(mode) = mode_named(&task.job.mode) else {
        return Ok(None);
    };
    let tags = repo
        .and_then(|r| r.configs.iter().find(|c| c.path == task.job.conf_path))
        .map(|c| c.config.metadata().tags())
        .unwrap_or_default();
    profiles
        .resolve(&task.job.config, mode, &task.job.team, &tags)
        .map_err(|e| e.to_string())
}

/// The in-process executor with each try's profile written at the top of its log. The profile
/// changes nothing in how the job runs, so a profile that cannot be resolved is logged, and
/// the job runs anyway.
pub struct LoggingProfile {
    inner: Arc<dyn Executor>,
    profiles: Arc<Profiles>,
    repo_dir: Option<PathBuf>,
    repo: Mutex<Option<Arc<Repo>>>,
}

impl LoggingProfile {
    pub fn new(
        inner: Arc<dyn Executor>,
        profiles: Arc<Profiles>,
        repo_dir: Option<PathBuf>,
    ) -> Self {
        LoggingProfile {
            inner,
            profiles,
            repo_dir,
            repo: Mutex::new(None),
        }
    }

    fn log_profile(&self, task: &TaskRun) {
        let repo = self.repo_dir.as_ref().and_then(|dir| {
            let mut cached = self.repo.lock().unwrap_or_else(PoisonError::into_inner);
            if !is_fresh(cached.as_deref(), task) {
                *cached = chronoflow_config::fs::load_repo(dir).ok().map(Arc::new);
            }
            cached.clone()
        });
        let line = match resolve(&self.profiles, repo.as_deref(), task) {
            Ok(Some(p)) => log_line(&p),
            Ok(None) => return,
            Err(e) => format!("profile: {e} (ignored: the in-process executor runs in the worker)"),
        };
        if let Ok(mut log) = super::open_log(&task.log_path) {
            let _ = writeln!(log, "{line}");
        }
    }
}

/// Whether `repo` holds the task's config as planned (else it is reloaded).
pub fn is_fresh(repo: Option<&Repo>, task: &TaskRun) -> bool {
    repo.is_some_and(|r| {
        r.configs
            .iter()
            .any(|c| c.path == task.job.conf_path && c.content_hash == task.job.content_hash)
    })
}

impl Executor for LoggingProfile {
    fn run<'a>(&'a self, task: &'a TaskRun) -> BoxFuture<'a, TryReport> {
        self.log_profile(task);
        self.inner.run(task)
    }

    fn start_detached<'a>(&'a self, task: &'a TaskRun) -> BoxFuture<'a, Result<u32, String>> {
        self.log_profile(task);
        self.inner.start_detached(task)
    }
}
