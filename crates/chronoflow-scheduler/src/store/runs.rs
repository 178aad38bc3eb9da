//! DAG runs: creation from the timetable, manual triggers and backfills, starting within
//! `max_active_runs`.

use serde::Serialize;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::row::Stored;
use super::transact;
use super::{DagRow, Store};
use crate::error::{Result, SchedulerError};
use crate::spec::DagSpec;
use crate::timetable::{ds_of, iso, ms_of_ds};
use chronoflow_config::PartitionDate;
use chronoflow_plan::partitions::{MAX_RANGE_DAYS, SANE_YEARS, steps};
use sqlx::AssertSqlSafe;

#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub dag_id: String,
    pub run_id: String,
    pub version: i64,
    pub run_type: String,
    pub logical_ms: i64,
    pub ds: String,
    pub start_ds: String,
    pub end_ds: String,
    pub state: String,
    pub unfinished: i64,
    pub failed: i64,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
}

pub(crate) fn run_row(r: &AnyRow) -> Result<RunRow> {
    let r = Stored::new("dag_runs", r);
    Ok(RunRow {
        dag_id: r.get("dag_id")?,
        run_id: r.get("run_id")?,
        version: r.get("version")?,
        run_type: r.get("run_type")?,
        logical_ms: r.get("logical_ms")?,
        ds: r.get("ds")?,
        start_ds: r.get("start_ds")?,
        end_ds: r.get("end_ds")?,
        state: r.get("state")?,
        unfinished: r.get("unfinished")?,
        failed: r.get("failed")?,
        created_ms: r.get("created_ms")?,
        started_ms: r.get("started_ms")?,
        ended_ms: r.get("ended_ms")?,
    })
}

/// The states a run goes through: `queued`, `running`, then `success` or `failed`.
pub const RUN_STATES: [&str; 4] = ["queued", "running", "success", "failed"];

/// A run to create by hand.
#[derive(Debug, Clone)]
pub enum RunTrigger {
    /// A manual DAG's run over `start_ds..=end_ds`, or a scheduled DAG's run for `end_ds`.
    Manual { start_ds: String, end_ds: String },
    /// One run per logical date of a scheduled DAG in `start_ds..=end_ds` (those that do not
    /// exist yet).
    Backfill { start_ds: String, end_ds: String },
    /// A manual DAG's range as one run per chunk of at most `step_days` consecutive days, so
    /// several workers can take chunks at once (`dags trigger --step-days`).
    Steps {
        start_ds: String,
        end_ds: String,
        step_days: u32,
    },
}

/// The chunk length of a manual trigger of a range backfill DAG (`chronon_join_backfill`,
/// `chronon_gb_backfill`) given no `step_days`: `run --step-days`' default. Each chunk is a
/// run of its own: its partitions do not depend on the other chunks' (SPEC §4.2), so chunks run
/// in parallel on whichever workers are free, up to the DAG's `max_active_runs`.
pub const DEFAULT_STEP_DAYS: u32 = 30;

/// Whether a manual trigger of this DAG is cut into runs of [`DEFAULT_STEP_DAYS`].
fn steps_by_default(spec: &DagSpec) -> bool {
    spec.timetable.is_manual()
        && matches!(spec.kind.as_str(), "join_backfill" | "group_by_backfill")
}

/// Manual runs of one DAG and range triggered within one second, at most (their ids differ
/// by a suffix).
const MAX_TRIGGERS_PER_SECOND: u32 = 100;

#[derive(Clone)]
struct NewRun {
    run_id: String,
    run_type: &'static str,
    logical_ms: i64,
    ds: String,
    start_ds: String,
    end_ds: String,
}

impl Store {
    /// Creates the runs the timetables make due at `now` (as `queued`). Returns how many. A DAG
    /// whose stored state cannot be read is logged and skipped: the others go on.
    pub async fn create_due_runs(&self, now: i64) -> Result<usize> {
        let mut created = 0;
        for dag in self.dags_each().await? {
            match async { self.create_due_runs_of(&dag?, now).await }.await {
                Ok(n) => created += n,
                Err(e) => self.skip_corrupt(e)?,
            }
        }
        Ok(created)
    }

