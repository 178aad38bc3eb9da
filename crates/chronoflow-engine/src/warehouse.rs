//! The warehouse: tables as Hive-style Parquet under a root on any `object_store`
//! (`<root>/<namespace>/<table>/<column>=<yyyy-MM-dd>/part-*.parquet`).
//!
//! **Atomic partitions.** Object stores cannot rename directories, so a partition is defined by its
//! manifest (`_manifest.json`, one object, written last with a single atomic put) listing its part
//! files. A writer uploads new part files under fresh names, then puts the manifest, then deletes
//! the files of the previous manifest. A crash before the manifest leaves the old partition (or no
//! partition) visible and some orphan files that no reader looks at; a rerun replaces everything.
//!
//! **Orphans.** Files in no manifest (from crashed or concurrent writers) are deleted once older
//! than a grace period (default one hour), which must exceed the longest write: after every commit
//! in the committed partition, and in the whole table by `vacuum`. A writer checks its files still
//! exist before committing, so a too-short grace fails a write instead of breaking a partition.
//!
//! **Schema.** The table's schema lives in `_table.json` and changes only by the rule of
//! `schema::evolve`; readers give every partition that schema.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use chronoflow_config::PartitionDate;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result, joined};
use crate::schema::{self, ColumnSpec};
use crate::table_name::TableName;

#[cfg(feature = "delta")]
mod delta;
mod foreign;
mod formats;
mod hive;
mod iceberg;
mod part_files;

use foreign::{ForeignTable, Formats};
pub use formats::{CatalogSpec, CatalogType, TableFormat, TableFormats, TableSpec, Visibility};
pub use part_files::{PartitionFiles, PartitionWriter};

const MANIFEST: &str = "_manifest.json";
const TABLE_META: &str = "_table.json";
/// Reads and conditional puts of `_table.json` before a writer gives up: each failed attempt
/// means another writer changed it in between, and concurrent writers are a few workers.
const META_ATTEMPTS: usize = 64;

/// The version of `_table.json` a writer read (an ETag or object version on S3 and GCS).
#[derive(Debug, Clone)]
struct MetaVersion(object_store::UpdateVersion);
/// Rows per part file: bounds the memory a single part needs while writing and reading.
const ROWS_PER_FILE: usize = 1 << 20;
/// Files not in any manifest and older than this are leftovers of a crashed writer: the default
/// of `Warehouse::with_orphan_grace`.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);
/// The environment variable that sets the grace period of the warehouses a process opens (an
/// age such as `30m` or `2h`).
pub const ORPHAN_GRACE_ENV: &str = "CHRONOFLOW_ORPHAN_GRACE";
/// Manifests read at once by `partition_stats`: tables can have hundreds of partitions.
const MANIFEST_READS: usize = 16;

/// The default warehouse root, relative to the working directory.
pub const DEFAULT_WAREHOUSE: &str = "./.chronoflow/warehouse";

/// A table of `Warehouse::table_listing`.
#[derive(Debug)]
pub struct ListedTable {
    pub name: TableName,
    /// Why its metadata could not be read; the table is listed all the same.
    pub error: Option<EngineError>,
}

/// What `_table.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableMeta {
    pub partition_column: String,
    /// The columns of the table's files (without the partition column); `None` in tables
    /// written before schemas were recorded, until their next write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<ColumnSpec>>,
}

/// What `_manifest.json` holds: the files that make up the partition, and their statistics (in the
/// manifest so that they are committed atomically with the files they describe).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub files: Vec<String>,
    pub rows: u64,
    /// `None` in manifests written before statistics existed, and after appending to one of them
    /// (the old files' null counts are unknown without reading them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<PartitionStats>,
}

/// Data-quality figures of one partition, computed when it is committed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionStats {
    pub rows: u64,
    /// The top-level columns, in schema order (columns added by later appends at the end).
    pub columns: Vec<ColumnStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ColumnStats {
    pub name: String,
    pub nulls: u64,
}

impl PartitionStats {
    /// Row and null counts of `batches`, from the counts Arrow keeps (no pass over the values).
    pub fn of_batches(batches: &[RecordBatch]) -> Self {
        batches
            .iter()
            .map(|batch| PartitionStats {
                rows: batch.num_rows() as u64,
                columns: batch
                    .schema()
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .map(|(field, array)| ColumnStats {
                        name: field.name().clone(),
                        // Logical, so that a column of type Null counts as all nulls.
                        nulls: array.logical_null_count() as u64,
                    })
                    .collect(),
            })
            .reduce(|a, b| a.merge(&b))
            .unwrap_or_default()
    }

    /// The statistics of the rows of both. A column missing on one side has no values for that
    /// side's rows, so they count as nulls (which is what reading the files together yields).
    pub fn merge(&self, other: &PartitionStats) -> PartitionStats {
        let same_columns = self.columns.len() == other.columns.len()
            && self
                .columns
                .iter()
                .zip(&other.columns)
                .all(|(a, b)| a.name == b.name);
        let columns = if same_columns {
            self.columns
                .iter()
                .zip(&other.columns)
                .map(|(a, b)| ColumnStats {
                    name: a.name.clone(),
                    nulls: a.nulls + b.nulls,
                })
                .collect()
        } else {
            let nulls_in = |stats: &PartitionStats, name: &str| {
                stats
                    .column(name)
                    .map_or(stats.rows, |c: &ColumnStats| c.nulls)
            };
            let mut columns: Vec<ColumnStats> = self
                .columns
                .iter()
                .map(|a| ColumnStats {
                    name: a.name.clone(),
                    nulls: a.nulls + nulls_in(other, &a.name),
                })
                .collect();
            for b in &other.columns {
                if self.column(&b.name).is_none() {
                    columns.push(ColumnStats {
                        name: b.name.clone(),
                        nulls: self.rows + b.nulls,
                    });
                }
            }
            columns
        };
        PartitionStats {
            rows: self.rows + other.rows,
            columns,
        }
    }

    pub fn column(&self, name: &str) -> Option<&ColumnStats> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Nulls / rows of `column`: `None` for an unknown column, 0 for an empty partition.
    pub fn null_fraction(&self, column: &str) -> Option<f64> {
        let c = self.column(column)?;
        Some(if self.rows == 0 {
            0.0
        } else {
            c.nulls as f64 / self.rows as f64
        })
    }
}

/// One committed partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub ds: PartitionDate,
    pub rows: u64,
    pub files: usize,
}

pub struct Warehouse {
    store: Arc<dyn ObjectStore>,
    root: Path,
    uri: String,
    /// The directory of a local warehouse, where a killed upload leaves staging files the
    /// store's listings hide (`part-….parquet#1`).
    local_dir: Option<PathBuf>,
    orphan_grace: Duration,
    /// The formats of configured tables and of new ones.
    formats: Arc<Formats>,
    /// Tables whose format is known (a table keeps its format for life): `None` for
    /// chronoflow's own.
    resolved: Arc<RwLock<HashMap<TableName, Option<Arc<ForeignTable>>>>>,
}

