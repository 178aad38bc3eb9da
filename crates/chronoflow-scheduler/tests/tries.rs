//! Tries as operators see them: schema upgrades keep old stores, what each try used, the job
//! history in the warehouse, marking and stopping task instances, and logs read from an offset.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array, StringArray};
use chronoflow_config::PartitionDate;
use chronoflow_engine::{TableName, Warehouse};
use chronoflow_scheduler::SchedulerError;
use chronoflow_scheduler::api::{self, ApiState};
use chronoflow_scheduler::clock::{Clock, FakeClock, SystemClock};
use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::executor::{CommandExecutor, Executor, Executors, NoopExecutor, TaskRun};
use chronoflow_scheduler::failpoint::FailPoints;
use chronoflow_scheduler::history::{JOB_RUNS_TABLE, JobRunWriter, TryHistory};
use chronoflow_scheduler::metrics::Metrics;
use chronoflow_scheduler::scheduler::Scheduler;
use chronoflow_scheduler::spec::{Action, DagSpec, JobRef, TaskSpec};
use chronoflow_scheduler::state::TaskState;
use chronoflow_scheduler::store::Store;
use chronoflow_scheduler::timetable::Timetable;
use chronoflow_scheduler::worker::Worker;
use sqlx::Connection;

/// 2026-11-21T00:30:00Z.
const START: i64 = 1_795_221_000_000;
const RUN: &str = "scheduled__2026-11-20T00:00:00Z";

/// The PostgreSQL server tests may use: `None` (skip) without `DATABASE_URL`, except under
/// CI, where a missing service is a failure.
fn postgres_base() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but DATABASE_URL is not set: the PostgreSQL runs cannot be skipped")
        }
        Err(_) => {
            eprintln!("DATABASE_URL is not set: skipping the PostgreSQL run");
            None
        }
    }
}

/// A fresh PostgreSQL database for one test.
async fn fresh_postgres(base: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "chronoflow_tries_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
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
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

/// Builds a store as chronoflow's schema version 1 left it, with a run, a task and a finished
/// try in it.
async fn create_v1_store(url: &str) {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    let v1 = include_str!("../src/store/schema.sql");
    let mut statements: Vec<String> = v1
        .split(';')
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|s| !s.trim().is_empty())
        .collect();
    statements.extend([
        "CREATE TABLE chronoflow_schema (version BIGINT NOT NULL, applied_ms BIGINT NOT NULL)".into(),
        "INSERT INTO chronoflow_schema VALUES (1, 0)".into(),
        "INSERT INTO dags VALUES ('d', 1, 'team', 0, 0, NULL, 0)".into(),
        format!("INSERT INTO dag_runs VALUES ('d', '{RUN}', 1, 'scheduled', 0, '2026-11-20', '2026-11-20', '2026-11-20', 'success', 0, 0, 0, 1, 2)"),
        format!("INSERT INTO task_instances VALUES ('d', '{RUN}', 'a', 1, 'team', 0, 'success', 1, 2, 0, 0, '2026-11-20', '2026-11-20', '2026-11-20', 1, 1, 1, 2, 2, NULL, 'w1', NULL)"),
        format!("INSERT INTO task_tries VALUES ('d', '{RUN}', 'a', 1, 'w1', 'success', 1, 2, NULL, '/logs/1.log')"),
        "INSERT INTO streaming_jobs VALUES ('t.gb/streaming', 'w1', 'h', 7, 1, '/logs/s.log')".into(),
    ]);
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

async fn a_v1_store_upgrades_in_place(url: &str) {
    create_v1_store(url).await;
    let store = Store::open(url).await.unwrap();
    // The old rows are intact, and the new columns are there (empty).
    let run = store.run("d", RUN).await.unwrap();
    assert_eq!((run.state.as_str(), run.ended_ms), ("success", Some(2)));
    let tries = store.tries("d", RUN, "a").await.unwrap();
    assert_eq!(tries.len(), 1);
    let t = &tries[0];
    assert_eq!(
        (
            t.state.as_str(),
            t.worker_id.as_str(),
            t.log_path.as_deref()
        ),
        ("success", "w1", Some("/logs/1.log"))
    );
    assert_eq!((t.exit_code, t.cpu_ms, t.max_rss_kb), (None, None, None));
    // A detached job's row from before stream supervision (v3) reads as running, never stale.
    let stream = store
        .streaming_job("t.gb/streaming")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stream.state.as_str(), stream.restarts, stream.updated_ms),
        ("running", 0, None)
    );
    assert_eq!(stream.observed_state(i64::MAX), "running");
    drop(store);

    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    for sql in [
        "SELECT exit_code, cpu_ms, max_rss_kb FROM task_tries",
        "SELECT token_id, name, team, role, secret_hash, created_ms, revoked_ms, last_used_ms FROM api_tokens",
        "SELECT session_hash, token_id, csrf, created_ms, expires_ms FROM ui_sessions",
        "SELECT join_name, team, ds, figures_json, updated_ms FROM consistency_gauges",
    ] {
        sqlx::query(sql).fetch_all(&mut c).await.unwrap();
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM chronoflow_schema ORDER BY version")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3, 4]);
    c.close().await.unwrap();

    // Opening again applies nothing more; a fresh store gets every step.
    Store::open(url).await.unwrap();
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM chronoflow_schema")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 4);
}

