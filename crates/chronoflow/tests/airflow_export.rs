//! `chronoflow export airflow`: grouping, bad input, the golden default output (fast, no
//! Airflow), and with a real Apache Airflow 3.3 (`AIRFLOW_PYTHON`, installed by `.ci/run`):
//! every exported DAG of the samples and the quickstart loads in a DagBag and equals the plan,
//! and `airflow dags test` runs the quickstart's Join backfill like chronoflow's own scheduler.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::copy_dir;
use common::quickstart::{Fetcher, Setup, quickstart};
use serde_json::{Value, json};

fn chronoflow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chronoflow"));
    c.env_remove("RUST_LOG");
    c
}

fn export(repo: &Path, out: &Path, extra: &[&str]) -> Output {
    chronoflow()
        .args(["export", "airflow", "--repo"])
        .arg(repo)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn export_ok(repo: &Path, out: &Path, extra: &[&str]) {
    let o = export(repo, out, extra);
    assert!(
        o.status.success(),
        "export of {} failed: {}",
        repo.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon")
}

/// A small Airbnb-layout repo: StagingQueries `t.a.v1` (reads `ns.src`) -> `t.b.v1` ->
/// `t.c.v1`, each with the given `customJson` tags.
fn staging_repo(dir: &Path, tags: [Value; 3]) -> PathBuf {
    let repo = dir.join("repo");
    let sq = repo.join("production/staging_queries/t");
    std::fs::create_dir_all(&sq).unwrap();
    std::fs::write(
        repo.join("teams.json"),
        r#"{"default": {"namespace": "ns"}, "t": {"namespace": "ns", "airflow_queue": "t_queue"}}"#,
    )
    .unwrap();
    for ((name, input), tags) in [("a", "ns.src"), ("b", "ns.t_a_v1"), ("c", "ns.t_b_v1")]
        .into_iter()
        .zip(tags)
    {
        let conf = json!({
            "metaData": {
                "name": format!("t.{name}.v1"),
                "team": "t",
                "outputNamespace": "ns",
                "dependencies": [format!("{input}/ds={{{{ ds }}}}")],
                "customJson": json!({"tags": tags}).to_string(),
            },
            "query": format!("SELECT id, ds FROM {input} WHERE ds BETWEEN '{{{{ start_date }}}}' AND '{{{{ end_date }}}}'"),
            "startPartition": "2023-01-01",
        });
        std::fs::write(
            sq.join(format!("{name}.v1")),
            serde_json::to_string_pretty(&conf).unwrap(),
        )
        .unwrap();
    }
    repo
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Everything under `dir`, names and bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.insert(
            path.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(&path).unwrap_or_default(),
        );
    }
    out
}

#[test]
fn grouping_two_jobs_merges_them_into_one_task_in_dependency_order() {
    let dir = tempfile::tempdir().unwrap();
    let repo = staging_repo(
        dir.path(),
        [json!({"airflow": "g"}), json!({"airflow": "g"}), json!({})],
    );
    let out = dir.path().join("dags");
    export_ok(&repo, &out, &[]);
    let text = std::fs::read_to_string(out.join("chronon_staging_query_t.py")).unwrap();
    assert!(!text.contains("tasks[\"t_a_v1__backfill\"] ="), "{text}");
    assert!(!text.contains("tasks[\"t_b_v1__backfill\"] ="), "{text}");
    let group = text
        .split("tasks[\"group__g\"] = BashOperator(")
        .nth(1)
        .expect("one task for group g");
    let command = group.lines().find(|l| l.contains("bash_command=")).unwrap();
    let (a, b) = (
        command.find("production/staging_queries/t/a.v1").unwrap(),
        command.find("production/staging_queries/t/b.v1").unwrap(),
    );
    assert!(a < b, "a runs before b, which reads a's output: {command}");
    assert!(command.contains(" && "), "{command}");
    for edge in [
        "tasks[\"wait_for__ns_src__ds\"] >> tasks[\"group__g\"]",
        "tasks[\"group__g\"] >> tasks[\"t_c_v1__backfill\"]",
    ] {
        assert!(text.contains(edge), "missing {edge}:\n{text}");
    }
    // The team's teams.json airflow_queue is every job task's queue (no profile sets one).
    assert!(text.contains("queue=\"t_queue\""), "{text}");
}

#[test]
fn a_grouping_cycle_is_rejected_naming_the_cycle_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let repo = staging_repo(
        dir.path(),
        [json!({"airflow": "g"}), json!({}), json!({"airflow": "g"})],
    );
    let out = dir.path().join("dags");
    let o = export(&repo, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "DAG chronon_staging_query_t: grouping creates a cycle: group g -> t_b_v1__backfill -> group g"
        ),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_the_output_directory_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let good = staging_repo(&dir.path().join("good"), [json!({}), json!({}), json!({})]);
    let out = dir.path().join("dags");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("previous.py"), "# the previous export\n").unwrap();
    let before = snapshot(&out);

    let broken = dir.path().join("broken.j2");
    std::fs::write(
        &broken,
        "# {{ dag.dag_id }}\n{% for t in tasks %}\n{{ t.task_id }\n",
    )
    .unwrap();
    let undefined = dir.path().join("undefined.j2");
    std::fs::write(
        &undefined,
        "# {{ dag.dag_id }}\n\n{{ dag.no_such_field }}\n",
    )
    .unwrap();
    let params = dir.path().join("params.toml");
    std::fs::write(&params, "[__default__]\ncommand.flavour = \"zipline\"\n").unwrap();
    let two_tags = staging_repo(
        &dir.path().join("two"),
        [json!(["airflow:x", "airflow:y"]), json!({}), json!({})],
    );
    let bad_tag = staging_repo(
        &dir.path().join("bad"),
        [json!({}), json!({"airflow": "no spaces"}), json!({})],
    );
    let (broken, undefined, params) = (
        broken.to_str().unwrap(),
        undefined.to_str().unwrap(),
        params.to_str().unwrap(),
    );
    let cases: Vec<(&Path, Vec<&str>, String)> =
        vec![
        (&good, vec!["--template", broken], format!("template {broken}, line 3: syntax error")),
        (
            &good,
            vec!["--template", undefined],
            format!("template {undefined}, line 3: undefined value"),
        ),
        (
            &good,
            vec!["--params", params],
            format!("params file {params} [__default__]: unknown param \"command.flavour\""),
        ),
        (
            &good,
            vec!["--param", "sensor.poke=5"],
            "--param: unknown param \"sensor.poke\"".to_owned(),
        ),
        (
            &good,
            vec!["--param", "command.enable_debug=maybe"],
            "param \"command.enable_debug\" = maybe: expected boolean".to_owned(),
        ),
        (
            &two_tags,
            vec![],
            "config t.a.v1 has two grouping tags, \"airflow:x\" and \"airflow:y\"".to_owned(),
        ),
        (
            &bad_tag,
            vec![],
            "config t.b.v1: bad grouping tag \"airflow:no spaces\": a group name may contain only"
                .to_owned(),
        ),
    ];
    for (repo, args, expected) in cases {
        let o = export(repo, &out, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&expected),
            "{args:?}: expected {expected:?} in\n{}",
            stderr(&o)
        );
        assert_eq!(
            snapshot(&out),
            before,
            "{args:?} changed the output directory"
        );
    }
    // No staging directory is left beside the output either.
    let beside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");

    // A good export replaces the directory as a whole.
    export_ok(&good, &out, &[]);
    let after = snapshot(&out);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        vec!["chronon_staging_query_t.py"]
    );
}

