//! The warehouse on a real local directory and on the in-memory store: round trips, atomic
//! replacement, crash leftovers, and errors that name what is missing.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::PartitionDate;
use chronoflow_engine::export::{ExportFormat, export_table};
use chronoflow_engine::import::import_file;
use chronoflow_engine::{EngineError, TableName, Warehouse};
use object_store::{ObjectStoreExt, PutPayload};

fn d(s: &str) -> PartitionDate {
    PartitionDate::parse(s).unwrap()
}

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("tag", DataType::Utf8, true),
    ]));
    let tags = StringArray::from_iter(ids.clone().map(|i| {
        if i % 3 == 0 {
            None
        } else {
            Some(format!("t{i}"))
        }
    }));
    RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from_iter_values(ids)), Arc::new(tags)],
    )
    .unwrap()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

async fn round_trip(warehouse: Warehouse) {
    let t = TableName::parse("ns.events").unwrap();
    warehouse
        .write_partition(&t, "ds", d("2024-01-02"), &[batch(0..10)])
        .await
        .unwrap();
    warehouse
        .write_partition(&t, "ds", d("2024-01-01"), &[batch(0..5), batch(5..7)])
        .await
        .unwrap();
    assert_eq!(warehouse.tables().await.unwrap(), std::slice::from_ref(&t));
    assert_eq!(
        warehouse.partitions(&t).await.unwrap(),
        [d("2024-01-01"), d("2024-01-02")]
    );
    assert_eq!(
        rows(&warehouse.read_partition(&t, d("2024-01-01")).await.unwrap()),
        7
    );

    // A rerun replaces the partition: new rows, and the old files are gone.
    warehouse
        .write_partition(&t, "ds", d("2024-01-02"), &[batch(100..103)])
        .await
        .unwrap();
    let read = warehouse.read_partition(&t, d("2024-01-02")).await.unwrap();
    assert_eq!(rows(&read), 3);
    assert_eq!(
        warehouse
            .partition_info(&t, d("2024-01-02"))
            .await
            .unwrap()
            .files,
        1
    );

    let mut csv = Vec::new();
    export_table(
        &warehouse,
        &t,
        Some(d("2024-01-02")),
        ExportFormat::Csv,
        &mut csv,
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "id,tag,ds\n100,t100,2024-01-02\n101,t101,2024-01-02\n102,,2024-01-02\n"
    );
}

#[tokio::test]
async fn round_trip_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(Warehouse::open(dir.path().to_str().unwrap()).unwrap()).await;
    // file:// names the same directory.
    let again = Warehouse::open(&format!("file://{}", dir.path().display())).unwrap();
    assert_eq!(again.tables().await.unwrap().len(), 1);
}

#[tokio::test]
async fn round_trip_in_memory() {
    round_trip(Warehouse::open("memory://").unwrap()).await;
}

#[tokio::test]
async fn a_crash_before_the_manifest_leaves_the_previous_partition_visible() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let t = TableName::parse("ns.t").unwrap();
    warehouse
        .write_partition(&t, "ds", d("2024-01-01"), &[batch(0..4)])
        .await
        .unwrap();
    // A writer that died after uploading a part but before its manifest: the part is an orphan.
    let (store, dir_path) = warehouse.raw_partition_path(&t, "ds", d("2024-01-01"));
    let orphan = dir_path.clone().join("part-crashed-00000.parquet");
    store
        .put(&orphan, PutPayload::from(vec![1u8, 2, 3]))
        .await
        .unwrap();
    // ... and one that died writing a brand-new partition.
    let (_, new_dir) = warehouse.raw_partition_path(&t, "ds", d("2024-01-02"));
    store
        .put(
            &new_dir.join("part-crashed-00000.parquet"),
            PutPayload::from(vec![0u8; 8]),
        )
        .await
        .unwrap();

    assert_eq!(warehouse.partitions(&t).await.unwrap(), [d("2024-01-01")]);
    assert_eq!(
        rows(&warehouse.read_partition(&t, d("2024-01-01")).await.unwrap()),
        4
    );
    // The rerun completes cleanly.
    warehouse
        .write_partition(&t, "ds", d("2024-01-02"), &[batch(0..2)])
        .await
        .unwrap();
    assert_eq!(
        rows(&warehouse.read_partition(&t, d("2024-01-02")).await.unwrap()),
        2
    );
}

