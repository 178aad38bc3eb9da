//! Workers: claim queued task instances, run them on an executor, record the outcome.
//!
//! A worker's tries stay its own only while it heartbeats; a worker killed with `kill -9`
//! stops heartbeating, the scheduler fails its tries (retrying them elsewhere), and any
//! result the dead worker might still report is discarded by the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::{Semaphore, watch};
use tokio::task::{AbortHandle, JoinSet};

use crate::alert::{Alert, Alerter};
use crate::clock::Clock;
use crate::config::SchedulerConfig;
use crate::error::Result;
use crate::executor::{Executors, TaskRun};
use crate::failpoint::FailPoints;
use crate::metrics::{Metrics, TraceEvent};
use crate::spec::{Action, JobRef};
use crate::state::TaskState;
use crate::store::{Claimed, FinishOutcome, Store};

/// A try this worker process is running.
struct Held {
    since: Instant,
    abort: AbortHandle,
    claimed: Claimed,
}

pub struct Worker {
    pub id: String,
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<SchedulerConfig>,
    pub executors: Executors,
    /// Tasks run at once.
    pub slots: usize,
    pub logs_dir: PathBuf,
    pub failpoints: Arc<FailPoints>,
    pub metrics: Arc<Metrics>,
    /// How often to look for work when not woken (other processes queue work too).
    pub poll: Duration,
    alerter: Alerter,
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        config: Arc<SchedulerConfig>,
        executors: Executors,
        slots: usize,
        logs_dir: PathBuf,
        metrics: Arc<Metrics>,
        failpoints: Arc<FailPoints>,
    ) -> Self {
        Worker {
            alerter: Alerter::new(config.clone()),
            id,
            store,
            clock,
            config,
            executors,
            slots: slots.max(1),
            logs_dir,
            failpoints,
            metrics,
            poll: Duration::from_millis(100),
        }
    }

    /// Claims what it can and runs it to the end, one task after the other (deterministic
    /// tests drive workers this way). Returns the tasks claimed.
    pub async fn run_once(&self) -> Result<usize> {
        let claimed = self
            .store
            .claim(&self.id, self.slots, self.clock.now_ms())
            .await?;
        let n = claimed.len();
        for t in &claimed {
            self.metrics.record(|| trace_key(t), TraceEvent::Claimed);
        }
        for t in claimed {
            self.execute(t).await?;
        }
        Ok(n)
    }

    /// Works until `shutdown` turns true, then drains: claims nothing more and waits for the
    /// tasks it holds to finish.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let host = hostname();
        self.store
            .register_worker(&self.id, &host, std::process::id(), self.clock.now_ms())
            .await?;
        // Tries still marked as this worker's belong to an earlier process with the same id:
        // it is gone, so they failed (heartbeating them now would keep them alive forever).
        let orphans = self
            .store
            .release_worker(
                &self.id,
                self.config.retry_max_delay_seconds,
                self.clock.now_ms(),
            )
            .await?;
        if orphans > 0 {
            tracing::warn!(worker = %self.id, tries = orphans, "failed the tries of an earlier worker with this id");
        }
        // The tries this process runs: key and try number -> (claimed at, abort handle).
        let held: Arc<Mutex<HashMap<(String, i64), Held>>> = Arc::default();
        let heartbeat = {
            let me = self.clone();
            let held = held.clone();
            tokio::spawn(async move {
                let every = Duration::from_secs(me.config.heartbeat_interval_seconds.max(1));
                loop {
                    let asked = Instant::now();
                    let tries: Vec<Claimed> = held
                        .lock()
                        .unwrap()
                        .values()
                        .map(|h| h.claimed.clone())
                        .collect();
                    match me.store.heartbeat(&me.id, &tries, me.clock.now_ms()).await {
                        Ok(still) => {
                            // A try claimed before this heartbeat and no longer ours was taken
                            // away (we were presumed dead): stop it, so it does not run beside
                            // its retry. (Dropping a command kills it.)
                            let still: HashSet<(String, i64)> = still.into_iter().collect();
                            held.lock().unwrap().retain(|key, h| {
                                let lost = h.since < asked && !still.contains(key);
                                if lost {
                                    tracing::warn!(task = %key.0, try_number = key.1, "try taken over by another worker; stopping it");
                                    h.abort.abort();
                                }
                                !lost
                            });
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                    // Keeps beating while the worker drains; aborted once it is done.
                    tokio::time::sleep(every).await;
                }
            })
        };
        let slots = Arc::new(Semaphore::new(self.slots));
        let slot_freed = Arc::new(tokio::sync::Notify::new());
        let mut running = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Register for wake-ups before looking, so a commit between the look and the wait
            // is not missed.
            let work = self.store.work_available.notified();
            let freed = slot_freed.notified();
            tokio::pin!(work, freed);
            work.as_mut().enable();
            freed.as_mut().enable();
            let free = slots.available_permits();
            let mut claimed = Vec::new();
            if free > 0 {
                match self.store.claim(&self.id, free, self.clock.now_ms()).await {
                    Ok(c) => claimed = c,
                    Err(e) => tracing::error!(error = %e, "claiming failed; retrying"),
                }
            }
            let got = claimed.len();
            for t in &claimed {
                self.metrics.record(|| trace_key(t), TraceEvent::Claimed);
            }
            for t in claimed {
                let permit = slots.clone().acquire_owned().await.expect("open semaphore");
                let me = self.clone();
                let slot_freed = slot_freed.clone();
                let key = (trace_key(&t), t.try_number);
                let held_by_task = held.clone();
                let task_key = key.clone();
                let claimed = t.clone();
                // Registered before the task can finish, so its removal below always finds it.
                let mut guard = held.lock().unwrap();
                let abort = running.spawn(async move {
                    if let Err(e) = me.execute(t).await {
                        tracing::error!(error = %e, "task bookkeeping failed");
                    }
                    held_by_task.lock().unwrap().remove(&task_key);
                    drop(permit);
                    slot_freed.notify_one();
                });
                guard.insert(
                    key,
                    Held {
                        since: Instant::now(),
                        abort,
                        claimed,
                    },
                );
            }
            while running.try_join_next().is_some() {}
            if got > 0 && got == free {
                continue;
            }
            tokio::select! {
                _ = &mut work => {}
                _ = &mut freed => {}
                _ = tokio::time::sleep(self.poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(worker = %self.id, tasks = running.len(), "draining");
        while running.join_next().await.is_some() {}
        self.store
            .stop_worker(&self.id, self.clock.now_ms())
            .await?;
        heartbeat.abort();
        Ok(())
    }

    fn log_path(&self, t: &Claimed) -> PathBuf {
        self.logs_dir
            .join(&t.dag_id)
            .join(t.run_id.replace([':', '/'], "_"))
            .join(&t.task_id)
            .join(format!("{}.log", t.try_number))
    }

    /// Runs one claimed try and records its outcome. An `Err` means the worker could not
    /// record it (or an injected crash): the try stays `running` until reaped.
    async fn execute(&self, t: Claimed) -> Result<()> {
        let started = Instant::now();
        if let Some(ready) = t.ready_ms {
            self.metrics
                .dispatch_latency_seconds
                .observe((t.started_ms - ready).max(0) as f64 / 1000.0);
        }
        self.failpoints.check("worker.after_claim")?;
        let spec = self.store.spec(&t.dag_id, t.version).await?;
        let log_path = self.log_path(&t);
        let outcome = match spec
            .task(&t.task_id)
            .map(|task| (&task.action, task.execution_timeout_seconds))
        {
            None => FinishOutcome::Failed(format!(
                "task {} is not in version {} of DAG {}",
                t.task_id, t.version, t.dag_id
            )),
            Some((action, timeout)) => {
                let run = self.run_action(&t, action, &log_path);
                let outcome = match timeout {
                    Some(s) => match tokio::time::timeout(Duration::from_secs(s), run).await {
                        Ok(outcome) => outcome,
                        Err(_) => FinishOutcome::Failed(format!("timed out after {s} s")),
                    },
                    None => run.await,
                };
                match self.failpoints.check("worker.in_job") {
                    Err(e) => FinishOutcome::Failed(e.to_string()),
                    Ok(()) => outcome,
                }
            }
        };
        self.failpoints.check("worker.before_commit")?;
        let error = match &outcome {
            FinishOutcome::Failed(e) => e.clone(),
            _ => String::new(),
        };
        let log = log_path.exists().then(|| log_path.display().to_string());
        let state = self
            .store
            .finish(
                &t,
                Some(&self.id),
                outcome,
                self.config.retry_max_delay_seconds,
                log.as_deref(),
                self.clock.now_ms(),
            )
            .await?;
        self.metrics
            .task_duration_seconds
            .observe(started.elapsed().as_secs_f64());
        match state {
            Some(state) => {
                if state == TaskState::Success {
                    self.metrics.record(|| trace_key(&t), TraceEvent::Succeeded);
                }
                self.metrics.task_finished(state);
                if state == TaskState::Failed {
                    self.alerter
                        .send(Alert::for_try("task_failed", &t, error, log));
                }
            }
            None => tracing::warn!(
                dag_id = %t.dag_id, run_id = %t.run_id, task_id = %t.task_id, try_number = t.try_number,
                "the try was taken over (this worker was presumed dead); its result is discarded"
            ),
        }
        Ok(())
    }

    async fn run_action(
        &self,
        t: &Claimed,
        action: &Action,
        log_path: &std::path::Path,
    ) -> FinishOutcome {
        match action {
            Action::Job(job) if job.mode == "streaming" => {
                match self.keep_alive(t, job, log_path).await {
                    Ok(()) => FinishOutcome::Success,
                    Err(e) => FinishOutcome::Failed(e),
                }
            }
            Action::Job(job) => match self.run_job(t, job, log_path).await {
                Ok(()) => FinishOutcome::Success,
                Err(e) => FinishOutcome::Failed(e),
            },
            Action::MetadataUpload { jobs } => self.upload_metadata(t, jobs, log_path).await,
            // Sensors are the scheduler's; a worker never claims one.
            Action::PartitionSensor { .. } | Action::UpstreamWait { .. } => {
                FinishOutcome::Failed("a sensor reached a worker".to_owned())
            }
        }
    }

    async fn run_job(
        &self,
        t: &Claimed,
        job: &JobRef,
        log_path: &std::path::Path,
    ) -> std::result::Result<(), String> {
        self.executors
            .for_team(&job.team)
            .run(&task_run(t, job, log_path))
            .await
    }

    /// Streaming keep-alive: leaves a running streaming job alone, starts it when absent, and
    /// restarts it when its process died.
    async fn keep_alive(
        &self,
        t: &Claimed,
        job: &JobRef,
        log_path: &std::path::Path,
    ) -> std::result::Result<(), String> {
        use std::io::Write;
        let host = hostname();
        let mut log = crate::executor::open_log(log_path)?;
        let now = self.clock.now_ms();
        if let Some(s) = self
            .store
            .streaming_job(&job.job)
            .await
            .map_err(|e| e.to_string())?
        {
            let alive = if s.host == host {
                pid_alive(s.pid)
            } else {
                // On another machine: trust its worker while that worker heartbeats.
                self.store
                    .worker_alive(
                        &s.worker_id,
                        now,
                        self.config.heartbeat_timeout_seconds as i64 * 1000,
                    )
                    .await
                    .map_err(|e| e.to_string())?
            };
            if alive {
                let _ = writeln!(
                    log,
                    "{} is running (pid {} on {}); nothing to do",
                    job.job, s.pid, s.host
                );
                return Ok(());
            }
            let _ = writeln!(
                log,
                "{} is not running any more (pid {} on {}): restarting it",
                job.job, s.pid, s.host
            );
        }
        let job_log = self
            .logs_dir
            .join("streaming")
            .join(job.job.replace('/', "__"))
            .join(format!("{now}.log"));
        let run = task_run(t, job, &job_log);
        let pid = self
            .executors
            .for_team(&job.team)
            .start_detached(&run)
            .await?;
        self.store
            .record_streaming(
                &job.job,
                &self.id,
                &host,
                pid,
                now,
                &job_log.display().to_string(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let _ = writeln!(
            log,
            "started {} as pid {pid}; its output goes to {}",
            job.job,
            job_log.display()
        );
        Ok(())
    }

    /// Uploads the configs whose content hash changed since their last successful upload.
    async fn upload_metadata(
        &self,
        t: &Claimed,
        jobs: &[JobRef],
        log_path: &std::path::Path,
    ) -> FinishOutcome {
        let ids: Vec<String> = jobs.iter().map(|j| j.job.clone()).collect();
        let uploaded = match self.store.uploaded_hashes(&ids).await {
            Ok(u) => u,
            Err(e) => return FinishOutcome::Failed(e.to_string()),
        };
        let changed: Vec<&JobRef> = jobs
            .iter()
            .filter(|j| uploaded.get(&j.job) != Some(&j.content_hash))
            .collect();
        if changed.is_empty() {
            return FinishOutcome::Skipped;
        }
        let mut failures = Vec::new();
        for job in changed {
            match self.run_job(t, job, log_path).await {
                Ok(()) => {
                    if let Err(e) = self
                        .store
                        .record_upload(&job.job, &job.content_hash, self.clock.now_ms())
                        .await
                    {
                        failures.push(format!("{}: {e}", job.job));
                    }
                }
                Err(e) => failures.push(format!("{}: {e}", job.job)),
            }
        }
        if failures.is_empty() {
            FinishOutcome::Success
        } else {
            FinishOutcome::Failed(failures.join("\n"))
        }
    }
}

/// What an executor gets for one try of `job`.
fn task_run(t: &Claimed, job: &JobRef, log_path: &std::path::Path) -> TaskRun {
    TaskRun {
        dag_id: t.dag_id.clone(),
        run_id: t.run_id.clone(),
        task_id: t.task_id.clone(),
        try_number: t.try_number,
        ds: t.ds.clone(),
        start_ds: t.start_ds.clone(),
        end_ds: t.end_ds.clone(),
        job: job.clone(),
        log_path: log_path.to_owned(),
    }
}

/// Whether process `pid` exists on this machine (and is not a zombie).
fn pid_alive(pid: i64) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses; `Z` is a zombie.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// This machine's name (worker ids and streaming-job ownership).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// `dag/run/task`, the key of a task instance in traces.
pub fn trace_key(t: &Claimed) -> String {
    format!("{}/{}/{}", t.dag_id, t.run_id, t.task_id)
}
