//! The planner on real configs (golden JSON plans plus readable spot checks) and on small
//! hand-written repos that pin each planning rule.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::{Path, PathBuf};

use chronoflow_config::{Layout, PartitionDate, Repo, RepoFile, RepoFiles, fs::load_repo, repo};
use chronoflow_plan::partitions::{PartitionRange, TableRead, backfill_reads};
use chronoflow_plan::{Dag, Mode, Plan, Schedule, TaskKind, plan};
use serde_json::json;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/chronon")
        .join(rel)
}

fn plan_of(rel: &str) -> Plan {
    plan(&load_repo(&fixture(rel)).unwrap())
}

/// Compares `actual` with the golden file; `CHRONOFLOW_BLESS=1` rewrites the golden file.
fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("CHRONOFLOW_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run with CHRONOFLOW_BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{name} differs from the golden file at line {}:\n  golden: {}\n  actual: {}\n(rerun with CHRONOFLOW_BLESS=1 to accept)",
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>")
        );
    }
}

fn json_of(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap() + "\n"
}

#[test]
fn golden_airbnb_samples() {
    assert_golden("airbnb.plan.json", &json_of(&plan_of("samples/airbnb")));
}

#[test]
fn golden_zipline_samples() {
    assert_golden("zipline.plan.json", &json_of(&plan_of("samples/zipline")));
}

#[test]
fn golden_quickstart() {
    assert_golden("quickstart.plan.json", &json_of(&plan_of("quickstart")));
}

fn job_tasks(dag: &Dag) -> Vec<(&str, Mode)> {
    dag.tasks
        .iter()
        .filter_map(|t| match &t.kind {
            TaskKind::Job { config, mode, .. } => Some((config.as_str(), *mode)),
            _ => None,
        })
        .collect()
}

#[test]
fn group_by_batch_dag_uploads_every_online_group_by_of_the_team_after_its_sensors() {
    let repo = load_repo(&fixture("samples/airbnb")).unwrap();
    let plan = plan(&repo);
    let dag = plan.dag("chronon_gb_batch_sample_team").unwrap();
    assert_eq!(dag.schedule, Schedule::daily());
    assert_eq!(dag.concurrency, 300);
    let online: Vec<&str> = repo
        .configs
        .iter()
        .filter(|c| c.team == "sample_team" && c.kind() == chronoflow_config::ConfigKind::GroupBy)
        .filter(|c| c.config.metadata().online)
        .map(|c| c.name())
        .collect();
    assert!(online.len() >= 4, "{online:?}");
    let tasks = job_tasks(dag);
    for name in &online {
        assert!(
            tasks.contains(&(name, Mode::Upload)),
            "{name} upload missing"
        );
        assert!(
            tasks.contains(&(name, Mode::UploadToKv)),
            "{name} upload-to-kv missing"
        );
        let slug = chronoflow_config::naming::sanitize(name);
        let to_kv = dag.task(&format!("{slug}__upload_to_kv")).unwrap();
        assert_eq!(to_kv.upstream, [format!("{slug}__upload")]);
    }
    // event_sample_group_by.v1 reads sample_namespace.sample_table_group_by: its upload waits
    // for exactly that partition.
    let upload = dag
        .task("sample_team_event_sample_group_by_v1__upload")
        .unwrap();
    assert_eq!(
        upload.upstream,
        ["wait_for__sample_namespace_sample_table_group_by__ds"]
    );
    let TaskKind::PartitionSensor {
        table,
        offset_days,
        timeout_seconds,
        ..
    } = &dag
        .task("wait_for__sample_namespace_sample_table_group_by__ds")
        .unwrap()
        .kind
    else {
        panic!("expected a partition sensor")
    };
    assert_eq!(
        (table.as_str(), *offset_days, *timeout_seconds),
        ("sample_namespace.sample_table_group_by", 0, 48 * 3600)
    );
}

#[test]
fn a_never_scheduled_join_gets_no_backfill_task() {
    for (rel, name) in [
        ("samples/airbnb", "sample_team.sample_join.never"),
        ("samples/zipline", "sample_team.sample_join.never__0"),
    ] {
        let plan = plan_of(rel);
        assert!(plan.job(&format!("{name}/backfill")).is_none());
        for dag in &plan.dags {
            assert!(
                !job_tasks(dag).iter().any(|(c, _)| *c == name),
                "{name} has a task in {}",
                dag.dag_id
            );
        }
        // Its definition is still uploaded for serving.
        assert!(plan.job(&format!("{name}/metadata-upload")).is_some());
    }
}

