//! Tables in formats other than chronoflow's own, and how the warehouse decides a table's
//! format: its `[warehouse.tables]` entry, else what its folder holds, else (a table not
//! written yet) the warehouse's format for new tables.
//!
//! The warehouse's public methods ask [`Warehouse::foreign`] first and hand foreign tables to
//! their format's module; nothing outside the warehouse knows formats exist.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chronoflow_config::PartitionDate;
use object_store::{ListResult, ObjectStoreExt};

#[cfg(feature = "delta")]
use super::delta::DeltaLakeTable;
use super::formats::{TableFormat, TableFormats, TableSpec, check_built_in, split_identifier};
use super::hive::{HiveTable, partition_folder};
use super::iceberg::{Catalog, IcebergTable};
use super::{Location, PartitionInfo, PartitionStats, TABLE_META, TableMeta, Warehouse};
use crate::error::{EngineError, Result};
use crate::table_name::TableName;

/// `[warehouse]`, checked.
#[derive(Debug, Default)]
pub(crate) struct Formats {
    pub(crate) new_tables: TableFormat,
    pub(crate) tables: HashMap<TableName, TableSpec>,
    /// Iceberg catalogs, shared by their tables (one connection pool or HTTP client each).
    pub(crate) catalogs: HashMap<String, Arc<Catalog>>,
}

pub(crate) enum ForeignTable {
    Parquet(HiveTable),
    Iceberg(IcebergTable),
    #[cfg(feature = "delta")]
    Delta(DeltaLakeTable),
}

impl Warehouse {
    /// The warehouse with `[warehouse]`'s table formats.
    pub fn with_formats(mut self, formats: &TableFormats) -> Result<Self> {
        self.formats = Arc::new(Formats {
            new_tables: formats.format,
            tables: formats.check()?.into_iter().collect(),
            catalogs: formats
                .catalogs
                .iter()
                .map(|(key, spec)| (key.clone(), Arc::new(Catalog::new(key, spec))))
                .collect(),
        });
        self.resolved = Arc::default();
        Ok(self)
    }

    /// The format of `table`: configured, found, or (not written yet) the one it would be
    /// created in.
    pub async fn table_format(&self, table: &TableName) -> Result<TableFormat> {
        Ok(match self.foreign(table).await?.as_deref() {
            None => TableFormat::Chronoflow,
            Some(foreign) => foreign.format(),
        })
    }

    /// `table` when it is not in chronoflow's own format.
    pub(crate) async fn foreign(&self, table: &TableName) -> Result<Option<Arc<ForeignTable>>> {
        if let Some(known) = self
            .resolved
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(table)
        {
            return Ok(known.clone());
        }
        let spec = self.formats.tables.get(table);
        if let Some(spec) = spec
            && spec.format == TableFormat::Iceberg
        {
            // Found through its catalog: there is no folder to look at.
            let resolved = Some(Arc::new(ForeignTable::Iceberg(
                self.iceberg_table(table, spec)?,
            )));
            self.resolved
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(table.clone(), resolved.clone());
            return Ok(resolved);
        }
        let location = match spec.and_then(|s| s.location.as_deref()) {
            Some(uri) => Location::open(uri)?,
            None => self.table_location(table),
        };
        // Unconfigured, it would be created as a Delta table: another writer may be at it.
        let new_delta = spec.is_none() && self.formats.new_tables == TableFormat::Delta;
        let found = detect(&location, new_delta).await?;
        let format = match (spec, found) {
            (Some(spec), Some(found)) if spec.format != found => {
                return Err(EngineError::Corrupt {
                    table: table.to_string(),
                    reason: format!(
                        "configured as a {} table ([warehouse.tables] in chronoflow.toml), but {} holds a {found} table",
                        spec.format, location.uri
                    ),
                });
            }
            (Some(spec), _) => spec.format,
            (None, Some(found)) => found,
            (None, None) => self.formats.new_tables,
        };
        check_built_in(format).map_err(|reason| EngineError::Input {
            file: table.to_string(),
            message: format!("{}: {reason}", location.uri),
        })?;
        let resolved = match format {
            TableFormat::Chronoflow => None,
            TableFormat::Parquet => Some(Arc::new(ForeignTable::Parquet(HiveTable::new(
                table.clone(),
                location,
                spec.and_then(|s| s.partition_column.clone()),
                spec.and_then(|s| s.visible).unwrap_or_default(),
            )))),
            #[cfg(feature = "delta")]
            TableFormat::Delta => Some(Arc::new(ForeignTable::Delta(DeltaLakeTable::new(
                table.clone(),
                location,
            )))),
            #[cfg(not(feature = "delta"))]
            TableFormat::Delta => unreachable!("check_built_in refuses delta without the feature"),
            TableFormat::Iceberg => {
                return Err(EngineError::Input {
                    file: table.to_string(),
                    message:
                        "Iceberg tables are found only through [warehouse.tables] with a catalog"
                            .to_owned(),
                });
            }
        };
        // A table not written yet may still be created in another format by another process.
        if found.is_some() || spec.is_some() {
            self.resolved
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(table.clone(), resolved.clone());
        }
        Ok(resolved)
    }

