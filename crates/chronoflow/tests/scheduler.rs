//! The scheduler as real processes: crashes, bad input, the HTTP API.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chronoflow_scheduler::store::Store;
use common::{copy_dir, free_port, http, wait_for_port};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_chronoflow")
}

/// A job that records each start, and writes its output once: a second execution that finds
/// the output leaves it alone (as engine backfills skip existing partitions). A lock holding its
/// pid detects two live executions of one task at once ("overlap"). Most tasks take 50 ms, so
/// kills land mid-task; one in a hundred takes 4.5 s, longer than the heartbeat timeout, so a job
/// outliving its killed worker would overlap with its retry.
const TOUCH: &str = r#"f="$OUT/$1"
l="$OUT/$1.lock"
echo "start $1 $2" >> "$OUT/events.log"
if ! mkdir "$l" 2>/dev/null; then
  sleep 0.01
  p="$(cat "$l/pid" 2>/dev/null || true)"
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then echo "overlap $1 $2" >> "$OUT/events.log"; fi
  rm -rf "$l"; mkdir "$l" 2>/dev/null || true
fi
echo $$ > "$l/pid"
case "$1" in *37) sleep 4.5 ;; *) sleep 0.05 ;; esac
if [ ! -e "$f" ]; then
  echo "$2" > "$f.tmp.$$"
  mv "$f.tmp.$$" "$f"
  echo "wrote $1 $2" >> "$OUT/events.log"
fi
rm -rf "$l"
"#;

/// `chains` chains of `length` tasks: task k waits for task k - chains.
fn specs(dag_id: &str, chains: usize, length: usize, executor_team: &str) -> serde_json::Value {
    let n = chains * length;
    let mut tasks: Vec<serde_json::Value> = (0..n)
        .map(|k| {
            let id = format!("t{k:05}");
            let upstream: Vec<String> = if k >= chains {
                vec![format!("t{:05}", k - chains)]
            } else {
                vec![]
            };
            serde_json::json!({
                "task_id": id, "upstream": upstream, "retries": 100, "retry_delay_seconds": 0,
                "action": {"type": "job", "job": id, "config": id, "mode": "backfill",
                           "team": executor_team, "conf_path": "", "content_hash": ""}
            })
        })
        .collect();
    tasks.sort_by(|a, b| a["task_id"].as_str().cmp(&b["task_id"].as_str()));
    serde_json::json!([{
        "dag_id": dag_id, "kind": "custom", "team": executor_team, "timetable": {"kind": "manual"},
        "catchup": false, "fills_missing": false, "max_active_runs": 1, "concurrency": 16,
        "tasks": tasks
    }])
}

struct Setup {
    dir: tempfile::TempDir,
    url: String,
}

impl Setup {
    fn new(url: Option<String>, specs: serde_json::Value, config: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let url =
            url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("state.db").display()));
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("specs.json"), specs.to_string()).unwrap();
        std::fs::write(dir.path().join("chronoflow.toml"), config).unwrap();
        Setup { dir, url }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn common(&self) -> Vec<String> {
        vec![
            "--database-url".into(),
            self.url.clone(),
            "--config".into(),
            self.path("chronoflow.toml").display().to_string(),
            "--home".into(),
            self.path("home").display().to_string(),
        ]
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(self.common());
        Command::new(bin())
            .args(&all)
            .env("OUT", self.path("out"))
            .output()
            .unwrap()
    }

    fn spawn(&self, role: &str, log: &str) -> Child {
        let mut args: Vec<String> = vec![role.into()];
        if role == "scheduler" {
            args.extend([
                "--specs".into(),
                self.path("specs.json").display().to_string(),
            ]);
            args.extend([
                "--tick-ms".into(),
                "50".into(),
                "--replan-seconds".into(),
                "3600".into(),
            ]);
            args.extend([
                "--warehouse".into(),
                self.path("warehouse").display().to_string(),
            ]);
        } else {
            args.extend(["--slots".into(), "4".into()]);
            args.extend(["--repo".into(), self.dir.path().display().to_string()]);
            args.extend([
                "--warehouse".into(),
                self.path("warehouse").display().to_string(),
            ]);
        }
        args.extend(self.common());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(log))
            .unwrap();
        Command::new(bin())
            .args(&args)
            .env("OUT", self.path("out"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }
}