/// The built-in template's output for a small repo, byte for byte (`CHRONOFLOW_BLESS=1`
/// rewrites it), and the same again on a second export.
#[test]
fn default_template_output_is_golden_and_regenerates_byte_identically() {
    let dir = tempfile::tempdir().unwrap();
    let repo = staging_repo(
        dir.path(),
        [json!({"airflow": "g"}), json!({"airflow": "g"}), json!({})],
    );
    let args = [
        "--param",
        "command.repo=/srv/chronon",
        "--param",
        "alert.webhook=https://alerts.example/hook",
    ];
    let (first, second) = (dir.path().join("one"), dir.path().join("two"));
    export_ok(&repo, &first, &args);
    export_ok(&repo, &second, &args);
    assert_eq!(snapshot(&first), snapshot(&second));
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/airflow");
    for (name, bytes) in snapshot(&first) {
        let path = golden.join(&name);
        if std::env::var_os("CHRONOFLOW_BLESS").is_some() {
            std::fs::create_dir_all(&golden).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let expected = std::fs::read(&path).unwrap_or_else(|_| {
            panic!("{} is missing: run with CHRONOFLOW_BLESS=1", path.display())
        });
        assert!(
            expected == bytes,
            "{name} differs from {} (rerun with CHRONOFLOW_BLESS=1 to accept):\n{}",
            path.display(),
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// A cross-DAG wait on a job that grouping merged into a group waits on the group's task.
#[test]
fn a_cross_dag_wait_on_a_grouped_job_waits_on_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("airbnb");
    copy_dir(&fixtures().join("samples/airbnb"), &repo);
    let conf = repo.join("production/staging_queries/sample_team/sample_staging_query.v1");
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(&conf).unwrap()).unwrap();
    value["metaData"]["customJson"] = json!(json!({"tags": {"airflow": "sq"}}).to_string());
    std::fs::write(&conf, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    let out = dir.path().join("dags");
    export_ok(&repo, &out, &[]);
    let staging =
        std::fs::read_to_string(out.join("chronon_staging_query_sample_team.py")).unwrap();
    assert!(
        staging.contains("tasks[\"group__sq\"] = BashOperator("),
        "{staging}"
    );
    let join = std::fs::read_to_string(out.join("chronon_join_sample_team.py")).unwrap();
    let wait = join
        .split("tasks[\"wait_for__sample_team_sample_staging_query_v1__backfill\"] = UpstreamWait(")
        .nth(1)
        .expect("the Join DAG waits on the StagingQuery");
    let wait = &wait[..wait.find("    )").unwrap()];
    assert!(
        wait.contains("external_dag_id=\"chronon_staging_query_sample_team\"")
            && wait.contains("external_task_id=\"group__sq\""),
        "{wait}"
    );
}

/// `table partitions --require`, what exported sensors call: 0 when every partition of the
/// range exists, 1 when some are missing (listed; a table that does not exist has none), 2 when
/// the range is not one.
#[test]
fn table_partitions_require_exits_0_present_1_missing_2_bad_range() {
    let setup = Setup::new(None);
    setup.import("data.users", &quickstart().join("data/users.csv"));
    let require = |table: &str, range: &str| {
        let o = setup
            .command(&["table", "partitions", table, "--require", range])
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr(&o),
        )
    };
    assert_eq!(require("data.users", "2023-11-29").0, Some(0));
    let (code, out, _) = require("data.users", "2023-11-28..2023-11-30");
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        "data.users: 2 partition(s) missing: 2023-11-28, 2023-11-30\n"
    );
    let (code, out, _) = require("data.nope", "2023-11-29");
    assert_eq!(
        (code, out.as_str()),
        (Some(1), "data.nope: 1 partition(s) missing: 2023-11-29\n")
    );
    let (code, _, err) = require("data.users", "2023-11-30..2023-11-29");
    assert_eq!(code, Some(2));
    assert!(err.contains("the range ends before it starts"), "{err}");
    let (code, _, err) = require("data.users", "yesterday");
    assert_eq!(code, Some(2));
    assert!(err.contains("\"yesterday\" is not a date"), "{err}");
}

/// The other flavors run Zipline's `zipline run` / Chronon's `run.py` with the orchestration
/// design's flags; streaming jobs get the Flink parallelism, manual DAGs the params' range.
#[test]
fn zipline_and_run_py_flavors_pass_the_orchestration_designs_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("zipline");
    export_ok(
        &quickstart(),
        &out,
        &[
            "--param",
            "command.flavor=zipline",
            "--param",
            "command.artifact_prefix=gs://artifacts/zipline",
            "--param",
            "command.version=1.28.0",
            "--param",
            "command.enable_debug=true",
            "--param",
            "command.flink_parallelism=4",
        ],
    );
    let batch = std::fs::read_to_string(out.join("chronon_gb_batch_quickstart.py")).unwrap();
    assert!(
        batch.contains(
            "bash_command=\"zipline run --mode upload --conf compiled/production/group_bys/quickstart/purchases.v1 --ds {{ ds }} --artifact-prefix gs://artifacts/zipline --version 1.28.0 --enable-debug\""
        ),
        "{batch}"
    );
    let streaming =
        std::fs::read_to_string(out.join("chronon_gb_streaming_quickstart.py")).unwrap();
    assert!(
        streaming.contains(
            "bash_command=\"zipline run --mode streaming --conf compiled/production/group_bys/quickstart/returns.v1 --artifact-prefix gs://artifacts/zipline --version 1.28.0 --enable-debug --parallelism 4\""
        ),
        "{streaming}"
    );
    let out = dir.path().join("run_py");
    export_ok(&quickstart(), &out, &["--param", "command.flavor=run_py"]);
    let backfill = std::fs::read_to_string(out.join("chronon_join_backfill.py")).unwrap();
    assert!(
        backfill.contains(
            "bash_command=\"run.py --mode backfill --conf compiled/production/joins/quickstart/training_set.v1 --start-ds {{ params.start_ds }} --end-ds {{ params.end_ds }}\""
        ),
        "{backfill}"
    );
}

