//! The `chronoflow` binary, run as a real process.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/chronon")
        .join(rel)
}

fn chronoflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chronoflow"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_passes_on_every_sample_repo() {
    for rel in ["samples/airbnb", "samples/zipline", "quickstart"] {
        let out = chronoflow(&["check", "--repo", fixture(rel).to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{rel}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        // Two of Chronon's own test Joins have no parts: a warning each.
        let counts = if rel == "samples/airbnb" {
            "0 errors, 2 warnings"
        } else {
            "0 errors, 0 warnings"
        };
        assert!(stdout(&out).contains(counts), "{}", stdout(&out));
    }
}

#[test]
fn check_reports_every_broken_file_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |rel: &str| {
        let src = fixture("quickstart/compiled").join(rel);
        let dst = dir.path().join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(src, dst).unwrap();
    };
    copy("teams.json");
    copy("production/group_bys/quickstart/purchases.v1");
    copy("production/joins/quickstart/training_set.v2");
    let gb = dir
        .path()
        .join("production/group_bys/quickstart/returns.v1");
    std::fs::write(&gb, r#"{"metaData": {"name": "quickstart.returns.v1", "online": "yes"}, "sources": [], "keyColumns": ["user_id"]}"#).unwrap();
    std::fs::write(
        dir.path().join("production/group_bys/quickstart/users.v1"),
        "{\"metaData\": {",
    )
    .unwrap();

    let out = chronoflow(&["check", "--repo", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("error[wrong-type]: production/group_bys/quickstart/returns.v1: $.metaData.online: wrong type (expected boolean (true/false or 1/0), found string \"yes\")"),
        "{text}"
    );
    assert!(
        text.contains(
            "error[invalid-value]: production/group_bys/quickstart/returns.v1: $.sources"
        ),
        "{text}"
    );
    assert!(text.contains("error[invalid-json]: production/group_bys/quickstart/users.v1: $: invalid JSON at line 1"), "{text}");
    assert!(text.contains("2 configs loaded; 3 errors"), "{text}");

    // The JSON report carries the same diagnostics, structured.
    let out = chronoflow(&[
        "check",
        "--repo",
        dir.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["errors"], 3);
    assert_eq!(
        report["diagnostics"][0]["file"],
        "production/group_bys/quickstart/returns.v1"
    );

    // plan still plans the configs that load, says what was left out, and exits 1 as check does.
    let out = chronoflow(&["plan", "--repo", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("2 configs were left out of the plan"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("quickstart_purchases_v1__upload"));
}

#[test]
fn a_directory_that_is_not_a_repo_exits_2_and_says_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let out = chronoflow(&["check", "--repo", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("holds no compiled Chronon configs"),
        "{}",
        stderr(&out)
    );
    let out = chronoflow(&["plan", "--repo", "/definitely/not/here"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/definitely/not/here"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_formats() {
    let repo = fixture("quickstart");
    let repo = repo.to_str().unwrap();
    let json = chronoflow(&["plan", "--repo", repo, "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plan["format_version"], 1);
    assert!(
        plan["dags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["dag_id"] == "chronon_join_quickstart")
    );

    let dot = stdout(&chronoflow(&["plan", "--repo", repo, "--format", "dot"]));
    assert!(dot.starts_with("digraph chronoflow {"));
    assert!(
        dot.contains("\"chronon_gb_batch_quickstart.wait_for__data_purchases__ds\" -> \"chronon_gb_batch_quickstart.quickstart_purchases_v1__upload\";"),
        "{dot}"
    );

    let mermaid = stdout(&chronoflow(&[
        "plan", "--repo", repo, "--format", "mermaid",
    ]));
    assert!(mermaid.starts_with("flowchart LR\n"));
    assert!(mermaid.contains("quickstart_returns_v1__streaming"));
}

#[test]
fn plan_of_one_dag_and_an_unknown_dag() {
    let repo = fixture("quickstart");
    let repo = repo.to_str().unwrap();
    let out = chronoflow(&[
        "plan",
        "--repo",
        repo,
        "--dag",
        "chronon_gb_streaming_quickstart",
        "--format",
        "json",
    ]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["dags"].as_array().unwrap().len(), 1);
    let jobs: Vec<&str> = plan["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["quickstart.returns.v1/streaming"]);

    let out = chronoflow(&["plan", "--repo", repo, "--dag", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown DAG \"nope\"; the plan has: chronon_gb_batch_quickstart"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn repo_defaults_to_the_current_directory_and_out_writes_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("plan.json");
    let out = Command::new(env!("CARGO_BIN_EXE_chronoflow"))
        .args([
            "plan",
            "--format",
            "json",
            "--out",
            out_file.to_str().unwrap(),
        ])
        .current_dir(fixture("quickstart"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_file).unwrap()).unwrap();
    assert_eq!(plan["layouts"][0]["prefix"], "compiled/");
}

#[test]
fn regression_a_closed_stdout_pipe_ends_output_without_a_panic() {
    for args in [["check", "--repo"], ["plan", "--repo"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chronoflow"))
            .args(args)
            .arg(fixture("samples/airbnb"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before the command writes, as `| head -0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{:?}: {}", args, stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

/// `kill -9` during an import: every partition a reader can see is complete, and rerunning the
/// import completes the table.
#[test]
fn an_import_killed_mid_write_leaves_only_complete_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("big.csv");
    let (days, rows_per_day) = (120, 2000);
    let mut text = String::from("ds,id,payload\n");
    for day in 0..days {
        let ds = chronoflow_config::PartitionDate::parse("2024-01-01")
            .unwrap()
            .add_days(day);
        for i in 0..rows_per_day {
            text.push_str(&format!("{ds},{i},payload-{day}-{i}\n"));
        }
    }
    std::fs::write(&csv, text).unwrap();
    let warehouse = dir.path().join("wh");
    let args = |w: &Path| {
        vec![
            "table".to_owned(),
            "import".to_owned(),
            "data.big".to_owned(),
            csv.display().to_string(),
            "--warehouse".to_owned(),
            w.display().to_string(),
        ]
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_chronoflow"))
        .args(args(&warehouse))
        .spawn()
        .unwrap();
    // Kill it once some partitions are committed but (very likely) not all.
    let table_dir = warehouse.join("data/big");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let committed = std::fs::read_dir(&table_dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().join("_manifest.json").exists())
                    .count()
            })
            .unwrap_or(0);
        if committed >= 3 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let check = |expect_all: bool| {
        let out = chronoflow(&[
            "table",
            "partitions",
            "data.big",
            "--warehouse",
            warehouse.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let listing = stdout(&out);
        let lines: Vec<&str> = listing.lines().collect();
        for line in &lines {
            assert!(
                line.contains(&format!("\t{rows_per_day} rows\t")),
                "incomplete partition visible: {line}"
            );
        }
        if expect_all {
            assert_eq!(lines.len(), days as usize);
        }
        lines.len()
    };
    let visible = check(false);
    eprintln!("visible after kill: {visible} of {days}");
    assert!(
        visible >= 1,
        "the import was killed before committing anything"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_chronoflow"))
        .args(args(&warehouse))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    check(true);
}

/// A listener on a non-loopback address would let anyone on the network pause and clear: without
/// a token it must not start, and the message says how to fix it.
#[test]
fn standalone_refuses_a_network_listener_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    let home = dir.path().join("home");
    let warehouse = dir.path().join("wh");
    let common = |listen: &str| {
        vec![
            "standalone".to_owned(),
            "--repo".into(),
            fixture("quickstart").display().to_string(),
            "--database-url".into(),
            db.clone(),
            "--home".into(),
            home.display().to_string(),
            "--warehouse".into(),
            warehouse.display().to_string(),
            "--kv".into(),
            dir.path().join("kv").display().to_string(),
            "--listen".into(),
            listen.into(),
        ]
    };
    let args = common("0.0.0.0:0");
    let out = chronoflow(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refusing to listen on 0.0.0.0")
            && stderr(&out).contains("tokens create")
            && stderr(&out).contains("--insecure-no-auth"),
        "{}",
        stderr(&out)
    );
    // With a token in the store, the same listener is allowed (it then needs the token).
    let out = chronoflow(&[
        "tokens",
        "create",
        "--name",
        "ops",
        "--team",
        "*",
        "--role",
        "admin",
        "--database-url",
        &db,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    assert!(token.starts_with("cft_"), "{token}");
    let out = chronoflow(&["tokens", "list", "--database-url", &db]);
    assert!(stdout(&out).contains("ops") && !stdout(&out).contains(&token[16..]));
    let id = token.split('_').nth(1).unwrap().to_owned();
    let out = chronoflow(&["tokens", "revoke", &id, "--database-url", &db]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = chronoflow(&["tokens", "revoke", &id, "--database-url", &db]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&id), "{}", stderr(&out));
}
