//! The pages an operator works in: the DAG list, a DAG's grid, graph and runs, a task's tries.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chronoflow_scheduler::spec::{Action, DagSpec};
use chronoflow_scheduler::store::RunMark;
use chronoflow_scheduler::timetable::Timetable;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::WebState;
use crate::error::{Result, WebError};

/// The task states of finished runs. They change only when someone clears, marks or stops a
/// task, and then the run's state, counters or end time change too: those are the key. Live
/// pages poll the grid every few seconds; with this, a poll reads one row per run instead of
/// every task instance again.
#[derive(Default)]
pub(crate) struct GridCache {
    runs: Mutex<HashMap<(String, String), CachedRun>>,
}

/// Cells kept at most before the cache starts over (about 100 MB).
const GRID_CACHE_CELLS: usize = 2_000_000;

struct CachedRun {
    key: RunKey,
    states: Arc<HashMap<String, String>>,
}

type RunKey = (String, i64, i64, Option<i64>);

fn run_key(r: &chronoflow_scheduler::store::RunRow) -> RunKey {
    (r.state.clone(), r.unfinished, r.failed, r.ended_ms)
}

fn is_final(state: &str) -> bool {
    state == "success" || state == "failed"
}

impl GridCache {
    /// Task states per run, from the cache where the run is finished and unchanged.
    async fn states(
        &self,
        ctx: &crate::WebContext,
        dag_id: &str,
        runs: &[chronoflow_scheduler::store::RunRow],
    ) -> Result<Vec<Arc<HashMap<String, String>>>> {
        let mut found: HashMap<String, Arc<HashMap<String, String>>> = HashMap::new();
        if let Ok(cache) = self.runs.lock() {
            for r in runs {
                if let Some(c) = cache.get(&(dag_id.to_owned(), r.run_id.clone()))
                    && c.key == run_key(r)
                {
                    found.insert(r.run_id.clone(), c.states.clone());
                }
            }
        }
        let missing: Vec<String> = runs
            .iter()
            .filter(|r| !found.contains_key(&r.run_id))
            .map(|r| r.run_id.clone())
            .collect();
        if !missing.is_empty() {
            let fresh = ctx.store.run_cells(dag_id, &missing).await?;
            let mut cache = self.runs.lock().ok();
            if let Some(cache) = cache.as_mut() {
                let cells: usize = cache.values().map(|c| c.states.len()).sum();
                if cells > GRID_CACHE_CELLS {
                    cache.clear();
                }
            }
            for cells in fresh {
                let states = Arc::new(cells.states);
                if let (Some(cache), Some(run)) = (
                    cache.as_mut(),
                    runs.iter().find(|r| r.run_id == cells.run_id),
                ) && is_final(&run.state)
                {
                    cache.insert(
                        (dag_id.to_owned(), cells.run_id.clone()),
                        CachedRun {
                            key: run_key(run),
                            states: states.clone(),
                        },
                    );
                }
                found.insert(cells.run_id, states);
            }
        }
        Ok(runs
            .iter()
            .map(|r| found.get(&r.run_id).cloned().unwrap_or_default())
            .collect())
    }
}

/// Each DAG's latest runs as the DAG list shows them (oldest first), kept under the DAG's
/// `runs_version`, which the store moves in every transaction that creates a run or changes its
/// state — in any process. A list request reads the versions (one row per DAG) and re-reads the
/// runs of the DAGs whose version moved.
#[derive(Default)]
pub(crate) struct ListCache {
    dags: Mutex<HashMap<String, VersionedMarks>>,
}

/// A DAG's `runs_version` and its run marks as of that version.
type VersionedMarks = (i64, Arc<Vec<RunMark>>);

