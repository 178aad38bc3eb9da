//! The quickstart computed end to end on the local engine, checked against values derived by
//! hand from `fixtures/chronon/quickstart/data/*.csv` and SPEC §4. (An independent brute-force
//! check of every value agreed too; the rows below are the ones worth reading.)
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::{Path, PathBuf};

use chronoflow_config::{Config, PartitionDate, Repo};
use chronoflow_engine::export::{ExportFormat, export_table};
use chronoflow_engine::import::import_file;
use chronoflow_engine::jobs::{backfill_group_by, backfill_join};
use chronoflow_engine::{TableName, Warehouse};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart")
}

fn d(s: &str) -> PartitionDate {
    PartitionDate::parse(s).unwrap()
}

fn november() -> Vec<PartitionDate> {
    (0..30).map(|i| d("2023-11-01").add_days(i)).collect()
}

async fn setup() -> (tempfile::TempDir, Warehouse, Repo) {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    for t in ["purchases", "returns", "users", "checkouts"] {
        let file = fixtures().join(format!("data/{t}.csv"));
        import_file(
            &warehouse,
            &TableName::parse(&format!("data.{t}")).unwrap(),
            &file,
            "ds",
        )
        .await
        .unwrap();
    }
    let repo = chronoflow_config::fs::load_repo(&fixtures()).unwrap();
    (dir, warehouse, repo)
}

async fn backfill(warehouse: &Warehouse, repo: &Repo, name: &str, days: &[PartitionDate]) {
    let loaded = repo.config(name).unwrap();
    match &loaded.config {
        Config::GroupBy(gb) => backfill_group_by(warehouse, loaded, gb, days)
            .await
            .unwrap(),
        Config::Join(j) => backfill_join(warehouse, loaded, j, days).await.unwrap(),
        Config::StagingQuery(_) => unreachable!(),
    };
}

async fn rows(warehouse: &Warehouse, table: &str) -> Vec<serde_json::Map<String, Value>> {
    let mut out = Vec::new();
    export_table(
        warehouse,
        &TableName::parse(table).unwrap(),
        None,
        ExportFormat::Json,
        &mut out,
    )
    .await
    .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| match serde_json::from_str(l).unwrap() {
            Value::Object(m) => m,
            _ => unreachable!(),
        })
        .collect()
}

fn find<'a>(
    rows: &'a [serde_json::Map<String, Value>],
    user: i64,
    ds: &str,
) -> &'a serde_json::Map<String, Value> {
    rows.iter()
        .find(|r| r["user_id"] == user && r["ds"] == ds)
        .unwrap_or_else(|| panic!("no row for user {user} on {ds}"))
}

#[tokio::test]
async fn training_set_v2_row_of_user_26() {
    let (_dir, warehouse, repo) = setup().await;
    backfill(
        &warehouse,
        &repo,
        "quickstart.training_set.v2",
        &[d("2023-11-30")],
    )
    .await;
    let out = rows(&warehouse, "default.quickstart_training_set_v2").await;
    // Every left row exactly once (checkouts has 200 rows, all in partition 2023-11-30).
    assert_eq!(out.len(), 200);
    let row = out.iter().find(|r| r["user_id"] == 26).unwrap();
    // The left row: ts 1701374234059 = 2023-11-30T19:57:14Z, so ts_ds = 2023-11-30.
    assert_eq!(row["ts"], 1701374234059i64);

    // purchases.v1 is SNAPSHOT: the GroupBy's snapshot of 2023-11-29 (windows end 2023-11-30T00:00).
    // User 26's purchases (ts date, partition, price): 11-02/11-16/183, 11-08/11-09/87,
    // 11-13/11-04/379, 11-14/11-24/479, 11-23/11-09/130, 11-24/11-18/298.
    let p = |f: &str| row[&format!("quickstart_purchases_v1_purchase_price_{f}")].clone();
    // 3d: [11-27, 11-30): nothing, so SUM and COUNT are null, not 0.
    assert_eq!(
        (p("sum_3d"), p("count_3d"), p("average_3d")),
        (Value::Null, Value::Null, Value::Null)
    );
    // 14d: [11-16, 11-30) holds 130 and 298, but 130 sits in partition 11-09, before the oldest
    // partition the window reads (11-29 - 1 - 14 = 11-14): only 298 counts.
    assert_eq!(
        (p("sum_14d"), p("count_14d")),
        (Value::from(298), Value::from(1))
    );
    // 30d: all six.
    assert_eq!(
        (p("sum_30d"), p("count_30d")),
        (Value::from(1556), Value::from(6))
    );
    assert!((p("average_30d").as_f64().unwrap() - 1556.0 / 6.0).abs() < 1e-12);
    assert_eq!(
        p("last10"),
        serde_json::json!([298, 130, 479, 379, 87, 183])
    );

    // returns.v1 has a topic: TEMPORAL, windows end at the left ts (exclusive), as of 2023-11-30.
    // User 26's returns: 11-04/11-25/217, 11-05/11-13/113, 11-08/11-27/272, 11-21/11-04/263, 11-30 04:12/11-05/192.
    let r = |f: &str| row[&format!("quickstart_returns_v1_refund_amt_{f}")].clone();
    assert_eq!(
        (r("sum_30d"), r("count_30d")),
        (Value::from(1057), Value::from(5))
    );
    // 14d: 263 and 192 fall in the window but in partitions 11-04 and 11-05, older than 11-15.
    assert_eq!((r("sum_14d"), r("count_3d")), (Value::Null, Value::Null));
    assert_eq!(r("last2"), serde_json::json!([192, 263]));
}

