//! The HTTP servers' bounds as users set them, through the real binary: a port that is taken
//! fails before anything is created, and the limit flags of `serve` and `standalone` reach the
//! server (keys per request, body size, header timeout).
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http, wait_for_port};
use serde_json::Value;

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart")
}

/// The binary with every store under `dir`, none of them existing yet.
fn chronoflow(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chronoflow"));
    c.args(args)
        .env("CHRONOFLOW_WAREHOUSE", dir.join("warehouse"))
        .env("CHRONOFLOW_KV", dir.join("kv"))
        .env(
            "CHRONOFLOW_DATABASE_URL",
            format!("sqlite://{}", dir.join("state.db").display()),
        )
        .env("CHRONOFLOW_HOME", dir.join("home"))
        .env_remove("RUST_LOG");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A process stopped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(mut c: Command, port: u16) -> Running {
    let child = Running(c.stderr(Stdio::null()).spawn().unwrap());
    wait_for_port(port);
    child
}

/// `serve` on a taken port created the KV store (and `standalone` the state database) before
/// failing to listen: an empty store left behind, or one another process then could not open.
#[test]
fn a_server_that_cannot_bind_creates_no_store() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let repo = quickstart();
    for args in [
        vec!["serve", "--listen", &address],
        vec![
            "standalone",
            "--repo",
            repo.to_str().unwrap(),
            "--listen",
            &address,
        ],
        vec![
            "scheduler",
            "--repo",
            repo.to_str().unwrap(),
            "--listen",
            &address,
        ],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = chronoflow(dir.path(), &args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("listening on {address}")),
            "{args:?}: {}",
            stderr(&out)
        );
        let created: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(created.is_empty(), "{args:?} created {created:?}");
    }
}

/// Sends `n` key sets; returns the status and the body as JSON.
fn fetch(port: u16, n: usize) -> (u16, Value) {
    let keys: Vec<Value> = (0..n)
        .map(|i| serde_json::json!({ "user_id": i }))
        .collect();
    let (status, body) = http(
        port,
        "POST",
        "/v1/fetch/join/quickstart/training_set.v2",
        &Value::Array(keys).to_string(),
    );
    (status, serde_json::from_str(&body).unwrap())
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("{body}"))
}

#[test]
fn serve_flags_bound_key_sets_bodies_and_header_time() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _serve = spawn(
        chronoflow(
            dir.path(),
            &[
                "serve",
                "--listen",
                &listen,
                "--max-keys-per-request",
                "2",
                "--max-body-bytes",
                "100",
                "--header-read-timeout-secs",
                "1",
            ],
        ),
        port,
    );
    // Within the limits the request goes on (and finds nothing uploaded).
    let (status, body) = fetch(port, 2);
    assert_eq!(status, 404, "{body}");
    let (status, body) = fetch(port, 3);
    assert_eq!(status, 413, "{body}");
    assert!(
        error_of(&body).contains("3 key sets") && error_of(&body).contains("limit of 2"),
        "{body}"
    );
    let (status, body) = fetch(port, 20);
    assert_eq!(status, 413, "{body}");
    assert!(error_of(&body).contains("100 bytes"), "{body}");

    // A client that never finishes its headers is disconnected.
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /v1/fetch/join/x HTTP/1.1\r\nHo")
        .unwrap();
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .expect("the server closes a half-sent request");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn standalone_bounds_key_sets_on_its_api_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let repo = quickstart();
    let _standalone = spawn(
        chronoflow(
            dir.path(),
            &[
                "standalone",
                "--repo",
                repo.to_str().unwrap(),
                "--listen",
                &listen,
                "--max-keys-per-request",
                "2",
                "--request-timeout-secs",
                "5",
            ],
        ),
        port,
    );
    let (status, body) = fetch(port, 3);
    assert_eq!(status, 413, "{body}");
    assert!(error_of(&body).contains("--max-keys-per-request"), "{body}");
}
