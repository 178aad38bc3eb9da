//! The consistency (OOC) scenarios shared by the process tests: the quickstart's
//! training_set.v2 logging every fetch, every left row of the fetch day fetched, and the
//! `chronon_join_ooc_quickstart` DAG run in `standalone`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::quickstart::*;
use super::{copy_dir, free_port, http, wait_for_port};

pub const JOIN: &str = "quickstart.training_set.v2";
pub const OUTPUT: &str = "default.quickstart_training_set_v2";
pub const OOC_DAG: &str = "chronon_join_ooc_quickstart";

/// Fetched rows: the request's user and time, and the features served.
pub type Fetched = Vec<(Value, i64, Map<String, Value>)>;

/// The quickstart with training_set.v2 logging every fetch and checking consistency, its data
/// imported and uploaded by `upload`; then every left row of the fetch day fetched (and
/// logged). Returns the setup and every fetch's response.
pub fn served_and_logged_with(upload: fn(Setup) -> Setup) -> (Setup, Fetched) {
    let mut s = Setup::new(None);
    ooc_repo(&mut s);
    let s = upload(s);
    fetch_every_left_row(s)
}

/// Copies the quickstart into the setup's repo with training_set.v2 logging every fetch and
/// checking consistency (so the OOC DAG is planned).
pub fn ooc_repo(s: &mut Setup) {
    let repo = s.dir.path().join("repo");
    copy_dir(&quickstart(), &repo);
    let conf = repo.join(format!("{JOINS}/training_set.v2"));
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&conf).unwrap()).unwrap();
    v["metaData"]["samplePercent"] = json!(100.0);
    v["metaData"]["customJson"] = json!(r#"{"check_consistency": true, "lag": 0}"#);
    // No CHRONON_LOG_TABLE: the OOC DAG's sensor waits on `<join>_log`, where the fetcher logs
    // (regression: it waited on Chronon's shared log table, which nothing here writes).
    std::fs::write(&conf, v.to_string()).unwrap();
    s.repo = repo;
}

/// Fetches (and logs) every left row of the fetch day through `serve`; every response.
fn fetch_every_left_row(s: Setup) -> (Setup, Fetched) {
    let (mut fetcher, port) = s.serve();
    let (start, end) = (epoch_day(FETCH_DAY), epoch_day(FETCH_DAY) + DAY_MS);
    let mut fetched: Fetched = Vec::new();
    for row in s.export("data.checkouts", FETCH_DAY) {
        let ts = row["ts"].as_i64().unwrap();
        if !(start..end).contains(&ts) {
            continue;
        }
        let features = fetch_one(
            port,
            &format!("/v1/fetch/join/{JOIN}"),
            json!({"user_id": row["user_id"]}),
            ts,
        );
        fetched.push((row["user_id"].clone(), ts, features));
    }
    assert!(fetched.len() > 100, "only {} rows fetched", fetched.len());
    // Ctrl-C flushes the log.
    Command::new("kill")
        .args(["-INT", &fetcher.0.id().to_string()])
        .status()
        .unwrap();
    assert!(fetcher.0.wait().unwrap().success());
    (s, fetched)
}

/// The quickstart uploaded with a stale purchases batch: serving keeps the upload of D-2.
pub fn stale_purchases(s: Setup) -> Setup {
    for t in ["purchases", "returns", "users", "checkouts"] {
        s.import(
            &format!("data.{t}"),
            &quickstart().join(format!("data/{t}.csv")),
        );
    }
    for (gb, ds) in [
        ("purchases", "2023-11-28"),
        ("returns", BATCH_DAY),
        ("users", BATCH_DAY),
    ] {
        let conf = format!("{GB}/{gb}.v1");
        s.job("upload", &conf, &["--ds", ds]);
        s.job("upload-to-kv", &conf, &["--ds", ds]);
    }
    s.job("metadata-upload", &format!("{JOINS}/training_set.v2"), &[]);
    s.job(
        "streaming",
        &format!("{GB}/returns.v1"),
        &["--replay-table", "data.returns", "--since", BATCH_DAY],
    );
    s
}

/// A `chronoflow` command on the setup's own state store and home.
pub fn with_state(s: &Setup, args: &[&str]) -> Command {
    let mut c = s.command(args);
    c.env(
        "CHRONOFLOW_DATABASE_URL",
        format!("sqlite://{}", s.dir.path().join("state.db").display()),
    )
    .env("CHRONOFLOW_HOME", s.dir.path().join("home"));
    c
}

/// Syncs the DAGs, pauses all but the OOC DAG and triggers it for the fetch day.
pub fn trigger_ooc(s: &Setup) {
    trigger_ooc_on(s, FETCH_DAY);
}

/// Syncs the DAGs, pauses all but the OOC DAG and triggers it for day `ds`.
pub fn trigger_ooc_on(s: &Setup, ds: &str) {
    let repo = s.repo.display().to_string();
    for args in [
        vec!["dags", "sync", "--repo", &repo],
        vec!["dags", "pause", "--all"],
        vec!["dags", "unpause", OOC_DAG],
        vec!["dags", "trigger", OOC_DAG, "--start-ds", ds, "--end-ds", ds],
    ] {
        let out = with_state(s, &args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `standalone` on the setup's state store, its API on a free port.
pub struct Standalone {
    pub child: Child,
    pub port: u16,
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn standalone(s: &Setup) -> Standalone {
    let port = free_port();
    let repo = s.repo.display().to_string();
    let child = with_state(
        s,
        &[
            "standalone",
            "--repo",
            &repo,
            "--tick-ms",
            "100",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_for_port(port);
    Standalone { child, port }
}

/// Waits for the OOC DAG's run of the fetch day to finish; its state.
pub fn wait_for_ooc_run(port: u16) -> String {
    let started = Instant::now();
    loop {
        let (_, body) = http(port, "GET", "/api/v1/runs", "");
        let runs: Value = serde_json::from_str(&body).unwrap();
        let run = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["dag_id"] == OOC_DAG && r["ds"] == FETCH_DAY)
            .cloned();
        let state = run
            .as_ref()
            .and_then(|r| r["state"].as_str())
            .unwrap_or_default()
            .to_owned();
        if state == "success" || state == "failed" {
            return state;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{OOC_DAG} did not finish: {run:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The consistency table's rows of the fetch day, by feature.
pub fn consistency_rows(s: &Setup) -> std::collections::BTreeMap<String, Map<String, Value>> {
    s.export(&format!("{OUTPUT}_consistency"), FETCH_DAY)
        .into_iter()
        .map(|r| (r["feature"].as_str().unwrap().to_owned(), r))
        .collect()
}