    async fn create_due_runs_of(&self, dag: &DagRow, now: i64) -> Result<usize> {
        if dag.paused || dag.removed {
            return Ok(0);
        }
        let spec = self.spec(&dag.dag_id, dag.version).await?;
        if spec.timetable.is_manual() {
            return Ok(0);
        }
        let start = spec.start_date.as_deref().and_then(ms_of_ds);
        // Cheap check outside the transaction; repeated inside under the DAG's lock.
        if spec
            .timetable
            .due(spec.catchup, start, dag.last_logical_ms, now)
            .is_empty()
        {
            return Ok(0);
        }
        let created = transact!(self, "creating due runs", c, {
            let spec = spec.clone();

            let last = lock_dag(self, c, &spec.dag_id).await?;
            let due = spec.timetable.due(spec.catchup, start, last, now);
            let Some(&newest) = due.last() else {
                return Ok(0);
            };
            let runs: Vec<NewRun> = if spec.fills_missing && due.len() > 1 {
                // One run fills every missed partition (Chronon's jobs compute all
                // missing partitions up to ds).
                vec![NewRun {
                    run_id: format!("scheduled__{}", iso(newest)),
                    run_type: "scheduled",
                    logical_ms: newest,
                    ds: ds_of(newest),
                    start_ds: ds_of(due[0]),
                    end_ds: ds_of(newest),
                }]
            } else {
                due.iter()
                    .map(|&t| NewRun {
                        run_id: format!("scheduled__{}", iso(t)),
                        run_type: "scheduled",
                        logical_ms: t,
                        ds: ds_of(t),
                        start_ds: ds_of(t),
                        end_ds: ds_of(t),
                    })
                    .collect()
            };
            let mut n = 0;
            for run in &runs {
                let version = run_version(c, &spec.dag_id).await?;
                n += insert_run(c, &spec.dag_id, &version, run, now).await?;
            }
            sqlx::query("UPDATE dags SET last_logical_ms = $1 WHERE dag_id = $2")
                .bind(newest)
                .bind(&spec.dag_id)
                .execute(&mut *c)
                .await
                .map_err(SchedulerError::db("creating due runs"))?;
            Ok(n)
        })?;
        Ok(created as usize)
    }