impl ListCache {
    async fn recent_runs(
        &self,
        ctx: &crate::WebContext,
    ) -> Result<HashMap<String, Arc<Vec<RunMark>>>> {
        // Versions first: runs read after them are at least as new as the version they are
        // kept under, so a change is never hidden behind an older version.
        let versions = ctx.store.runs_versions().await?;
        let stale: Vec<String> = match self.dags.lock() {
            Ok(cache) => versions
                .iter()
                .filter(|(dag, v)| cache.get(*dag).map(|c| c.0) != Some(**v))
                .map(|(dag, _)| dag.clone())
                .collect(),
            Err(_) => versions.keys().cloned().collect(),
        };
        let fresh = if stale.is_empty() {
            BTreeMap::new()
        } else if stale.len() * 2 > versions.len() {
            ctx.store.recent_run_marks(RECENT_RUNS, None).await?
        } else {
            ctx.store
                .recent_run_marks(RECENT_RUNS, Some(&stale))
                .await?
        };
        let mut cache = self
            .dags
            .lock()
            .map_err(|_| WebError::BadRequest("the DAG list cache is poisoned".into()))?;
        for dag in &stale {
            let mut marks = fresh.get(dag).cloned().unwrap_or_default();
            marks.reverse();
            let version = versions.get(dag).copied().unwrap_or_default();
            cache.insert(dag.clone(), (version, Arc::new(marks)));
        }
        cache.retain(|dag, _| versions.contains_key(dag));
        Ok(cache
            .iter()
            .map(|(dag, (_, marks))| (dag.clone(), marks.clone()))
            .collect())
    }
}

/// Runs the DAG list and the grid show by default, and at most.
const RECENT_RUNS: i64 = 25;
const MAX_GRID_RUNS: i64 = 100;

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/ui/dags", get(dag_list))
        .route("/api/v1/ui/dags/{dag_id}/grid", get(grid))
        .route("/api/v1/ui/dags/{dag_id}/graph", get(graph))
        .route("/api/v1/ui/dags/{dag_id}/runs/{run_id}", get(run_detail))
        .route(
            "/api/v1/ui/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(task_detail),
        )
}

/// How a schedule reads in the UI.
pub(crate) fn schedule_label(t: &Timetable) -> String {
    match t {
        Timetable::Cron { expr } => match expr.as_str() {
            "0 0 * * *" => "@daily".to_owned(),
            "0 * * * *" => "@hourly".to_owned(),
            other => other.to_owned(),
        },
        Timetable::Interval { minutes } => format!("every {minutes} min"),
        Timetable::Manual => "manual".to_owned(),
    }
}

/// When the next scheduled run is created: the end of the first interval after the last run.
fn next_run_ms(t: &Timetable, last_logical: Option<i64>, now: i64) -> Option<i64> {
    let from = match last_logical {
        Some(last) => last.saturating_add(1),
        None => t.latest_ended(now)?,
    };
    let logical = t.first_at_or_after(from)?;
    t.interval_end(logical)
}

/// What a task is, in one word the pages style by.
pub(crate) fn task_kind(action: &Action) -> &'static str {
    match action {
        Action::Job(_) => "job",
        Action::MetadataUpload { .. } => "metadata",
        Action::PartitionSensor { .. } => "sensor",
        Action::UpstreamWait { .. } => "wait",
    }
}

fn task_mode(action: &Action) -> Option<&str> {
    match action {
        Action::Job(job) => Some(job.mode.as_str()),
        Action::MetadataUpload { .. } => Some("metadata-upload"),
        _ => None,
    }
}

/// One letter per task state: the grid sends 125,000 of them.
fn state_code(state: &str) -> char {
    match state {
        "success" => 's',
        "failed" => 'f',
        "running" => 'r',
        "queued" => 'q',
        "up_for_retry" => 'u',
        "upstream_failed" => 'p',
        "skipped" => 'k',
        "scheduled" => 'c',
        "waiting" => 'w',
        _ => '?',
    }
}

