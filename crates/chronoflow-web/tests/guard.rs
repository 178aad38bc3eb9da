//! The guard over real HTTP: who may read and change what, cross-site and rebinding requests,
//! sign-in sessions and their CSRF token. A real SQLite store with the quickstart's DAGs, a
//! real listener; requests as a browser or a client would send them.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chronoflow_engine::Warehouse;
use chronoflow_scheduler::api::ApiState;
use chronoflow_scheduler::clock::{Clock, SystemClock};
use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::metrics::Metrics;
use chronoflow_scheduler::spec::specs_from_plan;
use chronoflow_scheduler::store::{Role, Store};
use chronoflow_web::{GuardOptions, WebContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart")
}

struct Server {
    addr: std::net::SocketAddr,
    store: Arc<Store>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        Store::open_sqlite(&dir.path().join("state.db"))
            .await
            .expect("store"),
    );
    let config = Arc::new(SchedulerConfig::default());
    let repo = chronoflow_config::fs::load_repo(&quickstart()).expect("quickstart repo");
    let plan = chronoflow_plan::plan(&repo);
    store
        .sync_dags(&specs_from_plan(&plan, &config), SystemClock.now_ms())
        .await
        .expect("sync");
    let warehouse =
        Arc::new(Warehouse::open(&dir.path().join("wh").display().to_string()).expect("warehouse"));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let web = Arc::new(
        WebContext::new(
            store.clone(),
            clock.clone(),
            warehouse,
            quickstart(),
            config,
            None,
            None,
            0.5,
            GuardOptions {
                allowed_hosts: vec!["chronoflow.internal".into()],
            },
        )
        .expect("web context"),
    );
    let api = ApiState {
        store: store.clone(),
        clock,
        metrics: Arc::new(Metrics::default()),
        consistency: None,
    };
    let app = chronoflow_web::app(api, web, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(chronoflow_web::serve(listener, app, rx));
    Server {
        addr,
        store,
        _dir: dir,
        _stop: stop,
    }
}

/// A raw HTTP/1.1 exchange, so every header (Host, Origin, Sec-Fetch-Site, Cookie) is exactly
/// what a browser or an attacker's page would send.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

const DAG: &str = "chronon_gb_batch_quickstart";

