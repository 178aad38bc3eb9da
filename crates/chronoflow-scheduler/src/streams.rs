//! Supervision of streaming jobs for teams on the in-process executor.
//!
//! A streaming GroupBy's keep-alive task (`chronon_gb_streaming_<team>`, every 10 minutes) asks the
//! worker's [`StreamSupervisor`] to make sure the stream runs: it starts it if this worker is not
//! running it and leaves it alone if it is. The supervisor then owns it: it restarts it after a
//! crash (capped exponential backoff), sends one alert when it keeps crashing and one when it
//! recovers, writes what it sees into the stream's `streaming_jobs` row every few seconds, and
//! stops it when that row is gone (re-planning deletes the rows of jobs no DAG runs any more) or
//! is another worker's, or when the worker shuts down.
//!
//! The stream itself runs through a [`StreamLauncher`]: [`ChildProcessLauncher`] runs
//! `chronoflow run --mode streaming` as a child process (a crash stays in the child; it dies with
//! the worker), the binary's in-process launcher runs the consumer library in the worker (the
//! embedded KV store can be open in one process only).
//!
//! Streams run in wall time whatever the scheduler's clock: the row's times are wall-clock
//! milliseconds, as are the consumer's status times.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::alert::{Alert, Alerter};
use crate::clock::{Clock, SystemClock};
use crate::config::{SchedulerConfig, StreamingConfig};
use crate::spec::JobRef;
use crate::store::{Store, StreamUpdate};

/// Runs one stream.
pub trait StreamLauncher: Send + Sync {
    /// Runs the stream of `job` until it fails (Err = crash) or `stop` becomes true (Ok).
    /// The stream writes its status JSON to `status_file` about once a second.
    fn run(
        &self,
        job: JobRef,
        status_file: PathBuf,
        log_path: PathBuf,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, Result<(), String>>;
}

/// How the supervisor paces restarts, alerts and its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// The wait after a first crash; it doubles per consecutive crash.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A run this long is healthy: the crash count and backoff start over, and a stream that was
    /// alerted about gets its recovery message.
    pub healthy_after: Duration,
    /// Consecutive crashes that make one alert.
    pub alert_after_crashes: u32,
    /// How often the row is written (and checked to be still this worker's).
    pub check_every: Duration,
}

impl StreamSettings {
    pub fn from_config(c: &StreamingConfig) -> Self {
        StreamSettings {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(c.backoff_max_seconds.max(1)),
            healthy_after: Duration::from_secs(60),
            alert_after_crashes: c.alert_after_crashes.max(1),
            check_every: Duration::from_secs(2),
        }
    }
}

/// The wait before restarting after `consecutive` crashes in a row (1 or more): `base`
/// doubling per crash, at most `max`.
pub fn backoff_delay(consecutive: u32, base: Duration, max: Duration) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(30);
    base.saturating_mul(1u32 << doublings).min(max)
}

/// Crash counting and the alerts it triggers (pure, so the rules are tested on their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashTracker {
    /// Crashes in a row, since the last healthy run.
    pub consecutive: u32,
    /// Whether the crashing alert went out (and the recovery one has not).
    pub alerted: bool,
}

impl CrashTracker {
    /// A run crashed; `true` when this crash is the one to alert about.
    pub fn crashed(&mut self, alert_after: u32) -> bool {
        self.consecutive = self.consecutive.saturating_add(1);
        if !self.alerted && self.consecutive >= alert_after {
            self.alerted = true;
            return true;
        }
        false
    }

    /// A run has lasted long enough to be healthy; `true` when a recovery alert is due.
    pub fn healthy(&mut self) -> bool {
        self.consecutive = 0;
        std::mem::take(&mut self.alerted)
    }
}

/// What [`StreamSupervisor::ensure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// This worker was not running the stream: it is starting.
    Started,
    /// This worker supervises it already (running, or waiting to restart).
    Supervised,
}

