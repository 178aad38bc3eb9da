//! Iceberg tables written by pyiceberg (tests/iceberg/make_tables.py), read through a SQL catalog
//! on SQLite, on PostgreSQL (when `DATABASE_URL` is set) and through a REST catalog served by a
//! real process: partitions, pruning, rows equal to pyiceberg's own scan, field-id projection
//! after a rename and an added column, and the refusals (delete files, not a daily table, writes,
//! bad configuration).
//!
//! pyiceberg comes from the lakehouse virtualenv `.ci/run` installs (`LAKEHOUSE_PYTHON`); without
//! it the tests that need it say so and pass, except under `CI=true` where they fail.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chronoflow_config::PartitionDate;
use chronoflow_engine::warehouse::{
    CatalogSpec, CatalogType, TableFormat, TableFormats, TableSpec,
};
use chronoflow_engine::{EngineError, TableName, Warehouse};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn lakehouse_python(test: &str) -> Option<PathBuf> {
    match std::env::var_os("LAKEHOUSE_PYTHON").filter(|p| !p.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: LAKEHOUSE_PYTHON is not set (.ci/run installs it)")
        }
        None => {
            eprintln!("{test}: skipped: LAKEHOUSE_PYTHON is not set (.ci/run installs it)");
            None
        }
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/iceberg")
        .join(name)
}

/// The test tables, in the catalog `name` at `uri` (SQLAlchemy's form), files under `root`.
fn make_tables(python: &Path, root: &Path, uri: &str, name: &str) {
    let out = Command::new(python)
        .arg(script("make_tables.py"))
        .arg(root)
        .arg(uri)
        .arg(name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_tables.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn d(s: &str) -> PartitionDate {
    PartitionDate::parse(s).unwrap()
}

fn t(s: &str) -> TableName {
    TableName::parse(s).unwrap()
}

/// chronoflow name → identifier in the catalog.
const TABLES: [(&str, &str); 6] = [
    ("data.purchases", "data.purchases"),
    ("data.v1_table", "data.v1_table"),
    ("data.returns_pos", "data.returns_pos"),
    ("lake.by_date", "lake.sub.by_date"),
    ("lake.by_ts", "lake.sub.by_ts"),
    ("data.missing", "data.nope"),
];

fn sql(uri: &str, catalog_name: &str) -> CatalogSpec {
    CatalogSpec {
        kind: CatalogType::Sql,
        uri: uri.to_owned(),
        catalog_name: Some(catalog_name.to_owned()),
        warehouse: None,
        token_env: None,
    }
}

fn formats(catalog: CatalogSpec, tables: &[(&str, &str)]) -> TableFormats {
    TableFormats {
        catalogs: [("ice".to_owned(), catalog)].into_iter().collect(),
        tables: tables
            .iter()
            .map(|(name, identifier)| {
                (
                    (*name).to_owned(),
                    TableSpec {
                        format: TableFormat::Iceberg,
                        catalog: Some("ice".to_owned()),
                        identifier: Some((*identifier).to_owned()),
                        ..TableSpec::default()
                    },
                )
            })
            .collect(),
        ..TableFormats::default()
    }
}

fn warehouse(dir: &Path, formats: &TableFormats) -> Warehouse {
    Warehouse::open(dir.join("chronoflow").to_str().unwrap())
        .unwrap()
        .with_formats(formats)
        .unwrap()
}

/// Rows as sorted text, each `column=value` in column-name order: equal for equal values
/// whatever the Arrow type variant (Utf8 / LargeUtf8).
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("∅");
    let mut out = Vec::new();
    for b in batches {
        let schema = b.schema();
        let mut names: Vec<(usize, &str)> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (i, f.name().as_str()))
            .collect();
        names.sort_by_key(|(_, n)| *n);
        let formatters: Vec<(&str, ArrayFormatter)> = names
            .iter()
            .map(|(i, n)| (*n, ArrayFormatter::try_new(b.column(*i), &options).unwrap()))
            .collect();
        for row in 0..b.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|(n, f)| format!("{n}={}", f.value(row)))
                .collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    out
}

/// What pyiceberg's scan read from partition `ds` of `identifier`.
fn expected(root: &Path, identifier: &str, ds: &str) -> Vec<String> {
    let file =
        std::fs::File::open(root.join(format!("expected/{identifier}/{ds}.parquet"))).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    rows(&reader.collect::<Result<Vec<_>, _>>().unwrap())
}

fn expected_partitions(root: &Path, identifier: &str) -> Vec<PartitionDate> {
    let text = std::fs::read_to_string(root.join(format!("expected/{identifier}/partitions.json")))
        .unwrap();
    let dates: Vec<String> = serde_json::from_str(&text).unwrap();
    dates.iter().map(|s| d(s)).collect()
}