    /// Creates runs by hand; returns their ids.
    pub async fn trigger(
        &self,
        dag_id: &str,
        trigger: RunTrigger,
        now: i64,
    ) -> Result<Vec<String>> {
        let spec = self.current_spec(dag_id).await?;
        let bad = |message: String| SchedulerError::InvalidRequest {
            dag_id: dag_id.to_owned(),
            message,
        };
        let (start_ds, end_ds) = match &trigger {
            RunTrigger::Manual { start_ds, end_ds }
            | RunTrigger::Backfill { start_ds, end_ds }
            | RunTrigger::Steps {
                start_ds, end_ds, ..
            } => (start_ds.clone(), end_ds.clone()),
        };
        let step_days = match trigger {
            RunTrigger::Steps { step_days: 0, .. } => {
                return Err(bad("step_days must be 1 or more".into()));
            }
            RunTrigger::Steps { step_days, .. } if !spec.timetable.is_manual() => {
                return Err(bad(format!(
                    "step_days {step_days} applies to manual range DAGs; {dag_id} is scheduled (use dags backfill)"
                )));
            }
            RunTrigger::Steps { step_days, .. } => Some(step_days),
            RunTrigger::Manual { .. } if steps_by_default(&spec) => Some(DEFAULT_STEP_DAYS),
            _ => None,
        };
        let date = |name: &str, ds: &str| {
            let date = PartitionDate::parse(ds)
                .map_err(|_| bad(format!("{name} {ds:?} is not a yyyy-MM-dd date")))?;
            if !SANE_YEARS.contains(&date.year()) {
                return Err(bad(format!(
                    "{name} {ds} is outside the years {}..={}",
                    SANE_YEARS.start(),
                    SANE_YEARS.end()
                )));
            }
            Ok(date)
        };
        let (first, last) = (date("start_ds", &start_ds)?, date("end_ds", &end_ds)?);
        if first > last {
            return Err(bad(format!("start_ds {start_ds} is after end_ds {end_ds}")));
        }
        let (start, end) = (first.epoch_millis(), last.epoch_millis());
        // A manual run of a scheduled DAG is for end_ds; of the others, for the whole range.
        let whole_range = spec.timetable.is_manual() || spec.fills_missing;
        let days = first.days_until(last) + 1;
        let manual = !matches!(trigger, RunTrigger::Backfill { .. });
        if manual && whole_range && days > MAX_RANGE_DAYS {
            return Err(bad(format!(
                "{start_ds}..{end_ds} is {days} days, more than one run covers ({MAX_RANGE_DAYS}): trigger it in parts"
            )));
        }
        let runs: Vec<NewRun> = match trigger {
            RunTrigger::Manual { .. } | RunTrigger::Steps { .. } if step_days.is_some() => {
                let dates: Vec<PartitionDate> = (0..days).map(|i| first.add_days(i)).collect();
                steps(&dates, step_days.unwrap_or(DEFAULT_STEP_DAYS))
                    .into_iter()
                    .map(|chunk| {
                        let (start_ds, end_ds) = (chunk.start.to_string(), chunk.end.to_string());
                        NewRun {
                            run_id: format!("manual__{}__{}_{}", iso(now), start_ds, end_ds),
                            run_type: "manual",
                            logical_ms: chunk.end.epoch_millis(),
                            ds: end_ds.clone(),
                            start_ds,
                            end_ds,
                        }
                    })
                    .collect()
            }
            RunTrigger::Manual { .. } | RunTrigger::Steps { .. } => vec![NewRun {
                run_id: format!("manual__{}__{}_{}", iso(now), start_ds, end_ds),
                run_type: "manual",
                logical_ms: end,
                ds: end_ds.clone(),
                start_ds: if whole_range {
                    start_ds.clone()
                } else {
                    end_ds.clone()
                },
                end_ds: end_ds.clone(),
            }],
            RunTrigger::Backfill { .. } => {
                if spec.timetable.is_manual() {
                    return Err(bad(
                        "a manual DAG is backfilled with one triggered run over the range (dags trigger)".into(),
                    ));
                }
                let mut out = Vec::new();
                let mut t = spec
                    .timetable
                    .first_at_or_after(start)
                    .ok_or_else(|| bad("the schedule has no date in the range".into()))?;
                // The interval of the last date of the range starts before its end.
                let stop = end + 86_400_000;
                while t < stop {
                    out.push(NewRun {
                        run_id: format!("backfill__{}", iso(t)),
                        run_type: "backfill",
                        logical_ms: t,
                        ds: ds_of(t),
                        start_ds: ds_of(t),
                        end_ds: ds_of(t),
                    });
                    if out.len() as i64 > MAX_RANGE_DAYS {
                        return Err(bad(format!(
                            "a backfill of more than {MAX_RANGE_DAYS} runs: backfill the range in parts"
                        )));
                    }
                    match spec.timetable.interval_end(t) {
                        Some(next) if next > t => t = next,
                        _ => break,
                    }
                }
                out
            }
        };
        transact!(self, "triggering runs", c, {
            let runs = &runs;

            lock_dag(self, c, dag_id).await?;
            let version = run_version(c, dag_id).await?;
            let mut ids = Vec::new();
            for run in runs {
                if insert_run(c, dag_id, &version, run, now).await? == 1 {
                    ids.push(run.run_id.clone());
                    continue;
                }
                if !manual {
                    // A backfill creates the dates that have no run yet.
                    continue;
                }
                // Every trigger is a new run: one in the same second as another over the same
                // range gets the next free `__<n>` suffix.
                let mut created = false;
                for n in 2..=MAX_TRIGGERS_PER_SECOND {
                    let again = NewRun {
                        run_id: format!("{}__{n}", run.run_id),
                        ..run.clone()
                    };
                    if insert_run(c, dag_id, &version, &again, now).await? == 1 {
                        ids.push(again.run_id);
                        created = true;
                        break;
                    }
                }
                if !created {
                    return Err(bad(format!(
                        "{MAX_TRIGGERS_PER_SECOND} runs over {start_ds}..{end_ds} were triggered this second already; try again in a second"
                    )));
                }
            }
            Ok(ids)
        })
    }