/// Where a stream's output and status go: `<dir>/<job>/stream.log` and `status.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPaths {
    pub log: PathBuf,
    pub status: PathBuf,
}

impl StreamPaths {
    pub fn of(dir: &Path, job_id: &str) -> Self {
        let name: String = job_id
            .replace('/', "__")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // Never `.` or `..` (a job id is `<config>/<mode>`, but ids are data).
        let name = if name.chars().all(|c| c == '.') {
            format!("_{name}")
        } else {
            name
        };
        let dir = dir.join(name);
        StreamPaths {
            log: dir.join("stream.log"),
            status: dir.join("status.json"),
        }
    }
}

/// A stream's log is renamed to `stream.log.1` (replacing the previous one) when a run starts
/// and it is larger than this.
const LOG_ROTATE_BYTES: u64 = 64 << 20;
/// A status file larger than this is not read (the contract's is a few hundred bytes per
/// partition).
const STATUS_MAX_BYTES: u64 = 1 << 20;

/// What the supervision of one stream shares.
struct Inner {
    worker_id: String,
    host: String,
    store: Arc<Store>,
    alerter: Alerter,
    launcher: Arc<dyn StreamLauncher>,
    dir: PathBuf,
}

struct Supervised {
    stop: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

/// The streams one worker supervises.
pub struct StreamSupervisor {
    inner: Arc<Inner>,
    settings: StreamSettings,
    streams: tokio::sync::Mutex<HashMap<String, Supervised>>,
}

impl StreamSupervisor {
    /// Supervises streams for worker `worker_id`, with the pacing of `config`'s `[streaming]`;
    /// logs and status files go under `dir`.
    pub fn new(
        worker_id: String,
        store: Arc<Store>,
        config: Arc<SchedulerConfig>,
        dir: PathBuf,
        launcher: Arc<dyn StreamLauncher>,
    ) -> Self {
        StreamSupervisor {
            settings: StreamSettings::from_config(&config.streaming),
            inner: Arc::new(Inner {
                worker_id,
                host: crate::worker::hostname(),
                store,
                alerter: Alerter::new(config),
                launcher,
                dir,
            }),
            streams: Default::default(),
        }
    }

