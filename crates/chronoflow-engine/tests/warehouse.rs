//! The warehouse on a real local directory and on the in-memory store: round trips, atomic
//! replacement, crash leftovers, and errors that name what is missing.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

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
    let n = TableName::parse("ns.nulls").unwrap();
    warehouse
        .write_partition(
            &n,
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
    let nulls = warehouse.partition_stats(&n).await.unwrap();
    assert_eq!(nulls[0].1, stats(3, &[("n", 3)]));
    assert_eq!(nulls[0].1.as_ref().unwrap().null_fraction("n"), Some(1.0));
    let all = warehouse.partition_stats(&t).await.unwrap();
    assert_eq!(all[2].1, stats(0, &[("id", 0), ("tag", 0)]));
    assert_eq!(all[2].1.as_ref().unwrap().null_fraction("tag"), Some(0.0));
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

    // A rewrite replaces the statistics with those of the new rows only (102 has no tag; the
    // table's column `extra` is null in all of them).
    warehouse
        .write_partition(&t, "ds", ds, &[batch(100..103)])
        .await
        .unwrap();
    assert_eq!(
        stats_of(&warehouse, &t).await[0].1,
        stats(3, &[("id", 0), ("tag", 1), ("extra", 3)])
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

// ---- Schema evolution (issue 11, item 3) ----

fn csv_import_dir() -> (tempfile::TempDir, Warehouse) {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().join("wh").to_str().unwrap()).unwrap();
    (dir, warehouse)
}

async fn import_csv(
    warehouse: &Warehouse,
    dir: &std::path::Path,
    table: &TableName,
    text: &str,
) -> Result<chronoflow_engine::import::ImportReport, EngineError> {
    let file = dir.join("in.csv");
    std::fs::write(&file, text).unwrap();
    import_file(warehouse, table, &file, "ds").await
}

async fn export_json(warehouse: &Warehouse, t: &TableName) -> Result<String, EngineError> {
    let mut out = Vec::new();
    export_table(warehouse, t, None, ExportFormat::Json, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

fn parquet_file(path: &std::path::Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

#[tokio::test]
async fn import_with_a_changed_column_type_is_rejected_naming_table_partition_column_and_types() {
    let (dir, warehouse) = csv_import_dir();
    let t = TableName::parse("data.t").unwrap();
    import_csv(
        &warehouse,
        dir.path(),
        &t,
        "ds,id,price\n2024-01-01,1,1.5\n",
    )
    .await
    .unwrap();
    // CSV: values are read as the table's types, so a text value in an Int64 column is named.
    let err = import_csv(&warehouse, dir.path(), &t, "ds,id,price\n2024-01-02,x7,2\n")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "row 1, column \"id\": \"x7\" is not a Int64 (the column's type in table data.t)"
        ),
        "{err}"
    );
    // Parquet: the file's own type is compared with the table's.
    let schema = Arc::new(Schema::new(vec![
        Field::new("ds", DataType::Utf8, false),
        Field::new("id", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["2024-01-02"])),
            Arc::new(StringArray::from(vec!["7"])),
        ],
    )
    .unwrap();
    let file = dir.path().join("in.parquet");
    parquet_file(&file, &batch);
    let err = import_file(&warehouse, &t, &file, "ds")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "table data.t, partition ds=2024-01-02: column \"id\" is Utf8 in this write but Int64 in the table"
        ),
        "{err}"
    );
    // Nothing was written: the table is as it was, and reads.
    assert_eq!(warehouse.partitions(&t).await.unwrap(), [d("2024-01-01")]);
    assert_eq!(
        export_json(&warehouse, &t).await.unwrap(),
        "{\"id\":1,\"price\":1.5,\"ds\":\"2024-01-01\"}\n"
    );
}

