//! Read-only queries for the web UI's pages: DAG summaries, the grid, what runs now, final
//! failures and resource use. Each page is a fixed, small number of queries whatever the DAG's
//! size: the grid of 5,000 tasks × 25 runs is one aggregated query, not 125,000 rows decoded.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Dialect, Store, placeholders};
use crate::error::{Result, SchedulerError};
use sqlx::AssertSqlSafe;

/// A run as the DAG list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunMark {
    pub run_id: String,
    pub ds: String,
    pub state: String,
}

/// One run's task states, as the grid shows them.
#[derive(Debug, Clone)]
pub struct RunCells {
    pub run_id: String,
    /// Task id -> state.
    pub states: HashMap<String, String>,
}

/// A task instance in the job-status dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveTask {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub state: String,
    pub is_sensor: bool,
    pub worker_id: Option<String>,
    pub queued_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub error: Option<String>,
}

/// A finished try with its resource use.
#[derive(Debug, Clone, Serialize)]
pub struct TryUsage {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub team: String,
    pub try_number: i64,
    pub state: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub cpu_ms: Option<i64>,
    pub max_rss_kb: Option<i64>,
}

fn text(r: &AnyRow, column: &str) -> Result<String> {
    r.try_get(column)
        .map_err(SchedulerError::db("reading a page's rows"))
}

fn opt_int(r: &AnyRow, column: &str) -> Result<Option<i64>> {
    r.try_get(column)
        .map_err(SchedulerError::db("reading a page's rows"))
}

fn int(r: &AnyRow, column: &str) -> Result<i64> {
    r.try_get(column)
        .map_err(SchedulerError::db("reading a page's rows"))
}

fn active_task(r: &AnyRow) -> Result<ActiveTask> {
    Ok(ActiveTask {
        dag_id: text(r, "dag_id")?,
        run_id: text(r, "run_id")?,
        task_id: text(r, "task_id")?,
        state: text(r, "state")?,
        is_sensor: int(r, "is_sensor")? != 0,
        worker_id: r
            .try_get("worker_id")
            .map_err(SchedulerError::db("reading a page's rows"))?,
        queued_ms: opt_int(r, "queued_ms")?,
        started_ms: opt_int(r, "started_ms")?,
        ended_ms: opt_int(r, "ended_ms")?,
        error: r
            .try_get("error")
            .map_err(SchedulerError::db("reading a page's rows"))?,
    })
}

const ACTIVE_COLUMNS: &str =
    "dag_id, run_id, task_id, state, is_sensor, worker_id, queued_ms, started_ms, ended_ms, error";