    /// Other pacing (tests run restarts in milliseconds).
    pub fn with_settings(mut self, settings: StreamSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// Where `job_id`'s log and status file go.
    pub fn paths(&self, job_id: &str) -> StreamPaths {
        StreamPaths::of(&self.inner.dir, job_id)
    }

    /// Makes sure this worker runs the stream of `job` (kept alive by task `task_id` of
    /// `dag_id`): leaves it alone if it supervises it, else records itself as its owner and
    /// starts it. The caller decided the stream is not another live worker's.
    pub async fn ensure(
        &self,
        job: &JobRef,
        dag_id: &str,
        task_id: &str,
    ) -> Result<Ensured, String> {
        let mut streams = self.streams.lock().await;
        if streams.get(&job.job).is_some_and(|s| !s.task.is_finished()) {
            return Ok(Ensured::Supervised);
        }
        let paths = self.paths(&job.job);
        self.inner
            .store
            .claim_stream(
                &job.job,
                &self.inner.worker_id,
                &self.inner.host,
                i64::from(std::process::id()),
                SystemClock.now_ms(),
                &paths.log.display().to_string(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let stop = Arc::new(watch::channel(false).0);
        let origin = Origin {
            job: job.clone(),
            dag_id: dag_id.to_owned(),
            task_id: task_id.to_owned(),
        };
        let task = tokio::spawn(supervise(
            self.inner.clone(),
            self.settings.clone(),
            origin,
            stop.clone(),
            paths,
        ));
        streams.insert(job.job.clone(), Supervised { stop, task });
        Ok(Ensured::Started)
    }

    /// The job ids of the streams this worker supervises now.
    pub async fn supervised(&self) -> Vec<String> {
        let streams = self.streams.lock().await;
        let mut ids: Vec<String> = streams
            .iter()
            .filter(|(_, s)| !s.task.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Stops the stream of `job_id` (its row reads `stopped`) and waits until it ended.
    /// `false` if this worker was not supervising it.
    pub async fn stop(&self, job_id: &str) -> bool {
        let Some(s) = self.streams.lock().await.remove(job_id) else {
            return false;
        };
        s.stop.send_replace(true);
        let _ = s.task.await;
        true
    }

    /// Stops every stream and waits for them (the worker is shutting down).
    pub async fn shutdown(&self) {
        let all: Vec<Supervised> = self.streams.lock().await.drain().map(|(_, s)| s).collect();
        for s in &all {
            s.stop.send_replace(true);
        }
        for s in all {
            let _ = s.task.await;
        }
    }
}

/// The job and the keep-alive task that asked for it (named in alerts).
struct Origin {
    job: JobRef,
    dag_id: String,
    task_id: String,
}

/// The row as the supervisor keeps it.
struct Row {
    state: &'static str,
    pid: i64,
    started_ms: i64,
    restarts: i64,
    last_exit: Option<String>,
    status: Option<String>,
}

impl Inner {
    /// Writes `row`; `false` when the row is no longer this worker's (the stream must stop).
    /// A database error is logged and counts as still ours: a hiccup must not stop streams.
    async fn write(&self, job_id: &str, row: &Row) -> bool {
        let update = StreamUpdate {
            state: row.state,
            pid: row.pid,
            started_ms: row.started_ms,
            restarts: row.restarts,
            last_exit: row.last_exit.as_deref(),
            status_json: row.status.as_deref(),
        };
        match self
            .store
            .update_stream(job_id, &self.worker_id, &update, SystemClock.now_ms())
            .await
        {
            Ok(ours) => ours,
            Err(e) => {
                tracing::warn!(job = %job_id, error = %e, "recording a stream's state failed");
                true
            }
        }
    }

    fn alert(&self, event: &'static str, origin: &Origin, crashes: u32, error: String, log: &Path) {
        self.alerter.send(Alert::for_stream(
            event,
            &origin.dag_id,
            &origin.task_id,
            &origin.job.team,
            &origin.job.job,
            crashes,
            error,
            Some(log.display().to_string()),
        ));
    }
}

/// Runs the stream of `origin` until `stop` turns true (set by the supervisor, or here when the
/// row is no longer this worker's), restarting it after crashes.
async fn supervise(
    inner: Arc<Inner>,
    settings: StreamSettings,
    origin: Origin,
    stop: Arc<watch::Sender<bool>>,
    paths: StreamPaths,
) {
    let job_id = origin.job.job.as_str();
    let stop_rx = stop.subscribe();
    let own_pid = i64::from(std::process::id());
    let mut row = Row {
        state: "starting",
        pid: own_pid,
        started_ms: SystemClock.now_ms(),
        restarts: 0,
        last_exit: None,
        status: None,
    };
    let mut crashes = CrashTracker::default();
    let mut lost = false;
    'runs: loop {
        if *stop_rx.borrow() {
            break;
        }
        let started = Instant::now();
        row.state = "starting";
        row.pid = own_pid;
        row.started_ms = SystemClock.now_ms();
        row.status = None;
        // A status left by the previous run must not pass for this one's.
        let _ = std::fs::remove_file(&paths.status);
        start_log(&paths.log, job_id, row.restarts);
        if !inner.write(job_id, &row).await {
            lost = true;
            break;
        }
        tracing::info!(job = %job_id, restarts = row.restarts, "starting stream");
        let run = inner.launcher.run(
            origin.job.clone(),
            paths.status.clone(),
            paths.log.clone(),
            stop_rx.clone(),
        );
        tokio::pin!(run);
        let mut healthy = false;
        let mut check = tokio::time::interval_at(
            tokio::time::Instant::now() + settings.check_every,
            settings.check_every,
        );
        let ended = loop {
            tokio::select! {
                ended = &mut run => break ended,
                _ = check.tick() => {
                    if !healthy && started.elapsed() >= settings.healthy_after {
                        healthy = true;
                        if crashes.healthy() {
                            recovered(&inner, &origin, &row, started, &paths);
                        }
                    }
                    if let Some((text, pid)) = read_status(&paths.status) {
                        row.status = Some(text);
                        row.pid = pid.unwrap_or(row.pid);
                        row.state = "running";
                    }
                    if !lost && !inner.write(job_id, &row).await {
                        tracing::info!(job = %job_id, "the stream's row is gone (no longer planned) or another worker's: stopping it");
                        lost = true;
                        stop.send_replace(true);
                    }
                }
            }
        };
        if *stop_rx.borrow() {
            break;
        }
        // It ended without being asked to: a crash.
        if !healthy && started.elapsed() >= settings.healthy_after && crashes.healthy() {
            recovered(&inner, &origin, &row, started, &paths);
        }
        let error = match ended {
            Err(e) => e,
            Ok(()) => "the stream ended without being asked to stop".to_owned(),
        };
        row.restarts = row.restarts.saturating_add(1);
        let alert = crashes.crashed(settings.alert_after_crashes);
        let delay = backoff_delay(
            crashes.consecutive,
            settings.backoff_base,
            settings.backoff_max,
        );
        tracing::warn!(job = %job_id, error = %error, crashes = crashes.consecutive, delay_ms = delay.as_millis() as u64, "stream crashed; restarting after a backoff");
        if alert {
            inner.alert(
                "stream_crashing",
                &origin,
                crashes.consecutive,
                format!(
                    "{job_id} crashed {} times in a row (it keeps restarting, at most every {} s); last error: {error}",
                    crashes.consecutive,
                    settings.backoff_max.as_secs()
                ),
                &paths.log,
            );
        }
        row.last_exit = Some(error);
        row.state = if crashes.alerted { "failed" } else { "backoff" };
        if let Some((text, _)) = read_status(&paths.status) {
            row.status = Some(text);
        }
        if !inner.write(job_id, &row).await {
            lost = true;
            break;
        }
        // The backoff, still checking the row and listening for a stop.
        let until = tokio::time::Instant::now() + delay;
        let mut stopped = stop_rx.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                _ = async { stopped.wait_for(|s| *s).await.is_ok() } => break 'runs,
                _ = tokio::time::sleep(settings.check_every) => {
                    if !inner.write(job_id, &row).await {
                        lost = true;
                        break 'runs;
                    }
                }
            }
        }
    }
    if lost {
        // Another worker's now, or gone: its row is not ours to write.
        tracing::info!(job = %job_id, "stream stopped: no longer this worker's");
        return;
    }
    row.state = "stopped";
    if let Some((text, _)) = read_status(&paths.status) {
        row.status = Some(text);
    }
    inner.write(job_id, &row).await;
    tracing::info!(job = %job_id, "stream stopped");
}

fn recovered(inner: &Inner, origin: &Origin, row: &Row, started: Instant, paths: &StreamPaths) {
    inner.alert(
        "stream_recovered",
        origin,
        0,
        format!(
            "{} has been running for {} s after {} restarts",
            origin.job.job,
            started.elapsed().as_secs(),
            row.restarts
        ),
        &paths.log,
    );
}

/// The status file's content, compacted, and the pid it names; `None` while it is missing,
/// too large, or not a JSON object (a consumer writing it in place may be caught mid-write).
fn read_status(path: &Path) -> Option<(String, Option<i64>)> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(STATUS_MAX_BYTES + 1)
        .read_to_string(&mut text)
        .ok()?;
    if text.len() as u64 > STATUS_MAX_BYTES {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let pid = value.get("pid").and_then(|p| p.as_i64());
    value.is_object().then(|| (value.to_string(), pid))
}

/// Marks a run's start in the stream's log, first moving a large log aside.
fn start_log(path: &Path, job_id: &str, restarts: i64) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(path, path.with_extension("log.1"));
    }
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(
            log,
            "--- {} starting {job_id} (restarts so far: {restarts})",
            crate::timetable::iso(SystemClock.now_ms())
        );
    }
}

