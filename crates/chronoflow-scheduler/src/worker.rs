//! Workers: claim queued task instances, run them on an executor, record the outcome.
//!
//! A worker's tries stay its own only while it heartbeats; a worker killed with `kill -9`
//! stops heartbeating, the scheduler fails its tries (retrying them elsewhere), and any
//! result the dead worker might still report is discarded by the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;

use crate::alert::{Alert, Alerter};
use crate::clock::Clock;
use crate::config::SchedulerConfig;
use crate::error::Result;
use crate::executor::{Executors, TaskRun, TryReport, Usage};
use crate::failpoint::FailPoints;
use crate::history::{JobRun, TryHistory};
use crate::metrics::{Metrics, TraceEvent};
use crate::spec::{Action, JobRef};
use crate::state::TaskState;
use crate::store::{Claimed, FinishOutcome, Store};
use crate::streams::{Ensured, StreamSupervisor};

/// A try this worker process is running.
struct Held {
    since: Instant,
    /// Stops the try (killing a command's process group); taken when the try is lost.
    cancel: Option<oneshot::Sender<()>>,
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
    /// Where finished tries are reported (the warehouse's `chronoflow.job_runs`), if anywhere.
    history: Option<Arc<dyn TryHistory>>,
    alerter: Alerter,
    /// Runs the streaming jobs of teams on the in-process executor (without it they fail, as
    /// the in-process executor cannot start a detached process).
    streams: Option<Arc<StreamSupervisor>>,
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
            history: None,
            streams: None,
        }
    }

    /// Supervises the streaming jobs of teams on the in-process executor with `streams`
    /// (stopped when the worker shuts down).
    pub fn with_streams(mut self, streams: Arc<StreamSupervisor>) -> Self {
        self.streams = Some(streams);
        self
    }

    pub fn streams(&self) -> Option<&Arc<StreamSupervisor>> {
        self.streams.as_ref()
    }

    /// Reports every try this worker finishes to `history`.
    pub fn with_history(mut self, history: Arc<dyn TryHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// Claims up to `max` tries, recording where their logs go.
    async fn claim(&self, max: usize) -> Result<Vec<Claimed>> {
        let log_path = |t: &Claimed| Some(self.log_path(t).display().to_string());
        self.store
            .claim_logged(&self.id, max, self.clock.now_ms(), &log_path)
            .await
    }

    /// Claims what it can and runs it to the end, one task after the other (deterministic
    /// tests drive workers this way). Returns the tasks claimed.
    pub async fn run_once(&self) -> Result<usize> {
        let claimed = self.claim(self.slots).await?;
        let n = claimed.len();
        for t in &claimed {
            self.metrics.record(|| trace_key(t), TraceEvent::Claimed);
        }
        for t in claimed {
            self.execute(t, None).await?;
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
        if let Some(streams) = &self.streams {
            match self.resume_streams(streams).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(worker = %self.id, streams = n, "resumed streams that had no live worker")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "resuming streams failed; keep-alives will start them")
                }
            }
        }
        // The tries this process runs: key and try number -> (claimed at, how to stop it).
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
                        .unwrap_or_else(PoisonError::into_inner)
                        .values()
                        .map(|h| h.claimed.clone())
                        .collect();
                    match me.store.heartbeat(&me.id, &tries, me.clock.now_ms()).await {
                        Ok(still) => {
                            // A try claimed before this heartbeat and no longer ours was taken
                            // away (we were presumed dead) or stopped by request: stop it, so it
                            // does not run beside its retry. (Dropping a command kills it.)
                            let still: HashSet<(String, i64)> = still.into_iter().collect();
                            held.lock().unwrap_or_else(PoisonError::into_inner).retain(|key, h| {
                                let lost = h.since < asked && !still.contains(key);
                                if lost {
                                    tracing::warn!(task = %key.0, try_number = key.1, "try stopped or taken over by another worker; stopping it");
                                    if let Some(cancel) = h.cancel.take() {
                                        let _ = cancel.send(());
                                    }
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
                match self.claim(free).await {
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
                let (cancel, cancelled) = oneshot::channel();
                // Registered before the task can finish, so its removal below always finds it.
                let mut guard = held.lock().unwrap_or_else(PoisonError::into_inner);
                running.spawn(async move {
                    if let Err(e) = me.execute(t, Some(cancelled)).await {
                        tracing::error!(error = %e, "task bookkeeping failed");
                    }
                    held_by_task
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&task_key);
                    drop(permit);
                    slot_freed.notify_one();
                });
                guard.insert(
                    key,
                    Held {
                        since: Instant::now(),
                        cancel: Some(cancel),
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
        if let Some(streams) = &self.streams {
            // SIGTERM, then SIGKILL after the grace period; rows read `stopped`, and the next
            // keep-alive elsewhere takes the streams over.
            streams.shutdown().await;
        }
        if let Some(history) = &self.history {
            history.flush().await;
        }
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

    /// Runs one claimed try and records its outcome. `cancelled` fires when the try is no
    /// longer this worker's (stopped by request, or taken over): the job is dropped (a command
    /// is killed) and nothing is recorded but its history. An `Err` means the worker could not
    /// record it (or an injected crash): the try stays `running` until reaped.
    async fn execute(&self, t: Claimed, cancelled: Option<oneshot::Receiver<()>>) -> Result<()> {
        let started = Instant::now();
        if let Some(ready) = t.ready_ms {
            self.metrics
                .dispatch_latency_seconds
                .observe((t.started_ms - ready).max(0) as f64 / 1000.0);
        }
        self.failpoints.check("worker.after_claim")?;
        let spec = self.store.spec(&t.dag_id, t.version).await?;
        let log_path = self.log_path(&t);
        let task = spec.task(&t.task_id);
        let action = task.map(|task| &task.action);
        let (outcome, usage) = match task.map(|task| (&task.action, task.execution_timeout_seconds))
        {
            None => (
                FinishOutcome::Failed(format!(
                    "task {} is not in version {} of DAG {}",
                    t.task_id, t.version, t.dag_id
                )),
                None,
            ),
            Some((action, timeout)) => {
                let run = self.run_action(&t, action, &log_path);
                let run = async {
                    match timeout {
                        Some(s) => match tokio::time::timeout(Duration::from_secs(s), run).await {
                            Ok(ran) => ran,
                            Err(_) => (
                                FinishOutcome::Failed(format!("timed out after {s} s")),
                                None,
                            ),
                        },
                        None => run.await,
                    }
                };
                let ran = match cancelled {
                    Some(cancelled) => {
                        // A dropped sender (never the case while the try is held) is no stop.
                        let stop = async {
                            if cancelled.await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        };
                        tokio::select! {
                            ran = run => Some(ran),
                            () = stop => None,
                        }
                    }
                    None => Some(run.await),
                };
                let Some((outcome, usage)) = ran else {
                    self.lost(&t, Some(action)).await;
                    return Ok(());
                };
                match self.failpoints.check("worker.in_job") {
                    Err(e) => (FinishOutcome::Failed(e.to_string()), usage),
                    Ok(()) => (outcome, usage),
                }
            }
        };
        self.failpoints.check("worker.before_commit")?;
        let error = match &outcome {
            FinishOutcome::Failed(e) => e.clone(),
            _ => String::new(),
        };
        let log = log_path.exists().then(|| log_path.display().to_string());
        let now = self.clock.now_ms();
        let state = self
            .store
            .finish(
                &t,
                Some(&self.id),
                outcome,
                self.config.retry_max_delay_seconds,
                log.as_deref(),
                usage,
                now,
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
                let recorded = (!error.is_empty()).then(|| error.clone());
                self.report(&t, action, state.as_str(), recorded, usage, now);
                if state == TaskState::Failed {
                    self.alerter
                        .send(Alert::for_try("task_failed", &t, error, log));
                }
            }
            None => {
                tracing::warn!(
                    dag_id = %t.dag_id, run_id = %t.run_id, task_id = %t.task_id, try_number = t.try_number,
                    "the try was stopped or taken over (this worker was presumed dead); its result is discarded"
                );
                self.lost(&t, action).await;
            }
        }
        Ok(())
    }

    /// Reports a try that is no longer this worker's, as the store recorded it (by whoever
    /// ended it: a stop, a mark, the reaper).
    async fn lost(&self, t: &Claimed, action: Option<&Action>) {
        if self.history.is_none() {
            return;
        }
        let now = self.clock.now_ms();
        let recorded = match self.store.tries(&t.dag_id, &t.run_id, &t.task_id).await {
            Ok(tries) => tries.into_iter().find(|r| r.try_number == t.try_number),
            Err(e) => {
                tracing::warn!(error = %e, "reading a lost try for the job history");
                None
            }
        };
        let (state, error, end) = match recorded {
            Some(r) => (r.state, r.error, r.ended_ms.unwrap_or(now)),
            None => ("failed".to_owned(), None, now),
        };
        self.report(t, action, &state, error, None, end);
    }

    /// Hands one finished try to the job history.
    fn report(
        &self,
        t: &Claimed,
        action: Option<&Action>,
        state: &str,
        error: Option<String>,
        usage: Option<Usage>,
        end_ms: i64,
    ) {
        let Some(history) = &self.history else {
            return;
        };
        let (job_type, config, team) = match action {
            Some(Action::Job(job)) => (job.mode.clone(), job.config.clone(), job.team.clone()),
            Some(Action::MetadataUpload { jobs }) => (
                "metadata-upload".to_owned(),
                jobs.iter()
                    .map(|j| j.config.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                t.team.clone(),
            ),
            _ => (String::new(), String::new(), t.team.clone()),
        };
        let usage = usage.unwrap_or_default();
        history.record(JobRun {
            job_type,
            config,
            team,
            dag_id: t.dag_id.clone(),
            run_id: t.run_id.clone(),
            task_id: t.task_id.clone(),
            try_number: t.try_number,
            worker_id: self.id.clone(),
            start_ms: t.started_ms,
            end_ms,
            duration_ms: (end_ms - t.started_ms).max(0),
            state: state.to_owned(),
            error,
            cpu_ms: usage.cpu_ms,
            max_rss_kb: usage.max_rss_kb,
            exit_code: usage.exit_code,
        });
    }

    /// Runs the try's action: how it ended and, when measured, what it used.
    async fn run_action(
        &self,
        t: &Claimed,
        action: &Action,
        log_path: &std::path::Path,
    ) -> (FinishOutcome, Option<Usage>) {
        let outcome = |result: std::result::Result<(), String>| match result {
            Ok(()) => FinishOutcome::Success,
            Err(e) => FinishOutcome::Failed(e),
        };
        match action {
            Action::Job(job) if job.mode == "streaming" => {
                let kept = match &self.streams {
                    Some(streams) if self.config.runs_in_process(&job.team) => {
                        self.supervise(streams, t, job, log_path).await
                    }
                    _ => self.keep_alive(t, job, log_path).await,
                };
                (outcome(kept), None)
            }
            Action::Job(job) => {
                let report = self.run_job(t, job, log_path).await;
                (outcome(report.result), report.usage)
            }
            Action::MetadataUpload { jobs } => self.upload_metadata(t, jobs, log_path).await,
            // Sensors are the scheduler's; a worker never claims one.
            Action::PartitionSensor { .. } | Action::UpstreamWait { .. } => (
                FinishOutcome::Failed("a sensor reached a worker".to_owned()),
                None,
            ),
        }
    }

    async fn run_job(&self, t: &Claimed, job: &JobRef, log_path: &std::path::Path) -> TryReport {
        self.executors
            .for_team(&job.team)
            .run(&task_run(t, job, log_path))
            .await
    }

    /// Streaming keep-alive on the in-process executor: hands the job to this worker's stream
    /// supervisor unless another live worker runs it. The supervisor restarts it after crashes;
    /// this task only (re)starts what no one supervises.
    async fn supervise(
        &self,
        streams: &StreamSupervisor,
        t: &Claimed,
        job: &JobRef,
        log_path: &std::path::Path,
    ) -> std::result::Result<(), String> {
        use std::io::Write;
        let mut log = crate::executor::open_log(log_path)?;
        let e = |e: crate::error::SchedulerError| e.to_string();
        // A run of an older version of the DAG must not restart a stream the repo dropped.
        let dag = self.store.dag(&t.dag_id).await.map_err(e)?;
        let current = self.store.spec(&t.dag_id, dag.version).await.map_err(e)?;
        let planned = !dag.removed
            && current
                .tasks
                .iter()
                .any(|task| matches!(&task.action, Action::Job(j) if j.job == job.job));
        if !planned {
            let _ = writeln!(
                log,
                "{} is no longer planned (DAG {} moved on): nothing to do",
                job.job, t.dag_id
            );
            return Ok(());
        }
        let row = self.store.streaming_job(&job.job).await.map_err(e)?;
        if let Some(s) = &row
            && s.worker_id != self.id
        {
            if self.stream_owner_alive(&s.worker_id).await.map_err(e)? {
                let _ = writeln!(
                    log,
                    "{} runs on worker {} (pid {} on {}, {}); nothing to do",
                    job.job, s.worker_id, s.pid, s.host, s.state
                );
                return Ok(());
            }
            let _ = writeln!(
                log,
                "{} was worker {}'s, which is gone: taking it over",
                job.job, s.worker_id
            );
        }
        match streams.ensure(job, &t.dag_id, &t.task_id).await? {
            Ensured::Supervised => {
                let _ = writeln!(
                    log,
                    "{} is supervised by this worker ({}); nothing to do",
                    job.job,
                    row.map_or_else(|| "no row".to_owned(), |r| r.state)
                );
            }
            Ensured::Started => {
                let _ = writeln!(
                    log,
                    "started {}; its output goes to {}",
                    job.job,
                    streams.paths(&job.job).log.display()
                );
            }
        }
        Ok(())
    }

    /// Whether `owner` (a worker) may still run its streams: it did not stop, and on this
    /// machine its process exists, elsewhere it heartbeats. (Its streams die with it: a stream
    /// is a child with PR_SET_PDEATHSIG, or runs in the worker's process.)
    async fn stream_owner_alive(&self, owner: &str) -> Result<bool> {
        let Some((host, pid, heartbeat_ms, stopped)) = self.store.worker_process(owner).await?
        else {
            return Ok(false);
        };
        if stopped {
            return Ok(false);
        }
        if host == hostname() {
            return Ok(pid_alive(pid));
        }
        let timeout = crate::state::seconds_ms(self.config.heartbeat_timeout_seconds);
        Ok(self.clock.now_ms().saturating_sub(heartbeat_ms) <= timeout)
    }

    /// At start: takes back the streams that were running before and have no live owner now
    /// (this worker's id from an earlier process, a worker that stopped or died), so a restart
    /// does not leave them down until the next keep-alive (up to 10 minutes). Only streams a
    /// current DAG still runs, for teams on the in-process executor.
    async fn resume_streams(&self, streams: &StreamSupervisor) -> Result<usize> {
        let mut orphaned = HashSet::new();
        for row in self.store.streaming_jobs().await? {
            if row.worker_id == self.id || !self.stream_owner_alive(&row.worker_id).await? {
                orphaned.insert(row.job_id);
            }
        }
        if orphaned.is_empty() {
            return Ok(0);
        }
        let mut resumed = 0;
        for dag in self.store.dags().await? {
            if dag.removed {
                continue;
            }
            let spec = match self.store.spec(&dag.dag_id, dag.version).await {
                Ok(spec) => spec,
                Err(e) => {
                    self.store.skip_corrupt(e)?;
                    continue;
                }
            };
            for task in &spec.tasks {
                let Action::Job(job) = &task.action else {
                    continue;
                };
                if job.mode != "streaming"
                    || !self.config.runs_in_process(&job.team)
                    || !orphaned.remove(&job.job)
                {
                    continue;
                }
                match streams.ensure(job, &dag.dag_id, &task.task_id).await {
                    Ok(_) => resumed += 1,
                    Err(error) => {
                        tracing::warn!(job = %job.job, %error, "resuming a stream failed; the next keep-alive retries")
                    }
                }
            }
        }
        Ok(resumed)
    }

    /// Streaming keep-alive on a command executor: leaves a running streaming job alone,
    /// starts it when absent, and restarts it when its process died.
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
                        crate::state::seconds_ms(self.config.heartbeat_timeout_seconds),
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
    ) -> (FinishOutcome, Option<Usage>) {
        let ids: Vec<String> = jobs.iter().map(|j| j.job.clone()).collect();
        let uploaded = match self.store.uploaded_hashes(&ids).await {
            Ok(u) => u,
            Err(e) => return (FinishOutcome::Failed(e.to_string()), None),
        };
        let changed: Vec<&JobRef> = jobs
            .iter()
            .filter(|j| uploaded.get(&j.job) != Some(&j.content_hash))
            .collect();
        if changed.is_empty() {
            return (FinishOutcome::Skipped, None);
        }
        let mut failures = Vec::new();
        let mut usage: Option<Usage> = None;
        for job in changed {
            let report = self.run_job(t, job, log_path).await;
            if let Some(u) = report.usage {
                usage = Some(usage.map_or(u, |so_far| so_far.then(u)));
            }
            match report.result {
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
        let outcome = if failures.is_empty() {
            FinishOutcome::Success
        } else {
            FinishOutcome::Failed(failures.join("\n"))
        };
        (outcome, usage)
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