impl Store {
    /// Per DAG, a number that moves whenever one of its runs is created or changes state.
    pub async fn runs_versions(&self) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query("SELECT dag_id, runs_version FROM dags")
            .fetch_all(&self.pool)
            .await
            .map_err(SchedulerError::db("reading run versions"))?;
        rows.iter()
            .map(|r| Ok((text(r, "dag_id")?, int(r, "runs_version")?)))
            .collect()
    }

    /// Per DAG, its running and failed run counts.
    pub async fn run_counts(&self) -> Result<BTreeMap<String, (i64, i64)>> {
        let counts = sqlx::query(
            "SELECT dag_id, state, count(*) AS n FROM dag_runs WHERE state IN ('running', 'failed') GROUP BY dag_id, state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("counting runs"))?;
        let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for r in &counts {
            let entry = out.entry(text(r, "dag_id")?).or_default();
            let n = int(r, "n")?;
            match text(r, "state")?.as_str() {
                "running" => entry.0 = n,
                _ => entry.1 = n,
            }
        }
        Ok(out)
    }

    /// The last `per_dag` runs (newest first) of the DAGs `only` names, or of every DAG. The runs
    /// are aggregated in the database, one row per DAG: decoding 25,000 rows costs more than the
    /// query itself.
    pub async fn recent_run_marks(
        &self,
        per_dag: i64,
        only: Option<&[String]>,
    ) -> Result<BTreeMap<String, Vec<RunMark>>> {
        let aggregate = match self.dialect {
            Dialect::Sqlite => {
                "group_concat(r.logical_ms || char(31) || r.run_id || char(31) || r.ds || char(31) || r.state, char(30))"
            }
            Dialect::Postgres => {
                "string_agg(r.logical_ms || chr(31) || r.run_id || chr(31) || r.ds || chr(31) || r.state, chr(30))"
            }
        };
        // Per DAG, the logical time of its `per_dag`-th newest run (an index seek each), then
        // the runs at or after it. MATERIALIZED: inlined, SQLite would run the seek once per run
        // instead of once per DAG (25,000 seeks for 1,000 DAGs, twice the time).
        let only_sql = match only {
            Some(ids) if !ids.is_empty() => {
                format!("WHERE d.dag_id IN ({})", placeholders(2, ids.len()))
            }
            Some(_) => return Ok(BTreeMap::new()),
            None => String::new(),
        };
        let sql = format!(
            "WITH cut AS MATERIALIZED (SELECT d.dag_id, (SELECT x.logical_ms FROM dag_runs x WHERE x.dag_id = d.dag_id \
                                  ORDER BY x.logical_ms DESC LIMIT 1 OFFSET $1) AS since FROM dags d {only_sql}) \
             SELECT r.dag_id, {aggregate} AS runs FROM cut JOIN dag_runs r \
               ON r.dag_id = cut.dag_id AND r.logical_ms >= coalesce(cut.since, -9000000000000000000) \
             GROUP BY r.dag_id"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(per_dag.max(1) - 1);
        for id in only.unwrap_or_default() {
            query = query.bind(id);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(SchedulerError::db("listing recent runs"))?;
        let mut out: BTreeMap<String, Vec<RunMark>> = BTreeMap::new();
        for r in &rows {
            let runs: Option<String> = r
                .try_get("runs")
                .map_err(SchedulerError::db("listing recent runs"))?;
            let mut marks: Vec<(i64, RunMark)> = runs
                .unwrap_or_default()
                .split('\u{1e}')
                .filter_map(|run| {
                    let mut fields = run.split('\u{1f}');
                    let logical = fields.next()?.parse::<i64>().ok()?;
                    Some((
                        logical,
                        RunMark {
                            run_id: fields.next()?.to_owned(),
                            ds: fields.next()?.to_owned(),
                            state: fields.next()?.to_owned(),
                        },
                    ))
                })
                .collect();
            // Ties on logical time (two manual runs in one millisecond) keep one order.
            marks.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.run_id.cmp(&a.1.run_id)));
            marks.truncate(usize::try_from(per_dag).unwrap_or(usize::MAX));
            out.insert(
                text(r, "dag_id")?,
                marks.into_iter().map(|(_, m)| m).collect(),
            );
        }
        Ok(out)
    }

    /// The task states of the given runs of `dag_id`, aggregated in the database (one row per
    /// run) so a 125,000-cell grid costs one small result set.
    pub async fn run_cells(&self, dag_id: &str, run_ids: &[String]) -> Result<Vec<RunCells>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Unit and record separators cannot occur in task ids (the planner sanitizes them).
        let aggregate = match self.dialect {
            Dialect::Sqlite => "group_concat(task_id || char(31) || state, char(30))",
            Dialect::Postgres => "string_agg(task_id || chr(31) || state, chr(30))",
        };
        let sql = format!(
            "SELECT run_id, {aggregate} AS cells FROM task_instances WHERE dag_id = $1 AND run_id IN ({}) GROUP BY run_id",
            placeholders(2, run_ids.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(dag_id);
        for id in run_ids {
            query = query.bind(id);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(SchedulerError::db("reading the grid"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let cells: Option<String> = r
                .try_get("cells")
                .map_err(SchedulerError::db("reading the grid"))?;
            let states = cells
                .unwrap_or_default()
                .split('\u{1e}')
                .filter_map(|cell| cell.split_once('\u{1f}'))
                .map(|(task, state)| (task.to_owned(), state.to_owned()))
                .collect();
            out.push(RunCells {
                run_id: text(r, "run_id")?,
                states,
            });
        }
        Ok(out)
    }

    /// The latest `limit` runs of `dag_id`, newest first: an index range, not the filtered scan
    /// of every run that [`Store::runs`] makes for its optional filters.
    pub async fn recent_runs(&self, dag_id: &str, limit: i64) -> Result<Vec<super::RunRow>> {
        let rows = sqlx::query(
            "SELECT * FROM dag_runs WHERE dag_id = $1 ORDER BY logical_ms DESC, run_id DESC LIMIT $2",
        )
        .bind(dag_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("listing a DAG's runs"))?;
        rows.iter().map(super::runs::run_row).collect()
    }

    /// Task instances running or queued now, oldest first.
    pub async fn active_tasks(&self, limit: i64) -> Result<Vec<ActiveTask>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ACTIVE_COLUMNS} FROM task_instances WHERE state IN ('running', 'queued') \
             ORDER BY coalesce(started_ms, queued_ms), dag_id, run_id, task_id LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("listing active tasks"))?;
        rows.iter().map(active_task).collect()
    }

    /// Task instances that failed for good (no retry left) since `since_ms`, newest first.
    pub async fn final_failures(&self, since_ms: i64, limit: i64) -> Result<Vec<ActiveTask>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ACTIVE_COLUMNS} FROM task_instances WHERE state = 'failed' AND ended_ms >= $1 \
             ORDER BY ended_ms DESC, dag_id, run_id, task_id LIMIT $2"
        )))
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("listing failures"))?;
        rows.iter().map(active_task).collect()
    }

    /// Tries that ended since `since_ms`, newest first, with their team and resource use.
    pub async fn try_usage(&self, since_ms: i64, limit: i64) -> Result<Vec<TryUsage>> {
        let rows = sqlx::query(
            "SELECT tt.dag_id, tt.run_id, tt.task_id, ti.team, tt.try_number, tt.state, tt.started_ms, \
                    tt.ended_ms, tt.cpu_ms, tt.max_rss_kb \
             FROM task_tries tt JOIN task_instances ti \
               ON ti.dag_id = tt.dag_id AND ti.run_id = tt.run_id AND ti.task_id = tt.task_id \
             WHERE tt.ended_ms >= $1 ORDER BY tt.ended_ms DESC LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("listing tries"))?;
        rows.iter()
            .map(|r| {
                Ok(TryUsage {
                    dag_id: text(r, "dag_id")?,
                    run_id: text(r, "run_id")?,
                    task_id: text(r, "task_id")?,
                    team: text(r, "team")?,
                    try_number: int(r, "try_number")?,
                    state: text(r, "state")?,
                    started_ms: int(r, "started_ms")?,
                    ended_ms: opt_int(r, "ended_ms")?.unwrap_or_default(),
                    cpu_ms: opt_int(r, "cpu_ms")?,
                    max_rss_kb: opt_int(r, "max_rss_kb")?,
                })
            })
            .collect()
    }
}
