//! Backfills split by key into shards and spilled to disk (a memory limit far below the data)
//! write exactly what one in-memory pass writes: the same rows, the same bytes.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::{Config, Layout, PartitionDate, RepoFile, RepoFiles, repo};
use chronoflow_engine::jobs::{backfill_group_by_within, backfill_join_within};
use chronoflow_engine::{MemoryLimit, TableName, Warehouse};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;
const FIRST_DAY: i64 = 19_723; // 2024-01-01

fn date(day: i64) -> PartitionDate {
    PartitionDate::parse("1970-01-01").unwrap().add_days(day)
}

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

/// (user, ts, value, category).
type EventRow = (Option<String>, i64, Option<i64>, Option<String>);

/// 30 days of events over 300 users: late partitions, null values, null users, ties in time.
async fn write_inputs(w: &Warehouse) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, true),
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Int64, true),
        Field::new("category", DataType::Utf8, true),
    ]));
    let mut by_partition: std::collections::BTreeMap<i64, Vec<EventRow>> = Default::default();
    for _ in 0..20_000 {
        let day = FIRST_DAY + rng.below(30);
        // Coarse times make ties (same user, same ms) common.
        let ts = day * DAY + rng.below(96) * 900_000;
        let late = match rng.below(20) {
            0 => 1,
            1 => 3,
            _ => 0,
        };
        let user = (rng.below(100) != 0).then(|| format!("u{}", rng.below(300)));
        let value = (rng.below(50) != 0).then(|| rng.below(1000) - 100);
        let category =
            (rng.below(10) != 0).then(|| ["a", "b", "c"][rng.below(3) as usize].to_owned());
        by_partition
            .entry(day + late)
            .or_default()
            .push((user, ts, value, category));
    }
    for (day, rows) in by_partition {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0.clone()))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.3.clone()))),
            ],
        )
        .unwrap();
        w.write_partition(
            &TableName::parse("t.events").unwrap(),
            "ds",
            date(day),
            &[batch],
        )
        .await
        .unwrap();
    }
    let left_schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, true),
        Field::new("ts", DataType::Int64, false),
    ]));
    for day in FIRST_DAY + 25..FIRST_DAY + 30 {
        let rows: Vec<(Option<String>, i64)> = (0..400)
            .map(|_| {
                let user = (rng.below(50) != 0).then(|| format!("u{}", rng.below(320)));
                (user, day * DAY + rng.below(96) * 900_000)
            })
            .collect();
        let batch = RecordBatch::try_new(
            left_schema.clone(),
            vec![
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0.clone()))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        w.write_partition(
            &TableName::parse("t.left").unwrap(),
            "ds",
            date(day),
            &[batch],
        )
        .await
        .unwrap();
    }
}

fn group_by(name: &str, topic: bool) -> Value {
    let mut events = json!({"table": "t.events", "query": {"selects": {"user": "user", "value": "value", "category": "category"}, "timeColumn": "ts"}});
    if topic {
        events["topic"] = json!("events_topic");
    }
    let windows = json!([{"length": 6, "timeUnit": 0}, {"length": 3, "timeUnit": 1}, {"length": 14, "timeUnit": 1}]);
    json!({
        "metaData": {"name": name, "team": "t", "outputNamespace": "out"},
        "sources": [{"events": events}],
        "keyColumns": ["user"],
        "aggregations": [
            {"inputColumn": "value", "operation": 7, "windows": windows},
            {"inputColumn": "value", "operation": 6, "windows": windows},
            {"inputColumn": "value", "operation": 8, "windows": windows},
            {"inputColumn": "value", "operation": 13, "argMap": {"k": "3"}},
            {"inputColumn": "value", "operation": 7, "buckets": ["category"], "windows": [{"length": 7, "timeUnit": 1}]},
            {"inputColumn": "category", "operation": 4, "argMap": {}},
            {"inputColumn": "value", "operation": 2, "windows": [{"length": 3, "timeUnit": 1}]}
        ]
    })
}

fn configs() -> chronoflow_config::Repo {
    let join = json!({
        "metaData": {"name": "t.training.v1", "team": "t", "outputNamespace": "out"},
        "left": {"events": {"table": "t.left", "query": {"selects": {"user": "user", "ts": "ts"}, "timeColumn": "ts"}}},
        "joinParts": [{"groupBy": group_by("t.snapshot.v1", false)}, {"groupBy": group_by("t.temporal.v1", true)}],
    });
    let files = [
        ("production/joins/t/training.v1", join),
        (
            "production/group_bys/t/snapshot.v1",
            group_by("t.snapshot.v1", false),
        ),
    ]
    .into_iter()
    .map(|(path, v)| RepoFile {
        path: path.to_owned(),
        contents: v.to_string().into_bytes(),
    })
    .collect();
    let r = repo::load(RepoFiles {
        layouts: vec![Layout::Airbnb {
            prefix: String::new(),
        }],
        files,
        unreadable: Vec::new(),
    });
    assert!(!r.has_errors(), "{:#?}", r.diagnostics);
    r
}

/// Every Parquet file under `dir`, by path relative to it, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                // Part files are named per write; the partition directory is what matters.
                let rel = path
                    .parent()
                    .unwrap()
                    .strip_prefix(dir)
                    .unwrap()
                    .display()
                    .to_string();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Runs the Join and GroupBy backfills in a fresh warehouse within `limit`; returns the output
/// files.
async fn run(limit: MemoryLimit) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    write_inputs(&w).await;
    let r = configs();
    let days: Vec<PartitionDate> = (FIRST_DAY + 25..FIRST_DAY + 30).map(date).collect();
    for loaded in &r.configs {
        match &loaded.config {
            Config::Join(j) => {
                let written = backfill_join_within(&w, loaded, j, &days, limit)
                    .await
                    .unwrap();
                assert_eq!(written.len(), 5);
                assert_eq!(written.iter().map(|p| p.rows).sum::<u64>(), 2_000);
            }
            Config::GroupBy(g) => {
                backfill_group_by_within(&w, loaded, g, &days, limit)
                    .await
                    .unwrap();
            }
            Config::StagingQuery(_) => unreachable!(),
        }
    }
    files(&dir.path().join("out"))
}

#[tokio::test]
async fn sharded_and_spilled_backfills_write_the_same_bytes_as_one_pass() {
    let one_pass = run(MemoryLimit { bytes: 1 << 40 }).await;
    // ~20,000 rows of ~200 bytes against 100 kB: dozens of shards, each spilled.
    let sharded = run(MemoryLimit { bytes: 100_000 }).await;
    assert_eq!(one_pass.len(), 10, "5 Join and 5 GroupBy partitions");
    assert_eq!(
        one_pass.iter().map(|f| &f.0).collect::<Vec<_>>(),
        sharded.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((path, a), (_, b)) in one_pass.iter().zip(&sharded) {
        assert!(a == b, "{path}: the sharded run wrote different bytes");
    }
}