#[tokio::test]
async fn import_with_reordered_columns_is_stored_in_the_table_order() {
    let (dir, warehouse) = csv_import_dir();
    let t = TableName::parse("data.t").unwrap();
    import_csv(&warehouse, dir.path(), &t, "ds,id,name\n2024-01-01,1,a\n")
        .await
        .unwrap();
    import_csv(&warehouse, dir.path(), &t, "name,ds,id\nb,2024-01-02,2\n")
        .await
        .unwrap();
    // Before: export refused the two schemas, and DataFusion scans failed on them.
    assert_eq!(
        export_json(&warehouse, &t).await.unwrap(),
        "{\"id\":1,\"name\":\"a\",\"ds\":\"2024-01-01\"}\n{\"id\":2,\"name\":\"b\",\"ds\":\"2024-01-02\"}\n"
    );
}

#[tokio::test]
async fn a_missing_nullable_column_is_filled_with_nulls_and_a_missing_required_one_is_rejected() {
    let (dir, warehouse) = csv_import_dir();
    let t = TableName::parse("data.t").unwrap();
    import_csv(&warehouse, dir.path(), &t, "ds,id,name\n2024-01-01,1,a\n")
        .await
        .unwrap();
    import_csv(&warehouse, dir.path(), &t, "ds,id\n2024-01-02,2\n")
        .await
        .unwrap();
    assert_eq!(
        export_json(&warehouse, &t).await.unwrap(),
        "{\"id\":1,\"name\":\"a\",\"ds\":\"2024-01-01\"}\n{\"id\":2,\"name\":null,\"ds\":\"2024-01-02\"}\n"
    );

    // A column the table declares not nullable cannot be left out.
    let r = TableName::parse("data.required").unwrap();
    warehouse
        .write_partition(&r, "ds", d("2024-01-01"), &[batch(0..3)])
        .await
        .unwrap();
    let tags_only = batch(0..2).project(&[1]).unwrap();
    let err = warehouse
        .write_partition(&r, "ds", d("2024-01-02"), &[tags_only])
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::SchemaMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "table data.required, partition ds=2024-01-02: column \"id\" (Int64, not nullable in the table) is missing from this write"
    );
    assert_eq!(warehouse.partitions(&r).await.unwrap(), [d("2024-01-01")]);
}

#[tokio::test]
async fn duplicate_and_empty_column_names_are_rejected_naming_the_column() {
    let (dir, warehouse) = csv_import_dir();
    let t = TableName::parse("data.t").unwrap();
    let err = import_csv(&warehouse, dir.path(), &t, "ds,id,id\n2024-01-01,1,2\n")
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::DuplicateColumn { .. }), "{err}");
    assert!(
        err.to_string()
            .ends_with("in.csv: column \"id\" appears more than once"),
        "{err}"
    );
    let err = import_csv(&warehouse, dir.path(), &t, "ds,id,\n2024-01-01,1,2\n")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("column 3 has no name in the header row"),
        "{err}"
    );

    // Parquet can hold two columns of one name too.
    let schema = Arc::new(Schema::new(vec![
        Field::new("ds", DataType::Utf8, false),
        Field::new("x", DataType::Int64, true),
        Field::new("x", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["2024-01-01"])),
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["a"])),
        ],
    )
    .unwrap();
    let file = dir.path().join("dup.parquet");
    parquet_file(&file, &batch);
    let err = import_file(&warehouse, &t, &file, "ds").await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("dup.parquet: column \"x\" appears more than once"),
        "{err}"
    );
    assert!(warehouse.table_meta(&t).await.unwrap().is_none());
}

#[tokio::test]
async fn csv_integers_too_large_for_int64_import_as_float64() {
    let (dir, warehouse) = csv_import_dir();
    let t = TableName::parse("data.big").unwrap();
    let report = import_csv(
        &warehouse,
        dir.path(),
        &t,
        "ds,n,m\n2024-01-01,99999999999999999999,-9223372036854775808\n",
    )
    .await
    .unwrap();
    let types: Vec<String> = report
        .schema
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    assert_eq!(types, ["n:Float64", "m:Int64"]);
    assert_eq!(
        export_json(&warehouse, &t).await.unwrap(),
        "{\"n\":1e+20,\"m\":-9223372036854775808,\"ds\":\"2024-01-01\"}\n"
    );
}

