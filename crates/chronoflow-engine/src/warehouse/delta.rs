//! Delta Lake tables for the warehouse, on `deltalake` 1.1 without its `datafusion` feature.
//!
//! A table is partitioned by one string column of `yyyy-MM-dd` values (`ds` by default). What the
//! warehouse calls a committed partition is here a partition value that the table's log has
//! active add actions for: files written under `ds=…/` that no commit added are invisible, so a
//! crashed writer never shows a half-written partition (its files are left for Delta's vacuum).
//!
//! **Writes.** `write_partition` writes the new files, then commits in ONE log entry the add
//! actions of the new files and the remove actions of every file the partition had (an overwrite
//! with the predicate `ds = 'D'`, as Spark's `replaceWhere` records it); other partitions are
//! untouched. The log entry is put with put-if-absent (`If-None-Match: *` on S3), so of two
//! writers of the same version one fails and retries.
//!
//! **S3.** `s3://bucket/prefix` on object_store's S3 client: commits are atomic by put-if-absent
//! (see `register_handlers`).
//!
//! **Conflicts.** deltalake's own conflict checker needs its `datafusion` feature to evaluate
//! the predicate: without it a transaction counts as having read the whole table, and a
//! concurrent replacement of any other partition fails it with `ConcurrentDeleteRead`. So commits
//! are made with deltalake's retries off and this module retries itself: it reloads the log,
//! recomputes the files the partition has now, and commits the same new files again. That is
//! correct for any interleaving (the removes are always those of the latest version), lets two
//! writers of different partitions both succeed, and makes two writers of the same partition
//! leave exactly one writer's rows.
//!
//! **Schema.** A table is created with every column nullable (as Spark and Python `deltalake`
//! do), so a later partition with nulls never fails. A write may add columns (recorded in the
//! same commit); a column's type never changes; a column a write lacks is filled with nulls.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Once};
use std::time::Duration;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow as _, TryIntoKernel as _};
use deltalake::kernel::transaction::{
    CommitBuilder, CommitConflictError, CommitProperties, TransactionError,
};
use deltalake::kernel::{
    Action, Add, DataType as DeltaType, MetadataExt as _, StructField, StructType,
};
use deltalake::logstore::{
    LogStore, LogStoreFactory, LogStoreRef, ObjectStoreFactory, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, ObjectStore};
use futures::StreamExt;
use object_store::ObjectStoreExt as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::WriterProperties;

/// Where deltalake's writer starts a new file: bounds what reading one file holds in memory
/// (`read_partition` reads whole files, as the warehouse reads its own parts).
const TARGET_FILE_SIZE: u64 = 128 << 20;

/// Commit attempts of one `write_partition` before it gives up: each failed attempt means another
/// writer committed in between, and concurrent writers of one table are a few workers.
const COMMIT_ATTEMPTS: u32 = 64;

pub type Result<T, E = DeltaError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("invalid Delta table location {uri}: {reason}")]
    InvalidLocation { uri: String, reason: String },
    /// The log exists but cannot be replayed: a commit that does not parse, a missing
    /// checkpoint, an action that contradicts the protocol.
    #[error("corrupt Delta table {uri}: {reason}")]
    Corrupt { uri: String, reason: String },
    #[error("Delta table {uri}: {reason}")]
    Unsupported { uri: String, reason: String },
    #[error("Delta table {uri}: {source}")]
    Delta {
        uri: String,
        #[source]
        source: DeltaTableError,
    },
    #[error("Delta table {uri}: cannot read {path}: {source}")]
    ReadFile {
        uri: String,
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("Delta table {uri}: {reason}")]
    Schema { uri: String, reason: String },
    #[error("invalid partition value {value:?}: expected yyyy-MM-dd")]
    InvalidPartitionValue { value: String },
    #[error("Delta table {uri} is partitioned by {actual:?}, not by [{expected:?}]")]
    PartitionColumn {
        uri: String,
        expected: String,
        actual: Vec<String>,
    },
    #[error(
        "Delta table {uri}: partition {column}={ds} not committed after {attempts} attempts, \
         other writers kept committing first"
    )]
    TooManyConflicts {
        uri: String,
        column: String,
        ds: String,
        attempts: u32,
    },
}

/// An opened Delta table: the log replayed up to one version, with its active files in memory.
/// Reads through it see that version even while others commit; `open` again for a newer one.
#[derive(Debug)]
pub struct Table {
    uri: String,
    inner: DeltaTable,
}

impl Table {
    pub fn partition_columns(&self) -> Result<Vec<String>> {
        Ok(self.state()?.metadata().partition_columns().to_vec())
    }

    fn state(&self) -> Result<&deltalake::table::state::DeltaTableState> {
        self.inner.snapshot().map_err(|e| self.delta_error(e))
    }

    /// The active files (`log_data()` would panic where this errs).
    fn log_data(&self) -> Result<deltalake::kernel::LogDataHandler<'_>> {
        self.state()?
            .snapshot()
            .try_log_data()
            .map_err(|e| self.delta_error(e))
    }

    fn delta_error(&self, source: DeltaTableError) -> DeltaError {
        DeltaError::Delta {
            uri: self.uri.clone(),
            source,
        }
    }

    /// The active files whose partition `column` has the value `ds`, in the order they were
    /// written as far as the log tells (the time each was closed, then its path, which numbers
    /// the files of one write), so that reads are deterministic.
    fn partition_files(&self, column: &str, ds: &str) -> Result<Vec<PartitionFile>> {
        self.require_partition_column(column)?;
        let mut files = Vec::new();
        for file in self.log_data()?.iter() {
            let values = file.partition_values_map();
            if values.get(column).and_then(|v| v.as_deref()) != Some(ds) {
                continue;
            }
            // Rows a deletion vector hides would come back: no writer of ours makes them, and
            // reading them needs the vector's bitmap, which this reader does not apply.
            if file.deletion_vector_descriptor().is_some() {
                return Err(DeltaError::Unsupported {
                    uri: self.uri.clone(),
                    reason: format!("{} has a deletion vector", file.path()),
                });
            }
            files.push(PartitionFile {
                modification_time: file.modification_time(),
                path: file.object_store_path(),
                size: u64::try_from(file.size()).unwrap_or(0),
                num_records: file.num_records().map(|n| n as u64),
                remove: file.remove_action(true),
            });
        }
        files.sort_by(|a, b| (a.modification_time, &a.path).cmp(&(b.modification_time, &b.path)));
        Ok(files)
    }

    fn require_partition_column(&self, column: &str) -> Result<()> {
        let columns = self.partition_columns()?;
        if columns.len() == 1 && columns[0] == column {
            Ok(())
        } else {
            Err(DeltaError::PartitionColumn {
                uri: self.uri.clone(),
                expected: column.to_owned(),
                actual: columns,
            })
        }
    }
}

