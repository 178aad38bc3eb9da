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

fn worst_feature(report: &Value) -> String {
    report["days"][0]["features"][0]["feature"]
        .as_str()
        .unwrap()
        .to_owned()
}
