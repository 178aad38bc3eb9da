//! Random CSV files (headers with duplicates, empty and non-ASCII names, ragged rows, huge
//! numbers, broken UTF-8) and randomly damaged Parquet files, imported into a fresh table and
//! into one that already has a schema: an import is an error or a correct import, never a
//! panic, and a failed import leaves no partition behind.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_engine::import::import_file;
use chronoflow_engine::{TableName, Warehouse};
use proptest::prelude::*;

/// Duplicates are likely (up to five draws from few names); empty names rarer.
const HEADERS: &[&str] = &[
    "ds", "ds", "id", "id", "name", "price", "名前", "x\u{301}", "ds", "score", "",
];
const CELLS: &[&str] = &[
    "2024-01-01",
    "2024-01-02",
    "2024-13-01",
    "1",
    "-7",
    "99999999999999999999",
    "-9223372036854775809",
    "1.5",
    "1e400",
    "NaN",
    "inf",
    "true",
    "FALSE",
    "ünïcödé",
    "\"a,b\"",
    "",
];

/// One cell: a known awkward value, random text, or bytes that are not UTF-8.
fn cell() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => proptest::sample::select(CELLS).prop_map(|c| c.as_bytes().to_vec()),
        2 => "[a-z0-9 .:-]{0,8}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 1..4)
            .prop_map(|b| b.into_iter().map(|x| if x == b',' || x == b'\n' || x == b'"' { 0xC3 } else { x }).collect()),
    ]
}

/// A header, then rows: most as wide as the header (ragged ones now and then), their `ds`
/// cells mostly dates, so that many imports get past parsing.
fn csv() -> impl Strategy<Value = (Vec<&'static str>, Vec<Vec<Vec<u8>>>)> {
    proptest::collection::vec(proptest::sample::select(HEADERS), 1..6).prop_flat_map(|header| {
        let width = header.len();
        let ds: Vec<bool> = header.iter().map(|h| *h == "ds").collect();
        let row = prop_oneof![
            9 => Just(width),
            1 => 0..width + 2,
        ]
        .prop_flat_map(move |n| {
            let ds = ds.clone();
            proptest::collection::vec(
                (
                    cell(),
                    proptest::sample::select(&["2024-01-01", "2024-01-02"][..]),
                    0..4u8,
                ),
                n,
            )
            .prop_map(move |cells| {
                cells
                    .into_iter()
                    .enumerate()
                    .map(|(i, (c, day, roll))| {
                        if ds.get(i) == Some(&true) && roll > 0 {
                            day.as_bytes().to_vec()
                        } else {
                            c
                        }
                    })
                    .collect::<Vec<_>>()
            })
        });
        (Just(header), proptest::collection::vec(row, 0..8))
    })
}