#[tokio::test]
async fn without_tokens_loopback_is_read_write_but_cross_site_posts_are_refused() {
    let s = start().await;
    let pause = format!("/api/v1/dags/{DAG}/pause");
    // A plain client (curl, the CLI's scripts): allowed.
    let (status, _, _) = send(s.addr, "POST", &pause, &[], "").await;
    assert_eq!(status, 200);
    // The cross-site form POST a hostile page makes: refused, and the DAG untouched.
    s.store
        .set_paused(DAG, false, SystemClock.now_ms())
        .await
        .expect("unpause");
    let (status, _, body) = send(
        s.addr,
        "POST",
        &pause,
        &[
            ("Origin", "http://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "x=1",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cross-site"), "{body}");
    // Same refusal from a browser that sends only Origin.
    let (status, _, _) = send(
        s.addr,
        "POST",
        &pause,
        &[("Origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(status, 403);
    assert!(!s.store.dag(DAG).await.expect("dag").paused);
    // The UI's own same-origin request passes.
    let origin = format!("http://{}", s.addr);
    let (status, _, _) = send(
        s.addr,
        "POST",
        &pause,
        &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        "",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn dns_rebinding_hosts_are_refused() {
    let s = start().await;
    let (status, _, body) = send(
        s.addr,
        "GET",
        "/api/v1/dags",
        &[("Host", "evil.example:8686")],
        "",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("evil.example"), "{body}");
    let (status, _, _) = send(
        s.addr,
        "GET",
        "/api/v1/dags",
        &[("Host", "chronoflow.internal:8686")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = send(s.addr, "GET", "/ui", &[("Host", "localhost:1")], "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn tokens_scope_changes_by_role_and_team() {
    let s = start().await;
    let now = SystemClock.now_ms();
    let (_, viewer) = s
        .store
        .create_token("viewer", "*", Role::Viewer, now)
        .await
        .expect("token");
    let (_, other_team) = s
        .store
        .create_token("risk-op", "risk", Role::Operator, now)
        .await
        .expect("token");
    let (_, operator) = s
        .store
        .create_token("qs-op", "quickstart", Role::Operator, now)
        .await
        .expect("token");
    let pause = format!("/api/v1/dags/{DAG}/pause");
    // With tokens configured, anonymous requests get 401, pages' shell and health stay open.
    let (status, _, _) = send(s.addr, "GET", "/api/v1/dags", &[], "").await;
    assert_eq!(status, 401);
    let (status, _, _) = send(s.addr, "POST", &pause, &[], "").await;
    assert_eq!(status, 401);
    let (status, _, _) = send(s.addr, "GET", "/ui/dags", &[], "").await;
    assert_eq!(status, 200);
    let (status, _, _) = send(s.addr, "GET", "/api/v1/health", &[], "").await;
    assert_eq!(status, 200);
    let bearer = |t: &str| format!("Bearer {t}");
    let viewer_auth = bearer(&viewer);
    let (status, _, _) = send(
        s.addr,
        "GET",
        "/api/v1/ui/dags",
        &[("Authorization", &viewer_auth)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, body) = send(
        s.addr,
        "POST",
        &pause,
        &[("Authorization", &viewer_auth)],
        "",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("viewer"), "{body}");
    let (status, _, _) = send(
        s.addr,
        "POST",
        &pause,
        &[("Authorization", &bearer(&other_team))],
        "",
    )
    .await;
    assert_eq!(status, 403);
    assert!(!s.store.dag(DAG).await.expect("dag").paused);
    let (status, _, _) = send(
        s.addr,
        "POST",
        &pause,
        &[("Authorization", &bearer(&operator))],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(s.store.dag(DAG).await.expect("dag").paused);
    // A forged or truncated token is no token.
    let forged = format!("{}x", &operator[..operator.len() - 1]);
    let (status, _, _) = send(
        s.addr,
        "GET",
        "/api/v1/dags",
        &[("Authorization", &bearer(&forged))],
        "",
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn ui_sessions_are_http_only_strict_cookies_that_need_the_csrf_token() {
    let s = start().await;
    let now = SystemClock.now_ms();
    let (row, operator) = s
        .store
        .create_token("qs-op", "quickstart", Role::Operator, now)
        .await
        .expect("token");
    let origin = format!("http://{}", s.addr);
    let form = format!("token={operator}&next=%2Fui%2Fstatus");
    let (status, head, _) = send(
        s.addr,
        "POST",
        "/ui/login",
        &[
            ("Origin", &origin),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &form,
    )
    .await;
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("location: /ui/status"), "{head}");
    let set_cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie
        .split_once(':')
        .map(|(_, v)| v.trim())
        .and_then(|v| v.split(';').next())
        .expect("cookie")
        .to_owned();
    let (status, _, me) = send(s.addr, "GET", "/api/v1/ui/me", &[("Cookie", &cookie)], "").await;
    assert_eq!(status, 200, "{me}");
    let me: serde_json::Value = serde_json::from_str(&me).expect("json");
    assert_eq!(me["role"], "operator");
    let csrf = me["csrf"].as_str().expect("csrf").to_owned();
    assert!(csrf.len() >= 16);
    let pause = format!("/api/v1/dags/{DAG}/pause");
    // The cookie alone (what a same-site attacker could make the browser send) is not enough.
    let (status, _, body) = send(
        s.addr,
        "POST",
        &pause,
        &[("Cookie", &cookie), ("Origin", &origin)],
        "",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = send(
        s.addr,
        "POST",
        &pause,
        &[
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("X-CSRF-Token", &csrf),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200);
    // A bad token at sign-in goes back to the form with a message, no cookie.
    let (status, head, _) = send(
        s.addr,
        "POST",
        "/ui/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "token=cft_nope_nope",
    )
    .await;
    assert_eq!(status, 303);
    assert!(head.contains("/ui/login?error="), "{head}");
    assert!(!head.to_ascii_lowercase().contains("set-cookie"), "{head}");
    // Revoking the token ends the session.
    s.store
        .revoke_token(&row.token_id, SystemClock.now_ms())
        .await
        .expect("revoke");
    // "Any live token?" is cached for two seconds.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // No live token left: back to local mode, and the cookie names nothing.
    let (status, _, me) = send(s.addr, "GET", "/api/v1/ui/me", &[("Cookie", &cookie)], "").await;
    assert_eq!(status, 200, "{me}");
    let me: serde_json::Value = serde_json::from_str(&me).expect("json");
    assert_eq!(me["auth"], false);
    assert_eq!(me["role"], serde_json::Value::Null);
}

/// Every page route the OpenAPI document lists answers (with the quickstart's DAGs in the store),
/// so the document and the router cannot drift apart silently.
#[tokio::test]
async fn every_documented_ui_route_answers() {
    let s = start().await;
    let (status, _, body) = send(s.addr, "GET", "/api/v1/openapi.json", &[], "").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("openapi json");
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        if !path.starts_with("/api/v1/ui/") || item.get("get").is_none() {
            continue;
        }
        let name = if path.contains("/configs/") {
            "quickstart/training_set.v2"
        } else {
            "data.purchases"
        };
        let concrete = path.replace("{dag_id}", DAG).replace("{name}", name);
        if concrete.contains('{') {
            continue; // needs a run: covered by the browser test
        }
        let (status, _, body) = send(s.addr, "GET", &concrete, &[], "").await;
        // A table that has no partitions yet is a clear 404; anything else must answer.
        assert!(
            status == 200 || (status == 404 && concrete.contains("/tables/")),
            "GET {concrete}: {status} {body}"
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} documented UI routes");
}

/// Bad parameters get a 400 with a JSON message naming them, whichever layer rejects them.
/// Regression: unknown paths and methods got axum's empty-body 404/405 (found by the
/// hostile-input probe); every error on the API port is JSON naming what was wrong.
#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let s = start().await;
    let (status, head, body) = send(s.addr, "GET", "/api/v1/nope", &[], "").await;
    assert_eq!(status, 404, "{head}");
    assert!(
        body.contains(r#""error":"no route GET /api/v1/nope""#),
        "{body}"
    );
    let (status, head, body) = send(s.addr, "DELETE", "/api/v1/dags", &[], "").await;
    assert_eq!(status, 405, "{head}");
    assert!(
        body.contains("/api/v1/dags does not answer DELETE"),
        "{body}"
    );
}

#[tokio::test]
async fn bad_parameters_get_json_messages() {
    let s = start().await;
    let cases = [
        (
            "GET",
            "/api/v1/ui/dags?state=nope".to_owned(),
            "",
            400,
            "nope",
        ),
        (
            "GET",
            format!("/api/v1/ui/dags/{DAG}/grid?runs=0"),
            "",
            400,
            "runs",
        ),
        (
            "GET",
            format!("/api/v1/ui/dags/{DAG}/grid?runs=abc"),
            "",
            400,
            "runs",
        ),
        (
            "GET",
            "/api/v1/ui/errors?days=-3".to_owned(),
            "",
            400,
            "days",
        ),
        (
            "GET",
            "/api/v1/ui/dags/nope/grid".to_owned(),
            "",
            404,
            "nope",
        ),
        (
            "GET",
            format!("/api/v1/ui/dags/{DAG}/runs/nope"),
            "",
            404,
            "nope",
        ),
        (
            "POST",
            format!("/api/v1/dags/{DAG}/runs"),
            "{\"start_ds\": 5}",
            400,
            "start_ds",
        ),
        (
            "POST",
            format!("/api/v1/dags/{DAG}/runs"),
            "not json",
            400,
            "",
        ),
    ];
    for (method, path, body, want, mentions) in cases {
        let (status, _, answer) = send(
            s.addr,
            method,
            &path,
            &[("Content-Type", "application/json")],
            body,
        )
        .await;
        assert_eq!(status, want, "{method} {path}: {answer}");
        let json: serde_json::Value =
            serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{path}: not JSON: {answer}"));
        let message = json["error"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "{path}: {message}");
    }
}

/// The DAG list's run marks carry each run's own id and date, for scheduled runs (rebuilt from
/// their logical time) and manual ones (read as stored) alike.
#[tokio::test]
async fn dag_list_marks_name_their_runs() {
    let s = start().await;
    // A first list fills the server's cache of latest runs; the run triggered next must show.
    let (status, _, body) = send(s.addr, "GET", "/api/v1/ui/dags?q=join_backfill", &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"recent_runs\":[]"), "{body}");
    let now = SystemClock.now_ms();
    let ids = s
        .store
        .trigger(
            "chronon_join_backfill",
            chronoflow_scheduler::store::RunTrigger::Manual {
                start_ds: "2023-11-29".into(),
                end_ds: "2023-11-30".into(),
            },
            now,
        )
        .await
        .expect("trigger");
    let (status, _, body) = send(s.addr, "GET", "/api/v1/ui/dags?q=join_backfill", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    let marks = &list["dags"][0]["recent_runs"];
    assert_eq!(marks[0]["run_id"], ids[0].as_str(), "{body}");
    let run = s
        .store
        .run("chronon_join_backfill", &ids[0])
        .await
        .expect("run");
    assert_eq!(marks[0]["ds"], run.ds.as_str());
    assert_eq!(marks[0]["state"], run.state.as_str());
    // A change of the run's state (here: paused DAG aside, the scheduler starting it) also shows.
    s.store
        .start_queued_runs(SystemClock.now_ms())
        .await
        .expect("start runs");
    let (_, _, body) = send(s.addr, "GET", "/api/v1/ui/dags?q=join_backfill", &[], "").await;
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    let run = s
        .store
        .run("chronon_join_backfill", &ids[0])
        .await
        .expect("run");
    assert_eq!(run.state, "running");
    assert_eq!(
        list["dags"][0]["recent_runs"][0]["state"], "running",
        "{body}"
    );
    assert_eq!(list["dags"][0]["running"], 1, "{body}");
}
