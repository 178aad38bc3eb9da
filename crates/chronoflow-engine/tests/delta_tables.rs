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
