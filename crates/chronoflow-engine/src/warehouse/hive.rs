//! Hive-style Parquet written by others (Spark, Hive, Trino): `<column>=<yyyy-MM-dd>/` folders of
//! Parquet files, with no manifest. Read-only: chronoflow never writes into another tool's
//! table.
//!
//! Without a manifest, the rule of [`Visibility`] says when a partition is complete: by
//! default once its folder holds `_SUCCESS`, which Spark writes after every file is in place.
//! Files whose names start with `_` or `.` are never data (Spark's `_temporary/`, `.crc`
//! checksums, markers), and neither is anything below the partition folder's own files.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chronoflow_config::PartitionDate;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::formats::Visibility;
use super::{Location, MANIFEST_READS, TableMeta, file_num_rows, file_schema, read_parquet_bytes};
use crate::error::{EngineError, Result};
use crate::schema;
use crate::table_name::TableName;

/// The partition column of a table whose folders name none (it has no partitions yet).
const DEFAULT_COLUMN: &str = "ds";
pub(super) const SUCCESS: &str = "_SUCCESS";

pub(crate) struct HiveTable {
    name: TableName,
    location: Location,
    column: Option<String>,
    visible: Visibility,
    /// The schema last merged, and the first files it was merged from: reading every partition
    /// of a long table must not read every footer each time.
    schema: Mutex<Option<(Vec<Path>, Option<SchemaRef>)>>,
}

/// What the listing found in one partition folder.
#[derive(Default)]
struct Folder {
    success: bool,
    /// Data files, by name (sorted: the order rows are read in).
    files: Vec<Path>,
}

/// The table's visible partitions, and its partition column.
struct Listing {
    column: String,
    partitions: BTreeMap<PartitionDate, Folder>,
}

impl HiveTable {
    pub(crate) fn new(
        name: TableName,
        location: Location,
        column: Option<String>,
        visible: Visibility,
    ) -> HiveTable {
        HiveTable {
            name,
            location,
            column,
            visible,
            schema: Mutex::default(),
        }
    }

    pub(crate) fn name(&self) -> &TableName {
        &self.name
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.location.store
    }

    /// Whether the folder holds any partition folder (visible or not): the table exists.
    pub(crate) async fn exists(&self) -> Result<bool> {
        let root = &self.location.root;
        let listed = self
            .store()
            .list_with_delimiter(Some(root))
            .await
            .map_err(store_error(root))?;
        Ok(listed.common_prefixes.iter().any(|p| {
            p.filename()
                .and_then(partition_folder)
                .is_some_and(|(column, _)| self.column.as_deref().is_none_or(|c| c == column))
        }))
    }

    /// One listing of the whole table, grouped by partition folder; only visible partitions.
    async fn list(&self) -> Result<Listing> {
        let root = &self.location.root;
        let depth = root.parts().count();
        let objects: Vec<object_store::ObjectMeta> = self
            .store()
            .list(Some(root))
            .try_collect()
            .await
            .map_err(store_error(root))?;
        let mut column = self.column.clone();
        let mut folders: BTreeMap<PartitionDate, Folder> = BTreeMap::new();
        for o in objects {
            let parts: Vec<_> = o.location.parts().collect();
            // Only `<root>/<column>=<date>/<file>`: deeper files belong to writers' staging.
            let [folder, file] = &parts[depth..] else {
                continue;
            };
            let Some((col, ds)) = partition_folder(folder.as_ref()) else {
                continue;
            };
            match &column {
                Some(c) if c != col => {
                    if self.column.is_some() {
                        continue;
                    }
                    return Err(EngineError::Corrupt {
                        table: self.name.to_string(),
                        reason: format!(
                            "{}: partition folders name two columns, {c:?} and {col:?}; set `partition_column` in [warehouse.tables.\"{}\"]",
                            self.location.uri, self.name
                        ),
                    });
                }
                Some(_) => {}
                None => column = Some(col.to_owned()),
            }
            let entry = folders.entry(ds).or_default();
            let name = file.as_ref();
            if name == SUCCESS {
                entry.success = true;
            } else if !name.starts_with('_') && !name.starts_with('.') {
                entry.files.push(o.location);
            }
        }
        let visible = self.visible;
        folders.retain(|_, f| match visible {
            Visibility::Success => f.success,
            Visibility::Files => !f.files.is_empty(),
        });
        for f in folders.values_mut() {
            f.files.sort();
        }
        Ok(Listing {
            column: column.unwrap_or_else(|| DEFAULT_COLUMN.to_owned()),
            partitions: folders,
        })
    }

    pub(crate) async fn meta(&self) -> Result<Option<TableMeta>> {
        if !self.exists().await? {
            return Ok(None);
        }
        let listing = self.list().await?;
        let columns = self
            .schema_of(&listing)
            .await?
            .map(|s| schema::to_specs(&s));
        Ok(Some(TableMeta {
            partition_column: listing.column,
            columns,
        }))
    }