    /// Starts queued runs within each DAG's `max_active_runs`, creating their task instances.
    /// Returns the runs started.
    pub async fn start_queued_runs(&self, now: i64) -> Result<Vec<(String, String)>> {
        let dag_ids: Vec<String> = sqlx::query(
            "SELECT DISTINCT r.dag_id FROM dag_runs r JOIN dags d ON d.dag_id = r.dag_id WHERE r.state = 'queued' AND d.paused = 0 ORDER BY r.dag_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("finding queued runs"))?
        .iter()
        .map(|r| Stored::new("dag_runs", r).get("dag_id"))
        .collect::<Result<_>>()?;
        let mut started = Vec::new();
        for dag_id in dag_ids {
            if let Err(e) = self.start_queued_runs_of(&dag_id, now, &mut started).await {
                self.skip_corrupt(e)?;
            }
        }
        Ok(started)
    }

    async fn start_queued_runs_of(
        &self,
        dag_id: &str,
        now: i64,
        started: &mut Vec<(String, String)>,
    ) -> Result<()> {
        let dag_id = dag_id.to_owned();
        let dag = self.dag(&dag_id).await?;
        let current = self.spec(&dag_id, dag.version).await?;
        let limit = i64::from(current.max_active_runs);
        let runs: Vec<(String, i64)> = transact!(self, "starting runs", c, {
            let dag_id = dag_id.clone();

            lock_dag(self, c, &dag_id).await?;
            let active: i64 = sqlx::query(
                "SELECT count(*) AS n FROM dag_runs WHERE dag_id = $1 AND state = 'running'",
            )
            .bind(&dag_id)
            .fetch_one(&mut *c)
            .await
            .map_err(SchedulerError::db("counting active runs"))
            .and_then(|r| Stored::new("dag_runs", &r).get("n"))?;
            let free = (limit - active).max(0);
            if free == 0 {
                return Ok(Vec::new());
            }
            let rows = sqlx::query(
                            "SELECT run_id, version FROM dag_runs WHERE dag_id = $1 AND state = 'queued' ORDER BY logical_ms, run_id LIMIT $2",
                        )
                        .bind(&dag_id)
                        .bind(free)
                        .fetch_all(&mut *c)
                        .await
                        .map_err(SchedulerError::db("finding queued runs"))?;
            rows.iter()
                .map(|r| {
                    let r = Stored::new("dag_runs", r);
                    Ok((r.get("run_id")?, r.get("version")?))
                })
                .collect()
        })?;
        for (run_id, version) in runs {
            let spec = self.spec(&dag_id, version).await?;
            if self.start_run(&spec, &run_id, now).await? {
                started.push((dag_id.clone(), run_id));
            }
        }
        Ok(())
    }

    /// Creates the task instances of a queued run and marks it running (false if another
    /// scheduler did first).
    async fn start_run(&self, spec: &DagSpec, run_id: &str, now: i64) -> Result<bool> {
        let priorities = topological_index(spec);
        transact!(self, "starting a run", c, {
            let priorities = &priorities;

            let row = sqlx::query(AssertSqlSafe(format!(
                    "SELECT state, version, logical_ms, ds, start_ds, end_ds FROM dag_runs WHERE dag_id = $1 AND run_id = $2{}",
                    self.for_update()
                )))
                .bind(&spec.dag_id)
                .bind(run_id)
                .fetch_optional(&mut *c)
                .await
                .map_err(SchedulerError::db("starting a run"))?;
            let Some(row) = row else { return Ok(false) };
            let row = Stored::new("dag_runs", &row);
            if row.get::<String>("state")? != "queued" {
                return Ok(false);
            }
            let logical: i64 = row.get("logical_ms")?;
            let version: i64 = row.get("version")?;
            let (ds, start_ds, end_ds): (String, String, String) =
                (row.get("ds")?, row.get("start_ds")?, row.get("end_ds")?);
            let team = spec.team.clone().unwrap_or_default();
            const COLUMNS: usize = 17;
            for chunk in spec.tasks.chunks(500) {
                let mut sql = String::from(
                    "INSERT INTO task_instances (dag_id, run_id, task_id, version, team, is_sensor, state, try_number, max_tries, run_order, priority, ds, start_ds, end_ds, ready_ms, next_ms, started_ms) VALUES ",
                );
                for i in 0..chunk.len() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push('(');
                    sql.push_str(&super::placeholders(i * COLUMNS + 1, COLUMNS));
                    sql.push(')');
                }
                let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
                for t in chunk {
                    let root = t.upstream.is_empty();
                    let sensor = t.action.is_sensor();
                    // Roots are ready at once; root sensors start poking at once.
                    let (state, tries, ready, next) = match (root, sensor) {
                        (true, true) => ("running", 1i64, Some(now), Some(now)),
                        (true, false) => ("scheduled", 0, Some(now), None),
                        (false, _) => ("waiting", 0, None, None),
                    };
                    q = q
                        .bind(&spec.dag_id)
                        .bind(run_id)
                        .bind(&t.task_id)
                        .bind(version)
                        .bind(&team)
                        .bind(i64::from(sensor))
                        .bind(state)
                        .bind(tries)
                        .bind(i64::from(t.retries) + 1)
                        .bind(logical)
                        .bind(priorities[t.task_id.as_str()])
                        .bind(&ds)
                        .bind(&start_ds)
                        .bind(&end_ds)
                        .bind(ready)
                        .bind(next)
                        .bind(next);
                }
                q.execute(&mut *c)
                    .await
                    .map_err(SchedulerError::db("creating task instances"))?;
            }
            let started = sqlx::query(
                    "UPDATE dag_runs SET state = 'running', started_ms = $1, unfinished = $2, failed = 0 WHERE dag_id = $3 AND run_id = $4",
                )
                .bind(now)
                .bind(spec.tasks.len() as i64)
                .bind(&spec.dag_id)
                .bind(run_id)
                .execute(&mut *c)
                .await
                .map_err(SchedulerError::db("starting a run"))?;
            runs_changed(c, &spec.dag_id, started.rows_affected()).await?;
            if spec.tasks.is_empty() {
                super::tasks::complete_run_if_done(c, &spec.dag_id, run_id, now).await?;
            }
            self.fill_slots(c, &spec.dag_id, now).await?;
            Ok(true)
        })
    }

