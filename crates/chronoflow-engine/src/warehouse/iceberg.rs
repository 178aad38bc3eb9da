//! Apache Iceberg tables (format versions 1 and 2), read-only, without the `iceberg` crate
//! (it pulls another arrow/parquet major): catalog → metadata JSON → manifest list (Avro) →
//! manifests (Avro) → Parquet data files. See docs/design/iceberg-read.md.
//!
//! A partition is a date that live data files of the current snapshot have as their value of
//! the table's date partition field: identity on a `yyyy-MM-dd` string or a date column, or
//! `day(...)`. Each call reads the catalog's pointer once and uses that one snapshot
//! throughout. Manifests are immutable, so they are cached by path: listing partitions again
//! reads only the manifests committed since.
//!
//! Columns are matched by field id (renames and added columns read right), then by the table's
//! name mapping, then by name. Merge-on-read delete files are not applied: a partition that has
//! any is refused (a delete file in a spec without the date field refuses the whole table).

mod catalog;
mod manifests;
mod metadata;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use chronoflow_config::PartitionDate;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub(crate) use catalog::Catalog;
use catalog::Pointer;
use manifests::{Entry, ManifestFile};
use metadata::{DateField, TableMetadata};

use super::{MANIFEST_READS, TableMeta};
use crate::error::{EngineError, Result};
use crate::schema;
use crate::table_name::TableName;

/// Parsed manifests kept per table; beyond this the cache starts over (a year of daily
/// appends is 365).
const CACHED_MANIFESTS: usize = 4096;
/// Data files read at once.
const FILE_READS: usize = 4;

pub(crate) struct IcebergTable {
    name: TableName,
    catalog: Arc<Catalog>,
    namespace: Vec<String>,
    table: String,
    column: Option<String>,
    /// The metadata last parsed, by its location.
    metadata: Mutex<Option<(String, Arc<TableMetadata>)>>,
    manifest_lists: Mutex<HashMap<String, Arc<Vec<ManifestFile>>>>,
    manifests: Mutex<HashMap<String, Arc<Vec<Entry>>>>,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

/// One snapshot of the table, as one call uses it.
struct Loaded {
    metadata: Arc<TableMetadata>,
    field: DateField,
    schema: SchemaRef,
    /// The field id of each column of `schema`.
    ids: Vec<i32>,
}

/// The files of one partition.
#[derive(Default)]
struct Files {
    data: Vec<Entry>,
    position_deletes: usize,
    equality_deletes: usize,
}

impl IcebergTable {
    pub(crate) fn new(
        name: TableName,
        catalog: Arc<Catalog>,
        (namespace, table): (Vec<String>, String),
        column: Option<String>,
    ) -> IcebergTable {
        IcebergTable {
            name,
            catalog,
            namespace,
            table,
            column,
            metadata: Mutex::default(),
            manifest_lists: Mutex::default(),
            manifests: Mutex::default(),
            stores: Mutex::default(),
        }
    }

    pub(crate) fn name(&self) -> &TableName {
        &self.name
    }

    fn identifier(&self) -> String {
        format!("{}.{}", self.namespace.join("."), self.table)
    }

    fn catalog_error(&self, reason: String) -> EngineError {
        EngineError::Input {
            file: self.catalog.describe(),
            message: format!("table {} ({}): {reason}", self.name, self.identifier()),
        }
    }

    fn unsupported(&self, reason: String) -> EngineError {
        EngineError::Input {
            file: self.name.to_string(),
            message: format!("Iceberg table {}: {reason}", self.identifier()),
        }
    }

    fn corrupt(&self, reason: String) -> EngineError {
        EngineError::Corrupt {
            table: self.name.to_string(),
            reason,
        }
    }

    pub(crate) async fn exists(&self) -> Result<bool> {
        Ok(self
            .catalog
            .load(&self.namespace, &self.table)
            .await
            .map_err(|e| self.catalog_error(e))?
            .is_some())
    }

