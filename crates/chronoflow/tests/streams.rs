//! Streams as the binary shows them: `GET /api/v1/streams`, `/metrics` and `streams list` over
//! rows recorded in the state store, and a re-planning scheduler deleting the row of a stream
//! whose config is gone.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chronoflow_scheduler::store::{Store, StreamUpdate};

const JOB: &str = "team.events.v1/streaming";
const GONE: &str = "team.gone.v1/streaming";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_chronoflow")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The team's streaming DAG, keeping `jobs` alive.
fn specs(jobs: &[&str]) -> String {
    let tasks: Vec<serde_json::Value> = jobs
        .iter()
        .map(|job| {
            let config = job.trim_end_matches("/streaming");
            serde_json::json!({
                "task_id": format!("{}__streaming", config.replace('.', "_")),
                "retries": 0, "retry_delay_seconds": 60,
                "action": {"type": "job", "job": job, "config": config, "mode": "streaming",
                           "team": "team", "conf_path": format!("production/group_bys/{config}"),
                           "content_hash": "h"}
            })
        })
        .collect();
    serde_json::json!([{
        "dag_id": "chronon_gb_streaming_team", "kind": "group_by_streaming", "team": "team",
        "timetable": {"kind": "interval", "minutes": 10}, "catchup": false,
        "fills_missing": false, "max_active_runs": 1, "concurrency": 100, "tasks": tasks
    }])
    .to_string()
}

fn http(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn streams_api(port: u16) -> Vec<serde_json::Value> {
    let (status, body) = http(port, "/api/v1/streams");
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["streams"].as_array().unwrap().clone()
}

fn list(db: &str, format: &str) -> String {
    let out = Command::new(bin())
        .args(["streams", "list", "--database-url", db, "--format", format])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What a supervisor records for a stream that crashed twice and now consumes.
async fn record(store: &Store, job: &str, state: &str, updated: i64) {
    store
        .claim_stream(job, "w1", "host-a", 99, updated, "/logs/stream.log")
        .await
        .unwrap();
    let status = serde_json::json!({
        "group_by": job.trim_end_matches("/streaming"), "topic": "events", "state": "running",
        "pid": 4242, "updated_ms": updated, "records_read": 120, "rows_written": 119,
        "malformed": 1, "last_event_ms": updated - 5_000, "last_error": null,
        "partitions": [
            {"topic": "events", "partition": 0, "committed_offset": 70, "high_watermark": 73, "lag": 3},
            {"topic": "events", "partition": 1, "committed_offset": 50, "high_watermark": 54, "lag": 4}
        ]
    })
    .to_string();
    let update = StreamUpdate {
        state,
        pid: 4242,
        started_ms: updated,
        restarts: 2,
        last_exit: Some("\"chronoflow\" exited with status 3; last lines of its output:\nboom"),
        status_json: Some(&status),
    };
    // The row's `updated_ms` is the time given here.
    assert!(
        store
            .update_stream(job, "w1", &update, updated)
            .await
            .unwrap()
    );
}

#[test]
fn streams_api_metrics_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("state.db");
    let db = format!("sqlite://{}", db_path.display());
    std::fs::write(dir.path().join("specs.json"), specs(&[JOB])).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(async {
        let store = Store::open_sqlite(&db_path).await.unwrap();
        record(&store, JOB, "running", now_ms()).await;
        // A stream of a config no DAG has any more: the scheduler's re-planning deletes it.
        record(&store, GONE, "running", now_ms()).await;
        store
    });

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut scheduler = Command::new(bin())
        .args(["scheduler", "--repo"])
        .arg(dir.path())
        .arg("--specs")
        .arg(dir.path().join("specs.json"))
        .args(["--replan-seconds", "1", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--database-url", &db, "--home"])
        .arg(dir.path().join("home"))
        .arg("--warehouse")
        .arg(dir.path().join("warehouse"))
        .stderr(std::fs::File::create(dir.path().join("scheduler.log")).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let until = |what: &str, check: &dyn Fn() -> bool| {
        let since = Instant::now();
        while !check() {
            assert!(
                since.elapsed() < Duration::from_secs(8),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    until("the API listens", &|| {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    until("re-planning deleted the gone stream", &|| {
        streams_api(port).len() == 1
    });
    let streams = streams_api(port);
    let s = &streams[0];
    assert_eq!(s["job_id"], JOB);
    assert_eq!(
        (&s["state"], &s["up"], &s["stale"]),
        (&"running".into(), &true.into(), &false.into())
    );
    assert_eq!(
        (&s["pid"], &s["host"], &s["restarts"]),
        (&4242.into(), &"host-a".into(), &2.into())
    );
    assert_eq!(s["status"]["records_read"], 120);

    let (status, metrics) = http(port, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "chronoflow_stream_records_read_total{group_by=\"team.events.v1\"} 120",
        "chronoflow_stream_rows_written_total{group_by=\"team.events.v1\"} 119",
        "chronoflow_stream_malformed_total{group_by=\"team.events.v1\"} 1",
        "chronoflow_stream_lag{group_by=\"team.events.v1\",partition=\"1\",topic=\"events\"} 4",
        "chronoflow_stream_restarts_total{group_by=\"team.events.v1\"} 2",
        "chronoflow_stream_up{group_by=\"team.events.v1\"} 1",
        "# TYPE chronoflow_stream_last_event_age_seconds gauge",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    let age: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("chronoflow_stream_last_event_age_seconds{group_by=\"team.events.v1\"} ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!((5.0..60.0).contains(&age), "{age}");
    assert!(!metrics.contains("team.gone.v1"));

    // `streams list`: one line per stream; JSON as the API answers.
    let text = list(&db, "text");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "JOB",
            "STATE",
            "PID@HOST",
            "RESTARTS",
            "RECORDS",
            "MALFORMED",
            "LAG",
            "FRESHNESS"
        ]
    );
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &cells[..7],
        [JOB, "running", "4242@host-a", "2", "120", "1", "7"],
        "{text}"
    );
    assert!(cells[7].ends_with('s'), "freshness in seconds: {text}");
    let json: serde_json::Value = serde_json::from_str(&list(&db, "json")).unwrap();
    assert_eq!(json["streams"][0]["job_id"], JOB);
    assert_eq!(json["streams"][0]["up"], true);

    // Crashed and waiting to restart: the list says why. A row its supervisor stopped writing
    // (a dead worker) reads as stale, and is not up.
    runtime.block_on(record(&store, JOB, "backoff", now_ms()));
    let text = list(&db, "text");
    assert!(
        text.contains(" backoff ")
            && text.contains("last exit: \"chronoflow\" exited with status 3"),
        "{text}"
    );
    runtime.block_on(record(&store, JOB, "running", now_ms() - 120_000));
    let text = list(&db, "text");
    assert!(text.lines().nth(1).unwrap().contains(" stale "), "{text}");
    let (_, metrics) = http(port, "/metrics");
    assert!(
        metrics.contains("chronoflow_stream_up{group_by=\"team.events.v1\"} 0"),
        "{metrics}"
    );
    assert_eq!(streams_api(port)[0]["stale"], true);

    // The config leaves the repo: the next re-planning deletes its row.
    std::fs::write(dir.path().join("specs.json"), specs(&[])).unwrap();
    until("the stream's row is deleted", &|| {
        streams_api(port).is_empty()
    });
    assert_eq!(list(&db, "text"), "no streams\n");

    let _ = Command::new("kill")
        .args(["-INT", &scheduler.id().to_string()])
        .status();
    assert!(scheduler.wait().unwrap().success());
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(store);
}
