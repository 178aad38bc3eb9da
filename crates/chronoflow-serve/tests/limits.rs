//! Bounds on what a client can make the fetcher do, against the real router and the real server
//! over a real embedded KV store holding the quickstart's uploads: key sets per request, body
//! size, fetches in flight, header and request timeouts, connections; and random requests
//! (bodies and query strings) that must always get a well-formed JSON answer, never a panic.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chronoflow_serve::Fetcher;
use chronoflow_serve::http::{FetchLimits, router};
use chronoflow_serve::kv::SharedKv;
use chronoflow_serve::server::{self, ServerLimits};
use chronoflow_serve::upload;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;
use common::{quickstart, quickstart_warehouse, upload_group_by};

const JOIN: &str = "/v1/fetch/join/quickstart/training_set.v2";
/// 2023-11-30T19:57:14Z, a checkout of user 26.
const AT: i64 = 1_701_374_234_059;

/// One fetcher over the quickstart's uploads for the whole test binary: redb lets a process
/// open a store once, and uploading takes seconds.
fn fetcher() -> Arc<Fetcher> {
    static FETCHER: OnceLock<(tempfile::TempDir, Arc<Fetcher>)> = OnceLock::new();
    let (_, fetcher) = FETCHER.get_or_init(|| {
        // On a thread of its own: callers may be inside a runtime already.
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            let dir = tempfile::tempdir().expect("tempdir");
            let fetcher = runtime.block_on(uploaded(dir.path()));
            (dir, fetcher)
        })
        .join()
        .expect("uploading the quickstart")
    });
    fetcher.clone()
}

/// The quickstart's GroupBys uploaded for `BATCH_DAY` and the Join's definition, as the CLI does.
async fn uploaded(dir: &Path) -> Arc<Fetcher> {
    let warehouse = quickstart_warehouse(dir).await;
    let repo = chronoflow_config::fs::load_repo(&quickstart()).expect("quickstart repo");
    let kv = SharedKv::new(dir.join("kv").display().to_string());
    let store = kv.get().await.expect("kv");
    for gb in ["purchases", "returns"] {
        let loaded = repo.config(&format!("quickstart.{gb}.v1")).expect("gb");
        upload_group_by(&warehouse, store.as_ref(), loaded).await;
    }
    let join = repo.config("quickstart.training_set.v2").expect("join");
    let stored = upload::stored_config(&quickstart(), join).expect("stored config");
    upload::metadata_upload(store.as_ref(), join, stored)
        .await
        .expect("metadata upload");
    Arc::new(Fetcher::new(kv, None))
}

fn app(limits: FetchLimits) -> Router {
    router(fetcher(), limits)
}

fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("request")
}

/// Sends one request to the router; returns the status, `Retry-After` and the body as JSON.
async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, retry, body)
}

fn key_sets(n: usize) -> String {
    let keys: Vec<Value> = (0..n).map(|i| json!({ "user_id": i % 100 })).collect();
    Value::Array(keys).to_string()
}