    pub(crate) async fn partitions(&self) -> Result<Vec<PartitionDate>> {
        Ok(self.list().await?.partitions.into_keys().collect())
    }

    fn folder<'a>(&self, listing: &'a Listing, ds: PartitionDate) -> Result<&'a Folder> {
        listing
            .partitions
            .get(&ds)
            .ok_or_else(|| EngineError::PartitionNotFound {
                table: self.name.to_string(),
                column: listing.column.clone(),
                ds: ds.to_string(),
            })
    }

    /// Rows (from the files' footers) and files of partition `ds`.
    pub(crate) async fn partition_info(&self, ds: PartitionDate) -> Result<(u64, usize)> {
        let listing = self.list().await?;
        let folder = self.folder(&listing, ds)?;
        // Owned paths and store: futures borrowing from the closure's argument are not `Send`
        // for every lifetime, which the scheduler's boxed futures need.
        let store = self.store().clone();
        let rows: Vec<u64> = futures::stream::iter(folder.files.clone())
            .map(|path| {
                let store = store.clone();
                async move { file_num_rows(&store, &path).await }
            })
            .buffered(MANIFEST_READS)
            .try_collect()
            .await?;
        Ok((rows.iter().sum(), folder.files.len()))
    }

    /// The union of every visible partition's first-file schema (the later partition's type
    /// winning), without the partition column.
    async fn schema_of(&self, listing: &Listing) -> Result<Option<SchemaRef>> {
        let firsts: Vec<Path> = listing
            .partitions
            .values()
            .filter_map(|f| f.files.first().cloned())
            .collect();
        if let Some((merged_from, schema)) =
            &*self.schema.lock().unwrap_or_else(PoisonError::into_inner)
            && *merged_from == firsts
        {
            return Ok(schema.clone());
        }
        let store = self.store().clone();
        let schemas: Vec<SchemaRef> = futures::stream::iter(firsts.clone())
            .map(|path| {
                let store = store.clone();
                async move { file_schema(&store, &path).await }
            })
            .buffered(MANIFEST_READS)
            .try_collect()
            .await?;
        let merged = schemas
            .into_iter()
            .map(|s| without_column(&s, &listing.column))
            .filter(|s| !s.fields().is_empty())
            .reduce(|a, b| Arc::new(schema::union_latest(&a, &b)));
        *self.schema.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((firsts, merged.clone()));
        Ok(merged)
    }

    pub(crate) async fn schema(&self) -> Result<Option<SchemaRef>> {
        let listing = self.list().await?;
        self.schema_of(&listing).await
    }

    /// Partition `ds` in the table's schema, without the partition column (which writers may
    /// also keep in the files).
    pub(crate) async fn read_partition(&self, ds: PartitionDate) -> Result<Vec<RecordBatch>> {
        let listing = self.list().await?;
        let folder = self.folder(&listing, ds)?;
        let schema = self.schema_of(&listing).await?;
        let partition = format!("{}={ds}", listing.column);
        let mut out = Vec::new();
        for path in &folder.files {
            let bytes = self
                .store()
                .get(path)
                .await
                .map_err(store_error(path))?
                .bytes()
                .await
                .map_err(store_error(path))?;
            for batch in read_parquet_bytes(bytes, path.as_ref())? {
                let batch = match batch.schema().index_of(&listing.column) {
                    Ok(i) => {
                        let mut b = batch;
                        b.remove_column(i);
                        b
                    }
                    Err(_) => batch,
                };
                out.push(match &schema {
                    Some(s) => schema::conform(&batch, s, &self.name, &partition)?,
                    None => batch,
                });
            }
        }
        Ok(out)
    }

    /// The error for every write: the table belongs to the tool that writes it.
    pub(crate) fn read_only(&self) -> EngineError {
        EngineError::Input {
            file: self.name.to_string(),
            message: format!(
                "is a Parquet table written by another tool ({}): chronoflow reads it but never writes into it",
                self.location.uri
            ),
        }
    }
}

/// `<column>=<yyyy-MM-dd>` as a partition folder's column and date.
pub(crate) fn partition_folder(name: &str) -> Option<(&str, PartitionDate)> {
    let (column, value) = name.split_once('=')?;
    Some((column, PartitionDate::parse(value).ok()?))
}

fn without_column(schema: &SchemaRef, column: &str) -> SchemaRef {
    match schema.index_of(column) {
        Ok(i) => {
            let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
            fields.remove(i);
            Arc::new(arrow::datatypes::Schema::new_with_metadata(
                fields,
                schema.metadata().clone(),
            ))
        }
        Err(_) => schema.clone(),
    }
}

fn store_error(path: &Path) -> impl FnOnce(object_store::Error) -> EngineError + '_ {
    move |source| EngineError::Store {
        path: path.to_string(),
        source,
    }
}
