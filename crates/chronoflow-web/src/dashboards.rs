//! The dashboards read from the state store: job status, error analysis, resources.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chronoflow_scheduler::timetable::ds_of;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::WebState;
use crate::error::{Result, WebError};

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Rows a dashboard reads at most: a page stays fast on a store with years of history.
const MAX_ROWS: i64 = 5000;

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/ui/status", get(status))
        .route("/api/v1/ui/errors", get(errors))
        .route("/api/v1/ui/resources", get(resources))
}

async fn status(State(ctx): State<WebState>) -> Result<Json<Value>> {
    let now = ctx.clock.now_ms();
    let active = ctx.store.active_tasks(MAX_ROWS).await?;
    let failed = ctx.store.final_failures(now - DAY_MS, 500).await?;
    let running: Vec<Value> = active
        .iter()
        .filter(|t| t.state == "running")
        .map(|t| {
            json!({
                "dag_id": t.dag_id, "run_id": t.run_id, "task_id": t.task_id,
                "worker_id": t.worker_id, "started_ms": t.started_ms, "is_sensor": t.is_sensor,
            })
        })
        .collect();
    let queued: Vec<Value> = active
        .iter()
        .filter(|t| t.state == "queued")
        .map(|t| {
            json!({
                "dag_id": t.dag_id, "run_id": t.run_id, "task_id": t.task_id,
                "queued_ms": t.queued_ms,
            })
        })
        .collect();
    let failed: Vec<Value> = failed
        .iter()
        .map(|t| {
            json!({
                "dag_id": t.dag_id, "run_id": t.run_id, "task_id": t.task_id,
                "ended_ms": t.ended_ms, "error": t.error,
            })
        })
        .collect();
    Ok(Json(json!({
        "now_ms": now, "running": running, "queued": queued, "failed": failed,
    })))
}

#[derive(Debug, Deserialize)]
struct DaysQuery {
    days: Option<i64>,
}

fn days(query: &DaysQuery, default: i64) -> Result<i64> {
    let days = query.days.unwrap_or(default);
    if !(1..=366).contains(&days) {
        return Err(WebError::BadRequest(format!(
            "days must be between 1 and 366, got {days}"
        )));
    }
    Ok(days)
}

/// An error message with what varies between occurrences taken out (numbers, paths, ids,
/// dates), so the same failure on different days and configs groups together.
pub(crate) fn normalize_error(message: &str) -> String {
    let first_line = message.lines().next().unwrap_or("");
    first_line
        .split_whitespace()
        .map(normalize_word)
        .collect::<Vec<_>>()
        .join(" ")
}

fn normalize_word(word: &str) -> String {
    let core = word.trim_matches(|c: char| "\"'`()[]{},;:".contains(c));
    if core.len() > 1 && (core.contains('/') || core.contains('\\')) {
        return word.replace(core, "<path>");
    }
    if !core.is_empty() && core.parse::<f64>().is_ok() {
        return word.replace(core, "#");
    }
    // Per alphanumeric run: hex ids become <id>, digit runs inside words become '#'.
    let mut out = String::with_capacity(word.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let id = run.len() >= 6
            && run.chars().all(|c| c.is_ascii_hexdigit())
            && run.chars().any(|c| c.is_ascii_digit());
        if id {
            out.push_str("<id>");
        } else {
            let mut in_digits = false;
            for c in run.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        out.push('#');
                    }
                    in_digits = true;
                } else {
                    in_digits = false;
                    out.push(c);
                }
            }
        }
        run.clear();
    };
    for c in word.chars() {
        if c.is_ascii_alphanumeric() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

async fn errors(
    State(ctx): State<WebState>,
    Query(query): Query<DaysQuery>,
) -> Result<Json<Value>> {
    let since = ctx.clock.now_ms() - days(&query, 7)? * DAY_MS;
    let failures = ctx.store.final_failures(since, MAX_ROWS).await?;
    struct Group<'a> {
        count: usize,
        first_ms: i64,
        last_ms: i64,
        dags: BTreeSet<&'a str>,
        tasks: Vec<Value>,
        example: &'a str,
    }
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for f in &failures {
        let message = f.error.as_deref().unwrap_or("(no error message)");
        let ended = f.ended_ms.unwrap_or_default();
        let g = groups.entry(normalize_error(message)).or_insert(Group {
            count: 0,
            first_ms: ended,
            last_ms: ended,
            dags: BTreeSet::new(),
            tasks: Vec::new(),
            example: message,
        });
        g.count += 1;
        g.first_ms = g.first_ms.min(ended);
        g.last_ms = g.last_ms.max(ended);
        g.dags.insert(&f.dag_id);
        if g.tasks.len() < 20 {
            g.tasks
                .push(json!({ "dag_id": f.dag_id, "run_id": f.run_id, "task_id": f.task_id }));
        }
    }
    let mut out: Vec<(String, Group)> = groups.into_iter().collect();
    out.sort_by(|a, b| {
        b.1.count
            .cmp(&a.1.count)
            .then(b.1.last_ms.cmp(&a.1.last_ms))
    });
    let groups: Vec<Value> = out
        .into_iter()
        .map(|(pattern, g)| {
            json!({
                "pattern": pattern, "count": g.count, "first_ms": g.first_ms, "last_ms": g.last_ms,
                "dags": g.dags, "tasks": g.tasks, "example": g.example,
            })
        })
        .collect();
    Ok(Json(json!({ "groups": groups })))
}

