//! Publishing the consistency figures from the OOC DAG (issue 13, items 5 and 7), as users run
//! it: `standalone` runs `chronon_join_ooc_quickstart`; a real webhook receiver (an HTTP
//! server in this test) gets the alerts, `/metrics` shows the gauges (also after a restart),
//! and `chronoflow consistency` and `GET /api/v1/joins/{join}/consistency` print the figures.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http;
use common::late_data::{late_rows_changes, uploaded_then_late_rows};
use common::ooc::*;
use common::quickstart::*;
use serde_json::Value;

/// An HTTP server that records the JSON body of every POST and answers 200.
struct WebhookReceiver {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
}

impl WebhookReceiver {
    fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/chronoflow", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        // Serves until the test process exits.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(v) = serde_json::from_slice(&body)
                {
                    sink.lock().unwrap().push(v);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        WebhookReceiver { url, received }
    }

    fn alerts(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// The alerts of `event` received within `wait`.
    fn wait_for(&self, event: &str, wait: Duration) -> Vec<Value> {
        let started = std::time::Instant::now();
        loop {
            let found: Vec<Value> = self
                .alerts()
                .into_iter()
                .filter(|a| a["event"] == event)
                .collect();
            if !found.is_empty() || started.elapsed() > wait {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Points the repo's chronoflow.toml at the receiver (default thresholds).
fn alert_to(s: &Setup, hook: &WebhookReceiver) {
    std::fs::write(
        s.repo.join("chronoflow.toml"),
        format!("alert_webhook = \"{}\"\n", hook.url),
    )
    .unwrap();
}

/// The value of the `/metrics` line that starts with `series` (name and labels).
fn gauge(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn metrics(port: u16) -> String {
    let (status, body) = http(port, "GET", "/metrics", "");
    assert_eq!(status, 200, "{body}");
    body
}

fn overall(join: &str) -> String {
    format!("chronoflow_consistency_rate{{join=\"{join}\",feature=\"__overall__\"}}")
}

#[test]
fn consistency_one_publishes_gauges_and_raises_no_alert() {
    let (s, fetched) = served_and_logged_with(upload_quickstart);
    let hook = WebhookReceiver::start();
    alert_to(&s, &hook);
    trigger_ooc(&s);
    let standalone = standalone(&s);
    assert_eq!(wait_for_ooc_run(standalone.port), "success");
    let text = metrics(standalone.port);
    assert_eq!(gauge(&text, &overall(JOIN)), Some(1.0), "{text}");
    assert_eq!(
        gauge(
            &text,
            &format!("chronoflow_consistency_rows{{join=\"{JOIN}\"}}")
        ),
        Some(fetched.len() as f64)
    );
    assert_eq!(
        gauge(
            &text,
            &format!("chronoflow_consistency_day{{join=\"{JOIN}\"}}")
        ),
        Some((epoch_day(FETCH_DAY) / 1000) as f64)
    );
    for line in text
        .lines()
        .filter(|l| l.starts_with("chronoflow_consistency_mismatches{"))
    {
        assert!(line.ends_with(" 0"), "{line}");
    }
    // Alerts are posted in the background: give a false alarm the time to arrive.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hook.alerts(), Vec::<Value>::new());

    let out = s.run(&["consistency", JOIN, "--repo", s.repo.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "{FETCH_DAY}  rate 1.000000  rows {}  inconsistent rows 0",
            fetched.len()
        )),
        "{text}"
    );
    assert!(!text.contains("BELOW"), "{text}");
}

#[test]
fn a_stale_batch_fires_the_alert_with_its_figures_and_the_gauges_survive_a_restart() {
    let (s, _) = served_and_logged_with(stale_purchases);
    let hook = WebhookReceiver::start();
    alert_to(&s, &hook);
    trigger_ooc(&s);
    let first = standalone(&s);
    assert_eq!(wait_for_ooc_run(first.port), "success");

    let table = consistency_rows(&s);
    let rate = table["__overall__"]["consistency_rate"].as_f64().unwrap();
    assert!(rate < 0.99, "the stale batch left consistency at {rate}");
    let alerts = hook.wait_for("consistency_below_threshold", Duration::from_secs(10));
    assert_eq!(alerts.len(), 1, "{:?}", hook.alerts());
    let alert = &alerts[0];
    assert_eq!(alert["join"], JOIN);
    assert_eq!(alert["ds"], FETCH_DAY);
    assert_eq!(alert["dag_id"], OOC_DAG);
    assert_eq!(alert["team"], "quickstart");
    assert_eq!(alert["figure"], "consistency_rate");
    assert_eq!(alert["value"].as_f64(), Some(rate));
    assert_eq!(alert["threshold"].as_f64(), Some(0.99));
    assert!(alert["error"].as_str().unwrap().contains(JOIN), "{alert}");
    // The worst features: exactly the table's inconsistent ones, worst first.
    let mut worst: Vec<(f64, String)> = table
        .iter()
        .filter(|(f, r)| *f != "__overall__" && r["consistency_rate"].as_f64().unwrap() < 1.0)
        .map(|(f, r)| (r["consistency_rate"].as_f64().unwrap(), f.clone()))
        .collect();
    worst.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let named: Vec<(f64, String)> = alert["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f["feature"].as_str().unwrap().to_owned();
            assert_eq!(f["mismatches"], table[&name]["mismatches"], "{name}: {f}");
            (f["value"].as_f64().unwrap(), name)
        })
        .collect();
    assert!(!named.is_empty());
    assert!(
        named
            .iter()
            .all(|(_, f)| f.starts_with("quickstart_purchases")),
        "{named:?}"
    );
    assert_eq!(named, worst.into_iter().take(10).collect::<Vec<_>>());
    // No drift figures exist for the day yet: no drift alert.
    assert!(
        hook.alerts()
            .iter()
            .all(|a| a["event"] != "drift_above_threshold")
    );

    let text = metrics(first.port);
    assert_eq!(gauge(&text, &overall(JOIN)), Some(rate), "{text}");
    for (feature, row) in &table {
        let series =
            format!("chronoflow_consistency_mismatches{{join=\"{JOIN}\",feature=\"{feature}\"}}");
        assert_eq!(
            gauge(&text, &series),
            row["mismatches"].as_f64(),
            "{series}"
        );
    }

    // The API and the command print the same figures.
    let (status, body) = http(
        first.port,
        "GET",
        &format!("/api/v1/joins/{JOIN}/consistency?start_ds={FETCH_DAY}&end_ds={FETCH_DAY}"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let api: Value = serde_json::from_str(&body).unwrap();
    let out = s.run(&[
        "consistency",
        JOIN,
        "--repo",
        s.repo.to_str().unwrap(),
        "--start-ds",
        FETCH_DAY,
        "--end-ds",
        FETCH_DAY,
        "--format",
        "json",
    ]);
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(api, cli);
    assert_eq!(api["days"][0]["consistency_rate"].as_f64(), Some(rate));
    assert_eq!(api["days"][0]["below_min_rate"], true);
    let (status, body) = http(
        first.port,
        "GET",
        "/api/v1/joins/quickstart.no_such_join.v1/consistency",
        "",
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = http(
        first.port,
        "GET",
        "/api/v1/joins/quickstart.purchases.v1/consistency",
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is a GroupBy, not a Join"), "{body}");
    let (status, body) = http(
        first.port,
        "GET",
        &format!("/api/v1/joins/{JOIN}/consistency?start_ds=2023-13-01"),
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("start_ds"), "{body}");
    let text = String::from_utf8(
        s.run(&["consistency", JOIN, "--repo", s.repo.to_str().unwrap()])
            .stdout,
    )
    .unwrap();
    assert!(text.contains("BELOW min_rate"), "{text}");
    assert!(text.contains(&worst_feature(&api)), "{text}");

    // A restart: the gauges come from the store, not from the process that published them.
    drop(first);
    let second = standalone(&s);
    let text = metrics(second.port);
    assert_eq!(gauge(&text, &overall(JOIN)), Some(rate), "{text}");
}

/// Late data (rows landing in the source after the upload, never streamed) fires the alert too,
/// with the overall rate and the features the late rows change, both computed from the offline
/// side alone (the backfill with and without them).
#[test]
fn late_data_fires_the_alert_naming_the_features_it_changed() {
    let (s, fetched) = served_and_logged_with(uploaded_then_late_rows);
    let late = late_rows_changes(&s, &format!("{JOINS}/training_set.v2"), OUTPUT, &fetched);
    assert!(late.rows > 0, "the late rows changed nothing");
    let hook = WebhookReceiver::start();
    alert_to(&s, &hook);
    trigger_ooc(&s);
    let run = standalone(&s);
    assert_eq!(wait_for_ooc_run(run.port), "success");

    let alerts = hook.wait_for("consistency_below_threshold", Duration::from_secs(10));
    assert_eq!(alerts.len(), 1, "{:?}", hook.alerts());
    let alert = &alerts[0];
    let rate = 1.0 - late.rows as f64 / fetched.len() as f64;
    let value = alert["value"].as_f64().unwrap();
    assert!(
        (value - rate).abs() < 1e-9,
        "alerted {value}, expected {rate}"
    );
    let changed: Vec<&String> = late
        .per_feature
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, _)| f)
        .collect();
    let named: Vec<String> = alert["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["feature"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        named.len(),
        changed.len().min(10),
        "{named:?} vs {changed:?}"
    );
    assert!(
        named.iter().all(|f| changed.contains(&f)),
        "{named:?} vs {changed:?}"
    );
}

fn worst_feature(report: &Value) -> String {
    report["days"][0]["features"][0]["feature"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `<join>_comparison` for `days` days from 2023-11-19, 500 rows a day: `score` (a number) moves
/// up by 30 on the last day, `plan` (text) never changes; served equals backfilled.
fn comparison_with_a_shift_on_the_last_day(s: &Setup, days: i64) {
    let mut text = String::from("ds,user_id,ts,score,score_online,plan,plan_online\n");
    let mut state: u64 = 7;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let start = epoch_day("2023-11-19");
    for day in 0..days {
        let ts0 = start + day * DAY_MS;
        let ds = civil(ts0 / DAY_MS);
        for row in 0..500 {
            let shift = if day == days - 1 { 30.0 } else { 0.0 };
            let score = next() * 100.0 + shift;
            let plan = ["basic", "plus", "pro"][row % 3];
            text.push_str(&format!(
                "{ds},{row},{},{score:.4},{score:.4},{plan},{plan}\n",
                ts0 + row as i64
            ));
        }
    }
    let csv = s.dir.path().join("comparison.csv");
    std::fs::write(&csv, text).unwrap();
    s.import(&format!("{OUTPUT}_comparison"), &csv);
}

/// Drift through the DAG: the OOC DAG's metrics task of a day whose `score` shifted (its
/// comparison input prepared, the upstream tasks marked done) publishes the PSI gauges and
/// alerts `drift_above_threshold` (and nothing about consistency, which is 1.0).
#[test]
fn a_shifted_feature_fires_the_drift_alert_and_its_psi_gauges() {
    let mut s = Setup::new(None);
    ooc_repo(&mut s);
    comparison_with_a_shift_on_the_last_day(&s, 8);
    let day = "2023-11-26";
    let hook = WebhookReceiver::start();
    alert_to(&s, &hook);
    trigger_ooc_on(&s, day);
    let standalone = standalone(&s);
    let port = standalone.port;
    let (_, body) = http(port, "GET", &format!("/api/v1/runs?dag_id={OOC_DAG}"), "");
    let runs: Value = serde_json::from_str(&body).unwrap();
    let run = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ds"] == day)
        .and_then(|r| r["run_id"].as_str())
        .unwrap_or_else(|| panic!("no run of {day}: {runs}"))
        .to_owned();
    let tasks_path = format!("/api/v1/dags/{OOC_DAG}/runs/{run}/tasks");
    let tasks = || -> Vec<Value> {
        let (_, body) = http(port, "GET", &tasks_path, "");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["task_instances"].as_array().unwrap().clone()
    };
    // The comparison is prepared: mark its task done (once the run has started), and the
    // metrics task runs on it.
    let started = std::time::Instant::now();
    let compare = loop {
        let found = tasks()
            .into_iter()
            .map(|t| t["task_id"].as_str().unwrap().to_owned())
            .find(|t| t.contains("comparison"));
        if let Some(t) = found {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no comparison task: {:?}",
            tasks()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, body) = http(
        port,
        "POST",
        &format!("{tasks_path}/{compare}/mark"),
        r#"{"state": "success"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let started = std::time::Instant::now();
    let metrics_task = loop {
        let done = tasks().into_iter().find(|t| {
            let id = t["task_id"].as_str().unwrap();
            (id.contains("metrics") || id.contains("consistency"))
                && ["success", "failed"].contains(&t["state"].as_str().unwrap())
        });
        if let Some(t) = done {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the metrics task did not finish: {:?}",
            tasks()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(metrics_task["state"], "success", "{metrics_task}");

    let alerts = hook.wait_for("drift_above_threshold", Duration::from_secs(10));
    assert_eq!(alerts.len(), 1, "{:?}", hook.alerts());
    let alert = &alerts[0];
    assert_eq!(
        (&alert["join"], &alert["ds"], &alert["figure"]),
        (&Value::from(JOIN), &Value::from(day), &Value::from("psi"))
    );
    assert_eq!(alert["threshold"].as_f64(), Some(0.2));
    let drift = s.export(&format!("{OUTPUT}_drift"), day);
    let psi_of = |side: &str| -> f64 {
        drift
            .iter()
            .find(|r| r["feature"] == "score" && r["side"] == side)
            .and_then(|r| r["psi"].as_f64())
            .unwrap()
    };
    let named: Vec<(String, String, f64)> = alert["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["feature"].as_str().unwrap().to_owned(),
                f["side"].as_str().unwrap().to_owned(),
                f["value"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut want = vec![
        ("score".to_owned(), "offline".to_owned(), psi_of("offline")),
        ("score".to_owned(), "online".to_owned(), psi_of("online")),
    ];
    want.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(&b.1)));
    assert_eq!(
        named, want,
        "only the shifted feature, both sides, highest first"
    );
    assert_eq!(alert["value"].as_f64(), Some(want[0].2));
    assert!(want.iter().all(|w| w.2 > 0.2), "{want:?}");
    // Served equals backfilled: no consistency alert.
    assert!(
        hook.alerts()
            .iter()
            .all(|a| a["event"] != "consistency_below_threshold"),
        "{:?}",
        hook.alerts()
    );

    let text = metrics(port);
    for side in ["online", "offline"] {
        let series =
            format!("chronoflow_feature_psi{{join=\"{JOIN}\",feature=\"score\",side=\"{side}\"}}");
        assert_eq!(gauge(&text, &series), Some(psi_of(side)), "{series}");
    }
    assert_eq!(gauge(&text, &overall(JOIN)), Some(1.0), "{text}");
}