fn crash_config() -> String {
    format!(
        "default_executor = \"touch\"\nheartbeat_interval_seconds = 1\nheartbeat_timeout_seconds = 4\nretry_max_delay_seconds = 1\n[executors.touch]\nkind = \"command\"\nargv = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{task_id}}\", \"{{try_number}}\"]\n",
        script = TOUCH
    )
}

/// A tiny deterministic random source (the test must not depend on a crate for this).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Runs a 1,000-task DAG while killing schedulers and workers with SIGKILL at random moments
/// and restarting them; then checks that every task instance succeeded exactly once, that no
/// try was run by two workers, and that no output was written twice.
fn crash_test(url: Option<String>, schedulers: usize, workers: usize, seed: u64) {
    let setup = Setup::new(url, specs("crash", 20, 50, "bench"), &crash_config());
    let out = setup.cli(&[
        "dags",
        "sync",
        "--specs",
        setup.path("specs.json").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = setup.cli(&[
        "dags",
        "trigger",
        "crash",
        "--start-ds",
        "2026-11-20",
        "--end-ds",
        "2026-11-20",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut procs: Vec<(String, Child)> = Vec::new();
    for i in 0..schedulers {
        procs.push((
            "scheduler".into(),
            setup.spawn("scheduler", &format!("scheduler{i}.log")),
        ));
    }
    for i in 0..workers {
        procs.push((
            "worker".into(),
            setup.spawn("worker", &format!("worker{i}.log")),
        ));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(Store::open(&setup.url)).unwrap();
    let mut rng = Lcg(seed);
    let started = Instant::now();
    let mut kills = 0;
    let run_id = loop {
        assert!(
            // Generous: a loaded 2-core CI machine restarts debug binaries slowly.
            started.elapsed() < Duration::from_secs(600),
            "the run did not finish in 10 minutes; logs in {}",
            setup.dir.path().display()
        );
        std::thread::sleep(Duration::from_millis(500 + rng.next(1500)));
        let runs = runtime
            .block_on(store.runs(Some("crash"), None, 1))
            .unwrap();
        if runs[0].state == "success" || runs[0].state == "failed" {
            break runs[0].run_id.clone();
        }
        // SIGKILL one process at random, then start it again.
        let victim = rng.next(procs.len() as u64) as usize;
        let (role, child) = &mut procs[victim];
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        let log = format!("{role}-restarted.log");
        *child = setup.spawn(role, &log);
    };
    for (_, child) in &mut procs {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        kills >= 5,
        "only {kills} kills: the test did not test crashes"
    );

    let tis = runtime
        .block_on(store.task_instances("crash", &run_id))
        .unwrap();
    assert_eq!(tis.len(), 1000);
    let mut last_success_try = BTreeMap::new();
    for ti in &tis {
        assert_eq!(ti.state, "success", "{ti:?}");
        let tries = runtime
            .block_on(store.tries("crash", &run_id, &ti.task_id))
            .unwrap();
        let successes: Vec<_> = tries.iter().filter(|t| t.state == "success").collect();
        assert_eq!(
            successes.len(),
            1,
            "{} succeeded {} times",
            ti.task_id,
            successes.len()
        );
        assert_eq!(
            successes[0].try_number, ti.try_number,
            "the success is the last try"
        );
        last_success_try.insert(ti.task_id.clone(), ti.try_number);
        assert!(
            setup.path("out").join(&ti.task_id).exists(),
            "{} wrote no output",
            ti.task_id
        );
    }
    let events = std::fs::read_to_string(setup.path("out/events.log")).unwrap();
    let mut starts: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let mut writes: BTreeMap<String, usize> = BTreeMap::new();
    for line in events.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let (task, try_number) = (parts[1].to_owned(), parts[2].parse::<i64>().unwrap());
        match parts[0] {
            "start" => {
                *starts.entry((task.clone(), try_number)).or_default() += 1;
                assert!(
                    try_number <= last_success_try[&task],
                    "{task} ran again (try {try_number}) after it succeeded"
                );
            }
            "wrote" => *writes.entry(task).or_default() += 1,
            "overlap" => {
                panic!("try {try_number} of {task} ran while another execution of it was alive")
            }
            other => panic!("unexpected event {other}"),
        }
    }
    for ((task, try_number), n) in &starts {
        assert_eq!(*n, 1, "try {try_number} of {task} was started {n} times");
    }
    for (task, n) in &writes {
        assert_eq!(*n, 1, "{task} wrote its output {n} times");
    }
    eprintln!("{kills} kills; {} starts for 1000 tasks", starts.len());
}

#[test]
fn crash_test_sqlite_one_scheduler_two_workers() {
    crash_test(None, 1, 2, 7);
}

#[test]
fn crash_test_postgres_two_schedulers_two_workers() {
    let Ok(base) = std::env::var("DATABASE_URL") else {
        eprintln!("DATABASE_URL is not set: skipping the PostgreSQL crash test");
        return;
    };
    let url = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fresh_postgres(&base, "crash"));
    crash_test(Some(url), 2, 2, 11);
}

async fn fresh_postgres(base: &str, tag: &str) -> String {
    use sqlx::Connection;
    let name = format!("chronoflow_{tag}_{}", std::process::id());
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

/// The API over real HTTP: triggering, listing, clearing, logs, metrics and clear errors for
/// bad requests; a command executor whose program is missing fails its task with a message
/// that says so, and the rest of the DAG keeps running.
/// Accepts one HTTP request on a free port and hands its body over: a real webhook receiver.
fn webhook_receiver() -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    tx.send(body.to_owned()).unwrap();
                    return;
                }
            }
            if n == 0 {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn api_and_bad_input_over_http() {
    let (hook_port, hook) = webhook_receiver();
    let config = format!("alert_webhook = \"http://127.0.0.1:{hook_port}/hook\"\n")
        + "default_executor = \"noop\"\n[executors.noop]\nkind = \"noop\"\n[executors.missing]\nkind = \"command\"\nargv = [\"/nonexistent/zipline\", \"run\", \"--mode\", \"{mode}\"]\n[teams.broken]\nexecutor = \"missing\"\n";
    let config = config.as_str();
    let mut all_specs = specs("good", 2, 3, "bench");
    let mut broken = specs("broken", 1, 1, "broken");
    broken[0]["tasks"][0]["retries"] = serde_json::json!(0);
    all_specs.as_array_mut().unwrap().push(broken[0].take());
    let setup = Setup::new(None, all_specs, config);
    let port = free_port();
    let mut args: Vec<String> = vec![
        "standalone".into(),
        "--specs".into(),
        setup.path("specs.json").display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--tick-ms".into(),
        "50".into(),
        "--warehouse".into(),
        setup.path("warehouse").display().to_string(),
    ];
    args.extend(setup.common());
    let mut server = Command::new(bin())
        .args(&args)
        .stderr(std::fs::File::create(setup.path("standalone.log")).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port);

    let (status, body) = http(
        port,
        "POST",
        "/api/v1/dags/good/runs",
        r#"{"start_ds": "2026-11-01", "end_ds": "2026-11-20"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, _) = http(
        port,
        "POST",
        "/api/v1/dags/broken/runs",
        r#"{"start_ds": "2026-11-20", "end_ds": "2026-11-20"}"#,
    );
    assert_eq!(status, 201);
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/dags/nope/runs",
        r#"{"start_ds": "2026-11-20", "end_ds": "2026-11-20"}"#,
    );
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"unknown DAG \"nope\""}"#)
    );
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/dags/good/runs",
        r#"{"start_ds": "2026-11-20", "end_ds": "yesterday"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("end_ds \\\"yesterday\\\" is not a yyyy-MM-dd date"),
        "{body}"
    );
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/dags/good/runs",
        r#"{"start": "2026-11-20"}"#,
    );
    // A body of the wrong shape is the client's to fix: 400, with a JSON message naming the field.
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown field `start`"), "{body}");

    // Both runs end: the good one succeeds, the broken one fails with a clear error.
    let started = Instant::now();
    let runs = loop {
        let (_, body) = http(port, "GET", "/api/v1/runs", "");
        let runs: serde_json::Value = serde_json::from_str(&body).unwrap();
        let states: Vec<String> = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].as_str().unwrap().to_owned())
            .collect();
        if states.len() == 2 && states.iter().all(|s| s == "success" || s == "failed") {
            break runs;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let by_dag: BTreeMap<String, (String, String)> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["dag_id"].as_str().unwrap().to_owned(),
                (
                    r["run_id"].as_str().unwrap().to_owned(),
                    r["state"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(by_dag["good"].1, "success");
    assert_eq!(by_dag["broken"].1, "failed");
    let broken_run = &by_dag["broken"].0;
    let (_, body) = http(
        port,
        "GET",
        &format!("/api/v1/dags/broken/runs/{broken_run}/tasks"),
        "",
    );
    assert!(
        body.contains("the executor's program \\\"/nonexistent/zipline\\\" was not found"),
        "{body}"
    );

    // The final failure reached the webhook.
    let alert: serde_json::Value =
        serde_json::from_str(&hook.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(alert["event"], "task_failed");
    assert_eq!(alert["dag_id"], "broken");
    assert_eq!(alert["task_id"], "t00000");
    assert!(
        alert["error"].as_str().unwrap().contains("was not found"),
        "{alert}"
    );
    assert!(alert["log_path"].is_string() || alert["log_path"].is_null());

    let good_run = &by_dag["good"].0;
    let (status, body) = http(
        port,
        "POST",
        &format!("/api/v1/dags/good/runs/{good_run}/tasks/t00000/clear?downstream=true"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"cleared":["t00000","t00002","t00004"]}"#);
    let (status, body) = http(
        port,
        "POST",
        &format!("/api/v1/dags/good/runs/{good_run}/tasks/zzz/clear"),
        "",
    );
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"DAG \"good\" has no task \"zzz\""}"#)
    );
    let (status, body) = http(
        port,
        "GET",
        &format!("/api/v1/dags/good/runs/{good_run}/tasks/t00001/logs"),
        "",
    );
    assert_eq!(status, 200);
    assert!(body.starts_with("# try 1 on "), "{body}");
    let (status, body) = http(port, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        body.contains("chronoflow_task_instances{state=\"success\"}"),
        "{body}"
    );
    assert!(
        body.contains("chronoflow_dispatch_latency_seconds_count"),
        "{body}"
    );
    let (status, body) = http(port, "GET", "/api/v1/openapi.json", "");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");

    // Ctrl-C (SIGINT) drains and exits cleanly.
    unsafe_sigint(server.id());
    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

fn unsafe_sigint(pid: u32) {
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A repo that stops planning is reported, and the scheduler keeps the DAGs it had.
#[test]
fn a_repo_that_no_longer_plans_keeps_the_last_good_dags() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart"),
        &repo,
    );
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let home = dir.path().join("home");
    let run = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--database-url".into(),
            url.clone(),
            "--home".into(),
            home.display().to_string(),
        ]);
        Command::new(bin()).args(&all).output().unwrap()
    };
    let out = run(&["dags", "sync", "--repo", repo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = String::from_utf8_lossy(&run(&["dags", "list"]).stdout).into_owned();
    assert!(before.contains("chronon_join_quickstart"), "{before}");
    // Break one config.
    let join = repo.join("compiled/production/joins/quickstart/training_set.v2");
    std::fs::write(&join, "{ not json").unwrap();
    let out = run(&["dags", "sync", "--repo", repo.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("training_set.v2"), "{err}");
    let after = String::from_utf8_lossy(&run(&["dags", "list"]).stdout).into_owned();
    assert_eq!(before, after);
}

/// Unknown names on the command line are errors that say what is unknown.
#[test]
fn unknown_dag_run_and_task_on_the_command_line() {
    let setup = Setup::new(
        None,
        specs("good", 1, 2, "bench"),
        "default_executor = \"in_process\"\n",
    );
    let out = setup.cli(&[
        "dags",
        "sync",
        "--specs",
        setup.path("specs.json").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    for (args, message) in [
        (vec!["dags", "pause", "nope"], "unknown DAG \"nope\""),
        (
            vec![
                "dags",
                "trigger",
                "nope",
                "--start-ds",
                "2026-11-20",
                "--end-ds",
                "2026-11-20",
            ],
            "unknown DAG \"nope\"",
        ),
        (
            vec!["tasks", "list", "good", "no_such_run"],
            "DAG \"good\" has no run \"no_such_run\"",
        ),
        (
            vec![
                "dags",
                "backfill",
                "good",
                "--start-ds",
                "2026-11-20",
                "--end-ds",
                "2026-11-20",
            ],
            "a manual DAG is backfilled",
        ),
    ] {
        let out = setup.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }
}
