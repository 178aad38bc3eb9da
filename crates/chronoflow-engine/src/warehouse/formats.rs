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
//!
//! [warehouse.catalogs.lake]         # an Iceberg catalog: "sql" (SQLite, PostgreSQL) or "rest"
//! type = "sql"
//! uri = "sqlite:///srv/iceberg/catalog.db"
//!
//! [warehouse.tables."data.orders"]
//! format = "iceberg"
//! catalog = "lake"
//! identifier = "sales.orders"       # default: the chronoflow name
//! ```
//!
//! A table that is not listed is found by what its folder holds: `_table.json` (chronoflow's
//! own), `_delta_log/` (Delta Lake), or `<column>=<yyyy-MM-dd>/` folders (Parquet by others).
//! Iceberg tables are only found by configuration: their current state lives in the catalog.

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
    /// Apache Iceberg (format versions 1 and 2), through a `[warehouse.catalogs]` catalog: a
    /// partition is a date with live data files in the current snapshot. Read-only.
    Iceberg,
}

impl TableFormat {
    pub fn name(self) -> &'static str {
        match self {
            TableFormat::Chronoflow => "chronoflow",
            TableFormat::Delta => "delta",
            TableFormat::Parquet => "parquet",
            TableFormat::Iceberg => "iceberg",
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
            "iceberg" => Ok(TableFormat::Iceberg),
            other => Err(format!(
                "unknown table format {other:?}: expected chronoflow, delta, parquet or iceberg"
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
    /// The partition column of a Parquet table (default: the one its folders name, else `ds`);
    /// of an Iceberg table, which date partition field (when its spec has several).
    pub partition_column: Option<String>,
    /// A Parquet table's visibility rule.
    pub visible: Option<Visibility>,
    /// An Iceberg table's catalog: a key of `[warehouse.catalogs]`.
    pub catalog: Option<String>,
    /// An Iceberg table's name in its catalog, `namespace.table` (a namespace of several
    /// levels: `a.b.table`); default the chronoflow name.
    pub identifier: Option<String>,
}

/// The kind of an Iceberg catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogType {
    /// The SQL catalog of pyiceberg (`SqlCatalog`) and Java (`JdbcCatalog`): the table
    /// `iceberg_tables` in SQLite or PostgreSQL.
    Sql,
    /// The Iceberg REST catalog protocol (Polaris, Lakekeeper, Gravitino, Nessie, Unity, …).
    Rest,
}

/// One entry of `[warehouse.catalogs]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSpec {
    #[serde(rename = "type")]
    pub kind: CatalogType,
    /// `sqlite:///path/catalog.db` or `postgres://user@host/db` (sql); the base URL (rest).
    pub uri: String,
    /// The `catalog_name` of the SQL catalog's rows; default this entry's key.
    pub catalog_name: Option<String>,
    /// A REST catalog's warehouse (sent as `GET /v1/config?warehouse=…`).
    pub warehouse: Option<String>,
    /// The environment variable holding a REST catalog's bearer token.
    pub token_env: Option<String>,
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
    /// Iceberg catalogs, by the name tables give in `catalog`.
    #[serde(default)]
    pub catalogs: BTreeMap<String, CatalogSpec>,
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
        if matches!(self.format, TableFormat::Iceberg | TableFormat::Parquet) {
            return Err(EngineError::Input {
                file: "[warehouse]".to_owned(),
                message: format!(
                    "`format` {}: chronoflow reads {} tables but never creates them (chronoflow or delta)",
                    self.format, self.format
                ),
            });
        }
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
            if spec.format != TableFormat::Parquet && spec.visible.is_some() {
                return Err(bad(
                    name,
                    format!("`visible` is for parquet tables, not {}", spec.format),
                ));
            }
            if !matches!(spec.format, TableFormat::Parquet | TableFormat::Iceberg)
                && spec.partition_column.is_some()
            {
                return Err(bad(
                    name,
                    format!(
                        "`partition_column` is for parquet and iceberg tables, not {}",
                        spec.format
                    ),
                ));
            }
            if spec.format == TableFormat::Iceberg {
                self.check_iceberg(name, spec)
                    .map_err(|reason| bad(name, reason))?;
            } else if spec.catalog.is_some() || spec.identifier.is_some() {
                return Err(bad(
                    name,
                    format!(
                        "`catalog` and `identifier` are for iceberg tables, not {}",
                        spec.format
                    ),
                ));
            }
            out.push((table, spec.clone()));
        }
        for (name, catalog) in &self.catalogs {
            let bad = |reason: String| EngineError::Input {
                file: format!("[warehouse.catalogs.{name}]"),
                message: reason,
            };
            if catalog.uri.trim().is_empty() {
                return Err(bad("`uri` is empty".to_owned()));
            }
            if catalog.kind == CatalogType::Sql
                && (catalog.warehouse.is_some() || catalog.token_env.is_some())
            {
                return Err(bad(
                    "`warehouse` and `token_env` are for rest catalogs, not sql".to_owned(),
                ));
            }
            if catalog.kind == CatalogType::Rest && catalog.catalog_name.is_some() {
                return Err(bad(
                    "`catalog_name` is for sql catalogs, not rest".to_owned()
                ));
            }
        }
        Ok(out)
    }

    fn check_iceberg(&self, name: &str, spec: &TableSpec) -> std::result::Result<(), String> {
        if spec.location.is_some() {
            return Err(
                "an iceberg table's location is in its catalog: `location` is for delta and parquet tables"
                    .to_owned(),
            );
        }
        let Some(catalog) = &spec.catalog else {
            return Err(
                "`catalog` is missing: iceberg tables name a [warehouse.catalogs] entry".to_owned(),
            );
        };
        if !self.catalogs.contains_key(catalog) {
            let known: Vec<&str> = self.catalogs.keys().map(String::as_str).collect();
            return Err(format!(
                "`catalog` {catalog:?} is not in [warehouse.catalogs] (configured: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        }
        let identifier = spec.identifier.as_deref().unwrap_or(name);
        if split_identifier(identifier).is_none() {
            return Err(format!(
                "`identifier` {identifier:?} is not namespace.table (levels separated by dots, none empty)"
            ));
        }
        Ok(())
    }
}

/// `a.b.t` as the namespace levels `[a, b]` and the table `t` (split at the last dot).
pub(crate) fn split_identifier(identifier: &str) -> Option<(Vec<String>, String)> {
    let (namespace, table) = identifier.rsplit_once('.')?;
    let levels: Vec<String> = namespace.split('.').map(str::to_owned).collect();
    if table.is_empty() || levels.iter().any(String::is_empty) {
        return None;
    }
    Some((levels, table.to_owned()))
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
