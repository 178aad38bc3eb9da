//! Task instances: readiness, concurrency slots, claims, results, retries, sensors, clearing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::PoisonError;

use serde::Serialize;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::row::Stored;
use super::transact;
use super::{Store, placeholders};
use crate::error::{Result, SchedulerError};
use crate::executor::Usage;
use crate::spec::DagSpec;
use crate::state::{TaskState, readiness, retry_delay_ms};
use sqlx::AssertSqlSafe;

#[derive(Debug, Clone, Serialize)]
pub struct TaskInstanceRow {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub version: i64,
    pub team: String,
    pub is_sensor: bool,
    pub state: String,
    pub try_number: i64,
    pub max_tries: i64,
    pub ds: String,
    pub start_ds: String,
    pub end_ds: String,
    pub ready_ms: Option<i64>,
    pub queued_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub heartbeat_ms: Option<i64>,
    pub next_ms: Option<i64>,
    pub worker_id: Option<String>,
    pub error: Option<String>,
}

fn ti_row(r: &AnyRow) -> Result<TaskInstanceRow> {
    let r = Stored::new("task_instances", r);
    Ok(TaskInstanceRow {
        dag_id: r.get("dag_id")?,
        run_id: r.get("run_id")?,
        task_id: r.get("task_id")?,
        version: r.get("version")?,
        team: r.get("team")?,
        is_sensor: r.flag("is_sensor")?,
        state: r.get("state")?,
        try_number: r.get("try_number")?,
        max_tries: r.get("max_tries")?,
        ds: r.get("ds")?,
        start_ds: r.get("start_ds")?,
        end_ds: r.get("end_ds")?,
        ready_ms: r.get("ready_ms")?,
        queued_ms: r.get("queued_ms")?,
        started_ms: r.get("started_ms")?,
        ended_ms: r.get("ended_ms")?,
        heartbeat_ms: r.get("heartbeat_ms")?,
        next_ms: r.get("next_ms")?,
        worker_id: r.get("worker_id")?,
        error: r.get("error")?,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskTryRow {
    pub try_number: i64,
    pub worker_id: String,
    pub state: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub error: Option<String>,
    pub log_path: Option<String>,
    /// The command's exit status (negative: killed by that signal); `None` for in-process
    /// jobs, sensors and tries not measured (still running, stopped, lost with their worker).
    pub exit_code: Option<i64>,
    /// User + system CPU time of the try (in-process jobs: of the worker process meanwhile).
    pub cpu_ms: Option<i64>,
    /// Peak resident memory, KiB (in-process jobs: the worker process's peak).
    pub max_rss_kb: Option<i64>,
}

fn try_row(r: &AnyRow) -> Result<TaskTryRow> {
    let r = Stored::new("task_tries", r);
    Ok(TaskTryRow {
        try_number: r.get("try_number")?,
        worker_id: r.get("worker_id")?,
        state: r.get("state")?,
        started_ms: r.get("started_ms")?,
        ended_ms: r.get("ended_ms")?,
        error: r.get("error")?,
        log_path: r.get("log_path")?,
        exit_code: r.get("exit_code")?,
        cpu_ms: r.get("cpu_ms")?,
        max_rss_kb: r.get("max_rss_kb")?,
    })
}

/// A task instance a worker (or, for a sensor, the scheduler) now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub version: i64,
    pub team: String,
    pub ds: String,
    pub start_ds: String,
    pub end_ds: String,
    pub try_number: i64,
    pub max_tries: i64,
    pub ready_ms: Option<i64>,
    pub started_ms: i64,
}

fn claimed(r: &AnyRow) -> Result<Claimed> {
    let r = Stored::new("task_instances", r);
    Ok(Claimed {
        dag_id: r.get("dag_id")?,
        run_id: r.get("run_id")?,
        task_id: r.get("task_id")?,
        version: r.get("version")?,
        team: r.get("team")?,
        ds: r.get("ds")?,
        start_ds: r.get("start_ds")?,
        end_ds: r.get("end_ds")?,
        try_number: r.get("try_number")?,
        max_tries: r.get("max_tries")?,
        ready_ms: r.get("ready_ms")?,
        started_ms: r.get::<Option<i64>>("started_ms")?.unwrap_or_default(),
    })
}

/// How a try ended, as its runner saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    Success,
    /// Nothing to do (e.g. no config changed since the last metadata upload).
    Skipped,
    Failed(String),
    /// A sensor's condition is not met yet: poke again at `next_ms`.
    NotYet {
        next_ms: i64,
    },
    /// A sensor gave up: fails without retry.
    TimedOut(String),
}

/// The columns [`claimed`] reads.
const CLAIMED_COLUMNS: &str = "dag_id, run_id, task_id, version, team, ds, start_ds, end_ds, try_number, max_tries, ready_ms, started_ms";

impl Store {
    pub async fn task_instances(&self, dag_id: &str, run_id: &str) -> Result<Vec<TaskInstanceRow>> {
        self.run(dag_id, run_id).await?;
        let rows = sqlx::query(
            "SELECT * FROM task_instances WHERE dag_id = $1 AND run_id = $2 ORDER BY task_id",
        )
        .bind(dag_id)
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("listing task instances"))?;
        rows.iter().map(ti_row).collect()
    }

    pub async fn task_instance(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
    ) -> Result<TaskInstanceRow> {
        let row = sqlx::query(
            "SELECT * FROM task_instances WHERE dag_id = $1 AND run_id = $2 AND task_id = $3",
        )
        .bind(dag_id)
        .bind(run_id)
        .bind(task_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(SchedulerError::db("reading a task instance"))?;
        match row {
            Some(r) => ti_row(&r),
            None => {
                self.run(dag_id, run_id).await?;
                Err(SchedulerError::UnknownTask {
                    dag_id: dag_id.to_owned(),
                    task_id: task_id.to_owned(),
                })
            }
        }
    }

    pub async fn tries(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
    ) -> Result<Vec<TaskTryRow>> {
        self.task_instance(dag_id, run_id, task_id).await?;
        let rows = sqlx::query(
            "SELECT * FROM task_tries WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 ORDER BY try_number",
        )
        .bind(dag_id)
        .bind(run_id)
        .bind(task_id)
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("listing tries"))?;
        rows.iter().map(try_row).collect()
    }

    /// Task instances per state, for metrics.
    pub async fn state_counts(&self) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query("SELECT state, count(*) AS n FROM task_instances GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(SchedulerError::db("counting task instances"))?;
        rows.iter()
            .map(|r| {
                let r = Stored::new("task_instances", r);
                Ok((r.get("state")?, r.get("n")?))
            })
            .collect()
    }

    pub async fn register_worker(
        &self,
        worker_id: &str,
        host: &str,
        pid: u32,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            // A worker restarted under the same id is alive again: a stop recorded by its
            // previous process would make others take its streams over.
            "INSERT INTO workers (worker_id, host, pid, started_ms, heartbeat_ms) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (worker_id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
             started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms, stopped_ms = NULL",
        )
        .bind(worker_id)
        .bind(host)
        .bind(i64::from(pid))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(SchedulerError::db("registering a worker"))?;
        Ok(())
    }

    pub async fn stop_worker(&self, worker_id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE workers SET stopped_ms = $1 WHERE worker_id = $2")
            .bind(now)
            .bind(worker_id)
            .execute(&self.pool)
            .await
            .map_err(SchedulerError::db("stopping a worker"))?;
        Ok(())
    }

    /// Reports that the tries a worker is running are alive. Only the tries it names are
    /// refreshed (a try it lost track of is reaped like a dead worker's). Returns those it still
    /// holds: one missing was taken away (presumed dead) and the worker stops running it.
    pub async fn heartbeat(
        &self,
        worker_id: &str,
        tries: &[Claimed],
        now: i64,
    ) -> Result<Vec<(String, i64)>> {
        transact!(self, "heartbeat", c, {
            let mut held = Vec::with_capacity(tries.len());
            for chunk in tries.chunks(200) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|i| format!("({})", placeholders(3 + i * 4, 4)))
                    .collect();
                let sql = format!(
                    "UPDATE task_instances SET heartbeat_ms = $1 WHERE worker_id = $2 AND state = 'running' \
                     AND (dag_id, run_id, task_id, try_number) IN (VALUES {}) RETURNING dag_id, run_id, task_id, try_number",
                    values.join(", ")
                );
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now).bind(worker_id);
                for t in chunk {
                    q = q
                        .bind(&t.dag_id)
                        .bind(&t.run_id)
                        .bind(&t.task_id)
                        .bind(t.try_number);
                }
                for r in q
                    .fetch_all(&mut *c)
                    .await
                    .map_err(SchedulerError::db("heartbeat"))?
                {
                    let r = Stored::new("task_instances", &r);
                    held.push((
                        format!(
                            "{}/{}/{}",
                            r.get::<String>("dag_id")?,
                            r.get::<String>("run_id")?,
                            r.get::<String>("task_id")?
                        ),
                        r.get("try_number")?,
                    ));
                }
            }
            sqlx::query("UPDATE workers SET heartbeat_ms = $1 WHERE worker_id = $2")
                .bind(now)
                .bind(worker_id)
                .execute(&mut *c)
                .await
                .map_err(SchedulerError::db("heartbeat"))?;
            Ok(held)
        })
    }

    /// Claims up to `max` queued task instances for `worker_id`: they become `running`, with a
    /// new try. Two workers never get the same instance (SKIP LOCKED / one SQLite writer).
    pub async fn claim(&self, worker_id: &str, max: usize, now: i64) -> Result<Vec<Claimed>> {
        self.claim_logged(worker_id, max, now, &|_| None).await
    }

    /// [`Store::claim`], recording where each try's log goes (`log_path`) with the try, so the
    /// log can be read while the try runs.
    pub async fn claim_logged(
        &self,
        worker_id: &str,
        max: usize,
        now: i64,
        log_path: &(dyn Fn(&Claimed) -> Option<String> + Sync),
    ) -> Result<Vec<Claimed>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        transact!(self, "claiming tasks", c, {
            let worker_id = worker_id.to_owned();

            let sql = format!(
                "UPDATE task_instances SET state = 'running', worker_id = $1, try_number = try_number + 1, started_ms = $2, heartbeat_ms = $2, ended_ms = NULL, error = NULL \
                     WHERE state = 'queued' AND (dag_id, run_id, task_id) IN \
                     (SELECT dag_id, run_id, task_id FROM task_instances WHERE state = 'queued' ORDER BY queued_ms, run_order, priority, task_id LIMIT $3{}) RETURNING {CLAIMED_COLUMNS}",
                self.skip_locked()
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(&worker_id)
                .bind(now)
                .bind(max as i64)
                .fetch_all(&mut *c)
                .await
                .map_err(SchedulerError::db("claiming tasks"))?;
            let claimed = rows.iter().map(claimed).collect::<Result<Vec<_>>>()?;
            for t in &claimed {
                insert_try(c, t, &worker_id, log_path(t), now).await?;
            }
            Ok(claimed)
        })
    }

    /// Records how a try ended, and what it used when measured. `runner` is the worker that
    /// holds it (`None` for the scheduler's own sensors and for reaping). Returns the new
    /// state, or `None` when the try was no longer this runner's (declared dead, or stopped,
    /// meanwhile): its result is then discarded.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        &self,
        t: &Claimed,
        runner: Option<&str>,
        outcome: FinishOutcome,
        retry_cap_seconds: u64,
        log_path: Option<&str>,
        usage: Option<Usage>,
        now: i64,
    ) -> Result<Option<TaskState>> {
        let spec = self.spec(&t.dag_id, t.version).await?;
        let (state, queued) = transact!(self, "finishing a task", c, {
            let spec = spec.clone();
            let outcome = outcome.clone();

            self.finish_in(
                c,
                &spec,
                t,
                runner,
                outcome,
                retry_cap_seconds,
                log_path,
                usage,
                now,
            )
            .await
        })?;
        if queued > 0 {
            self.work_available.notify_waiters();
        }
        Ok(state)
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_in(
        &self,
        c: &mut AnyConnection,
        spec: &DagSpec,
        t: &Claimed,
        runner: Option<&str>,
        outcome: FinishOutcome,
        retry_cap_seconds: u64,
        log_path: Option<&str>,
        usage: Option<Usage>,
        now: i64,
    ) -> Result<(Option<TaskState>, u64)> {
        lock_run(self, c, &t.dag_id, &t.run_id).await?;
        let task = spec.task(&t.task_id);
        let (state, next, error) = match outcome {
            FinishOutcome::Success => (TaskState::Success, None, None),
            FinishOutcome::Skipped => (TaskState::Skipped, None, None),
            FinishOutcome::NotYet { next_ms } => {
                let done = sqlx::query(
                    "UPDATE task_instances SET next_ms = $1 WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND state = 'running' AND try_number = $5",
                )
                .bind(next_ms)
                .bind(&t.dag_id)
                .bind(&t.run_id)
                .bind(&t.task_id)
                .bind(t.try_number)
                .execute(&mut *c)
                .await
                .map_err(SchedulerError::db("rescheduling a sensor"))?;
                return Ok(((done.rows_affected() > 0).then_some(TaskState::Running), 0));
            }
            FinishOutcome::TimedOut(e) => (TaskState::Failed, None, Some(e)),
            FinishOutcome::Failed(e) if t.try_number < t.max_tries => {
                let base = task.map(|t| t.retry_delay_seconds).unwrap_or(60);
                let key = format!("{}/{}/{}", t.dag_id, t.run_id, t.task_id);
                let delay = retry_delay_ms(base, retry_cap_seconds, t.try_number + 1, &key);
                (
                    TaskState::UpForRetry,
                    Some(now.saturating_add(delay)),
                    Some(e),
                )
            }
            FinishOutcome::Failed(e) => (TaskState::Failed, None, Some(e)),
        };
        let error = error.map(|e| excerpt(&e));
        let done = sqlx::query(
            "UPDATE task_instances SET state = $1, ended_ms = $2, next_ms = $3, error = $4 \
             WHERE dag_id = $5 AND run_id = $6 AND task_id = $7 AND state = 'running' AND try_number = $8 AND ($9 = '' OR worker_id = $9)",
        )
        .bind(state.as_str())
        .bind(now)
        .bind(next)
        .bind(&error)
        .bind(&t.dag_id)
        .bind(&t.run_id)
        .bind(&t.task_id)
        .bind(t.try_number)
        .bind(runner.unwrap_or(""))
        .execute(&mut *c)
        .await
        .map_err(SchedulerError::db("finishing a task"))?;
        if done.rows_affected() == 0 {
            return Ok((None, 0));
        }
        let try_state = match state {
            TaskState::UpForRetry => "failed",
            s => s.as_str(),
        };
        let usage = usage.unwrap_or_default();
        sqlx::query(
            "UPDATE task_tries SET state = $1, ended_ms = $2, error = $3, log_path = COALESCE($4, log_path), \
             exit_code = $5, cpu_ms = $6, max_rss_kb = $7 \
             WHERE dag_id = $8 AND run_id = $9 AND task_id = $10 AND try_number = $11",
        )
        .bind(try_state)
        .bind(now)
        .bind(&error)
        .bind(log_path)
        .bind(usage.exit_code)
        .bind(usage.cpu_ms)
        .bind(usage.max_rss_kb)
        .bind(&t.dag_id)
        .bind(&t.run_id)
        .bind(&t.task_id)
        .bind(t.try_number)
        .execute(&mut *c)
        .await
        .map_err(SchedulerError::db("recording a try"))?;
        if state.is_terminal() {
            self.on_terminal(c, spec, &t.run_id, &t.task_id, state, now)
                .await?;
        }
        let queued = self.fill_slots(c, &t.dag_id, now).await?;
        Ok((Some(state), queued))
    }

    /// After a task reached a terminal state: the run's counters, then its downstream tasks
    /// (ready, or failed upstream in turn), then the run itself.
    async fn on_terminal(
        &self,
        c: &mut AnyConnection,
        spec: &DagSpec,
        run_id: &str,
        task_id: &str,
        state: TaskState,
        now: i64,
    ) -> Result<()> {
        let mut work: VecDeque<(String, TaskState)> = VecDeque::from([(task_id.to_owned(), state)]);
        while let Some((task, state)) = work.pop_front() {
            count_terminal(c, &spec.dag_id, run_id, state, 1).await?;
            for d in spec.downstream_of(&task) {
                if let Some(new) = self.check_ready(c, spec, run_id, d, now).await?
                    && new.is_terminal()
                {
                    work.push_back((d.to_owned(), new));
                }
            }
        }
        complete_run_if_done(c, &spec.dag_id, run_id, now).await
    }

    /// Moves a `waiting` task whose upstream is done: to `scheduled` (sensors straight to
    /// `running`), or to `upstream_failed`. Returns the new state.
    async fn check_ready(
        &self,
        c: &mut AnyConnection,
        spec: &DagSpec,
        run_id: &str,
        task_id: &str,
        now: i64,
    ) -> Result<Option<TaskState>> {
        let Some(task) = spec.task(task_id) else {
            return Ok(None);
        };
        let mut states = Vec::with_capacity(task.upstream.len());
        for chunk in task.upstream.chunks(500) {
            let sql = format!(
                "SELECT state FROM task_instances WHERE dag_id = $1 AND run_id = $2 AND task_id IN ({})",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql))
                .bind(&spec.dag_id)
                .bind(run_id);
            for u in chunk {
                q = q.bind(u);
            }
            for r in q
                .fetch_all(&mut *c)
                .await
                .map_err(SchedulerError::db("reading upstream states"))?
            {
                states.push(Stored::new("task_instances", &r).task_state("state")?);
            }
        }
        if states.len() < task.upstream.len() {
            return Ok(None);
        }
        let Some(new) = readiness(states) else {
            return Ok(None);
        };
        let sensor = task.action.is_sensor();
        let sql = match (new, sensor) {
            (TaskState::Scheduled, true) => {
                "UPDATE task_instances SET state = 'running', try_number = try_number + 1, ready_ms = $1, started_ms = $1, next_ms = $1 WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND state = 'waiting'"
            }
            (TaskState::Scheduled, false) => {
                "UPDATE task_instances SET state = 'scheduled', ready_ms = $1 WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND state = 'waiting'"
            }
            _ => {
                "UPDATE task_instances SET state = 'upstream_failed', ended_ms = $1 WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND state = 'waiting'"
            }
        };
        let done = sqlx::query(sql)
            .bind(now)
            .bind(&spec.dag_id)
            .bind(run_id)
            .bind(task_id)
            .execute(&mut *c)
            .await
            .map_err(SchedulerError::db("promoting a task"))?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some(match (new, sensor) {
            (TaskState::Scheduled, true) => TaskState::Running,
            (s, _) => s,
        }))
    }

    /// Queues `scheduled` tasks of the DAG within its concurrency and its team's. Returns how
    /// many were queued.
    pub(crate) async fn fill_slots(
        &self,
        c: &mut AnyConnection,
        dag_id: &str,
        now: i64,
    ) -> Result<u64> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT paused, version, team FROM dags WHERE dag_id = $1{}",
            self.for_update()
        )))
        .bind(dag_id)
        .fetch_optional(&mut *c)
        .await
        .map_err(SchedulerError::db("reading a DAG"))?;
        let Some(row) = row else { return Ok(0) };
        let row = Stored::new("dags", &row);
        if row.flag("paused")? {
            return Ok(0);
        }
        let spec = self.spec_in(c, dag_id, row.get("version")?).await?;
        let team: String = row.get("team")?;
        let active: i64 = sqlx::query(
            "SELECT count(*) AS n FROM task_instances WHERE dag_id = $1 AND state IN ('queued', 'running') AND is_sensor = 0",
        )
        .bind(dag_id)
        .fetch_one(&mut *c)
        .await
        .map_err(SchedulerError::db("counting active tasks"))
        .and_then(|r| Stored::new("task_instances", &r).get("n"))?;
        let mut free = i64::from(spec.concurrency) - active;
        let team_limit = self
            .team_limits
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&team)
            .copied();
        if let Some(limit) = team_limit {
            let team_active: i64 = sqlx::query(
                "SELECT count(*) AS n FROM task_instances WHERE team = $1 AND state IN ('queued', 'running') AND is_sensor = 0",
            )
            .bind(&team)
            .fetch_one(&mut *c)
            .await
            .map_err(SchedulerError::db("counting active tasks"))
            .and_then(|r| Stored::new("task_instances", &r).get("n"))?;
            free = free.min(i64::from(limit) - team_active);
        }
        if free <= 0 {
            return Ok(0);
        }
        let done = sqlx::query(
            "UPDATE task_instances SET state = 'queued', queued_ms = $1 WHERE state = 'scheduled' AND (dag_id, run_id, task_id) IN \
             (SELECT dag_id, run_id, task_id FROM task_instances WHERE dag_id = $2 AND state = 'scheduled' ORDER BY run_order, priority, task_id LIMIT $3)",
        )
        .bind(now)
        .bind(dag_id)
        .bind(free)
        .execute(&mut *c)
        .await
        .map_err(SchedulerError::db("queuing tasks"))?;
        Ok(done.rows_affected())
    }

    /// Fails the tries of workers that stopped heartbeating (retrying them if they have tries
    /// left). Returns the instances that failed for good, with their error.
    pub async fn reap_dead(
        &self,
        now: i64,
        timeout_ms: i64,
        retry_cap_seconds: u64,
    ) -> Result<Vec<(Claimed, String)>> {
        let cutoff = now.saturating_sub(timeout_ms);
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CLAIMED_COLUMNS}, worker_id, heartbeat_ms \
             FROM task_instances WHERE state = 'running' AND is_sensor = 0 AND heartbeat_ms < $1"
        )))
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("finding dead tasks"))?;
        let mut failed = Vec::new();
        for r in rows {
            let reaped = async {
                let t = claimed(&r)?;
                let r = Stored::new("task_instances", &r);
                let worker: Option<String> = r.get("worker_id")?;
                let worker = worker.unwrap_or_default();
                let seen: Option<i64> = r.get("heartbeat_ms")?;
                let error = format!(
                    "worker {worker} stopped heartbeating (last seen {} s before)",
                    now.saturating_sub(seen.unwrap_or(now)) / 1000
                );
                let state = self
                    .finish(
                        &t,
                        Some(&worker),
                        FinishOutcome::Failed(error.clone()),
                        retry_cap_seconds,
                        None,
                        None,
                        now,
                    )
                    .await?;
                Ok((state == Some(TaskState::Failed)).then_some((t, error)))
            }
            .await;
            match reaped {
                Ok(Some(t)) => failed.push(t),
                Ok(None) => {}
                Err(e) => self.skip_corrupt(e)?,
            }
        }
        Ok(failed)
    }

    /// Fails the running tries held by `worker_id` (an earlier process of that name). Returns
    /// how many.
    pub async fn release_worker(
        &self,
        worker_id: &str,
        retry_cap_seconds: u64,
        now: i64,
    ) -> Result<usize> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CLAIMED_COLUMNS} FROM task_instances WHERE state = 'running' AND is_sensor = 0 AND worker_id = $1"
        )))
        .bind(worker_id)
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("finding a worker's tries"))?;
        for r in &rows {
            let error = format!("worker {worker_id} restarted while running this try");
            self.finish(
                &claimed(r)?,
                Some(worker_id),
                FinishOutcome::Failed(error),
                retry_cap_seconds,
                None,
                None,
                now,
            )
            .await?;
        }
        Ok(rows.len())
    }

    /// Moves `up_for_retry` instances whose backoff passed back to `scheduled` (sensors back to
    /// poking). Returns how many.
    pub async fn wake_retries(&self, now: i64) -> Result<usize> {
        let rows = sqlx::query(
            "SELECT dag_id, run_id, task_id, is_sensor FROM task_instances WHERE state = 'up_for_retry' AND next_ms <= $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("finding retries"))?;
        let mut by_dag: BTreeMap<String, Vec<(String, String, bool)>> = BTreeMap::new();
        for r in &rows {
            let r = Stored::new("task_instances", r);
            let task = (|| {
                let key = (r.get("run_id")?, r.get("task_id")?, r.flag("is_sensor")?);
                Ok((r.get::<String>("dag_id")?, key))
            })();
            match task {
                Ok((dag_id, key)) => by_dag.entry(dag_id).or_default().push(key),
                Err(e) => self.skip_corrupt(e)?,
            }
        }
        let mut queued = 0;
        for (dag_id, tasks) in &by_dag {
            let woken = transact!(self, "waking retries", c, {
                for (run_id, task_id, sensor) in tasks {
                    lock_run(self, c, dag_id, run_id).await?;
                    let sql = if *sensor {
                        "UPDATE task_instances SET state = 'running', try_number = try_number + 1, started_ms = $1, next_ms = $1, error = NULL WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND state = 'up_for_retry'"
                    } else {
                        "UPDATE task_instances SET state = 'scheduled', next_ms = NULL WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND state = 'up_for_retry' AND $1 >= 0"
                    };
                    sqlx::query(sql)
                        .bind(now)
                        .bind(dag_id)
                        .bind(run_id)
                        .bind(task_id)
                        .execute(&mut *c)
                        .await
                        .map_err(SchedulerError::db("waking a retry"))?;
                }
                self.fill_slots(c, dag_id, now).await
            });
            match woken {
                Ok(n) => queued += n,
                Err(e) => self.skip_corrupt(e)?,
            }
        }
        if queued > 0 {
            self.work_available.notify_waiters();
        }
        Ok(rows.len())
    }

    /// Takes up to `max` sensors due for a poke, leasing them for `lease_ms` so another
    /// scheduler does not poke them meanwhile.
    pub async fn due_sensors(&self, now: i64, max: usize, lease_ms: i64) -> Result<Vec<Claimed>> {
        transact!(self, "finding due sensors", c, {
            let sql = format!(
                "UPDATE task_instances SET next_ms = $1 WHERE state = 'running' AND is_sensor = 1 AND (dag_id, run_id, task_id) IN \
                     (SELECT dag_id, run_id, task_id FROM task_instances WHERE state = 'running' AND is_sensor = 1 AND next_ms <= $2 ORDER BY next_ms LIMIT $3{}) RETURNING {CLAIMED_COLUMNS}",
                self.skip_locked()
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(now.saturating_add(lease_ms))
                .bind(now)
                .bind(max as i64)
                .fetch_all(&mut *c)
                .await
                .map_err(SchedulerError::db("finding due sensors"))?;
            // A sensor whose row cannot be read is left leased; the others are poked.
            let mut sensors = Vec::with_capacity(rows.len());
            for r in &rows {
                match claimed(r) {
                    Ok(t) => sensors.push(t),
                    Err(e) => self.skip_corrupt(e)?,
                }
            }
            for t in &sensors {
                // A sensor's try is recorded the first time it is poked.
                sqlx::query(
                        "INSERT INTO task_tries (dag_id, run_id, task_id, try_number, worker_id, state, started_ms) VALUES ($1, $2, $3, $4, 'scheduler', 'running', $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(&t.dag_id)
                    .bind(&t.run_id)
                    .bind(&t.task_id)
                    .bind(t.try_number)
                    .bind(t.started_ms)
                    .execute(&mut *c)
                    .await
                    .map_err(SchedulerError::db("recording a try"))?;
            }
            Ok(sensors)
        })
    }

    /// Clears a task instance (and, with `downstream`, every task after it) so it runs again,
    /// with its retries renewed. Returns the cleared task ids.
    pub async fn clear(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        downstream: bool,
        now: i64,
    ) -> Result<Vec<String>> {
        let run = self.run(dag_id, run_id).await?;
        let spec = self.spec(dag_id, run.version).await?;
        if spec.task(task_id).is_none() {
            return Err(SchedulerError::UnknownTask {
                dag_id: dag_id.to_owned(),
                task_id: task_id.to_owned(),
            });
        }
        let mut targets = vec![task_id.to_owned()];
        if downstream {
            targets.extend(spec.all_downstream(task_id));
        }
        let (cleared, queued) = transact!(self, "clearing tasks", c, {
            let spec = spec.clone();
            let targets = &targets;

            lock_run(self, c, dag_id, run_id).await?;
            let mut cleared = Vec::new();
            for t in targets {
                let row = sqlx::query(
                            "SELECT state FROM task_instances WHERE dag_id = $1 AND run_id = $2 AND task_id = $3",
                        )
                        .bind(dag_id)
                        .bind(run_id)
                        .bind(t)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(SchedulerError::db("clearing tasks"))?;
                let Some(row) = row else { continue };
                let state = Stored::new("task_instances", &row).task_state("state")?;
                if matches!(state, TaskState::Queued | TaskState::Running) {
                    return Err(SchedulerError::InvalidRequest {
                        dag_id: dag_id.to_owned(),
                        message: format!(
                            "task {t:?} of run {run_id:?} is {state}; clear it once it ends"
                        ),
                    });
                }
                if state == TaskState::Waiting {
                    continue;
                }
                if state.is_terminal() {
                    count_terminal(c, dag_id, run_id, state, -1).await?;
                }
                let retries = spec.task(t).map(|s| i64::from(s.retries)).unwrap_or(0);
                sqlx::query(
                            "UPDATE task_instances SET state = 'waiting', max_tries = try_number + $1 + 1, ready_ms = NULL, queued_ms = NULL, ended_ms = NULL, next_ms = NULL, error = NULL \
                             WHERE dag_id = $2 AND run_id = $3 AND task_id = $4",
                        )
                        .bind(retries)
                        .bind(dag_id)
                        .bind(run_id)
                        .bind(t)
                        .execute(&mut *c)
                        .await
                        .map_err(SchedulerError::db("clearing tasks"))?;
                cleared.push(t.clone());
            }
            if !cleared.is_empty() {
                let reopened = sqlx::query(
                            "UPDATE dag_runs SET state = 'running', ended_ms = NULL WHERE dag_id = $1 AND run_id = $2",
                        )
                        .bind(dag_id)
                        .bind(run_id)
                        .execute(&mut *c)
                        .await
                        .map_err(SchedulerError::db("clearing tasks"))?;
                super::runs::runs_changed(c, dag_id, reopened.rows_affected()).await?;
            }
            // Re-evaluate in dependency order: a cleared task whose upstream is done
            // is ready at once.
            for t in &cleared {
                if let Some(new) = self.check_ready(c, &spec, run_id, t, now).await?
                    && new.is_terminal()
                {
                    // Upstream failed: counted, and passed on, like any task that ends.
                    self.on_terminal(c, &spec, run_id, t, new, now).await?;
                }
            }
            let queued = self.fill_slots(c, dag_id, now).await?;
            Ok((cleared, queued))
        })?;
        if queued > 0 {
            self.work_available.notify_waiters();
        }
        Ok(cleared)
    }

    /// The safety net behind the fast paths: promotes waiting tasks of running runs whose
    /// upstream is done, fills free slots and completes finished runs. Returns how many tasks
    /// moved.
    pub async fn reconcile(&self, now: i64) -> Result<usize> {
        let runs =
            sqlx::query("SELECT dag_id, run_id, version FROM dag_runs WHERE state = 'running'")
                .fetch_all(&self.pool)
                .await
                .map_err(SchedulerError::db("reconciling"))?;
        let mut moved = 0;
        let mut queued = 0;
        for r in &runs {
            match self.reconcile_run(r, now).await {
                Ok((m, q)) => {
                    moved += m;
                    queued += q;
                }
                Err(e) => self.skip_corrupt(e)?,
            }
        }
        if queued > 0 {
            self.work_available.notify_waiters();
        }
        Ok(moved)
    }

    /// [`Store::reconcile`] of one run: how many tasks moved, how many were queued.
    async fn reconcile_run(&self, r: &AnyRow, now: i64) -> Result<(usize, u64)> {
        let r = Stored::new("dag_runs", r);
        let (dag_id, run_id, version): (String, String, i64) =
            (r.get("dag_id")?, r.get("run_id")?, r.get("version")?);
        let spec = self.spec(&dag_id, version).await?;
        transact!(self, "reconciling", c, {
            let (spec, dag_id, run_id) = (spec.clone(), dag_id.clone(), run_id.clone());

            lock_run(self, c, &dag_id, &run_id).await?;
            // One read of the run's states; only tasks whose upstream is all done are
            // touched (a long chain of waiting tasks costs one query, not one each).
            let states: HashMap<String, TaskState> = sqlx::query(
                "SELECT task_id, state FROM task_instances WHERE dag_id = $1 AND run_id = $2",
            )
            .bind(&dag_id)
            .bind(&run_id)
            .fetch_all(&mut *c)
            .await
            .map_err(SchedulerError::db("reconciling"))?
            .iter()
            .map(|r| {
                let r = Stored::new("task_instances", r);
                Ok((r.get("task_id")?, r.task_state("state")?))
            })
            .collect::<Result<_>>()?;
            let mut moved = 0;
            for task in &spec.tasks {
                if states.get(&task.task_id) != Some(&TaskState::Waiting) {
                    continue;
                }
                let upstream = task
                    .upstream
                    .iter()
                    .map(|u| states.get(u).copied().unwrap_or(TaskState::Waiting));
                if readiness(upstream).is_none() {
                    continue;
                }
                if let Some(new) = self
                    .check_ready(c, &spec, &run_id, &task.task_id, now)
                    .await?
                {
                    moved += 1;
                    if new.is_terminal() {
                        self.on_terminal(c, &spec, &run_id, &task.task_id, new, now)
                            .await?;
                    }
                }
            }
            complete_run_if_done(c, &dag_id, &run_id, now).await?;
            let queued = self.fill_slots(c, &dag_id, now).await?;
            Ok((moved, queued))
        })
    }
}

async fn insert_try(
    c: &mut AnyConnection,
    t: &Claimed,
    worker_id: &str,
    log_path: Option<String>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO task_tries (dag_id, run_id, task_id, try_number, worker_id, state, started_ms, log_path) VALUES ($1, $2, $3, $4, $5, 'running', $6, $7)",
    )
    .bind(&t.dag_id)
    .bind(&t.run_id)
    .bind(&t.task_id)
    .bind(t.try_number)
    .bind(worker_id)
    .bind(now)
    .bind(log_path)
    .execute(&mut *c)
    .await
    .map_err(SchedulerError::db("recording a try"))?;
    Ok(())
}

/// Locks the run's row (PostgreSQL): every change to a run's tasks holds it, so two
/// transactions never both miss that a shared downstream task became ready.
pub(crate) async fn lock_run(
    store: &Store,
    c: &mut AnyConnection,
    dag_id: &str,
    run_id: &str,
) -> Result<()> {
    if store.dialect == super::Dialect::Postgres {
        sqlx::query("SELECT 1 FROM dag_runs WHERE dag_id = $1 AND run_id = $2 FOR UPDATE")
            .bind(dag_id)
            .bind(run_id)
            .execute(&mut *c)
            .await
            .map_err(SchedulerError::db("locking a run"))?;
    }
    Ok(())
}

/// Adjusts the run's counters for one task entering (`sign` 1) or leaving (-1) a terminal
/// state.
async fn count_terminal(
    c: &mut AnyConnection,
    dag_id: &str,
    run_id: &str,
    state: TaskState,
    sign: i64,
) -> Result<()> {
    let failed = i64::from(matches!(
        state,
        TaskState::Failed | TaskState::UpstreamFailed
    ));
    sqlx::query(
        "UPDATE dag_runs SET unfinished = unfinished - $1, failed = failed + $2 WHERE dag_id = $3 AND run_id = $4",
    )
    .bind(sign)
    .bind(sign * failed)
    .bind(dag_id)
    .bind(run_id)
    .execute(&mut *c)
    .await
    .map_err(SchedulerError::db("counting finished tasks"))?;
    Ok(())
}

pub(crate) async fn complete_run_if_done(
    c: &mut AnyConnection,
    dag_id: &str,
    run_id: &str,
    now: i64,
) -> Result<()> {
    let completed = sqlx::query(
        "UPDATE dag_runs SET state = CASE WHEN failed > 0 THEN 'failed' ELSE 'success' END, ended_ms = $1 \
         WHERE dag_id = $2 AND run_id = $3 AND state = 'running' AND unfinished <= 0",
    )
    .bind(now)
    .bind(dag_id)
    .bind(run_id)
    .execute(&mut *c)
    .await
    .map_err(SchedulerError::db("completing a run"))?;
    super::runs::runs_changed(c, dag_id, completed.rows_affected()).await
}

/// The first 2,000 characters of an error (alerts and the store keep excerpts; logs keep all).
pub fn excerpt(e: &str) -> String {
    if e.len() <= 2000 {
        return e.to_owned();
    }
    let mut end = 2000;
    while !e.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &e[..end])
}