/// A file `vacuum` removed (or would remove, on a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedFile {
    pub path: String,
    pub bytes: u64,
}

/// What `vacuum` did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumReport {
    pub removed: Vec<RemovedFile>,
    /// Orphans younger than the grace period, left for a later vacuum (they may belong to a
    /// write in progress).
    pub young: usize,
}

impl VacuumReport {
    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(|f| f.bytes).sum()
    }
}

/// Where a table or a warehouse lives: a store and a root in it.
#[derive(Clone)]
pub(crate) struct Location {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) root: Path,
    /// As given (a local directory: canonical), for messages.
    pub(crate) uri: String,
    /// The directory, when local.
    pub(crate) local_dir: Option<PathBuf>,
}

impl Location {
    /// A local directory (created if missing), `file://`, `memory://`, or, with the `cloud`
    /// feature, `s3://bucket/prefix` and `gs://bucket/prefix` (credentials from the usual
    /// environment variables).
    pub(crate) fn open(uri: &str) -> Result<Location> {
        let invalid = |reason: String| EngineError::InvalidWarehouse {
            uri: uri.to_owned(),
            reason,
        };
        if !uri.contains("://") {
            std::fs::create_dir_all(uri)
                .map_err(|e| invalid(format!("cannot create the directory: {e}")))?;
            let dir = std::fs::canonicalize(uri).map_err(|e| invalid(e.to_string()))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| invalid(e.to_string()))?;
            return Ok(Location {
                store: Arc::new(store),
                root: Path::default(),
                uri: dir.display().to_string(),
                local_dir: Some(dir),
            });
        }
        let url = url::Url::parse(uri).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| invalid("not a local path".to_owned()))?;
            return Location::open(&path.display().to_string());
        }
        let options = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
        let (store, root) =
            object_store::parse_url_opts(&url, options).map_err(|e| invalid(e.to_string()))?;
        Ok(Location {
            store: Arc::from(store),
            root,
            uri: uri.to_owned(),
            local_dir: None,
        })
    }
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse").field("uri", &self.uri).finish()
    }
}

impl Warehouse {
    /// Opens a warehouse: a local directory (created if missing), `file://`, `memory://`, or, with
    /// the `cloud` feature, `s3://bucket/prefix` and `gs://bucket/prefix` (credentials from the
    /// usual environment variables).
    pub fn open(uri: &str) -> Result<Self> {
        let invalid = |reason: String| EngineError::InvalidWarehouse {
            uri: uri.to_owned(),
            reason,
        };
        let grace = match std::env::var(ORPHAN_GRACE_ENV) {
            Ok(text) => {
                parse_age(&text).map_err(|e| invalid(format!("{ORPHAN_GRACE_ENV}: {e}")))?
            }
            Err(_) => ORPHAN_GRACE,
        };
        Ok(Warehouse::open_store(uri)?.with_orphan_grace(grace))
    }

    fn open_store(uri: &str) -> Result<Self> {
        let Location {
            store,
            root,
            uri,
            local_dir,
        } = Location::open(uri)?;
        Ok(Warehouse {
            store,
            root,
            uri,
            local_dir,
            orphan_grace: ORPHAN_GRACE,
            formats: Arc::default(),
            resolved: Arc::default(),
        })
    }

