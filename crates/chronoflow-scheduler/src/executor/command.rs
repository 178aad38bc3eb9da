//! The command executor: one program per try, for clusters (`zipline run ...`, Chronon's
//! `run.py`). Arguments are an argv list with placeholders replaced inside each element; no
//! shell ever sees a config value.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};

use chronoflow_config::Repo;
use chronoflow_plan::profile::{Profiles, ResolvedProfile};
use futures::future::BoxFuture;

use super::{Executor, TaskRun, TryReport, Usage, profile};

pub struct CommandExecutor {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    repo_dir: Option<PathBuf>,
    environment: String,
    repo: Mutex<Option<Arc<Repo>>>,
    profiles: Arc<Profiles>,
}

impl CommandExecutor {
    pub fn new(
        argv: Vec<String>,
        env: BTreeMap<String, String>,
        repo_dir: Option<PathBuf>,
        environment: String,
    ) -> Self {
        CommandExecutor {
            argv,
            env,
            repo_dir,
            environment,
            repo: Mutex::new(None),
            profiles: Arc::default(),
        }
    }

    /// Resolves each try's resource profile from these `[profiles]`.
    pub fn with_profiles(mut self, profiles: Arc<Profiles>) -> Self {
        self.profiles = profiles;
        self
    }

    /// The argv of `task`: placeholders replaced element by element.
    pub fn argv_for(&self, task: &TaskRun, profile: Option<&ResolvedProfile>) -> Vec<String> {
        self.argv
            .iter()
            .map(|arg| replace_placeholders(arg, task, profile))
            .collect()
    }

    /// The profile of `task`'s job (tags from the repo), or an error naming the bad tag.
    pub fn profile_for(&self, task: &TaskRun) -> Result<Option<ResolvedProfile>, String> {
        if self.profiles.is_empty() {
            return Ok(None);
        }
        profile::resolve(&self.profiles, self.repo_for(task).as_deref(), task)
    }
}

/// `text` with every placeholder replaced: the task's (`{mode}`, `{conf}`, `{config}`, `{team}`,
/// `{ds}`, `{start_ds}`, `{end_ds}`, `{dag_id}`, `{task_id}`, `{run_id}`, `{try_number}`) and its
/// profile's (`{profile.name}`, `{profile.cpu}`, ..., empty without a profile).
fn replace_placeholders(text: &str, task: &TaskRun, profile: Option<&ResolvedProfile>) -> String {
    let values = [
        ("{mode}", task.job.mode.as_str()),
        ("{conf}", task.job.conf_path.as_str()),
        ("{config}", task.job.config.as_str()),
        ("{team}", task.job.team.as_str()),
        ("{ds}", task.ds.as_str()),
        ("{start_ds}", task.start_ds.as_str()),
        ("{end_ds}", task.end_ds.as_str()),
        ("{dag_id}", task.dag_id.as_str()),
        ("{task_id}", task.task_id.as_str()),
        ("{run_id}", task.run_id.as_str()),
    ];
    let mut out = text.replace("{try_number}", &task.try_number.to_string());
    for (k, v) in values {
        out = out.replace(k, v);
    }
    // Last, so a profile's value (a cluster spec may hold braces) is passed on as written.
    for (k, v) in profile::placeholders(profile) {
        out = out.replace(&k, &v);
    }
    out
}

impl CommandExecutor {
    /// The environment Chronon's `run.py` would give the job: teams.json `common_env`, then the
    /// team's per-mode variables (see `Teams::layered_env`), then the profile's
    /// `CHRONOFLOW_PROFILE*`, then the executor's own `env` (placeholders replaced, as in argv).
    fn env_for(
        &self,
        task: &TaskRun,
        profile: Option<&ResolvedProfile>,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if let Some(repo) = self.repo_for(task)
            && let Some(loaded) = repo.configs.iter().find(|c| c.path == task.job.conf_path)
        {
            env =
                repo.teams
                    .layered_env(loaded.config.metadata(), &task.job.mode, &self.environment);
        }
        env.extend(profile::env(profile));
        env.extend(
            self.env
                .iter()
                .map(|(k, v)| (k.clone(), replace_placeholders(v, task, profile))),
        );
        env
    }

    /// The loaded repo, reloaded when the job's config changed since it was read.
    fn repo_for(&self, task: &TaskRun) -> Option<Arc<Repo>> {
        let dir = self.repo_dir.as_ref()?;
        let mut cached = self.repo.lock().unwrap_or_else(PoisonError::into_inner);
        if !profile::is_fresh(cached.as_deref(), task) {
            *cached = chronoflow_config::fs::load_repo(dir).ok().map(Arc::new);
        }
        cached.clone()
    }
}

impl Executor for CommandExecutor {
    fn run<'a>(&'a self, task: &'a TaskRun) -> BoxFuture<'a, TryReport> {
        Box::pin(async move {
            let (mut command, program) = match self.command(task) {
                Ok(c) => c,
                Err(e) => return TryReport::failed(e),
            };
            // Its own process group, so stopping the try stops what the command started too
            // (`sh -c`, spark-submit's JVM), and a Ctrl-C meant for the worker (which drains)
            // does not reach it.
            command.process_group(0);
            die_with_parent(&mut command);
            // Spawned here, on a runtime thread, not in `spawn_blocking`: PR_SET_PDEATHSIG fires
            // when the spawning *thread* exits, and blocking threads exit when idle.
            let child = match command.spawn() {
                Ok(child) => child,
                Err(e) => return TryReport::failed(spawn_error(&program, e)),
            };
            let reaper = Reaper::new(child.id());
            let (status, usage) = match reaper.wait().await {
                Ok(waited) => waited,
                Err(e) => return TryReport::failed(format!("waiting for {program:?}: {e}")),
            };
            let result = if status == 0 {
                Ok(())
            } else {
                let how = if status > 0 {
                    format!("exited with status {status}")
                } else {
                    format!("was killed by signal {}", -status)
                };
                Err(format!(
                    "{program:?} {how}; last lines of its output:\n{}",
                    tail(&task.log_path, 20)
                ))
            };
            TryReport {
                result,
                usage: Some(usage),
            }
        })
    }