impl Store {
    /// Whether task `task_id` of DAG `dag_id` succeeded in a run covering `ds`.
    pub async fn upstream_succeeded(&self, dag_id: &str, task_id: &str, ds: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM task_instances ti JOIN dag_runs r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id \
             WHERE ti.dag_id = $1 AND ti.task_id = $2 AND ti.state = 'success' AND r.start_ds <= $3 AND r.end_ds >= $3 LIMIT 1",
        )
        .bind(dag_id)
        .bind(task_id)
        .bind(ds)
        .fetch_optional(&self.pool)
        .await
        .map_err(SchedulerError::db("checking an upstream task"))?;
        Ok(row.is_some())
    }
}

/// The error a stopped try and its task instance end with.
const STOPPED: &str = "stopped by request";

impl Store {
    /// Sets a task instance's state by hand (Airflow's "mark success" / "mark failed"), from
    /// any state; a running try is stopped (its worker kills it at its next heartbeat). What
    /// follows moves as if the task had ended so: marked success, its downstream may run
    /// (tasks that had become `upstream_failed` because of it wait again); marked failed, its
    /// waiting downstream fails upstream. A run that had ended runs again until its tasks
    /// settle. Returns the state the instance had.
    pub async fn mark(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        state: TaskState,
        now: i64,
    ) -> Result<TaskState> {
        let error = match state {
            TaskState::Success => None,
            TaskState::Failed => Some(format!("marked {state} by request")),
            other => {
                return Err(SchedulerError::InvalidRequest {
                    dag_id: dag_id.to_owned(),
                    message: format!(
                        "a task can be marked success or failed, not {:?}",
                        other.as_str()
                    ),
                });
            }
        };
        self.set_by_hand(dag_id, run_id, task_id, state, error, false, now)
            .await
    }