    fn iceberg_table(&self, table: &TableName, spec: &TableSpec) -> Result<IcebergTable> {
        let bad = |message: String| EngineError::Input {
            file: format!("[warehouse.tables.\"{table}\"]"),
            message,
        };
        let key = spec
            .catalog
            .as_deref()
            .ok_or_else(|| bad("`catalog` is missing".to_owned()))?;
        let catalog = self
            .formats
            .catalogs
            .get(key)
            .ok_or_else(|| bad(format!("`catalog` {key:?} is not in [warehouse.catalogs]")))?;
        let identifier = spec.identifier.clone().unwrap_or_else(|| table.to_string());
        let parts = split_identifier(&identifier).ok_or_else(|| {
            bad(format!(
                "`identifier` {identifier:?} is not namespace.table"
            ))
        })?;
        Ok(IcebergTable::new(
            table.clone(),
            catalog.clone(),
            parts,
            spec.partition_column.clone(),
        ))
    }

    fn table_location(&self, table: &TableName) -> Location {
        let root = self.table_dir(table);
        Location {
            store: self.store.clone(),
            uri: format!(
                "{}/{}/{}",
                self.uri.trim_end_matches('/'),
                table.namespace,
                table.table
            ),
            local_dir: self
                .local_dir
                .as_ref()
                .map(|d| d.join(&table.namespace).join(&table.table)),
            root,
        }
    }

    /// An error naming `table` when it does not exist.
    pub(crate) async fn require_foreign(
        &self,
        table: &TableName,
        foreign: &ForeignTable,
    ) -> Result<()> {
        if foreign.exists().await? {
            return Ok(());
        }
        Err(EngineError::TableNotFound {
            table: table.to_string(),
            warehouse: self.uri.clone(),
        })
    }

    /// The tables configured with a location of their own, or in a catalog (the warehouse's
    /// listing misses them).
    pub(crate) fn located_tables(&self) -> impl Iterator<Item = &TableName> {
        self.formats
            .tables
            .iter()
            .filter(|(_, spec)| spec.location.is_some() || spec.format == TableFormat::Iceberg)
            .map(|(name, _)| name)
    }
}

/// The format of the table at `location`, by what its folder holds; `None` when empty, or
/// when a new table there would be Delta (`new_delta`) and one is being created.
async fn detect(location: &Location, new_delta: bool) -> Result<Option<TableFormat>> {
    // The listing comes first, the table file second: chronoflow records its table file before
    // it writes a partition's folder, so a folder of ours seen in the listing implies a table
    // file the later look finds. The other order mistook a table whose first partitions other
    // writers were creating at that moment for a foreign Parquet table (a concurrent-writers
    // test under load).
    let listed = location
        .store
        .list_with_delimiter(Some(&location.root))
        .await
        .map_err(|source| EngineError::Store {
            path: location.uri.clone(),
            source,
        })?;
    let meta = location.root.clone().join(TABLE_META);
    match location.store.head(&meta).await {
        Ok(_) => return Ok(Some(TableFormat::Chronoflow)),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(source) => {
            return Err(EngineError::Store {
                path: meta.to_string(),
                source,
            });
        }
    }
    let names: Vec<&str> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename())
        .collect();
    Ok(if names.contains(&"_delta_log") {
        Some(TableFormat::Delta)
    } else if !names.iter().any(|n| partition_folder(n).is_some()) {
        None
    } else if new_delta && !any_partition_done(location, &listed).await? {
        // Partition folders without a `_SUCCESS` and no `_delta_log`: the first commit of a
        // Delta table another writer is creating (its data files come before its log). Not a
        // table yet; looked at again next time. (Seen as a foreign Parquet table, it failed a
        // concurrent-writers test once in CI.)
        None
    } else {
        Some(TableFormat::Parquet)
    })
}

/// Whether any partition folder of `listed` (the listing of `location`) holds the `_SUCCESS`
/// of a finished Hive write.
async fn any_partition_done(location: &Location, listed: &ListResult) -> Result<bool> {
    for folder in &listed.common_prefixes {
        if folder
            .filename()
            .is_none_or(|n| partition_folder(n).is_none())
        {
            continue;
        }
        let marker = folder.clone().join(super::hive::SUCCESS);
        match location.store.head(&marker).await {
            Ok(_) => return Ok(true),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(EngineError::Store {
                    path: marker.to_string(),
                    source,
                });
            }
        }
    }
    Ok(false)
}

impl ForeignTable {
    /// Whether the table exists (cheaper than its metadata).
    pub(crate) async fn exists(&self) -> Result<bool> {
        match self {
            ForeignTable::Parquet(t) => t.exists().await,
            ForeignTable::Iceberg(t) => t.exists().await,
            #[cfg(feature = "delta")]
            ForeignTable::Delta(t) => t.exists().await,
        }
    }

