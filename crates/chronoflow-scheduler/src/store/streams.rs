//! Streaming jobs: who runs each long-running consumer, and what its supervisor last saw.

use std::collections::BTreeSet;

use serde::Serialize;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::Store;
use super::row::Stored;
use super::transact;
use crate::error::{Result, SchedulerError};
use crate::spec::{Action, DagSpec};

/// A streaming job's process, as recorded by the worker that started (or supervises) it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StreamingJob {
    pub job_id: String,
    pub worker_id: String,
    pub host: String,
    pub pid: i64,
    /// When the current run started.
    pub started_ms: i64,
    pub log_path: String,
    /// `starting`, `running`, `backoff`, `failed` (restarting, past the alert threshold) or
    /// `stopped`.
    pub state: String,
    /// Crashes since this worker took the stream.
    pub restarts: i64,
    /// Why the last run ended.
    pub last_exit: Option<String>,
    /// The consumer's last status file (`null` until it wrote one).
    pub status: Option<serde_json::Value>,
    /// When the supervisor last wrote the row.
    pub updated_ms: Option<i64>,
}

/// A supervised stream whose row was not written for this long (wall time) has lost its
/// supervisor (its worker died or hangs): it reads as `stale`.
pub const STREAM_STALE_AFTER_MS: i64 = 30_000;

impl StreamingJob {
    /// The state as far as it can be trusted at `now_ms` (wall time): `stale` for a supervised
    /// stream whose supervisor stopped writing while it was not stopped.
    pub fn observed_state(&self, now_ms: i64) -> &str {
        match self.updated_ms {
            Some(updated)
                if self.state != "stopped"
                    && now_ms.saturating_sub(updated) > STREAM_STALE_AFTER_MS =>
            {
                "stale"
            }
            _ => &self.state,
        }
    }

    /// The GroupBy the stream feeds: as its status says, else the job id without its mode.
    pub fn group_by(&self) -> &str {
        self.status
            .as_ref()
            .and_then(|s| s.get("group_by"))
            .and_then(|g| g.as_str())
            .unwrap_or_else(|| {
                self.job_id
                    .rsplit_once('/')
                    .map_or(self.job_id.as_str(), |(name, _)| name)
            })
    }

    /// An integer field of the status (`records_read`, `last_event_ms`...).
    pub fn status_int(&self, field: &str) -> Option<i64> {
        self.status.as_ref()?.get(field)?.as_i64()
    }

    /// `(topic, partition, lag)` of each partition the status lists (the topic when it says).
    pub fn partition_lags(&self) -> Vec<(Option<&str>, i64, i64)> {
        let Some(parts) = self
            .status
            .as_ref()
            .and_then(|s| s.get("partitions"))
            .and_then(|p| p.as_array())
        else {
            return Vec::new();
        };
        parts
            .iter()
            .filter_map(|p| {
                let topic = p.get("topic").and_then(|t| t.as_str());
                Some((
                    topic,
                    p.get("partition")?.as_i64()?,
                    p.get("lag")?.as_i64()?,
                ))
            })
            .collect()
    }

    /// The lag summed over partitions (negative lags, a watermark not fetched yet, count 0).
    pub fn total_lag(&self) -> Option<i64> {
        let lags = self.partition_lags();
        (!lags.is_empty()).then(|| lags.iter().map(|(_, _, lag)| (*lag).max(0)).sum())
    }

    /// Whether the stream is consuming: supervised or not, its row says running and is not
    /// stale, and the consumer's own status (if it wrote one) says running.
    pub fn is_up(&self, now_ms: i64) -> bool {
        let consumer = self
            .status
            .as_ref()
            .and_then(|s| s.get("state"))
            .and_then(|s| s.as_str());
        self.observed_state(now_ms) == "running" && matches!(consumer, None | Some("running"))
    }
}

/// What a supervisor writes into its stream's row every few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamUpdate<'a> {
    pub state: &'a str,
    pub pid: i64,
    pub started_ms: i64,
    pub restarts: i64,
    pub last_exit: Option<&'a str>,
    /// The status file's text (valid JSON).
    pub status_json: Option<&'a str>,
}

fn streaming_row(r: &AnyRow) -> Result<StreamingJob> {
    let r = Stored::new("streaming_jobs", r);
    let status: Option<String> = r.get("status_json")?;
    Ok(StreamingJob {
        job_id: r.get("job_id")?,
        worker_id: r.get("worker_id")?,
        host: r.get("host")?,
        pid: r.get("pid")?,
        started_ms: r.get("started_ms")?,
        log_path: r.get("log_path")?,
        state: r.get("state")?,
        restarts: r.get("restarts")?,
        last_exit: r.get("last_exit")?,
        // Written by the supervisor only once it parsed; anything else reads as no status.
        status: status.and_then(|s| serde_json::from_str(&s).ok()),
        updated_ms: r.get("updated_ms")?,
    })
}

impl Store {
    pub async fn streaming_job(&self, job_id: &str) -> Result<Option<StreamingJob>> {
        let row = sqlx::query("SELECT * FROM streaming_jobs WHERE job_id = $1")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(SchedulerError::db("reading a streaming job"))?;
        row.as_ref().map(streaming_row).transpose()
    }

    /// Every streaming job, by job id.
    pub async fn streaming_jobs(&self) -> Result<Vec<StreamingJob>> {
        let rows = sqlx::query("SELECT * FROM streaming_jobs ORDER BY job_id")
            .fetch_all(&self.pool)
            .await
            .map_err(SchedulerError::db("listing streaming jobs"))?;
        rows.iter().map(streaming_row).collect()
    }