// ---------------------------------------------------------------------------------------------
// With Apache Airflow.

/// The Python of a virtualenv with Apache Airflow 3.3 (`AIRFLOW_PYTHON`, set by `.ci/run`; else
/// the one `.ci/run` caches). Under `CI=true` a missing Airflow fails the test.
fn airflow_python() -> Option<PathBuf> {
    let cached =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci-cache/airflow-3.3.2/bin/python");
    let python = std::env::var_os("AIRFLOW_PYTHON")
        .map(PathBuf::from)
        .or_else(|| cached.exists().then_some(cached));
    if python.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "AIRFLOW_PYTHON is not set: .ci/run installs Apache Airflow and sets it"
        );
        eprintln!(
            "skipped: no Apache Airflow (set AIRFLOW_PYTHON to a venv's python with apache-airflow==3.3.2)"
        );
    }
    python
}

fn airflow_env(c: &mut Command, home: &Path, dags: &Path) {
    c.env("AIRFLOW_HOME", home)
        .env("AIRFLOW__CORE__DAGS_FOLDER", dags)
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
        .env_remove("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN");
}

fn plan_json(repo: &Path) -> Value {
    let o = chronoflow()
        .args(["plan", "--format", "json", "--repo"])
        .arg(repo)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Checks Airflow's view of the exported DAGs of `folder` against the plan: same DAG ids,
/// schedules, catch-up, limits, params, tasks, dependencies, retries and sensor settings.
fn assert_matches_plan(bag: &Value, folder: &str, plan: &Value) {
    let dags: BTreeSet<String> = bag["dags"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("{folder}/")).map(str::to_owned))
        .collect();
    let planned: BTreeSet<String> = plan["dags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dag_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dags, planned, "{folder}: DAG ids");
    for dag in plan["dags"].as_array().unwrap() {
        let id = dag["dag_id"].as_str().unwrap();
        let seen = &bag["dags"][format!("{folder}/{id}")];
        let context = format!("{folder}/{id}");
        assert_eq!(seen["schedule"], dag["schedule"], "{context}: schedule");
        assert_eq!(seen["catchup"], dag["catchup"], "{context}: catchup");
        assert_eq!(seen["max_active_runs"], dag["max_active_runs"], "{context}");
        assert_eq!(seen["max_active_tasks"], dag["concurrency"], "{context}");
        let params = dag.get("params").cloned().unwrap_or(json!([]));
        let mut params: Vec<&str> = params
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        params.sort();
        assert_eq!(seen["params"], json!(params), "{context}: params");
        let tasks = dag["tasks"].as_array().unwrap();
        assert_eq!(
            seen["tasks"].as_object().unwrap().len(),
            tasks.len(),
            "{context}: task count"
        );
        for t in tasks {
            let tid = t["task_id"].as_str().unwrap();
            let a = &seen["tasks"][tid];
            assert!(a.is_object(), "{context}: task {tid} missing");
            assert_eq!(a["upstream"], t["upstream"], "{context}.{tid}: upstream");
            assert_eq!(a["retries"], t["retries"], "{context}.{tid}: retries");
            assert_eq!(
                a["retry_delay_seconds"], t["retry_delay_seconds"],
                "{context}.{tid}"
            );
            match t["type"].as_str().unwrap() {
                "partition_sensor" | "upstream_wait" => {
                    assert_eq!(a["poke_interval_seconds"], t["poke_interval_seconds"]);
                    assert_eq!(a["timeout_seconds"], t["timeout_seconds"]);
                    assert_eq!(a["mode"], "reschedule", "{context}.{tid}");
                    if t["type"] == "upstream_wait" {
                        assert_eq!(a["external_dag_id"], t["dag_id"], "{context}.{tid}");
                        assert_eq!(a["external_task_id"], t["upstream_task_id"]);
                    }
                }
                "job" if t["mode"] == "streaming" => {
                    assert_eq!(a["operator"], "PythonOperator", "{context}.{tid}")
                }
                _ => assert_eq!(a["operator"], "BashOperator", "{context}.{tid}"),
            }
        }
    }
}

fn run_dagbag(python: &Path, home: &Path, folders: &[PathBuf]) -> Value {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../chronoflow-airflow/tests/airflow/dagbag.py");
    let result = home.join("dagbag.json");
    let mut c = Command::new(python);
    c.arg(&script).arg(&result).args(folders);
    airflow_env(&mut c, home, &folders[0]);
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "dagbag.py failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap()
}

/// One DagBag load for everything: the Airbnb and Zipline samples and the quickstart (each DAG
/// equal to the plan), a grouped repo, a custom template, and resource profiles.
#[test]
fn exported_dags_load_in_airflow_with_no_import_errors_and_equal_the_plan() {
    let Some(python) = airflow_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("airflow-home");
    std::fs::create_dir_all(&home).unwrap();
    let repos = [
        ("airbnb", fixtures().join("samples/airbnb")),
        ("zipline", fixtures().join("samples/zipline")),
        ("quickstart", quickstart()),
    ];
    let mut folders = Vec::new();
    for (name, repo) in &repos {
        let out = dir.path().join(name);
        export_ok(repo, &out, &[]);
        folders.push(out);
    }
    // Grouping: t.a.v1 and t.b.v1 in one task.
    let grouped = staging_repo(
        &dir.path().join("g"),
        [json!({"airflow": "g"}), json!({"airflow": "g"}), json!({})],
    );
    folders.push(dir.path().join("grouped"));
    export_ok(&grouped, &folders[3], &[]);
    // A user template: a DAG-level tag, and job tasks on another operator.
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../chronoflow-airflow/templates/dag.py.j2"),
    )
    .unwrap()
    .replace("tags={{ dag.tags | py }},", "tags={{ dag.tags | py }} + [\"custom-template\"],")
    .replace(
        "from airflow.sdk import",
        "class TeamBashOperator(BashOperator):\n    \"\"\"The team's own operator.\"\"\"\n\n\nfrom airflow.sdk import",
    )
    .replace("] = BashOperator(", "] = TeamBashOperator(");
    let template_path = dir.path().join("custom.py.j2");
    std::fs::write(&template_path, template).unwrap();
    folders.push(dir.path().join("custom"));
    export_ok(
        &quickstart(),
        &folders[4],
        &["--template", template_path.to_str().unwrap()],
    );
    // Profiles: backfills and uploads of the same team on different machines.
    let config = dir.path().join("chronoflow.toml");
    std::fs::write(
        &config,
        "[profiles.modes]\nbackfill = \"large\"\nupload = \"small\"\n\
         [profiles.large]\ncpu = 8\nmemory = \"32g\"\npool = \"backfills\"\nqueue = \"big\"\n\
         [profiles.small]\ncpu = 1\nmemory = \"2g\"\n",
    )
    .unwrap();
    folders.push(dir.path().join("profiles"));
    export_ok(
        &quickstart(),
        &folders[5],
        &["--config", config.to_str().unwrap()],
    );

    let bag = run_dagbag(&python, &home, &folders);
    assert_eq!(bag["import_errors"], json!({}), "import errors");
    for (name, repo) in &repos {
        assert_matches_plan(&bag, name, &plan_json(repo));
    }

    let g = &bag["dags"]["grouped/chronon_staging_query_t"]["tasks"];
    assert_eq!(
        g.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["group__g", "t_c_v1__backfill", "wait_for__ns_src__ds"]
    );
    assert_eq!(g["group__g"]["upstream"], json!(["wait_for__ns_src__ds"]));
    assert_eq!(g["t_c_v1__backfill"]["upstream"], json!(["group__g"]));

    let custom = &bag["dags"]["custom/chronon_join_quickstart"];
    assert!(
        custom["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("custom-template")),
        "{custom}"
    );
    assert_eq!(
        custom["tasks"]["quickstart_training_set_v1__backfill"]["operator"],
        "TeamBashOperator"
    );
    assert_eq!(
        custom["tasks"]["wait_for__data_users__ds"]["operator"],
        "PythonSensor"
    );

    let batch = &bag["dags"]["profiles/chronon_gb_batch_quickstart"]["tasks"];
    let upload = &batch["quickstart_purchases_v1__upload"];
    assert_eq!(upload["queue"], "default", "{upload}");
    assert_eq!(
        upload["executor_config"]["chronoflow_profile"]["name"],
        "small"
    );
    assert_eq!(
        upload["executor_config"]["chronoflow_profile"]["memory"],
        "2g"
    );
    let backfill = &bag["dags"]["profiles/chronon_join_backfill"]["tasks"]["quickstart_training_set_v1__backfill"];
    assert_eq!(backfill["pool"], "backfills", "{backfill}");
    assert_eq!(backfill["queue"], "big");
    assert_eq!(
        backfill["executor_config"]["chronoflow_profile"]["cpu"],
        "8"
    );
}

/// A one-request HTTP receiver: the port, and the body it got.
fn webhook_receiver() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    tx.send(body.to_owned()).unwrap();
                    return;
                }
            }
            if n == 0 {
                return;
            }
        }
    });
    (port, rx)
}