    /// Runs, newest first: of one DAG, in one state (one of [`RUN_STATES`]), at most `limit`
    /// (1 or more).
    pub async fn runs(
        &self,
        dag_id: Option<&str>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RunRow>> {
        if let Some(state) = state
            && !RUN_STATES.contains(&state)
        {
            return Err(SchedulerError::InvalidParameter {
                name: "state".into(),
                message: format!("{state:?} is not a run state ({})", RUN_STATES.join(", ")),
            });
        }
        if limit < 1 {
            // SQLite reads a negative LIMIT as none at all; PostgreSQL refuses it.
            return Err(SchedulerError::InvalidParameter {
                name: "limit".into(),
                message: format!("{limit} is not a number of runs (1 or more)"),
            });
        }
        if let Some(dag_id) = dag_id {
            self.dag(dag_id).await?;
        }
        let rows = sqlx::query(
            "SELECT * FROM dag_runs WHERE ($1 = '' OR dag_id = $1) AND ($2 = '' OR state = $2) ORDER BY logical_ms DESC, dag_id, run_id LIMIT $3",
        )
        .bind(dag_id.unwrap_or(""))
        .bind(state.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("listing runs"))?;
        rows.iter().map(run_row).collect()
    }

    pub async fn run(&self, dag_id: &str, run_id: &str) -> Result<RunRow> {
        let row = sqlx::query("SELECT * FROM dag_runs WHERE dag_id = $1 AND run_id = $2")
            .bind(dag_id)
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(SchedulerError::db("reading a run"))?;
        match row {
            Some(r) => run_row(&r),
            None => {
                self.dag(dag_id).await?;
                Err(SchedulerError::UnknownRun {
                    dag_id: dag_id.to_owned(),
                    run_id: run_id.to_owned(),
                })
            }
        }
    }
}

/// Locks the DAG's row (PostgreSQL) and returns its `last_logical_ms`.
pub(crate) async fn lock_dag(
    store: &Store,
    c: &mut AnyConnection,
    dag_id: &str,
) -> Result<Option<i64>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT last_logical_ms FROM dags WHERE dag_id = $1{}",
        store.for_update()
    )))
    .bind(dag_id)
    .fetch_optional(&mut *c)
    .await
    .map_err(SchedulerError::db("locking a DAG"))?
    .ok_or_else(|| SchedulerError::UnknownDag(dag_id.to_owned()))?;
    Stored::new("dags", &row).get("last_logical_ms")
}

