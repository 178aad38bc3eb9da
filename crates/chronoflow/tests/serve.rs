//! Online serving as users run it, with real processes: upload, upload-to-kv, metadata-upload
//! and streaming replay through the CLI, fetches through the HTTP fetcher and `fetch`, and the
//! values compared with what the backfills compute. Embedded KV always; Redis too when
//! `REDIS_URL` is set.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::quickstart::*;
use common::{copy_dir, free_port, http, wait_for_port};
use serde_json::{Map, Value, json};

#[test]
fn fetches_equal_backfills_embedded() {
    assert_eq!(civil(epoch_day("2023-11-30") / DAY_MS), "2023-11-30");
    fetches_equal_backfills(&uploaded(None));
}

#[test]
fn fetches_equal_backfills_from_partial_aggregates() {
    let s = upload_quickstart_in_event_partitions(Setup::new(None));
    // The returns batch holds tiles, not only rows.
    let rows = s.export("default.quickstart_returns_v1_upload", BATCH_DAY);
    let tiled = rows
        .iter()
        .filter(|r| {
            r["value_json"]
                .as_str()
                .is_some_and(|v| v.contains("IntSum"))
        })
        .count();
    assert!(tiled > 50, "only {tiled} keys have partial aggregates");
    fetches_equal_backfills(&s);
}

#[test]
fn fetches_equal_backfills_redis() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("REDIS_URL not set: skipping the Redis run");
        return;
    };
    // A database of its own on the shared server, emptied first.
    let url = format!("{}/3", url.trim_end_matches('/'));
    let flushed = Command::new("redis-cli")
        .args(["-u", &url, "FLUSHDB"])
        .output();
    assert!(
        flushed.is_ok_and(|o| o.status.success()),
        "redis-cli FLUSHDB on {url} failed"
    );
    fetches_equal_backfills(&uploaded(Some(url)));
}