struct PartitionFile {
    modification_time: i64,
    path: Path,
    size: u64,
    num_records: Option<u64>,
    remove: deltalake::kernel::Remove,
}

/// Row and file counts of one committed partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    pub rows: u64,
    pub files: usize,
}

/// What `write_partition` committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteInfo {
    /// The log version of the commit.
    pub version: u64,
    pub rows: u64,
    pub files: usize,
    /// Commit attempts (1 when no other writer committed in between).
    pub attempts: u32,
    /// The commit landed but the checkpoint deltalake writes after it (every 100 versions)
    /// failed: the table is fine, opening it replays more JSON until the next checkpoint.
    pub checkpoint_error: Option<String>,
}

/// Registers `s3://` and `s3a://` with deltalake, on object_store's own S3 client (the one the
/// warehouse uses) instead of deltalake's `s3` feature, which adds the AWS SDK (some 50 crates)
/// for credential sources object_store does not read (profiles, SSO). Commits are plain
/// put-if-absent (`If-None-Match: *`), which S3 has supported since 2024: no DynamoDB lock, and
/// deltalake 1.1 has no other S3 commit protocol left (its `s3` feature does the same).
fn register_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3://", "s3a://"] {
            if let Ok(url) = url::Url::parse(scheme) {
                object_store_factories().insert(url.clone(), Arc::new(S3StoreFactory));
                logstore_factories().insert(url, Arc::new(S3LogStoreFactory));
            }
        }
    });
}

struct S3StoreFactory;

impl ObjectStoreFactory for S3StoreFactory {
    fn parse_url_opts(
        &self,
        url: &url::Url,
        config: &StorageConfig,
    ) -> deltalake::DeltaResult<(Arc<dyn ObjectStore>, Path)> {
        // The environment's `AWS_*` first, the caller's options over them (keys in any case,
        // with or without the `aws_` prefix, as object_store names them).
        let mut builder = AmazonS3Builder::from_env();
        for (key, value) in &config.raw {
            if let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(key, value);
            }
        }
        let store = builder
            .with_url(url.as_str())
            .build()
            .map_err(|source| DeltaTableError::ObjectStore { source })?;
        let prefix = Path::parse(url.path()).map_err(|e| DeltaTableError::GenericError {
            source: Box::new(e),
        })?;
        Ok((Arc::new(store), prefix))
    }
}

struct S3LogStoreFactory;

impl LogStoreFactory for S3LogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: Arc<dyn ObjectStore>,
        root_store: Arc<dyn ObjectStore>,
        location: &url::Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// The table's URL: local paths (plain or `file://`) made absolute, `None` when a local table
/// directory does not exist (and `create` is false).
fn table_url(uri: &str, create: bool) -> Result<Option<url::Url>> {
    let invalid = |reason: String| DeltaError::InvalidLocation {
        uri: uri.to_owned(),
        reason,
    };
    let local = if uri.contains("://") {
        let url = url::Url::parse(uri).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() != "file" {
            return deltalake::ensure_table_uri(url.as_str())
                .map(Some)
                .map_err(|e| invalid(e.to_string()));
        }
        url.to_file_path()
            .map_err(|()| invalid("not a local path".to_owned()))?
    } else {
        std::path::PathBuf::from(uri)
    };
    if !local.exists() {
        if !create {
            return Ok(None);
        }
        std::fs::create_dir_all(&local).map_err(|e| invalid(e.to_string()))?;
    }
    let dir = std::fs::canonicalize(&local).map_err(|e| invalid(e.to_string()))?;
    url::Url::from_directory_path(&dir)
        .map(Some)
        .map_err(|()| invalid("not an absolute path".to_owned()))
}

fn builder(
    uri: &str,
    url: url::Url,
    storage_options: &HashMap<String, String>,
) -> Result<DeltaTable> {
    DeltaTableBuilder::from_url(url)
        .and_then(|b| b.with_storage_options(storage_options.clone()).build())
        .map_err(|e| DeltaError::InvalidLocation {
            uri: uri.to_owned(),
            reason: e.to_string(),
        })
}

/// Opens the table at `uri` (a local path, `file://…` or `s3://bucket/prefix`): `None` when there
/// is no Delta log there, an error naming the broken file when there is one that cannot be read.
///
/// `storage_options` are object_store's S3 keys (`aws_endpoint`, `aws_region`, `aws_allow_http`,
/// `aws_access_key_id`, …, any case); the `AWS_*` environment variables fill in the rest.
pub async fn open(uri: &str, storage_options: &HashMap<String, String>) -> Result<Option<Table>> {
    register_handlers();
    let Some(url) = table_url(uri, false)? else {
        return Ok(None);
    };
    let mut table = builder(uri, url, storage_options)?;
    let delta = |source| DeltaError::Delta {
        uri: uri.to_owned(),
        source,
    };
    // A commit or checkpoint file in `_delta_log/`, whether or not it parses.
    if !table.verify_deltatable_existence().await.map_err(delta)? {
        return Ok(None);
    }
    match table.load().await {
        Ok(()) => {}
        Err(e @ DeltaTableError::ObjectStore { .. }) => return Err(delta(e)),
        Err(e) => {
            // deltalake's message alone names no file (and kernel errors carry a backtrace
            // under RUST_BACKTRACE): the first line of it, after what we find ourselves.
            let first_line = e.to_string().lines().next().unwrap_or_default().to_owned();
            let reason = match diagnose_log(&table).await {
                Some(found) => format!("{found} ({first_line})"),
                None => first_line,
            };
            return Err(DeltaError::Corrupt {
                uri: uri.to_owned(),
                reason,
            });
        }
    }
    let table = Table {
        uri: uri.to_owned(),
        inner: table,
    };
    check_readable(&table)?;
    Ok(Some(table))
}

