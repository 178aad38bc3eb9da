//! Which format each table is in: the `[warehouse]` section of `chronoflow.toml`.
//!
//! ```toml
//! [warehouse]
//! format = "delta"                  # tables the warehouse creates (default "chronoflow")
//!
//! [warehouse.tables."data.purchases"]
//! format = "parquet"                # written by Spark: `ds=…/` folders with `_SUCCESS`
//! location = "s3://lake/purchases"  # default: <warehouse>/<namespace>/<table>
//! visible = "files"                 # a partition counts once it has files (default "success")
//! ```
//!
//! A table that is not listed is found by what its folder holds: `_table.json` (chronoflow's
//! own), `_delta_log/` (Delta Lake), or `<column>=<yyyy-MM-dd>/` folders (Parquet by others).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::table_name::TableName;

/// How a table's partitions are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// chronoflow's own: Hive-style Parquet with a manifest per partition (its commit point).
    #[default]
    Chronoflow,
    /// Delta Lake: the table's `_delta_log` says which files make up each partition (needs
    /// the `delta` cargo feature).
    Delta,
    /// Hive-style Parquet written by others (Spark, Hive, Trino): `<column>=<yyyy-MM-dd>/`
    /// folders, a partition visible by its [`Visibility`] rule. Read-only.
    Parquet,
}

impl TableFormat {
    pub fn name(self) -> &'static str {
        match self {
            TableFormat::Chronoflow => "chronoflow",
            TableFormat::Delta => "delta",
            TableFormat::Parquet => "parquet",
        }
    }
}

impl std::fmt::Display for TableFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TableFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "chronoflow" => Ok(TableFormat::Chronoflow),
            "delta" => Ok(TableFormat::Delta),
            "parquet" => Ok(TableFormat::Parquet),
            other => Err(format!(
                "unknown table format {other:?}: expected chronoflow, delta or parquet"
            )),
        }
    }
}

/// When a partition of a [`TableFormat::Parquet`] table counts as written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Once its folder holds `_SUCCESS` (what Spark writes when a job commits): a partition
    /// being written is never read half-done.
    #[default]
    Success,
    /// Once its folder holds a data file: for writers that leave no marker (or one `_SUCCESS`
    /// at the table's root, as Spark's `partitionBy` does) and move files in when they commit.
    Files,
}

/// One table's entry in `[warehouse.tables]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    #[serde(default)]
    pub format: TableFormat,
    /// The table's own folder (a local path, `file://`, `s3://…`, `gs://…`); default its
    /// place in the warehouse. Not for chronoflow tables, which live in the warehouse.
    pub location: Option<String>,
    /// The partition column of a Parquet table (default: the one its folders name, else `ds`).
    pub partition_column: Option<String>,
    /// A Parquet table's visibility rule.
    pub visible: Option<Visibility>,
}

/// The `[warehouse]` section: the format of new tables and the tables configured one by one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableFormats {
    /// The format of tables the warehouse creates.
    #[serde(default)]
    pub format: TableFormat,
    /// Keyed by `namespace.table`.
    #[serde(default)]
    pub tables: BTreeMap<String, TableSpec>,
}

impl TableFormats {
    /// Every table's name and spec, checked: names parse, options fit their format, and the
    /// formats are built in.
    pub fn check(&self) -> Result<Vec<(TableName, TableSpec)>> {
        let bad = |table: &str, reason: String| EngineError::Input {
            file: format!("[warehouse.tables.\"{table}\"]"),
            message: reason,
        };
        check_built_in(self.format).map_err(|reason| EngineError::Input {
            file: "[warehouse]".to_owned(),
            message: reason,
        })?;
        let mut out = Vec::with_capacity(self.tables.len());
        for (name, spec) in &self.tables {
            let table = TableName::parse(name)?;
            check_built_in(spec.format).map_err(|reason| bad(name, reason))?;
            if spec.format == TableFormat::Chronoflow && spec.location.is_some() {
                return Err(bad(
                    name,
                    "chronoflow tables live in the warehouse: `location` is for delta and parquet tables".to_owned(),
                ));
            }
            if spec.format != TableFormat::Parquet
                && (spec.visible.is_some() || spec.partition_column.is_some())
            {
                return Err(bad(
                    name,
                    format!(
                        "`visible` and `partition_column` are for parquet tables, not {}",
                        spec.format
                    ),
                ));
            }
            out.push((table, spec.clone()));
        }
        Ok(out)
    }
}

/// An error when this build cannot read `format`.
pub(crate) fn check_built_in(format: TableFormat) -> std::result::Result<(), String> {
    if format == TableFormat::Delta && !cfg!(feature = "delta") {
        return Err(
            "Delta Lake tables need a chronoflow built with the `delta` feature (cargo build --release --features delta)"
                .to_owned(),
        );
    }
    Ok(())
}