#[tokio::test]
async fn sqlite_v1_store_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("v1.db").display());
    a_v1_store_upgrades_in_place(&url).await;
}

#[tokio::test]
async fn postgres_v1_store_upgrades_in_place() {
    let Some(base) = postgres_base() else { return };
    a_v1_store_upgrades_in_place(&fresh_postgres(&base).await).await;
}

fn job(task_id: &str, upstream: &[&str], retries: u32) -> TaskSpec {
    TaskSpec {
        task_id: task_id.into(),
        upstream: upstream.iter().map(|s| s.to_string()).collect(),
        retries,
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

fn dag(tasks: Vec<TaskSpec>) -> DagSpec {
    DagSpec {
        dag_id: "d".into(),
        kind: "join".into(),
        team: Some("team".into()),
        timetable: Timetable::Cron {
            expr: "0 0 * * *".into(),
        },
        catchup: false,
        fills_missing: true,
        start_date: None,
        max_active_runs: 1,
        concurrency: 100,
        tasks,
        downstream_index: Default::default(),
    }
}

/// A config whose every job runs `argv` as a command.
fn command_config(argv: &[&str], heartbeat_s: u64) -> Arc<SchedulerConfig> {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    Arc::new(
        SchedulerConfig::parse(&format!(
            "heartbeat_interval_seconds = {heartbeat_s}\nheartbeat_timeout_seconds = 60\n\
             default_executor = \"cmd\"\n[executors.cmd]\nkind = \"command\"\nargv = [{}]\n",
            argv.join(", ")
        ))
        .unwrap(),
    )
}

fn task_run(dir: &std::path::Path, task_id: &str) -> TaskRun {
    let Action::Job(job) = job(task_id, &[], 0).action else {
        unreachable!()
    };
    TaskRun {
        dag_id: "d".into(),
        run_id: RUN.into(),
        task_id: task_id.into(),
        try_number: 1,
        ds: "2026-11-20".into(),
        start_ds: "2026-11-20".into(),
        end_ds: "2026-11-20".into(),
        job,
        log_path: dir.join(format!("{task_id}.log")),
    }
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|s| s != "Z" && s != "X")
        })
        .unwrap_or(false)
}