#[tokio::test]
async fn parquet_import_widens_int32_into_an_int64_table() {
    let (dir, warehouse) = csv_import_dir();
    let t = TableName::parse("data.t").unwrap();
    import_csv(&warehouse, dir.path(), &t, "ds,id\n2024-01-01,1\n")
        .await
        .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("ds", DataType::Utf8, false),
        Field::new("id", DataType::Int32, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["2024-01-02"])),
            Arc::new(arrow::array::Int32Array::from(vec![2])),
        ],
    )
    .unwrap();
    let file = dir.path().join("narrow.parquet");
    parquet_file(&file, &batch);
    import_file(&warehouse, &t, &file, "ds").await.unwrap();
    let read = warehouse.read_partition(&t, d("2024-01-02")).await.unwrap();
    assert_eq!(read[0].schema().field(0).data_type(), &DataType::Int64);
    assert_eq!(
        export_json(&warehouse, &t).await.unwrap(),
        "{\"id\":1,\"ds\":\"2024-01-01\"}\n{\"id\":2,\"ds\":\"2024-01-02\"}\n"
    );
}

#[tokio::test]
async fn a_rewrite_adding_a_column_keeps_every_partition_readable() {
    // A backfill rerun with --force after a config gained a feature: one partition has it.
    let warehouse = Warehouse::open("memory://").unwrap();
    let t = TableName::parse("out.features").unwrap();
    for day in ["2024-01-01", "2024-01-02"] {
        warehouse
            .write_partition(&t, "ds", d(day), &[batch(0..2)])
            .await
            .unwrap();
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("tag", DataType::Utf8, true),
        Field::new("new_feature", DataType::Int64, false),
    ]));
    let wider = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![5])),
            Arc::new(StringArray::from(vec!["t5"])),
            Arc::new(Int64Array::from(vec![50])),
        ],
    )
    .unwrap();
    warehouse
        .write_partition(&t, "ds", d("2024-01-02"), &[wider])
        .await
        .unwrap();
    assert_eq!(
        export_json(&warehouse, &t).await.unwrap(),
        "{\"id\":0,\"tag\":null,\"new_feature\":null,\"ds\":\"2024-01-01\"}\n\
         {\"id\":1,\"tag\":\"t1\",\"new_feature\":null,\"ds\":\"2024-01-01\"}\n\
         {\"id\":5,\"tag\":\"t5\",\"new_feature\":50,\"ds\":\"2024-01-02\"}\n"
    );
    let schema = warehouse.schema(&t).await.unwrap().unwrap();
    assert!(schema.field_with_name("new_feature").unwrap().is_nullable());
}

#[tokio::test]
async fn a_rewrite_with_a_changed_type_is_rejected_and_the_table_stays_readable() {
    let warehouse = Warehouse::open("memory://").unwrap();
    let t = TableName::parse("out.features").unwrap();
    for day in ["2024-01-01", "2024-01-02"] {
        warehouse
            .write_partition(&t, "ds", d(day), &[batch(0..2)])
            .await
            .unwrap();
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("tag", DataType::Utf8, true),
    ]));
    let retyped = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a"])),
            Arc::new(StringArray::from(vec!["b"])),
        ],
    )
    .unwrap();
    let err = warehouse
        .write_partition(&t, "ds", d("2024-01-02"), &[retyped])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "table out.features, partition ds=2024-01-02: column \"id\" is Utf8 in this write but Int64 in the table"
        ),
        "{err}"
    );
    assert_eq!(
        rows(&warehouse.read_partition(&t, d("2024-01-02")).await.unwrap()),
        2
    );
    export_json(&warehouse, &t).await.unwrap();
}

