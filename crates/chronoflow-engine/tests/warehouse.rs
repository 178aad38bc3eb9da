//! The warehouse on a real local directory and on the in-memory store: round trips, atomic
//! replacement, crash leftovers, and errors that name what is missing.

use std::sync::Arc;

use arrow::array::{Int64Array, NullArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::PartitionDate;
use chronoflow_engine::export::{ExportFormat, export_table};
use chronoflow_engine::import::import_file;
use chronoflow_engine::{ColumnStats, EngineError, PartitionStats, TableName, Warehouse};
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

fn stats(rows: u64, columns: &[(&str, u64)]) -> Option<PartitionStats> {
    Some(PartitionStats {
        rows,
        columns: columns
            .iter()
            .map(|&(name, nulls)| ColumnStats {
                name: name.to_owned(),
                nulls,
            })
            .collect(),
    })
}

async fn stats_of(warehouse: &Warehouse, t: &TableName) -> Vec<(String, Option<PartitionStats>)> {
    warehouse
        .partition_stats(t)
        .await
        .unwrap()
        .into_iter()
        .map(|(ds, s)| (ds.to_string(), s))
        .collect()
}

#[tokio::test]
async fn a_write_keeps_row_and_null_counts_in_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let t = TableName::parse("ns.t").unwrap();
    // `tag` is null where id % 3 == 0: 0, 3, 6, 9.
    warehouse
        .write_partition(&t, "ds", d("2024-01-02"), &[batch(0..10)])
        .await
        .unwrap();
    warehouse
        .write_partition(&t, "ds", d("2024-01-01"), &[batch(0..5), batch(5..7)])
        .await
        .unwrap();
    assert_eq!(
        stats_of(&warehouse, &t).await,
        [
            ("2024-01-01".to_owned(), stats(7, &[("id", 0), ("tag", 3)])),
            ("2024-01-02".to_owned(), stats(10, &[("id", 0), ("tag", 4)])),
        ]
    );
    let s = warehouse.partition_stats(&t).await.unwrap()[1]
        .1
        .clone()
        .unwrap();
    assert_eq!(s.null_fraction("tag"), Some(0.4));
    assert_eq!(s.null_fraction("id"), Some(0.0));
    assert_eq!(s.null_fraction("nope"), None);

    // The format the manifest stores them in.
    let (store, path) = warehouse.raw_partition_path(&t, "ds", d("2024-01-02"));
    let bytes = store
        .get(&path.join("_manifest.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        json["stats"],
        serde_json::json!({"rows": 10, "columns": [{"name": "id", "nulls": 0}, {"name": "tag", "nulls": 4}]})
    );

    // A column of type Null is all nulls; an empty partition has fraction 0, not NaN.
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Null, true)]));
    let nulls = RecordBatch::try_new(schema, vec![Arc::new(NullArray::new(3))]).unwrap();
    warehouse
        .write_partition(
            &t,
            "ds",
            d("2024-01-03"),
            &[nulls.clone(), nulls.slice(0, 0)],
        )
        .await
        .unwrap();
    warehouse
        .write_partition(&t, "ds", d("2024-01-04"), &[batch(0..0)])
        .await
        .unwrap();
    let all = warehouse.partition_stats(&t).await.unwrap();
    assert_eq!(all[2].1, stats(3, &[("n", 3)]));
    assert_eq!(all[2].1.as_ref().unwrap().null_fraction("n"), Some(1.0));
    assert_eq!(all[3].1, stats(0, &[("id", 0), ("tag", 0)]));
    assert_eq!(all[3].1.as_ref().unwrap().null_fraction("tag"), Some(0.0));
}

#[tokio::test]
async fn appends_merge_stats_and_overwrites_replace_them() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let t = TableName::parse("ns.log").unwrap();
    let ds = d("2024-01-01");
    warehouse
        .append_partition(&t, "ds", ds, &[batch(0..4)])
        .await
        .unwrap();
    assert_eq!(
        stats_of(&warehouse, &t).await[0].1,
        stats(4, &[("id", 0), ("tag", 2)])
    );
    warehouse
        .append_partition(&t, "ds", ds, &[batch(4..10)])
        .await
        .unwrap();
    assert_eq!(
        stats_of(&warehouse, &t).await[0].1,
        stats(10, &[("id", 0), ("tag", 4)])
    );

    // Columns on one side only: the other side's rows have no value there, so they are nulls.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("extra", DataType::Utf8, true),
    ]));
    let other = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec![Some("x"), None])),
        ],
    )
    .unwrap();
    warehouse
        .append_partition(&t, "ds", ds, &[other])
        .await
        .unwrap();
    let merged = stats_of(&warehouse, &t).await[0].1.clone().unwrap();
    assert_eq!(
        Some(merged.clone()),
        stats(12, &[("id", 0), ("tag", 6), ("extra", 11)])
    );
    assert_eq!(merged.null_fraction("tag"), Some(0.5));

    // A rewrite replaces the statistics with those of the new rows only (102 has no tag).
    warehouse
        .write_partition(&t, "ds", ds, &[batch(100..103)])
        .await
        .unwrap();
    assert_eq!(
        stats_of(&warehouse, &t).await[0].1,
        stats(3, &[("id", 0), ("tag", 1)])
    );
}

#[tokio::test]
async fn manifests_without_stats_still_read_and_report_none() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let t = TableName::parse("ns.old").unwrap();
    for (i, day) in ["2024-01-01", "2024-01-02", "2024-01-03"]
        .iter()
        .enumerate()
    {
        let start = i as i64 * 10;
        warehouse
            .write_partition(&t, "ds", d(day), &[batch(start..start + 5)])
            .await
            .unwrap();
    }
    // What an older version wrote: files and rows only.
    let (store, path) = warehouse.raw_partition_path(&t, "ds", d("2024-01-02"));
    let manifest = path.join("_manifest.json");
    let bytes = store.get(&manifest).await.unwrap().bytes().await.unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    json.as_object_mut().unwrap().remove("stats");
    store
        .put(
            &manifest,
            PutPayload::from(serde_json::to_vec(&json).unwrap()),
        )
        .await
        .unwrap();

    let all = stats_of(&warehouse, &t).await;
    assert_eq!(all.len(), 3);
    assert_eq!(all[1], ("2024-01-02".to_owned(), None));
    assert_eq!(all[0].1, stats(5, &[("id", 0), ("tag", 2)]));
    assert!(all[2].1.is_some());
    let info = warehouse.partition_info(&t, d("2024-01-02")).await.unwrap();
    assert_eq!(info.rows, 5);
    assert_eq!(
        rows(&warehouse.read_partition(&t, d("2024-01-02")).await.unwrap()),
        5
    );

    // Appending to it cannot know the old files' nulls without reading them: still none.
    warehouse
        .append_partition(&t, "ds", d("2024-01-02"), &[batch(0..3)])
        .await
        .unwrap();
    assert_eq!(stats_of(&warehouse, &t).await[1].1, None);
    assert_eq!(
        warehouse
            .partition_info(&t, d("2024-01-02"))
            .await
            .unwrap()
            .rows,
        8
    );
}

#[tokio::test]
async fn stats_of_a_missing_table_name_it() {
    let warehouse = Warehouse::open("memory://").unwrap();
    let t = TableName::parse("ns.none").unwrap();
    let err = warehouse.partition_stats(&t).await.unwrap_err();
    assert!(matches!(err, EngineError::TableNotFound { .. }), "{err}");
}
