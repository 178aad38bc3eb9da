//! The repo, tables and online pages' JSON over the whole app (guard included): a real SQLite
//! store, a warehouse with the quickstart's data (and its uploads and backfills where a page
//! needs them), an embedded KV store and a fetcher, and the quickstart repo.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chronoflow_config::{Config, PartitionDate, Repo};
use chronoflow_engine::import::import_file;
use chronoflow_engine::jobs::{backfill_group_by, backfill_join};
use chronoflow_engine::{TableName, Warehouse};
use chronoflow_scheduler::api::ApiState;
use chronoflow_scheduler::clock::{Clock, FakeClock};
use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::metrics::Metrics;
use chronoflow_scheduler::store::Store;
use chronoflow_serve::Fetcher;
use chronoflow_serve::kv::SharedKv;
use chronoflow_serve::upload;
use chronoflow_web::{GuardOptions, WebContext};
use serde_json::{Value, json};
use tower::ServiceExt;

const BATCH_DAY: &str = "2023-11-29";
const FETCH_DAY: &str = "2023-11-30";
/// 2023-12-03T06:00:00Z: yesterday is 2023-12-02.
const NOW_MS: i64 = 1_701_583_200_000;
/// User 26's checkout (2023-11-30T19:57:14.059Z), a left row of training_set.v2.
const CHECKOUT_TS: i64 = 1_701_374_234_059;

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart")
}

fn d(s: &str) -> PartitionDate {
    PartitionDate::parse(s).expect("date")
}

struct Setup {
    dir: tempfile::TempDir,
    warehouse: Arc<Warehouse>,
    repo: Repo,
    /// The repo the pages read.
    repo_dir: PathBuf,
}

impl Setup {
    /// A warehouse with the quickstart's source tables.
    async fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let warehouse = Arc::new(
            Warehouse::open(&dir.path().join("wh").display().to_string()).expect("warehouse"),
        );
        for t in ["purchases", "returns", "users", "checkouts"] {
            import_file(
                &warehouse,
                &TableName::parse(&format!("data.{t}")).expect("name"),
                &quickstart().join(format!("data/{t}.csv")),
                "ds",
            )
            .await
            .expect("import");
        }
        let repo = chronoflow_config::fs::load_repo(&quickstart()).expect("quickstart repo");
        Setup {
            dir,
            warehouse,
            repo,
            repo_dir: quickstart(),
        }
    }

    async fn backfill(&self, name: &str, day: &str) {
        let loaded = self.repo.config(name).expect("config");
        match &loaded.config {
            Config::GroupBy(gb) => {
                backfill_group_by(&self.warehouse, loaded, gb, &[d(day)])
                    .await
                    .expect("backfill");
            }
            Config::Join(j) => {
                backfill_join(&self.warehouse, loaded, j, &[d(day)])
                    .await
                    .expect("backfill");
            }
            Config::StagingQuery(_) => unreachable!("no staging query in the quickstart"),
        }
    }

    /// Serving as the CLI sets it up: the GroupBys' batches of `BATCH_DAY`, the Join's
    /// metadata, and returns.v1's events after the batch day replayed.
    async fn serve(&self) -> SharedKv {
        let kv = SharedKv::new(self.dir.path().join("kv").display().to_string());
        let store = kv.get().await.expect("kv");
        for gb in ["purchases", "returns", "users"] {
            let loaded = self
                .repo
                .config(&format!("quickstart.{gb}.v1"))
                .expect("group by");
            let stored = upload::stored_config(&quickstart(), loaded).expect("stored config");
            upload::upload(&self.warehouse, loaded, stored, d(BATCH_DAY))
                .await
                .expect("upload");
            upload::upload_to_kv(
                &self.warehouse,
                store.as_ref(),
                loaded,
                d(BATCH_DAY),
                &mut |_, _| {},
            )
            .await
            .expect("upload-to-kv");
        }
        let join = self
            .repo
            .config("quickstart.training_set.v2")
            .expect("join");
        let stored = upload::stored_config(&quickstart(), join).expect("stored config");
        upload::metadata_upload(store.as_ref(), join, stored)
            .await
            .expect("metadata upload");
        let returns = self.repo.config("quickstart.returns.v1").expect("returns");
        upload::replay(
            &self.warehouse,
            store.as_ref(),
            returns,
            "data.returns",
            d(BATCH_DAY),
            &mut |_, _| {},
        )
        .await
        .expect("replay");
        kv
    }

    async fn app(&self, kv: Option<SharedKv>) -> Router {
        let store = Arc::new(
            Store::open_sqlite(&self.dir.path().join("state.db"))
                .await
                .expect("store"),
        );
        let clock: Arc<dyn Clock> = Arc::new(FakeClock::new(NOW_MS));
        let fetcher = kv.clone().map(|kv| Arc::new(Fetcher::new(kv, None)));
        let web = Arc::new(
            WebContext::new(
                store.clone(),
                clock.clone(),
                self.warehouse.clone(),
                self.repo_dir.clone(),
                Arc::new(SchedulerConfig::default()),
                fetcher,
                kv,
                0.5,
                GuardOptions::default(),
            )
            .expect("web context"),
        );
        let api = ApiState {
            store,
            clock,
            metrics: Arc::new(Metrics::default()),
            consistency: None,
        };
        chronoflow_web::app(api, web, None)
    }
}