#[tokio::test]
async fn a_table_written_before_schemas_were_recorded_gets_one_from_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let t = TableName::parse("ns.old").unwrap();
    warehouse
        .write_partition(&t, "ds", d("2024-01-01"), &[batch(0..2)])
        .await
        .unwrap();
    let legacy = |extra: bool| {
        let mut fields = vec![Field::new("id", DataType::Int64, false)];
        let mut columns: Vec<arrow::array::ArrayRef> = vec![Arc::new(Int64Array::from(vec![9]))];
        if extra {
            fields.push(Field::new("late", DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from(vec!["x"])));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    };
    // What an older version left: a `_table.json` without columns and partitions that disagree
    // (02 lacks `tag`, 03 has a column `late` the others lack).
    let (store, _) = warehouse.raw_partition_path(&t, "ds", d("2024-01-01"));
    store
        .put(
            &object_store::path::Path::from("ns/old/_table.json"),
            PutPayload::from(r#"{"partition_column": "ds"}"#),
        )
        .await
        .unwrap();
    for (day, extra) in [("2024-01-02", false), ("2024-01-03", true)] {
        let (_, partition) = warehouse.raw_partition_path(&t, "ds", d(day));
        let mut bytes = Vec::new();
        let b = legacy(extra);
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, b.schema(), None).unwrap();
        writer.write(&b).unwrap();
        writer.close().unwrap();
        store
            .put(
                &partition.clone().join("part-old-00000.parquet"),
                PutPayload::from(bytes),
            )
            .await
            .unwrap();
        store
            .put(
                &partition.join("_manifest.json"),
                PutPayload::from(r#"{"files": ["part-old-00000.parquet"], "rows": 1}"#),
            )
            .await
            .unwrap();
    }
    let schema = warehouse.schema(&t).await.unwrap().unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "tag", "late"]);
    // The next write records it, and every partition then reads in it.
    warehouse
        .write_partition(&t, "ds", d("2024-01-04"), &[batch(7..8)])
        .await
        .unwrap();
    let meta = warehouse.table_meta(&t).await.unwrap().unwrap();
    assert_eq!(meta.columns.unwrap().len(), 3);
    assert_eq!(
        export_json(&warehouse, &t).await.unwrap().lines().count(),
        2 + 1 + 1 + 1
    );
}

#[tokio::test]
async fn a_backfill_reads_across_partitions_with_and_without_a_new_column() {
    use chronoflow_config::{Config, Layout, RepoFile, RepoFiles, repo};
    let (dir, warehouse) = csv_import_dir();
    let events = TableName::parse("t.events").unwrap();
    import_csv(
        &warehouse,
        dir.path(),
        &events,
        "ds,user,ts,value\n2024-03-01,a,1709251200000,1\n",
    )
    .await
    .unwrap();
    // A day later the feed gained a column and moved the others around.
    import_csv(
        &warehouse,
        dir.path(),
        &events,
        "value,country,ts,user,ds\n10,fr,1709337600000,a,2024-03-02\n",
    )
    .await
    .unwrap();
    let gb = serde_json::json!({
        "metaData": {"name": "t.gb.v1", "team": "t", "outputNamespace": "out"},
        "sources": [{"events": {"table": "t.events", "query": {"selects": {"user": "user", "value": "value", "country": "country"}, "timeColumn": "ts"}}}],
        "keyColumns": ["user"],
        "aggregations": [{"inputColumn": "value", "operation": 7}, {"inputColumn": "country", "operation": 3}],
    });
    let r = repo::load(RepoFiles {
        layouts: vec![Layout::Airbnb {
            prefix: String::new(),
        }],
        files: vec![RepoFile {
            path: "production/group_bys/t/gb.v1".to_owned(),
            contents: gb.to_string().into_bytes(),
        }],
        unreadable: Vec::new(),
    });
    assert!(!r.has_errors(), "{:#?}", r.diagnostics);
    let loaded = r.config("t.gb.v1").unwrap();
    let Config::GroupBy(g) = &loaded.config else {
        panic!("not a GroupBy")
    };
    chronoflow_engine::jobs::backfill_group_by(&warehouse, loaded, g, &[d("2024-03-02")])
        .await
        .unwrap();
    let out = export_json(&warehouse, &TableName::parse("out.t_gb_v1").unwrap())
        .await
        .unwrap();
    assert_eq!(
        out,
        "{\"user\":\"a\",\"value_sum\":11,\"country_last\":\"fr\",\"ds\":\"2024-03-02\"}\n"
    );
}

