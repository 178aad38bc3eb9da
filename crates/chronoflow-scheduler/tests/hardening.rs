//! What users and networks can send, and what a damaged state store holds: a clear error, never
//! a panic, never a silent default. The REST API is driven through the real router over a real
//! SQLite store holding the quickstart repo's DAGs; the store is damaged with plain SQL.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chronoflow_scheduler::SchedulerError;
use chronoflow_scheduler::api::{self, ApiState};
use chronoflow_scheduler::clock::{Clock, FakeClock};
use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::failpoint::FailPoints;
use chronoflow_scheduler::metrics::Metrics;
use chronoflow_scheduler::scheduler::Scheduler;
use chronoflow_scheduler::spec::DagSpec;
use chronoflow_scheduler::store::{RunTrigger, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};
use sqlx::Connection;
use tower::ServiceExt;

/// 2026-11-21T00:30:00Z.
const START: i64 = 1_795_221_000_000;
/// The quickstart's manual range DAG, and its scheduled Join DAG.
const BACKFILL_DAG: &str = "chronon_join_backfill";
const SCHEDULED_DAG: &str = "chronon_join_quickstart";

/// The quickstart repo planned into a SQLite store in a temp dir, and the API over it.
struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    clock: FakeClock,
    router: axum::Router,
    specs: Vec<DagSpec>,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open_sqlite(&dir.path().join("state.db"))
                .await
                .unwrap(),
        );
        let repo = chronoflow_config::fs::load_repo(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/chronon/quickstart"),
        )
        .unwrap();
        let specs = chronoflow_scheduler::spec::specs_from_plan(
            &chronoflow_plan::plan(&repo),
            &SchedulerConfig::default(),
        );
        let clock = FakeClock::new(START);
        let report = store.sync_dags(&specs, clock.now_ms()).await.unwrap();
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        let router = api::router(ApiState {
            store: store.clone(),
            clock: Arc::new(clock.clone()),
            metrics: Arc::new(Metrics::default()),
            // The quickstart's Joins over an empty warehouse: the route's own checks run.
            consistency: Some(Arc::new(
                chronoflow_scheduler::consistency::WarehouseConsistency::new(
                    Arc::new(chronoflow_engine::Warehouse::open("memory://").unwrap()),
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../../fixtures/chronon/quickstart"),
                    Arc::new(SchedulerConfig::default()),
                ),
            )),
        });
        Fixture {
            dir,
            store,
            clock,
            router,
            specs,
        }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("state.db").display())
    }

    /// Runs `sql` on the store's file from another connection, as someone editing it would.
    async fn damage(&self, sql: &str) {
        let mut c = sqlx::SqliteConnection::connect(&self.url()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .unwrap();
    }

    fn scheduler(&self, store: Arc<Store>) -> Scheduler {
        Scheduler::new(
            store,
            Arc::new(self.clock.clone()),
            Arc::new(SchedulerConfig::default()),
            None,
            Arc::new(Metrics::default()),
            Arc::new(FailPoints::default()),
        )
    }

    async fn call(&self, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
        let (status, content_type, bytes) = send(&self.router, method, uri, body).await;
        assert!(
            content_type.starts_with("application/json"),
            "{method} {uri}: {status} {content_type}"
        );
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

async fn send(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, String, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Body::from(body.unwrap_or_default().to_owned()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    (status, content_type, bytes.to_vec())
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn runs_with_an_unknown_state_filter_is_a_400_not_an_empty_list() {
    let f = Fixture::new().await;
    let (status, body) = f.call("GET", "/api/v1/runs?state=nope", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_of(&body).contains("\"nope\" is not a run state"),
        "{body}"
    );
    let (status, body) = f.call("GET", "/api/v1/runs?state=running", None).await;
    assert_eq!((status, &body["runs"]), (StatusCode::OK, &json!([])));
    // Parameters of the wrong type answer JSON too, not the extractor's plain text.
    let (status, body) = f.call("GET", "/api/v1/runs?limit=lots", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_of(&body).contains("limit"), "{body}");
    // Regression (hostile-input probe): a negative limit was clamped to 1 run without a word.
    let (status, body) = f.call("GET", "/api/v1/runs?limit=-5", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_of(&body).contains("-5 is not a number of runs"),
        "{body}"
    );
    let err = f.store.runs(None, None, -1).await.unwrap_err();
    assert!(err.to_string().contains("limit: -1"), "{err}");
}

#[tokio::test]
async fn triggering_twice_in_one_second_creates_two_runs() {
    let f = Fixture::new().await;
    let uri = format!("/api/v1/dags/{BACKFILL_DAG}/runs");
    let range = r#"{"start_ds": "2026-11-01", "end_ds": "2026-11-02"}"#;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = f.call("POST", &uri, Some(range)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let run_ids = body["run_ids"].as_array().unwrap();
        assert_eq!(run_ids.len(), 1, "{body}");
        ids.push(run_ids[0].as_str().unwrap().to_owned());
    }
    assert_eq!(
        ids,
        [
            "manual__2026-11-21T00:30:00Z__2026-11-01_2026-11-02",
            "manual__2026-11-21T00:30:00Z__2026-11-01_2026-11-02__2",
            "manual__2026-11-21T00:30:00Z__2026-11-01_2026-11-02__3",
        ]
    );
    let runs = f.store.runs(Some(BACKFILL_DAG), None, 10).await.unwrap();
    assert_eq!(runs.len(), 3);
}

#[tokio::test]
async fn a_backfill_that_creates_nothing_is_not_a_201() {
    let f = Fixture::new().await;
    let uri = format!("/api/v1/dags/{SCHEDULED_DAG}/backfill");
    let range = r#"{"start_ds": "2026-11-01", "end_ds": "2026-11-03"}"#;
    let (status, body) = f.call("POST", &uri, Some(range)).await;
    assert_eq!(
        (status, body["run_ids"].as_array().unwrap().len()),
        (StatusCode::CREATED, 3)
    );
    let (status, body) = f.call("POST", &uri, Some(range)).await;
    assert_eq!((status, &body["run_ids"]), (StatusCode::OK, &json!([])));
}

#[tokio::test]
async fn ranges_past_the_limit_and_years_out_of_range_are_refused() {
    let f = Fixture::new().await;
    for (dag, route, start, end, expected) in [
        // One manual run over 27 years and more.
        (
            BACKFILL_DAG,
            "runs",
            "1990-01-01",
            "2026-01-01",
            "more than one run covers (10000)",
        ),
        (
            SCHEDULED_DAG,
            "backfill",
            "1990-01-01",
            "2026-01-01",
            "more than 10000 runs",
        ),
        (
            BACKFILL_DAG,
            "runs",
            "0001-01-01",
            "0001-01-02",
            "outside the years 1900..=2999",
        ),
        (
            SCHEDULED_DAG,
            "backfill",
            "2026-01-01",
            "9999-12-31",
            "outside the years 1900..=2999",
        ),
    ] {
        let body = json!({ "start_ds": start, "end_ds": end }).to_string();
        let (status, answer) = f
            .call("POST", &format!("/api/v1/dags/{dag}/{route}"), Some(&body))
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{route} {start} {end}: {answer}"
        );
        assert!(error_of(&answer).contains(expected), "{answer}");
    }
    // A manual run of a scheduled DAG that does not fill missing partitions is for end_ds
    // alone: its start is no range to limit.
    let daily = f
        .specs
        .iter()
        .find(|s| !s.timetable.is_manual() && !s.fills_missing)
        .expect("a scheduled DAG of one partition per run");
    let body = json!({ "start_ds": "1990-01-01", "end_ds": "2026-01-01" }).to_string();
    let (status, answer) = f
        .call(
            "POST",
            &format!("/api/v1/dags/{}/runs", daily.dag_id),
            Some(&body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let runs = f.store.runs(None, None, 100).await.unwrap();
    assert_eq!((runs.len(), runs[0].start_ds.as_str()), (1, "2026-01-01"));
}

/// A column holding the wrong type, an unknown state, a flag that is not 0 or 1: each read is
/// an error naming the table, the row and the column (it panicked in `Row::get`, or read an
/// unknown state as `waiting`).
#[tokio::test]
async fn stored_values_of_the_wrong_type_are_errors_naming_them_not_panics() {
    let f = Fixture::new().await;
    let ids = f
        .store
        .trigger(
            BACKFILL_DAG,
            RunTrigger::Manual {
                start_ds: "2026-11-01".into(),
                end_ds: "2026-11-01".into(),
            },
            f.clock.now_ms(),
        )
        .await
        .unwrap();
    f.store.start_queued_runs(f.clock.now_ms()).await.unwrap();
    let run = &ids[0];
    let task = f.store.task_instances(BACKFILL_DAG, run).await.unwrap()[0]
        .task_id
        .clone();

    f.damage("UPDATE dag_runs SET unfinished = 'lots'").await;
    let err = f.store.runs(None, None, 10).await.unwrap_err();
    assert!(
        matches!(err, SchedulerError::CorruptValue { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "state store: dag_runs (dag_id \"{BACKFILL_DAG}\", run_id \"{run}\"), column unfinished: "
        )),
        "{text}"
    );
    // Through the API: the system's error, as JSON, naming the column.
    let (status, body) = f.call("GET", "/api/v1/runs", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(error_of(&body).contains("column unfinished"), "{body}");
    f.damage("UPDATE dag_runs SET unfinished = 1").await;

    f.damage(&format!(
        "UPDATE task_instances SET state = 'bogus' WHERE task_id = '{task}'"
    ))
    .await;
    let err = f
        .store
        .clear(BACKFILL_DAG, run, &task, false, f.clock.now_ms())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("column state: \"bogus\" is not a task state"),
        "{err}"
    );
    let uri = format!("/api/v1/dags/{BACKFILL_DAG}/runs/{run}/tasks/{task}/mark");
    let (status, body) = f.call("POST", &uri, Some(r#"{"state": "success"}"#)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(error_of(&body).contains("bogus"), "{body}");

    f.damage(&format!(
        "UPDATE dags SET paused = x'00ff' WHERE dag_id = '{SCHEDULED_DAG}'"
    ))
    .await;
    let (status, body) = f.call("GET", "/api/v1/dags", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        error_of(&body).contains(&format!("dags (dag_id \"{SCHEDULED_DAG}\"), column paused")),
        "{body}"
    );
    f.damage(&format!(
        "UPDATE dags SET paused = 7 WHERE dag_id = '{SCHEDULED_DAG}'"
    ))
    .await;
    let err = f.store.dag(SCHEDULED_DAG).await.unwrap_err();
    assert!(err.to_string().contains("7 is not a flag"), "{err}");
    // `dump` (the snapshot tests' view) reports it too.
    f.damage("UPDATE task_tries SET try_number = 'one'").await;
    f.damage("UPDATE task_instances SET try_number = 'one'")
        .await;
    let err = f.store.dump(START).await.unwrap_err();
    assert!(err.to_string().contains("column try_number"), "{err}");
}

/// One DAG whose stored spec is not JSON and another whose row is damaged: the loop logs them
/// and goes on with every other DAG (it stopped at the first, every loop, for every DAG).
#[tokio::test]
async fn a_corrupt_dag_is_skipped_and_the_scheduler_loop_goes_on_with_the_others() {
    let f = Fixture::new().await;
    let scheduled: Vec<&DagSpec> = f
        .specs
        .iter()
        .filter(|s| !s.timetable.is_manual())
        .collect();
    assert!(scheduled.len() >= 3, "{}", scheduled.len());
    let (bad_spec, bad_row) = (&scheduled[0].dag_id, &scheduled[1].dag_id);
    f.damage(&format!(
        "UPDATE dag_versions SET spec = '{{not json' WHERE dag_id = '{bad_spec}'"
    ))
    .await;
    f.damage(&format!(
        "UPDATE dags SET version = 'one' WHERE dag_id = '{bad_row}'"
    ))
    .await;
    // A fresh store: the fixture's has the specs cached.
    let store = Arc::new(Store::open(&f.url()).await.unwrap());
    let scheduler = f.scheduler(store.clone());
    let report = scheduler.tick().await.unwrap();
    assert_eq!(report.runs_created, scheduled.len() - 2, "{report:?}");
    assert_eq!(report.runs_started, scheduled.len() - 2, "{report:?}");
    let runs = store.runs(None, None, 100).await.unwrap();
    for spec in &scheduled[2..] {
        assert!(
            runs.iter().any(|r| r.dag_id == spec.dag_id),
            "{}",
            spec.dag_id
        );
    }
    assert!(
        !runs
            .iter()
            .any(|r| &r.dag_id == bad_spec || &r.dag_id == bad_row)
    );
    // The API names what is wrong.
    let router = api::router(ApiState {
        store: store.clone(),
        clock: Arc::new(f.clock.clone()),
        metrics: Arc::new(Metrics::default()),
        consistency: None,
    });
    let (status, _, body) = send(&router, "GET", &format!("/api/v1/dags/{bad_spec}"), None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        error_of(&body).starts_with(&format!("stored DAG \"{bad_spec}\" version 1: ")),
        "{body}"
    );
    // Later loops go on too.
    f.clock.advance_ms(86_400_000);
    let report = scheduler.tick().await.unwrap();
    assert_eq!(report.runs_created, scheduled.len() - 2, "{report:?}");
}

// ---- Fuzz: every route, any parameters ----

/// Text a client might send where an id, a date or a number goes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(BACKFILL_DAG.to_owned()),
        Just(SCHEDULED_DAG.to_owned()),
        Just("2026-11-01".to_owned()),
        Just("0001-01-01".to_owned()),
        Just("9999-12-31".to_owned()),
        Just("2026-02-30".to_owned()),
        Just(i64::MIN.to_string()),
        Just(i64::MAX.to_string()),
        Just(u64::MAX.to_string()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("1e308".to_owned()),
        Just("NaN".to_owned()),
        Just("true".to_owned()),
        Just("success".to_owned()),
        Just("running".to_owned()),
        Just("nope".to_owned()),
        Just("../../etc/passwd".to_owned()),
        Just("ünïcødé 🚀 dag".to_owned()),
        Just("\u{0}\u{1f}\u{1e}".to_owned()),
        "\\PC{0,40}",
        any::<String>(),
    ]
}

/// A JSON value of any shape, with `text()` at the leaves.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body: a JSON object with the expected keys (or some), any JSON, or not JSON.
fn body() -> impl Strategy<Value = Option<String>> {
    let keys = prop_oneof![
        Just("start_ds".to_owned()),
        Just("end_ds".to_owned()),
        Just("state".to_owned()),
        text(),
    ];
    prop_oneof![
        Just(None),
        prop::collection::btree_map(
            keys,
            prop_oneof![text().prop_map(Value::from), json_value()],
            0..4
        )
        .prop_map(|m| Some(Value::Object(m.into_iter().collect()).to_string())),
        (text(), text()).prop_map(|(a, b)| Some(json!({"start_ds": a, "end_ds": b}).to_string())),
        json_value().prop_map(|v| Some(v.to_string())),
        text().prop_map(Some),
    ]
}

/// A query string of known and unknown parameters with any values.
fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("dag_id".to_owned()),
        Just("state".to_owned()),
        Just("limit".to_owned()),
        Just("downstream".to_owned()),
        Just("try".to_owned()),
        Just("offset".to_owned()),
        Just("start_ds".to_owned()),
        Just("end_ds".to_owned()),
        text(),
    ];
    let value = prop_oneof![
        text(),
        Just("2023-11-30".to_owned()),
        Just("2023-11-01".to_owned()),
        Just("2022-01-01".to_owned()),
    ];
    prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// Percent-encodes everything but unreserved characters, so any text is one path segment or
/// one query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every route of the API, with `{}` where a path parameter goes.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/dags"),
    ("GET", "/api/v1/dags/{}"),
    ("POST", "/api/v1/dags/{}/pause"),
    ("POST", "/api/v1/dags/{}/unpause"),
    ("POST", "/api/v1/dags/{}/runs"),
    ("POST", "/api/v1/dags/{}/backfill"),
    ("GET", "/api/v1/runs"),
    ("GET", "/api/v1/dags/{}/runs/{}/tasks"),
    ("POST", "/api/v1/dags/{}/runs/{}/tasks/{}/clear"),
    ("POST", "/api/v1/dags/{}/runs/{}/tasks/{}/mark"),
    ("POST", "/api/v1/dags/{}/runs/{}/tasks/{}/stop"),
    ("GET", "/api/v1/dags/{}/runs/{}/tasks/{}/logs"),
    ("GET", "/api/v1/joins/{}/consistency"),
];

#[derive(Debug, Clone)]
struct Call {
    route: usize,
    /// Path parameters: an index into the fixture's known ids, or any text.
    params: [Result<prop::sample::Index, String>; 3],
    query: String,
    body: Option<String>,
}

fn call() -> impl Strategy<Value = Call> {
    let param = || {
        prop_oneof![
            any::<prop::sample::Index>().prop_map(Ok),
            text().prop_map(Err)
        ]
    };
    (
        0..ROUTES.len(),
        [param(), param(), param()],
        query(),
        body(),
    )
        .prop_map(|(route, params, query, body)| Call {
            route,
            params,
            query,
            body,
        })
}

/// Every route answers any path, query and body with a 2xx or a 4xx, and every 4xx is a JSON
/// `{"error": ...}`: never a 5xx for bad input, never a panic (a panicking handler fails the
/// test through `oneshot`).
#[test]
fn every_route_answers_any_parameters_with_a_json_2xx_or_4xx() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let f = runtime.block_on(Fixture::new());
    // Known ids, so calls reach past "unknown DAG" into the handlers' own checks.
    let (dags, runs, tasks) = runtime.block_on(async {
        let run = f
            .store
            .trigger(
                BACKFILL_DAG,
                RunTrigger::Manual {
                    start_ds: "2026-11-01".into(),
                    end_ds: "2026-11-01".into(),
                },
                f.clock.now_ms(),
            )
            .await
            .unwrap();
        f.store.start_queued_runs(f.clock.now_ms()).await.unwrap();
        let tasks: Vec<String> = f
            .store
            .task_instances(BACKFILL_DAG, &run[0])
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.task_id)
            .collect();
        // DAG ids, and Join names for the consistency route.
        let dags: Vec<String> = f
            .specs
            .iter()
            .map(|s| s.dag_id.clone())
            .chain([
                "quickstart.training_set.v2".to_owned(),
                "quickstart/training_set.v1".to_owned(),
            ])
            .collect();
        (dags, run, tasks)
    });
    let known = [dags, runs, tasks];
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let started = std::time::Instant::now();
    runner
        .run(&call(), |c| {
            let (method, template) = ROUTES[c.route];
            let mut path = String::new();
            let mut pieces = template.split("{}");
            path.push_str(pieces.next().unwrap());
            for (i, piece) in pieces.enumerate() {
                let value = match &c.params[i] {
                    Ok(index) => index.get(&known[i]).clone(),
                    Err(text) => text.clone(),
                };
                // An empty segment is another route (or none): the router's 404, not ours.
                let segment = if value.is_empty() {
                    "x".to_owned()
                } else {
                    encode(&value)
                };
                path.push_str(&segment);
                path.push_str(piece);
            }
            let uri = if c.query.is_empty() {
                path
            } else {
                format!("{path}?{}", c.query)
            };
            let (status, content_type, bytes) =
                runtime.block_on(send(&f.router, method, &uri, c.body.as_deref()));
            prop_assert!(
                status.is_success() || status.is_client_error(),
                "{method} {uri} {:?}: {status} {}",
                c.body,
                String::from_utf8_lossy(&bytes)
            );
            let plain_text_ok =
                status.is_success() && (template.ends_with("/logs") || template == "/metrics");
            if !plain_text_ok {
                prop_assert!(
                    content_type.starts_with("application/json"),
                    "{method} {uri}: {status} {content_type}"
                );
                let value: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| TestCaseError::fail(format!("{uri}: {e}")))?;
                if !status.is_success() {
                    prop_assert!(value["error"].is_string(), "{uri}: {value}");
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!("2000 random API calls in {:.1?}", started.elapsed());
}

/// Found by bench/probe: a state store file that is not a SQLite database (a stray file, a
/// damaged copy) made every command retry its connection for 30 s, logging an error each time,
/// and then fail with "pool timed out" instead of the reason.
#[tokio::test]
async fn a_state_store_that_is_not_a_database_fails_at_once_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut garbage = b"SQLite format 3\0".to_vec();
    garbage.resize(4096, 0xff);
    std::fs::write(&path, garbage).unwrap();

    let started = std::time::Instant::now();
    let err = Store::open_sqlite(&path).await.unwrap_err();

    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(text.contains("not a database"), "{text}");
    assert!(
        text.contains("state.db"),
        "the error names the store: {text}"
    );
}
