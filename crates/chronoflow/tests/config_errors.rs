//! `check` and `plan` on a repo whose configs decode cleanly but are wrong, run as real processes:
//! both name the problem and exit 1.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart/compiled")
}

fn chronoflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chronoflow"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A copy of the quickstart's compiled configs where purchases.v1 lists its first aggregation
/// twice: two features named `purchase_price_sum_3d`, …
fn repo_with_a_duplicated_aggregation() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "teams.json",
        "production/group_bys/quickstart/purchases.v1",
        "production/group_bys/quickstart/returns.v1",
        "production/group_bys/quickstart/users.v1",
        "production/joins/quickstart/training_set.v1",
    ] {
        let dst = dir.path().join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(quickstart().join(rel), dst).unwrap();
    }
    let path = dir
        .path()
        .join("production/group_bys/quickstart/purchases.v1");
    let mut gb: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let aggs = gb["aggregations"].as_array_mut().unwrap();
    aggs.push(aggs[0].clone());
    std::fs::write(&path, serde_json::to_vec_pretty(&gb).unwrap()).unwrap();
    dir
}

const DIAGNOSTIC: &str = "error[duplicate-column]: production/group_bys/quickstart/purchases.v1: $.aggregations[4]: output columns \"purchase_price_sum_3d\"";

#[test]
fn plan_exits_1_when_configs_have_errors_and_prints_them_on_stderr() {
    let dir = repo_with_a_duplicated_aggregation();
    let repo = dir.path().to_str().unwrap();

    let check = chronoflow(&["check", "--repo", repo]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(text.contains(DIAGNOSTIC), "{text}");

    let plan = chronoflow(&["plan", "--repo", repo]);
    let stderr = String::from_utf8_lossy(&plan.stderr);
    assert_eq!(plan.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(DIAGNOSTIC), "{stderr}");
    assert!(
        stderr.contains("1 configs were left out of the plan"),
        "{stderr}"
    );
    // The configs without errors are still planned (stdout stays the plan).
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert!(stdout.contains("quickstart_returns_v1__upload"), "{stdout}");
    assert!(!stdout.contains("quickstart_purchases_v1"), "{stdout}");

    // JSON output too: the plan on stdout, exit 1.
    let plan = chronoflow(&["plan", "--repo", repo, "--format", "json"]);
    assert_eq!(plan.status.code(), Some(1));
    let parsed: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(parsed["diagnostics"][0]["code"], json!("duplicate-column"));
}

#[test]
fn plan_of_a_clean_repo_exits_0_and_prints_nothing_on_stderr() {
    let plan = chronoflow(&["plan", "--repo", quickstart().to_str().unwrap()]);
    assert_eq!(plan.status.code(), Some(0));
    assert!(
        plan.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
}