    /// How old a file in no manifest must be before a commit deletes it (default one hour). It
    /// must exceed the longest write to one partition: younger orphans may be a write in progress.
    pub fn with_orphan_grace(mut self, grace: Duration) -> Self {
        self.orphan_grace = grace;
        self
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn table_dir(&self, table: &TableName) -> Path {
        self.root
            .clone()
            .join(table.namespace.as_str())
            .join(table.table.as_str())
    }

    fn partition_dir(&self, table: &TableName, column: &str, ds: PartitionDate) -> Path {
        self.table_dir(table).join(format!("{column}={ds}"))
    }

    fn store_error(path: &Path) -> impl FnOnce(object_store::Error) -> EngineError + '_ {
        move |source| EngineError::Store {
            path: path.to_string(),
            source,
        }
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Path,
        table: &TableName,
    ) -> Result<Option<T>> {
        match self.store.get(path).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(Self::store_error(path))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| EngineError::Corrupt {
                        table: table.to_string(),
                        reason: format!("{path} is not valid: {e}"),
                    })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::store_error(path)(e)),
        }
    }

    /// The table's metadata, or `None` if the table does not exist.
    pub async fn table_meta(&self, table: &TableName) -> Result<Option<TableMeta>> {
        if let Some(foreign) = self.foreign(table).await? {
            return foreign.meta().await;
        }
        self.get_json(&self.table_dir(table).join(TABLE_META), table)
            .await
    }

    /// The table's metadata, or an error naming the table.
    pub async fn require_table(&self, table: &TableName) -> Result<TableMeta> {
        self.table_meta(table)
            .await?
            .ok_or_else(|| EngineError::TableNotFound {
                table: table.to_string(),
                warehouse: self.uri.clone(),
            })
    }

    /// Every table, sorted; the first table whose metadata cannot be read is an error (see
    /// `table_listing` for a listing that goes on past it).
    pub async fn tables(&self) -> Result<Vec<TableName>> {
        self.table_listing()
            .await?
            .into_iter()
            .map(|listed| match listed.error {
                None => Ok(listed.name),
                Some(e) => Err(e),
            })
            .collect()
    }

    /// Every table, sorted, each with the error that kept its metadata from being read, if any:
    /// one unreadable table (a configured Iceberg table whose catalog is gone, a corrupt Delta
    /// log) does not hide the others. Only a warehouse that cannot be listed is an error.
    pub async fn table_listing(&self) -> Result<Vec<ListedTable>> {
        let mut out: Vec<ListedTable> = Vec::new();
        let namespaces = self
            .store
            .list_with_delimiter(Some(&self.root))
            .await
            .map_err(Self::store_error(&self.root))?;
        for ns in namespaces.common_prefixes {
            let tables = self
                .store
                .list_with_delimiter(Some(&ns))
                .await
                .map_err(Self::store_error(&ns))?;
            for t in tables.common_prefixes {
                let (Some(n), Some(name)) = (ns.filename(), t.filename()) else {
                    continue;
                };
                let Ok(table) = TableName::parse(&format!("{n}.{name}")) else {
                    continue;
                };
                if let Some(listed) = self.listed(&table).await {
                    out.push(listed);
                }
            }
        }
        for table in self.located_tables() {
            if !out.iter().any(|listed| &listed.name == table)
                && let Some(listed) = self.listed(table).await
            {
                out.push(listed);
            }
        }
        out.sort_by_key(|listed| listed.name.clone());
        Ok(out)
    }

    /// `table` as listed: `None` when it is no table (a folder without one).
    async fn listed(&self, table: &TableName) -> Option<ListedTable> {
        match self.table_meta(table).await {
            Ok(None) => None,
            Ok(Some(_)) => Some(ListedTable {
                name: table.clone(),
                error: None,
            }),
            Err(e) => Some(ListedTable {
                name: table.clone(),
                error: Some(e),
            }),
        }
    }

    /// The committed partitions of a table, sorted (one listing of the table's objects).
    pub async fn partitions(&self, table: &TableName) -> Result<Vec<PartitionDate>> {
        if let Some(foreign) = self.foreign(table).await? {
            self.require_foreign(table, &foreign).await?;
            return foreign.partitions().await;
        }
        let meta = self.require_table(table).await?;
        self.partitions_of(table, &meta).await
    }

    async fn partitions_of(
        &self,
        table: &TableName,
        meta: &TableMeta,
    ) -> Result<Vec<PartitionDate>> {
        let dir = self.table_dir(table);
        let prefix = format!("{}=", meta.partition_column);
        let objects = self.list_all(&dir).await?;
        let mut out: Vec<PartitionDate> = objects
            .iter()
            .filter(|o| o.location.filename() == Some(MANIFEST))
            .filter_map(|o| {
                let parts: Vec<_> = o.location.parts().collect();
                let dir = parts.get(parts.len().checked_sub(2)?)?;
                PartitionDate::parse(dir.as_ref().strip_prefix(&prefix)?).ok()
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Row and file counts of one partition.
    pub async fn partition_info(
        &self,
        table: &TableName,
        ds: PartitionDate,
    ) -> Result<PartitionInfo> {
        if let Some(foreign) = self.foreign(table).await? {
            self.require_foreign(table, &foreign).await?;
            return foreign.partition_info(ds).await;
        }
        let meta = self.require_table(table).await?;
        let manifest = self.manifest(table, &meta, ds).await?;
        Ok(PartitionInfo {
            ds,
            rows: manifest.rows,
            files: manifest.files.len(),
        })
    }

    /// Every committed partition's statistics (`None` for partitions written before statistics
    /// existed), in date order: one manifest read per partition, a bounded number at a time.
    pub async fn partition_stats(
        &self,
        table: &TableName,
    ) -> Result<Vec<(PartitionDate, Option<PartitionStats>)>> {
        if let Some(foreign) = self.foreign(table).await? {
            self.require_foreign(table, &foreign).await?;
            return foreign.partition_stats().await;
        }
        let meta = self.require_table(table).await?;
        let meta = &meta;
        let partitions = self.partitions_of(table, meta).await?;
        let read: Vec<Option<(PartitionDate, Option<PartitionStats>)>> =
            futures::stream::iter(partitions)
                .map(|ds| async move {
                    match self.manifest(table, meta, ds).await {
                        Ok(m) => Ok(Some((ds, m.stats))),
                        // Dropped since the listing: no longer a partition.
                        Err(EngineError::PartitionNotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .buffered(MANIFEST_READS)
                .try_collect()
                .await?;
        Ok(read.into_iter().flatten().collect())
    }

    async fn manifest(
        &self,
        table: &TableName,
        meta: &TableMeta,
        ds: PartitionDate,
    ) -> Result<Manifest> {
        let path = self
            .partition_dir(table, &meta.partition_column, ds)
            .join(MANIFEST);
        self.get_json(&path, table)
            .await?
            .ok_or_else(|| EngineError::PartitionNotFound {
                table: table.to_string(),
                column: meta.partition_column.clone(),
                ds: ds.to_string(),
            })
    }

    /// Reads one partition (without the partition column, which lives in the directory name).
    pub async fn read_partition(
        &self,
        table: &TableName,
        ds: PartitionDate,
    ) -> Result<Vec<RecordBatch>> {
        if let Some(foreign) = self.foreign(table).await? {
            self.require_foreign(table, &foreign).await?;
            return foreign.read_partition(ds).await;
        }
        let meta = self.require_table(table).await?;
        let dir = self.partition_dir(table, &meta.partition_column, ds);
        // A concurrent rewrite may delete the files of the manifest just read: read it again.
        let mut attempts = 0;
        let batches = loop {
            let manifest = self.manifest(table, &meta, ds).await?;
            match self.read_files(&dir, &manifest.files).await {
                Err(EngineError::Store {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) if attempts < 3 => {
                    attempts += 1;
                }
                other => break other?,
            }
        };
        let Some(columns) = &meta.columns else {
            return Ok(batches);
        };
        // Every partition in the table's schema: older ones lack the columns added since.
        let schema = schema::from_specs(table, columns)?;
        let partition = format!("{}={ds}", meta.partition_column);
        batches
            .iter()
            .map(|b| schema::conform(b, &schema, table, &partition))
            .collect()
    }

    /// The whole content of the file at `path`.
    async fn file_bytes(&self, path: &Path) -> Result<Bytes> {
        self.store
            .get(path)
            .await
            .map_err(Self::store_error(path))?
            .bytes()
            .await
            .map_err(Self::store_error(path))
    }

    async fn read_files(&self, dir: &Path, files: &[String]) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for name in files {
            let path = dir.clone().join(name.as_str());
            let bytes = self.file_bytes(&path).await?;
            // Decoded on the blocking pool: a reader of several partitions at once (see
            // `source::load_each`) decodes them on as many cores. A file's batches are joined
            // into one there too: its reader would otherwise copy them on its own thread.
            let name = path.to_string();
            let decoded = tokio::task::spawn_blocking(move || {
                let batches = read_parquet_bytes(bytes, &name)?;
                match batches.as_slice() {
                    [_, _, ..] => arrow::compute::concat_batches(&batches[0].schema(), &batches)
                        .map(|one| vec![one])
                        .map_err(|source| EngineError::Arrow {
                            context: format!("reading {name}"),
                            source,
                        }),
                    _ => Ok(batches),
                }
            })
            .await
            .map_err(|e| EngineError::Io {
                path: path.to_string(),
                source: std::io::Error::other(e),
            })??;
            out.extend(decoded);
        }
        Ok(out)
    }

    /// The table's schema (without the partition column): the recorded one, else (tables
    /// written before schemas were recorded) its partitions' merged; `None` when it has none.
    pub async fn schema(&self, table: &TableName) -> Result<Option<SchemaRef>> {
        if let Some(foreign) = self.foreign(table).await? {
            self.require_foreign(table, &foreign).await?;
            return foreign.schema().await;
        }
        let meta = self.require_table(table).await?;
        self.current_schema(table, &meta).await
    }

    /// Creates the table if needed (recording its partition column), or checks the column
    /// matches; the table's metadata.
    pub async fn ensure_table(
        &self,
        table: &TableName,
        partition_column: &str,
    ) -> Result<TableMeta> {
        if let Some(foreign) = self.foreign(table).await? {
            return foreign.ensure_table(partition_column).await;
        }
        Ok(self.ensure_table_at(table, partition_column).await?.0)
    }

    /// [`Self::ensure_table`], with the version of `_table.json` it read or created (for a
    /// conditional replace). Two writers creating one table at once (two workers' chunks of one
    /// backfill) both end with the one `_table.json` that won: creation is a put-if-absent.
    async fn ensure_table_at(
        &self,
        table: &TableName,
        partition_column: &str,
    ) -> Result<(TableMeta, MetaVersion)> {
        for _ in 0..META_ATTEMPTS {
            match self.table_meta_at(table).await? {
                Some((meta, version)) if meta.partition_column == partition_column => {
                    return Ok((meta, version));
                }
                Some((meta, _)) => {
                    return Err(EngineError::Input {
                        file: table.to_string(),
                        message: format!(
                            "table is partitioned by {:?}, not {partition_column:?}",
                            meta.partition_column
                        ),
                    });
                }
                None => {
                    let meta = TableMeta {
                        partition_column: partition_column.to_owned(),
                        columns: None,
                    };
                    if let Some(version) = self.put_table_meta(table, &meta, None).await? {
                        return Ok((meta, version));
                    }
                }
            }
        }
        Err(Self::meta_contended(table))
    }

    /// `_table.json` and the version read (`None`: no such table).
    async fn table_meta_at(&self, table: &TableName) -> Result<Option<(TableMeta, MetaVersion)>> {
        let path = self.table_dir(table).join(TABLE_META);
        let got = match self.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Self::store_error(&path)(e)),
        };
        let version = MetaVersion(object_store::UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        });
        let bytes = got.bytes().await.map_err(Self::store_error(&path))?;
        let meta = serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
            table: table.to_string(),
            reason: format!("{path} is not valid: {e}"),
        })?;
        Ok(Some((meta, version)))
    }

    /// Puts `_table.json` if it is still at `expected` (`None`: only if absent): a
    /// compare-and-swap, so concurrent writers of one table (workers on S3) never overwrite a
    /// schema they did not read. `Ok(None)` when another writer changed it first (read again and
    /// retry). Stores without conditional replaces (the local filesystem) overwrite; there the
    /// re-check after each commit (`keep_schema_recorded`) restores a lost column.
    async fn put_table_meta(
        &self,
        table: &TableName,
        meta: &TableMeta,
        expected: Option<&MetaVersion>,
    ) -> Result<Option<MetaVersion>> {
        let path = self.table_dir(table).join(TABLE_META);
        let body = serde_json::to_vec_pretty(meta).expect("serializable");
        let mode = match expected {
            None => object_store::PutMode::Create,
            Some(v) => object_store::PutMode::Update(v.0.clone()),
        };
        let payload = PutPayload::from(body);
        let put = match self
            .store
            .put_opts(&path, payload.clone(), mode.into())
            .await
        {
            Ok(put) => put,
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => return Ok(None),
            Err(object_store::Error::NotImplemented { .. }) => self
                .store
                .put(&path, payload)
                .await
                .map_err(Self::store_error(&path))?,
            Err(e) => return Err(Self::store_error(&path)(e)),
        };
        Ok(Some(MetaVersion(object_store::UpdateVersion {
            e_tag: put.e_tag,
            version: put.version,
        })))
    }

    fn meta_contended(table: &TableName) -> EngineError {
        EngineError::Corrupt {
            table: table.to_string(),
            reason: format!(
                "{TABLE_META} changed under every one of {META_ATTEMPTS} attempts to update it (too many concurrent writers?)"
            ),
        }
    }

    /// The schema the table has, recorded or (for tables written before schemas were recorded)
    /// merged from its partitions' file footers.
    async fn current_schema(
        &self,
        table: &TableName,
        meta: &TableMeta,
    ) -> Result<Option<SchemaRef>> {
        match &meta.columns {
            Some(columns) => schema::from_specs(table, columns).map(Some),
            None => self.schema_from_footers(table, meta).await,
        }
    }

    /// The union of the partitions' file schemas (footers only), the later partition's type
    /// winning a conflict: readers then name the partitions that do not fit.
    async fn schema_from_footers(
        &self,
        table: &TableName,
        meta: &TableMeta,
    ) -> Result<Option<SchemaRef>> {
        let partitions = self.partitions_of(table, meta).await?;
        let schemas: Vec<Option<SchemaRef>> = futures::stream::iter(partitions)
            .map(|ds| async move {
                let manifest = match self.manifest(table, meta, ds).await {
                    Ok(m) => m,
                    Err(EngineError::PartitionNotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let Some(first) = manifest.files.first() else {
                    return Ok(None);
                };
                let path = self
                    .partition_dir(table, &meta.partition_column, ds)
                    .join(first.as_str());
                self.file_schema(&path).await.map(Some)
            })
            .buffered(MANIFEST_READS)
            .try_collect()
            .await?;
        Ok(schemas
            .into_iter()
            .flatten()
            .filter(|s| !s.fields().is_empty())
            .reduce(|a, b| Arc::new(schema::union_latest(&a, &b))))
    }

    /// Writes (or replaces) partition `ds` atomically. `batches` must not contain the partition column.
    pub async fn write_partition(
        &self,
        table: &TableName,
        partition_column: &str,
        ds: PartitionDate,
        batches: &[RecordBatch],
    ) -> Result<PartitionInfo> {
        if let Some(foreign) = self.foreign(table).await? {
            return foreign
                .write_partition(partition_column, ds, batches, false)
                .await;
        }
        let write = self
            .prepare_write(table, partition_column, ds, batches)
            .await?;
        let (dir, previous, batches) = (write.dir, write.previous, &write.batches[..]);

        let writer_id = unique_id();
        let mut files = Vec::new();
        let mut rows = 0u64;
        for (n, chunk) in chunk_rows(batches, ROWS_PER_FILE).into_iter().enumerate() {
            let name = format!("part-{writer_id}-{n:05}.parquet");
            let path = dir.clone().join(name.as_str());
            let bytes = write_parquet_bytes(&chunk, path.as_ref())?;
            rows += chunk.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            self.store
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(Self::store_error(&path))?;
            files.push(name);
        }
        let manifest = Manifest {
            files,
            rows,
            stats: Some(PartitionStats::of_batches(batches)),
        };
        self.check_files_exist(&dir, &manifest.files).await?;
        self.commit_manifest(&dir, &manifest).await?;
        if let Some(schema) = &write.recorded {
            self.keep_schema_recorded(table, partition_column, schema, ds)
                .await?;
        }

        self.clean_partition(&dir, &manifest, previous.as_ref())
            .await?;
        Ok(PartitionInfo {
            ds,
            rows: manifest.rows,
            files: manifest.files.len(),
        })
    }

    /// Adds rows to partition `ds` (creating it), in one new file: readers see all of them or
    /// none, as the manifest listing the new file is the commit point. For appenders that own
    /// their table, such as the fetch logger; a concurrent append to the same partition could lose one.
    pub async fn append_partition(
        &self,
        table: &TableName,
        partition_column: &str,
        ds: PartitionDate,
        batches: &[RecordBatch],
    ) -> Result<PartitionInfo> {
        if let Some(foreign) = self.foreign(table).await? {
            return foreign
                .write_partition(partition_column, ds, batches, true)
                .await;
        }
        let write = self
            .prepare_write(table, partition_column, ds, batches)
            .await?;
        let (dir, batches) = (write.dir, &write.batches[..]);
        let mut manifest = write.previous.unwrap_or(Manifest {
            files: Vec::new(),
            rows: 0,
            stats: Some(PartitionStats::default()),
        });
        let name = format!("part-{}-{:05}.parquet", unique_id(), manifest.files.len());
        let path = dir.clone().join(name.as_str());
        let bytes = write_parquet_bytes(batches, path.as_ref())?;
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(Self::store_error(&path))?;
        let added = PartitionStats::of_batches(batches);
        manifest.files.push(name);
        manifest.rows += added.rows;
        manifest.stats = manifest.stats.map(|s| s.merge(&added));
        // The older files are the previous manifest's: only the new one can have vanished.
        self.check_files_exist(&dir, &manifest.files[manifest.files.len() - 1..])
            .await?;
        self.commit_manifest(&dir, &manifest).await?;
        if let Some(schema) = &write.recorded {
            self.keep_schema_recorded(table, partition_column, schema, ds)
                .await?;
        }
        self.clean_partition(&dir, &manifest, None).await?;
        Ok(PartitionInfo {
            ds,
            rows: manifest.rows,
            files: manifest.files.len(),
        })
    }

    /// Creates the table if needed and checks `batches` against its schema, recording the
    /// schema they evolve it to (before any file is written, so a reader never meets a column
    /// the table does not list).
    async fn prepare_write(
        &self,
        table: &TableName,
        partition_column: &str,
        ds: PartitionDate,
        batches: &[RecordBatch],
    ) -> Result<PreparedWrite> {
        let dir = self.partition_dir(table, partition_column, ds);
        let partition = format!("{partition_column}={ds}");
        let (meta, evolved, recorded) = self
            .record_schema(table, partition_column, &partition, batches)
            .await?;
        let batches = match &evolved {
            Some(schema) if batches.is_empty() => vec![RecordBatch::new_empty(schema.clone())],
            Some(schema) => batches
                .iter()
                .map(|b| schema::conform(b, schema, table, &partition))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let previous = match self.manifest(table, &meta, ds).await {
            Ok(m) => Some(m),
            Err(EngineError::PartitionNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(PreparedWrite {
            dir,
            previous,
            batches,
            recorded,
        })
    }

    /// The table's metadata and the schema `batches` evolve it to, recorded in `_table.json`
    /// (compare-and-swap, read again when another writer changed it) when it changed; the
    /// recorded schema, if this write recorded one.
    async fn record_schema(
        &self,
        table: &TableName,
        partition_column: &str,
        partition: &str,
        batches: &[RecordBatch],
    ) -> Result<(TableMeta, Option<SchemaRef>, Option<SchemaRef>)> {
        for _ in 0..META_ATTEMPTS {
            let (meta, version) = self.ensure_table_at(table, partition_column).await?;
            let current = self.current_schema(table, &meta).await?;
            // Every batch may widen the schema (callers may pass batches of different columns).
            let evolved = batches.iter().try_fold(current.clone(), |schema, b| {
                schema::evolve(table, partition, schema.as_deref(), &b.schema())
                    .map(|s| Some(Arc::new(s)))
            })?;
            let Some(changed) = evolved
                .as_ref()
                .filter(|e| meta.columns.is_none() || current.as_ref() != Some(*e))
            else {
                return Ok((meta, evolved, None));
            };
            let meta = TableMeta {
                columns: Some(schema::to_specs(changed)),
                ..meta
            };
            if self
                .put_table_meta(table, &meta, Some(&version))
                .await?
                .is_some()
            {
                let recorded = Some(changed.clone());
                return Ok((meta, evolved, recorded));
            }
        }
        Err(Self::meta_contended(table))
    }

    /// The Arrow schema of a Parquet file, from its footer alone.
    async fn file_schema(&self, path: &Path) -> Result<SchemaRef> {
        file_schema(&self.store, path).await
    }

    /// After a commit that changed the schema: a writer changing it at the same time may have
    /// put its own over ours; merge ours back so the table lists every committed column.
    async fn keep_schema_recorded(
        &self,
        table: &TableName,
        partition_column: &str,
        ours: &SchemaRef,
        ds: PartitionDate,
    ) -> Result<()> {
        for _ in 0..META_ATTEMPTS {
            let (meta, version) = self.ensure_table_at(table, partition_column).await?;
            let current = self.current_schema(table, &meta).await?;
            if let Some(current) = &current
                && ours
                    .fields()
                    .iter()
                    .all(|f| current.field_with_name(f.name()).is_ok())
            {
                return Ok(());
            }
            let partition = format!("{partition_column}={ds}");
            let merged = schema::evolve(table, &partition, current.as_deref(), ours)?;
            let meta = TableMeta {
                columns: Some(schema::to_specs(&merged)),
                ..meta
            };
            if self
                .put_table_meta(table, &meta, Some(&version))
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(Self::meta_contended(table))
    }

    /// An error if a file about to be committed is gone: a manifest must never list a missing file.
    async fn check_files_exist(&self, dir: &Path, files: &[String]) -> Result<()> {
        for name in files {
            let path = dir.clone().join(name.as_str());
            match self.store.head(&path).await {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(EngineError::VanishedFile {
                        path: path.to_string(),
                    });
                }
                Err(e) => return Err(Self::store_error(&path)(e)),
            }
        }
        Ok(())
    }

    /// The commit point of a partition write: before this put readers see the old manifest's files,
    /// after it the new one's.
    async fn commit_manifest(&self, dir: &Path, manifest: &Manifest) -> Result<()> {
        let path = dir.clone().join(MANIFEST);
        let body = serde_json::to_vec_pretty(manifest).expect("serializable");
        self.store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(Self::store_error(&path))?;
        Ok(())
    }

    /// After a commit: deletes the previous version's files and the partition's orphans older
    /// than the grace period. Never a file the manifest now in the store lists (another writer
    /// may have committed since ours).
    async fn clean_partition(
        &self,
        dir: &Path,
        ours: &Manifest,
        previous: Option<&Manifest>,
    ) -> Result<()> {
        let objects = self.list_all(dir).await?;
        let latest = self.manifest_at(dir).await?;
        let referenced = |name: &str| {
            ours.files.iter().any(|f| f == name)
                || latest
                    .as_ref()
                    .is_some_and(|m| m.files.iter().any(|f| f == name))
        };
        let now = SystemTime::now();
        for o in objects {
            let Some(name) = o.location.filename() else {
                continue;
            };
            if !is_part_file(name) || referenced(name) {
                continue;
            }
            let superseded = previous.is_some_and(|p| p.files.iter().any(|f| f == name));
            if superseded || age(now, o.last_modified) > self.orphan_grace {
                self.delete(&o.location).await?;
            }
        }
        for leftover in self.local_staging_files(dir, now) {
            if leftover.age > self.orphan_grace {
                remove_local(&leftover.path)?;
            }
        }
        Ok(())
    }

    /// The manifest in directory `dir`, if any.
    async fn manifest_at(&self, dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.clone().join(MANIFEST);
        match self.store.get(&path).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(Self::store_error(&path))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| EngineError::Corrupt {
                        table: dir.to_string(),
                        reason: format!("{path} is not valid: {e}"),
                    })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::store_error(&path)(e)),
        }
    }

    async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::store_error(path)(e)),
        }
    }

    /// Staging files of uploads killed mid-write under `dir` (local warehouses only: the store's
    /// listings hide them), with their sizes and ages.
    fn local_staging_files(&self, dir: &Path, now: SystemTime) -> Vec<LocalLeftover> {
        let Some(root) = &self.local_dir else {
            return Vec::new();
        };
        let mut fs_dir = root.clone();
        fs_dir.extend(dir.parts().map(|p| p.as_ref().to_owned()));
        let Ok(entries) = std::fs::read_dir(&fs_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| {
                e.file_name().to_str().is_some_and(|n| {
                    n.split_once('#')
                        .is_some_and(|(base, _)| is_part_file(base) || base == MANIFEST)
                })
            })
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                let modified = meta.modified().ok()?;
                Some(LocalLeftover {
                    path: e.path(),
                    bytes: meta.len(),
                    age: now.duration_since(modified).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Deletes the files of `table` that no manifest lists (leftovers of crashed or concurrent
    /// writers) and that are older than `older_than`; with `dry_run`, only reports them.
    /// Manifests, `_table.json` and files not named like part files are never touched.
    pub async fn vacuum(
        &self,
        table: &TableName,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<VacuumReport> {
        if let Some(foreign) = self.foreign(table).await? {
            return Err(EngineError::Input {
                file: table.to_string(),
                message: format!(
                    "is a {} table: vacuum removes only chronoflow tables' orphans (use the format's own tools)",
                    foreign.format()
                ),
            });
        }
        let meta = self.require_table(table).await?;
        let table_dir = self.table_dir(table);
        let prefix = format!("{}=", meta.partition_column);
        // Grouped by partition directory, so each manifest is read once, after the listing: a
        // manifest committed since the listing then protects its files too.
        let mut by_dir: std::collections::BTreeMap<Path, Vec<object_store::ObjectMeta>> =
            std::collections::BTreeMap::new();
        for o in self.list_all(&table_dir).await? {
            let parts: Vec<_> = o.location.parts().collect();
            let Some(parent) = parts.len().checked_sub(1).map(|n| &parts[..n]) else {
                continue;
            };
            let in_partition = parent.len() == table_dir.parts().count() + 1
                && parent
                    .last()
                    .is_some_and(|p| p.as_ref().starts_with(&prefix));
            if in_partition && o.location.filename().is_some_and(is_part_file) {
                by_dir
                    .entry(Path::from_iter(parent.iter().cloned()))
                    .or_default()
                    .push(o);
            }
        }
        let now = SystemTime::now();
        let mut report = VacuumReport::default();
        for (dir, objects) in by_dir {
            let manifest = self.manifest_at(&dir).await?;
            for o in objects {
                let name = o.location.filename().unwrap_or_default();
                if manifest
                    .as_ref()
                    .is_some_and(|m| m.files.iter().any(|f| f == name))
                {
                    continue;
                }
                if age(now, o.last_modified) <= older_than {
                    report.young += 1;
                    continue;
                }
                if !dry_run {
                    self.delete(&o.location).await?;
                }
                report.removed.push(RemovedFile {
                    path: o.location.to_string(),
                    bytes: o.size,
                });
            }
        }
        if self.local_dir.is_some() {
            for partition in self.partition_dirs_on_disk(&table_dir, &prefix) {
                for leftover in self.local_staging_files(&partition, now) {
                    if leftover.age <= older_than {
                        report.young += 1;
                        continue;
                    }
                    if !dry_run {
                        remove_local(&leftover.path)?;
                    }
                    // Named like the store's paths, relative to the warehouse.
                    let name = leftover.path.file_name().unwrap_or_default();
                    report.removed.push(RemovedFile {
                        path: format!("{partition}/{}", name.to_string_lossy()),
                        bytes: leftover.bytes,
                    });
                }
            }
        }
        report.removed.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(report)
    }

    /// The partition directories of a local table, from the file system (a directory holding
    /// only staging files is invisible to the store's listing).
    fn partition_dirs_on_disk(&self, table_dir: &Path, prefix: &str) -> Vec<Path> {
        let Some(root) = &self.local_dir else {
            return Vec::new();
        };
        let mut fs_dir = root.clone();
        fs_dir.extend(table_dir.parts().map(|p| p.as_ref().to_owned()));
        let Ok(entries) = std::fs::read_dir(&fs_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.starts_with(prefix)
                    .then(|| table_dir.clone().join(name.as_str()))
            })
            .collect()
    }

    /// Deletes a partition (its manifest first, so it disappears at once).
    pub async fn drop_partition(&self, table: &TableName, ds: PartitionDate) -> Result<()> {
        if let Some(foreign) = self.foreign(table).await? {
            self.require_foreign(table, &foreign).await?;
            return foreign.drop_partition(ds).await;
        }
        let meta = self.require_table(table).await?;
        let dir = self.partition_dir(table, &meta.partition_column, ds);
        let manifest = dir.clone().join(MANIFEST);
        match self.store.delete(&manifest).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Self::store_error(&manifest)(e)),
        }
        let objects = self.list_all(&dir).await?;
        for o in objects {
            match self.store.delete(&o.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Self::store_error(&o.location)(e)),
            }
        }
        Ok(())
    }

    /// Every object under `dir` (recursively).
    async fn list_all(&self, dir: &Path) -> Result<Vec<object_store::ObjectMeta>> {
        self.store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(Self::store_error(dir))
    }

    /// The raw store and the path of a partition, for tests that simulate crashes.
    #[doc(hidden)]
    pub fn raw_partition_path(
        &self,
        table: &TableName,
        column: &str,
        ds: PartitionDate,
    ) -> (Arc<dyn ObjectStore>, Path) {
        (self.store.clone(), self.partition_dir(table, column, ds))
    }
}

/// The footer of the Parquet file at `path` (two ranged reads, not the whole file).
async fn file_footer(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<parquet::file::metadata::ParquetMetaData> {
    let invalid = |why: String| EngineError::Parquet {
        path: path.to_string(),
        source: parquet::errors::ParquetError::General(why),
    };
    let size = store
        .head(path)
        .await
        .map_err(Warehouse::store_error(path))?
        .size;
    let Some(footer_start) = size.checked_sub(8).filter(|_| size >= 12) else {
        return Err(invalid(format!(
            "{size} bytes is too short for a Parquet file"
        )));
    };
    let tail = store
        .get_range(path, footer_start..size)
        .await
        .map_err(Warehouse::store_error(path))?;
    if tail.len() != 8 || &tail[4..] != b"PAR1" {
        return Err(invalid(
            "not a Parquet file (no PAR1 at its end)".to_owned(),
        ));
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    let start = footer_start
        .checked_sub(len)
        .ok_or_else(|| invalid(format!("its footer claims {len} bytes")))?;
    let footer = store
        .get_range(path, start..footer_start)
        .await
        .map_err(Warehouse::store_error(path))?;
    ParquetMetaDataReader::decode_metadata(&footer).map_err(|source| EngineError::Parquet {
        path: path.to_string(),
        source,
    })
}

/// The Arrow schema of the Parquet file at `path`, from its footer alone.
pub(crate) async fn file_schema(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<SchemaRef> {
    let metadata = file_footer(store, path).await?;
    let file = metadata.file_metadata();
    parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
        .map(Arc::new)
        .map_err(|source| EngineError::Parquet {
            path: path.to_string(),
            source,
        })
}

/// The rows of the Parquet file at `path`, from its footer alone.
pub(crate) async fn file_num_rows(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<u64> {
    let metadata = file_footer(store, path).await?;
    Ok(u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0))
}

/// An age as people write it: `90s`, `30m`, `1h`, `2d` (or `0`).
pub fn parse_age(text: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("{text:?} is not an age such as 90s, 30m, 1h or 2d");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "" if n == 0 => 0,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// What `prepare_write` found and decided.
struct PreparedWrite {
    dir: Path,
    previous: Option<Manifest>,
    /// The rows to write, in the table's schema.
    batches: Vec<RecordBatch>,
    /// The schema this write recorded in `_table.json`, if it changed it.
    recorded: Option<SchemaRef>,
}

struct LocalLeftover {
    path: PathBuf,
    bytes: u64,
    age: Duration,
}

/// Whether `name` is a data file a writer of this module creates.
fn is_part_file(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".parquet")
}

fn age(now: SystemTime, modified: chrono::DateTime<chrono::Utc>) -> Duration {
    now.duration_since(SystemTime::from(modified))
        .unwrap_or_default()
}

fn remove_local(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(EngineError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// A process-unique, time-ordered id for part file names.
fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{nanos:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Splits batches into groups of at most `max_rows` rows (at least one group, possibly empty, so
/// an empty partition still has a file carrying its schema).
fn chunk_rows(batches: &[RecordBatch], max_rows: usize) -> Vec<Vec<RecordBatch>> {
    let mut groups: Vec<Vec<RecordBatch>> = vec![Vec::new()];
    let mut in_group = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() || (batch.num_rows() == 0 && offset == 0) {
            if in_group >= max_rows {
                groups.push(Vec::new());
                in_group = 0;
            }
            let take = (max_rows - in_group).min(batch.num_rows() - offset);
            groups
                .last_mut()
                .expect("non-empty")
                .push(batch.slice(offset, take));
            in_group += take;
            offset += take;
            if batch.num_rows() == 0 {
                break;
            }
        }
    }
    groups
}

pub(crate) fn write_parquet_bytes(batches: &[RecordBatch], path: &str) -> Result<Bytes> {
    let perr = |source| EngineError::Parquet {
        path: path.to_owned(),
        source,
    };
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
    let props = writer_properties(batches, &schema);
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut buf = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut buf, schema.clone(), Some(props.clone())).map_err(perr)?;
    // One row group of many columns: its columns are encoded and compressed on every core.
    // Below these sizes, or past one row group, the writer does it alone.
    const MIN_ROWS_IN_PARALLEL: usize = 10_000;
    if threads > 1
        && rows >= MIN_ROWS_IN_PARALLEL
        && rows <= props.max_row_group_row_count().unwrap_or(usize::MAX)
        && props.max_row_group_bytes().is_none()
        && schema.fields().len() > 1
    {
        let (file, factory) = writer.into_serialized_writer().map_err(perr)?;
        write_row_group_in_parallel(file, &factory, &schema, batches, threads).map_err(perr)?;
    } else {
        for b in batches {
            writer.write(b).map_err(perr)?;
        }
        writer.close().map_err(perr)?;
    }
    Ok(Bytes::from(buf))
}

/// How [`write_parquet_bytes`] writes `batches` (of `schema`): zstd, and dictionaries only for
/// the columns whose values repeat ([`mostly_distinct`]).
fn writer_properties(batches: &[RecordBatch], schema: &SchemaRef) -> WriterProperties {
    let mut props = WriterProperties::builder().set_compression(Compression::ZSTD(
        ZstdLevel::try_new(1).expect("valid level"),
    ));
    for (c, field) in schema.fields().iter().enumerate() {
        if mostly_distinct(batches, c) {
            props = props.set_column_dictionary_enabled(field.name().as_str().into(), false);
        }
    }
    props.build()
}

/// Whether column `c` of `batches`, a 64-bit number column, has more distinct values than
/// repeats among its first rows: then a dictionary only costs (interning every value, and a
/// dictionary page as large as the values), and the column is written plain. Feature columns
/// of averages and sums, times and keys are mostly so; counts and partitions are not.
fn mostly_distinct(batches: &[RecordBatch], c: usize) -> bool {
    const SAMPLE: usize = 1024;
    let mut seen = std::collections::HashSet::with_capacity(SAMPLE);
    let mut sampled = 0;
    for b in batches {
        let column = b.column(c);
        let bits = |i: usize| -> Option<u64> {
            use arrow::array::AsArray;
            use arrow::datatypes::{Float64Type, Int64Type};
            match column.data_type() {
                arrow::datatypes::DataType::Int64 => {
                    Some(column.as_primitive::<Int64Type>().value(i) as u64)
                }
                arrow::datatypes::DataType::Float64 => {
                    Some(column.as_primitive::<Float64Type>().value(i).to_bits())
                }
                _ => None,
            }
        };
        for i in (0..column.len()).filter(|&i| column.is_valid(i)) {
            let Some(v) = bits(i) else {
                return false;
            };
            seen.insert(v);
            sampled += 1;
            if sampled == SAMPLE {
                return seen.len() * 2 > sampled;
            }
        }
    }
    sampled > 0 && seen.len() * 2 > sampled
}

/// Writes `batches` as one row group of `file` and closes it, as [`ArrowWriter`] writes a row
/// group (the same leaves, in the same order, to the same column writers), with the columns
/// encoded on `threads` threads.
fn write_row_group_in_parallel<W: std::io::Write + Send>(
    mut file: parquet::file::writer::SerializedFileWriter<W>,
    factory: &parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    threads: usize,
) -> std::result::Result<(), parquet::errors::ParquetError> {
    use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowLeafColumn, compute_leaves};
    let writers = factory.create_column_writers(0)?;
    // Per leaf column (as the writers are ordered), its leaves in each batch, and the bytes of
    // the column it is a leaf of (what encoding it will roughly cost).
    let mut leaves: Vec<Vec<ArrowLeafColumn>> = writers.iter().map(|_| Vec::new()).collect();
    let mut weight: Vec<usize> = vec![0; writers.len()];
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let mut next = 0;
        for (field, column) in schema.fields().iter().zip(b.columns()) {
            let bytes = column.get_array_memory_size();
            for leaf in compute_leaves(field, column)? {
                leaves[next].push(leaf);
                weight[next] += bytes;
                next += 1;
            }
        }
    }
    // The heaviest columns first, each taken by the next thread free: the threads end
    // together (dealt in turn, a thread could get the list columns and run long alone).
    let mut work: Vec<(usize, usize, _, Vec<ArrowLeafColumn>)> = writers
        .into_iter()
        .zip(leaves)
        .enumerate()
        .map(|(i, (writer, leaves))| (weight[i], i, writer, leaves))
        .collect();
    work.sort_by_key(|(w, i, _, _)| (std::cmp::Reverse(*w), *i));
    let queue = std::sync::Mutex::new(work.into_iter());
    let encoded: Vec<std::result::Result<Vec<(usize, ArrowColumnChunk)>, _>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let next = queue
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .next();
                            let Some((_, i, mut writer, leaves)) = next else {
                                return Ok::<_, parquet::errors::ParquetError>(done);
                            };
                            for leaf in &leaves {
                                writer.write(leaf)?;
                            }
                            done.push((i, writer.close()?));
                        }
                    })
                })
                .collect();
            handles.into_iter().map(joined).collect()
        });
    let mut chunks: Vec<(usize, ArrowColumnChunk)> = Vec::new();
    for e in encoded {
        chunks.extend(e?);
    }
    chunks.sort_by_key(|(i, _)| *i);
    let mut row_group = file.next_row_group()?;
    for (_, chunk) in chunks {
        chunk.append_to_row_group(&mut row_group)?;
    }
    row_group.close()?;
    file.close()?;
    Ok(())
}

