//! Tables in the formats teams already have, written and read by tools that are not ours
//! (PySpark, Python `deltalake`, DuckDB), through the CLI as users run it.
//!
//! The Python tools come from a virtualenv `.ci/run` installs (`LAKEHOUSE_PYTHON`); without it
//! these tests say so and pass, except under `CI=true` where they fail.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::quickstart::*;
use serde_json::{Map, Value};

/// The Python with pyspark, deltalake, duckdb and pyiceberg, if there is one.
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

fn python(python: &Path, script: &str, args: &[&str]) {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const TABLES: [&str; 4] = ["purchases", "returns", "users", "checkouts"];

/// The quickstart imported into `s`'s warehouse (chronoflow's format), each table also exported
/// as one Parquet file (with `ds`) into `dir`.
fn imported_and_exported(s: &Setup, dir: &Path) {
    for t in TABLES {
        s.import(
            &format!("data.{t}"),
            &quickstart().join(format!("data/{t}.csv")),
        );
        let file = dir.join(format!("{t}.parquet"));
        s.run(&[
            "table",
            "export",
            &format!("data.{t}"),
            "--format",
            "parquet",
            "--out",
            file.to_str().unwrap(),
        ]);
    }
}

/// The training set and a GroupBy backfilled from `s`'s sources, as sorted JSON rows.
fn backfilled(s: &Setup) -> Vec<Vec<Map<String, Value>>> {
    s.job(
        "backfill",
        &format!("{JOINS}/training_set.v2"),
        &["--ds", FETCH_DAY],
    );
    s.job(
        "backfill",
        &format!("{GB}/purchases.v1"),
        &["--ds", BATCH_DAY],
    );
    [
        ("default.quickstart_training_set_v2", FETCH_DAY),
        ("default.quickstart_purchases_v1", BATCH_DAY),
    ]
    .iter()
    .map(|(table, ds)| {
        let mut rows = s.export(table, ds);
        rows.sort_by_key(|r| Value::Object(r.clone()).to_string());
        assert!(!rows.is_empty(), "{table} has rows");
        rows
    })
    .collect()
}

/// Writes each partition of each table as Spark does when a job writes one partition folder:
/// part files, `.crc` checksums and a `_SUCCESS` marker once the job committed.
const SPARK_WRITE: &str = r#"
import sys
from pyspark.sql import SparkSession, functions as F
exported, warehouse = sys.argv[1], sys.argv[2]
spark = (SparkSession.builder.master("local[1]").appName("chronoflow-lakehouse-test")
         .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1")
         .getOrCreate())
for t in ["purchases", "returns", "users", "checkouts"]:
    df = spark.read.parquet(f"{exported}/{t}.parquet")
    for (ds,) in df.select("ds").distinct().collect():
        (df.where(F.col("ds") == ds).drop("ds").coalesce(1)
           .write.mode("overwrite").parquet(f"{warehouse}/data/{t}/ds={ds}"))
spark.stop()
"#;

#[test]
fn a_parquet_folder_written_by_pyspark_is_a_source_of_the_quickstart_backfill() {
    let Some(py) = lakehouse_python("pyspark parquet source") else {
        return;
    };
    let ours = Setup::new(None);
    let exported = ours.dir.path().join("exported");
    std::fs::create_dir_all(&exported).unwrap();
    imported_and_exported(&ours, &exported);
    let expected = backfilled(&ours);

    let spark = Setup::new(None);
    python(
        &py,
        SPARK_WRITE,
        &[
            exported.to_str().unwrap(),
            spark.warehouse.to_str().unwrap(),
        ],
    );
    assert!(
        spark
            .warehouse
            .join("data/purchases/ds=2023-11-14/_SUCCESS")
            .exists(),
        "Spark wrote its markers"
    );
    // Found as Parquet tables: no configuration.
    let listed = String::from_utf8(spark.run(&["table", "list"]).stdout).unwrap();
    assert!(
        listed.contains("data.purchases\tparquet\t30 partitions"),
        "{listed}"
    );
    assert_eq!(backfilled(&spark), expected);
}