#[test]
fn quickstart_streaming_dag_holds_returns_but_not_purchases() {
    let plan = plan_of("quickstart");
    let dag = plan.dag("chronon_gb_streaming_quickstart").unwrap();
    assert_eq!(dag.schedule, Schedule::Interval { minutes: 10 });
    assert_eq!(dag.max_active_runs, 1);
    assert_eq!(job_tasks(dag), [("quickstart.returns.v1", Mode::Streaming)]);
}

#[test]
fn cross_dag_waits_follow_lineage() {
    let plan = plan_of("samples/airbnb");
    // The Join reads the staging query's output: it waits on that task, across DAGs.
    let join = plan.dag("chronon_join_sample_team").unwrap();
    let wait = join
        .task("wait_for__sample_team_sample_staging_query_v1__backfill")
        .unwrap();
    let TaskKind::UpstreamWait {
        dag_id,
        upstream_task_id,
        offset_days,
        ..
    } = &wait.kind
    else {
        panic!()
    };
    assert_eq!(
        (dag_id.as_str(), upstream_task_id.as_str(), *offset_days),
        (
            "chronon_staging_query_sample_team",
            "sample_team_sample_staging_query_v1__backfill",
            0
        )
    );
    assert!(
        join.task("sample_team_sample_join_v1__backfill")
            .unwrap()
            .upstream
            .contains(&wait.task_id)
    );
    // A chaining GroupBy waits on its parent Join's frontfill.
    let gb = plan.dag("chronon_gb_batch_sample_team").unwrap();
    let upload = gb
        .task("sample_team_sample_chaining_group_by__upload")
        .unwrap();
    assert!(
        upload.upstream.contains(
            &"wait_for__sample_team_sample_chaining_join_parent_join__backfill".to_owned()
        )
    );
    // A manual range run waits on partitions instead, and says who writes them.
    let manual = plan.dag("chronon_join_backfill").unwrap();
    let TaskKind::PartitionSensor { produced_by, .. } = &manual
        .task("wait_for__sample_namespace_sample_team_sample_staging_query_v1__ds")
        .unwrap()
        .kind
    else {
        panic!()
    };
    assert_eq!(
        produced_by.as_deref(),
        Some("sample_team.sample_staging_query.v1/backfill")
    );
    // Zipline: the chaining GroupBy declares no dependencies, yet still waits for its parent.
    let zl = plan_of("samples/zipline");
    let gb = zl.dag("chronon_gb_batch_sample_team").unwrap();
    let upload = gb
        .task("sample_team_chaining_group_by_chaining_group_by_v1__0__upload")
        .unwrap();
    assert_eq!(
        upload.upstream,
        ["wait_for__sample_team_sample_chaining_join_parent_parent_join__0__backfill"]
    );
}

#[test]
fn duplicate_sensors_are_merged_and_the_later_end_wins() {
    // sample_label_join.v1 declares sample_table_group_by twice: ending 2021-04-09, and open-ended.
    let plan = plan_of("samples/airbnb");
    let job = plan
        .job("sample_team.sample_label_join.v1/backfill")
        .unwrap();
    let deps: Vec<_> = job
        .inputs
        .iter()
        .filter(|d| d.table == "sample_namespace.sample_table_group_by")
        .collect();
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0].end, None);
    // The sensor is shared by every task of the DAG that reads the partition.
    let dag = plan.dag("chronon_join_sample_team").unwrap();
    let readers = dag
        .tasks
        .iter()
        .filter(|t| {
            t.upstream
                .contains(&"wait_for__sample_namespace_sample_table_group_by__ds".to_owned())
        })
        .count();
    assert!(readers > 3, "{readers}");
}

#[test]
fn planning_is_deterministic_whatever_the_file_order() {
    let files = chronoflow_config::fs::read_repo_files(&fixture("samples/airbnb")).unwrap();
    let forward = json_of(&plan(&repo::load(files.clone())));
    let mut reversed = files;
    reversed.files.reverse();
    assert_eq!(forward, json_of(&plan(&repo::load(reversed))));
}

// ---- small hand-written repos ----

fn ab_repo(configs: &[(&str, serde_json::Value)]) -> Repo {
    let mut files = vec![RepoFile {
        path: "teams.json".to_owned(),
        contents: json!({"default": {"namespace": "db"}, "t": {"namespace": "db"}})
            .to_string()
            .into_bytes(),
    }];
    for (path, value) in configs {
        files.push(RepoFile {
            path: format!("production/{path}"),
            contents: value.to_string().into_bytes(),
        });
    }
    repo::load(RepoFiles {
        layouts: vec![Layout::Airbnb {
            prefix: String::new(),
        }],
        files,
        unreadable: Vec::new(),
    })
}