/// Whether there is a Delta table at `uri` (a commit or checkpoint in `_delta_log/`), without
/// replaying its log: one listing.
pub async fn exists(uri: &str, storage_options: &HashMap<String, String>) -> Result<bool> {
    register_handlers();
    let Some(url) = table_url(uri, false)? else {
        return Ok(false);
    };
    builder(uri, url, storage_options)?
        .verify_deltatable_existence()
        .await
        .map_err(|source| DeltaError::Delta {
            uri: uri.to_owned(),
            source,
        })
}

/// What is wrong with a log deltalake cannot replay, naming the file: a commit JSON with a line
/// that does not parse, or a commit missing between two others.
async fn diagnose_log(table: &DeltaTable) -> Option<String> {
    let store = table.object_store();
    let root = table.table_url().as_str().trim_end_matches('/').to_owned();
    let log = Path::from("_delta_log");
    // Commits are `<20-digit version>.json`; checkpoints and others are not looked at.
    let mut commits: Vec<(u64, Path)> = store
        .list(Some(&log))
        .filter_map(|meta| async move {
            let path = meta.ok()?.location;
            let version = path.filename()?.strip_suffix(".json")?.parse().ok()?;
            Some((version, path))
        })
        .collect()
        .await;
    commits.sort();
    for pair in commits.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            return Some(format!(
                "{root}/_delta_log/{:020}.json is missing (the log has versions {} and {})",
                pair[0].0 + 1,
                pair[0].0,
                pair[1].0
            ));
        }
    }
    for (_, path) in commits {
        let Ok(got) = store.get(&path).await else {
            continue;
        };
        let Ok(bytes) = got.bytes().await else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
                return Some(format!(
                    "{root}/{path} line {} is not valid JSON: {e}",
                    n + 1
                ));
            }
        }
    }
    None
}

/// Rejects what this reader would read wrong: column mapping renames the columns in the files.
fn check_readable(table: &Table) -> Result<()> {
    let metadata = table.state()?.metadata();
    match metadata.configuration().get("delta.columnMapping.mode") {
        Some(mode) if !mode.eq_ignore_ascii_case("none") => Err(DeltaError::Unsupported {
            uri: table.uri.clone(),
            reason: format!("column mapping mode {mode}"),
        }),
        _ => Ok(()),
    }
}

/// The committed values of partition column `column`, sorted and distinct, from the log's active
/// add actions (files no commit added do not count).
pub async fn partitions(table: &Table, column: &str) -> Result<Vec<String>> {
    table.require_partition_column(column)?;
    let values: BTreeSet<String> = table
        .log_data()?
        .iter()
        .filter_map(|file| file.partition_values_map().remove(column).flatten())
        .collect();
    Ok(values.into_iter().collect())
}

/// Rows and files of partition `ds`, `None` when no commit added files for it. Rows come from
/// the add actions' `numRecords` statistic, else from the files' Parquet footers.
pub async fn partition_info(
    table: &Table,
    column: &str,
    ds: &str,
) -> Result<Option<PartitionInfo>> {
    let files = table.partition_files(column, ds)?;
    if files.is_empty() {
        return Ok(None);
    }
    let store = table.inner.object_store();
    let mut rows = 0u64;
    for file in &files {
        rows += match file.num_records {
            Some(n) => n,
            None => footer_rows(table, &store, file).await?,
        };
    }
    Ok(Some(PartitionInfo {
        rows,
        files: files.len(),
    }))
}

/// The row count in the footer of a file the log has no statistics for (two ranged reads).
async fn footer_rows(
    table: &Table,
    store: &Arc<dyn ObjectStore>,
    file: &PartitionFile,
) -> Result<u64> {
    let read_error = |source| DeltaError::ReadFile {
        uri: table.uri.clone(),
        path: file.path.to_string(),
        source,
    };
    let invalid = |why: String| read_error(parquet::errors::ParquetError::General(why));
    let store_error = |e: object_store::Error| invalid(e.to_string());
    let Some(tail_start) = file.size.checked_sub(8).filter(|_| file.size >= 12) else {
        return Err(invalid(format!(
            "{} bytes is too short for Parquet",
            file.size
        )));
    };
    let tail = store
        .get_range(&file.path, tail_start..file.size)
        .await
        .map_err(store_error)?;
    if tail.len() != 8 || &tail[4..] != b"PAR1" {
        return Err(invalid(
            "not a Parquet file (no PAR1 at its end)".to_owned(),
        ));
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    let start = tail_start
        .checked_sub(len)
        .ok_or_else(|| invalid(format!("its footer claims {len} bytes")))?;
    let footer = store
        .get_range(&file.path, start..tail_start)
        .await
        .map_err(store_error)?;
    let metadata = ParquetMetaDataReader::decode_metadata(&footer).map_err(read_error)?;
    Ok(u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0))
}