    /// The current snapshot's metadata, `None` when the catalog has no such table.
    async fn load(&self) -> Result<Option<Loaded>> {
        let pointer = self
            .catalog
            .load(&self.namespace, &self.table)
            .await
            .map_err(|e| self.catalog_error(e))?;
        let metadata = match pointer {
            None => return Ok(None),
            Some(Pointer::File(location)) => {
                if let Some(m) = self.cached_metadata(&location) {
                    m
                } else {
                    if location.ends_with(".gz") || location.contains(".gz.") {
                        return Err(self.unsupported(format!(
                            "{location} is gzip-compressed: chronoflow reads plain metadata JSON"
                        )));
                    }
                    let bytes = self.get(&location).await?;
                    let parsed = metadata::parse(&bytes)
                        .map_err(|e| self.unsupported(format!("{location} {e}")))?;
                    self.keep_metadata(location, parsed)
                }
            }
            Some(Pointer::Inline { location, metadata }) => {
                match location.as_deref().and_then(|l| self.cached_metadata(l)) {
                    Some(m) => m,
                    None => {
                        let parsed = metadata::parse_value(metadata)
                            .map_err(|e| self.unsupported(format!("the catalog's metadata {e}")))?;
                        match location {
                            Some(l) => self.keep_metadata(l, parsed),
                            None => Arc::new(parsed),
                        }
                    }
                }
            }
        };
        let field = metadata
            .date_field(self.column.as_deref())
            .map_err(|e| self.unsupported(e))?;
        let fields = metadata.fields().map_err(|e| self.corrupt(e))?;
        let (schema, ids) =
            metadata::arrow_schema(fields, field.dropped).map_err(|e| self.unsupported(e))?;
        Ok(Some(Loaded {
            metadata,
            field,
            schema,
            ids,
        }))
    }

    fn cached_metadata(&self, location: &str) -> Option<Arc<TableMetadata>> {
        match &*self.metadata.lock().unwrap_or_else(PoisonError::into_inner) {
            Some((l, m)) if l == location => Some(m.clone()),
            _ => None,
        }
    }

    fn keep_metadata(&self, location: String, parsed: TableMetadata) -> Arc<TableMetadata> {
        let parsed = Arc::new(parsed);
        *self.metadata.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((location, parsed.clone()));
        parsed
    }

    async fn require(&self) -> Result<Loaded> {
        self.load()
            .await?
            .ok_or_else(|| EngineError::TableNotFound {
                table: self.name.to_string(),
                warehouse: format!("{} as {}", self.catalog.describe(), self.identifier()),
            })
    }

    pub(crate) async fn meta(&self) -> Result<Option<TableMeta>> {
        Ok(self.load().await?.map(|loaded| TableMeta {
            partition_column: loaded.field.name,
            columns: Some(schema::to_specs(&loaded.schema)),
        }))
    }

    pub(crate) async fn schema(&self) -> Result<Option<SchemaRef>> {
        Ok(self.load().await?.map(|l| l.schema))
    }

    /// The store holding `uri` and the object's path in it (one store per bucket).
    fn store(&self, uri: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
        let bad = |reason: String| self.corrupt(format!("{uri}: {reason}"));
        let mut url = url::Url::parse(uri).map_err(|e| bad(e.to_string()))?;
        if url.scheme() == "s3a" || url.scheme() == "s3n" {
            url = url::Url::parse(&format!("s3{}", &uri[url.scheme().len()..]))
                .map_err(|e| bad(e.to_string()))?;
        }
        let path = Path::from_url_path(url.path()).map_err(|e| bad(e.to_string()))?;
        let key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = stores.get(&key) {
            return Ok((store.clone(), path));
        }
        let store: Arc<dyn ObjectStore> = if url.scheme() == "file" {
            Arc::new(object_store::local::LocalFileSystem::new())
        } else {
            // Credentials from the environment, as the warehouse's own s3:// and gs:// stores.
            let options = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
            let (store, _) = object_store::parse_url_opts(&url, options).map_err(|e| {
                bad(format!(
                    "{e} (s3:// and gs:// need a chronoflow built with the `cloud` feature)"
                ))
            })?;
            Arc::from(store)
        };
        stores.insert(key, store.clone());
        Ok((store, path))
    }