// ---- Orphan files (issue 11, item 6) ----

const TWO_HOURS: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

fn age_file(path: &std::path::Path, by: std::time::Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - by)
        .unwrap();
}

fn write_file(path: &std::path::Path, bytes: &[u8], age: Option<std::time::Duration>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    if let Some(age) = age {
        age_file(path, age);
    }
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn vacuum_removes_only_old_orphans_and_keeps_referenced_and_young_files() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let t = TableName::parse("ns.t").unwrap();
    for (day, ids) in [("2024-01-01", 0..4), ("2024-01-02", 4..10)] {
        warehouse
            .write_partition(&t, "ds", d(day), &[batch(ids)])
            .await
            .unwrap();
    }
    let before = export_json(&warehouse, &t).await.unwrap();
    let table_dir = dir.path().join("ns/t");
    let p1 = table_dir.join("ds=2024-01-01");
    // Committed files are old too: age alone never makes a file an orphan.
    for f in std::fs::read_dir(&p1).unwrap().flatten() {
        age_file(&f.path(), TWO_HOURS);
    }
    // A --force rerun killed after uploading a part; one killed mid-upload (the local store's
    // staging file); a crashed first write of a partition (no manifest); a write in progress.
    write_file(
        &p1.join("part-killed-00000.parquet"),
        &[7; 100],
        Some(TWO_HOURS),
    );
    write_file(
        &p1.join("part-killed-00001.parquet#2"),
        &[7; 30],
        Some(TWO_HOURS),
    );
    write_file(
        &table_dir.join("ds=2024-01-05/part-crashed-00000.parquet"),
        &[7; 50],
        Some(TWO_HOURS),
    );
    write_file(&p1.join("part-inflight-00000.parquet"), &[7; 10], None);
    // Not ours: never touched.
    write_file(&p1.join("notes.txt"), b"keep", Some(TWO_HOURS));
    let all = files_under(&table_dir);

    let dry = warehouse
        .vacuum(&t, std::time::Duration::from_secs(3600), true)
        .await
        .unwrap();
    assert_eq!(files_under(&table_dir), all, "a dry run removes nothing");
    let removed: Vec<(String, u64)> = dry
        .removed
        .iter()
        .map(|f| {
            let name = f.path.rsplit('/').take(2).collect::<Vec<_>>();
            (format!("{}/{}", name[1], name[0]), f.bytes)
        })
        .collect();
    assert_eq!(
        removed,
        [
            ("ds=2024-01-01/part-killed-00000.parquet".to_owned(), 100),
            ("ds=2024-01-01/part-killed-00001.parquet#2".to_owned(), 30),
            ("ds=2024-01-05/part-crashed-00000.parquet".to_owned(), 50),
        ]
    );
    assert_eq!(dry.bytes(), 180);
    assert_eq!(dry.young, 1);

    let done = warehouse
        .vacuum(&t, std::time::Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert_eq!(done, dry);
    let left = files_under(&table_dir);
    assert!(
        !left
            .iter()
            .any(|f| f.contains("killed") || f.contains("crashed")),
        "{left:?}"
    );
    assert!(left.contains(&"ds=2024-01-01/part-inflight-00000.parquet".to_owned()));
    assert!(left.contains(&"ds=2024-01-01/notes.txt".to_owned()));
    assert!(left.contains(&"ds=2024-01-01/_manifest.json".to_owned()));
    assert!(left.contains(&"_table.json".to_owned()));
    assert_eq!(export_json(&warehouse, &t).await.unwrap(), before);

    // A second vacuum finds nothing more.
    let again = warehouse
        .vacuum(&t, std::time::Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert!(again.removed.is_empty());
}

#[tokio::test]
async fn a_commit_removes_old_orphans_of_its_partition_appends_included() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let t = TableName::parse("ns.log").unwrap();
    let ds = d("2024-01-01");
    warehouse
        .append_partition(&t, "ds", ds, &[batch(0..2)])
        .await
        .unwrap();
    let p = dir.path().join("ns/log/ds=2024-01-01");
    write_file(
        &p.join("part-killed-00000.parquet"),
        &[1; 8],
        Some(TWO_HOURS),
    );
    write_file(&p.join("_manifest.json#4"), &[1; 8], Some(TWO_HOURS));
    write_file(&p.join("part-young-00000.parquet"), &[1; 8], None);
    warehouse
        .append_partition(&t, "ds", ds, &[batch(2..3)])
        .await
        .unwrap();
    let left = files_under(&p);
    assert!(
        !left.iter().any(|f| f.contains("killed") || f.contains('#')),
        "{left:?}"
    );
    assert!(left.contains(&"part-young-00000.parquet".to_owned()));
    assert_eq!(rows(&warehouse.read_partition(&t, ds).await.unwrap()), 3);

    // The grace period is the warehouse's to choose.
    let quick = Warehouse::open(dir.path().to_str().unwrap())
        .unwrap()
        .with_orphan_grace(std::time::Duration::ZERO);
    quick
        .write_partition(&t, "ds", ds, &[batch(0..1)])
        .await
        .unwrap();
    assert_eq!(files_under(&p).len(), 2, "{:?}", files_under(&p));
}

#[tokio::test]
async fn vacuum_in_memory_uses_the_store_listing_times() {
    let warehouse = Warehouse::open("memory://").unwrap();
    let t = TableName::parse("ns.t").unwrap();
    warehouse
        .write_partition(&t, "ds", d("2024-01-01"), &[batch(0..3)])
        .await
        .unwrap();
    let (store, p) = warehouse.raw_partition_path(&t, "ds", d("2024-01-01"));
    store
        .put(
            &p.join("part-killed-00000.parquet"),
            PutPayload::from(vec![0u8; 5]),
        )
        .await
        .unwrap();
    let young = warehouse
        .vacuum(&t, std::time::Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert_eq!((young.removed.len(), young.young), (0, 1));
    let all = warehouse
        .vacuum(&t, std::time::Duration::ZERO, false)
        .await
        .unwrap();
    assert_eq!(all.bytes(), 5);
    assert_eq!(
        rows(&warehouse.read_partition(&t, d("2024-01-01")).await.unwrap()),
        3
    );
}

#[tokio::test]
async fn a_forced_backfill_of_one_day_after_a_config_gained_a_feature_keeps_the_table_readable() {
    use chronoflow_config::{Layout, RepoFile, RepoFiles, repo};
    use chronoflow_engine::backfill::{BackfillOptions, backfill_range};
    use chronoflow_plan::partitions::PartitionRange;
    let (dir, warehouse) = csv_import_dir();
    import_csv(
        &warehouse,
        dir.path(),
        &TableName::parse("t.events").unwrap(),
        "ds,user,ts,value\n2024-03-01,a,1709251200000,1\n2024-03-02,a,1709337600000,10\n",
    )
    .await
    .unwrap();
    let config = |aggregations: serde_json::Value| {
        let gb = serde_json::json!({
            "metaData": {"name": "t.gb.v1", "team": "t", "outputNamespace": "out"},
            "sources": [{"events": {"table": "t.events", "query": {"selects": {"user": "user", "value": "value"}, "timeColumn": "ts"}}}],
            "keyColumns": ["user"],
            "aggregations": aggregations,
        });
        let r = repo::load(RepoFiles {
            layouts: vec![Layout::Airbnb {
                prefix: String::new(),
            }],
            files: vec![RepoFile {
                path: "production/group_bys/t/gb.v1".to_owned(),
                contents: gb.to_string().into_bytes(),
            }],
            unreadable: Vec::new(),
        });
        assert!(!r.has_errors(), "{:#?}", r.diagnostics);
        r
    };
    let range = PartitionRange::new(d("2024-03-01"), d("2024-03-02")).unwrap();
    let before = config(serde_json::json!([{"inputColumn": "value", "operation": 7}]));
    backfill_range(
        &warehouse,
        before.config("t.gb.v1").unwrap(),
        range,
        BackfillOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    // The config gains a COUNT; only the last day is recomputed.
    let after = config(serde_json::json!([
        {"inputColumn": "value", "operation": 7},
        {"inputColumn": "value", "operation": 6},
    ]));
    backfill_range(
        &warehouse,
        after.config("t.gb.v1").unwrap(),
        PartitionRange::single(d("2024-03-02")),
        BackfillOptions {
            force: true,
            ..BackfillOptions::default()
        },
        &mut |_| {},
    )
    .await
    .unwrap();
    let out = export_json(&warehouse, &TableName::parse("out.t_gb_v1").unwrap())
        .await
        .unwrap();
    assert_eq!(
        out,
        "{\"user\":\"a\",\"value_sum\":1,\"value_count\":null,\"ds\":\"2024-03-01\"}\n\
         {\"user\":\"a\",\"value_sum\":11,\"value_count\":2,\"ds\":\"2024-03-02\"}\n"
    );
}

#[tokio::test]
async fn one_write_of_batches_with_different_columns_takes_them_all() {
    let warehouse = Warehouse::open("memory://").unwrap();
    let t = TableName::parse("ns.mixed").unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("extra", DataType::Utf8, true),
        Field::new("id", DataType::Int64, false),
    ]));
    let other = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["x"])),
            Arc::new(Int64Array::from(vec![9])),
        ],
    )
    .unwrap();
    warehouse
        .write_partition(&t, "ds", d("2024-01-01"), &[batch(0..2), other])
        .await
        .unwrap();
    assert_eq!(
        export_json(&warehouse, &t).await.unwrap(),
        "{\"id\":0,\"tag\":null,\"extra\":null,\"ds\":\"2024-01-01\"}\n\
         {\"id\":1,\"tag\":\"t1\",\"extra\":null,\"ds\":\"2024-01-01\"}\n\
         {\"id\":9,\"tag\":null,\"extra\":\"x\",\"ds\":\"2024-01-01\"}\n"
    );
}