/// Reads partition `ds`: only its files (the others are never opened), without the partition
/// column, each batch in the table's schema (`schema`), rows in file order, files by path.
pub async fn read_partition(table: &Table, column: &str, ds: &str) -> Result<Vec<RecordBatch>> {
    let files = table.partition_files(column, ds)?;
    let schema = schema(table).await?;
    let store = table.inner.object_store();
    let mut out = Vec::new();
    for file in &files {
        let read_error = |source| DeltaError::ReadFile {
            uri: table.uri.clone(),
            path: file.path.to_string(),
            source,
        };
        // Whole files, as the warehouse reads its own parts: a partition is read whole anyway.
        let store_error = |e: object_store::Error| {
            read_error(parquet::errors::ParquetError::External(Box::new(e)))
        };
        let bytes = store
            .get(&file.path)
            .await
            .map_err(store_error)?
            .bytes()
            .await
            .map_err(store_error)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(read_error)?;
        for batch in reader {
            let batch = batch.map_err(|e| read_error(e.into()))?;
            out.push(
                conform(&batch, &schema).map_err(|reason| DeltaError::Schema {
                    uri: table.uri.clone(),
                    reason: format!("{}: {reason}", file.path),
                })?,
            );
        }
    }
    Ok(out)
}

/// The table's schema without its partition columns, in Arrow types as deltalake maps Delta's
/// (strings `Utf8`, timestamps microseconds, UTC or without zone).
pub async fn schema(table: &Table) -> Result<SchemaRef> {
    let state = table.state()?;
    let partition_columns = state.metadata().partition_columns();
    let full = state.snapshot().arrow_schema();
    let fields: Vec<Arc<Field>> = full
        .fields()
        .iter()
        .filter(|f| !partition_columns.contains(f.name()))
        .cloned()
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// How `commit_until_in` ended.
enum Outcome {
    Committed(WriteInfo),
    /// The table's schema or partitioning changed meanwhile (the files must be written again),
    /// or the attempts ran out.
    Again,
    /// A drop found the partition gone (another writer dropped it).
    NothingToDrop,
}

/// How a commit changes partition `ds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Its files are the new ones alone (an overwrite with the predicate `column = 'ds'`).
    Replace,
    /// The new files join the ones it has (concurrent appends all land: none conflicts with
    /// another).
    Append,
    /// It has no files any more.
    Drop,
}

/// Removes partition `ds` in one commit (a delete with the predicate `column = 'ds'`); `None`
/// when there is no table or no such partition (nothing committed). The files stay until
/// Delta's vacuum: older versions still read them.
pub async fn drop_partition(
    uri: &str,
    storage_options: &HashMap<String, String>,
    column: &str,
    ds: &str,
) -> Result<Option<WriteInfo>> {
    check_ds(ds)?;
    let mut attempts = 0;
    let Some(mut table) = open(uri, storage_options).await? else {
        return Ok(None);
    };
    table.require_partition_column(column)?;
    if table.partition_files(column, ds)?.is_empty() {
        return Ok(None);
    }
    let written = Written {
        adds: Vec::new(),
        metadata: None,
    };
    match commit_until_in(
        &mut table,
        column,
        ds,
        &written,
        Change::Drop,
        &mut attempts,
    )
    .await?
    {
        Outcome::Committed(info) => Ok(Some(info)),
        Outcome::NothingToDrop => Ok(None),
        Outcome::Again => Err(DeltaError::TooManyConflicts {
            uri: uri.to_owned(),
            column: column.to_owned(),
            ds: ds.to_owned(),
            attempts,
        }),
    }
}

/// Brings `latest` (the table at `uri` as last read, `None`: not read yet or not trusted) up to
/// the table's latest version: only the commits since it was read, or the whole log when there
/// is none. Left `None` when there is no table, or when updating failed half-way.
async fn refresh(
    latest: &mut Option<Table>,
    uri: &str,
    storage_options: &HashMap<String, String>,
) -> Result<()> {
    if let Some(table) = latest.as_mut() {
        if let Err(e) = table.inner.update_state().await {
            let e = table.delta_error(e);
            *latest = None;
            return Err(e);
        }
        return Ok(());
    }
    *latest = open(uri, storage_options).await?;
    Ok(())
}

/// Writes partition `ds` of the table at `uri` in one atomic commit as `change` says (replacing
/// or adding to its files), creating the table, partitioned by `column`, if there is none.
/// `batches` must not have the partition column. Other partitions are untouched, also when other
/// writers commit meanwhile.
///
/// `latest` is the table as a previous call left it (`None`: not read yet), brought up to date
/// here and left at least as recent as it was: a writer of many partitions reads each commit of
/// the log once instead of replaying the whole log per partition.
async fn change_partition(
    latest: &mut Option<Table>,
    uri: &str,
    storage_options: &HashMap<String, String>,
    column: &str,
    ds: &str,
    batches: &[RecordBatch],
    change: Change,
) -> Result<WriteInfo> {
    register_handlers();
    check_ds(ds)?;
    let schema_error = |reason: String| DeltaError::Schema {
        uri: uri.to_owned(),
        reason,
    };
    if let Some(first) = batches.first() {
        if first.schema().column_with_name(column).is_some() {
            return Err(schema_error(format!(
                "the batches to write have the partition column {column}"
            )));
        }
        if batches.iter().any(|b| b.schema() != first.schema()) {
            return Err(schema_error(
                "the batches have different schemas".to_owned(),
            ));
        }
    }
    let mut attempts = 0u32;
    loop {
        // One round: write files against the table's current schema, then commit them, again
        // and again while others commit first; back to writing files only when the schema
        // changed meanwhile (the files might not fit the new one).
        refresh(latest, uri, storage_options).await?;
        let done = match latest.as_mut() {
            None => {
                attempts += 1;
                create_with_partition(uri, storage_options, column, ds, batches).await?
            }
            Some(table) => {
                table.require_partition_column(column)?;
                let written = write_files(table, storage_options, column, ds, batches).await?;
                match commit_until_in(table, column, ds, &written, change, &mut attempts).await? {
                    Outcome::Committed(info) => Some(info),
                    Outcome::Again | Outcome::NothingToDrop => None,
                }
            }
        };
        match done {
            Some(info) => return Ok(info),
            None if attempts >= COMMIT_ATTEMPTS => {
                return Err(DeltaError::TooManyConflicts {
                    uri: uri.to_owned(),
                    column: column.to_owned(),
                    ds: ds.to_owned(),
                    attempts,
                });
            }
            None => {}
        }
    }
}