async fn read_pid(path: &std::path::Path) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The command executor measures its child with `wait4`: exit status (negative for a
/// signal), CPU and peak memory; a dropped try kills the child's whole process group.
#[tokio::test]
async fn command_tries_report_exit_status_cpu_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let run = |script: &str| {
        CommandExecutor::new(
            vec!["sh".into(), "-c".into(), script.into()],
            Default::default(),
            None,
            "dev".into(),
        )
    };
    let t = task_run(dir.path(), "a");

    let busy = run("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exit 3");
    let report = busy.run(&t).await;
    let err = report.result.unwrap_err();
    assert!(err.contains("exited with status 3"), "{err}");
    let usage = report.usage.unwrap();
    assert_eq!(usage.exit_code, Some(3));
    assert!(usage.cpu_ms.unwrap() >= 50, "{usage:?}");
    assert!(usage.max_rss_kb.unwrap() > 0, "{usage:?}");

    let report = run("kill -9 $$").run(&t).await;
    assert!(report.result.unwrap_err().contains("killed by signal 9"));
    assert_eq!(report.usage.unwrap().exit_code, Some(-9));

    let report = run("true").run(&t).await;
    assert_eq!(report.result, Ok(()));
    assert_eq!(report.usage.unwrap().exit_code, Some(0));

    // A try dropped (timed out, stopped) takes what it started with it.
    let pidfile = dir.path().join("grandchild.pid");
    let spawner = run(&format!("sleep 30 & echo $! > {}; wait", pidfile.display()));
    let grandchild = {
        let running = spawner.run(&t);
        tokio::pin!(running);
        tokio::select! {
            pid = read_pid(&pidfile) => pid,
            _ = &mut running => unreachable!("the command runs 30 s"),
        }
    };
    // The try was dropped at the end of the block above.
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(grandchild) {
        assert!(
            Instant::now() < deadline,
            "the try's process group outlived it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Setup {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    scheduler: Scheduler,
    worker: Arc<Worker>,
    history: JobRunWriter,
    warehouse: Warehouse,
}

async fn setup(config: Arc<SchedulerConfig>, clock: Arc<dyn Clock>, tasks: Vec<TaskSpec>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open_sqlite(&dir.path().join("state.db"))
            .await
            .unwrap(),
    );
    let metrics = Arc::new(Metrics::default());
    let failpoints = Arc::new(FailPoints::default());
    let scheduler = Scheduler::new(
        store.clone(),
        clock.clone(),
        config.clone(),
        None,
        metrics.clone(),
        failpoints.clone(),
    );
    let warehouse_uri = dir.path().join("warehouse").display().to_string();
    let history = JobRunWriter::start(
        Warehouse::open(&warehouse_uri).unwrap(),
        Duration::from_secs(60),
    );
    let worker = Worker::new(
        "w1".into(),
        store.clone(),
        clock.clone(),
        config.clone(),
        Executors::new(config, Arc::new(NoopExecutor::default()), None),
        2,
        dir.path().join("logs"),
        metrics,
        failpoints,
    )
    .with_history(Arc::new(history.clone()));
    store
        .sync_dags(&[dag(tasks)], clock.now_ms())
        .await
        .unwrap();
    scheduler.tick().await.unwrap();
    Setup {
        store,
        scheduler,
        worker: Arc::new(worker),
        history,
        warehouse: Warehouse::open(&warehouse_uri).unwrap(),
        dir,
    }
}

fn strings(batch: &arrow::array::RecordBatch, column: &str) -> Vec<Option<String>> {
    let a = batch
        .column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_owned()))
        .collect()
}

fn ints(batch: &arrow::array::RecordBatch, column: &str) -> Vec<Option<i64>> {
    let a = batch
        .column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect()
}