fn render(header: &[&str], rows: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut out = header.join(",").into_bytes();
    out.push(b'\n');
    for row in rows {
        out.extend(row.join(&b","[..]));
        out.push(b'\n');
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Rows per partition of a table, read back in full.
async fn contents(warehouse: &Warehouse, t: &TableName) -> BTreeMap<String, usize> {
    if warehouse.table_meta(t).await.unwrap().is_none() {
        return BTreeMap::new();
    }
    let mut out = BTreeMap::new();
    for ds in warehouse.partitions(t).await.unwrap() {
        let batches = warehouse.read_partition(t, ds).await.unwrap();
        out.insert(
            ds.to_string(),
            batches.iter().map(RecordBatch::num_rows).sum(),
        );
    }
    out
}

/// A warehouse with `data.t` holding one partition of (id Int64, name Utf8), or none.
async fn warehouse(dir: &std::path::Path, existing: bool) -> (Warehouse, TableName) {
    let warehouse = Warehouse::open(dir.join("wh").to_str().unwrap()).unwrap();
    let t = TableName::parse("data.t").unwrap();
    if existing {
        let file = dir.join("seed.csv");
        std::fs::write(&file, "ds,id,name\n2024-01-05,1,a\n").unwrap();
        import_file(&warehouse, &t, &file, "ds").await.unwrap();
    }
    (warehouse, t)
}

/// Imports `file`; on success every partition the report names reads with its rows, on
/// failure the table is exactly as it was. Whether it imported.
async fn check_import(
    warehouse: &Warehouse,
    t: &TableName,
    file: &std::path::Path,
) -> Result<bool, String> {
    let before = contents(warehouse, t).await;
    match import_file(warehouse, t, file, "ds").await {
        Ok(report) => {
            let after = contents(warehouse, t).await;
            let mut imported = 0;
            for p in &report.partitions {
                let rows = after.get(&p.ds.to_string()).copied();
                if rows != Some(p.rows as usize) {
                    return Err(format!(
                        "partition {} reads {rows:?} rows, the report says {}",
                        p.ds, p.rows
                    ));
                }
                imported += p.rows;
            }
            if imported != report.rows {
                return Err(format!(
                    "{imported} rows in partitions, {} in the report",
                    report.rows
                ));
            }
            // The table reads whole: every partition in its schema.
            let mut sink = Vec::new();
            chronoflow_engine::export::export_table(
                warehouse,
                t,
                None,
                chronoflow_engine::export::ExportFormat::Json,
                &mut sink,
            )
            .await
            .map_err(|e| format!("the table no longer exports: {e}"))?;
            Ok(true)
        }
        Err(e) => {
            let message = e.to_string();
            if message.trim().is_empty() {
                return Err("an empty error message".to_owned());
            }
            let after = contents(warehouse, t).await;
            if after != before {
                return Err(format!(
                    "failed ({message}) but changed the table: {before:?} -> {after:?}"
                ));
            }
            Ok(false)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn a_random_csv_imports_correctly_or_fails_cleanly((header, rows) in csv(), existing in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.csv");
        std::fs::write(&file, render(&header, &rows)).unwrap();
        let outcome = runtime().block_on(async {
            let (warehouse, t) = warehouse(dir.path(), existing).await;
            let outcome = check_import(&warehouse, &t, &file).await;
            // A successful import has the rows the file has in its ds column, per day.
            if outcome == Ok(true) && let Some(ds) = header.iter().position(|h| *h == "ds") {
                let mut expected: BTreeMap<String, usize> = BTreeMap::new();
                if existing {
                    expected.insert("2024-01-05".to_owned(), 1);
                }
                // An imported day replaces the partition; blank lines are no rows.
                let data = rows.iter().filter(|r| !(r.is_empty() || r.len() == 1 && r[0].is_empty()));
                for row in data.clone() {
                    expected.remove(&*String::from_utf8_lossy(&row[ds]));
                }
                for row in data {
                    *expected.entry(String::from_utf8_lossy(&row[ds]).into_owned()).or_default() += 1;
                }
                let got = contents(&warehouse, &t).await;
                if got != expected {
                    return Err(format!("imported {got:?}, the file has {expected:?}"));
                }
            }
            outcome.map(|_| ())
        });
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }

    #[test]
    fn a_damaged_parquet_file_imports_correctly_or_fails_cleanly(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        existing in any::<bool>(),
    ) {
        let mut bytes = valid_parquet();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.parquet");
        std::fs::write(&file, &bytes).unwrap();
        let outcome = runtime().block_on(async {
            let (warehouse, t) = warehouse(dir.path(), existing).await;
            check_import(&warehouse, &t, &file).await.map(|_| ())
        });
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

/// A Parquet file of 40 rows over two days, with a dictionary-encoded and a plain column.
fn valid_parquet() -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("ds", DataType::Utf8, false),
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values((0..40).map(|i| {
                if i % 2 == 0 {
                    "2024-01-01"
                } else {
                    "2024-01-02"
                }
            }))),
            Arc::new(Int64Array::from_iter(
                (0..40).map(|i| (i % 7 != 0).then_some(i * 1_000_003)),
            )),
            Arc::new(StringArray::from_iter(
                (0..40).map(|i| (i % 5 != 0).then(|| format!("name-{i}"))),
            )),
        ],
    )
    .unwrap();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// Found by the property above: one byte set to `!` in a page header made the parquet crate's
/// RLE decoder panic (`assertion failed: num_bits <= size_of::<T>() * 8`). Every position.
#[test]
fn a_parquet_file_damaged_anywhere_by_one_byte_is_an_error_or_an_import_never_a_panic() {
    let valid = valid_parquet();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.parquet");
    let runtime = runtime();
    for at in 0..valid.len() {
        let mut bytes = valid.clone();
        bytes[at] = b'!';
        std::fs::write(&file, &bytes).unwrap();
        let warehouse = Warehouse::open("memory://").unwrap();
        let t = TableName::parse("data.t").unwrap();
        let outcome = runtime.block_on(check_import(&warehouse, &t, &file));
        assert!(outcome.is_ok(), "byte {at}: {}", outcome.unwrap_err());
    }
}

/// Found by the property above: a file whose only column is the partition column failed with
/// Arrow's "must either specify a row count or at least one column".
#[test]
fn a_file_with_only_the_partition_column_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.csv");
    std::fs::write(&file, "ds\n2024-01-01\n").unwrap();
    let warehouse = Warehouse::open("memory://").unwrap();
    let t = TableName::parse("data.t").unwrap();
    let err = runtime()
        .block_on(import_file(&warehouse, &t, &file, "ds"))
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("in.csv: the file has no column besides the partition column \"ds\""),
        "{err}"
    );
}