/// Commits `written` as `change` of partition `ds`, reloading the log and recomputing the
/// partition's removes after each lost race.
async fn commit_until_in(
    table: &mut Table,
    column: &str,
    ds: &str,
    written: &Written,
    change: Change,
    attempts: &mut u32,
) -> Result<Outcome> {
    let rows = written.adds.iter().map(add_rows).sum();
    let files = written.adds.len();
    loop {
        *attempts += 1;
        let mut actions: Vec<Action> = written.adds.iter().cloned().map(Action::Add).collect();
        if change != Change::Append {
            for old in table.partition_files(column, ds)? {
                actions.push(Action::Remove(old.remove));
            }
        }
        if change == Change::Drop && actions.is_empty() {
            // Another writer dropped it first.
            return Ok(Outcome::NothingToDrop);
        }
        if let Some(metadata) = &written.metadata {
            actions.push(Action::Metadata(metadata.clone()));
        }
        let predicate = Some(format!("{column} = '{ds}'"));
        let operation = match change {
            Change::Replace => DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: Some(vec![column.to_owned()]),
                predicate,
            },
            Change::Append => DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: Some(vec![column.to_owned()]),
                predicate: None,
            },
            Change::Drop => DeltaOperation::Delete { predicate },
        };
        // deltalake's retries off: its conflict checker (without `datafusion`) would reject a
        // concurrent replacement of another partition; ours recomputes the removes instead.
        let commit = CommitBuilder::from(CommitProperties::default().with_max_retries(0))
            .with_actions(actions)
            .build(Some(table.state()?), table.inner.log_store(), operation)
            .into_prepared_commit_future()
            .await
            .map_err(|e| table.delta_error(e))?
            .await;
        match commit {
            Ok(post) => {
                let version = post.version;
                // The commit is in; what follows (a checkpoint every 100 versions) may fail
                // without undoing it.
                let checkpoint_error = post.await.err().map(|e| e.to_string());
                return Ok(Outcome::Committed(WriteInfo {
                    version,
                    rows,
                    files,
                    attempts: *attempts,
                    checkpoint_error,
                }));
            }
            Err(e) if is_lost_race(&e) => {
                if *attempts >= COMMIT_ATTEMPTS {
                    return Ok(Outcome::Again);
                }
                backoff(*attempts).await;
                let schema_before = table.state()?.metadata().schema_string().clone();
                table
                    .inner
                    .update_state()
                    .await
                    .map_err(|e| table.delta_error(e))?;
                let metadata = table.state()?.metadata();
                if metadata.schema_string() != &schema_before
                    || metadata.partition_columns() != [column.to_owned()].as_slice()
                {
                    return Ok(Outcome::Again);
                }
            }
            Err(e) => return Err(table.delta_error(e)),
        }
    }
}

/// The errors that mean another writer committed the version this one tried.
fn is_lost_race(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_)
                    | TransactionError::VersionAlreadyExists(_)
                    | TransactionError::CommitConflict(
                        CommitConflictError::ConcurrentAppend
                            | CommitConflictError::ConcurrentDeleteRead
                            | CommitConflictError::ConcurrentDeleteDelete
                            | CommitConflictError::MetadataChanged
                    )
            }
    )
}

async fn backoff(attempt: u32) {
    // Spread the retries of writers that lost together; the clock's nanoseconds are jitter
    // enough for a few workers.
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos() % 20))
        .unwrap_or(0);
    let millis = (5 * u64::from(attempt.min(20))) + jitter;
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

/// The `numRecords` statistic the writer put in the add action.
fn add_rows(add: &Add) -> u64 {
    add.stats
        .as_deref()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v.get("numRecords").and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}

struct Written {
    adds: Vec<Add>,
    /// The table's metadata with the new columns of this write, when it has any.
    metadata: Option<deltalake::kernel::Metadata>,
}

/// Writes the batches as files of partition `ds` of an existing table, in its schema widened by
/// the batches' new columns.
async fn write_files(
    table: &Table,
    storage_options: &HashMap<String, String>,
    column: &str,
    ds: &str,
    batches: &[RecordBatch],
) -> Result<Written> {
    let state = table.state()?;
    let current: StructType = state
        .metadata()
        .parse_schema()
        .map_err(|e| table.delta_error(e.into()))?;
    let incoming = batches.first().map(|b| b.schema());
    let merged = match &incoming {
        Some(incoming) => evolve(&table.uri, &current, incoming)?,
        None => None,
    };
    let target_kernel = merged.as_ref().unwrap_or(&current);
    let target: Schema = target_kernel
        .try_into_arrow()
        .map_err(|e| table.delta_error(e.into()))?;
    let target = Arc::new(target);
    let mut writer = match &merged {
        // The writer of a table takes the table's schema; with new columns it must take ours.
        Some(_) => RecordBatchWriter::try_new(
            table.inner.table_url().as_str(),
            target.clone(),
            Some(vec![column.to_owned()]),
            Some(storage_options.clone()),
        ),
        None => RecordBatchWriter::for_table(&table.inner),
    }
    .map_err(|e| table.delta_error(e))?
    .with_target_file_size(TARGET_FILE_SIZE);
    for batch in batches {
        let batch = with_partition_column(batch, column, ds)
            .and_then(|b| conform(&b, &target))
            .map_err(|reason| DeltaError::Schema {
                uri: table.uri.clone(),
                reason,
            })?;
        writer
            .write(batch)
            .await
            .map_err(|e| table.delta_error(e))?;
    }
    let mut adds = writer.flush().await.map_err(|e| table.delta_error(e))?;
    if adds.is_empty() {
        adds.push(empty_file(&table.uri, &table.inner.object_store(), &target, column, ds).await?);
    }
    let metadata = match merged {
        Some(schema) => Some(
            state
                .metadata()
                .clone()
                .with_schema(&schema)
                .map_err(|e| table.delta_error(e.into()))?,
        ),
        None => None,
    };
    Ok(Written { adds, metadata })
}