/// Runs each stream as a child process: by default `chronoflow run --mode streaming`, which
/// keeps a crash (a panic, an abort, memory) out of the worker. The child dies with the worker
/// (`PR_SET_PDEATHSIG`), so a killed worker never leaves a consumer running beside the one its
/// successor starts.
pub struct ChildProcessLauncher {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    stop_grace: Duration,
}

impl ChildProcessLauncher {
    /// Runs `argv` per stream, with `{conf}` (the config's file in the repo), `{config}` (its
    /// name), `{job}` and `{status_file}` replaced inside each element (never through a shell).
    /// A stopped child gets SIGTERM, and SIGKILL after `stop_grace`.
    pub fn new(argv: Vec<String>, stop_grace: Duration) -> Self {
        ChildProcessLauncher {
            argv,
            env: Vec::new(),
            stop_grace,
        }
    }

    /// Sets an environment variable of every child.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `<exe> run --mode streaming --conf {conf} --repo <repo> --warehouse <warehouse>
    /// --status-file {status_file} [--kafka-brokers <brokers>]`, the KV store in
    /// `CHRONOFLOW_KV` (not on the command line, where `ps` would show a Redis password).
    pub fn chronoflow(
        exe: &Path,
        repo: &Path,
        warehouse: &str,
        kv: &str,
        kafka_brokers: Option<&str>,
        stop_grace: Duration,
    ) -> Self {
        let mut argv: Vec<String> = [
            &exe.display().to_string(),
            "run",
            "--mode",
            "streaming",
            "--conf",
            "{conf}",
            "--repo",
            &repo.display().to_string(),
            "--warehouse",
            warehouse,
            "--status-file",
            "{status_file}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(brokers) = kafka_brokers {
            argv.extend(["--kafka-brokers".to_owned(), brokers.to_owned()]);
        }
        ChildProcessLauncher::new(argv, stop_grace).with_env("CHRONOFLOW_KV", kv)
    }