#[tokio::test]
async fn training_set_v1_reads_the_users_snapshot_of_the_day_before() {
    let (_dir, warehouse, repo) = setup().await;
    backfill(
        &warehouse,
        &repo,
        "quickstart.training_set.v1",
        &[d("2023-11-30")],
    )
    .await;
    let out = rows(&warehouse, "default.quickstart_training_set_v1").await;
    assert_eq!(out.len(), 200);
    // users.csv: 2023-11-29,26,2022-03-28,1 (the snapshot ts_ds - 1 = 2023-11-29).
    let row = out.iter().find(|r| r["user_id"] == 26).unwrap();
    assert_eq!(row["quickstart_users_v1_account_created_ds"], "2022-03-28");
    assert_eq!(row["quickstart_users_v1_email_verified"], 1);
    // Columns: left selects, then the parts' features in order, then ds.
    let columns: Vec<&String> = row.keys().collect();
    assert_eq!(
        columns[..3],
        [
            "user_id",
            "ts",
            "quickstart_purchases_v1_purchase_price_sum_3d"
        ]
    );
    assert_eq!(columns.last().unwrap().as_str(), "ds");
}

#[tokio::test]
async fn purchases_backfill_respects_both_partition_bounds_and_does_not_depend_on_steps() {
    let (_dir, warehouse, repo) = setup().await;
    backfill(&warehouse, &repo, "quickstart.purchases.v1", &november()).await;
    let all = rows(&warehouse, "default.quickstart_purchases_v1").await;
    // User 10 on 2023-11-20: the 3d window [11-18, 11-21) holds a purchase of 245 (ts 11-18) that
    // landed in partition 11-30, after the as-of date, and one of 11 (ts 11-20) in partition 11-15,
    // before the oldest partition the window reads (11-16): both excluded, so 3d is null.
    let row = find(&all, 10, "2023-11-20");
    assert_eq!(row["purchase_price_sum_3d"], Value::Null);
    assert_eq!(row["purchase_price_count_3d"], Value::Null);
    // 14d (oldest partition 11-05) counts the 11; 30d adds a 210.
    assert_eq!(
        (
            row["purchase_price_sum_14d"].clone(),
            row["purchase_price_sum_30d"].clone()
        ),
        (Value::from(11), Value::from(221))
    );
    assert_eq!(row["purchase_price_last10"], serde_json::json!([11, 210]));
    // Output columns: keys, features, ds.
    let columns: Vec<&String> = row.keys().collect();
    assert_eq!(columns[0], "user_id");
    assert_eq!(columns.last().unwrap().as_str(), "ds");

    // The same days computed one at a time give the same rows.
    let (_dir2, other, repo2) = setup().await;
    for day in november() {
        backfill(&other, &repo2, "quickstart.purchases.v1", &[day]).await;
    }
    assert_eq!(rows(&other, "default.quickstart_purchases_v1").await, all);
}

#[tokio::test]
async fn the_exported_csv_row_of_user_26_is_the_hand_derived_one() {
    let (_dir, warehouse, repo) = setup().await;
    backfill(
        &warehouse,
        &repo,
        "quickstart.training_set.v2",
        &[d("2023-11-30")],
    )
    .await;
    let mut csv = Vec::new();
    let table = TableName::parse("default.quickstart_training_set_v2").unwrap();
    export_table(
        &warehouse,
        &table,
        Some(d("2023-11-30")),
        ExportFormat::Csv,
        &mut csv,
    )
    .await
    .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    // The values derived in `training_set_v2_row_of_user_26`, as CSV: nulls empty, lists as JSON.
    let line = csv.lines().find(|l| l.starts_with("26,")).unwrap();
    assert_eq!(
        line,
        "26,1701374234059,,298,1556,,1,6,,298.0,259.3333333333333,\"[298,130,479,379,87,183]\",,,1057,,,5,,,211.4,\"[192,263]\",2023-11-30"
    );
}