/// Chunks of one backfill on several workers write disjoint partitions of one table at once
/// (workers sharing an S3 warehouse): creating the table and recording its schema are
/// compare-and-swap puts of `_table.json`, so no writer's columns are lost and every partition
/// is committed. Writers on OS threads, each adding its own nullable column, on a store with
/// conditional puts (the in-memory one, as S3 and GCS).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_one_table_keep_every_partition_and_column() {
    const WRITERS: i64 = 8;
    let warehouse = Arc::new(Warehouse::open("memory://").unwrap());
    for round in 0..10 {
        let t = TableName::parse(&format!("ns.shared_{round}")).unwrap();
        let writers = (0..WRITERS).map(|w| {
            let (warehouse, t) = (warehouse.clone(), t.clone());
            tokio::spawn(async move {
                let extra = format!("col_{w}");
                let schema = Arc::new(Schema::new(vec![
                    Field::new("id", DataType::Int64, false),
                    Field::new(extra.as_str(), DataType::Utf8, true),
                ]));
                let batch = RecordBatch::try_new(
                    schema,
                    vec![
                        Arc::new(Int64Array::from_iter_values(0..100)),
                        Arc::new(StringArray::from_iter_values(
                            (0..100).map(|i| format!("{i}")),
                        )),
                    ],
                )
                .unwrap();
                let ds = d("2024-01-01").add_days(w);
                warehouse
                    .write_partition(&t, "ds", ds, &[batch])
                    .await
                    .unwrap();
            })
        });
        for writer in futures::future::join_all(writers).await {
            writer.unwrap();
        }
        assert_eq!(
            warehouse.partitions(&t).await.unwrap().len(),
            WRITERS as usize
        );
        let schema = warehouse.schema(&t).await.unwrap().unwrap();
        let mut columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        columns.sort_unstable();
        let mut expected = vec!["id".to_owned()];
        expected.extend((0..WRITERS).map(|w| format!("col_{w}")));
        expected.sort_unstable();
        assert_eq!(columns, expected, "round {round}");
        for w in 0..WRITERS {
            let read = warehouse
                .read_partition(&t, d("2024-01-01").add_days(w))
                .await
                .unwrap();
            assert_eq!(rows(&read), 100);
        }
    }
}