/// Task ids in dependency order (ties by id), so the grid reads top to bottom as the DAG runs.
pub(crate) fn topological(spec: &DagSpec) -> Vec<&str> {
    let mut indegree: BTreeMap<&str, usize> =
        spec.tasks.iter().map(|t| (t.task_id.as_str(), 0)).collect();
    let mut downstream: HashMap<&str, Vec<&str>> = HashMap::new();
    for t in &spec.tasks {
        for up in &t.upstream {
            if let Some(d) = indegree.get_mut(t.task_id.as_str()) {
                *d += 1;
            }
            downstream
                .entry(up.as_str())
                .or_default()
                .push(t.task_id.as_str());
        }
    }
    let mut ready: VecDeque<&str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(t, _)| *t)
        .collect();
    let mut order = Vec::with_capacity(spec.tasks.len());
    while let Some(task) = ready.pop_front() {
        order.push(task);
        let mut next: Vec<&str> = Vec::new();
        for d in downstream.get(task).into_iter().flatten() {
            if let Some(n) = indegree.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    next.push(d);
                }
            }
        }
        next.sort_unstable();
        ready.extend(next);
    }
    // Specs are validated acyclic; anything left (never) still shows.
    if order.len() < spec.tasks.len() {
        let seen: BTreeSet<&str> = order.iter().copied().collect();
        order.extend(
            spec.tasks
                .iter()
                .map(|t| t.task_id.as_str())
                .filter(|t| !seen.contains(t)),
        );
    }
    order
}

#[derive(Debug, Deserialize)]
struct DagListQuery {
    team: Option<String>,
    state: Option<String>,
    q: Option<String>,
}

/// A row of the DAG list (typed: 1,000 of them serialize faster than `json!` maps).
#[derive(Serialize)]
struct DagSummary<'a> {
    dag_id: &'a str,
    team: &'a str,
    kind: String,
    schedule: String,
    paused: bool,
    next_run_ms: Option<i64>,
    running: i64,
    failed: i64,
    /// Oldest first.
    recent_runs: Arc<Vec<RunMark>>,
}

#[derive(Serialize)]
struct DagList<'a> {
    teams: BTreeSet<&'a str>,
    dags: Vec<DagSummary<'a>>,
}

async fn dag_list(
    State(ctx): State<WebState>,
    Query(query): Query<DagListQuery>,
) -> Result<Response> {
    let state_filter = query.state.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = state_filter
        && !["running", "failed", "success", "paused", "active"].contains(&s)
    {
        return Err(WebError::BadRequest(format!(
            "unknown state filter {s:?}: use running, failed, success, paused or active"
        )));
    }
    let now = ctx.clock.now_ms();
    let dags = ctx.store.dags().await?;
    let recent = ctx.list_cache.recent_runs(&ctx).await?;
    let counts = ctx.store.run_counts().await?;
    let no_runs: Arc<Vec<RunMark>> = Arc::default();
    let teams: BTreeSet<&str> = dags
        .iter()
        .filter(|d| !d.removed)
        .map(|d| d.team.as_str())
        .collect();
    let needle = query.q.as_deref().unwrap_or("").to_lowercase();
    let mut out = Vec::new();
    for dag in dags.iter().filter(|d| !d.removed) {
        if query
            .team
            .as_deref()
            .is_some_and(|t| !t.is_empty() && t != dag.team)
            || (!needle.is_empty() && !dag.dag_id.to_lowercase().contains(&needle))
        {
            continue;
        }
        let recent_runs = recent.get(&dag.dag_id).unwrap_or(&no_runs).clone();
        let (running, failed) = counts.get(&dag.dag_id).copied().unwrap_or_default();
        let last_state = recent_runs.last().map(|r| r.state.as_str());
        let keep = match state_filter {
            None => true,
            Some("running") => running > 0,
            Some("failed") => last_state == Some("failed"),
            Some("success") => last_state == Some("success"),
            Some("paused") => dag.paused,
            Some(_) => !dag.paused,
        };
        if !keep {
            continue;
        }
        let spec = ctx.store.spec(&dag.dag_id, dag.version).await?;
        let next = if dag.paused {
            None
        } else {
            next_run_ms(&spec.timetable, dag.last_logical_ms, now)
        };
        out.push(DagSummary {
            dag_id: &dag.dag_id,
            team: &dag.team,
            kind: spec.kind.clone(),
            schedule: schedule_label(&spec.timetable),
            paused: dag.paused,
            next_run_ms: next,
            running,
            failed,
            recent_runs,
        });
    }
    Ok(Json(DagList { teams, dags: out }).into_response())
}

