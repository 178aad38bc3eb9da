//! Stream supervision: the keep-alive hands streaming jobs of in-process teams to the worker's
//! supervisor, which starts, leaves alone, restarts with backoff, alerts, and stops them when
//! re-planning drops their config or the worker shuts down. The child-process launcher runs
//! real processes (exit codes, signals, SIGTERM then SIGKILL, PR_SET_PDEATHSIG).
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronoflow_scheduler::clock::{Clock, FakeClock};
use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::executor::{Executors, NoopExecutor};
use chronoflow_scheduler::failpoint::FailPoints;
use chronoflow_scheduler::metrics::Metrics;
use chronoflow_scheduler::scheduler::Scheduler;
use chronoflow_scheduler::spec::{Action, DagSpec, JobRef, TaskSpec};
use chronoflow_scheduler::store::{Store, StreamingJob};
use chronoflow_scheduler::streams::{
    ChildProcessLauncher, Ensured, StreamLauncher, StreamSettings, StreamSupervisor,
};
use chronoflow_scheduler::timetable::Timetable;
use chronoflow_scheduler::worker::Worker;
use futures::future::BoxFuture;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// 2026-11-21T00:30:00Z.
const START: i64 = 1_795_221_000_000;
const DAG: &str = "chronon_gb_streaming_team";
const JOB: &str = "team.events.v1/streaming";

// ---------------------------------------------------------------------------------------------
// A launcher that records what it is asked and fails on demand.

enum Behavior {
    /// Crashes at once with this error.
    Fail(&'static str),
    /// Writes a status file every 20 ms until stopped.
    Run,
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Behavior>>,
    starts: Mutex<Vec<Instant>>,
    stops: AtomicUsize,
}

struct FakeLauncher(Arc<Fake>);

impl Fake {
    fn new(script: Vec<Behavior>) -> Arc<Fake> {
        Arc::new(Fake {
            script: Mutex::new(script.into()),
            ..Fake::default()
        })
    }