/// Creates the table with partition `ds` as its first commit (version 0: protocol, metadata and
/// the files together). `None` when another writer created the table first.
async fn create_with_partition(
    uri: &str,
    storage_options: &HashMap<String, String>,
    column: &str,
    ds: &str,
    batches: &[RecordBatch],
) -> Result<Option<WriteInfo>> {
    let Some(first) = batches.first() else {
        return Err(DeltaError::Schema {
            uri: uri.to_owned(),
            reason: "cannot create a table from no batches (no schema)".to_owned(),
        });
    };
    let delta = |source| DeltaError::Delta {
        uri: uri.to_owned(),
        source,
    };
    let mut fields = Vec::new();
    for field in first.schema().fields() {
        fields.push(kernel_field(uri, field)?);
    }
    fields.push(StructField::new(column, DeltaType::STRING, true));
    let kernel_schema = StructType::try_new(fields).map_err(|e| delta(e.into()))?;
    let target: Schema = (&kernel_schema)
        .try_into_arrow()
        .map_err(|e| delta(e.into()))?;
    let target = Arc::new(target);
    let url = table_url(uri, true)?.ok_or_else(|| DeltaError::InvalidLocation {
        uri: uri.to_owned(),
        reason: "cannot create it".to_owned(),
    })?;
    let table = builder(uri, url.clone(), storage_options)?;
    let mut writer = RecordBatchWriter::try_new(
        url.as_str(),
        target.clone(),
        Some(vec![column.to_owned()]),
        Some(storage_options.clone()),
    )
    .map_err(delta)?
    .with_target_file_size(TARGET_FILE_SIZE);
    for batch in batches {
        let batch = with_partition_column(batch, column, ds)
            .and_then(|b| conform(&b, &target))
            .map_err(|reason| DeltaError::Schema {
                uri: uri.to_owned(),
                reason,
            })?;
        writer.write(batch).await.map_err(delta)?;
    }
    let mut adds = writer.flush().await.map_err(delta)?;
    if adds.is_empty() {
        adds.push(empty_file(uri, &table.object_store(), &target, column, ds).await?);
    }
    let rows = adds.iter().map(add_rows).sum();
    let files = adds.len();
    let log_store: LogStoreRef = table.log_store();
    let created = table
        .create()
        .with_columns(kernel_schema.fields().cloned())
        .with_partition_columns([column])
        .with_save_mode(SaveMode::ErrorIfExists)
        .with_actions(adds.into_iter().map(Action::Add))
        .await;
    match created {
        Ok(table) => Ok(Some(WriteInfo {
            version: table.version().unwrap_or(0),
            rows,
            files,
            attempts: 1,
            checkpoint_error: None,
        })),
        // Another writer created the table first (we saw none, or lost version 0): write into
        // it; this round's files stay behind, unreferenced, for vacuum.
        Err(e) if log_store.is_delta_table_location().await.unwrap_or(false) => {
            let _ = e;
            Ok(None)
        }
        Err(e) => Err(delta(e)),
    }
}