#[derive(Debug, Deserialize)]
struct GridQuery {
    runs: Option<i64>,
}

async fn grid(
    State(ctx): State<WebState>,
    Path(dag_id): Path<String>,
    Query(query): Query<GridQuery>,
) -> Result<Json<Value>> {
    let n = query.runs.unwrap_or(RECENT_RUNS);
    if !(1..=MAX_GRID_RUNS).contains(&n) {
        return Err(WebError::BadRequest(format!(
            "runs must be between 1 and {MAX_GRID_RUNS}, got {n}"
        )));
    }
    let dag = ctx.store.dag(&dag_id).await?;
    let spec = ctx.store.spec(&dag_id, dag.version).await?;
    let mut runs = ctx.store.recent_runs(&dag_id, n).await?;
    runs.reverse();
    let states = ctx.grid_cache.states(&ctx, &dag_id, &runs).await?;

    // Tasks of the current version in dependency order, then any that only older runs have.
    let mut tasks: Vec<(String, &'static str, Option<String>)> = topological(&spec)
        .into_iter()
        .filter_map(|id| spec.task(id))
        .map(|t| {
            (
                t.task_id.clone(),
                task_kind(&t.action),
                task_mode(&t.action).map(str::to_owned),
            )
        })
        .collect();
    // Runs of the current version hold exactly its tasks; only older ones can hold others.
    let known: HashSet<&str> = spec.tasks.iter().map(|t| t.task_id.as_str()).collect();
    let retired: BTreeSet<String> = runs
        .iter()
        .zip(&states)
        .filter(|(run, _)| run.version != dag.version)
        .flat_map(|(_, s)| s.keys())
        .filter(|t| !known.contains(t.as_str()))
        .cloned()
        .collect();
    tasks.extend(retired.into_iter().map(|t| (t, "job", None)));

    let grid_cells: Vec<String> = tasks
        .iter()
        .map(|(task_id, _, _)| {
            states
                .iter()
                .map(|run| run.get(task_id).map(|s| state_code(s)).unwrap_or('-'))
                .collect()
        })
        .collect();
    let runs_json: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({
                "run_id": r.run_id, "ds": r.ds, "start_ds": r.start_ds, "end_ds": r.end_ds,
                "state": r.state, "run_type": r.run_type,
                "started_ms": r.started_ms, "ended_ms": r.ended_ms,
            })
        })
        .collect();
    let tasks_json: Vec<Value> = tasks
        .iter()
        .map(|(id, kind, mode)| json!({ "task_id": id, "kind": kind, "mode": mode }))
        .collect();
    Ok(Json(json!({
        "dag_id": dag.dag_id,
        "team": dag.team,
        "paused": dag.paused,
        "schedule": schedule_label(&spec.timetable),
        "manual": spec.timetable.is_manual(),
        "runs": runs_json,
        "tasks": tasks_json,
        "cells": grid_cells,
    })))
}

/// A graph node's fields besides id and kind.
fn node_details(action: &Action) -> Value {
    match action {
        Action::Job(job) => json!({ "config": job.config, "mode": job.mode }),
        Action::MetadataUpload { jobs } => json!({
            "config": jobs.iter().map(|j| j.config.as_str()).collect::<Vec<_>>().join(", "),
            "mode": "metadata-upload",
        }),
        Action::PartitionSensor { table, .. } => json!({ "table": table }),
        Action::UpstreamWait {
            dag_id, task_id, ..
        } => json!({ "wait_dag": dag_id, "wait_task": task_id }),
    }
}