/// An import past its memory limit spills its days to disk and writes the rows an import in
/// memory writes, for Parquet and CSV (whose types are then inferred over the whole file: the
/// column `late` is an integer until its last row).
#[tokio::test]
async fn an_import_past_its_memory_limit_writes_what_an_import_in_memory_writes() {
    use chronoflow_engine::MemoryLimit;
    use chronoflow_engine::import::import_file_within;
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000usize;
    let days: Vec<String> = (0..n)
        .map(|i| format!("2024-01-{:02}", 1 + i % 28))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("ds", DataType::Utf8, false),
    ]));
    let file_rows = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| Some(format!("name {i}"))),
            )),
            Arc::new(StringArray::from_iter_values(&days)),
        ],
    )
    .unwrap();
    let parquet = dir.path().join("rows.parquet");
    parquet_file(&parquet, &file_rows);
    let mut csv = String::from("id,ds,late\n");
    for (i, day) in days.iter().enumerate() {
        let late = if i + 1 == n {
            "x".to_owned()
        } else {
            i.to_string()
        };
        csv.push_str(&format!("{i},{day},{late}\n"));
    }
    let csv_file = dir.path().join("rows.csv");
    std::fs::write(&csv_file, csv).unwrap();

    for file in [&parquet, &csv_file] {
        let mut read = Vec::new();
        for (i, limit) in [1u64 << 40, 1 << 20].into_iter().enumerate() {
            let wh = Warehouse::open(dir.path().join(format!("wh{i}")).to_str().unwrap()).unwrap();
            let t = TableName::parse("data.rows").unwrap();
            let report = import_file_within(&wh, &t, file, "ds", MemoryLimit { bytes: limit })
                .await
                .unwrap();
            assert_eq!((report.rows, report.partitions.len()), (n as u64, 28));
            let mut all = Vec::new();
            for day in 1..=28 {
                let batches = wh
                    .read_partition(&t, d(&format!("2024-01-{day:02}")))
                    .await
                    .unwrap();
                all.push(arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap());
            }
            read.push(all);
            std::fs::remove_dir_all(dir.path().join(format!("wh{i}"))).unwrap();
        }
        assert_eq!(read[0], read[1], "{}", file.display());
        assert_eq!(read[0].iter().map(|b| b.num_rows()).sum::<usize>(), n);
        if file == &csv_file {
            assert_eq!(
                read[0][0]
                    .schema()
                    .field_with_name("late")
                    .unwrap()
                    .data_type(),
                &DataType::Utf8
            );
        }
    }
}