/// Everything the tables should read as, whichever catalog serves them.
async fn check_tables(wh: &Warehouse, root: &Path) {
    let purchases = t("data.purchases");
    assert_eq!(
        wh.table_format(&purchases).await.unwrap(),
        TableFormat::Iceberg
    );
    let listed = wh.tables().await.unwrap();
    assert!(listed.contains(&purchases), "{listed:?}");
    assert!(!listed.contains(&t("data.missing")), "{listed:?}");

    // 2023-11-03 was deleted (copy-on-write: its file's entry has status DELETED).
    assert_eq!(
        wh.partitions(&purchases).await.unwrap(),
        [d("2023-11-01"), d("2023-11-02"), d("2023-11-04")]
    );
    for (name, identifier) in &TABLES[..5] {
        let table = t(name);
        let partitions = wh.partitions(&table).await.unwrap();
        assert_eq!(partitions, expected_partitions(root, identifier), "{name}");
        for ds in partitions {
            if *name == "data.returns_pos" && ds == d("2023-11-02") {
                continue;
            }
            let ours = wh.read_partition(&table, ds).await.unwrap();
            let theirs = expected(root, identifier, &ds.to_string());
            assert!(!theirs.is_empty(), "{name} {ds}");
            assert_eq!(
                rows(&ours),
                theirs,
                "{name} {ds}: rows differ from pyiceberg's scan"
            );
        }
    }
    assert_eq!(
        wh.partitions(&t("lake.by_ts")).await.unwrap()[0],
        d("1969-12-31"),
        "day() of a timestamp before 1970"
    );

    // Columns by field id: `price` renamed `amount` after files were written, `coupon` added
    // (null in the old files); the identity partition's source column is the partition column.
    let meta = wh.table_meta(&purchases).await.unwrap().unwrap();
    assert_eq!(meta.partition_column, "ds");
    let schema = wh.schema(&purchases).await.unwrap().unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["ts", "user_id", "amount", "coupon"]);
    let old = wh
        .read_partition(&purchases, d("2023-11-01"))
        .await
        .unwrap();
    assert_eq!(old[0].column_by_name("amount").unwrap().null_count(), 0);
    assert_eq!(old[0].column_by_name("coupon").unwrap().null_count(), 10);
    let info = wh
        .partition_info(&purchases, d("2023-11-02"))
        .await
        .unwrap();
    assert_eq!((info.rows, info.files), (15, 2), "two appends to one day");
    // day(ts): nothing dropped, the partition column is the partition field's name.
    let by_ts = wh.table_meta(&t("lake.by_ts")).await.unwrap().unwrap();
    assert_eq!(by_ts.partition_column, "ts_day");
    let by_date = wh.schema(&t("lake.by_date")).await.unwrap().unwrap();
    let names: Vec<&str> = by_date.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "ts", "name"]);

    // A partition with a merge-on-read delete file is refused; the others read.
    let returns = t("data.returns_pos");
    for err in [
        wh.read_partition(&returns, d("2023-11-02"))
            .await
            .unwrap_err(),
        wh.partition_info(&returns, d("2023-11-02"))
            .await
            .unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(
            text.contains("data.returns_pos")
                && text.contains("2023-11-02")
                && text.contains("1 position delete file"),
            "{text}"
        );
    }

    // Not in the catalog; read-only.
    let missing = wh.partitions(&t("data.missing")).await.unwrap_err();
    assert!(
        matches!(missing, EngineError::TableNotFound { .. }),
        "{missing}"
    );
    let batches = wh
        .read_partition(&purchases, d("2023-11-01"))
        .await
        .unwrap();
    let write = wh
        .write_partition(&purchases, "ds", d("2023-11-09"), &batches)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        write.contains("data.purchases") && write.contains("is an Iceberg table"),
        "{write}"
    );
    let drop = wh
        .drop_partition(&purchases, d("2023-11-01"))
        .await
        .unwrap_err()
        .to_string();
    assert!(drop.contains("never writes"), "{drop}");
    let missing_day = wh
        .read_partition(&purchases, d("2023-11-03"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing_day, EngineError::PartitionNotFound { .. }),
        "{missing_day}"
    );
}

