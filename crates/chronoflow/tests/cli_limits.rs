//! Command lines a user can get wrong: ranges of thousands of years, zero-sized steps, unknown
//! filters. Each is a clear error naming the flag before any work starts, and every error
//! prints each of its causes once.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart")
}

const CONF: &str = "compiled/production/group_bys/quickstart/purchases.v1";

fn chronoflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chronoflow"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `run` of `CONF` against a warehouse in `dir`, with `extra` flags.
fn run(dir: &Path, extra: &[&str]) -> Output {
    let repo = quickstart();
    let warehouse = dir.join("warehouse");
    let mut args = vec![
        "run",
        "--conf",
        CONF,
        "--repo",
        repo.to_str().unwrap(),
        "--warehouse",
        warehouse.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    chronoflow(&args)
}

#[test]
fn a_backfill_from_year_1_to_9999_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "--mode",
            "backfill",
            "--start-ds",
            "0001-01-01",
            "--end-ds",
            "9999-12-31",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: --start-ds 0001-01-01: the year is outside 1900..=2999"
    );
    assert!(
        !dir.path().join("warehouse").exists(),
        "nothing was written"
    );
    let out = run(dir.path(), &["--mode", "upload", "--ds", "9999-12-31"]);
    assert!(
        stderr(&out).contains("--ds 9999-12-31: the year is outside"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_range_of_more_than_ten_thousand_days_needs_allow_large_range() {
    let dir = tempfile::tempdir().unwrap();
    let range = ["--start-ds", "1990-01-01", "--end-ds", "2026-01-01"];
    let out = run(dir.path(), &[&["--mode", "backfill"], &range[..]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: 1990-01-01..=2026-01-01 is 13150 days, more than 10000: pass --allow-large-range if that is meant"
    );
    assert!(
        !dir.path().join("warehouse").exists(),
        "nothing was written"
    );
    // With the flag the command goes on: here to the upload's own error (no source data).
    let out = run(
        dir.path(),
        &[&["--mode", "upload", "--allow-large-range"], &range[..]].concat(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("for 1990-01-01: table data.purchases does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn step_days_and_parallelism_of_zero_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--step-days", "0"),
        ("--step-days", "-3"),
        ("--parallelism", "0"),
        ("--parallelism", "-1"),
    ] {
        let out = run(dir.path(), &["--ds", "2023-12-01", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("invalid value '{value}' for '{flag} <N>'"))
                || err.contains(&format!("unexpected argument '{value}'")),
            "{flag} {value}: {err}"
        );
    }
    assert!(!dir.path().join("warehouse").exists());
}

#[test]
fn runs_list_with_an_unknown_state_or_a_limit_of_zero_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let out = chronoflow(&[
        "runs",
        "list",
        "--database-url",
        &url,
        "--state-filter",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        "error: state: \"nope\" is not a run state (queued, running, success, failed)"
    );
    let out = chronoflow(&["runs", "list", "--database-url", &url, "--limit", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("limit: 0 is not a number of runs"));
}

/// The state store's errors included their cause in their message and returned it as their
/// `source()` too, so `error: {:#}` printed it twice (three times here, with sqlx's own).
#[test]
fn an_error_prints_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the SQLite file should be.
    let url = format!("sqlite://{}", dir.path().display());
    let out = chronoflow(&["dags", "list", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(
        err.matches("unable to open database file").count(),
        1,
        "{err}"
    );
    assert!(
        err.starts_with(&format!("error: state store {url}: ")),
        "{err}"
    );
}

/// A worker of 0 slots claimed nothing, ever: `standalone --until-idle` waited forever.
#[test]
fn zero_worker_slots_are_refused() {
    for command in ["worker", "standalone"] {
        let out = chronoflow(&[command, "--slots", "0"]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            stderr(&out).contains("invalid value '0' for '--slots <N>'"),
            "{command}: {}",
            stderr(&out)
        );
    }
}

/// Found by bench/probe: `--quality-ratio NaN` (or 0, or 2) started a server whose tables page
/// then failed on every request; the flag is now checked before anything starts.
#[test]
fn a_quality_ratio_outside_zero_to_one_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    let repo = quickstart();
    for ratio in ["NaN", "0", "2", "-0.5", "inf", "half"] {
        let out = chronoflow(&[
            "standalone",
            "--repo",
            repo.to_str().unwrap(),
            "--database-url",
            &db,
            "--until-idle",
            "--no-api",
            &format!("--quality-ratio={ratio}"),
        ]);
        assert_eq!(out.status.code(), Some(2), "{ratio}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--quality-ratio") && stderr(&out).contains("is not a ratio"),
            "{ratio}: {}",
            stderr(&out)
        );
    }
    assert!(
        !dir.path().join("state.db").exists(),
        "nothing started, so no state store was created"
    );
}