    pub(crate) async fn meta(&self) -> Result<Option<TableMeta>> {
        match self {
            ForeignTable::Parquet(t) => t.meta().await,
            ForeignTable::Iceberg(t) => t.meta().await,
            #[cfg(feature = "delta")]
            ForeignTable::Delta(t) => t.meta().await,
        }
    }

    pub(crate) async fn partitions(&self) -> Result<Vec<PartitionDate>> {
        match self {
            ForeignTable::Parquet(t) => t.partitions().await,
            ForeignTable::Iceberg(t) => t.partitions().await,
            #[cfg(feature = "delta")]
            ForeignTable::Delta(t) => t.partitions().await,
        }
    }

    pub(crate) async fn partition_info(&self, ds: PartitionDate) -> Result<PartitionInfo> {
        let (rows, files) = match self {
            ForeignTable::Parquet(t) => t.partition_info(ds).await?,
            ForeignTable::Iceberg(t) => t.partition_info(ds).await?,
            #[cfg(feature = "delta")]
            ForeignTable::Delta(t) => t.partition_info(ds).await?,
        };
        Ok(PartitionInfo { ds, rows, files })
    }

    /// Statistics are chronoflow's own: other formats' partitions have none.
    pub(crate) async fn partition_stats(
        &self,
    ) -> Result<Vec<(PartitionDate, Option<PartitionStats>)>> {
        Ok(self
            .partitions()
            .await?
            .into_iter()
            .map(|ds| (ds, None))
            .collect())
    }

    pub(crate) async fn read_partition(&self, ds: PartitionDate) -> Result<Vec<RecordBatch>> {
        match self {
            ForeignTable::Parquet(t) => t.read_partition(ds).await,
            ForeignTable::Iceberg(t) => t.read_partition(ds).await,
            #[cfg(feature = "delta")]
            ForeignTable::Delta(t) => t.read_partition(ds).await,
        }
    }

    pub(crate) async fn schema(&self) -> Result<Option<SchemaRef>> {
        match self {
            ForeignTable::Parquet(t) => t.schema().await,
            ForeignTable::Iceberg(t) => t.schema().await,
            #[cfg(feature = "delta")]
            ForeignTable::Delta(t) => t.schema().await,
        }
    }

    // Without the `delta` feature only the read-only format is left, which uses none of them.
    #[cfg_attr(not(feature = "delta"), allow(unused_variables))]
    pub(crate) async fn write_partition(
        &self,
        column: &str,
        ds: PartitionDate,
        batches: &[RecordBatch],
        append: bool,
    ) -> Result<PartitionInfo> {
        match self {
            ForeignTable::Parquet(t) => Err(t.read_only()),
            ForeignTable::Iceberg(t) => Err(t.read_only()),
            #[cfg(feature = "delta")]
            ForeignTable::Delta(t) => {
                let (rows, files) = t.write_partition(column, ds, batches, append).await?;
                Ok(PartitionInfo { ds, rows, files })
            }
        }
    }

    pub(crate) async fn ensure_table(&self, column: &str) -> Result<TableMeta> {
        match self {
            ForeignTable::Parquet(t) => match t.meta().await? {
                Some(meta) if meta.partition_column == column => Ok(meta),
                Some(meta) => Err(partitioned_by(t.name(), &meta.partition_column, column)),
                None => Err(t.read_only()),
            },
            ForeignTable::Iceberg(t) => match t.meta().await? {
                Some(meta) if meta.partition_column == column => Ok(meta),
                Some(meta) => Err(partitioned_by(t.name(), &meta.partition_column, column)),
                None => Err(t.read_only()),
            },
            #[cfg(feature = "delta")]
            ForeignTable::Delta(t) => t.ensure_table(column).await,
        }
    }

    #[cfg_attr(not(feature = "delta"), allow(unused_variables))]
    pub(crate) async fn drop_partition(&self, ds: PartitionDate) -> Result<()> {
        match self {
            ForeignTable::Parquet(t) => Err(t.read_only()),
            ForeignTable::Iceberg(t) => Err(t.read_only()),
            #[cfg(feature = "delta")]
            ForeignTable::Delta(t) => t.drop_partition(ds).await,
        }
    }

    pub(crate) fn format(&self) -> TableFormat {
        match self {
            ForeignTable::Parquet(_) => TableFormat::Parquet,
            ForeignTable::Iceberg(_) => TableFormat::Iceberg,
            #[cfg(feature = "delta")]
            ForeignTable::Delta(_) => TableFormat::Delta,
        }
    }
}

pub(crate) fn partitioned_by(table: &TableName, actual: &str, wanted: &str) -> EngineError {
    EngineError::Input {
        file: table.to_string(),
        message: format!("table is partitioned by {actual:?}, not {wanted:?}"),
    }
}
