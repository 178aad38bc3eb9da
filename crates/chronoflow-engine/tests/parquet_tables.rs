//! Hive-style Parquet tables written by other tools (Spark's layout, built here file by file):
//! which partitions are visible, what is read, and the errors that name the table.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::PartitionDate;
use chronoflow_engine::warehouse::{TableFormat, TableFormats, TableSpec, Visibility};
use chronoflow_engine::{EngineError, TableName, Warehouse};
use parquet::arrow::ArrowWriter;

fn d(s: &str) -> PartitionDate {
    PartitionDate::parse(s).unwrap()
}

fn events() -> TableName {
    TableName::parse("data.events").unwrap()
}

/// `ids` as Spark writes them: `id`, `user`, and (with `extra`) a column later partitions add.
fn batch(ids: std::ops::Range<i64>, extra: bool) -> RecordBatch {
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("user", DataType::Utf8, true),
    ];
    let mut columns: Vec<Arc<dyn arrow::array::Array>> = vec![
        Arc::new(Int64Array::from_iter_values(ids.clone())),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|i| format!("u{i}")),
        )),
    ];
    if extra {
        fields.push(Field::new("score", DataType::Int64, true));
        columns.push(Arc::new(Int64Array::from_iter_values(ids.map(|i| i * 10))));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// A table in Spark's layout under `root`: two committed partitions (the second with a new
/// column), one being written (files, no `_SUCCESS`), checksums and a `_temporary` folder.
fn spark_table(root: &Path) {
    let part = |ds: &str, n: usize| {
        root.join(format!("ds={ds}"))
            .join(format!("part-0000{n}-3f1c.c000.snappy.parquet"))
    };
    write_parquet(&part("2024-01-01", 0), &batch(0..3, false));
    write_parquet(&part("2024-01-01", 1), &batch(3..5, false));
    std::fs::write(root.join("ds=2024-01-01/_SUCCESS"), "").unwrap();
    std::fs::write(
        root.join("ds=2024-01-01/.part-00000-3f1c.c000.snappy.parquet.crc"),
        "crc",
    )
    .unwrap();
    write_parquet(&part("2024-01-02", 0), &batch(10..12, true));
    std::fs::write(root.join("ds=2024-01-02/_SUCCESS"), "").unwrap();
    // Being written: visible only under the `files` rule.
    write_parquet(&part("2024-01-03", 0), &batch(20..21, false));
    // A task's output not yet committed, below a partition folder.
    write_parquet(
        &root.join("ds=2024-01-02/_temporary/0/task/part-9.parquet"),
        &batch(90..99, false),
    );
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

#[tokio::test]
async fn a_spark_table_in_the_warehouse_is_found_and_read_by_its_success_markers() {
    let dir = tempfile::tempdir().unwrap();
    spark_table(&dir.path().join("data/events"));
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let t = events();

    assert_eq!(warehouse.tables().await.unwrap(), std::slice::from_ref(&t));
    assert_eq!(
        warehouse.table_format(&t).await.unwrap(),
        TableFormat::Parquet
    );
    assert_eq!(
        warehouse.partitions(&t).await.unwrap(),
        [d("2024-01-01"), d("2024-01-02")]
    );
    let meta = warehouse.table_meta(&t).await.unwrap().unwrap();
    assert_eq!(meta.partition_column, "ds");
    // The union of the partitions' columns, the partition column not among them.
    let schema = warehouse.schema(&t).await.unwrap().unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "user", "score"]);

    let first = warehouse.read_partition(&t, d("2024-01-01")).await.unwrap();
    assert_eq!(ids(&first), [0, 1, 2, 3, 4]);
    // Older partitions get the later column as nulls.
    assert_eq!(first[0].column_by_name("score").unwrap().null_count(), 3);
    let second = warehouse.read_partition(&t, d("2024-01-02")).await.unwrap();
    assert_eq!(ids(&second), [10, 11], "the _temporary files are not data");
    let info = warehouse.partition_info(&t, d("2024-01-01")).await.unwrap();
    assert_eq!((info.rows, info.files), (5, 2));

    // The partition being written is not there yet.
    let err = warehouse
        .read_partition(&t, d("2024-01-03"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::PartitionNotFound { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn the_files_rule_counts_a_partition_once_it_has_files() {
    let dir = tempfile::tempdir().unwrap();
    spark_table(&dir.path().join("data/events"));
    let formats = TableFormats {
        tables: [(
            "data.events".to_owned(),
            TableSpec {
                format: TableFormat::Parquet,
                visible: Some(Visibility::Files),
                ..TableSpec::default()
            },
        )]
        .into(),
        ..TableFormats::default()
    };
    let warehouse = Warehouse::open(dir.path().to_str().unwrap())
        .unwrap()
        .with_formats(&formats)
        .unwrap();
    assert_eq!(
        warehouse.partitions(&events()).await.unwrap(),
        [d("2024-01-01"), d("2024-01-02"), d("2024-01-03")]
    );
}

#[tokio::test]
async fn a_table_configured_with_a_location_of_its_own_is_listed_and_read() {
    let lake = tempfile::tempdir().unwrap();
    spark_table(&lake.path().join("events"));
    let warehouse_dir = tempfile::tempdir().unwrap();
    let formats = TableFormats {
        tables: [(
            "data.events".to_owned(),
            TableSpec {
                format: TableFormat::Parquet,
                location: Some(lake.path().join("events").display().to_string()),
                ..TableSpec::default()
            },
        )]
        .into(),
        ..TableFormats::default()
    };
    let warehouse = Warehouse::open(warehouse_dir.path().to_str().unwrap())
        .unwrap()
        .with_formats(&formats)
        .unwrap();
    assert_eq!(warehouse.tables().await.unwrap(), [events()]);
    let read = warehouse
        .read_partition(&events(), d("2024-01-02"))
        .await
        .unwrap();
    assert_eq!(ids(&read), [10, 11]);
}

#[tokio::test]
async fn writes_into_another_tools_table_are_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    spark_table(&dir.path().join("data/events"));
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let err = warehouse
        .write_partition(&events(), "ds", d("2024-01-05"), &[batch(0..1, false)])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.events") && err.contains("never writes"),
        "{err}"
    );
    assert!(!dir.path().join("data/events/ds=2024-01-05").exists());
}

#[tokio::test]
async fn a_table_whose_folder_does_not_match_its_configured_format_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    spark_table(&dir.path().join("data/events"));
    let formats = TableFormats {
        tables: [(
            "data.events".to_owned(),
            TableSpec {
                format: TableFormat::Chronoflow,
                ..TableSpec::default()
            },
        )]
        .into(),
        ..TableFormats::default()
    };
    let warehouse = Warehouse::open(dir.path().to_str().unwrap())
        .unwrap()
        .with_formats(&formats)
        .unwrap();
    let err = warehouse
        .partitions(&events())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.events")
            && err.contains("configured as a chronoflow table")
            && err.contains("holds a parquet table"),
        "{err}"
    );
}

#[test]
fn table_options_that_do_not_fit_their_format_are_refused_naming_the_table() {
    let formats = TableFormats {
        tables: [(
            "data.events".to_owned(),
            TableSpec {
                format: TableFormat::Chronoflow,
                location: Some("/elsewhere".to_owned()),
                ..TableSpec::default()
            },
        )]
        .into(),
        ..TableFormats::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let err = Warehouse::open(dir.path().to_str().unwrap())
        .unwrap()
        .with_formats(&formats)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.events") && err.contains("location"),
        "{err}"
    );
}