#[tokio::test]
async fn missing_tables_and_partitions_are_named() {
    let warehouse = Warehouse::open("memory://").unwrap();
    let t = TableName::parse("data.nope").unwrap();
    let err = warehouse
        .read_partition(&t, d("2024-01-01"))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::TableNotFound { .. }));
    assert!(
        err.to_string().contains("table data.nope does not exist"),
        "{err}"
    );

    warehouse
        .write_partition(&t, "ds", d("2024-01-01"), &[batch(0..1)])
        .await
        .unwrap();
    let err = warehouse
        .read_partition(&t, d("2024-01-05"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "partition ds=2024-01-05 of table data.nope does not exist"
    );
    let err = warehouse
        .write_partition(&t, "dt", d("2024-01-01"), &[batch(0..1)])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("partitioned by \"ds\", not \"dt\""),
        "{err}"
    );
}

#[tokio::test]
async fn import_infers_types_and_rejects_bad_partition_values() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().join("wh").to_str().unwrap()).unwrap();
    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "ds,id,price,ok,name,day\n2024-01-01,1,1.5,true,a,2020-01-01\n2024-01-02,2,,false,,2020-01-02\n2024-01-01,3,2,true,\"c,d\",\n").unwrap();
    let t = TableName::parse("data.t").unwrap();
    let report = import_file(&warehouse, &t, &csv, "ds").await.unwrap();
    assert_eq!(report.rows, 3);
    let types: Vec<String> = report
        .schema
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            "id:Int64",
            "price:Float64",
            "ok:Boolean",
            "name:Utf8",
            "day:Utf8"
        ]
    );
    assert_eq!(
        rows(&warehouse.read_partition(&t, d("2024-01-01")).await.unwrap()),
        2
    );
    let mut json = Vec::new();
    export_table(
        &warehouse,
        &t,
        Some(d("2024-01-02")),
        ExportFormat::Json,
        &mut json,
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8(json).unwrap(),
        "{\"id\":2,\"price\":null,\"ok\":false,\"name\":null,\"day\":\"2020-01-02\",\"ds\":\"2024-01-02\"}\n"
    );

    std::fs::write(&csv, "ds,id\n2024-01-01,1\n2024-13-01,2\n").unwrap();
    let err = import_file(&warehouse, &t, &csv, "ds")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 2: partition column \"ds\" holds \"2024-13-01\", not a yyyy-MM-dd date"),
        "{err}"
    );
    let err = import_file(&warehouse, &t, &csv, "dt")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no partition column \"dt\"; the columns are ds, id"),
        "{err}"
    );
}

#[tokio::test]
async fn parquet_export_reimports_to_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().join("wh").to_str().unwrap()).unwrap();
    let t = TableName::parse("a.b").unwrap();
    warehouse
        .write_partition(&t, "ds", d("2024-01-01"), &[batch(0..50)])
        .await
        .unwrap();
    warehouse
        .write_partition(&t, "ds", d("2024-01-03"), &[batch(50..60)])
        .await
        .unwrap();
    let file = dir.path().join("out.parquet");
    let n = export_table(
        &warehouse,
        &t,
        None,
        ExportFormat::Parquet,
        std::fs::File::create(&file).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(n, 60);
    let copy = TableName::parse("a.c").unwrap();
    import_file(&warehouse, &copy, &file, "ds").await.unwrap();
    assert_eq!(
        warehouse.partitions(&copy).await.unwrap(),
        [d("2024-01-01"), d("2024-01-03")]
    );
    assert_eq!(
        rows(
            &warehouse
                .read_partition(&copy, d("2024-01-03"))
                .await
                .unwrap()
        ),
        10
    );
}
