//! Fetch-log hygiene with real processes: what the fetcher acknowledges as logged survives a
//! restart (SIGTERM) and a kill -9, each day's log partition carries its own schema event, and the
//! logger's counters are on `/metrics`.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::process::Command;

use common::quickstart::*;
use common::{copy_dir, http};
use serde_json::{Value, json};

const LOG: &str = "default.quickstart_training_set_v2_log";
const JOIN_PATH: &str = "/v1/fetch/join/quickstart.training_set.v2";
const NEXT_DAY: &str = "2023-12-01";

/// The quickstart, uploaded, with training_set.v2 logging every fetch.
fn logging_everything() -> Setup {
    let mut s = Setup::new(None);
    let repo = s.dir.path().join("repo");
    copy_dir(&quickstart(), &repo);
    let conf = repo.join(format!("{JOINS}/training_set.v2"));
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&conf).unwrap()).unwrap();
    v["metaData"]["samplePercent"] = json!(100.0);
    std::fs::write(&conf, v.to_string()).unwrap();
    s.repo = repo;
    upload_quickstart(s)
}

/// Fetches users `0..n` at `at`.
fn fetch_users(port: u16, n: i64, at: i64) {
    for user in 0..n {
        fetch_one(port, JOIN_PATH, json!({"user_id": user}), at);
    }
}

/// `POST /v1/log/flush`: the logger's counters once the write committed.
fn flush(port: u16) -> Value {
    let (status, body) = http(port, "POST", "/v1/log/flush", "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn signal(fetcher: &mut Fetcher, signal: &str) {
    Command::new("kill")
        .args([signal, &fetcher.0.id().to_string()])
        .status()
        .unwrap();
    fetcher.0.wait().unwrap();
}

fn count(rows: &[serde_json::Map<String, Value>], event: &str) -> usize {
    rows.iter().filter(|r| r["event"] == event).count()
}

/// Regression: the schema event of a Join version was written once per process, so a fetcher
/// up across midnight logged the next day without one and the flattener skipped that whole day.
/// Also: SIGTERM (not only Ctrl-C) drains the log, and a restarted fetcher logs on.
#[test]
fn every_day_gets_its_schema_event_and_sigterm_loses_nothing() {
    let s = logging_everything();
    let day = epoch_day(FETCH_DAY) + 3_600_000;
    let next = epoch_day(NEXT_DAY) + 3_600_000;

    let (mut fetcher, port) = s.serve();
    fetch_users(port, 10, day);
    fetch_users(port, 5, next);
    let acknowledged = flush(port);
    assert_eq!(acknowledged["written"], json!(15), "{acknowledged}");
    assert_eq!(acknowledged["pending"], json!(0), "{acknowledged}");
    fetch_users(port, 7, next);
    signal(&mut fetcher, "-TERM");

    let (mut fetcher, port) = s.serve();
    fetch_users(port, 3, next);
    signal(&mut fetcher, "-TERM");

    let first = s.export(LOG, FETCH_DAY);
    assert_eq!(count(&first, "fetch"), 10);
    assert_eq!(count(&first, "schema"), 1);
    let second = s.export(LOG, NEXT_DAY);
    assert_eq!(count(&second, "fetch"), 15);
    // One per process that logged the day: the restarted fetcher writes its own.
    assert_eq!(count(&second, "schema"), 2);

    for (ds, rows) in [(FETCH_DAY, 10), (NEXT_DAY, 15)] {
        let out = s.job(
            "log-flattener",
            &format!("{JOINS}/training_set.v2"),
            &["--ds", ds],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains(&format!("{rows} rows")), "{ds}: {text}");
        assert!(
            text.contains("0 without a schema event skipped"),
            "{ds}: {text}"
        );
    }
}

/// What `POST /v1/log/flush` acknowledged is in the warehouse after a kill -9; what was not yet
/// written may be lost, but never half-written: the partition reads whole.
#[test]
fn acknowledged_records_survive_kill_9() {
    let s = logging_everything();
    let day = epoch_day(FETCH_DAY) + 3_600_000;
    let (mut fetcher, port) = s.serve();
    fetch_users(port, 20, day);
    assert_eq!(flush(port)["written"], json!(20));
    fetch_users(port, 20, day);
    signal(&mut fetcher, "-KILL");

    let rows = s.export(LOG, FETCH_DAY);
    let fetches = count(&rows, "fetch");
    assert!(
        fetches == 20 || fetches == 40,
        "{fetches} fetch rows: the acknowledged 20, plus all or none of the rest"
    );
}

/// The logger's counters on the fetcher's `/metrics`; a fetcher without logging answers 404 to
/// a flush.
#[test]
fn fetch_log_counters_are_on_metrics() {
    let s = logging_everything();
    let (mut fetcher, port) = s.serve();
    fetch_users(port, 4, epoch_day(FETCH_DAY) + 3_600_000);
    flush(port);
    let (status, text) = http(port, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        text.contains("chronoflow_fetch_log_records_total{outcome=\"written\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("chronoflow_fetch_log_records_total{outcome=\"dropped\"} 0"),
        "{text}"
    );
    signal(&mut fetcher, "-TERM");

    let port = common::free_port();
    let mut unlogged = Fetcher(
        s.command(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--no-fetch-log",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap(),
    );
    common::wait_for_port(port);
    let (status, body) = http(port, "POST", "/v1/log/flush", "");
    assert_eq!(status, 404, "{body}");
    signal(&mut unlogged, "-TERM");
}

/// A warehouse that refuses writes does not lose the log: the failed write is counted, its
/// records stay pending, and the next write after the warehouse recovers commits them all.
#[test]
fn a_failed_log_write_is_retried_not_dropped() {
    let s = logging_everything();
    // A file where the log table's directory goes: every append fails until it is removed.
    let blocker = s.warehouse.join("default/quickstart_training_set_v2_log");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "not a directory").unwrap();
    let (mut fetcher, port) = s.serve();
    fetch_users(port, 5, epoch_day(FETCH_DAY) + 3_600_000);
    let failing = flush(port);
    assert_eq!(failing["written"], json!(0), "{failing}");
    assert_eq!(failing["pending"], json!(5), "{failing}");
    assert!(failing["failed_writes"].as_u64().unwrap() >= 1, "{failing}");

    std::fs::remove_file(&blocker).unwrap();
    let recovered = flush(port);
    assert_eq!(recovered["written"], json!(5), "{recovered}");
    assert_eq!(recovered["pending"], json!(0), "{recovered}");
    assert_eq!(recovered["dropped"], json!(0), "{recovered}");
    signal(&mut fetcher, "-TERM");
    let rows = s.export(LOG, FETCH_DAY);
    assert_eq!((count(&rows, "fetch"), count(&rows, "schema")), (5, 1));
}