/// A user whose only purchases are on the two batch days: sum over 3 days is 1 after the first
/// and 3 after the second.
fn write_purchases(path: &Path, users: usize) {
    let mut text = String::from("ds,ts,purchase_id,user_id,product_id,purchase_price\n");
    for (day, ds, price) in [(0, "2023-11-28", 1), (1, "2023-11-29", 2)] {
        let ts = epoch_day("2023-11-28") + day * DAY_MS + 3_600_000;
        for u in 0..users {
            text.push_str(&format!("{ds},{ts},p{day}-{u},{u},1,{price}\n"));
        }
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn killing_upload_to_kv_midway_keeps_the_previous_batch_serving() {
    let s = Setup::new(None);
    let csv = s.warehouse.with_file_name("purchases.csv");
    let users = 60_000;
    write_purchases(&csv, users);
    s.import("data.purchases", &csv);
    let conf = format!("{GB}/purchases.v1");
    for ds in ["2023-11-28", "2023-11-29"] {
        s.job("upload", &conf, &["--ds", ds]);
    }
    s.job("upload-to-kv", &conf, &["--ds", "2023-11-28"]);
    let sum_3d = |user: usize| {
        let out = s.run(&[
            "fetch",
            "-t",
            "group-by",
            "-n",
            "quickstart.purchases.v1",
            "-k",
            &format!(r#"{{"user_id": {user}}}"#),
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["features"]["purchase_price_sum_3d"].clone()
    };
    assert_eq!(sum_3d(7), json!(1));

    // Load the next day and kill the process after its first chunk is in.
    let repo = quickstart();
    let mut child = s
        .command(&[
            "run",
            "--mode",
            "upload-to-kv",
            "--repo",
            repo.to_str().unwrap(),
            "--conf",
            &conf,
            "--ds",
            "2023-11-29",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(first.contains("loaded 5000/"), "{first}");

    // Every key still reads the previous batch, including the ones the dead load had written.
    for user in [0, 7, users - 1] {
        assert_eq!(sum_3d(user), json!(1), "user {user}");
    }
    // The rerun completes, and the new batch serves.
    let out = s.job("upload-to-kv", &conf, &["--ds", "2023-11-29"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!("{} entries serving", users + 1)),
        "{log}"
    );
    for user in [0, 7, users - 1] {
        assert_eq!(sum_3d(user), json!(3), "user {user}");
    }
}

#[test]
fn bad_requests_get_clear_errors_and_the_fetcher_keeps_serving() {
    let s = uploaded(None);
    let (_fetcher, port) = s.serve();
    let join = "/v1/fetch/join/quickstart.training_set.v2";
    let cases: [(&str, &str, u16, &str); 6] = [
        (
            "/v1/fetch/join/quickstart.nope.v1",
            r#"[{"user_id": 1}]"#,
            404,
            "is not served",
        ),
        (join, r#"[{"user_id": 1"#, 400, "the body is not JSON"),
        (
            join,
            r#"[{"user_id": "abc"}]"#,
            400,
            r#"key "user_id" must be an integer"#,
        ),
        (join, r#"[{"user": 1}]"#, 400, r#"missing key "user_id""#),
        (
            join,
            r#"[{"user_id": 1}, 5]"#,
            400,
            "key set 1 must be an object",
        ),
        (
            "/v1/fetch/groupby/quickstart.nope.v1",
            r#"{"user_id": 1}"#,
            404,
            "GroupBy",
        ),
    ];
    for (path, body, status, message) in cases {
        let (got, text) = http(port, "POST", path, body);
        assert_eq!(got, status, "{path} {body}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.contains(message), "{path} {body}: {error}");
        // The next good request is answered.
        let (got, text) = http(port, "POST", join, r#"[{"user_id": 1}, {"user_id": null}]"#);
        assert_eq!(got, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        // A null key gets null features, as a left row with a null key does.
        let nulls = v["results"][1]["features"].as_object().unwrap();
        assert!(nulls.values().all(Value::is_null), "{text}");
    }

    // The embedded store belongs to the fetcher while it runs: the CLI says so.
    let out = s
        .command(&[
            "fetch",
            "-n",
            "quickstart.training_set.v2",
            "-k",
            r#"{"user_id": 1}"#,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("open in another process"), "{err}");
    drop(_fetcher);

    // The CLI: the same errors (exit code 2), and a KV store that cannot be reached says so.
    let out = s
        .command(&[
            "fetch",
            "-n",
            "quickstart.training_set.v2",
            "-k",
            r#"{"user_id": "x"}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"key "user_id" must be an integer"#),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s
        .command(&[
            "fetch",
            "-n",
            "quickstart.training_set.v2",
            "-k",
            r#"{"user_id": 1}"#,
        ])
        .env("CHRONOFLOW_KV", "redis://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("redis://127.0.0.1:1") && err.contains("unreachable"),
        "{err}"
    );
}

/// Fetch logging: training_set.v2 with `samplePercent: 50` logs a sample decided by the key
/// (a key's requests are all logged or none are), with one schema event, in the Join's log table.
#[test]
fn fetches_are_logged_by_key_sample() {
    let mut s = Setup::new(None);
    let repo = s.dir.path().join("repo");
    copy_dir(&quickstart(), &repo);
    let conf = repo.join(format!("{JOINS}/training_set.v2"));
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&conf).unwrap()).unwrap();
    v["metaData"]["samplePercent"] = json!(50.0);
    std::fs::write(&conf, v.to_string()).unwrap();
    s.repo = repo;
    let s = upload_quickstart(s);

    let (mut fetcher, port) = s.serve();
    let at = epoch_day(FETCH_DAY) + 3_600_000;
    for _round in 0..2 {
        for user in 0..40 {
            fetch_one(
                port,
                "/v1/fetch/join/quickstart.training_set.v2",
                json!({"user_id": user}),
                at,
            );
        }
    }
    // Ctrl-C flushes the log.
    Command::new("kill")
        .args(["-INT", &fetcher.0.id().to_string()])
        .status()
        .unwrap();
    assert!(fetcher.0.wait().unwrap().success());
    let rows = s.export("default.quickstart_training_set_v2_log", FETCH_DAY);
    let schemas = rows.iter().filter(|r| r["event"] == "schema").count();
    assert_eq!(schemas, 1);
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| r["event"] == "fetch") {
        *per_key
            .entry(r["key_json"].as_str().unwrap().to_owned())
            .or_default() += 1;
        let features: Map<String, Value> =
            serde_json::from_str(r["value_json"].as_str().unwrap()).unwrap();
        assert!(features.contains_key("quickstart_returns_v1_refund_amt_sum_30d"));
        assert_eq!(r["ts_millis"], json!(at));
    }
    assert!(per_key.values().all(|n| *n == 2), "{per_key:?}");
    assert!(
        (5..35).contains(&per_key.len()),
        "{} of 40 keys logged at 50%",
        per_key.len()
    );
}

/// A private Redis server, stopped when dropped.
struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    fn start(port: u16, dir: &Path) -> Option<RedisServer> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        wait_for_port(port);
        Some(RedisServer {
            child,
            port,
            dir: dir.to_owned(),
        })
    }

    /// Saves to disk and stops, as an outage would (the data comes back on restart).
    fn stop(mut self) -> (u16, PathBuf) {
        let saved = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "SAVE"])
            .output()
            .unwrap();
        assert!(saved.status.success());
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.dir.clone())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The KV store going away while the fetcher runs: GroupBy fetches answer 503, Join fetches a
/// per-part exception, the server keeps answering, and once the store is back fetches succeed again.
#[test]
fn a_redis_outage_gives_clear_errors_and_the_fetcher_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(redis) = RedisServer::start(port, dir.path()) else {
        eprintln!("redis-server is not installed: skipping");
        return;
    };
    let s = uploaded(Some(format!("redis://127.0.0.1:{port}")));
    let (_fetcher, http_port) = s.serve();
    let at = epoch_day(FETCH_DAY) + 3_600_000;
    let join = format!("/v1/fetch/join/quickstart.training_set.v2?at_millis={at}");
    let gb = format!("/v1/fetch/groupby/quickstart.purchases.v1?at_millis={at}");
    let before = fetch_one(
        http_port,
        "/v1/fetch/join/quickstart.training_set.v2",
        json!({"user_id": 26}),
        at,
    );

    let (port, data) = redis.stop();
    let (status, body) = post(http_port, &gb, &json!([{"user_id": 26}]));
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Redis KV store"),
        "{body}"
    );
    let (status, body) = post(http_port, &join, &json!([{"user_id": 26}]));
    assert_eq!(status, 200, "{body}");
    let features = body["results"][0]["features"].as_object().unwrap();
    for part in ["quickstart_purchases_v1", "quickstart_returns_v1"] {
        let e = features[&format!("{part}_exception")]
            .as_str()
            .unwrap_or_default();
        assert!(e.contains("Redis KV store"), "{part}: {body}");
    }
    let (status, _) = http(http_port, "GET", "/health", "");
    assert_eq!(status, 200);

    let _redis = RedisServer::start(port, &data).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, body) = post(http_port, &join, &json!([{"user_id": 26}]));
        let features = body["results"][0]["features"].as_object().cloned();
        if status == 200 && features.as_ref() == Some(&before) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery: {status} {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The daily GroupBy DAG through `standalone`: sensors, backfill, upload and upload-to-kv run in the
/// in-process executor, and the same process serves the uploaded values on its API port.
#[test]
fn standalone_runs_the_upload_dags_and_serves_the_result() {
    let s = Setup::new(None);
    for t in ["purchases", "returns", "users"] {
        s.import(
            &format!("data.{t}"),
            &quickstart().join(format!("data/{t}.csv")),
        );
    }
    let state = format!("sqlite://{}", s.dir.path().join("state.db").display());
    let home = s.dir.path().join("home");
    let with_state = |c: &mut Command| {
        c.env("CHRONOFLOW_DATABASE_URL", &state)
            .env("CHRONOFLOW_HOME", &home);
    };
    let repo = quickstart();
    let repo = repo.to_str().unwrap();
    for args in [
        vec!["dags", "sync", "--repo", repo],
        vec!["dags", "pause", "--all"],
        vec!["dags", "unpause", "chronon_gb_batch_quickstart"],
        vec![
            "dags",
            "trigger",
            "chronon_gb_batch_quickstart",
            "--start-ds",
            BATCH_DAY,
            "--end-ds",
            BATCH_DAY,
        ],
    ] {
        let mut c = s.command(&args);
        with_state(&mut c);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = free_port();
    let mut c = s.command(&[
        "standalone",
        "--repo",
        repo,
        "--tick-ms",
        "100",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    with_state(&mut c);
    let _standalone = Fetcher(c.stderr(Stdio::null()).spawn().unwrap());
    wait_for_port(port);

    let path = format!(
        "/v1/fetch/groupby/quickstart.purchases.v1?at_millis={}",
        epoch_day(FETCH_DAY) + 1
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let fetched = loop {
        let (status, body) = post(port, &path, &json!([{"user_id": 26}]));
        if status == 200 {
            break body["results"][0]["features"].as_object().unwrap().clone();
        }
        assert_eq!(status, 404, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "never uploaded: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    // The DAG has no backfill job (the GroupBy sets no backfillStartDate): compute the expected row.
    s.job(
        "backfill",
        &format!("{GB}/purchases.v1"),
        &["--ds", BATCH_DAY],
    );
    let row = s
        .export("default.quickstart_purchases_v1", BATCH_DAY)
        .into_iter()
        .find(|r| r["user_id"] == json!(26))
        .unwrap();
    assert_same(&fetched, &row, "purchases.v1 user 26 uploaded by the DAG");
}
