//! Delta Lake tables through the warehouse (the `delta` feature): written as one commit per
//! partition, read by what the log commits, and the errors that name the table.
#![cfg(feature = "delta")]
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::PartitionDate;
use chronoflow_engine::warehouse::{TableFormat, TableFormats, TableSpec};
use chronoflow_engine::{TableName, Warehouse};

fn d(s: &str) -> PartitionDate {
    PartitionDate::parse(s).unwrap()
}

fn t() -> TableName {
    TableName::parse("ns.events").unwrap()
}

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("tag", DataType::Utf8, true),
    ]));
    let tags = StringArray::from_iter(ids.clone().map(|i| Some(format!("t{i}"))));
    RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from_iter_values(ids)), Arc::new(tags)],
    )
    .unwrap()
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}

fn delta_warehouse(dir: &std::path::Path) -> Warehouse {
    Warehouse::open(dir.to_str().unwrap())
        .unwrap()
        .with_formats(&TableFormats {
            format: TableFormat::Delta,
            ..TableFormats::default()
        })
        .unwrap()
}

#[tokio::test]
async fn new_tables_of_a_delta_warehouse_are_delta_tables_with_a_commit_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = delta_warehouse(dir.path());
    let info = warehouse
        .write_partition(&t(), "ds", d("2024-01-02"), &[batch(0..10)])
        .await
        .unwrap();
    assert_eq!(info.rows, 10);
    warehouse
        .write_partition(&t(), "ds", d("2024-01-01"), &[batch(0..5), batch(5..7)])
        .await
        .unwrap();
    assert!(dir.path().join("ns/events/_delta_log").is_dir());
    assert!(!dir.path().join("ns/events/_table.json").exists());
    assert_eq!(
        warehouse.table_format(&t()).await.unwrap(),
        TableFormat::Delta
    );
    assert_eq!(warehouse.tables().await.unwrap(), [t()]);
    assert_eq!(
        warehouse.partitions(&t()).await.unwrap(),
        [d("2024-01-01"), d("2024-01-02")]
    );
    let read = warehouse
        .read_partition(&t(), d("2024-01-01"))
        .await
        .unwrap();
    assert_eq!(ids(&read), (0..7).collect::<Vec<_>>());
    let info = warehouse
        .partition_info(&t(), d("2024-01-01"))
        .await
        .unwrap();
    assert_eq!(info.rows, 7);
    let meta = warehouse.table_meta(&t()).await.unwrap().unwrap();
    assert_eq!(meta.partition_column, "ds");

    // Replacing a partition leaves the other untouched.
    warehouse
        .write_partition(&t(), "ds", d("2024-01-01"), &[batch(100..102)])
        .await
        .unwrap();
    let read = warehouse
        .read_partition(&t(), d("2024-01-01"))
        .await
        .unwrap();
    assert_eq!(ids(&read), [100, 101]);
    let other = warehouse
        .read_partition(&t(), d("2024-01-02"))
        .await
        .unwrap();
    assert_eq!(ids(&other).len(), 10);

    // A warehouse opened without configuration finds the table by its log.
    let plain = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(plain.table_format(&t()).await.unwrap(), TableFormat::Delta);
    assert_eq!(plain.partitions(&t()).await.unwrap().len(), 2);

    // A reader that already read the log sees what another writer committed since.
    warehouse
        .write_partition(&t(), "ds", d("2024-01-03"), &[batch(7..9)])
        .await
        .unwrap();
    assert_eq!(plain.partitions(&t()).await.unwrap().len(), 3);
    let read = plain.read_partition(&t(), d("2024-01-03")).await.unwrap();
    assert_eq!(ids(&read), [7, 8]);
}