/// The rows of a Parquet file. The parquet crate can panic on a damaged file (found by
/// tests/import_fuzz.rs: an assertion in its RLE decoder on a flipped byte), so a panic while
/// decoding is turned into an error naming the file.
pub(crate) fn read_parquet_bytes(bytes: Bytes, path: &str) -> Result<Vec<RecordBatch>> {
    catch_decoder_panic(path, || decode_parquet(bytes, path))
}

/// `decode()`, with a panic of the parquet crate's decoder turned into an error naming `path`.
pub(crate) fn catch_decoder_panic<T>(path: &str, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let why = crate::error::panic_message(panic.as_ref());
        Err(EngineError::Parquet {
            path: path.to_owned(),
            source: parquet::errors::ParquetError::General(format!(
                "the file is damaged (the decoder failed: {why})"
            )),
        })
    })
}

fn decode_parquet(bytes: Bytes, path: &str) -> Result<Vec<RecordBatch>> {
    let perr = |source| EngineError::Parquet {
        path: path.to_owned(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(perr)?
        .with_batch_size(8192)
        .build()
        .map_err(perr)?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| EngineError::Arrow {
            context: format!("reading {path}"),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ids = Int64Array::from_iter_values(0..n);
        let names = StringArray::from_iter((0..n).map(|i| Some(format!("n{i}"))));
        RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(names)]).unwrap()
    }

    /// Columns encoded on several threads give the very bytes one `ArrowWriter` gives.
    #[test]
    fn parquet_written_in_parallel_is_byte_for_byte_what_one_writer_writes() {
        use arrow::array::{ArrayRef, Float64Array, Int64Builder, ListBuilder};
        let part = |from: i64, n: i64| {
            let mut lists = ListBuilder::new(Int64Builder::new());
            for i in from..from + n {
                if i % 7 == 0 {
                    lists.append(false);
                } else {
                    for j in 0..i % 4 {
                        lists.values().append_option((j != 2).then_some(i * j));
                    }
                    lists.append(true);
                }
            }
            let base = batch(n);
            let columns: Vec<ArrayRef> = vec![
                base.column(0).clone(),
                base.column(1).clone(),
                Arc::new(Float64Array::from_iter(
                    (from..from + n).map(|i| (i % 3 != 0).then(|| i as f64 / 3.0)),
                )),
                Arc::new(lists.finish()),
            ];
            let mut fields: Vec<Field> = base
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new("avg", DataType::Float64, true));
            fields.push(Field::new("last", columns[3].data_type().clone(), true));
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
        };
        let batches = vec![part(0, 12_000), part(12_000, 0), part(12_000, 9_000)];
        let parallel = write_parquet_bytes(&batches, "t.parquet").unwrap();
        let mut alone = Vec::new();
        let props = writer_properties(&batches, &batches[0].schema());
        // Distinct numbers are written plain; strings keep their dictionary.
        let dictionary = |c: &str| props.dictionary_enabled(&c.into());
        assert!(!dictionary("id") && !dictionary("avg") && dictionary("name"));
        let mut writer =
            ArrowWriter::try_new(&mut alone, batches[0].schema(), Some(props)).unwrap();
        for b in &batches {
            writer.write(b).unwrap();
        }
        writer.close().unwrap();
        assert_eq!(parallel.as_ref(), alone.as_slice());
        let read = read_parquet_bytes(parallel, "t.parquet").unwrap();
        let read = arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
        let written = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(read, written);
    }

    #[test]
    fn chunking_bounds_rows_per_file_and_keeps_empty_schemas() {
        let groups = chunk_rows(&[batch(5), batch(4)], 3);
        let sizes: Vec<usize> = groups
            .iter()
            .map(|g| g.iter().map(|b| b.num_rows()).sum())
            .collect();
        assert_eq!(sizes, [3, 3, 3]);
        let empty = chunk_rows(&[batch(0)], 3);
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0][0].num_columns(), 2);
    }
}