/// Rows of a table partition, sorted, for comparing two warehouses.
fn rows(setup: &Setup, table: &str, ds: &str) -> Vec<String> {
    let mut rows: Vec<String> = setup
        .export(table, ds)
        .into_iter()
        .map(|r| Value::Object(r).to_string())
        .collect();
    rows.sort();
    rows
}

const TRAINING_DAY: &str = "2023-11-30";
const TRAINING_SETS: [&str; 2] = [
    "default.quickstart_training_set_v1",
    "default.quickstart_training_set_v2",
];

/// The quickstart's tables, with the users snapshot also landed for the training day (both
/// Joins' sensors wait for `data.users` of the run's day).
fn imported(setup: &Setup) {
    for t in ["purchases", "returns", "users", "checkouts"] {
        setup.import(
            &format!("data.{t}"),
            &quickstart().join(format!("data/{t}.csv")),
        );
    }
    let users = std::fs::read_to_string(quickstart().join("data/users.csv")).unwrap();
    let moved: String = users
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l}\n")
            } else {
                format!("{TRAINING_DAY}{}\n", &l[10..])
            }
        })
        .collect();
    let path = setup.dir.path().join("users_next_day.csv");
    std::fs::write(&path, moved).unwrap();
    setup.import("data.users", &path);
}