/// A Parquet file with no rows for partition `ds`, and its add action: deltalake's writer
/// writes no file for no rows, and a partition is committed only while it has a file, so
/// without one a job whose output is empty for a day would never satisfy the sensors waiting
/// for it. Other readers see the partition with 0 rows.
async fn empty_file(
    uri: &str,
    store: &Arc<dyn ObjectStore>,
    table_schema: &SchemaRef,
    column: &str,
    ds: &str,
) -> Result<Add> {
    let schema_error = |reason: String| DeltaError::Schema {
        uri: uri.to_owned(),
        reason,
    };
    let fields: Vec<Arc<Field>> = table_schema
        .fields()
        .iter()
        .filter(|f| f.name() != column)
        .cloned()
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema.clone(), Some(properties))
        .map_err(|e| schema_error(e.to_string()))?;
    writer
        .write(&RecordBatch::new_empty(schema))
        .map_err(|e| schema_error(e.to_string()))?;
    writer.close().map_err(|e| schema_error(e.to_string()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!(
        "{column}={ds}/part-00000-empty-{:x}-{:x}-c000.snappy.parquet",
        now.as_nanos(),
        std::process::id()
    );
    let size = bytes.len() as i64;
    store
        .put(&Path::from(name.as_str()), bytes.into())
        .await
        .map_err(|source| DeltaError::Delta {
            uri: uri.to_owned(),
            source: DeltaTableError::ObjectStore { source },
        })?;
    Ok(Add {
        path: name,
        partition_values: HashMap::from([(column.to_owned(), Some(ds.to_owned()))]),
        size,
        modification_time: i64::try_from(now.as_millis()).unwrap_or(i64::MAX),
        data_change: true,
        stats: Some(r#"{"numRecords":0,"minValues":{},"maxValues":{},"nullCount":{}}"#.to_owned()),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    })
}

fn kernel_field(uri: &str, field: &Field) -> Result<StructField> {
    let data_type: DeltaType =
        field
            .data_type()
            .try_into_kernel()
            .map_err(|e| DeltaError::Schema {
                uri: uri.to_owned(),
                reason: format!(
                    "column {} of type {} has no Delta type: {e}",
                    field.name(),
                    field.data_type()
                ),
            })?;
    Ok(StructField::new(field.name(), data_type, true))
}

/// The table's schema widened by the new columns of `incoming` (nullable, appended in their
/// order); `None` when it has none. A column present in both must have the same Delta type.
fn evolve(uri: &str, current: &StructType, incoming: &SchemaRef) -> Result<Option<StructType>> {
    let mut added = Vec::new();
    for field in incoming.fields() {
        let wanted = kernel_field(uri, field)?;
        match current.field(field.name()) {
            Some(existing) if existing.data_type() == wanted.data_type() => {}
            Some(existing) => {
                return Err(DeltaError::Schema {
                    uri: uri.to_owned(),
                    reason: format!(
                        "column {} is {} in the table, {} in the batches: a column's type never changes",
                        field.name(),
                        existing.data_type(),
                        wanted.data_type()
                    ),
                });
            }
            None => added.push(wanted),
        }
    }
    if added.is_empty() {
        return Ok(None);
    }
    let fields = current.fields().cloned().chain(added);
    StructType::try_new(fields)
        .map(Some)
        .map_err(|e| DeltaError::Schema {
            uri: uri.to_owned(),
            reason: e.to_string(),
        })
}

/// The batch with the partition column appended.
fn with_partition_column(
    batch: &RecordBatch,
    column: &str,
    ds: &str,
) -> std::result::Result<RecordBatch, String> {
    let values: ArrayRef = Arc::new(StringArray::from(vec![ds; batch.num_rows()]));
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(column, DataType::Utf8, true)));
    let mut columns = batch.columns().to_vec();
    columns.push(values);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

const STRICT_CAST: arrow::compute::CastOptions<'static> = arrow::compute::CastOptions {
    safe: false,
    format_options: arrow::util::display::FormatOptions::new(),
};

/// `batch` in `schema`: columns by name, cast where the types differ (a file's physical types,
/// such as a writer's `LargeUtf8`, or nanosecond timestamps), columns it lacks as nulls.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> std::result::Result<RecordBatch, String> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => c.clone(),
            // Not `cast`: it turns values that do not fit (a u32 above i32::MAX) into nulls.
            Some(c) => arrow::compute::cast_with_options(c, field.data_type(), &STRICT_CAST)
                .map_err(|e| {
                    format!(
                        "column {}: cannot cast {} to {}: {e}",
                        field.name(),
                        c.data_type(),
                        field.data_type()
                    )
                })?,
            None if field.is_nullable() => new_null_array(field.data_type(), batch.num_rows()),
            None => {
                return Err(format!(
                    "column {} is missing and not nullable",
                    field.name()
                ));
            }
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(format!(
                "column {} has nulls, and is not nullable",
                field.name()
            ));
        }
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

fn check_ds(ds: &str) -> Result<()> {
    let b = ds.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && (1..=12).contains(&ds[5..7].parse::<u8>().unwrap_or(0))
        && (1..=31).contains(&ds[8..10].parse::<u8>().unwrap_or(0));
    if ok {
        Ok(())
    } else {
        Err(DeltaError::InvalidPartitionValue {
            value: ds.to_owned(),
        })
    }
}

/// A Delta table of the warehouse: the functions above, with the warehouse's types and errors.
///
/// Each call, read or write, first brings the log it read last up to date (one listing, plus the
/// commits since), so a reader sees every commit made before it asked, as it does with
/// chronoflow's manifests.
pub(crate) struct DeltaLakeTable {
    name: crate::table_name::TableName,
    uri: String,
    /// The log as last read, brought up to date (the commits since, only) before each use:
    /// replaying the whole log for every partition read cost a backfill 75 of its 83 seconds.
    latest: tokio::sync::Mutex<Option<Table>>,
}

/// The storage options of every table: object_store's S3 keys come from the `AWS_*` environment
/// (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, …), as for the warehouse itself.
fn no_options() -> &'static HashMap<String, String> {
    static NONE: std::sync::OnceLock<HashMap<String, String>> = std::sync::OnceLock::new();
    NONE.get_or_init(HashMap::new)
}

impl DeltaLakeTable {
    pub(crate) fn new(name: crate::table_name::TableName, location: super::Location) -> Self {
        DeltaLakeTable {
            name,
            uri: location.uri,
            latest: tokio::sync::Mutex::default(),
        }
    }

    fn error(&self, e: DeltaError) -> crate::error::EngineError {
        crate::error::EngineError::Corrupt {
            table: self.name.to_string(),
            reason: e.to_string(),
        }
    }