    async fn get(&self, uri: &str) -> Result<Bytes> {
        let (store, path) = self.store(uri)?;
        // The store's message names the object only: a refused or missing read must also say
        // which table it was for (several tables may share a bucket).
        let err = |source| EngineError::Store {
            path: format!("Iceberg table {} ({}): {uri}", self.name, self.identifier()),
            source,
        };
        store
            .get(&path)
            .await
            .map_err(err)?
            .bytes()
            .await
            .map_err(err)
    }

    async fn manifest_list(&self, loaded: &Loaded) -> Result<Arc<Vec<ManifestFile>>> {
        let snapshot = loaded
            .metadata
            .current_snapshot()
            .map_err(|e| self.unsupported(e))?;
        let Some(path) = snapshot.and_then(|s| s.manifest_list.clone()) else {
            return Ok(Arc::default());
        };
        if let Some(list) = self
            .manifest_lists
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&path)
        {
            return Ok(list.clone());
        }
        let bytes = self.get(&path).await?;
        let list = Arc::new(
            manifests::read_manifest_list(&bytes)
                .map_err(|e| self.corrupt(format!("manifest list {path}: {e}")))?,
        );
        let mut lists = self
            .manifest_lists
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the current snapshot's list is of use again.
        lists.clear();
        lists.insert(path, list.clone());
        Ok(list)
    }

