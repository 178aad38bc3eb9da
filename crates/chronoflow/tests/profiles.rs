//! Resource profiles through real `standalone` processes (issue 14): with `[profiles]` in the
//! repo's `chronoflow.toml`, a backfill and an upload of team quickstart resolve to different
//! profiles, on a command executor (its argv and env placeholders, echoed into a file) and on
//! the in-process executor (the profile heads each try's log); a config's `machine:` tag
//! overrides the selectors; a re-planning whose tag names no profile is refused.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::copy_dir;
use common::ooc::with_state;
use common::quickstart::*;
use serde_json::Value;

const DAY: &str = "2023-11-29";
const JOIN_DAG: &str = "chronon_join_backfill";
const BATCH_DAG: &str = "chronon_gb_batch_quickstart";

/// Backfills large, the team's uploads small, its uploads to the KV store a third profile.
const PROFILES: &str = r#"
[profiles.modes]
backfill = "large"
[profiles.teams.quickstart]
upload = "small"
upload-to-kv = "kv"
[profiles.large]
cpu = 8
memory = "32g"
cluster = { workers = 10 }
[profiles.small]
cpu = 1
memory = "2g"
cluster = "local[1]"
[profiles.kv]
cpu = 2
[profiles.xl]
cpu = 32
memory = "128g"
"#;

/// The quickstart repo (training_set.v2 tagged `machine:xl`) with `toml` as its scheduler
/// config, and its four tables imported with a partition of `DAY` each.
fn setup(toml: &str) -> Setup {
    let mut s = Setup::new(None);
    let repo = s.dir.path().join("repo");
    copy_dir(&quickstart(), &repo);
    let v2 = repo.join(format!("{JOINS}/training_set.v2"));
    let mut join: Value = serde_json::from_str(&std::fs::read_to_string(&v2).unwrap()).unwrap();
    let custom =
        serde_json::json!({"check_consistency": false, "lag": 0, "join_tags": {"machine": "xl"}});
    join["metaData"]["customJson"] = Value::String(custom.to_string());
    std::fs::write(&v2, serde_json::to_vec_pretty(&join).unwrap()).unwrap();
    std::fs::write(repo.join("chronoflow.toml"), toml).unwrap();
    s.repo = repo;
    for t in ["purchases", "returns", "users", "checkouts"] {
        // Checkouts land on the 30th only: moved to DAY, so every sensor of DAY finds its partition.
        let text = std::fs::read_to_string(quickstart().join(format!("data/{t}.csv"))).unwrap();
        let text = text.replace("2023-11-30,", &format!("{DAY},"));
        let csv = s.dir.path().join(format!("{t}.csv"));
        std::fs::write(&csv, text).unwrap();
        s.import(&format!("data.{t}"), &csv);
    }
    s
}

/// Syncs the repo's DAGs, triggers the Join backfill for `DAY` and runs `standalone` until
/// nothing is left to run, its clock at the end of `DAY`: the GroupBy batch DAG (scheduled
/// daily) makes its run of `DAY` and no other.
fn run_until_idle(s: &Setup) {
    let repo = s.repo.display().to_string();
    for args in [
        vec!["dags", "sync", "--repo", &repo],
        vec!["dags", "pause", "--all"],
        vec!["dags", "unpause", JOIN_DAG, BATCH_DAG],
        vec![
            "dags",
            "trigger",
            JOIN_DAG,
            "--start-ds",
            DAY,
            "--end-ds",
            DAY,
        ],
    ] {
        let out = with_state(s, &args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let standalone_args = [
        "standalone",
        "--repo",
        &repo,
        "--until-idle",
        "--no-api",
        "--tick-ms",
        "100",
        "--replan-seconds",
        "3600",
    ];
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut child = with_state(s, &standalone_args)
        .env("PROFILES_OUT", s.dir.path().join("profiles.out"))
        .env(
            "CHRONOFLOW_CLOCK",
            format!("start=2023-11-30,wall_ms={now_ms},speed=1"),
        )
        .stderr(std::fs::File::create(s.dir.path().join("standalone.log")).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("standalone did not finish:\n{}", standalone_log(s));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{}", standalone_log(s));
}

fn standalone_log(s: &Setup) -> String {
    std::fs::read_to_string(s.dir.path().join("standalone.log")).unwrap_or_default()
}

/// Every try log under the setup's home, concatenated.
fn try_logs(s: &Setup) -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), out);
            } else if let Ok(text) = std::fs::read_to_string(entry.path()) {
                out.push_str(&text);
            }
        }
    }
    let mut out = String::new();
    walk(&s.dir.path().join("home"), &mut out);
    out
}