    /// The table at its latest version (`None`: there is none), held while the caller reads it.
    async fn open(&self) -> crate::error::Result<Option<tokio::sync::MappedMutexGuard<'_, Table>>> {
        let mut latest = self.latest.lock().await;
        match latest.as_mut() {
            Some(table) => {
                let updated = table.inner.update_state().await;
                if let Err(e) = updated {
                    let e = self.error(table.delta_error(e));
                    // Read the whole log again next time rather than trust a half-updated one.
                    *latest = None;
                    return Err(e);
                }
            }
            None => {
                *latest = open(&self.uri, no_options())
                    .await
                    .map_err(|e| self.error(e))?;
            }
        }
        Ok(tokio::sync::MutexGuard::try_map(latest, Option::as_mut).ok())
    }

    async fn require(&self) -> crate::error::Result<tokio::sync::MappedMutexGuard<'_, Table>> {
        self.open()
            .await?
            .ok_or_else(|| crate::error::EngineError::TableNotFound {
                table: self.name.to_string(),
                warehouse: self.uri.clone(),
            })
    }

    pub(crate) async fn exists(&self) -> crate::error::Result<bool> {
        // A table once read stays a table (the warehouse never deletes one).
        if self.latest.lock().await.is_some() {
            return Ok(true);
        }
        exists(&self.uri, no_options())
            .await
            .map_err(|e| self.error(e))
    }

    /// The table's one partition column (chronoflow tables have exactly one).
    fn column(&self, table: &Table) -> crate::error::Result<String> {
        match table
            .partition_columns()
            .map_err(|e| self.error(e))?
            .as_slice()
        {
            [column] => Ok(column.clone()),
            other => Err(crate::error::EngineError::Input {
                file: self.name.to_string(),
                message: format!(
                    "Delta table {} is partitioned by {other:?}: chronoflow reads tables partitioned by one date column",
                    self.uri
                ),
            }),
        }
    }

    pub(crate) async fn meta(&self) -> crate::error::Result<Option<super::TableMeta>> {
        let Some(table) = self.open().await? else {
            return Ok(None);
        };
        let schema = schema(&table).await.map_err(|e| self.error(e))?;
        Ok(Some(super::TableMeta {
            partition_column: self.column(&table)?,
            columns: Some(crate::schema::to_specs(&schema)),
        }))
    }

    pub(crate) async fn partitions(
        &self,
    ) -> crate::error::Result<Vec<chronoflow_config::PartitionDate>> {
        let table = self.require().await?;
        let column = self.column(&table)?;
        let values = partitions(&table, &column)
            .await
            .map_err(|e| self.error(e))?;
        values
            .iter()
            .map(|v| {
                chronoflow_config::PartitionDate::parse(v).map_err(|_| {
                    crate::error::EngineError::Corrupt {
                        table: self.name.to_string(),
                        reason: format!(
                            "{}: partition {column}={v:?} is not a yyyy-MM-dd date",
                            self.uri
                        ),
                    }
                })
            })
            .collect()
    }

    fn not_found(
        &self,
        column: &str,
        ds: chronoflow_config::PartitionDate,
    ) -> crate::error::EngineError {
        crate::error::EngineError::PartitionNotFound {
            table: self.name.to_string(),
            column: column.to_owned(),
            ds: ds.to_string(),
        }
    }

    pub(crate) async fn partition_info(
        &self,
        ds: chronoflow_config::PartitionDate,
    ) -> crate::error::Result<(u64, usize)> {
        let table = self.require().await?;
        let column = self.column(&table)?;
        match partition_info(&table, &column, &ds.to_string())
            .await
            .map_err(|e| self.error(e))?
        {
            Some(info) => Ok((info.rows, info.files)),
            None => Err(self.not_found(&column, ds)),
        }
    }

    pub(crate) async fn read_partition(
        &self,
        ds: chronoflow_config::PartitionDate,
    ) -> crate::error::Result<Vec<RecordBatch>> {
        let table = self.require().await?;
        let column = self.column(&table)?;
        let text = ds.to_string();
        if table
            .partition_files(&column, &text)
            .map_err(|e| self.error(e))?
            .is_empty()
        {
            return Err(self.not_found(&column, ds));
        }
        read_partition(&table, &column, &text)
            .await
            .map_err(|e| self.error(e))
    }

    pub(crate) async fn schema(&self) -> crate::error::Result<Option<SchemaRef>> {
        let table = self.require().await?;
        let schema = schema(&table).await.map_err(|e| self.error(e))?;
        Ok((!schema.fields().is_empty()).then_some(schema))
    }

    /// Replaces (or, `append`, adds to) partition `ds` in one commit, creating the table.
    pub(crate) async fn write_partition(
        &self,
        column: &str,
        ds: chronoflow_config::PartitionDate,
        batches: &[RecordBatch],
        append: bool,
    ) -> crate::error::Result<(u64, usize)> {
        let text = ds.to_string();
        // Batches of one write may differ in schema (a conformed first batch, raw later ones):
        // deltalake's writer takes one schema, so they are concatenated first.
        // The writer takes one schema: later batches are given the first one's (by name).
        let batches: Vec<RecordBatch> = match batches.first() {
            None => Vec::new(),
            Some(first) => {
                let schema = first.schema();
                batches
                    .iter()
                    .map(|b| conform(b, &schema))
                    .collect::<std::result::Result<_, String>>()
                    .map_err(|reason| crate::error::EngineError::Input {
                        file: self.name.to_string(),
                        message: format!("partition {column}={ds}: {reason}"),
                    })?
            }
        };
        let change = if append {
            Change::Append
        } else {
            Change::Replace
        };
        // The log as last read, taken out while writing (readers meanwhile open their own) and
        // put back brought up to date to before this commit, so the next write or read of this
        // table reads only the commits since.
        let mut latest = self.latest.lock().await.take();
        let changed = change_partition(
            &mut latest,
            &self.uri,
            no_options(),
            column,
            &text,
            &batches,
            change,
        )
        .await;
        if changed.is_ok() && latest.is_some() {
            let mut slot = self.latest.lock().await;
            if slot.is_none() {
                *slot = latest;
            }
        }
        let info = changed.map_err(|e| self.error(e))?;
        if let Some(error) = info.checkpoint_error {
            warn_checkpoint_failed(&self.name, &error);
        }
        Ok((info.rows, info.files))
    }

    /// The table's metadata; a table not created yet is created by its first write.
    pub(crate) async fn ensure_table(
        &self,
        column: &str,
    ) -> crate::error::Result<super::TableMeta> {
        match self.meta().await? {
            Some(meta) if meta.partition_column == column => Ok(meta),
            Some(meta) => Err(super::foreign::partitioned_by(
                &self.name,
                &meta.partition_column,
                column,
            )),
            None => Ok(super::TableMeta {
                partition_column: column.to_owned(),
                columns: None,
            }),
        }
    }

    pub(crate) async fn drop_partition(
        &self,
        ds: chronoflow_config::PartitionDate,
    ) -> crate::error::Result<()> {
        let table = self.require().await?;
        let column = self.column(&table)?;
        drop_partition(&self.uri, no_options(), &column, &ds.to_string())
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}

/// A checkpoint that failed after its commit landed: the table is fine (readers replay more
/// JSON until the next one), so it is reported, not returned. The engine has no logger; stderr
/// reaches the job's log.
fn warn_checkpoint_failed(table: &crate::table_name::TableName, error: &str) {
    eprintln!("warning: table {table}: the Delta checkpoint after a commit failed: {error}");
}