    /// The consumers get `--fetch-max-wait-ms` and `--max-fetch-bytes`, when set.
    pub fn with_fetch_options(mut self, max_wait_ms: Option<u64>, max_bytes: Option<i32>) -> Self {
        if let Some(ms) = max_wait_ms {
            self.argv
                .extend(["--fetch-max-wait-ms".to_owned(), ms.to_string()]);
        }
        if let Some(bytes) = max_bytes {
            self.argv
                .extend(["--max-fetch-bytes".to_owned(), bytes.to_string()]);
        }
        self
    }

    /// The argv for `job`: placeholders replaced element by element.
    pub fn argv_for(&self, job: &JobRef, status_file: &Path) -> Vec<String> {
        let status = status_file.display().to_string();
        let values = [
            ("{conf}", job.conf_path.as_str()),
            ("{config}", job.config.as_str()),
            ("{job}", job.job.as_str()),
            ("{status_file}", status.as_str()),
        ];
        self.argv
            .iter()
            .map(|arg| {
                values
                    .iter()
                    .fold(arg.clone(), |out, (k, v)| out.replace(k, v))
            })
            .collect()
    }
}

impl StreamLauncher for ChildProcessLauncher {
    fn run(
        &self,
        job: JobRef,
        status_file: PathBuf,
        log_path: PathBuf,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let argv = self.argv_for(&job, &status_file);
        let env = self.env.clone();
        let grace = self.stop_grace;
        Box::pin(async move { run_child(argv, env, &log_path, stop, grace).await })
    }
}

