//! A Join backfill spread over worker processes, each as it would run on its own host: one
//! scheduler and two `chronoflow worker` processes sharing a PostgreSQL state store and an
//! `s3://` warehouse (a real S3 API: moto's server, started here). The range is triggered in
//! `--step-days` chunks, one run each; both workers must run chunks, and every training-set
//! partition must equal a single-process `run --mode backfill` into a local warehouse.
//!
//! Needs `moto_server` (MOTO_SERVER_BIN, else the `.ci-cache/` virtualenv `.ci/run` installs)
//! and DATABASE_URL; without them the test skips, except under CI=true where it fails.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::quickstart::{DAY_MS, epoch_day, quickstart};
use common::s3::{Process, S3, moto_server};
use serde_json::Value;

const START_DS: &str = "2023-11-21";
const END_DS: &str = "2023-11-30";
const STEP_DAYS: &str = "3";
const JOINS: [(&str, &str); 2] = [
    (
        "compiled/production/joins/quickstart/training_set.v1",
        "default.quickstart_training_set_v1",
    ),
    (
        "compiled/production/joins/quickstart/training_set.v2",
        "default.quickstart_training_set_v2",
    ),
];

/// Days since 1970-01-01.
fn day_number(ds: &str) -> i64 {
    epoch_day(ds) / DAY_MS
}

/// What this test needs and cannot find: skip, or fail under CI=true.
fn missing(what: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {what}: the scale-out test cannot run"
    );
    eprintln!("skipping the scale-out test: {what}");
}

/// A fresh database per run on the server DATABASE_URL names, so reruns never collide.
fn fresh_postgres(base: &str) -> String {
    use sqlx::Connection;
    let name = format!("chronoflow_scale_out_{}", std::process::id());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    });
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