    async fn manifest(&self, path: String) -> Result<Arc<Vec<Entry>>> {
        if let Some(entries) = self
            .manifests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&path)
        {
            return Ok(entries.clone());
        }
        let bytes = self.get(&path).await?;
        let entries = Arc::new(
            manifests::read_manifest(&bytes)
                .map_err(|e| self.corrupt(format!("manifest {path}: {e}")))?,
        );
        let mut cache = self
            .manifests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHED_MANIFESTS {
            cache.clear();
        }
        cache.insert(path, entries.clone());
        Ok(entries)
    }

    /// The position of the date field in the spec a manifest was written with.
    fn position(&self, loaded: &Loaded, manifest: &ManifestFile) -> Result<usize> {
        loaded
            .metadata
            .position_in(manifest.spec_id, &loaded.field)
            .ok_or_else(|| {
                let what = if manifest.content == 0 {
                    "data"
                } else {
                    "delete"
                };
                self.unsupported(format!(
                    "{what} files were written under partition spec {}, which has no date \
                     partition field {:?}: chronoflow cannot place them in a partition \
                     (manifest {})",
                    manifest.spec_id, loaded.field.name, manifest.path
                ))
            })
    }

    pub(crate) async fn partitions(&self) -> Result<Vec<PartitionDate>> {
        let Some(loaded) = self.load().await? else {
            return Ok(Vec::new());
        };
        let list = self.manifest_list(&loaded).await?;
        let mut dates = BTreeSet::new();
        let mut to_read = Vec::new();
        for m in list.iter().filter(|m| m.content == 0) {
            if m.live_files == Some(0) {
                continue;
            }
            let position = self.position(&loaded, m)?;
            match manifests::single_date(m, position, loaded.field.encoding) {
                Some(ds) => {
                    dates.insert(ds);
                }
                None => to_read.push((m.path.clone(), position)),
            }
        }
        let read: Vec<(Arc<Vec<Entry>>, usize)> = futures::stream::iter(to_read)
            .map(|(path, position)| async move { Ok((self.manifest(path).await?, position)) })
            .buffered(MANIFEST_READS)
            .try_collect::<Vec<_>>()
            .await?;
        for (entries, position) in read {
            dates.extend(
                entries
                    .iter()
                    .filter(|e| e.content == 0)
                    .filter_map(|e| e.partition.get(position).and_then(manifests::value_date)),
            );
        }
        Ok(dates.into_iter().collect())
    }

    /// The live files of partition `ds`, from the manifests its bounds do not rule out.
    async fn files(&self, loaded: &Loaded, ds: PartitionDate) -> Result<Files> {
        let list = self.manifest_list(loaded).await?;
        let mut to_read = Vec::new();
        for m in list.iter() {
            if m.live_files == Some(0) {
                continue;
            }
            let position = self.position(loaded, m)?;
            let summary = m.partitions.as_ref().and_then(|p| p.get(position));
            if manifests::may_contain(summary, loaded.field.encoding, ds) {
                to_read.push((m.path.clone(), position));
            }
        }
        let read: Vec<(Arc<Vec<Entry>>, usize)> = futures::stream::iter(to_read)
            .map(|(path, position)| async move { Ok((self.manifest(path).await?, position)) })
            .buffered(MANIFEST_READS)
            .try_collect::<Vec<_>>()
            .await?;
        let mut files = Files::default();
        for (entries, position) in read {
            for e in entries.iter() {
                if e.partition.get(position).and_then(manifests::value_date) != Some(ds) {
                    continue;
                }
                match e.content {
                    0 => files.data.push(e.clone()),
                    1 => files.position_deletes += 1,
                    _ => files.equality_deletes += 1,
                }
            }
        }
        files.data.sort_by(|a, b| a.path.cmp(&b.path));
        if files.data.is_empty() {
            return Err(EngineError::PartitionNotFound {
                table: self.name.to_string(),
                column: loaded.field.name.clone(),
                ds: ds.to_string(),
            });
        }
        if files.position_deletes + files.equality_deletes > 0 {
            let mut kinds = Vec::new();
            if files.position_deletes > 0 {
                kinds.push(format!(
                    "{} position delete file(s)",
                    files.position_deletes
                ));
            }
            if files.equality_deletes > 0 {
                kinds.push(format!(
                    "{} equality delete file(s)",
                    files.equality_deletes
                ));
            }
            return Err(self.unsupported(format!(
                "partition {}={ds} has {} (merge-on-read): chronoflow does not apply Iceberg \
                 deletes; compact the table (Spark: CALL system.rewrite_data_files or \
                 rewrite_position_delete_files) or read another day",
                loaded.field.name,
                kinds.join(" and ")
            )));
        }
        if let Some(e) = files
            .data
            .iter()
            .find(|e| !e.format.eq_ignore_ascii_case("parquet"))
        {
            return Err(self.unsupported(format!(
                "{} is a {} file: chronoflow reads Parquet data files",
                e.path, e.format
            )));
        }
        Ok(files)
    }

    /// Rows (from the manifests: no data file is opened) and files of partition `ds`.
    pub(crate) async fn partition_info(&self, ds: PartitionDate) -> Result<(u64, usize)> {
        let loaded = self.require().await?;
        let files = self.files(&loaded, ds).await?;
        let rows = files
            .data
            .iter()
            .map(|e| u64::try_from(e.record_count).unwrap_or(0))
            .sum();
        Ok((rows, files.data.len()))
    }

    /// Partition `ds` in the current schema, without the identity partition's source column.
    pub(crate) async fn read_partition(&self, ds: PartitionDate) -> Result<Vec<RecordBatch>> {
        let loaded = self.require().await?;
        let files = self.files(&loaded, ds).await?;
        let mapping = loaded
            .metadata
            .name_mapping()
            .map_err(|e| self.unsupported(e))?;
        let loaded = &loaded;
        let mapping = &mapping;
        let per_file: Vec<Vec<RecordBatch>> = futures::stream::iter(files.data)
            .map(|entry| async move {
                let bytes = self.get(&entry.path).await?;
                let batches = read_data_file(bytes, &entry.path, loaded, mapping)
                    .map_err(|reason| self.corrupt(reason))?;
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                if i64::try_from(rows).ok() != Some(entry.record_count) {
                    return Err(self.corrupt(format!(
                        "{} has {rows} rows, its manifest says {}",
                        entry.path, entry.record_count
                    )));
                }
                Ok(batches)
            })
            .buffered(FILE_READS)
            .try_collect()
            .await?;
        Ok(per_file.into_iter().flatten().collect())
    }

    /// The error for every write: the table belongs to the tool that writes it.
    pub(crate) fn read_only(&self) -> EngineError {
        EngineError::Input {
            file: self.name.to_string(),
            message: format!(
                "is an Iceberg table ({} in {}): chronoflow reads it but never writes into it",
                self.identifier(),
                self.catalog.describe()
            ),
        }
    }
}