/// Marking a failed task success lets its downstream (failed upstream) run, and the run
/// succeed, with the run's counters in step; every try lands in `chronoflow.job_runs` with
/// what it used.
#[tokio::test]
async fn mark_success_of_a_failed_task_runs_its_downstream_and_history_has_every_try() {
    let clock = FakeClock::new(START);
    // `a` fails (exit 3), `b` succeeds.
    let config = command_config(&["sh", "-c", "test {task_id} != a || exit 3"], 5);
    let s = setup(
        config,
        Arc::new(clock.clone()),
        vec![job("a", &[], 0), job("b", &["a"], 0)],
    )
    .await;
    assert_eq!(s.worker.run_once().await.unwrap(), 1);
    let state = |t: &'static str| {
        let store = s.store.clone();
        async move { store.task_instance("d", RUN, t).await.unwrap().state }
    };
    assert_eq!(
        (state("a").await, state("b").await),
        ("failed".into(), "upstream_failed".into())
    );
    let run = s.store.run("d", RUN).await.unwrap();
    assert_eq!(
        (run.state.as_str(), run.unfinished, run.failed),
        ("failed", 0, 2)
    );
    let tries = s.store.tries("d", RUN, "a").await.unwrap();
    assert_eq!(tries[0].exit_code, Some(3));
    assert!(
        tries[0].cpu_ms.is_some() && tries[0].max_rss_kb.unwrap() > 0,
        "{tries:?}"
    );

    clock.advance_ms(1000);
    let previous = s
        .store
        .mark("d", RUN, "a", TaskState::Success, clock.now_ms())
        .await
        .unwrap();
    assert_eq!(previous, TaskState::Failed);
    assert_eq!(
        (state("a").await, state("b").await),
        ("success".into(), "queued".into())
    );
    let run = s.store.run("d", RUN).await.unwrap();
    assert_eq!(
        (run.state.as_str(), run.unfinished, run.failed),
        ("running", 1, 0)
    );

    clock.advance_ms(1000);
    assert_eq!(s.worker.run_once().await.unwrap(), 1);
    let run = s.store.run("d", RUN).await.unwrap();
    assert_eq!(
        (run.state.as_str(), run.unfinished, run.failed),
        ("success", 0, 0)
    );

    // Marked failed, the run fails; marked success again, it succeeds.
    s.store
        .mark("d", RUN, "b", TaskState::Failed, clock.now_ms())
        .await
        .unwrap();
    let run = s.store.run("d", RUN).await.unwrap();
    assert_eq!(
        (run.state.as_str(), run.unfinished, run.failed),
        ("failed", 0, 1)
    );
    s.store
        .mark("d", RUN, "b", TaskState::Success, clock.now_ms())
        .await
        .unwrap();
    let run = s.store.run("d", RUN).await.unwrap();
    assert_eq!(
        (run.state.as_str(), run.unfinished, run.failed),
        ("success", 0, 0)
    );
    // Nothing left to do for the scheduler's safety net either.
    assert_eq!(s.store.reconcile(clock.now_ms()).await.unwrap(), 0);
    let _ = &s.scheduler;

    // Unknown names and bad states are client errors.
    let err = s
        .store
        .mark("d", RUN, "zz", TaskState::Success, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, SchedulerError::UnknownTask { .. }), "{err}");
    let err = s
        .store
        .mark("d", "nope", "a", TaskState::Success, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, SchedulerError::UnknownRun { .. }), "{err}");
    let err = s
        .store
        .mark("d", RUN, "a", TaskState::Queued, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SchedulerError::InvalidRequest { .. }),
        "{err}"
    );

    // The history: one row per try, in the partition of the day the try ended.
    s.history.flush().await;
    let table = TableName::parse(JOB_RUNS_TABLE).unwrap();
    let batches = s
        .warehouse
        .read_partition(&table, PartitionDate::parse("2026-11-21").unwrap())
        .await
        .unwrap();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(
        strings(&batch, "task_id"),
        [Some("a".into()), Some("b".into())]
    );
    assert_eq!(
        strings(&batch, "state"),
        [Some("failed".into()), Some("success".into())]
    );
    assert_eq!(
        strings(&batch, "job_type"),
        [Some("backfill".into()), Some("backfill".into())]
    );
    assert_eq!(
        strings(&batch, "config"),
        [Some("team.a".into()), Some("team.b".into())]
    );
    assert_eq!(
        strings(&batch, "team"),
        [Some("team".into()), Some("team".into())]
    );
    assert_eq!(
        strings(&batch, "worker_id"),
        [Some("w1".into()), Some("w1".into())]
    );
    assert_eq!(ints(&batch, "try_number"), [Some(1), Some(1)]);
    assert_eq!(ints(&batch, "exit_code"), [Some(3), Some(0)]);
    assert_eq!(ints(&batch, "start_ms"), [Some(START), Some(START + 2000)]);
    assert_eq!(ints(&batch, "end_ms"), [Some(START), Some(START + 2000)]);
    assert_eq!(ints(&batch, "duration_ms"), [Some(0), Some(0)]);
    assert!(ints(&batch, "cpu_ms").iter().all(Option::is_some));
    assert!(ints(&batch, "max_rss_kb").iter().all(|k| k.unwrap() > 0));
    let errors = strings(&batch, "error");
    assert!(
        errors[0]
            .as_deref()
            .unwrap()
            .contains("exited with status 3"),
        "{errors:?}"
    );
    assert_eq!(errors[1], None);
    assert_eq!(s.history.dropped(), 0);

    // The same over HTTP: mark, stop and logs with their client errors.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "http://{}/api/v1/dags/d/runs/{RUN}/tasks",
        listener.local_addr().unwrap()
    );
    let (stop_api, stopped) = tokio::sync::watch::channel(false);
    let api_state = ApiState {
        store: s.store.clone(),
        clock: Arc::new(clock.clone()),
        metrics: Arc::new(Metrics::default()),
        consistency: None,
    };
    let server = tokio::spawn(api::serve(listener, api_state, None, stopped));
    let http = reqwest::Client::new();
    let post = |path: String, body: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .post(path)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = post(format!("{base}/a/mark"), r#"{"state":"failed"}"#).await;
    assert_eq!(
        (status, &body["previous"], &body["state"]),
        (200, &"success".into(), &"failed".into())
    );
    assert_eq!(state("b").await, "success", "what already ran stays");
    let (status, body) = post(format!("{base}/a/mark"), r#"{"state":"maybe"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("maybe"), "{body}");
    let (status, _) = post(format!("{base}/a/mark"), r#"{"nope":1}"#).await;
    assert_eq!(status, 400);
    let (status, _) = post(format!("{base}/zz/mark"), r#"{"state":"success"}"#).await;
    assert_eq!(status, 404);
    let (status, body) = post(format!("{base}/a/stop"), "").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not running"),
        "{body}"
    );
    let (status, _) = post(format!("{base}/zz/stop"), "").await;
    assert_eq!(status, 404);

    // Logs: the header line only at offset 0; offsets count the file's bytes.
    let file = std::fs::read(
        s.dir
            .path()
            .join(format!("logs/d/{}/a/1.log", RUN.replace(':', "_"))),
    )
    .unwrap();
    assert!(!file.is_empty());
    let get = |query: String| {
        let http = http.clone();
        let url = format!("{base}/a/logs{query}");
        async move {
            let r = http.get(url).send().await.unwrap();
            let header = |name: &str| {
                r.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            let (offset, complete) = (header("x-log-offset"), header("x-log-complete"));
            (
                r.status().as_u16(),
                offset,
                complete,
                r.bytes().await.unwrap().to_vec(),
            )
        }
    };
    let (status, offset, complete, text) = get("?try=1".into()).await;
    assert_eq!(status, 200);
    assert!(
        text.starts_with(b"# try 1 on w1 (failed)"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    assert!(text.ends_with(&file));
    assert_eq!(offset, Some(file.len().to_string()));
    assert_eq!(complete.as_deref(), Some("true"));
    let (status, offset, complete, text) = get("?try=1&offset=2".into()).await;
    assert_eq!((status, text.as_slice()), (200, &file[2..]));
    assert_eq!(
        (offset, complete.as_deref()),
        (Some(file.len().to_string()), Some("true"))
    );
    let (status, _, _, text) = get(format!("?try=1&offset={}", file.len())).await;
    assert_eq!((status, text.len()), (200, 0));
    for bad in ["-1", "abc", "99999999"] {
        let (status, _, _, text) = get(format!("?try=1&offset={bad}")).await;
        assert_eq!(
            status,
            400,
            "offset {bad}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    stop_api.send(true).unwrap();
    server.await.unwrap().unwrap();
}

/// Stopping a running try: the instance fails for good at once, and the worker kills the
/// command within its heartbeat interval; the log of the running try can be followed.
#[tokio::test]
async fn stop_kills_the_running_command_within_a_heartbeat() {
    let pid_dir = tempfile::tempdir().unwrap();
    let pidfile = pid_dir.path().join("job.pid");
    let script = format!(
        "echo started; echo $$ > {}; exec sleep 30",
        pidfile.display()
    );
    let config = command_config(&["sh", "-c", &script], 1);
    let s = setup(
        config,
        Arc::new(SystemClock),
        vec![job("a", &[], 3), job("b", &["a"], 0)],
    )
    .await;
    let run_id = s.store.runs(Some("d"), None, 1).await.unwrap()[0]
        .run_id
        .clone();
    let (shutdown, stopping) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(s.worker.clone().run(stopping));
    let pid = read_pid(&pidfile).await;
    assert!(alive(pid));

    // While it runs, its log can be followed from an offset.
    let chunk = api::read_log_from(&s.store, "d", &run_id, "a", None, 0)
        .await
        .unwrap();
    assert!(!chunk.complete);
    let text = String::from_utf8(chunk.text).unwrap();
    assert!(text.starts_with("# try 1 on w1 (running)"), "{text}");
    assert!(text.contains("started"), "{text}");
    let next = api::read_log_from(&s.store, "d", &run_id, "a", None, chunk.next_offset)
        .await
        .unwrap();
    assert_eq!((next.text.len(), next.complete), (0, false));

    s.store
        .stop("d", &run_id, "a", SystemClock.now_ms())
        .await
        .unwrap();
    let stopped = Instant::now();
    let a = s.store.task_instance("d", &run_id, "a").await.unwrap();
    assert_eq!(
        (a.state.as_str(), a.error.as_deref()),
        ("failed", Some("stopped by request"))
    );
    assert_eq!(
        s.store
            .task_instance("d", &run_id, "b")
            .await
            .unwrap()
            .state,
        "upstream_failed"
    );
    assert_eq!(s.store.run("d", &run_id).await.unwrap().state, "failed");
    while alive(pid) {
        assert!(
            stopped.elapsed() < Duration::from_millis(2500),
            "the command still runs {:?} after the stop",
            stopped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tries = s.store.tries("d", &run_id, "a").await.unwrap();
    assert_eq!(tries.len(), 1, "no retry");
    assert_eq!(
        (tries[0].state.as_str(), tries[0].error.as_deref()),
        ("failed", Some("stopped by request"))
    );
    let chunk = api::read_log_from(&s.store, "d", &run_id, "a", None, 0)
        .await
        .unwrap();
    assert!(chunk.complete);

    // Not running any more: nothing to stop.
    let err = s
        .store
        .stop("d", &run_id, "a", SystemClock.now_ms())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SchedulerError::InvalidRequest { .. }),
        "{err}"
    );

    shutdown.send(true).unwrap();
    worker.await.unwrap().unwrap();
    // The stopped try is in the history too (the worker flushed it when it stopped).
    let table = TableName::parse(JOB_RUNS_TABLE).unwrap();
    let ds = chronoflow_engine::window::date_of(tries[0].ended_ms.unwrap());
    let batches = s.warehouse.read_partition(&table, ds).await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert_eq!(strings(&batches[0], "state"), [Some("failed".into())]);
    assert_eq!(
        strings(&batches[0], "error"),
        [Some("stopped by request".into())]
    );
}