async fn run_child(
    argv: Vec<String>,
    env: Vec<(String, String)>,
    log_path: &Path,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), String> {
    let Some(program) = argv.first().cloned() else {
        return Err("the stream's command is empty".to_owned());
    };
    let log = crate::executor::open_log(log_path)?;
    let mut header = log.try_clone().map_err(|e| e.to_string())?;
    let _ = writeln!(header, "$ {}", argv.join(" "));
    // The log is shared by every run of the stream: an error quotes this run's output only.
    let run_start = header.metadata().map(|m| m.len()).unwrap_or(0);
    let mut command = std::process::Command::new(&program);
    command
        .args(&argv[1..])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log));
    // Its own process group: a Ctrl-C meant for the worker (which stops its streams itself)
    // does not reach it, and a stop reaches what it started.
    command.process_group(0);
    crate::executor::die_with_parent(&mut command);
    // Spawned on this runtime thread (never a blocking thread, which exits when idle and would
    // fire PR_SET_PDEATHSIG). kill_on_drop: a dropped run (an aborted task) kills the child too.
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("the stream's program {program:?} was not found")
            }
            _ => format!("starting {program:?}: {e}"),
        })?;
    let stopped = async {
        // A dropped sender (the supervisor gone) is a stop too.
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        status = child.wait() => {
            return match status {
                Err(e) => Err(format!("waiting for {program:?}: {e}")),
                Ok(status) => match (status.code(), status.signal()) {
                    (Some(0), _) => Ok(()),
                    (Some(code), _) => Err(format!(
                        "{program:?} exited with status {code}; last lines of its output:\n{}",
                        tail(log_path, run_start, 10)
                    )),
                    (None, signal) => Err(format!(
                        "{program:?} was killed by {}; last lines of its output:\n{}",
                        signal_name(signal.unwrap_or(0)),
                        tail(log_path, run_start, 10)
                    )),
                },
            };
        }
        () = stopped => {}
    }
    // Not reaped yet (only `wait` reaps it, and it is not being polled): its pid, and so its
    // process group, are still its own.
    signal_group(&child, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(program = %program, grace_s = grace.as_secs_f64(), "the stream did not stop on SIGTERM: killing it");
        signal_group(&child, libc::SIGKILL);
        let _ = child.wait().await;
    }
    Ok(())
}

/// Sends `signal` to the child's process group, unless the child was reaped.
fn signal_group(child: &tokio::process::Child, signal: libc::c_int) {
    if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: plain syscall; the group is the child's own (process_group(0)), and the child
        // is not reaped, so the id is not reused.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    format!("signal {signal} ({name})")
}

/// The last `lines` lines of a log written from byte `from` on (of its last 64 KiB).
fn tail(path: &Path, from: u64, lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 << 10).max(from)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let s = Duration::from_secs;
        let delays: Vec<u64> = (1..=8)
            .map(|n| backoff_delay(n, s(1), s(60)).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff_delay(u32::MAX, s(1), s(60)), s(60));
        assert_eq!(backoff_delay(0, s(1), s(60)), s(1));
    }

    #[test]
    fn one_alert_per_crash_streak_and_one_recovery() {
        let mut t = CrashTracker::default();
        let alerts: Vec<bool> = (0..7).map(|_| t.crashed(5)).collect();
        assert_eq!(alerts, [false, false, false, false, true, false, false]);
        assert!(t.healthy(), "recovery after an alert");
        assert_eq!(t.consecutive, 0);
        assert!(!t.healthy(), "only once");
        assert!(!t.crashed(5));
    }

    #[test]
    fn paths_are_one_directory_per_job() {
        let p = StreamPaths::of(Path::new("/l"), "team.gb.v1/streaming");
        assert_eq!(p.log, Path::new("/l/team.gb.v1__streaming/stream.log"));
        assert_eq!(p.status, Path::new("/l/team.gb.v1__streaming/status.json"));
        let p = StreamPaths::of(Path::new("/l"), "../x y");
        assert_eq!(p.log, Path::new("/l/..__x_y/stream.log"));
        assert_eq!(
            StreamPaths::of(Path::new("/l"), "..").log,
            Path::new("/l/_../stream.log")
        );
    }
}