/// The sensor rule: a partition counts once a commit added its files, never from files alone.
#[tokio::test]
async fn files_in_a_partition_folder_without_a_commit_are_not_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = delta_warehouse(dir.path());
    warehouse
        .write_partition(&t(), "ds", d("2024-01-01"), &[batch(0..3)])
        .await
        .unwrap();
    // What a writer killed before its commit leaves: a part file in its partition folder.
    let first = std::fs::read_dir(dir.path().join("ns/events/ds=2024-01-01"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let orphan = dir.path().join("ns/events/ds=2024-01-05");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::copy(&first, orphan.join("part-00000-orphan.snappy.parquet")).unwrap();
    assert_eq!(warehouse.partitions(&t()).await.unwrap(), [d("2024-01-01")]);
    let err = warehouse
        .read_partition(&t(), d("2024-01-05"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ns.events") && err.contains("2024-01-05"),
        "{err}"
    );
}

#[tokio::test]
async fn a_corrupt_delta_log_is_an_error_naming_the_table_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = delta_warehouse(dir.path());
    for day in ["2024-01-01", "2024-01-02"] {
        warehouse
            .write_partition(&t(), "ds", d(day), &[batch(0..3)])
            .await
            .unwrap();
    }
    std::fs::write(
        dir.path()
            .join("ns/events/_delta_log/00000000000000000001.json"),
        "{\"add\": {not json",
    )
    .unwrap();
    let fresh = delta_warehouse(dir.path());
    let err = fresh.partitions(&t()).await.unwrap_err().to_string();
    assert!(
        err.contains("ns.events") && err.contains("00000000000000000001.json"),
        "{err}"
    );
}

#[tokio::test]
async fn a_chronoflow_table_configured_as_delta_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::open(dir.path().to_str().unwrap())
        .unwrap()
        .write_partition(&t(), "ds", d("2024-01-01"), &[batch(0..3)])
        .await
        .unwrap();
    let configured = Warehouse::open(dir.path().to_str().unwrap())
        .unwrap()
        .with_formats(&TableFormats {
            tables: [(
                "ns.events".to_owned(),
                TableSpec {
                    format: TableFormat::Delta,
                    ..TableSpec::default()
                },
            )]
            .into(),
            ..TableFormats::default()
        })
        .unwrap();
    let err = configured
        .read_partition(&t(), d("2024-01-01"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ns.events")
            && err.contains("configured as a delta table")
            && err.contains("holds a chronoflow table"),
        "{err}"
    );
}

/// An add or remove action of a commit: its partition's `ds` and its file.
type Action = (String, String);

/// The commits in `table`'s `_delta_log/`, in version order: each one's add and remove actions.
fn commits(table: &std::path::Path) -> Vec<(Vec<Action>, Vec<Action>)> {
    let mut files: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|file| {
            let (mut adds, mut removes) = (Vec::new(), Vec::new());
            for line in std::fs::read_to_string(file).unwrap().lines() {
                let action: serde_json::Value = serde_json::from_str(line).unwrap();
                for (kind, out) in [("add", &mut adds), ("remove", &mut removes)] {
                    if let Some(ds) = action[kind]["partitionValues"]["ds"].as_str() {
                        let path = action[kind]["path"].as_str().unwrap();
                        out.push((ds.to_owned(), path.to_owned()));
                    }
                }
            }
            adds.sort();
            removes.sort();
            (adds, removes)
        })
        .collect()
}

/// The days `actions` touch, once each.
fn days(actions: &[Action]) -> Vec<&str> {
    let mut days: Vec<&str> = actions.iter().map(|(ds, _)| ds.as_str()).collect();
    days.dedup();
    days
}