async fn resources(
    State(ctx): State<WebState>,
    Query(query): Query<DaysQuery>,
) -> Result<Json<Value>> {
    let since = ctx.clock.now_ms() - days(&query, 14)? * DAY_MS;
    let tries = ctx.store.try_usage(since, MAX_ROWS).await?;
    #[derive(Default)]
    struct Sum {
        team: String,
        tries: i64,
        cpu_ms: i64,
        max_rss_kb: i64,
        duration_ms: i64,
    }
    let mut by_job: BTreeMap<(String, String), Sum> = BTreeMap::new();
    let mut by_team_day: BTreeMap<(String, String), Sum> = BTreeMap::new();
    for t in &tries {
        let duration = t.ended_ms.saturating_sub(t.started_ms);
        for (map, key) in [
            (&mut by_job, (t.dag_id.clone(), t.task_id.clone())),
            (&mut by_team_day, (t.team.clone(), ds_of(t.ended_ms))),
        ] {
            let s = map.entry(key).or_default();
            s.team.clone_from(&t.team);
            s.tries += 1;
            s.cpu_ms += t.cpu_ms.unwrap_or_default();
            s.max_rss_kb = s.max_rss_kb.max(t.max_rss_kb.unwrap_or_default());
            s.duration_ms += duration;
        }
    }
    let recent: Vec<Value> = tries
        .iter()
        .take(500)
        .map(|t| {
            json!({
                "dag_id": t.dag_id, "run_id": t.run_id, "task_id": t.task_id, "team": t.team,
                "job": t.task_id, "try_number": t.try_number, "state": t.state,
                "ended_ms": t.ended_ms, "cpu_ms": t.cpu_ms, "max_rss_kb": t.max_rss_kb,
                "duration_ms": t.ended_ms.saturating_sub(t.started_ms),
            })
        })
        .collect();
    let jobs: Vec<Value> = by_job
        .iter()
        .map(|((dag_id, task_id), s)| {
            json!({
                "job": task_id, "dag_id": dag_id, "team": s.team, "tries": s.tries,
                "cpu_ms": s.cpu_ms, "max_rss_kb": s.max_rss_kb, "duration_ms": s.duration_ms,
            })
        })
        .collect();
    let team_days: Vec<Value> = by_team_day
        .iter()
        .map(|((team, day), s)| {
            json!({
                "team": team, "day": day, "tries": s.tries, "cpu_ms": s.cpu_ms,
                "max_rss_kb": s.max_rss_kb,
            })
        })
        .collect();
    Ok(Json(json!({
        "tries": recent, "by_job": jobs, "by_team_day": team_days,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_group_whatever_the_numbers_paths_and_ids() {
        let a = normalize_error(
            "reading /data/wh/data.purchases/ds=2023-11-30/part-1.parquet: 12 rows missing",
        );
        let b = normalize_error(
            "reading /data/wh/data.returns/ds=2023-12-01/part-7.parquet: 3 rows missing",
        );
        assert_eq!(a, b);
        assert_eq!(a, "reading <path>: # rows missing");
        assert_eq!(
            normalize_error("worker host-4f3a9c21d7 died after 1.5 s"),
            normalize_error("worker host-0b1c2d3e4f died after 20 s")
        );
        assert_ne!(
            normalize_error("exit status 1"),
            normalize_error("killed by signal 9 (timeout)")
        );
    }

    #[test]
    fn only_the_first_line_counts() {
        assert_eq!(normalize_error("boom 42\nstack line 1"), "boom #");
    }
}