fn events_group_by(name: &str, table: &str, deps: &[&str]) -> serde_json::Value {
    json!({
        "metaData": {
            "name": name, "team": "t", "online": 1, "outputNamespace": "db",
            "dependencies": deps.iter().map(|s| json!({"name": "x", "spec": s, "start": null, "end": null}).to_string()).collect::<Vec<_>>(),
        },
        "sources": [{"events": {"table": table, "query": {"selects": {"k": "k", "v": "v"}, "timeColumn": "ts"}}}],
        "keyColumns": ["k"],
        "aggregations": [{"inputColumn": "v", "operation": 7, "windows": [{"length": 3, "timeUnit": 1}]}],
    })
}

fn staging_query(name: &str, deps: &[&str]) -> serde_json::Value {
    json!({"metaData": {"name": name, "team": "t", "outputNamespace": "db", "dependencies": deps}, "query": "SELECT 1"})
}

#[test]
fn a_dependency_cycle_is_an_error_that_names_it() {
    let repo = ab_repo(&[
        (
            "staging_queries/t/a.v1",
            staging_query("t.a.v1", &["db.t_b_v1/ds={{ ds }}"]),
        ),
        (
            "staging_queries/t/b.v1",
            staging_query("t.b.v1", &["db.t_a_v1/ds={{ ds }}"]),
        ),
        (
            "staging_queries/t/c.v1",
            staging_query("t.c.v1", &["db.t_a_v1/ds={{ macros.ds_add(ds, -1) }}"]),
        ),
    ]);
    let plan = plan(&repo);
    let cycles: Vec<_> = plan
        .diagnostics
        .iter()
        .filter(|d| d.code == chronoflow_config::DiagnosticCode::DependencyCycle)
        .collect();
    assert_eq!(cycles.len(), 1, "{:#?}", plan.diagnostics);
    assert!(cycles[0].is_error());
    assert_eq!(cycles[0].file, "production/staging_queries/t/a.v1");
    assert!(
        cycles[0]
            .message
            .contains("t.a.v1/backfill -> t.b.v1/backfill -> t.a.v1/backfill"),
        "{}",
        cycles[0].message
    );
    // The rest still plans; c reads a's output of the day before, so it only waits on a partition.
    assert!(plan.job("t.a.v1/backfill").is_none() && plan.job("t.b.v1/backfill").is_none());
    let dag = plan.dag("chronon_staging_query_t").unwrap();
    assert_eq!(job_tasks(dag), [("t.c.v1", Mode::Backfill)]);
    assert!(dag.task("wait_for__db_t_a_v1__ds_minus_1").is_some());
}

#[test]
fn a_job_reading_its_own_earlier_output_waits_on_its_own_earlier_run() {
    let repo = ab_repo(&[(
        "staging_queries/t/cumulative.v1",
        staging_query(
            "t.cumulative.v1",
            &["db.t_cumulative_v1/ds={{ macros.ds_add(ds, -1) }}"],
        ),
    )]);
    let plan = plan(&repo);
    assert!(!plan.has_errors(), "{:#?}", plan.diagnostics);
    let dag = plan.dag("chronon_staging_query_t").unwrap();
    let wait = dag
        .task("wait_for__t_cumulative_v1__backfill_minus_1")
        .unwrap();
    let TaskKind::UpstreamWait {
        dag_id,
        offset_days,
        ..
    } = &wait.kind
    else {
        panic!()
    };
    assert_eq!(
        (dag_id.as_str(), *offset_days),
        ("chronon_staging_query_t", -1)
    );
}

#[test]
fn an_invalid_join_schedule_is_an_error_naming_the_field_and_value() {
    let join = json!({
        "metaData": {"name": "t.j.v1", "team": "t", "outputNamespace": "db", "offlineSchedule": "0 25 * * *"},
        "left": {"events": {"table": "db.left", "query": {"selects": {"k": "k"}, "timeColumn": "ts"}}},
        "joinParts": [],
    });
    let plan = plan(&ab_repo(&[("joins/t/j.v1", join)]));
    let d = plan
        .diagnostics
        .iter()
        .find(|d| d.is_error())
        .expect("an error");
    assert_eq!(
        (d.file.as_str(), d.path.as_str()),
        ("production/joins/t/j.v1", "$.metaData.offlineSchedule")
    );
    assert_eq!(d.found.as_deref(), Some("0 25 * * *"));
    // No scheduled frontfill, but a manual backfill still works.
    assert!(
        plan.dags
            .iter()
            .all(|d| !d.dag_id.starts_with("chronon_join_t"))
    );
    assert!(
        plan.dag("chronon_join_backfill")
            .unwrap()
            .task("t_j_v1__backfill")
            .is_some()
    );
}

