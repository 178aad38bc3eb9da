//! Fills a state store with the web UI benchmark's shape: one DAG of N tasks (default 5,000)
//! with R finished runs (default 25), and D small DAGs (default 1,000, five tasks each, 20
//! teams) with R finished runs each. The DAGs go in through the store's own sync; runs and task
//! instances are inserted directly (finished states, as a long-running deployment has them),
//! which is what the Airflow side of the benchmark does too.
//!
//! Usage: `bench-ui-populate --database-url URL --specs-out FILE [--tasks 5000] [--runs 25]
//!         [--dags 1000]`. Then serve it: `chronoflow scheduler --specs FILE --database-url URL
//!         --listen 127.0.0.1:PORT`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use chronoflow_scheduler::clock::{Clock, SystemClock};
use chronoflow_scheduler::spec::{Action, DagSpec, JobRef, TaskSpec};
use chronoflow_scheduler::store::Store;
use chronoflow_scheduler::timetable::{Timetable, ds_of, iso};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyPoolOptions;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY_MS: i64 = 86_400_000;
/// Rows per INSERT statement (SQLite allows 32,766 bound values; 17 columns each).
const ROWS_PER_INSERT: usize = 500;

struct Args {
    database_url: String,
    specs_out: String,
    tasks: usize,
    runs: usize,
    dags: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        database_url: String::new(),
        specs_out: String::new(),
        tasks: 5000,
        runs: 25,
        dags: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--database-url" => a.database_url = value()?,
            "--specs-out" => a.specs_out = value()?,
            "--tasks" => a.tasks = value()?.parse()?,
            "--runs" => a.runs = value()?.parse()?,
            "--dags" => a.dags = value()?.parse()?,
            other => bail!("unexpected argument {other:?}"),
        }
    }
    if a.database_url.is_empty() || a.specs_out.is_empty() {
        bail!(
            "usage: bench-ui-populate --database-url URL --specs-out FILE [--tasks N] [--runs R] [--dags D]"
        );
    }
    Ok(a)
}

fn job(team: &str, config: &str, mode: &str) -> Action {
    Action::Job(JobRef {
        job: format!("{config}/{mode}"),
        config: config.to_owned(),
        mode: mode.to_owned(),
        team: team.to_owned(),
        conf_path: format!("production/group_bys/{team}/{config}"),
        content_hash: "0".into(),
    })
}

fn sensor(table: String) -> Action {
    Action::PartitionSensor {
        table,
        partition_column: "ds".into(),
        offset_days: 0,
        sub_partitions: Vec::new(),
        end: None,
        poke_interval_seconds: 60,
        timeout_seconds: 3600,
    }
}

fn task(task_id: String, upstream: Vec<String>, action: Action) -> TaskSpec {
    TaskSpec {
        task_id,
        upstream,
        retries: 1,
        retry_delay_seconds: 60,
        execution_timeout_seconds: None,
        action,
    }
}

fn dag(dag_id: String, team: &str, tasks: Vec<TaskSpec>) -> DagSpec {
    let mut tasks = tasks;
    tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    DagSpec {
        dag_id,
        kind: "custom".into(),
        team: Some(team.to_owned()),
        timetable: Timetable::Manual,
        catchup: false,
        fills_missing: false,
        start_date: None,
        max_active_runs: 1,
        concurrency: 64,
        tasks,
        downstream_index: Default::default(),
    }
}

/// The big DAG, shaped like a team's GroupBy batch DAG grown large: per config a sensor, a
/// backfill after it, and an upload after the backfill; every tenth config also waits on the
/// previous one's backfill.
fn big_dag(tasks: usize) -> DagSpec {
    let team = "bench_big";
    let mut out = Vec::with_capacity(tasks);
    let configs = tasks.div_ceil(3);
    for i in 0..configs {
        let config = format!("gb_{i:05}");
        let wait = format!("wait_for__data_events_{i:05}__ds");
        let backfill = format!("{config}__backfill");
        let upload = format!("{config}__upload");
        out.push(task(
            wait.clone(),
            vec![],
            sensor(format!("data.events_{i:05}")),
        ));
        let mut upstream = vec![wait];
        if i % 10 == 9 {
            upstream.push(format!("gb_{:05}__backfill", i - 1));
            upstream.sort();
        }
        out.push(task(
            backfill.clone(),
            upstream,
            job(team, &config, "backfill"),
        ));
        out.push(task(upload, vec![backfill], job(team, &config, "upload")));
    }
    out.truncate(tasks);
    // Truncation may cut a task another lists as upstream.
    let ids: std::collections::BTreeSet<String> = out.iter().map(|t| t.task_id.clone()).collect();
    for t in &mut out {
        t.upstream.retain(|u| ids.contains(u));
    }
    dag("ui_bench_big".into(), team, out)
}