async fn run_version(c: &mut AnyConnection, dag_id: &str) -> Result<i64> {
    let row = sqlx::query("SELECT dag_id, version FROM dags WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_one(&mut *c)
        .await
        .map_err(SchedulerError::db("reading a DAG version"))?;
    Stored::new("dags", &row).get("version")
}

/// Notes in the DAG's row that its runs changed (see `dags.runs_version`), when `changed` rows of
/// `dag_runs` did. Last in its transaction: the DAG's row is locked after the run's.
pub(crate) async fn runs_changed(c: &mut AnyConnection, dag_id: &str, changed: u64) -> Result<()> {
    if changed > 0 {
        sqlx::query("UPDATE dags SET runs_version = runs_version + 1 WHERE dag_id = $1")
            .bind(dag_id)
            .execute(&mut *c)
            .await
            .map_err(SchedulerError::db("noting a run change"))?;
    }
    Ok(())
}

async fn insert_run(
    c: &mut AnyConnection,
    dag_id: &str,
    version: &i64,
    run: &NewRun,
    now: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO dag_runs (dag_id, run_id, version, run_type, logical_ms, ds, start_ds, end_ds, state, unfinished, failed, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', 0, 0, $9) ON CONFLICT DO NOTHING",
    )
    .bind(dag_id)
    .bind(&run.run_id)
    .bind(*version)
    .bind(run.run_type)
    .bind(run.logical_ms)
    .bind(&run.ds)
    .bind(&run.start_ds)
    .bind(&run.end_ds)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(SchedulerError::db("creating a run"))?;
    runs_changed(c, dag_id, done.rows_affected()).await?;
    Ok(done.rows_affected())
}

/// Each task's depth in dependency order (longest upstream chain): upstream tasks go first
/// when slots are scarce.
fn topological_index(spec: &DagSpec) -> std::collections::HashMap<&str, i64> {
    let downstream = spec.downstream();
    let mut indegree: std::collections::HashMap<&str, usize> = spec
        .tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.upstream.len()))
        .collect();
    let mut depth: std::collections::HashMap<&str, i64> =
        spec.tasks.iter().map(|t| (t.task_id.as_str(), 0)).collect();
    let mut ready: Vec<&str> = indegree
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(t, _)| *t)
        .collect();
    while let Some(t) = ready.pop() {
        let d = depth[t];
        for &next in downstream.get(t).into_iter().flatten() {
            let entry = depth.get_mut(next).expect("known task");
            *entry = (*entry).max(d + 1);
            let n = indegree.get_mut(next).expect("known task");
            *n -= 1;
            if *n == 0 {
                ready.push(next);
            }
        }
    }
    depth
}