async fn graph(State(ctx): State<WebState>, Path(dag_id): Path<String>) -> Result<Json<Value>> {
    let spec = ctx.store.current_spec(&dag_id).await?;
    let nodes: Vec<Value> = spec
        .tasks
        .iter()
        .map(|t| {
            let mut node = json!({
                "id": t.task_id, "kind": task_kind(&t.action), "label": t.task_id,
                "config": null, "mode": null, "table": null, "wait_dag": null, "wait_task": null,
            });
            if let (Some(obj), Value::Object(details)) =
                (node.as_object_mut(), node_details(&t.action))
            {
                obj.extend(details);
            }
            node
        })
        .collect();
    let edges: Vec<[&str; 2]> = spec
        .tasks
        .iter()
        .flat_map(|t| {
            t.upstream
                .iter()
                .map(move |up| [up.as_str(), t.task_id.as_str()])
        })
        .collect();
    Ok(Json(json!({ "nodes": nodes, "edges": edges })))
}

async fn run_detail(
    State(ctx): State<WebState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let run = ctx.store.run(&dag_id, &run_id).await?;
    let spec = ctx.store.spec(&dag_id, run.version).await?;
    let instances = ctx.store.task_instances(&dag_id, &run_id).await?;
    let tasks: Vec<Value> = instances
        .iter()
        .map(|ti| {
            let kind = spec
                .task(&ti.task_id)
                .map(|t| task_kind(&t.action))
                .unwrap_or("job");
            json!({
                "task_id": ti.task_id, "kind": kind, "state": ti.state,
                "try_number": ti.try_number, "max_tries": ti.max_tries,
                "queued_ms": ti.queued_ms, "started_ms": ti.started_ms, "ended_ms": ti.ended_ms,
                "worker_id": ti.worker_id, "error": ti.error,
            })
        })
        .collect();
    Ok(Json(json!({ "run": run, "tasks": tasks })))
}

async fn task_detail(
    State(ctx): State<WebState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> Result<Json<Value>> {
    let ti = ctx.store.task_instance(&dag_id, &run_id, &task_id).await?;
    let spec = ctx.store.spec(&dag_id, ti.version).await?;
    let task = spec.task(&task_id);
    let mut task_json = serde_json::to_value(&ti).unwrap_or(Value::Null);
    if let Some(obj) = task_json.as_object_mut() {
        obj.insert(
            "kind".into(),
            json!(task.map(|t| task_kind(&t.action)).unwrap_or("job")),
        );
        obj.insert(
            "upstream".into(),
            json!(task.map(|t| t.upstream.clone()).unwrap_or_default()),
        );
        obj.insert("downstream".into(), json!(spec.downstream_of(&task_id)));
        obj.insert(
            "action".into(),
            task.and_then(|t| serde_json::to_value(&t.action).ok())
                .unwrap_or(Value::Null),
        );
    }
    let tries: Vec<Value> = ctx
        .store
        .tries(&dag_id, &run_id, &task_id)
        .await?
        .iter()
        .map(|t| {
            let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
            if let Some(obj) = v.as_object_mut() {
                obj.remove("log_path");
                obj.insert(
                    "duration_ms".into(),
                    json!(t.ended_ms.map(|e| e.saturating_sub(t.started_ms))),
                );
            }
            v
        })
        .collect();
    Ok(Json(json!({ "task": task_json, "tries": tries })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_read_as_people_write_them() {
        let cron = |e: &str| Timetable::Cron { expr: e.into() };
        assert_eq!(schedule_label(&cron("0 0 * * *")), "@daily");
        assert_eq!(schedule_label(&cron("5 4 * * *")), "5 4 * * *");
        assert_eq!(schedule_label(&Timetable::Manual), "manual");
        assert_eq!(
            schedule_label(&Timetable::Interval { minutes: 15 }),
            "every 15 min"
        );
    }

    #[test]
    fn every_state_has_its_own_letter() {
        let states = [
            "success",
            "failed",
            "running",
            "queued",
            "up_for_retry",
            "upstream_failed",
            "skipped",
            "scheduled",
            "waiting",
        ];
        let codes: BTreeSet<char> = states.iter().map(|s| state_code(s)).collect();
        assert_eq!(codes.len(), states.len());
        assert!(!codes.contains(&'?') && !codes.contains(&'-'));
    }
}