    fn starts(&self) -> Vec<Instant> {
        self.starts.lock().unwrap().clone()
    }
}

impl StreamLauncher for FakeLauncher {
    fn run(
        &self,
        job: JobRef,
        status_file: PathBuf,
        _log_path: PathBuf,
        mut stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let fake = self.0.clone();
        Box::pin(async move {
            fake.starts.lock().unwrap().push(Instant::now());
            let behavior = fake.script.lock().unwrap().pop_front();
            match behavior.unwrap_or(Behavior::Run) {
                Behavior::Fail(error) => Err(error.to_owned()),
                Behavior::Run => {
                    let mut records = 0;
                    loop {
                        records += 10;
                        let status = serde_json::json!({
                            "group_by": job.config, "topic": "events", "state": "running",
                            "pid": 4242, "updated_ms": 1, "records_read": records,
                            "rows_written": records - 1, "malformed": 1, "last_event_ms": 5,
                            "last_error": null,
                            "partitions": [{"partition": 0, "committed_offset": 7, "high_watermark": 10, "lag": 3}],
                        });
                        std::fs::write(&status_file, status.to_string()).unwrap();
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => break,
                            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                        }
                    }
                    fake.stops.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn fast() -> StreamSettings {
    StreamSettings {
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        healthy_after: Duration::from_secs(30),
        alert_after_crashes: 10,
        check_every: Duration::from_millis(50),
    }
}

fn streaming_job() -> JobRef {
    JobRef {
        job: JOB.into(),
        config: "team.events.v1".into(),
        mode: "streaming".into(),
        team: "team".into(),
        conf_path: "production/group_bys/team/events.v1".into(),
        content_hash: "h".into(),
    }
}

fn task(task_id: &str, job: JobRef) -> TaskSpec {
    TaskSpec {
        task_id: task_id.into(),
        upstream: vec![],
        retries: 0,
        retry_delay_seconds: 60,
        execution_timeout_seconds: None,
        action: Action::Job(job),
    }
}

/// The team's streaming DAG, with the stream's keep-alive task or (`false`) another job only.
fn streaming_dag(with_stream: bool) -> DagSpec {
    let tasks = if with_stream {
        vec![task("events_v1__streaming", streaming_job())]
    } else {
        let mut other = streaming_job();
        other.job = "team.other.v1/streaming".into();
        other.config = "team.other.v1".into();
        vec![task("other_v1__streaming", other)]
    };
    DagSpec {
        dag_id: DAG.into(),
        kind: "group_by_streaming".into(),
        team: Some("team".into()),
        timetable: Timetable::Interval { minutes: 10 },
        catchup: false,
        fills_missing: false,
        start_date: None,
        max_active_runs: 1,
        concurrency: 100,
        tasks,
        downstream_index: Default::default(),
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh store: SQLite in `dir`, or a new PostgreSQL database (`None`: no server to use, and
/// not under CI, where that is a failure).
async fn open_store(backend: Backend, dir: &Path) -> Option<Arc<Store>> {
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("state.db").display()),
        Backend::Postgres => {
            let base = match std::env::var("DATABASE_URL") {
                Ok(url) => url,
                Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
                    panic!(
                        "CI=true but DATABASE_URL is not set: the PostgreSQL runs cannot be skipped"
                    )
                }
                Err(_) => {
                    eprintln!("DATABASE_URL is not set: skipping the PostgreSQL run");
                    return None;
                }
            };
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "chronoflow_streams_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            );
            let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
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
    };
    Some(Arc::new(Store::open(&url).await.unwrap()))
}

fn supervisor(
    store: &Arc<Store>,
    config: &Arc<SchedulerConfig>,
    dir: &Path,
    worker_id: &str,
    launcher: Arc<dyn StreamLauncher>,
    settings: StreamSettings,
) -> Arc<StreamSupervisor> {
    Arc::new(
        StreamSupervisor::new(
            worker_id.into(),
            store.clone(),
            config.clone(),
            dir.join("streaming"),
            launcher,
        )
        .with_settings(settings),
    )
}

struct Setup {
    store: Arc<Store>,
    clock: FakeClock,
    scheduler: Scheduler,
    worker: Worker,
    streams: Arc<StreamSupervisor>,
}

fn setup(
    store: Arc<Store>,
    dir: &Path,
    worker_id: &str,
    launcher: Arc<dyn StreamLauncher>,
) -> Setup {
    let clock = FakeClock::new(START);
    // No executor configured: every team is on the in-process one.
    let config = Arc::new(SchedulerConfig::default());
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
    let streams = supervisor(&store, &config, dir, worker_id, launcher, fast());
    let worker = Worker::new(
        worker_id.into(),
        store.clone(),
        Arc::new(clock.clone()),
        config.clone(),
        Executors::new(config, Arc::new(NoopExecutor::default()), None),
        1,
        dir.join("logs"),
        metrics,
        failpoints,
    )
    .with_streams(streams.clone());
    Setup {
        store,
        clock,
        scheduler,
        worker,
        streams,
    }
}

impl Setup {
    /// One keep-alive run: the scheduler queues it, the worker runs it.
    async fn keep_alive(&self) {
        self.scheduler.tick().await.unwrap();
        assert_eq!(
            self.worker.run_once().await.unwrap(),
            1,
            "one keep-alive ran"
        );
    }

    /// The last keep-alive's log.
    async fn last_log(&self) -> String {
        let run = &self.store.runs(Some(DAG), None, 1).await.unwrap()[0];
        chronoflow_scheduler::api::read_log(
            &self.store,
            DAG,
            &run.run_id,
            "events_v1__streaming",
            None,
        )
        .await
        .unwrap()
    }
}

async fn row(store: &Store) -> Option<StreamingJob> {
    store.streaming_job(JOB).await.unwrap()
}

/// Waits (up to 5 s) until `check` holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The supervisor through the worker's keep-alive.

/// The first keep-alive starts the stream; two crashes are restarted after 100 then 200 ms; the
/// next keep-alive leaves the running stream alone; a re-plan without the config deletes its
/// row, and the supervisor stops the stream.
async fn keep_alive_lifecycle(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(store) = open_store(backend, dir.path()).await else {
        return;
    };
    let fake = Fake::new(vec![
        Behavior::Fail("boom 1"),
        Behavior::Fail("boom 2"),
        Behavior::Run,
    ]);
    let s = setup(
        store,
        dir.path(),
        "w1",
        Arc::new(FakeLauncher(fake.clone())),
    );
    s.store
        .sync_dags(&[streaming_dag(true)], s.clock.now_ms())
        .await
        .unwrap();

    s.keep_alive().await;
    assert!(
        s.last_log()
            .await
            .contains("started team.events.v1/streaming")
    );
    let started = row(&s.store)
        .await
        .expect("the keep-alive recorded the stream");
    assert_eq!(started.worker_id, "w1");
    until("three starts and a running row", || async {
        fake.starts().len() == 3 && row(&s.store).await.unwrap().state == "running"
    })
    .await;
    let starts = fake.starts();
    let gaps = [starts[1] - starts[0], starts[2] - starts[1]];
    assert!(
        gaps[0] >= Duration::from_millis(100) && gaps[1] >= Duration::from_millis(200),
        "backoff doubles: {gaps:?}"
    );
    assert!(gaps[1] < Duration::from_millis(1500), "{gaps:?}");
    let running = row(&s.store).await.unwrap();
    assert_eq!(
        (running.restarts, running.last_exit.as_deref()),
        (2, Some("boom 2"))
    );
    assert_eq!(running.pid, 4242, "the pid of the status file");
    let status = running.status.clone().unwrap();
    assert_eq!(status["group_by"], "team.events.v1");
    assert!(status["records_read"].as_i64().unwrap() >= 10);
    assert!(running.is_up(chronoflow_scheduler::clock::SystemClock.now_ms()));

    // Ten minutes later: the keep-alive finds it supervised here and leaves it alone.
    s.clock.advance_ms(600_000);
    s.keep_alive().await;
    assert!(
        s.last_log()
            .await
            .contains("supervised by this worker (running)"),
        "{}",
        s.last_log().await
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(fake.starts().len(), 3, "not started again");
    assert_eq!(s.streams.supervised().await, [JOB]);

    // The config stops being a streaming GroupBy. A keep-alive of the current version is
    // queued first; then re-planning deletes the stream's row and the supervisor stops the
    // stream at its next check.
    s.clock.advance_ms(600_000);
    s.scheduler.tick().await.unwrap();
    let report = s
        .store
        .sync_dags(&[streaming_dag(false)], s.clock.now_ms())
        .await
        .unwrap();
    assert_eq!(report.streams_removed, [JOB]);
    until("the stream stopped", || async {
        fake.stops.load(Ordering::SeqCst) == 1 && s.streams.supervised().await.is_empty()
    })
    .await;
    assert!(row(&s.store).await.is_none(), "a lost row is not rewritten");

    // The keep-alive queued before the re-plan (of the old version) does not bring it back.
    assert_eq!(s.worker.run_once().await.unwrap(), 1);
    let log = s.last_log().await;
    assert!(log.contains("is no longer planned"), "{log}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.starts().len(), 3);
    assert!(row(&s.store).await.is_none());
}

#[tokio::test]
async fn keep_alive_starts_restarts_leaves_alone_and_stops_on_replan_sqlite() {
    keep_alive_lifecycle(Backend::Sqlite).await;
}

#[tokio::test]
async fn keep_alive_starts_restarts_leaves_alone_and_stops_on_replan_postgres() {
    keep_alive_lifecycle(Backend::Postgres).await;
}

/// A stream of another live worker is left alone; once that worker stops heartbeating, the
/// keep-alive takes it over. A worker whose row was taken over stops its stream without
/// touching the new owner's row.
#[tokio::test]
async fn streams_of_live_workers_are_theirs_and_dead_workers_streams_are_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(Backend::Sqlite, dir.path()).await.unwrap();
    let fake = Fake::new(vec![]);
    let s = setup(
        store,
        dir.path(),
        "w1",
        Arc::new(FakeLauncher(fake.clone())),
    );
    s.store
        .sync_dags(&[streaming_dag(true)], s.clock.now_ms())
        .await
        .unwrap();
    let now = s.clock.now_ms();
    s.store
        .register_worker("w0", "elsewhere", 77, now)
        .await
        .unwrap();
    s.store
        .claim_stream(JOB, "w0", "elsewhere", 77, now, "/w0/stream.log")
        .await
        .unwrap();

    s.keep_alive().await;
    assert!(
        s.last_log()
            .await
            .contains("runs on worker w0 (pid 77 on elsewhere"),
        "{}",
        s.last_log().await
    );
    assert!(fake.starts().is_empty());

    // w0 stops heartbeating: past the heartbeat timeout, w1 takes the stream.
    s.clock.advance_ms(600_000);
    s.keep_alive().await;
    let log = s.last_log().await;
    assert!(
        log.contains("was worker w0's, which is gone: taking it over"),
        "{log}"
    );
    until("w1 runs it", || async {
        fake.starts().len() == 1 && row(&s.store).await.unwrap().state == "running"
    })
    .await;
    assert_eq!(row(&s.store).await.unwrap().worker_id, "w1");

    // Another worker claims it (it found w1 dead, say): w1 stops, and leaves w2's row alone.
    s.store
        .claim_stream(JOB, "w2", "other", 5, now, "/w2/stream.log")
        .await
        .unwrap();
    until("w1 stopped", || async {
        s.streams.supervised().await.is_empty()
    })
    .await;
    assert_eq!(fake.stops.load(Ordering::SeqCst), 1);
    let taken = row(&s.store).await.unwrap();
    assert_eq!(
        (taken.worker_id.as_str(), taken.state.as_str()),
        ("w2", "starting")
    );
}

/// A worker starting takes back the streams whose owner is gone (a dead process on this machine,
/// a stopped worker) without waiting for a keep-alive, and leaves a live worker's alone; shutting
/// down stops them.
#[tokio::test]
async fn a_starting_worker_resumes_streams_without_a_live_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(Backend::Sqlite, dir.path()).await.unwrap();
    let fake = Fake::new(vec![]);
    let s = setup(
        store,
        dir.path(),
        "w1",
        Arc::new(FakeLauncher(fake.clone())),
    );
    let mut other = streaming_job();
    other.job = "team.other.v1/streaming".into();
    let mut spec = streaming_dag(true);
    spec.tasks.push(task("other_v1__streaming", other.clone()));
    s.store.sync_dags(&[spec], s.clock.now_ms()).await.unwrap();
    let now = s.clock.now_ms();
    // w0 ran on this machine and was killed: its process is gone.
    let mut gone = std::process::Command::new("/bin/true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let here = chronoflow_scheduler::worker::hostname();
    s.store
        .register_worker("w0", &here, dead_pid, now)
        .await
        .unwrap();
    s.store
        .claim_stream(JOB, "w0", &here, 1, now, "/w0.log")
        .await
        .unwrap();
    // w9 runs elsewhere and heartbeats.
    s.store
        .register_worker("w9", "elsewhere", 9, now)
        .await
        .unwrap();
    s.store
        .claim_stream(&other.job, "w9", "elsewhere", 9, now, "/w9.log")
        .await
        .unwrap();

    let (stop, stopped) = watch::channel(false);
    let worker = Arc::new(s.worker);
    let running = tokio::spawn(worker.clone().run(stopped));
    until("w1 resumed the dead worker's stream", || async {
        row(&s.store).await.unwrap().worker_id == "w1" && fake.starts().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.starts().len(), 1, "w9's stream is left alone");
    let theirs = s.store.streaming_job(&other.job).await.unwrap().unwrap();
    assert_eq!(theirs.worker_id, "w9");

    stop.send_replace(true);
    running.await.unwrap().unwrap();
    assert_eq!(row(&s.store).await.unwrap().state, "stopped");
    assert_eq!(fake.stops.load(Ordering::SeqCst), 1);
}

/// Shutting the worker down stops its streams; their rows read `stopped`.
#[tokio::test]
async fn shutdown_stops_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(Backend::Sqlite, dir.path()).await.unwrap();
    let fake = Fake::new(vec![]);
    let config = Arc::new(SchedulerConfig::default());
    let streams = supervisor(
        &store,
        &config,
        dir.path(),
        "w1",
        Arc::new(FakeLauncher(fake.clone())),
        fast(),
    );
    let job = streaming_job();
    assert_eq!(
        streams.ensure(&job, DAG, "t").await.unwrap(),
        Ensured::Started
    );
    assert_eq!(
        streams.ensure(&job, DAG, "t").await.unwrap(),
        Ensured::Supervised
    );
    until("running", || async {
        row(&store).await.unwrap().state == "running"
    })
    .await;
    streams.shutdown().await;
    assert_eq!(fake.stops.load(Ordering::SeqCst), 1);
    let stopped = row(&store).await.unwrap();
    assert_eq!(stopped.state, "stopped");
    assert!(!stopped.is_up(chronoflow_scheduler::clock::SystemClock.now_ms()));
    assert!(streams.supervised().await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Alerts.

/// A real webhook receiver on 127.0.0.1: every POSTed body, parsed.
async fn webhook() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    if data.len() >= end + 4 + length {
                        let body = data[end + 4..end + 4 + length].to_vec();
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                        let _ = tx.send(serde_json::from_slice(&body).unwrap());
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

/// Five crashes in a row make one alert through the team's webhook (not one per crash); once
/// the stream has run long enough, one recovery message.
#[tokio::test]
async fn one_alert_after_n_crashes_and_one_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(Backend::Sqlite, dir.path()).await.unwrap();
    let (url, mut alerts) = webhook().await;
    let config = Arc::new(
        SchedulerConfig::parse(&format!(
            "[teams.team]\nalert_webhook = \"{url}\"\n[streaming]\nalert_after_crashes = 3\n"
        ))
        .unwrap(),
    );
    let fake = Fake::new(vec![
        Behavior::Fail("boom 1"),
        Behavior::Fail("boom 2"),
        Behavior::Fail("boom 3"),
        Behavior::Fail("boom 4"),
        Behavior::Fail("boom 5"),
        Behavior::Run,
    ]);
    let settings = StreamSettings {
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(40),
        healthy_after: Duration::from_millis(500),
        check_every: Duration::from_millis(50),
        ..StreamSettings::from_config(&config.streaming)
    };
    assert_eq!(settings.alert_after_crashes, 3);
    let streams = supervisor(
        &store,
        &config,
        dir.path(),
        "w1",
        Arc::new(FakeLauncher(fake.clone())),
        settings,
    );
    streams
        .ensure(&streaming_job(), DAG, "events_v1__streaming")
        .await
        .unwrap();

    let first = tokio::time::timeout(Duration::from_secs(5), alerts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first["event"], "stream_crashing");
    assert_eq!(first["job"], JOB);
    assert_eq!(first["crashes"], 3);
    assert_eq!(
        (&first["dag_id"], &first["team"]),
        (&DAG.into(), &"team".into())
    );
    assert!(
        first["error"].as_str().unwrap().contains("boom 3"),
        "{first}"
    );
    assert!(first.get("run_id").is_none(), "{first}");

    let second = tokio::time::timeout(Duration::from_secs(5), alerts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second["event"], "stream_recovered", "{second}");
    assert_eq!(fake.starts().len(), 6, "crashes 4 and 5 made no alert");
    let running = row(&store).await.unwrap();
    assert_eq!((running.state.as_str(), running.restarts), ("running", 5));
    // Nothing more.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), alerts.recv())
            .await
            .is_err()
    );
    streams.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The child-process launcher, with real processes.

fn sh(script: &str) -> ChildProcessLauncher {
    ChildProcessLauncher::new(
        vec![
            "/bin/sh".into(),
            "-c".into(),
            script.into(),
            "sh".into(),
            "{status_file}".into(),
        ],
        Duration::from_millis(300),
    )
}

async fn run(
    launcher: &ChildProcessLauncher,
    dir: &Path,
    stop_after: Option<Duration>,
) -> (Result<(), String>, Duration) {
    let (tx, rx) = watch::channel(false);
    let started = Instant::now();
    let run = launcher.run(
        streaming_job(),
        dir.join("status.json"),
        dir.join("stream.log"),
        rx,
    );
    if let Some(after) = stop_after {
        let status = dir.join("status.json");
        tokio::spawn(async move {
            // Stop once the child wrote its status (its traps are set by then).
            while !status.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(after).await;
            tx.send_replace(true);
        });
        (run.await, started.elapsed())
    } else {
        let result = run.await;
        drop(tx);
        (result, started.elapsed())
    }
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next();
            !matches!(state, Some("Z" | "X"))
        })
        .unwrap_or(false)
}

fn status_pid(dir: &Path) -> i64 {
    let text = std::fs::read_to_string(dir.join("status.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["pid"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn child_exit_codes_and_signals_are_crashes_that_say_which() {
    let dir = tempfile::tempdir().unwrap();
    let (result, _) = run(&sh("echo consuming; exit 3"), dir.path(), None).await;
    let error = result.unwrap_err();
    assert!(error.contains("exited with status 3"), "{error}");
    assert!(error.contains("consuming"), "the output's tail: {error}");
    let log = std::fs::read_to_string(dir.path().join("stream.log")).unwrap();
    assert!(log.starts_with("$ /bin/sh -c"), "{log}");

    let (result, _) = run(&sh("kill -9 $$"), dir.path(), None).await;
    let error = result.unwrap_err();
    assert!(error.contains("killed by signal 9 (SIGKILL)"), "{error}");
    // The log is shared by the runs; an error quotes its own run's output only.
    assert!(!error.contains("consuming"), "{error}");

    let (result, _) = run(&sh("kill -SEGV $$"), dir.path(), None).await;
    assert!(result.unwrap_err().contains("SIGSEGV"));

    let missing = ChildProcessLauncher::new(vec!["/nonexistent/chronoflow".into()], Duration::ZERO);
    let (result, _) = run(&missing, dir.path(), None).await;
    assert!(result.unwrap_err().contains("was not found"));
}

#[tokio::test]
async fn a_stopped_child_gets_sigterm_then_sigkill_after_the_grace() {
    // Honors SIGTERM: stops at once.
    let dir = tempfile::tempdir().unwrap();
    let polite =
        sh(r#"trap 'exit 0' TERM; echo "{\"pid\": $$}" > "$1"; while :; do sleep 0.05; done"#);
    let (result, took) = run(&polite, dir.path(), Some(Duration::from_millis(50))).await;
    assert_eq!(result, Ok(()));
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(!alive(status_pid(dir.path())));

    // Ignores SIGTERM (so do its children): killed once the 300 ms grace passed.
    let dir = tempfile::tempdir().unwrap();
    let stubborn = sh(r#"trap '' TERM; echo "{\"pid\": $$}" > "$1"; while :; do sleep 0.05; done"#);
    let (result, took) = run(&stubborn, dir.path(), Some(Duration::from_millis(50))).await;
    assert_eq!(result, Ok(()));
    assert!(took >= Duration::from_millis(350), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(!alive(status_pid(dir.path())));
}

#[test]
fn the_chronoflow_launcher_runs_the_streaming_mode() {
    let launcher = ChildProcessLauncher::chronoflow(
        Path::new("/bin/chronoflow"),
        Path::new("/repo"),
        "/wh",
        "redis://:secret@127.0.0.1:6379",
        Some("k1:9092"),
        Duration::from_secs(10),
    );
    let argv = launcher.argv_for(&streaming_job(), Path::new("/l/status.json"));
    assert_eq!(
        argv.join(" "),
        "/bin/chronoflow run --mode streaming --conf production/group_bys/team/events.v1 --repo /repo --warehouse /wh --status-file /l/status.json --kafka-brokers k1:9092"
    );
    assert!(
        !argv.join(" ").contains("secret"),
        "the KV store goes by environment"
    );
}

/// `PR_SET_PDEATHSIG`: a stream's child dies with its worker. The worker here is a helper
/// process (this test binary, running `pdeathsig_helper`), killed with SIGKILL.
#[test]
fn a_child_dies_with_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pdeathsig_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CHRONOFLOW_STREAMS_HELPER_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = dir.path().join("status.json");
    let started = Instant::now();
    while !status.exists() || std::fs::read_to_string(&status).unwrap().trim().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the helper's child never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    let child = status_pid(dir.path());
    assert!(alive(child));
    helper.kill().unwrap();
    helper.wait().unwrap();
    let killed = Instant::now();
    while alive(child) {
        assert!(
            killed.elapsed() < Duration::from_secs(3),
            "the stream's child {child} outlived its worker"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Not a test on its own: the worker of `a_child_dies_with_its_worker` (does nothing unless
/// that test starts it).
#[test]
fn pdeathsig_helper() {
    let Some(dir) = std::env::var_os("CHRONOFLOW_STREAMS_HELPER_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let launcher = sh(r#"echo "{\"pid\": $$}" > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 300"#);
        let (_tx, rx) = watch::channel(false);
        let _ = launcher
            .run(
                streaming_job(),
                dir.join("status.json"),
                dir.join("stream.log"),
                rx,
            )
            .await;
    });
}