/// `airflow dags test` runs the exported `chronon_join_backfill` (sensors calling `chronoflow
/// table partitions --require`, job tasks running `chronoflow run`), and its training sets
/// equal those `chronoflow standalone` makes from the same data.
#[test]
fn airflow_dags_test_runs_the_join_backfill_and_equals_chronoflows_scheduler() {
    let Some(python) = airflow_python() else {
        return;
    };
    let airflow = python.with_file_name("airflow");
    let via_airflow = Setup::new(None);
    imported(&via_airflow);
    let dags = via_airflow.dir.path().join("dags");
    let home = via_airflow.dir.path().join("airflow-home");
    export_ok(
        &quickstart(),
        &dags,
        &[
            "--param",
            &format!("command.chronoflow={}", env!("CARGO_BIN_EXE_chronoflow")),
            "--param",
            &format!("command.warehouse={}", via_airflow.warehouse.display()),
        ],
    );
    for args in [
        vec!["db", "migrate"],
        vec![
            "dags",
            "test",
            "chronon_join_backfill",
            TRAINING_DAY,
            "-c",
            &format!(r#"{{"start_ds": "{TRAINING_DAY}", "end_ds": "{TRAINING_DAY}"}}"#),
        ],
    ] {
        let mut c = Command::new(&airflow);
        c.args(&args);
        airflow_env(&mut c, &home, &dags);
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && !out.contains("state=failed"),
            "airflow {args:?}:\n{out}\n{}",
            stderr(&o)
        );
    }

    let via_scheduler = Setup::new(None);
    imported(&via_scheduler);
    let state = format!(
        "sqlite://{}",
        via_scheduler.dir.path().join("state.db").display()
    );
    let home = via_scheduler.dir.path().join("home");
    let repo = quickstart();
    let repo = repo.to_str().unwrap();
    let with_state = |c: &mut Command| {
        c.env("CHRONOFLOW_DATABASE_URL", &state)
            .env("CHRONOFLOW_HOME", &home);
    };
    for args in [
        vec!["dags", "sync", "--repo", repo],
        vec!["dags", "pause", "--all"],
        vec!["dags", "unpause", "chronon_join_backfill"],
        vec![
            "dags",
            "trigger",
            "chronon_join_backfill",
            "--start-ds",
            TRAINING_DAY,
            "--end-ds",
            TRAINING_DAY,
        ],
    ] {
        let mut c = via_scheduler.command(&args);
        with_state(&mut c);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let port = common::free_port();
    let mut c = via_scheduler.command(&[
        "standalone",
        "--repo",
        repo,
        "--tick-ms",
        "100",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    with_state(&mut c);
    let standalone = Fetcher(c.stderr(Stdio::null()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(300);
    while !TRAINING_SETS.iter().all(|t| {
        via_scheduler
            .command(&["table", "partitions", t, "--require", TRAINING_DAY])
            .output()
            .unwrap()
            .status
            .success()
    }) {
        assert!(
            Instant::now() < deadline,
            "the scheduler never wrote the training sets"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(standalone);

    assert_failure_posts_chronoflows_alert(&airflow, &via_airflow, &home_of(&via_airflow));

    for table in TRAINING_SETS {
        let (a, s) = (
            rows(&via_airflow, table, TRAINING_DAY),
            rows(&via_scheduler, table, TRAINING_DAY),
        );
        assert_eq!(a.len(), 200, "{table}: one row per checkout");
        assert_eq!(a, s, "{table}: Airflow's rows differ from the scheduler's");
    }
}

fn home_of(setup: &Setup) -> PathBuf {
    setup.dir.path().join("airflow-home")
}

/// A job that fails (a bad flag; no retries, through a template edit) makes the failure
/// callback post chronoflow's alert JSON to the webhook.
fn assert_failure_posts_chronoflows_alert(airflow: &Path, setup: &Setup, home: &Path) {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../chronoflow-airflow/templates/dag.py.j2"),
    )
    .unwrap()
    .replace(
        "\"retries\": {{ dag.defaults.retries }},",
        "\"retries\": 0,",
    );
    let template_path = setup.dir.path().join("no_retries.py.j2");
    std::fs::write(&template_path, template).unwrap();
    let (port, received) = webhook_receiver();
    let dags = setup.dir.path().join("failing-dags");
    export_ok(
        &quickstart(),
        &dags,
        &[
            "--template",
            template_path.to_str().unwrap(),
            "--param",
            &format!("command.chronoflow={}", env!("CARGO_BIN_EXE_chronoflow")),
            "--param",
            "command.extra_args=[\"--no-such-flag\"]",
            "--param",
            &format!("alert.webhook=http://127.0.0.1:{port}/alerts"),
        ],
    );
    let mut c = Command::new(airflow);
    c.args(["dags", "test", "chronon_metadata", TRAINING_DAY, "-f"])
        .arg(dags.join("chronon_metadata.py"));
    airflow_env(&mut c, home, &dags);
    let o = c.output().unwrap();
    assert!(!o.status.success(), "the run should fail");
    let body = received
        .recv_timeout(Duration::from_secs(60))
        .expect("the failure callback posted nothing");
    let alert: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alert["event"], "task_failed", "{alert}");
    assert_eq!(alert["dag_id"], "chronon_metadata");
    assert_eq!(alert["task_id"], "metadata_upload__quickstart");
    assert_eq!(alert["team"], "quickstart");
    assert_eq!(alert["ds"], TRAINING_DAY);
    assert_eq!(alert["try_number"], 1);
    assert!(
        alert["run_id"].as_str().unwrap().starts_with("manual__"),
        "{alert}"
    );
    assert!(
        alert["error"].as_str().unwrap().contains("exit code 2"),
        "{alert}"
    );
}

/// The streaming DAG's keep-alive (flavor chronoflow) starts `chronoflow run --mode streaming`
/// detached, and the next run finds it alive and starts nothing (here the stream keeps retrying
/// an unreachable broker, so it stays up).
#[test]
fn streaming_keep_alive_starts_the_stream_once_and_finds_it_running() {
    let Some(python) = airflow_python() else {
        return;
    };
    let airflow = python.with_file_name("airflow");
    let setup = Setup::new(None);
    setup.import("data.returns", &quickstart().join("data/returns.csv"));
    let dags = setup.dir.path().join("dags");
    let home = setup.dir.path().join("airflow-home");
    let streams = setup.dir.path().join("streams");
    export_ok(
        &quickstart(),
        &dags,
        &[
            "--param",
            &format!("command.chronoflow={}", env!("CARGO_BIN_EXE_chronoflow")),
            "--param",
            &format!("command.warehouse={}", setup.warehouse.display()),
            "--param",
            &format!("command.kv={}", setup.kv),
            "--param",
            &format!("streaming.state_dir={}", streams.display()),
            "--param",
            "command.extra_args=[\"--kafka-brokers\", \"127.0.0.1:1\"]",
        ],
    );
    let dag_file = dags.join("chronon_gb_streaming_quickstart.py");
    let run = |args: &[&str]| {
        let mut c = Command::new(&airflow);
        c.args(args);
        airflow_env(&mut c, &home, &dags);
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "airflow {args:?}:\n{out}\n{}",
            stderr(&o)
        );
        out
    };
    run(&["db", "migrate"]);
    let test = [
        "dags",
        "test",
        "chronon_gb_streaming_quickstart",
        TRAINING_DAY,
        "-f",
        dag_file.to_str().unwrap(),
    ];
    let first = run(&test);
    assert!(
        first.contains("stream quickstart_returns_v1 started"),
        "{first}"
    );
    let pid = std::fs::read_to_string(streams.join("quickstart_returns_v1.pid")).unwrap();
    let pid: i32 = pid.trim().parse().unwrap();
    // Killed at the end whatever happens: the stream runs detached from Airflow.
    struct Stream(i32);
    impl Drop for Stream {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg(self.0.to_string()).status();
        }
    }
    let _stream = Stream(pid);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("--mode\0streaming"),
        "pid {pid} is not the stream"
    );
    // Regression: without `command.kv` the stream opened `.chronoflow/kv` in the task's directory,
    // the repo, which here is the fixture.
    assert!(
        String::from_utf8_lossy(&cmdline).contains(&format!("--kv\0{}", setup.kv)),
        "the stream was not given the KV store"
    );
    let second = run(&test);
    assert!(
        second.contains(&format!(
            "stream quickstart_returns_v1 is running (pid {pid})"
        )),
        "{second}"
    );
}