async fn call(app: &Router, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1")
        .header(header::CONTENT_TYPE, "application/json");
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = app
        .clone()
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .expect("body");
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{path}: {status}: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

async fn get(app: &Router, path: &str) -> Value {
    let (status, body) = call(app, "GET", path, None).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn configs_lineage_and_check() {
    let s = Setup::new().await;
    let app = s.app(None).await;

    let configs = get(&app, "/api/v1/ui/configs").await;
    let names: Vec<&str> = configs["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "quickstart.purchases.v1",
            "quickstart.returns.v1",
            "quickstart.training_set.v1",
            "quickstart.training_set.v2",
            "quickstart.users.v1",
        ]
    );
    assert_eq!(configs["configs"][3]["kind"], "join");
    assert_eq!(
        configs["configs"][3]["file"],
        "compiled/production/joins/quickstart/training_set.v2"
    );

    // One config, by its slash name as users type it.
    let config = get(&app, "/api/v1/ui/configs/quickstart/training_set.v2").await;
    assert_eq!(config["name"], "quickstart.training_set.v2");
    assert_eq!(config["team"], "quickstart");
    assert_eq!(
        config["json"]["metaData"]["name"],
        "quickstart.training_set.v2"
    );
    let jobs = config["jobs"].as_array().expect("jobs");
    assert!(
        jobs.iter()
            .any(|j| j["mode"] == "backfill" && j["dag_id"] == "chronon_join_quickstart"),
        "{jobs:?}"
    );
    assert!(
        jobs.iter()
            .any(|j| j["mode"] == "backfill" && j["dag_id"] == "chronon_join_backfill"),
        "{jobs:?}"
    );
    let (status, body) = call(&app, "GET", "/api/v1/ui/configs/quickstart.nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("nope")));

    // Lineage: data.purchases -> purchases.v1 -> its upload table; data.purchases -> the Join
    // -> its output; the GroupBy feeds the Join.
    let lineage = get(&app, "/api/v1/ui/lineage").await;
    let edges: Vec<(&str, &str)> = lineage["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| Some((e[0].as_str()?, e[1].as_str()?)))
        .collect();
    for edge in [
        ("table:data.purchases", "group_by:quickstart.purchases.v1"),
        (
            "group_by:quickstart.purchases.v1",
            "table:default.quickstart_purchases_v1_upload",
        ),
        ("table:data.purchases", "join:quickstart.training_set.v2"),
        ("table:data.checkouts", "join:quickstart.training_set.v2"),
        (
            "join:quickstart.training_set.v2",
            "table:default.quickstart_training_set_v2",
        ),
        (
            "group_by:quickstart.purchases.v1",
            "join:quickstart.training_set.v2",
        ),
    ] {
        assert!(edges.contains(&edge), "missing {edge:?} in {edges:?}");
    }
    let node = |id: &str| {
        lineage["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no node {id}"))
    };
    assert_eq!(
        node("table:data.purchases"),
        json!({"id": "table:data.purchases", "kind": "table", "label": "data.purchases",
               "link": "/ui/tables/data.purchases"})
    );
    assert_eq!(
        node("join:quickstart.training_set.v2")["link"],
        "/ui/configs/quickstart.training_set.v2"
    );

    // An edited training set: a content change changes what the Join's tasks run; a weekly
    // schedule moves its backfill to a new DAG. Nothing is applied.
    let file = "compiled/production/joins/quickstart/training_set.v2";
    let text = std::fs::read_to_string(quickstart().join(file)).expect("read");
    let mut value: Value = serde_json::from_str(&text).expect("json");
    value["metaData"]["customJson"] = json!("{\"check_consistency\": false, \"lag\": 1}");
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/ui/configs/check",
        Some(json!({"file": file, "json": value.to_string()})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        strings(&body["diff"]["added"]).is_empty(),
        "{}",
        body["diff"]
    );
    let changed = body["diff"]["changed"].as_array().expect("changed");
    let join_dag = changed
        .iter()
        .find(|c| c["dag_id"] == "chronon_join_quickstart")
        .unwrap_or_else(|| panic!("join DAG not changed: {changed:?}"));
    assert!(
        strings(&join_dag["tasks_changed"])
            .iter()
            .any(|t| t.contains("training_set_v2")),
        "{join_dag}"
    );
    // Nothing else of the DAG moved; the metadata upload sees the new content too.
    assert!(strings(&join_dag["tasks_added"]).is_empty(), "{join_dag}");
    assert!(strings(&join_dag["tasks_removed"]).is_empty(), "{join_dag}");
    assert!(
        changed.iter().any(|c| c["dag_id"] == "chronon_metadata"),
        "{changed:?}"
    );

    value["metaData"]["offlineSchedule"] = json!("@weekly");
    // Without the `compiled/` prefix: the repo's layout adds it.
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/ui/configs/check",
        Some(json!({"file": "production/joins/quickstart/training_set.v2", "json": value.to_string()})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        strings(&body["diff"]["added"]),
        ["chronon_join_quickstart__weekly"]
    );

    // Broken JSON: a diagnostic at the file, and the Join's tasks gone from the plan.
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/ui/configs/check",
        Some(json!({"file": file, "json": "{\"metaData\": "})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let diagnostics = body["diagnostics"].as_array().expect("diagnostics");
    assert!(
        diagnostics
            .iter()
            .any(|d| d["code"] == "invalid-json" && d["severity"] == "error" && d["file"] == file),
        "{diagnostics:?}"
    );
    let join_dag = body["diff"]["changed"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["dag_id"] == "chronon_join_quickstart"))
        .cloned()
        .unwrap_or_else(|| panic!("join DAG not changed: {}", body["diff"]));
    assert!(
        strings(&join_dag["tasks_removed"])
            .iter()
            .any(|t| t.contains("training_set_v2")),
        "{join_dag}"
    );

    // Paths outside the config layout are refused.
    for bad in [
        "../../etc/passwd",
        "/etc/passwd",
        "compiled/production/joins/quickstart/../../../x",
        "compiled/teams.json",
        "data/purchases.csv",
    ] {
        let (status, body) = call(
            &app,
            "POST",
            "/api/v1/ui/configs/check",
            Some(json!({"file": bad, "json": "{}"})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    // The repo on disk is untouched.
    assert_eq!(
        std::fs::read_to_string(quickstart().join(file)).expect("read"),
        text
    );
}

#[tokio::test]
async fn freshness_lags_behind_yesterday() {
    let s = Setup::new().await;
    s.backfill("quickstart.training_set.v2", FETCH_DAY).await;
    let app = s.app(None).await;
    let body = get(&app, "/api/v1/ui/freshness").await;
    let items = body["items"].as_array().expect("items");
    let item = |name: &str| {
        items
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no item {name} in {items:?}"))
    };
    // Sources: newest 11-30, due 12-02 (the daily jobs of 12-02 wait for it).
    assert_eq!(
        item("data.purchases"),
        json!({"kind": "table", "name": "data.purchases", "table": "data.purchases",
               "newest": "2023-11-30", "expected": "2023-12-02", "lag_days": 2, "schedule": null})
    );
    assert_eq!(
        item("quickstart.training_set.v2"),
        json!({"kind": "join", "name": "quickstart.training_set.v2",
               "table": "default.quickstart_training_set_v2", "newest": "2023-11-30",
               "expected": "2023-12-02", "lag_days": 2, "schedule": "@daily"})
    );
    // Never uploaded: no newest partition, so no lag.
    let purchases = item("quickstart.purchases.v1");
    assert_eq!(purchases["table"], "default.quickstart_purchases_v1_upload");
    assert_eq!(purchases["newest"], Value::Null);
    assert_eq!(purchases["expected"], "2023-12-02");
    assert_eq!(purchases["lag_days"], Value::Null);
}

/// Regression: one table whose metadata could not be read failed the whole tables page (500),
/// hiding every readable table with it.
#[tokio::test]
async fn tables_page_failed_as_a_whole_when_one_table_was_unreadable() {
    let s = Setup::new().await;
    std::fs::write(s.dir.path().join("wh/data/users/_table.json"), "{ not json")
        .expect("corrupt the table's metadata");
    let app = s.app(None).await;
    let (status, list) = call(&app, "GET", "/api/v1/ui/tables", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let tables = list["tables"].as_array().expect("tables");
    let names: Vec<&str> = tables.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "data.checkouts",
            "data.purchases",
            "data.returns",
            "data.users"
        ]
    );
    let users = &tables[3];
    let error = users["error"].as_str().unwrap_or_else(|| panic!("{users}"));
    assert!(
        error.contains("data.users") || error.contains("users/_table.json"),
        "{error}"
    );
    assert_eq!(users["partitions"], 0);
    for readable in &tables[..3] {
        assert!(readable.get("error").is_none(), "{readable}");
        assert!(
            readable["partitions"].as_u64().unwrap_or(0) > 0,
            "{readable}"
        );
    }
}

#[tokio::test]
async fn tables_show_partitions_flags_and_lineage() {
    let s = Setup::new().await;
    s.backfill("quickstart.training_set.v2", FETCH_DAY).await;
    // Four days of 10 rows (half of `amount` null on the last of them), then a day of 2.
    let mut csv = String::from("ds,user_id,amount\n");
    for (day, rows) in [
        ("2023-11-01", 10),
        ("2023-11-02", 10),
        ("2023-11-03", 10),
        ("2023-11-04", 10),
        ("2023-11-05", 2),
    ] {
        for i in 0..rows {
            let amount = if day == "2023-11-04" && i % 2 == 0 {
                String::new()
            } else {
                (i * 3).to_string()
            };
            csv.push_str(&format!("{day},{i},{amount}\n"));
        }
    }
    let path = s.dir.path().join("events.csv");
    std::fs::write(&path, csv).expect("write");
    import_file(
        &s.warehouse,
        &TableName::parse("test.events").expect("name"),
        &path,
        "ds",
    )
    .await
    .expect("import");
    let app = s.app(None).await;

    let list = get(&app, "/api/v1/ui/tables").await;
    let tables = list["tables"].as_array().expect("tables");
    let events = tables
        .iter()
        .find(|t| t["name"] == "test.events")
        .unwrap_or_else(|| panic!("{tables:?}"));
    assert_eq!(
        events,
        &json!({"name": "test.events", "partitions": 5, "newest": "2023-11-05", "rows": 2, "flagged": 1})
    );
    assert!(tables.iter().any(|t| t["name"] == "data.purchases"));

    let table = get(&app, "/api/v1/ui/tables/test.events").await;
    assert_eq!(table["partition_column"], "ds");
    assert_eq!(table["format"], "chronoflow");
    let schema: Vec<&str> = table["schema"]
        .as_array()
        .expect("schema")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(schema, ["user_id", "amount"]);
    let partitions = table["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 5);
    assert_eq!(partitions[4]["ds"], "2023-11-05");
    assert_eq!(partitions[4]["rows"], 2);
    assert_eq!(partitions[4]["flag"], "drop");
    assert_eq!(partitions[4]["median"], 10.0);
    assert_eq!(partitions[3]["flag"], Value::Null);
    let amount = |p: &Value| {
        p["columns"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "amount"))
            .map(|c| c["null_fraction"].clone())
    };
    assert_eq!(amount(&partitions[3]), Some(json!(0.5)));
    assert_eq!(amount(&partitions[2]), Some(json!(0.0)));
    assert_eq!(table["readers"], json!([]));
    assert_eq!(table["producer"], Value::Null);

    // Readers and producer from the plan.
    let purchases = get(&app, "/api/v1/ui/tables/data.purchases").await;
    let readers = strings(&purchases["readers"]);
    for r in [
        "quickstart.purchases.v1",
        "quickstart.training_set.v1",
        "quickstart.training_set.v2",
    ] {
        assert!(readers.contains(&r), "{readers:?}");
    }
    assert_eq!(purchases["producer"], Value::Null);
    let output = get(&app, "/api/v1/ui/tables/default.quickstart_training_set_v2").await;
    assert_eq!(output["producer"], "quickstart.training_set.v2");
    assert_eq!(output["partitions"][0]["rows"], 200);

    for bad in ["nope", "a.b.c", "no.such_table"] {
        let (status, body) = call(&app, "GET", &format!("/api/v1/ui/tables/{bad}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(bad)),
            "{body}"
        );
    }
}

#[tokio::test]
async fn online_pages_and_playground_against_the_backfill() {
    let s = Setup::new().await;
    s.backfill("quickstart.training_set.v2", FETCH_DAY).await;
    s.backfill("quickstart.purchases.v1", BATCH_DAY).await;
    let kv = s.serve().await;
    let app = s.app(Some(kv)).await;

    let online = get(&app, "/api/v1/ui/online").await;
    let group_bys = online["group_bys"].as_array().expect("group_bys");
    assert_eq!(group_bys.len(), 3, "{online}");
    assert_eq!(
        group_bys[0],
        json!({"name": "quickstart.purchases.v1", "batch_ds": BATCH_DAY, "streamed_rows": 0,
               "last_upload_ms": null})
    );
    // returns.v1's events after the batch day were replayed: counted.
    let returns = group_bys
        .iter()
        .find(|g| g["name"] == "quickstart.returns.v1")
        .expect("returns.v1");
    assert!(
        returns["streamed_rows"].as_u64().is_some_and(|n| n > 0),
        "{returns}"
    );
    assert!(
        strings(&online["joins"]).contains(&"quickstart.training_set.v2"),
        "{online}"
    );

    // The Join at a left row's time equals that row of its backfill.
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/ui/online/playground",
        Some(json!({"kind": "join", "name": "quickstart/training_set.v2",
                    "keys": {"user_id": 26}, "at_millis": CHECKOUT_TS})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["backfill_table"], "default.quickstart_training_set_v2");
    assert_eq!(body["backfill"]["ts"], CHECKOUT_TS);
    assert_eq!(body["backfill"]["user_id"], 26);
    let features = body["features"].as_object().expect("features");
    assert!(features.len() > 10, "{body}");
    assert_eq!(
        features["quickstart_purchases_v1_purchase_price_sum_14d"],
        298
    );
    assert_eq!(body["differs"], json!([]), "{body}");

    // A GroupBy, just after the batch day: its snapshot of that day.
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/ui/online/playground",
        Some(
            json!({"kind": "group_by", "name": "quickstart.purchases.v1",
                    "keys": {"user_id": "26"}, "at_millis": d(FETCH_DAY).epoch_millis() + 1}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["backfill_table"], "default.quickstart_purchases_v1");
    assert_eq!(body["backfill"]["user_id"], 26);
    assert_eq!(body["features"]["purchase_price_sum_14d"], 298);
    assert_eq!(body["differs"], json!([]), "{body}");

    // No backfill row for that time: nothing to compare.
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/ui/online/playground",
        Some(json!({"kind": "join", "name": "quickstart.training_set.v2",
                    "keys": {"user_id": 26}, "at_millis": CHECKOUT_TS + 1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["backfill"], Value::Null);
    assert_eq!(body["differs"], json!([]));

    // Bad keys are the caller's error.
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/ui/online/playground",
        Some(
            json!({"kind": "group_by", "name": "quickstart.purchases.v1",
                    "keys": {"user_id": "x"}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_process_without_a_fetcher_says_so() {
    let s = Setup::new().await;
    let app = s.app(None).await;
    assert_eq!(
        get(&app, "/api/v1/ui/online").await,
        json!({"group_bys": [], "joins": [], "message": "this process does not serve features"})
    );
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/ui/online/playground",
        Some(json!({"kind": "join", "name": "quickstart.training_set.v2",
                    "keys": {"user_id": 26}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "this process does not serve features");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test]
async fn the_repo_is_reloaded_when_a_file_changes() {
    let mut s = Setup::new().await;
    let repo = s.dir.path().join("repo");
    copy_dir(&quickstart().join("compiled"), &repo.join("compiled"));
    s.repo_dir = repo.clone();
    let app = s.app(None).await;
    let names = |body: &Value| -> Vec<(String, u64)> {
        body["configs"]
            .as_array()
            .expect("configs")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_owned(),
                    c["errors"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    };
    assert_eq!(names(&get(&app, "/api/v1/ui/configs").await).len(), 5);

    // A new GroupBy and a broken file.
    let dir = repo.join("compiled/production/group_bys/quickstart");
    let text = std::fs::read_to_string(dir.join("purchases.v1")).expect("read");
    std::fs::write(
        dir.join("purchases.v2"),
        text.replace("quickstart.purchases.v1", "quickstart.purchases.v2"),
    )
    .expect("write");
    std::fs::write(dir.join("broken.v1"), "{").expect("write");
    // Within a few seconds of the last look the cached repo is served; then it is reloaded.
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    let configs = names(&get(&app, "/api/v1/ui/configs").await);
    assert!(
        configs.contains(&("quickstart.purchases.v2".to_owned(), 0)),
        "{configs:?}"
    );
    assert!(
        configs.contains(&("quickstart.broken.v1".to_owned(), 1)),
        "{configs:?}"
    );
    let broken = get(&app, "/api/v1/ui/configs/quickstart.broken.v1").await;
    assert_eq!(broken["json"], Value::Null);
    assert_eq!(broken["diagnostics"][0]["code"], "invalid-json");
    assert_eq!(broken["jobs"], json!([]));
}