/// A writer of many partitions keeps the log it read between them (reading only the commits
/// since): each partition is still one commit of its own, and a replacement removes exactly the
/// files the partition has at that moment, also when another writer committed in between.
#[tokio::test]
async fn a_writer_of_many_partitions_commits_each_alone_and_sees_other_writers_commits() {
    let dir = tempfile::tempdir().unwrap();
    let writer = delta_warehouse(dir.path());
    for (n, day) in [(0, "2024-01-01"), (1, "2024-01-02"), (2, "2024-01-03")] {
        writer
            .write_partition(&t(), "ds", d(day), &[batch(n * 10..n * 10 + 3)])
            .await
            .unwrap();
    }
    // Another writer replaces a day, then adds one, between this writer's commits.
    let other = delta_warehouse(dir.path());
    other
        .write_partition(&t(), "ds", d("2024-01-02"), &[batch(200..205)])
        .await
        .unwrap();
    other
        .write_partition(&t(), "ds", d("2024-01-04"), &[batch(300..301)])
        .await
        .unwrap();
    // This writer replaces the day the other one replaced: the files it removes are the other
    // writer's, which its last read of the log did not have.
    writer
        .write_partition(&t(), "ds", d("2024-01-02"), &[batch(400..402)])
        .await
        .unwrap();
    writer
        .write_partition(&t(), "ds", d("2024-01-05"), &[batch(500..501)])
        .await
        .unwrap();

    let log = commits(&dir.path().join("ns/events"));
    let touched: Vec<(Vec<&str>, Vec<&str>)> =
        log.iter().map(|(a, r)| (days(a), days(r))).collect();
    assert_eq!(
        touched,
        [
            (vec!["2024-01-01"], vec![]),
            (vec!["2024-01-02"], vec![]),
            (vec!["2024-01-03"], vec![]),
            (vec!["2024-01-02"], vec!["2024-01-02"]),
            (vec!["2024-01-04"], vec![]),
            (vec!["2024-01-02"], vec!["2024-01-02"]),
            (vec!["2024-01-05"], vec![]),
        ]
    );
    // Each replacement removed exactly the files the commit before it on that day added.
    assert_eq!(log[3].1, log[1].0);
    assert_eq!(log[5].1, log[3].0);

    let fresh = delta_warehouse(dir.path());
    let mut read = Vec::new();
    for day in fresh.partitions(&t()).await.unwrap() {
        let rows = ids(&fresh.read_partition(&t(), day).await.unwrap());
        read.push((day.to_string(), rows));
    }
    assert_eq!(
        read,
        [
            ("2024-01-01".to_owned(), vec![0, 1, 2]),
            ("2024-01-02".to_owned(), vec![400, 401]),
            ("2024-01-03".to_owned(), vec![20, 21, 22]),
            ("2024-01-04".to_owned(), vec![300]),
            ("2024-01-05".to_owned(), vec![500]),
        ]
    );
    // The writer's own reads see every commit, its own and the other's.
    assert_eq!(writer.partitions(&t()).await.unwrap().len(), 5);
    let day4 = writer.read_partition(&t(), d("2024-01-04")).await.unwrap();
    assert_eq!(ids(&day4), [300]);
}

/// Writers in separate processes (a warehouse each, on OS threads) writing one Delta table at
/// once, from before it exists: each writes its own days one after another (keeping the log it
/// read between them) and all of them replace one shared day. Every own day is committed with
/// its rows, and the shared day holds exactly one writer's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_one_delta_table_keep_every_partition() {
    const WRITERS: i64 = 4;
    const DAYS: i64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let shared = d("2024-02-01");
    let writers = (0..WRITERS).map(|w| {
        let path = dir.path().to_owned();
        tokio::spawn(async move {
            let warehouse = delta_warehouse(&path);
            for n in 0..DAYS {
                let day = d("2024-01-01").add_days(w * DAYS + n);
                let first = 100 * (w * DAYS + n);
                warehouse
                    .write_partition(&t(), "ds", day, &[batch(first..first + 3)])
                    .await
                    .unwrap();
                if n == 1 {
                    warehouse
                        .write_partition(&t(), "ds", shared, &[batch(w * 1000..w * 1000 + 5)])
                        .await
                        .unwrap();
                }
            }
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.unwrap();
    }
    let fresh = delta_warehouse(dir.path());
    let partitions = fresh.partitions(&t()).await.unwrap();
    assert_eq!(partitions.len(), (WRITERS * DAYS + 1) as usize);
    for k in 0..WRITERS * DAYS {
        let read = fresh
            .read_partition(&t(), d("2024-01-01").add_days(k))
            .await
            .unwrap();
        assert_eq!(ids(&read), [100 * k, 100 * k + 1, 100 * k + 2], "day {k}");
    }
    let read = ids(&fresh.read_partition(&t(), shared).await.unwrap());
    let w = read[0] / 1000;
    assert_eq!(read, (w * 1000..w * 1000 + 5).collect::<Vec<_>>());
}
