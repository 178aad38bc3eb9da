//! The scheduler core, driven step by step with a fake clock and failures injected at named
//! points; the whole state store is snapshotted after each step.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::sync::Arc;

use chronoflow_config::PartitionDate;
use chronoflow_engine::{TableName, Warehouse};
use chronoflow_scheduler::clock::{Clock, FakeClock};
use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::executor::{Executors, NoopExecutor};
use chronoflow_scheduler::failpoint::FailPoints;
use chronoflow_scheduler::metrics::Metrics;
use chronoflow_scheduler::scheduler::Scheduler;
use chronoflow_scheduler::spec::{Action, DagSpec, JobRef, TaskSpec};
use chronoflow_scheduler::store::{RunTrigger, Store};
use chronoflow_scheduler::timetable::Timetable;
use chronoflow_scheduler::worker::Worker;

/// 2026-11-21T00:30:00Z: half an hour after the 20th ended.
const START: i64 = 1_795_221_000_000;

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    clock: FakeClock,
    scheduler: Scheduler,
    worker: Worker,
    failpoints: Arc<FailPoints>,
    warehouse: Arc<Warehouse>,
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh PostgreSQL database for one test, on the server `DATABASE_URL` names.
async fn fresh_postgres(base: &str) -> String {
    use sqlx::Connection;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "chronoflow_core_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

impl Harness {
    /// `None` when the backend is not available here (PostgreSQL without `DATABASE_URL`).
    async fn new(backend: Backend) -> Option<Harness> {
        let dir = tempfile::tempdir().unwrap();
        let store = match backend {
            Backend::Sqlite => Store::open_sqlite(&dir.path().join("state.db"))
                .await
                .unwrap(),
            Backend::Postgres => {
                let Ok(base) = std::env::var("DATABASE_URL") else {
                    eprintln!("DATABASE_URL is not set: skipping the PostgreSQL run");
                    return None;
                };
                Store::open(&fresh_postgres(&base).await).await.unwrap()
            }
        };
        let store = Arc::new(store);
        let clock = FakeClock::new(START);
        let config = Arc::new(
            SchedulerConfig::parse(
                "heartbeat_interval_seconds = 5\nheartbeat_timeout_seconds = 30",
            )
            .unwrap(),
        );
        let warehouse =
            Arc::new(Warehouse::open(dir.path().join("warehouse").to_str().unwrap()).unwrap());
        let metrics = Arc::new(Metrics::default());
        let failpoints = Arc::new(FailPoints::default());
        let scheduler = Scheduler::new(
            store.clone(),
            Arc::new(clock.clone()),
            config.clone(),
            Some(warehouse.clone() as Arc<dyn chronoflow_scheduler::scheduler::PartitionCatalog>),
            metrics.clone(),
            failpoints.clone(),
        );
        let executors = Executors::new(config.clone(), Arc::new(NoopExecutor::default()), None);
        let worker = Worker::new(
            "w1".into(),
            store.clone(),
            Arc::new(clock.clone()),
            config,
            executors,
            4,
            dir.path().join("logs"),
            metrics,
            failpoints.clone(),
        );
        Some(Harness {
            _dir: dir,
            store,
            clock,
            scheduler,
            worker,
            failpoints,
            warehouse,
        })
    }

    async fn state(&self) -> String {
        self.store.dump(START).await.unwrap()
    }

    fn advance_s(&self, s: i64) {
        self.clock.advance_ms(s * 1000);
    }
}

fn job(task_id: &str, upstream: &[&str]) -> TaskSpec {
    TaskSpec {
        task_id: task_id.into(),
        upstream: upstream.iter().map(|s| s.to_string()).collect(),
        retries: 1,
        retry_delay_seconds: 60,
        execution_timeout_seconds: None,
        action: Action::Job(JobRef {
            job: format!("team.{task_id}/backfill"),
            config: format!("team.{task_id}"),
            mode: "backfill".into(),
            team: "team".into(),
            conf_path: format!("compiled/joins/team/{task_id}"),
            content_hash: "0".into(),
        }),
    }
}

fn sensor(task_id: &str, table: &str) -> TaskSpec {
    TaskSpec {
        task_id: task_id.into(),
        upstream: vec![],
        retries: 3,
        retry_delay_seconds: 60,
        execution_timeout_seconds: None,
        action: Action::PartitionSensor {
            table: table.into(),
            partition_column: "ds".into(),
            offset_days: 0,
            sub_partitions: vec![],
            end: None,
            poke_interval_seconds: 60,
            timeout_seconds: 600,
        },
    }
}

fn dag(dag_id: &str, timetable: Timetable, mut tasks: Vec<TaskSpec>) -> DagSpec {
    tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    DagSpec {
        dag_id: dag_id.into(),
        kind: "join".into(),
        team: Some("team".into()),
        timetable,
        catchup: false,
        fills_missing: true,
        start_date: None,
        max_active_runs: 1,
        concurrency: 100,
        tasks,
        downstream_index: Default::default(),
    }
}

fn daily() -> Timetable {
    Timetable::Cron {
        expr: "0 0 * * *".into(),
    }
}

async fn a_daily_run_through_sensor_crashes_retries_failure_and_clear(h: Harness) {
    let spec = dag(
        "chronon_join_team",
        daily(),
        vec![
            sensor("wait_for__data_events__ds", "data.events"),
            job("a", &["wait_for__data_events__ds"]),
            job("b", &["a"]),
            job("c", &[]),
        ],
    );
    let report = h.store.sync_dags(&[spec], h.clock.now_ms()).await.unwrap();
    assert_eq!(report.added, ["chronon_join_team"]);
    insta::assert_snapshot!("01_synced", h.state().await);

    // The run for the 20th is due (the day has ended); the sensor pokes at once, the
    // independent task is queued.
    let tick = h.scheduler.tick().await.unwrap();
    assert_eq!(
        (tick.runs_created, tick.runs_started, tick.sensors_poked),
        (1, 1, 1)
    );
    insta::assert_snapshot!("02_run_started", h.state().await);

    assert_eq!(h.worker.run_once().await.unwrap(), 1);
    insta::assert_snapshot!("03_independent_task_done", h.state().await);

    // The partition lands; the next poke sees it and `a` is queued.
    h.warehouse
        .write_partition(
            &TableName::parse("data.events").unwrap(),
            "ds",
            PartitionDate::parse("2026-11-20").unwrap(),
            &[],
        )
        .await
        .unwrap();
    h.advance_s(60);
    h.scheduler.tick().await.unwrap();
    insta::assert_snapshot!("04_sensor_met", h.state().await);

    // Crash between claiming and starting: the try stays running until its heartbeat
    // times out, then it is retried after the backoff.
    h.failpoints.arm("worker.after_claim", 1);
    assert!(h.worker.run_once().await.is_err());
    h.advance_s(31);
    let tick = h.scheduler.tick().await.unwrap();
    assert_eq!(
        tick.reaped, 0,
        "a reaped try with retries left is not a final failure"
    );
    insta::assert_snapshot!("05_crashed_try_reaped", h.state().await);

    h.advance_s(70);
    h.scheduler.tick().await.unwrap();
    // Crash while committing: the job ran, its success was never recorded.
    h.failpoints.arm("worker.before_commit", 1);
    assert!(h.worker.run_once().await.is_err());
    h.advance_s(31);
    let tick = h.scheduler.tick().await.unwrap();
    assert_eq!(tick.reaped, 1, "the last try failed for good");
    insta::assert_snapshot!("06_failed_for_good", h.state().await);

    // Clearing `a` and its downstream runs them again with fresh retries.
    let cleared = h
        .store
        .clear(
            "chronon_join_team",
            "scheduled__2026-11-20T00:00:00Z",
            "a",
            true,
            h.clock.now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(cleared, ["a", "b"]);
    insta::assert_snapshot!("07_cleared", h.state().await);
    h.worker.run_once().await.unwrap();
    h.worker.run_once().await.unwrap();
    insta::assert_snapshot!("08_run_succeeded", h.state().await);

    // A late result of the try declared dead is discarded, not recorded twice.
    let tries = h
        .store
        .tries("chronon_join_team", "scheduled__2026-11-20T00:00:00Z", "a")
        .await
        .unwrap();
    assert_eq!(tries.iter().filter(|t| t.state == "success").count(), 1);
}

async fn job_failures_back_off_and_then_fail_downstream(h: Harness) {
    let spec = dag("d", daily(), vec![job("a", &[]), job("b", &["a"])]);
    h.store.sync_dags(&[spec], h.clock.now_ms()).await.unwrap();
    h.scheduler.tick().await.unwrap();
    h.failpoints.arm("worker.in_job", 2);
    h.worker.run_once().await.unwrap();
    // Not yet: the backoff is about a minute.
    h.advance_s(30);
    h.scheduler.tick().await.unwrap();
    assert_eq!(h.worker.run_once().await.unwrap(), 0);
    insta::assert_snapshot!("10_backing_off", h.state().await);
    h.advance_s(40);
    h.scheduler.tick().await.unwrap();
    h.worker.run_once().await.unwrap();
    insta::assert_snapshot!("11_upstream_failed", h.state().await);
}

async fn catchup_fills_missing_in_one_run_and_manual_runs_take_params(h: Harness) {
    let mut gb = dag("chronon_gb_batch_team", daily(), vec![job("g", &[])]);
    gb.catchup = true;
    gb.start_date = Some("2026-11-15".into());
    let mut per_day = dag("per_day", daily(), vec![job("p", &[])]);
    per_day.catchup = true;
    per_day.fills_missing = false;
    per_day.max_active_runs = 2;
    per_day.start_date = Some("2026-11-17".into());
    let manual = dag(
        "chronon_join_backfill",
        Timetable::Manual,
        vec![job("j", &[])],
    );
    h.store
        .sync_dags(&[gb, per_day, manual], h.clock.now_ms())
        .await
        .unwrap();
    h.scheduler.tick().await.unwrap();
    let ids = h
        .store
        .trigger(
            "chronon_join_backfill",
            RunTrigger::Manual {
                start_ds: "2026-01-01".into(),
                end_ds: "2026-03-31".into(),
            },
            h.clock.now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    h.scheduler.tick().await.unwrap();
    insta::assert_snapshot!("20_catchup_and_manual", h.state().await);
    while h.worker.run_once().await.unwrap() > 0 {
        h.scheduler.tick().await.unwrap();
    }
    insta::assert_snapshot!("21_all_done", h.state().await);
}

/// A range backfill DAG's trigger is one run per `step_days` chunk (30 by default), so workers
/// take chunks in parallel; each chunk's task covers only its own dates.
async fn range_backfill_triggers_make_one_run_per_step(h: Harness) {
    let mut joins = dag(
        "chronon_join_backfill",
        Timetable::Manual,
        vec![job("j", &[])],
    );
    joins.kind = "join_backfill".into();
    joins.max_active_runs = 16;
    let custom = dag("custom_manual", Timetable::Manual, vec![job("c", &[])]);
    let daily_dag = dag("daily", daily(), vec![job("d", &[])]);
    h.store
        .sync_dags(&[joins, custom, daily_dag], h.clock.now_ms())
        .await
        .unwrap();
    let trigger = |start: &str, end: &str, step_days: Option<u32>| {
        let (start_ds, end_ds) = (start.to_owned(), end.to_owned());
        match step_days {
            Some(step_days) => RunTrigger::Steps {
                start_ds,
                end_ds,
                step_days,
            },
            None => RunTrigger::Manual { start_ds, end_ds },
        }
    };
    let now = h.clock.now_ms();
    let ids = h
        .store
        .trigger(
            "chronon_join_backfill",
            trigger("2026-01-01", "2026-01-10", Some(4)),
            now,
        )
        .await
        .unwrap();
    let suffixes: Vec<&str> = ids.iter().map(|id| &id[id.len() - 21..]).collect();
    assert_eq!(
        suffixes,
        [
            "2026-01-01_2026-01-04",
            "2026-01-05_2026-01-08",
            "2026-01-09_2026-01-10"
        ]
    );
    // By default a backfill DAG's range is cut every 30 days; another manual DAG's is one run.
    let ids = h
        .store
        .trigger(
            "chronon_join_backfill",
            trigger("2026-02-01", "2026-04-02", None),
            now,
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let ids = h
        .store
        .trigger(
            "custom_manual",
            trigger("2026-02-01", "2026-04-01", None),
            now,
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let err = h
        .store
        .trigger("daily", trigger("2026-02-01", "2026-04-01", Some(5)), now)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("scheduled"), "{err}");

    // Every chunk's task runs over its own dates only.
    h.scheduler.tick().await.unwrap();
    while h.worker.run_once().await.unwrap() > 0 {
        h.scheduler.tick().await.unwrap();
    }
    let runs = h
        .store
        .runs(Some("chronon_join_backfill"), None, 100)
        .await
        .unwrap();
    assert_eq!(runs.len(), 6);
    let mut ranges = Vec::new();
    for run in &runs {
        assert_eq!(run.state, "success", "{run:?}");
        for ti in h
            .store
            .task_instances(&run.dag_id, &run.run_id)
            .await
            .unwrap()
        {
            ranges.push(format!("{}..{}", ti.start_ds, ti.end_ds));
        }
    }
    ranges.sort();
    assert_eq!(
        ranges,
        [
            "2026-01-01..2026-01-04",
            "2026-01-05..2026-01-08",
            "2026-01-09..2026-01-10",
            "2026-02-01..2026-03-02",
            "2026-03-03..2026-04-01",
            "2026-04-02..2026-04-02"
        ]
    );
}

async fn bad_requests_are_clear_errors(h: Harness) {
    let bad_cron = dag(
        "bad",
        Timetable::Cron {
            expr: "61 * * * *".into(),
        },
        vec![job("a", &[])],
    );
    let good = dag("good", daily(), vec![job("a", &[])]);
    let report = h
        .store
        .sync_dags(&[bad_cron, good], h.clock.now_ms())
        .await
        .unwrap();
    assert_eq!(report.added, ["good"]);
    assert!(
        report.rejected[0].1.contains("61 * * * *"),
        "{:?}",
        report.rejected
    );
    let err = h.store.set_paused("nope", true, 0).await.unwrap_err();
    assert_eq!(err.to_string(), "unknown DAG \"nope\"");
    let err = h
        .store
        .trigger(
            "good",
            RunTrigger::Manual {
                start_ds: "2026-13-01".into(),
                end_ds: "2026-12-01".into(),
            },
            0,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("start_ds \"2026-13-01\""), "{err}");
    h.scheduler.tick().await.unwrap();
    let err = h
        .store
        .clear("good", "scheduled__2026-11-20T00:00:00Z", "zzz", false, 0)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "DAG \"good\" has no task \"zzz\"");
    // The good DAG kept running.
    h.worker.run_once().await.unwrap();
    let runs = h.store.runs(Some("good"), None, 10).await.unwrap();
    assert_eq!(runs[0].state, "success");
}

/// Every case runs on both backends against the same snapshots: one schema, one behavior.
macro_rules! on_both_backends {
    ($($case:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Harness::new(super::Backend::Sqlite).await.unwrap()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    if let Some(h) = super::Harness::new(super::Backend::Postgres).await {
                        super::$case(h).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    a_daily_run_through_sensor_crashes_retries_failure_and_clear,
    job_failures_back_off_and_then_fail_downstream,
    catchup_fills_missing_in_one_run_and_manual_runs_take_params,
    range_backfill_triggers_make_one_run_per_step,
    bad_requests_are_clear_errors
);

/// Streaming keep-alive: the first run starts the job, the next leaves it alone, and once the
/// process died, the next run starts it again.
#[tokio::test]
async fn streaming_keep_alive_starts_leaves_alone_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open_sqlite(&dir.path().join("state.db"))
            .await
            .unwrap(),
    );
    let clock = FakeClock::new(START);
    let config = Arc::new(
        SchedulerConfig::parse(
            "default_executor = \"stream\"\n[executors.stream]\nkind = \"command\"\nargv = [\"sleep\", \"300\"]\n",
        )
        .unwrap(),
    );
    let metrics = Arc::new(Metrics::default());
    let failpoints = Arc::new(FailPoints::default());
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(clock.clone()),
        config.clone(),
        None,
        metrics.clone(),
        failpoints.clone(),
    );
    let worker = Worker::new(
        "w1".into(),
        store.clone(),
        Arc::new(clock.clone()),
        config.clone(),
        Executors::new(config, Arc::new(NoopExecutor::default()), None),
        1,
        dir.path().join("logs"),
        metrics,
        failpoints,
    );
    let mut task = job("events_v1__streaming", &[]);
    if let Action::Job(j) = &mut task.action {
        j.mode = "streaming".into();
    }
    let mut spec = dag(
        "chronon_gb_streaming_team",
        Timetable::Interval { minutes: 10 },
        vec![task],
    );
    spec.fills_missing = false;
    store.sync_dags(&[spec], clock.now_ms()).await.unwrap();
    let job_id = "team.events_v1__streaming/backfill";

    scheduler.tick().await.unwrap();
    worker.run_once().await.unwrap();
    let first = store.streaming_job(job_id).await.unwrap().expect("started");
    assert!(std::path::Path::new(&format!("/proc/{}", first.pid)).exists());

    // Ten minutes later: still running, left alone.
    clock.advance_ms(600_000);
    scheduler.tick().await.unwrap();
    worker.run_once().await.unwrap();
    assert_eq!(
        store.streaming_job(job_id).await.unwrap().unwrap().pid,
        first.pid
    );

    // The job dies; the next keep-alive restarts it.
    std::process::Command::new("kill")
        .args(["-9", &first.pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    clock.advance_ms(600_000);
    scheduler.tick().await.unwrap();
    worker.run_once().await.unwrap();
    let second = store.streaming_job(job_id).await.unwrap().unwrap();
    assert_ne!(second.pid, first.pid);
    let runs = store
        .runs(Some("chronon_gb_streaming_team"), None, 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.state == "success"), "{runs:?}");
    std::process::Command::new("kill")
        .args(["-9", &second.pid.to_string()])
        .status()
        .unwrap();
}

/// Re-planning: a changed DAG gets a new version while its started run keeps the old one; a
/// removed DAG is retired with its history; it comes back when planned again.
#[tokio::test]
async fn replanning_versions_changed_dags_and_retires_removed_ones() {
    let h = Harness::new(Backend::Sqlite).await.unwrap();
    let v1 = dag("d", daily(), vec![job("a", &[])]);
    h.store
        .sync_dags(std::slice::from_ref(&v1), h.clock.now_ms())
        .await
        .unwrap();
    h.scheduler.tick().await.unwrap();
    let v2 = dag("d", daily(), vec![job("a", &[]), job("b", &["a"])]);
    let report = h
        .store
        .sync_dags(std::slice::from_ref(&v2), h.clock.now_ms())
        .await
        .unwrap();
    assert_eq!(report.changed, ["d"]);
    let run = &h.store.runs(Some("d"), None, 1).await.unwrap()[0];
    assert_eq!(run.version, 1, "the started run keeps its version");
    assert_eq!(
        h.store
            .task_instances("d", &run.run_id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(h.store.dag("d").await.unwrap().version, 2);
    // Same spec again: nothing changes.
    let report = h
        .store
        .sync_dags(std::slice::from_ref(&v2), h.clock.now_ms())
        .await
        .unwrap();
    assert_eq!(report.unchanged, 1);
    let report = h.store.sync_dags(&[], h.clock.now_ms()).await.unwrap();
    assert_eq!(report.removed, ["d"]);
    assert!(h.store.dag("d").await.unwrap().removed);
    assert_eq!(
        h.store.runs(Some("d"), None, 10).await.unwrap().len(),
        1,
        "history stays"
    );
    let report = h.store.sync_dags(&[v2], h.clock.now_ms()).await.unwrap();
    assert_eq!(report.changed, ["d"]);
    assert!(!h.store.dag("d").await.unwrap().removed);
}

/// A team's concurrency limit holds across its DAGs; the DAG's own limit within one DAG.
#[tokio::test]
async fn team_and_dag_concurrency_limits() {
    let h = Harness::new(Backend::Sqlite).await.unwrap();
    let mut a = dag(
        "a",
        Timetable::Manual,
        (0..5).map(|i| job(&format!("t{i}"), &[])).collect(),
    );
    a.concurrency = 3;
    let b = dag(
        "b",
        Timetable::Manual,
        (0..5).map(|i| job(&format!("t{i}"), &[])).collect(),
    );
    h.store.set_team_limits([("team".to_owned(), 4)].into());
    h.store.sync_dags(&[a, b], h.clock.now_ms()).await.unwrap();
    for d in ["a", "b"] {
        h.store
            .trigger(
                d,
                RunTrigger::Manual {
                    start_ds: "2026-11-20".into(),
                    end_ds: "2026-11-20".into(),
                },
                h.clock.now_ms(),
            )
            .await
            .unwrap();
    }
    h.scheduler.tick().await.unwrap();
    let counts = h.store.state_counts().await.unwrap();
    assert_eq!(counts.get("queued"), Some(&4), "{counts:?}");
    let queued_a = h.store.runs(Some("a"), None, 1).await.unwrap().remove(0);
    let tis = h.store.task_instances("a", &queued_a.run_id).await.unwrap();
    assert!(tis.iter().filter(|t| t.state == "queued").count() <= 3);
    // Everything still finishes, within the limits.
    while h.worker.run_once().await.unwrap() > 0 {}
    for d in ["a", "b"] {
        assert_eq!(
            h.store.runs(Some(d), None, 1).await.unwrap()[0].state,
            "success"
        );
    }
}

/// `chronoflow.toml` overrides reach the specs compiled from a real plan: DAG-level retries
/// apply to jobs (sensors keep theirs), task-level settings win.
#[test]
fn config_overrides_reach_specs_from_the_quickstart_plan() {
    let repo = chronoflow_config::fs::load_repo(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart"),
    )
    .unwrap();
    let plan = chronoflow_plan::plan(&repo);
    let config = SchedulerConfig::parse(
        r#"
        [dags.chronon_join_quickstart]
        retries = 4
        retry_delay_seconds = 120
        [tasks."chronon_join_quickstart.quickstart_training_set_v2__backfill"]
        retries = 7
        execution_timeout_seconds = 3600
        "#,
    )
    .unwrap();
    let specs = chronoflow_scheduler::spec::specs_from_plan(&plan, &config);
    let join = specs
        .iter()
        .find(|s| s.dag_id == "chronon_join_quickstart")
        .unwrap();
    let v1 = join.task("quickstart_training_set_v1__backfill").unwrap();
    assert_eq!((v1.retries, v1.retry_delay_seconds), (4, 120));
    let v2 = join.task("quickstart_training_set_v2__backfill").unwrap();
    assert_eq!((v2.retries, v2.execution_timeout_seconds), (7, Some(3600)));
    let sensor = join.task("wait_for__data_checkouts__ds").unwrap();
    assert_eq!(sensor.retries, 3, "sensors keep their own retries");
    assert!(join.fills_missing);
    for spec in &specs {
        spec.validate().unwrap();
        spec.timetable.validate().unwrap();
    }
}

fn wait_on(
    task_id: &str,
    dag_id: &str,
    upstream: &str,
    end: Option<&str>,
    timeout_seconds: u64,
) -> TaskSpec {
    TaskSpec {
        task_id: task_id.into(),
        upstream: vec![],
        retries: 3,
        retry_delay_seconds: 60,
        execution_timeout_seconds: None,
        action: Action::UpstreamWait {
            dag_id: dag_id.into(),
            task_id: upstream.into(),
            offset_days: 0,
            end: end.map(str::to_owned),
            poke_interval_seconds: 60,
            timeout_seconds,
        },
    }
}

/// Cross-DAG waits succeed once the upstream DAG's task succeeded for the date; a dependency
/// that ended before `ds` is not waited for; a sensor that times out fails without retry.
#[tokio::test]
async fn cross_dag_waits_end_short_circuit_and_sensor_timeout() {
    let h = Harness::new(Backend::Sqlite).await.unwrap();
    let upstream = dag("up", daily(), vec![job("produce", &[])]);
    let downstream = dag(
        "down",
        daily(),
        vec![
            wait_on("wait_for__produce", "up", "produce", None, 3600),
            wait_on(
                "wait_for__old",
                "up",
                "never_runs",
                Some("2026-01-01"),
                3600,
            ),
            job("consume", &["wait_for__produce", "wait_for__old"]),
        ],
    );
    let stuck = dag(
        "stuck",
        daily(),
        vec![wait_on("wait_for__nothing", "up", "never_runs", None, 120)],
    );
    h.store
        .sync_dags(&[upstream, downstream, stuck], h.clock.now_ms())
        .await
        .unwrap();
    h.scheduler.tick().await.unwrap();
    // The ended dependency is met at once; the live one waits for `up`.
    let run = "scheduled__2026-11-20T00:00:00Z";
    let state = |tis: &[chronoflow_scheduler::store::TaskInstanceRow], t: &str| {
        tis.iter().find(|x| x.task_id == t).unwrap().state.clone()
    };
    let tis = h.store.task_instances("down", run).await.unwrap();
    assert_eq!(state(&tis, "wait_for__old"), "success");
    assert_eq!(state(&tis, "wait_for__produce"), "running");
    h.worker.run_once().await.unwrap(); // runs up.produce
    h.advance_s(60);
    h.scheduler.tick().await.unwrap();
    let tis = h.store.task_instances("down", run).await.unwrap();
    assert_eq!(state(&tis, "wait_for__produce"), "success");
    assert_eq!(state(&tis, "consume"), "queued");
    // The stuck sensor times out after 120 s: failed, no retry.
    h.advance_s(61);
    h.scheduler.tick().await.unwrap();
    let tis = h.store.task_instances("stuck", run).await.unwrap();
    assert_eq!(state(&tis, "wait_for__nothing"), "failed");
    assert!(
        tis[0]
            .error
            .as_deref()
            .unwrap()
            .contains("sensor timed out after 120 s"),
        "{tis:?}"
    );
    assert_eq!(
        h.store.runs(Some("stuck"), None, 1).await.unwrap()[0].state,
        "failed"
    );
}

/// Metadata upload runs only for configs whose content hash changed since the last successful
/// upload; with nothing changed the task is `skipped`.
#[tokio::test]
async fn metadata_upload_only_when_the_content_hash_changed() {
    let h = Harness::new(Backend::Sqlite).await.unwrap();
    let job_ref = |hash: &str| JobRef {
        job: "team.x/metadata-upload".into(),
        config: "team.x".into(),
        mode: "metadata-upload".into(),
        team: "team".into(),
        conf_path: "compiled/joins/team/x".into(),
        content_hash: hash.into(),
    };
    let spec = |hash: &str| {
        dag(
            "chronon_metadata",
            Timetable::Interval { minutes: 10 },
            vec![TaskSpec {
                task_id: "metadata_upload__team".into(),
                upstream: vec![],
                retries: 1,
                retry_delay_seconds: 60,
                execution_timeout_seconds: None,
                action: Action::MetadataUpload {
                    jobs: vec![job_ref(hash)],
                },
            }],
        )
    };
    let mut states = Vec::new();
    for hash in ["aaaa", "aaaa", "bbbb"] {
        h.store
            .sync_dags(&[spec(hash)], h.clock.now_ms())
            .await
            .unwrap();
        h.scheduler.tick().await.unwrap();
        h.worker.run_once().await.unwrap();
        let run = h
            .store
            .runs(Some("chronon_metadata"), None, 1)
            .await
            .unwrap()
            .remove(0);
        states.push(
            h.store
                .task_instances("chronon_metadata", &run.run_id)
                .await
                .unwrap()[0]
                .state
                .clone(),
        );
        h.advance_s(600);
    }
    assert_eq!(states, ["success", "skipped", "success"]);
    let uploaded = h
        .store
        .uploaded_hashes(&["team.x/metadata-upload".to_owned()])
        .await
        .unwrap();
    assert_eq!(uploaded["team.x/metadata-upload"], "bbbb");
}