/// The response is written straight from the key sets and features (no JSON tree built first):
/// its shape is the documented one.
#[tokio::test]
async fn each_result_carries_its_status_key_set_and_features() {
    let app = app(FetchLimits::default());
    let sent = json!([{ "user_id": 26 }, { "user_id": "5" }, { "user_id": null }]);
    let (status, _, body) = send(
        &app,
        post(&format!("{JOIN}?at_millis={AT}"), sent.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    for (result, keys) in results.iter().zip(sent.as_array().expect("array")) {
        assert_eq!(result["status"], "Success");
        assert_eq!(&result["entityKeys"], keys);
        let features = result["features"].as_object().expect("features");
        assert!(
            features
                .keys()
                .any(|f| f.starts_with("quickstart_purchases_v1_"))
                && features
                    .keys()
                    .any(|f| f.starts_with("quickstart_returns_v1_")),
            "{result}"
        );
    }
    // User 26 bought something in the windows; a null key has null features.
    let features = |i: usize| results[i]["features"].as_object().expect("features");
    assert!(features(0).values().any(|v| !v.is_null()), "{body}");
    assert!(features(2).values().all(Value::is_null), "{body}");
}

#[tokio::test]
async fn more_key_sets_than_the_limit_is_413_naming_the_limit_and_the_count() {
    let app = app(FetchLimits {
        max_keys_per_request: 10,
        ..FetchLimits::default()
    });
    let uri = format!("{JOIN}?at_millis={AT}");
    let (status, _, body) = send(&app, post(&uri, key_sets(10))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(10));

    let (status, _, body) = send(&app, post(&uri, key_sets(11))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let message = body["error"].as_str().expect("an error message");
    assert!(
        message.contains("11 key sets") && message.contains("limit of 10"),
        "{message}"
    );
    assert!(message.contains("--max-keys-per-request"), "{message}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_json_naming_the_limit() {
    let app = app(FetchLimits {
        max_body_bytes: 1_000,
        max_keys_per_request: usize::MAX,
        ..FetchLimits::default()
    });
    let body = key_sets(200);
    assert!(body.len() > 1_000);
    let (status, _, json) = send(&app, post(JOIN, body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    let message = json["error"].as_str().expect("an error message");
    assert!(
        message.contains("1000 bytes") && message.contains("--max-body-bytes"),
        "{message}"
    );
}

#[tokio::test]
async fn a_saturated_fetcher_answers_503_with_retry_after_and_recovers() {
    let app = app(FetchLimits {
        max_concurrent_fetches: 1,
        ..FetchLimits::default()
    });
    // A request whose body never ends holds the one fetch slot.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let held = {
        let app = app.clone();
        tokio::spawn(async move { send(&app, post(JOIN, Body::from_stream(stream))).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, retry, body) = send(&app, post(JOIN, key_sets(1))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("--max-concurrent-fetches")),
        "{body}"
    );
    // The held request finishes; its slot is free again.
    tx.send(Ok(key_sets(1).into_bytes())).await.expect("send");
    drop(tx);
    let (status, _, body) = held.await.expect("held request");
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = send(&app, post(JOIN, key_sets(1))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The router on a real port with `limits`; stops when the returned sender is dropped.
async fn listening(limits: ServerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = app(FetchLimits::default());
    tokio::spawn(server::serve(listener, app, limits, async move {
        let _ = stopped.await;
    }));
    (address, stop)
}

/// Reads until the server closes the connection (or `within` passes: then panics).
fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
    stream.set_read_timeout(Some(within)).expect("read timeout");
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => panic!(
            "the connection was still open after {within:?} ({e}); read so far: {}",
            String::from_utf8_lossy(&out)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_is_disconnected_after_the_header_timeout() {
    let (address, _stop) = listening(ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    })
    .await;
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut stream = TcpStream::connect(address).expect("connect");
        write!(
            stream,
            "POST {JOIN} HTTP/1.1\r\nHost: localhost\r\nContent-"
        )
        .expect("write");
        read_to_close(&mut stream, Duration::from_secs(10));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900), "closed after {took:?}");
        // An idle connection that never starts a request is closed too.
        let mut idle = TcpStream::connect(address).expect("connect");
        read_to_close(&mut idle, Duration::from_secs(10));
    })
    .await
    .expect("client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_never_arrives_gets_408_after_the_request_timeout() {
    let (address, _stop) = listening(ServerLimits {
        request_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    })
    .await;
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(address).expect("connect");
        write!(
            stream,
            "POST {JOIN} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n[{{\"user"
        )
        .expect("write");
        let response = read_to_close(&mut stream, Duration::from_secs(10));
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(response.contains("--request-timeout-secs"), "{response}");
    })
    .await
    .expect("client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (address, _stop) = listening(ServerLimits {
        max_connections: 1,
        ..ServerLimits::default()
    })
    .await;
    tokio::task::spawn_blocking(move || {
        let first = TcpStream::connect(address).expect("connect");
        std::thread::sleep(Duration::from_millis(100));
        let mut second = TcpStream::connect(address).expect("connect (kernel queue)");
        write!(
            second,
            "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        second
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        assert!(
            second.read(&mut byte).is_err(),
            "the second connection was served while the first held the only slot"
        );
        drop(first);
        let response = read_to_close(&mut second, Duration::from_secs(10));
        assert!(response.ends_with("ok"), "{response}");
    })
    .await
    .expect("client");
}

/// JSON-ish text: valid JSON of random shape (deep nesting, huge and odd numbers, unicode,
/// duplicate keys, wrong types), key sets that are almost right, and text that is not JSON.
fn body() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        Just("1e999".to_owned()),
        Just("-0".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        Just("26.0".to_owned()),
    ];
    let leaf = prop_oneof![
        number,
        Just("null".to_owned()),
        Just("true".to_owned()),
        any::<String>().prop_map(|s| Value::String(s).to_string()),
        Just("\"26\"".to_owned()),
        Just("\"\\ud800\"".to_owned()),
    ];
    let value = leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("user_id".to_owned()),
                        Just("ds".to_owned()),
                        any::<String>()
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|fields| {
                let fields: Vec<String> = fields
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", Value::String(k)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    });
    prop_oneof![
        value.clone(),
        // Key sets with a user_id of any shape, repeated keys included.
        prop::collection::vec(value.clone(), 0..20).prop_map(|ids| {
            let sets: Vec<String> = ids
                .iter()
                .map(|id| format!("{{\"user_id\":{id},\"user_id\":{id}}}"))
                .collect();
            format!("[{}]", sets.join(","))
        }),
        // Deeper than serde_json's recursion limit.
        (100usize..400).prop_map(|depth| "[".repeat(depth) + &"]".repeat(depth)),
        any::<String>(),
        // Cut short.
        value.prop_map(|v| v.chars().take(v.chars().count() / 2).collect()),
    ]
}

/// `at_millis` at every i64 edge, and things that are not numbers; other parameters too.
fn query() -> impl Strategy<Value = String> {
    let at = prop_oneof![
        Just(i64::MIN),
        Just(i64::MIN + 1),
        Just(-1),
        Just(0),
        Just(1),
        Just(AT),
        Just(i64::MAX - 1),
        Just(i64::MAX),
        any::<i64>(),
    ]
    .prop_map(|n| n.to_string());
    let odd = prop_oneof![
        Just("".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("-9223372036854775809".to_owned()),
        Just("1e3".to_owned()),
        Just("%ff%fe".to_owned()),
        Just("abc".to_owned()),
        "[a-z0-9%&=+]{0,12}",
    ];
    prop_oneof![
        Just(String::new()),
        at.clone().prop_map(|n| format!("?at_millis={n}")),
        odd.prop_map(|s| format!("?at_millis={s}")),
        (at, "[a-z_%]{1,8}").prop_map(|(n, k)| format!("?at_millis={n}&{k}=1&at_millis={n}")),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(JOIN.to_owned()),
        Just("/v1/fetch/groupby/quickstart/purchases.v1".to_owned()),
        Just("/v1/fetch/groupby/quickstart.returns.v1".to_owned()),
        Just("/v1/fetch/join/no/such.join".to_owned()),
        Just("/v1/fetch/join/%ff%fe".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Any body and query string gets a JSON answer: 200 with one result per key set, or an
    /// error status with a message. A panic fails the test (the router does not catch them).
    #[test]
    fn random_fetch_requests_get_a_json_answer_never_a_panic(
        path in path(),
        query in query(),
        body in body(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let app = app(FetchLimits::default());
        let uri = format!("{path}{query}");
        let (status, _, json) = runtime.block_on(send(&app, post(&uri, body.clone())));
        if status.is_success() {
            let sent = match serde_json::from_str::<Value>(&body) {
                Ok(Value::Array(sets)) => sets.len(),
                _ => 1,
            };
            prop_assert_eq!(json["results"].as_array().map(Vec::len), Some(sent), "{}", json);
        } else {
            prop_assert!(json["error"].is_string(), "{} {}", status, json);
            prop_assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "{} for {} {}: {}", status, uri, body, json);
        }
    }
}