#[tokio::test]
async fn iceberg_tables_in_a_sqlite_catalog_read_as_pyiceberg_reads_them() {
    let Some(python) = lakehouse_python("iceberg sqlite") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let db = root.join("catalog.db");
    make_tables(
        &python,
        root,
        &format!("sqlite:///{}", db.display()),
        "lake",
    );
    let catalog = sql(&format!("sqlite://{}", db.display()), "lake");
    check_tables(&warehouse(root, &formats(catalog.clone(), &TABLES)), root).await;

    // Pruning: the manifest that holds only 2023-11-04 is damaged; other days never open it,
    // and listing partitions takes its one day from the manifest list's bounds.
    let last: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(root.join("expected/last_manifest.json")).unwrap(),
    )
    .unwrap();
    let manifest = url::Url::parse(&last[0]).unwrap().to_file_path().unwrap();
    std::fs::write(&manifest, b"not avro").unwrap();
    let wh = warehouse(root, &formats(catalog.clone(), &TABLES));
    let purchases = t("data.purchases");
    assert_eq!(wh.partitions(&purchases).await.unwrap().len(), 3);
    let first = wh
        .read_partition(&purchases, d("2023-11-01"))
        .await
        .unwrap();
    assert_eq!(rows(&first), expected(root, "data.purchases", "2023-11-01"));
    let err = wh
        .read_partition(&purchases, d("2023-11-04"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(manifest.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );

    // A table partitioned by month is not a daily table: refused with its spec.
    let wh = warehouse(
        root,
        &formats(catalog.clone(), &[("lake.by_month", "lake.sub.by_month")]),
    );
    let err = wh
        .partitions(&t("lake.by_month"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not partitioned by a date") && err.contains("ts_month=month(ts)"),
        "{err}"
    );

    // Format version 3 is refused, naming the version.
    let wh = warehouse(
        root,
        &formats(catalog.clone(), &[("data.v3_table", "data.v3_table")]),
    );
    let err = wh
        .partitions(&t("data.v3_table"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.v3_table") && err.contains("format-version 3"),
        "{err}"
    );

    // A catalog file that does not exist is an error naming the catalog, not an empty catalog.
    let wh = warehouse(
        root,
        &formats(
            sql(&format!("sqlite://{}/nope.db", root.display()), "lake"),
            &TABLES[..1],
        ),
    );
    let err = wh.partitions(&purchases).await.unwrap_err().to_string();
    assert!(err.contains("[warehouse.catalogs.ice]"), "{err}");
    assert!(!root.join("nope.db").exists());
}

#[tokio::test]
async fn iceberg_tables_in_a_postgres_catalog() {
    let Some(python) = lakehouse_python("iceberg postgres") else {
        return;
    };
    let Ok(url) = std::env::var("DATABASE_URL") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("iceberg postgres: DATABASE_URL is not set");
        }
        eprintln!("iceberg postgres: skipped: DATABASE_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The database outlives the test: a catalog name of its own keeps runs apart.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("test_{}_{nanos}", std::process::id());
    let rest = url.split_once("://").map(|(_, rest)| rest).unwrap_or(&url);
    make_tables(
        &python,
        root,
        &format!("postgresql+psycopg2://{rest}"),
        &name,
    );
    check_tables(&warehouse(root, &formats(sql(&url, &name), &TABLES)), root).await;
}

/// The REST server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn iceberg_tables_through_a_rest_catalog() {
    let Some(python) = lakehouse_python("iceberg rest") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let db = format!("sqlite:///{}", root.join("catalog.db").display());
    make_tables(&python, root, &db, "lake");
    let mut child = Command::new(&python)
        .arg(script("rest_server.py"))
        .arg(&db)
        .arg("lake")
        .arg(format!("file://{}/warehouse", root.display()))
        .arg("cat1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let _server = Server(child);
    let catalog = CatalogSpec {
        kind: CatalogType::Rest,
        uri: format!("http://127.0.0.1:{}", port.trim()),
        catalog_name: None,
        warehouse: None,
        token_env: None,
    };
    check_tables(&warehouse(root, &formats(catalog, &TABLES)), root).await;
}

#[test]
fn bad_iceberg_configuration_names_the_table_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let open = |formats: &TableFormats| {
        Warehouse::open(dir.path().to_str().unwrap())
            .unwrap()
            .with_formats(formats)
            .unwrap_err()
            .to_string()
    };
    let catalog = sql("sqlite:///x.db", "lake");
    let mut f = formats(catalog.clone(), &[("data.purchases", "data.purchases")]);
    f.tables.get_mut("data.purchases").unwrap().catalog = None;
    let err = open(&f);
    assert!(
        err.contains("[warehouse.tables.\"data.purchases\"]")
            && err.contains("`catalog` is missing"),
        "{err}"
    );
    f.tables.get_mut("data.purchases").unwrap().catalog = Some("lakehouse".to_owned());
    let err = open(&f);
    assert!(
        err.contains("\"lakehouse\" is not in [warehouse.catalogs]") && err.contains("ice"),
        "{err}"
    );
    let mut f = formats(catalog.clone(), &[("data.purchases", "purchases")]);
    let err = open(&f);
    assert!(err.contains("`identifier` \"purchases\""), "{err}");
    f.tables.get_mut("data.purchases").unwrap().identifier = None;
    f.tables.get_mut("data.purchases").unwrap().location = Some("/tmp/x".to_owned());
    assert!(open(&f).contains("`location`"));
    // A catalog on a parquet table.
    let mut f = formats(catalog, &[("data.purchases", "data.purchases")]);
    f.tables.get_mut("data.purchases").unwrap().format = TableFormat::Parquet;
    assert!(open(&f).contains("`catalog` and `identifier` are for iceberg tables"));

    // Unknown keys, as chronoflow.toml's [warehouse] section is read.
    let err = serde_json::from_value::<TableFormats>(serde_json::json!({
        "catalogs": {"lake": {"type": "sql", "uri": "sqlite:///x.db", "catalog": "x"}}
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `catalog`"), "{err}");
    let err = serde_json::from_value::<TableFormats>(serde_json::json!({
        "catalogs": {"lake": {"type": "hive", "uri": "thrift://h"}}
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown variant `hive`"), "{err}");
}