    /// Records a detached command job (started by a command executor), replacing any earlier
    /// owner.
    pub async fn record_streaming(
        &self,
        job_id: &str,
        worker_id: &str,
        host: &str,
        pid: u32,
        now: i64,
        log_path: &str,
    ) -> Result<()> {
        // No supervisor updates it: `updated_ms` stays NULL, so it never reads as stale.
        let started = (i64::from(pid), now, None);
        self.replace_stream(job_id, worker_id, host, started, log_path, "running")
            .await
    }

    /// Makes `worker_id` the owner of `job_id`'s stream, about to start it (state `starting`).
    pub async fn claim_stream(
        &self,
        job_id: &str,
        worker_id: &str,
        host: &str,
        pid: i64,
        now: i64,
        log_path: &str,
    ) -> Result<()> {
        self.replace_stream(
            job_id,
            worker_id,
            host,
            (pid, now, Some(now)),
            log_path,
            "starting",
        )
        .await
    }

    /// `started`: the pid, when it started and when its supervisor last wrote (if supervised).
    async fn replace_stream(
        &self,
        job_id: &str,
        worker_id: &str,
        host: &str,
        started: (i64, i64, Option<i64>),
        log_path: &str,
        state: &str,
    ) -> Result<()> {
        let (pid, now, updated) = started;
        transact!(self, "recording a streaming job", c, {
            sqlx::query("DELETE FROM streaming_jobs WHERE job_id = $1")
                .bind(job_id)
                .execute(&mut *c)
                .await
                .map_err(SchedulerError::db("recording a streaming job"))?;
            sqlx::query(
                "INSERT INTO streaming_jobs (job_id, worker_id, host, pid, started_ms, log_path, state, restarts, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)",
            )
            .bind(job_id)
            .bind(worker_id)
            .bind(host)
            .bind(pid)
            .bind(now)
            .bind(log_path)
            .bind(state)
            .bind(updated)
            .execute(&mut *c)
            .await
            .map_err(SchedulerError::db("recording a streaming job"))?;
            Ok(())
        })
    }

    /// Writes what the supervisor sees into its stream's row, if the row is still `worker_id`'s.
    /// `false`: the row is gone (the config left the repo) or another worker took the stream
    /// over; either way this worker must stop it.
    pub async fn update_stream(
        &self,
        job_id: &str,
        worker_id: &str,
        update: &StreamUpdate<'_>,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE streaming_jobs SET state = $1, pid = $2, started_ms = $3, restarts = $4, last_exit = $5, status_json = $6, updated_ms = $7 WHERE job_id = $8 AND worker_id = $9",
        )
        .bind(update.state)
        .bind(update.pid)
        .bind(update.started_ms)
        .bind(update.restarts)
        .bind(update.last_exit)
        .bind(update.status_json)
        .bind(now)
        .bind(job_id)
        .bind(worker_id)
        .execute(&self.pool)
        .await
        .map_err(SchedulerError::db("updating a streaming job"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Worker `worker_id` as it registered: `(host, pid, heartbeat_ms, stopped)`.
    pub async fn worker_process(
        &self,
        worker_id: &str,
    ) -> Result<Option<(String, i64, i64, bool)>> {
        let row = sqlx::query(
            "SELECT worker_id, host, pid, heartbeat_ms, stopped_ms FROM workers WHERE worker_id = $1",
        )
        .bind(worker_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(SchedulerError::db("reading a worker"))?;
        row.map(|r| {
            let r = Stored::new("workers", &r);
            Ok((
                r.get("host")?,
                r.get("pid")?,
                r.get("heartbeat_ms")?,
                r.get::<Option<i64>>("stopped_ms")?.is_some(),
            ))
        })
        .transpose()
    }

    /// Whether `worker_id` heartbeated within `timeout_ms` and has not stopped.
    pub async fn worker_alive(&self, worker_id: &str, now: i64, timeout_ms: i64) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM workers WHERE worker_id = $1 AND stopped_ms IS NULL AND heartbeat_ms >= $2",
        )
        .bind(worker_id)
        .bind(now.saturating_sub(timeout_ms))
        .fetch_optional(&self.pool)
        .await
        .map_err(SchedulerError::db("reading a worker"))?;
        Ok(row.is_some())
    }
}

/// The streaming jobs `spec` runs.
pub(crate) fn streaming_jobs_of(spec: &DagSpec) -> impl Iterator<Item = &str> {
    spec.tasks.iter().filter_map(|t| match &t.action {
        Action::Job(job) if job.mode == "streaming" => Some(job.job.as_str()),
        _ => None,
    })
}

/// Deletes the rows of streaming jobs not in `keep` (their config left the repo, or stopped
/// being a streaming GroupBy): their supervisors see the row gone and stop them. Returns the
/// deleted job ids.
pub(crate) async fn prune_streams(
    c: &mut AnyConnection,
    keep: &BTreeSet<&str>,
) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT job_id FROM streaming_jobs")
        .fetch_all(&mut *c)
        .await
        .map_err(SchedulerError::db("reading streaming jobs"))?;
    let mut gone = Vec::new();
    for r in &rows {
        let job_id: String = Stored::new("streaming_jobs", r).get("job_id")?;
        if !keep.contains(job_id.as_str()) {
            gone.push(job_id);
        }
    }
    for job_id in &gone {
        sqlx::query("DELETE FROM streaming_jobs WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *c)
            .await
            .map_err(SchedulerError::db("removing a streaming job"))?;
    }
    Ok(gone)
}
