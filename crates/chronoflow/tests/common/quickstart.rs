//! The quickstart, set up as users run it: a sandbox with a warehouse and a KV store, the
//! uploads, a fetcher process, and the consistency check every online test ends with.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{Map, Value, json};

use super::{free_port, http, wait_for_port};

pub const BATCH_DAY: &str = "2023-11-29";
pub const FETCH_DAY: &str = "2023-11-30";
pub const DAY_MS: i64 = 86_400_000;

pub fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart")
}

/// One sandbox: a warehouse, a KV store and the quickstart repo.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub warehouse: PathBuf,
    pub kv: String,
    /// More environment for every command (an S3 endpoint's `AWS_*`, say).
    pub env: Vec<(&'static str, String)>,
}

impl Setup {
    pub fn new(kv: Option<String>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = dir.path().join("warehouse");
        let kv = kv.unwrap_or_else(|| dir.path().join("kv").display().to_string());
        Setup {
            dir,
            repo: quickstart(),
            warehouse,
            kv,
            env: Vec::new(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_chronoflow"));
        c.args(args)
            .env("CHRONOFLOW_WAREHOUSE", &self.warehouse)
            .env("CHRONOFLOW_KV", &self.kv)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "chronoflow {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn job(&self, mode: &str, conf: &str, extra: &[&str]) -> Output {
        let repo = &self.repo;
        let mut args = vec![
            "run",
            "--mode",
            mode,
            "--repo",
            repo.to_str().unwrap(),
            "--conf",
            conf,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    pub fn import(&self, table: &str, csv: &Path) {
        self.run(&["table", "import", table, csv.to_str().unwrap()]);
    }

    /// Rows of a partition as JSON objects.
    pub fn export(&self, table: &str, ds: &str) -> Vec<Map<String, Value>> {
        let out = self.run(&["table", "export", table, "--ds", ds, "--format", "json"]);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn serve(&self) -> (Fetcher, u16) {
        let port = free_port();
        let child = self
            .command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port);
        (Fetcher(child), port)
    }
}

/// The fetcher process, stopped when dropped.
pub struct Fetcher(pub Child);

impl Drop for Fetcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub const GB: &str = "compiled/production/group_bys/quickstart";
pub const JOINS: &str = "compiled/production/joins/quickstart";

/// The quickstart data, uploaded for the batch day, with the day after replayed.
pub fn uploaded(kv: Option<String>) -> Setup {
    upload_quickstart(Setup::new(kv))
}

pub fn upload_quickstart(s: Setup) -> Setup {
    for t in ["purchases", "returns", "users", "checkouts"] {
        s.import(
            &format!("data.{t}"),
            &quickstart().join(format!("data/{t}.csv")),
        );
    }
    upload_imported(s)
}

/// The quickstart's events are in random partitions (an event of the 26th in the 10th's partition):
/// those are served as rows. This lands four in five in their own day's partition, as most real
/// event tables do, so the partial aggregates (tiles) serve them and the rest stay late rows.
pub fn upload_quickstart_in_event_partitions(s: Setup) -> Setup {
    for t in ["purchases", "returns", "users", "checkouts"] {
        let source = quickstart().join(format!("data/{t}.csv"));
        let text = std::fs::read_to_string(&source).unwrap();
        let mut lines = text.lines();
        let mut out = format!("{}\n", lines.next().unwrap());
        for (i, line) in lines.enumerate() {
            let (ds, rest) = line.split_once(',').unwrap();
            let ts: Option<i64> = rest.split(',').next().and_then(|t| t.parse().ok());
            let ds = match ts {
                Some(ts) if i % 5 != 0 && t != "users" => civil(ts.div_euclid(DAY_MS)),
                _ => ds.to_owned(),
            };
            out.push_str(&format!("{ds},{rest}\n"));
        }
        let target = s.dir.path().join(format!("{t}.csv"));
        std::fs::write(&target, out).unwrap();
        s.import(&format!("data.{t}"), &target);
    }
    upload_imported(s)
}

pub fn upload_imported(s: Setup) -> Setup {
    let s = upload_batches(s);
    s.job(
        "streaming",
        &format!("{GB}/returns.v1"),
        &["--replay-table", "data.returns", "--since", BATCH_DAY],
    );
    s
}

/// The GroupBys' batches of the batch day, and the Joins' definitions, in the KV store.
pub fn upload_batches(s: Setup) -> Setup {
    for gb in ["purchases", "returns", "users"] {
        let conf = format!("{GB}/{gb}.v1");
        s.job("upload", &conf, &["--ds", BATCH_DAY]);
        s.job("upload-to-kv", &conf, &["--ds", BATCH_DAY]);
    }
    for join in ["training_set.v1", "training_set.v2"] {
        s.job("metadata-upload", &format!("{JOINS}/{join}"), &[]);
    }
    s
}

/// The quickstart's tables imported into the warehouse, and the batches uploaded.
pub fn imported_and_uploaded(s: Setup) -> Setup {
    for t in ["purchases", "returns", "users", "checkouts"] {
        s.import(
            &format!("data.{t}"),
            &quickstart().join(format!("data/{t}.csv")),
        );
    }
    upload_batches(s)
}

pub fn post(port: u16, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = http(port, "POST", path, &body.to_string());
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"));
    (status, value)
}

pub fn fetch_one(port: u16, path: &str, keys: Value, at: i64) -> Map<String, Value> {
    let (status, body) = post(port, &format!("{path}?at_millis={at}"), &json!([keys]));
    assert_eq!(status, 200, "{body}");
    body["results"][0]["features"].as_object().unwrap().clone()
}

/// Compares fetched features with a backfill row, feature by feature, naming the first mismatch.
pub fn assert_same(fetched: &Map<String, Value>, row: &Map<String, Value>, context: &str) {
    assert!(!fetched.is_empty(), "{context}: nothing fetched");
    for (feature, value) in fetched {
        let expected = row
            .get(feature)
            .unwrap_or_else(|| panic!("{context}: {feature} is not a backfill column"));
        assert_eq!(value, expected, "{context}: {feature}");
    }
}

pub fn epoch_day(ds: &str) -> i64 {
    let (y, rest) = ds.split_once('-').unwrap();
    let (m, d) = rest.split_once('-').unwrap();
    let days = chrono_days(y.parse().unwrap(), m.parse().unwrap(), d.parse().unwrap());
    days * DAY_MS
}

/// The civil date of a day number (Howard Hinnant's algorithm).
pub fn civil(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn chrono_days(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The consistency invariant (SPEC §4.6): with the batch of day D uploaded and the events after D
/// replayed, fetching a Join for a left row's keys at its `ts` on D+1 returns exactly what the
/// Join backfill computes for that row; fetching a GroupBy returns its backfill of D (SNAPSHOT),
/// or the Join's values for that part at the row's time (TEMPORAL).
pub fn fetches_equal_backfills(s: &Setup) {
    for join in ["training_set.v1", "training_set.v2"] {
        s.job("backfill", &format!("{JOINS}/{join}"), &["--ds", FETCH_DAY]);
    }
    for gb in ["purchases", "users"] {
        s.job("backfill", &format!("{GB}/{gb}.v1"), &["--ds", BATCH_DAY]);
    }
    let (_fetcher, port) = s.serve();

    let (start, end) = (epoch_day(FETCH_DAY), epoch_day(FETCH_DAY) + DAY_MS);
    let mut compared = 0;
    for (join, table) in [
        (
            "quickstart.training_set.v1",
            "default.quickstart_training_set_v1",
        ),
        (
            "quickstart/training_set.v2",
            "default.quickstart_training_set_v2",
        ),
    ] {
        for row in s.export(table, FETCH_DAY) {
            let ts = row["ts"].as_i64().unwrap();
            if !(start..end).contains(&ts) {
                continue;
            }
            let keys = json!({"user_id": row["user_id"]});
            let fetched = fetch_one(port, &format!("/v1/fetch/join/{join}"), keys, ts);
            assert_eq!(
                fetched.len(),
                row.len() - 3,
                "{join}: one value per feature"
            );
            assert_same(
                &fetched,
                &row,
                &format!("{join} user {} at {ts}", row["user_id"]),
            );
            compared += 1;

            // The TEMPORAL GroupBy alone, at the same time, equals the Join's part.
            let gb = fetch_one(
                port,
                "/v1/fetch/groupby/quickstart.returns.v1",
                json!({"user_id": row["user_id"]}),
                ts,
            );
            let prefixed: Map<String, Value> = gb
                .into_iter()
                .map(|(f, v)| (format!("quickstart_returns_v1_{f}"), v))
                .collect();
            assert_same(
                &prefixed,
                &row,
                &format!("returns.v1 user {} at {ts}", row["user_id"]),
            );
        }
    }
    assert!(compared > 250, "only {compared} left rows compared");

    // SNAPSHOT GroupBys equal their backfill of the batch day, key by key.
    for (name, table) in [
        ("quickstart.purchases.v1", "default.quickstart_purchases_v1"),
        ("quickstart.users.v1", "default.quickstart_users_v1"),
    ] {
        let rows = s.export(table, BATCH_DAY);
        assert!(rows.len() > 50, "{table}: {} rows", rows.len());
        for row in rows {
            let fetched = fetch_one(
                port,
                &format!("/v1/fetch/groupby/{name}"),
                json!({"user_id": row["user_id"]}),
                start + 1,
            );
            assert_same(&fetched, &row, &format!("{name} user {}", row["user_id"]));
        }
    }
}