#[test]
fn non_daily_joins_get_a_dag_per_schedule() {
    let join = |name: &str, schedule: &str| {
        json!({
            "metaData": {"name": name, "team": "t", "outputNamespace": "db", "offlineSchedule": schedule},
            "left": {"events": {"table": "db.left", "query": {"selects": {"k": "k"}, "timeColumn": "ts"}}},
            "joinParts": [],
        })
    };
    let plan = plan(&ab_repo(&[
        ("joins/t/a.v1", join("t.a.v1", "@daily")),
        ("joins/t/b.v1", join("t.b.v1", "@weekly")),
        ("joins/t/c.v1", join("t.c.v1", "30 6 * * *")),
    ]));
    let ids: Vec<&str> = plan
        .dags
        .iter()
        .map(|d| d.dag_id.as_str())
        .filter(|id| id.starts_with("chronon_join_t"))
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&"chronon_join_t") && ids.contains(&"chronon_join_t__weekly"));
    let cron = plan
        .dags
        .iter()
        .find(|d| d.dag_id.starts_with("chronon_join_t__cron_"))
        .unwrap();
    assert_eq!(
        cron.schedule,
        Schedule::Cron {
            expr: "30 6 * * *".to_owned()
        }
    );
}

#[test]
fn group_bys_without_declared_dependencies_wait_for_their_sources_with_the_lag() {
    let mut gb = events_group_by("t.gb.v1", "db.events/hr=00:00", &[]);
    gb["metaData"]
        .as_object_mut()
        .unwrap()
        .remove("dependencies");
    gb["metaData"]["customJson"] = json!(json!({"lag": 2}).to_string());
    gb["sources"][0]["events"]["query"]["endPartition"] = json!("2024-01-31");
    let plan = plan(&ab_repo(&[("group_bys/t/gb.v1", gb)]));
    let job = plan.job("t.gb.v1/upload").unwrap();
    assert_eq!(job.inputs.len(), 1);
    let dep = &job.inputs[0];
    assert_eq!((dep.table.as_str(), dep.offset_days), ("db.events", -2));
    assert_eq!(dep.sub_partitions, [("hr".to_owned(), "00:00".to_owned())]);
    assert_eq!(dep.end, Some(PartitionDate::parse("2024-01-31").unwrap()));
    let dag = plan.dag("chronon_gb_batch_t").unwrap();
    assert!(
        dag.task("wait_for__db_events__ds_minus_2__hr_00_00")
            .is_some()
    );
}

#[test]
fn a_group_by_with_a_backfill_start_date_backfills_then_uploads() {
    let mut gb = events_group_by("t.gb.v1", "db.events", &["db.events/ds={{ ds }}"]);
    gb["backfillStartDate"] = json!("2024-01-01");
    let plan = plan(&ab_repo(&[("group_bys/t/gb.v1", gb)]));
    let dag = plan.dag("chronon_gb_batch_t").unwrap();
    assert_eq!(
        dag.task("t_gb_v1__backfill").unwrap().upstream,
        ["wait_for__db_events__ds"]
    );
    // The upload follows the backfill; the sensor it shares with the backfill is not repeated.
    assert_eq!(
        dag.task("t_gb_v1__upload").unwrap().upstream,
        ["t_gb_v1__backfill"]
    );
    assert!(
        plan.dag("chronon_gb_backfill")
            .unwrap()
            .task("t_gb_v1__backfill")
            .is_some()
    );
}

#[test]
fn two_configs_writing_one_table_is_an_error() {
    let plan = plan(&ab_repo(&[
        ("staging_queries/t/a.v1", staging_query("t.a.v1", &[])),
        ("staging_queries/t/a_v1", staging_query("t.a_v1", &[])),
    ]));
    let errors: Vec<String> = plan
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("writes table db.t_a_v1"),
        "{}",
        errors[0]
    );
}

#[test]
fn partition_reads_of_the_quickstart() {
    let repo = load_repo(&fixture("quickstart")).unwrap();
    let d = |s: &str| PartitionDate::parse(s).unwrap();
    let range = PartitionRange::new(d("2023-11-10"), d("2023-11-12")).unwrap();
    let read = |table: &str, start: Option<&str>, end: &str| TableRead {
        table: table.to_owned(),
        start: start.map(d),
        end: d(end),
    };
    // purchases.v1 has an unwindowed LAST_K: it reads from the beginning of the table.
    assert_eq!(
        backfill_reads(repo.config("quickstart.purchases.v1").unwrap(), range),
        [read("data.purchases", None, "2023-11-12")]
    );
    // training_set.v2: event left; the SNAPSHOT part (purchases) reads up to the day before the
    // last left partition, the TEMPORAL one (returns, it has a topic) up to the query day.
    let reads = backfill_reads(repo.config("quickstart.training_set.v2").unwrap(), range);
    assert_eq!(
        reads,
        [
            read("data.checkouts", Some("2023-11-10"), "2023-11-12"),
            read("data.purchases", None, "2023-11-11"),
            read("data.returns", None, "2023-11-12"),
        ]
    );
}