/// A `chronoflow` command with `env` (the warehouse, the state store...).
fn chronoflow(env: &[(&'static str, String)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chronoflow"));
    c.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(env: &[(&'static str, String)], args: &[&str]) -> String {
    let out = chronoflow(env, args).output().unwrap();
    assert!(
        out.status.success(),
        "chronoflow {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The quickstart's data with a left side (checkouts) and a users snapshot on every day of the
/// range: the checkouts of 2023-11-30 moved to each day, as daily traffic would land.
fn write_inputs(dir: &Path) -> Vec<(String, PathBuf)> {
    let data = quickstart().join("data");
    let mut inputs = Vec::new();
    for table in ["purchases", "returns"] {
        inputs.push((format!("data.{table}"), data.join(format!("{table}.csv"))));
    }
    let checkouts = std::fs::read_to_string(data.join("checkouts.csv")).unwrap();
    let users = std::fs::read_to_string(data.join("users.csv")).unwrap();
    let (checkouts_header, checkout_rows) = checkouts.split_once('\n').unwrap();
    let (users_header, user_rows) = users.split_once('\n').unwrap();
    let mut left = format!("{checkouts_header}\n");
    let mut snapshots = format!("{users_header}\n");
    let (first, last) = (day_number(START_DS), day_number(END_DS));
    for day in first..=last {
        let ds = common::quickstart::civil(day);
        for row in checkout_rows.lines() {
            let mut fields: Vec<String> = row.split(',').map(str::to_owned).collect();
            let ts: i64 = fields[1].parse().unwrap();
            fields[0] = ds.clone();
            fields[1] = (ts - (last - day) * DAY_MS).to_string();
            left.push_str(&fields.join(","));
            left.push('\n');
        }
        for row in user_rows.lines() {
            let (_, rest) = row.split_once(',').unwrap();
            snapshots.push_str(&format!("{ds},{rest}\n"));
        }
    }
    for (table, text) in [("checkouts", left), ("users", snapshots)] {
        let path = dir.join(format!("{table}.csv"));
        std::fs::write(&path, text).unwrap();
        inputs.push((format!("data.{table}"), path));
    }
    inputs
}

/// Rows of a partition as sorted JSON lines.
fn partition_rows(env: &[(&'static str, String)], table: &str, ds: &str) -> Vec<String> {
    let out = run(
        env,
        &["table", "export", table, "--ds", ds, "--format", "json"],
    );
    let mut rows: Vec<String> = out.lines().map(str::to_owned).collect();
    rows.sort();
    rows
}

fn json(env: &[(&'static str, String)], args: &[&str]) -> Value {
    serde_json::from_str(&run(env, args)).unwrap()
}

#[test]
fn a_join_backfill_split_over_two_workers_on_postgres_and_s3_equals_one_process() {
    let Some(moto) = moto_server() else {
        return missing("moto_server is not installed (set MOTO_SERVER_BIN or run .ci/run)");
    };
    let Some(base_url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
        return missing("DATABASE_URL is not set");
    };
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start(&moto, dir.path());
    let repo = quickstart();
    let repo_arg = repo.to_str().unwrap();
    let inputs = write_inputs(dir.path());

    // One process into a local warehouse: the reference.
    let local = vec![(
        "CHRONOFLOW_WAREHOUSE",
        dir.path().join("local").display().to_string(),
    )];
    let mut shared = s3.env();
    for (table, csv) in &inputs {
        for env in [&local, &shared] {
            run(env, &["table", "import", table, csv.to_str().unwrap()]);
        }
    }
    for (conf, _) in JOINS {
        run(
            &local,
            &[
                "run",
                "--mode",
                "backfill",
                "--repo",
                repo_arg,
                "--conf",
                conf,
                "--start-ds",
                START_DS,
                "--end-ds",
                END_DS,
            ],
        );
    }

    // The scheduler and two workers, each with its own home (logs) and KV store, sharing only
    // PostgreSQL and S3.
    shared.push(("CHRONOFLOW_DATABASE_URL", fresh_postgres(&base_url)));
    run(&shared, &["dags", "sync", "--repo", repo_arg]);
    run(&shared, &["dags", "pause", "--all"]);
    run(&shared, &["dags", "unpause", "chronon_join_backfill"]);
    let spawn = |role: &str, extra: &[&str]| {
        let home = dir.path().join(role);
        std::fs::create_dir_all(&home).unwrap();
        let mut env = shared.clone();
        env.push(("CHRONOFLOW_HOME", home.display().to_string()));
        env.push(("CHRONOFLOW_KV", home.join("kv").display().to_string()));
        let mut args = vec![role.split('-').next().unwrap(), "--repo", repo_arg];
        args.extend_from_slice(extra);
        let child = chronoflow(&env, &args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.join("process.log")).unwrap())
            .spawn()
            .unwrap();
        Process(child)
    };
    let _workers = [
        spawn("worker-a", &["--id", "worker-a", "--slots", "1"]),
        spawn("worker-b", &["--id", "worker-b", "--slots", "1"]),
    ];
    let _scheduler = spawn("scheduler", &["--tick-ms", "100"]);
    let triggered = run(
        &shared,
        &[
            "dags",
            "trigger",
            "chronon_join_backfill",
            "--start-ds",
            START_DS,
            "--end-ds",
            END_DS,
            "--step-days",
            STEP_DAYS,
        ],
    );
    assert_eq!(triggered.lines().count(), 4, "{triggered}");

    let started = Instant::now();
    let runs = loop {
        let listed = json(
            &shared,
            &[
                "runs",
                "list",
                "--dag",
                "chronon_join_backfill",
                "--format",
                "json",
            ],
        );
        let runs = listed["runs"].as_array().unwrap().clone();
        let states: Vec<&str> = runs.iter().map(|r| r["state"].as_str().unwrap()).collect();
        assert!(!states.contains(&"failed"), "a chunk failed: {runs:?}");
        if states.len() == 4 && states.iter().all(|s| *s == "success") {
            break runs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the chunks did not finish: {runs:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    // Every chunk's Join tasks ran, on both workers between them.
    let mut workers = BTreeSet::new();
    for r in &runs {
        let run_id = r["run_id"].as_str().unwrap();
        let tasks = json(
            &shared,
            &[
                "tasks",
                "list",
                "chronon_join_backfill",
                run_id,
                "--format",
                "json",
            ],
        );
        for t in tasks["task_instances"].as_array().unwrap() {
            if t["task_id"].as_str().unwrap().ends_with("__backfill") {
                assert_eq!(t["state"], "success", "{t}");
                workers.insert(t["worker_id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(
        workers,
        BTreeSet::from(["worker-a".to_owned(), "worker-b".to_owned()]),
        "both workers should have run chunks"
    );

    // Row for row equal to the single process, every partition of the range.
    let mut compared = 0;
    for (_, table) in JOINS {
        for day in day_number(START_DS)..=day_number(END_DS) {
            let ds = common::quickstart::civil(day);
            let reference = partition_rows(&local, table, &ds);
            assert!(!reference.is_empty(), "{table} {ds} has no rows");
            assert_eq!(
                partition_rows(&shared, table, &ds),
                reference,
                "{table} ds={ds}"
            );
            compared += reference.len();
        }
    }
    eprintln!("{compared} training rows equal across 4 chunks on 2 workers");
}