    /// Stops a running try: the instance fails for good (no retry) with the error
    /// [`STOPPED`], and its worker, whose next heartbeat finds the try gone, kills it.
    pub async fn stop(&self, dag_id: &str, run_id: &str, task_id: &str, now: i64) -> Result<()> {
        self.set_by_hand(
            dag_id,
            run_id,
            task_id,
            TaskState::Failed,
            Some(STOPPED.to_owned()),
            true,
            now,
        )
        .await
        .map(|_| ())
    }

    #[allow(clippy::too_many_arguments)]
    async fn set_by_hand(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        target: TaskState,
        error: Option<String>,
        only_running: bool,
        now: i64,
    ) -> Result<TaskState> {
        let run = self.run(dag_id, run_id).await?;
        let spec = self.spec(dag_id, run.version).await?;
        let (previous, queued) = transact!(self, "setting a task's state", c, {
            let spec = spec.clone();
            let error = error.clone();

            lock_run(self, c, dag_id, run_id).await?;
            let row = sqlx::query(
                "SELECT state, try_number FROM task_instances WHERE dag_id = $1 AND run_id = $2 AND task_id = $3",
            )
            .bind(dag_id)
            .bind(run_id)
            .bind(task_id)
            .fetch_optional(&mut *c)
            .await
            .map_err(SchedulerError::db("reading a task instance"))?;
            let Some(row) = row else {
                return Err(SchedulerError::UnknownTask {
                    dag_id: dag_id.to_owned(),
                    task_id: task_id.to_owned(),
                });
            };
            let row = Stored::new("task_instances", &row);
            let previous = row.task_state("state")?;
            let try_number: i64 = row.get("try_number")?;
            if only_running && previous != TaskState::Running {
                return Err(SchedulerError::InvalidRequest {
                    dag_id: dag_id.to_owned(),
                    message: format!(
                        "task {task_id:?} of run {run_id:?} is {previous}, not running: there is no try to stop"
                    ),
                });
            }
            if previous == target {
                return Ok((previous, 0));
            }
            if previous.is_terminal() {
                count_terminal(c, dag_id, run_id, previous, -1).await?;
            }
            sqlx::query(
                "UPDATE task_instances SET state = $1, ended_ms = $2, next_ms = NULL, error = $3 \
                 WHERE dag_id = $4 AND run_id = $5 AND task_id = $6",
            )
            .bind(target.as_str())
            .bind(now)
            .bind(&error)
            .bind(dag_id)
            .bind(run_id)
            .bind(task_id)
            .execute(&mut *c)
            .await
            .map_err(SchedulerError::db("setting a task's state"))?;
            if previous == TaskState::Running {
                // The try ends now; whatever its runner reports later is discarded (`finish`
                // only records a try that is still running).
                sqlx::query(
                    "UPDATE task_tries SET state = $1, ended_ms = $2, error = $3 \
                     WHERE dag_id = $4 AND run_id = $5 AND task_id = $6 AND try_number = $7 AND ended_ms IS NULL",
                )
                .bind(target.as_str())
                .bind(now)
                .bind(&error)
                .bind(dag_id)
                .bind(run_id)
                .bind(task_id)
                .bind(try_number)
                .execute(&mut *c)
                .await
                .map_err(SchedulerError::db("recording a try"))?;
            }
            let reopened_run = sqlx::query(
                "UPDATE dag_runs SET state = 'running', ended_ms = NULL \
                 WHERE dag_id = $1 AND run_id = $2 AND state IN ('success', 'failed')",
            )
            .bind(dag_id)
            .bind(run_id)
            .execute(&mut *c)
            .await
            .map_err(SchedulerError::db("reopening a run"))?;
            let reopened = if target.satisfies_downstream() {
                reopen_downstream(c, &spec, run_id, task_id).await?
            } else {
                Vec::new()
            };
            self.on_terminal(c, &spec, run_id, task_id, target, now)
                .await?;
            // Reopened tasks whose upstream is all done (or failed elsewhere) move now; the
            // others when their upstream ends.
            for t in &reopened {
                if let Some(new) = self.check_ready(c, &spec, run_id, t, now).await?
                    && new.is_terminal()
                {
                    self.on_terminal(c, &spec, run_id, t, new, now).await?;
                }
            }
            complete_run_if_done(c, dag_id, run_id, now).await?;
            // Last: the DAG's row is locked after the run's and its tasks'.
            super::runs::runs_changed(c, dag_id, reopened_run.rows_affected()).await?;
            let queued = self.fill_slots(c, dag_id, now).await?;
            Ok((previous, queued))
        })?;
        if queued > 0 {
            self.work_available.notify_waiters();
        }
        Ok(previous)
    }
}

/// Moves the tasks that are `upstream_failed` because of `task_id` (directly or through other
/// such tasks) back to `waiting`, keeping the run's counters in step. Returns them, nearest
/// first.
async fn reopen_downstream(
    c: &mut AnyConnection,
    spec: &DagSpec,
    run_id: &str,
    task_id: &str,
) -> Result<Vec<String>> {
    let mut reopened = Vec::new();
    let mut work: VecDeque<&str> = VecDeque::from([task_id]);
    while let Some(t) = work.pop_front() {
        for d in spec.downstream_of(t) {
            let done = sqlx::query(
                "UPDATE task_instances SET state = 'waiting', ended_ms = NULL \
                 WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND state = 'upstream_failed'",
            )
            .bind(&spec.dag_id)
            .bind(run_id)
            .bind(d)
            .execute(&mut *c)
            .await
            .map_err(SchedulerError::db("reopening downstream tasks"))?;
            if done.rows_affected() > 0 {
                count_terminal(c, &spec.dag_id, run_id, TaskState::UpstreamFailed, -1).await?;
                reopened.push(d.clone());
                work.push_back(d);
            }
        }
    }
    Ok(reopened)
}