fn small_dag(i: usize) -> DagSpec {
    let team = format!("team_{:02}", i % 20);
    let config = format!("cfg_{i:04}");
    let tasks = vec![
        task(
            "wait_for__data_a__ds".into(),
            vec![],
            sensor("data.a".into()),
        ),
        task(
            "wait_for__data_b__ds".into(),
            vec![],
            sensor("data.b".into()),
        ),
        task(
            format!("{config}__backfill"),
            vec!["wait_for__data_a__ds".into(), "wait_for__data_b__ds".into()],
            job(&team, &config, "backfill"),
        ),
        task(
            format!("{config}__upload"),
            vec![format!("{config}__backfill")],
            job(&team, &config, "upload"),
        ),
        task(
            format!("{config}__upload_to_kv"),
            vec![format!("{config}__upload")],
            job(&team, &config, "upload-to-kv"),
        ),
    ];
    dag(format!("ui_bench_dag_{i:04}"), &team, tasks)
}

/// A deterministic state for (run, task): mostly success, a few failures and their
/// upstream_failed downstream, as a real history has.
fn state_of(run: usize, index: usize) -> &'static str {
    match (run * 7919 + index * 104_729) % 97 {
        0 => "failed",
        1 => "upstream_failed",
        2 => "skipped",
        _ => "success",
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let started = std::time::Instant::now();
    let store = if let Some(path) = args.database_url.strip_prefix("sqlite://") {
        Store::open_sqlite(std::path::Path::new(path)).await?
    } else {
        Store::open(&args.database_url).await?
    };
    let mut specs = vec![big_dag(args.tasks)];
    specs.extend((0..args.dags).map(small_dag));
    let now = SystemClock.now_ms();
    let report = store.sync_dags(&specs, now).await?;
    if !report.rejected.is_empty() {
        bail!("specs rejected: {:?}", report.rejected);
    }
    std::fs::write(&args.specs_out, serde_json::to_string(&specs)?)
        .with_context(|| format!("writing {}", args.specs_out))?;
    drop(store);

    let mut url = args.database_url.clone();
    if url.starts_with("sqlite:") && !url.contains("mode=") {
        url.push_str("?mode=rwc");
    }
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    let first_day = now.div_euclid(DAY_MS) * DAY_MS - (args.runs as i64) * DAY_MS;
    let mut run_rows: Vec<String> = Vec::new();
    let mut ti_rows: Vec<String> = Vec::new();
    let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
    for spec in &specs {
        let team = spec.team.clone().unwrap_or_default();
        for r in 0..args.runs {
            let logical = first_day + r as i64 * DAY_MS;
            let ds = ds_of(logical);
            let run_id = format!("scheduled__{}", iso(logical));
            let start = logical + DAY_MS + 60_000;
            let mut failed = 0;
            for (i, t) in spec.tasks.iter().enumerate() {
                let state = state_of(r, i);
                failed += i64::from(state == "failed");
                let is_sensor = i64::from(t.action.is_sensor());
                let begin = start + (i as i64 % 600) * 1000;
                let end = begin + 5_000 + (i as i64 % 17) * 1000;
                let error = if state == "failed" {
                    q(&format!(
                        "exit status 3: reading data.events_{i:05}/ds={ds}: 0 rows"
                    ))
                } else {
                    "NULL".into()
                };
                ti_rows.push(format!(
                    "({}, {}, {}, 1, {}, {is_sensor}, {}, 1, 2, {r}, 0, {}, {}, {}, {begin}, {begin}, {begin}, {end}, NULL, NULL, 'bench-worker', {error})",
                    q(&spec.dag_id), q(&run_id), q(&t.task_id), q(&team), q(state), q(&ds), q(&ds), q(&ds)
                ));
            }
            let run_state = if failed > 0 { "failed" } else { "success" };
            run_rows.push(format!(
                "({}, {}, 1, 'scheduled', {logical}, {}, {}, {}, {}, 0, {failed}, {start}, {start}, {})",
                q(&spec.dag_id), q(&run_id), q(&ds), q(&ds), q(&ds), q(run_state), start + 900_000
            ));
        }
    }
    let mut tx = pool.begin().await?;
    for chunk in run_rows.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO dag_runs (dag_id, run_id, version, run_type, logical_ms, ds, start_ds, end_ds, state, unfinished, failed, created_ms, started_ms, ended_ms) VALUES {}",
            chunk.join(", ")
        );
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    for chunk in ti_rows.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO task_instances (dag_id, run_id, task_id, version, team, is_sensor, state, try_number, max_tries, run_order, priority, ds, start_ds, end_ds, ready_ms, queued_ms, started_ms, ended_ms, heartbeat_ms, next_ms, worker_id, error) VALUES {}",
            chunk.join(", ")
        );
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let mut per_dag: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &specs {
        per_dag.insert(&s.dag_id, s.tasks.len());
    }
    println!(
        "{{\"dags\": {}, \"big_dag_tasks\": {}, \"runs_per_dag\": {}, \"task_instances\": {}, \"seconds\": {:.1}}}",
        specs.len(),
        per_dag.get("ui_bench_big").copied().unwrap_or(0),
        args.runs,
        ti_rows.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