/// One data file's rows in the table's current schema, columns matched by field id.
fn read_data_file(
    bytes: Bytes,
    path: &str,
    loaded: &Loaded,
    mapping: &HashMap<String, i32>,
) -> std::result::Result<Vec<RecordBatch>, String> {
    // The parquet crate can panic on a damaged file: an error naming the file instead.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode(bytes, path, loaded, mapping)
    }))
    .unwrap_or_else(|panic| {
        Err(format!(
            "{path}: the file is damaged (the decoder failed: {})",
            crate::error::panic_message(panic.as_ref())
        ))
    })
}

fn decode(
    bytes: Bytes,
    path: &str,
    loaded: &Loaded,
    mapping: &HashMap<String, i32>,
) -> std::result::Result<Vec<RecordBatch>, String> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| format!("{path}: {e}"))?;
    // Ids from the Parquet schema itself: arrow-rs prefers the ARROW:schema hint's metadata,
    // which Java writers do not write.
    let roots = builder.parquet_schema().root_schema().get_fields();
    let mut ids: Vec<Option<i32>> = roots
        .iter()
        .map(|f| {
            let info = f.get_basic_info();
            info.has_id().then(|| info.id())
        })
        .collect();
    if ids.iter().all(Option::is_none) {
        // Files added without ids (add_files, Hive migration): the name mapping, else names.
        let by_name: HashMap<&str, i32> = loaded
            .schema
            .fields()
            .iter()
            .zip(&loaded.ids)
            .map(|(f, id)| (f.name().as_str(), *id))
            .collect();
        ids = roots
            .iter()
            .map(|f| {
                mapping
                    .get(f.name())
                    .copied()
                    .or_else(|| by_name.get(f.name()).copied())
            })
            .collect();
    }
    let picks: Vec<Option<usize>> = loaded
        .ids
        .iter()
        .map(|id| ids.iter().position(|i| *i == Some(*id)))
        .collect();
    let mut indices: Vec<usize> = picks.iter().flatten().copied().collect();
    indices.sort_unstable();
    indices.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(|e| format!("{path}: {e}"))?;
    let schema = &loaded.schema;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format!("{path}: {e}"))?;
        let columns = schema
            .fields()
            .iter()
            .zip(&picks)
            .map(|(field, pick)| {
                let Some(root) = pick else {
                    // A column added after the file was written.
                    return Ok(new_null_array(field.data_type(), batch.num_rows()));
                };
                let position = indices
                    .binary_search(root)
                    .map_err(|_| format!("{path}: column {:?} was not read", field.name()))?;
                let column = batch.column(position);
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    // Promotions (int→long, float→double, decimal precision) and the string
                    // and timestamp variants Parquet hints may give.
                    arrow::compute::cast(column, field.data_type()).map_err(|e| {
                        format!(
                            "{path}: column {:?} is {} in the file, {} in the table: {e}",
                            field.name(),
                            column.data_type(),
                            field.data_type()
                        )
                    })
                }
            })
            .collect::<std::result::Result<Vec<ArrayRef>, String>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        out.push(
            RecordBatch::try_new_with_options(schema.clone(), columns, &options)
                .map_err(|e| format!("{path}: {e}"))?,
        );
    }
    Ok(out)
}