    fn start_detached<'a>(&'a self, task: &'a TaskRun) -> BoxFuture<'a, Result<u32, String>> {
        Box::pin(async move { self.spawn_detached(task) })
    }
}

impl CommandExecutor {
    /// The command of `task`, its output going to the try's log (which starts with the argv).
    fn command(&self, task: &TaskRun) -> Result<(std::process::Command, String), String> {
        let profile = self.profile_for(task)?;
        let argv = self.argv_for(task, profile.as_ref());
        let env = self.env_for(task, profile.as_ref());
        let log = open_log(&task.log_path)?;
        let mut header = log.try_clone().map_err(|e| e.to_string())?;
        if let Some(p) = &profile {
            let _ = writeln!(header, "{}", profile::log_line(p));
        }
        let _ = writeln!(header, "$ {}", shell_words(&argv));
        let mut command = std::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log));
        if let Some(dir) = &self.repo_dir {
            command.current_dir(dir);
        }
        Ok((command, argv[0].clone()))
    }

    /// Starts the command in its own process group, not tied to the worker: a streaming job keeps
    /// running when its worker restarts, and the next keep-alive finds it alive.
    fn spawn_detached(&self, task: &TaskRun) -> Result<u32, String> {
        let (mut command, program) = self.command(task)?;
        command.process_group(0);
        let mut child = tokio::process::Command::from(command)
            .spawn()
            .map_err(|e| spawn_error(&program, e))?;
        let pid = child.id().unwrap_or_default();
        // Reap it when it exits (while this process lives), so it does not linger as a zombie
        // that would look alive to the next keep-alive.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(pid)
    }
}

/// Waits for a child with `wait4` (tokio's `Child::wait` reaps it without its rusage) and, if
/// dropped before the child was reaped (a timeout, a stopped or taken-over try, the worker
/// shutting down), kills the child's process group.
///
/// The child is reaped only after `exited` is set under its lock, and the kill happens under
/// the same lock while `exited` is false: the pid cannot have been reused when it is killed.
struct Reaper {
    pid: libc::pid_t,
    exited: Arc<Mutex<bool>>,
}

impl Reaper {
    fn new(pid: u32) -> Self {
        Reaper {
            pid: pid as libc::pid_t,
            exited: Arc::default(),
        }
    }

    /// The exit status (negative: the signal that killed it) and what the child used.
    async fn wait(&self) -> std::io::Result<(i64, Usage)> {
        let (pid, exited) = (self.pid, self.exited.clone());
        tokio::task::spawn_blocking(move || wait_child(pid, &exited))
            .await
            .map_err(std::io::Error::other)?
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        if !*exited {
            // SAFETY: plain syscall; the group is the child's own (process_group(0)).
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
            }
        }
    }
}

fn wait_child(pid: libc::pid_t, exited: &Mutex<bool>) -> std::io::Result<(i64, Usage)> {
    // Wait for the exit without reaping (WNOWAIT), so the pid stays ours until `exited` is set.
    loop {
        // SAFETY: `info` is a plain C struct written by the kernel.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    *exited.lock().unwrap_or_else(|e| e.into_inner()) = true;
    let mut status = 0;
    // SAFETY: as above.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut rusage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let code = if libc::WIFEXITED(status) {
        i64::from(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        -i64::from(libc::WTERMSIG(status))
    } else {
        -1
    };
    let mut usage = usage_of(&rusage);
    usage.exit_code = Some(code);
    Ok((code, usage))
}

/// CPU (user + system) and peak RSS of a `rusage`. Of a reaped child, these include the
/// descendants it waited for (a `sh -c` wrapper counts its command).
// `i64::from`: the field types differ across platforms (i64 on Linux x86-64, i32 elsewhere).
#[allow(clippy::useless_conversion)]
pub(crate) fn usage_of(r: &libc::rusage) -> Usage {
    let ms = |t: libc::timeval| i64::from(t.tv_sec) * 1000 + i64::from(t.tv_usec) / 1000;
    // Linux reports ru_maxrss in KiB, macOS in bytes.
    let kb = if cfg!(target_os = "macos") {
        i64::from(r.ru_maxrss) / 1024
    } else {
        i64::from(r.ru_maxrss)
    };
    Usage {
        exit_code: None,
        cpu_ms: Some(ms(r.ru_utime) + ms(r.ru_stime)),
        max_rss_kb: Some(kb),
    }
}

fn spawn_error(program: &str, e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "the executor's program {program:?} was not found (is it installed and on PATH?)"
        ),
        _ => format!("starting {program:?}: {e}"),
    }
}

pub(crate) fn open_log(path: &std::path::Path) -> Result<std::fs::File, String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("log {}: {e}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("log {}: {e}", path.display()))
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let Ok(file) = std::fs::File::open(path) else {
        return String::new();
    };
    let all: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:{}".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The job dies with its worker: a worker killed with `kill -9` must not leave a job running
/// beside its retry on another worker.
#[cfg(target_os = "linux")]
pub(crate) fn die_with_parent(command: &mut std::process::Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent(_command: &mut std::process::Command) {}