#[test]
fn a_backfill_and_an_upload_of_one_team_get_different_profiles_on_a_command_executor() {
    let script = r#"echo "$0 name=$1 cpu=$2 $3 cluster=$4 env=$CHRONOFLOW_PROFILE/$CHRONOFLOW_PROFILE_CPU/$CHRONOFLOW_PROFILE_MEMORY" >> "$PROFILES_OUT""#;
    let toml = format!(
        "default_executor = \"echo\"\n[executors.echo]\nkind = \"command\"\nargv = [\"sh\", \"-c\", {script:?}, \"{{task_id}}\", \"{{profile.name}}\", \"{{profile.cpu}}\", \"--executor-memory={{profile.memory}}\", \"{{profile.cluster}}\"]\n{PROFILES}"
    );
    let s = setup(&toml);
    run_until_idle(&s);
    let out = std::fs::read_to_string(s.dir.path().join("profiles.out")).unwrap();
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "quickstart_purchases_v1__upload name=small cpu=1 --executor-memory=2g cluster=local[1] env=small/1/2g",
            "quickstart_purchases_v1__upload_to_kv name=kv cpu=2 --executor-memory= cluster= env=kv/2/",
            "quickstart_returns_v1__upload name=small cpu=1 --executor-memory=2g cluster=local[1] env=small/1/2g",
            "quickstart_returns_v1__upload_to_kv name=kv cpu=2 --executor-memory= cluster= env=kv/2/",
            "quickstart_training_set_v1__backfill name=large cpu=8 --executor-memory=32g cluster={\"workers\":10} env=large/8/32g",
            // The config's tag `machine:xl` wins over the mode's `large`.
            "quickstart_training_set_v2__backfill name=xl cpu=32 --executor-memory=128g cluster= env=xl/32/128g",
            "quickstart_users_v1__upload name=small cpu=1 --executor-memory=2g cluster=local[1] env=small/1/2g",
            "quickstart_users_v1__upload_to_kv name=kv cpu=2 --executor-memory= cluster= env=kv/2/",
        ]
    );
    let logs = try_logs(&s);
    assert!(
        logs.contains("profile xl (selected by tag machine:xl of config quickstart.training_set.v2): cpu=32 memory=128g\n"),
        "{logs}"
    );
}

#[test]
fn a_backfill_and_an_upload_of_one_team_get_different_profiles_in_process() {
    let s = setup(&format!("default_executor = \"in_process\"\n{PROFILES}"));
    run_until_idle(&s);
    let logs = try_logs(&s);
    for line in [
        "profile large (selected by profiles.modes.backfill): cpu=8 memory=32g cluster={\"workers\":10}\n",
        "profile xl (selected by tag machine:xl of config quickstart.training_set.v2): cpu=32 memory=128g\n",
        "profile small (selected by profiles.teams.quickstart.upload): cpu=1 memory=2g cluster=local[1]\n",
        "profile kv (selected by profiles.teams.quickstart.upload-to-kv): cpu=2\n",
    ] {
        assert!(logs.contains(line), "{line} not in the try logs:\n{logs}");
    }
    // The jobs really ran in process: the Join's output exists for the day.
    assert!(
        !s.export("default.quickstart_training_set_v1", DAY)
            .is_empty(),
        "{}",
        standalone_log(&s)
    );
}

#[test]
fn a_tag_naming_no_profile_keeps_the_last_good_dags() {
    let s = setup(&format!("default_executor = \"in_process\"\n{PROFILES}"));
    let repo = s.repo.display().to_string();
    let sync = || {
        with_state(&s, &["dags", "sync", "--repo", &repo])
            .output()
            .unwrap()
    };
    assert!(sync().status.success());
    let v1 = s.repo.join(format!("{JOINS}/training_set.v1"));
    let mut join: Value = serde_json::from_str(&std::fs::read_to_string(&v1).unwrap()).unwrap();
    join["metaData"]["customJson"] =
        Value::String(serde_json::json!({"join_tags": {"machine": "huge"}}).to_string());
    std::fs::write(&v1, serde_json::to_vec_pretty(&join).unwrap()).unwrap();
    let out = sync();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "tag machine:huge of config quickstart.training_set.v1 names profile \"huge\", which is not defined (defined: kv, large, small, xl)"
        ),
        "{err}"
    );
}

/// `plan --format json` shows each job's resolved profile when the repo's `chronoflow.toml`
/// has `[profiles]` (and nothing new without it: the golden plans are unchanged).
#[test]
fn the_json_plan_shows_each_jobs_profile() {
    let s = setup(&format!("default_executor = \"in_process\"\n{PROFILES}"));
    let repo = s.repo.display().to_string();
    let out = s.run(&["plan", "--repo", &repo, "--format", "json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = |id: &str| {
        plan["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        job("quickstart.training_set.v1/backfill")["profile"],
        serde_json::json!({"name": "large", "selected_by": "profiles.modes.backfill",
                           "cpu": "8", "memory": "32g", "cluster": "{\"workers\":10}"})
    );
    let v2 = job("quickstart.training_set.v2/backfill");
    assert_eq!(v2["tags"], serde_json::json!(["machine:xl"]));
    assert_eq!(v2["profile"]["name"], "xl");
    assert_eq!(
        job("quickstart.purchases.v1/upload")["profile"]["name"],
        "small"
    );
    assert!(
        job("quickstart.returns.v1/streaming")
            .get("profile")
            .is_none()
    );

    let plain = s.run(&[
        "plan",
        "--repo",
        quickstart().to_str().unwrap(),
        "--format",
        "json",
    ]);
    let text = String::from_utf8(plain.stdout).unwrap();
    assert!(!text.contains("\"profile\"") && !text.contains("\"tags\""));
}
