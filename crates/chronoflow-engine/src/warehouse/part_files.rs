//! A partition written, or read, one part file at a time: for outputs and inputs larger than a
//! job should hold (an upload of ten million keys). Commit and visibility are those of
//! [`Warehouse::write_partition`]: the manifest, put last, is the commit point.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use chronoflow_config::PartitionDate;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{
    Manifest, PartitionInfo, PartitionStats, ROWS_PER_FILE, Warehouse, unique_id,
    write_parquet_bytes,
};
use crate::error::{EngineError, Result};
use crate::schema;
use crate::table_name::TableName;

/// Bytes of Arrow arrays a part file is cut at (besides [`ROWS_PER_FILE`]): what a writer holds
/// before it encodes them.
const PART_FILE_BYTES: usize = 128 << 20;

/// Writes one partition batch by batch, a part file whenever enough rows are pending; nothing is
/// visible until [`PartitionWriter::commit`]. Every batch must have the same columns.
pub struct PartitionWriter<'w> {
    warehouse: &'w Warehouse,
    table: TableName,
    partition_column: String,
    ds: PartitionDate,
    /// Rows and bytes of Arrow arrays a part file is cut at.
    file_rows: usize,
    file_bytes: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    pending_bytes: usize,
    /// Whether the table is in another format (known at the first write).
    foreign: Option<bool>,
    written: Option<Written>,
}

/// What the first part file fixed, and what has been written since.
struct Written {
    dir: Path,
    previous: Option<Manifest>,
    /// The table's schema after this write, which every batch is conformed to.
    schema: SchemaRef,
    recorded: Option<SchemaRef>,
    writer_id: String,
    files: Vec<String>,
    rows: u64,
    stats: PartitionStats,
}

impl Warehouse {
    /// A writer of partition `ds` of `table` (replacing it at commit), for rows that arrive
    /// batch by batch. Tables in other formats get their rows at commit, all at once.
    pub fn partition_writer(
        &self,
        table: &TableName,
        partition_column: &str,
        ds: PartitionDate,
    ) -> PartitionWriter<'_> {
        PartitionWriter {
            warehouse: self,
            table: table.clone(),
            partition_column: partition_column.to_owned(),
            ds,
            file_rows: ROWS_PER_FILE,
            file_bytes: PART_FILE_BYTES,
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            foreign: None,
            written: None,
        }
    }
}

impl PartitionWriter<'_> {
    /// Cuts part files at `rows` rows or `bytes` of Arrow arrays, whichever comes first.
    pub fn with_file_limits(mut self, rows: usize, bytes: usize) -> Self {
        (self.file_rows, self.file_bytes) = (rows.max(1), bytes.max(1));
        self
    }

    /// Adds `batch`, writing a part file when the pending rows are enough for one.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.pending_rows += batch.num_rows();
        self.pending_bytes += batch.get_array_memory_size();
        self.pending.push(batch);
        if self.pending_rows >= self.file_rows || self.pending_bytes >= self.file_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes what is pending and commits the partition: readers see all of it, or the
    /// previous partition if this fails.
    pub async fn commit(mut self) -> Result<PartitionInfo> {
        let warehouse = self.warehouse;
        if let Some(foreign) = warehouse.foreign(&self.table).await? {
            return foreign
                .write_partition(&self.partition_column, self.ds, &self.pending, false)
                .await;
        }
        if self.written.is_none() || !self.pending.is_empty() {
            // An empty partition still gets a file, carrying its schema.
            self.flush().await?;
        }
        let written = self.written.expect("flushed at least once");
        let manifest = Manifest {
            files: written.files,
            rows: written.rows,
            stats: Some(written.stats),
        };
        warehouse
            .check_files_exist(&written.dir, &manifest.files)
            .await?;
        warehouse.commit_manifest(&written.dir, &manifest).await?;
        if let Some(schema) = &written.recorded {
            warehouse
                .keep_schema_recorded(&self.table, &self.partition_column, schema, self.ds)
                .await?;
        }
        warehouse
            .clean_partition(&written.dir, &manifest, written.previous.as_ref())
            .await?;
        Ok(PartitionInfo {
            ds: self.ds,
            rows: manifest.rows,
            files: manifest.files.len(),
        })
    }

    async fn flush(&mut self) -> Result<()> {
        let warehouse = self.warehouse;
        let foreign = match self.foreign {
            Some(known) => known,
            None => *self
                .foreign
                .insert(warehouse.foreign(&self.table).await?.is_some()),
        };
        if foreign {
            return Ok(()); // held for `commit`
        }
        let pending = std::mem::take(&mut self.pending);
        (self.pending_rows, self.pending_bytes) = (0, 0);
        let written = match &mut self.written {
            Some(written) => written,
            None => {
                // The first file records the schema, before any file is written.
                let prepared = warehouse
                    .prepare_write(&self.table, &self.partition_column, self.ds, &pending)
                    .await?;
                let schema = prepared
                    .batches
                    .first()
                    .map_or_else(|| Arc::new(Schema::empty()), |b: &RecordBatch| b.schema());
                self.written.insert(Written {
                    dir: prepared.dir,
                    previous: prepared.previous,
                    schema,
                    recorded: prepared.recorded,
                    writer_id: unique_id(),
                    files: Vec::new(),
                    rows: 0,
                    stats: PartitionStats::default(),
                })
            }
        };
        let partition = format!("{}={}", self.partition_column, self.ds);
        let batches = pending
            .iter()
            .map(|b| schema::conform(b, &written.schema, &self.table, &partition))
            .collect::<Result<Vec<_>>>()?;
        let name = format!(
            "part-{}-{:05}.parquet",
            written.writer_id,
            written.files.len()
        );
        let path = written.dir.clone().join(name.as_str());
        let bytes = write_parquet_bytes(&batches, path.as_ref())?;
        warehouse
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(Warehouse::store_error(&path))?;
        let added = PartitionStats::of_batches(&batches);
        written.rows += added.rows;
        written.stats = written.stats.merge(&added);
        written.files.push(name);
        Ok(())
    }
}

/// A committed partition, to be read one part file at a time ([`Warehouse::read_partition_file`]).
pub struct PartitionFiles {
    table: TableName,
    partition: String,
    /// Rows, as the manifest counts them.
    rows: u64,
    files: Files,
}

enum Files {
    Native {
        dir: Path,
        names: Vec<String>,
        /// The table's schema (none recorded: each file as it is).
        schema: Option<SchemaRef>,
    },
    /// Tables in other formats are read whole, as one "file".
    Read(Vec<RecordBatch>),
}

impl PartitionFiles {
    /// How many part files there are.
    pub fn len(&self) -> usize {
        match &self.files {
            Files::Native { names, .. } => names.len(),
            Files::Read(_) => 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The partition's rows, as its commit recorded them.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The positions of `columns` in `schema`; a column it lacks is an error naming it.
    fn column_indices(&self, schema: &Schema, columns: &[&str]) -> Result<Vec<usize>> {
        columns
            .iter()
            .map(|c| {
                schema.index_of(c).map_err(|_| EngineError::SchemaMismatch {
                    table: self.table.to_string(),
                    partition: self.partition.clone(),
                    column: (*c).to_owned(),
                    reason: "is not a column of the table".to_owned(),
                })
            })
            .collect()
    }

    fn arrow_error(&self, source: arrow::error::ArrowError) -> EngineError {
        EngineError::Arrow {
            context: format!("{} {}", self.table, self.partition),
            source,
        }
    }
}

impl Warehouse {
    /// The part files of committed partition `ds` of `table`.
    pub async fn partition_files(
        &self,
        table: &TableName,
        ds: PartitionDate,
    ) -> Result<PartitionFiles> {
        if let Some(foreign) = self.foreign(table).await? {
            self.require_foreign(table, &foreign).await?;
            let batches = foreign.read_partition(ds).await?;
            let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
            return Ok(PartitionFiles {
                table: table.clone(),
                partition: format!("ds={ds}"),
                rows,
                files: Files::Read(batches),
            });
        }
        let meta = self.require_table(table).await?;
        let manifest = self.manifest(table, &meta, ds).await?;
        let schema = match &meta.columns {
            Some(columns) => Some(schema::from_specs(table, columns)?),
            None => None,
        };
        Ok(PartitionFiles {
            table: table.clone(),
            partition: format!("{}={ds}", meta.partition_column),
            rows: manifest.rows,
            files: Files::Native {
                dir: self.partition_dir(table, &meta.partition_column, ds),
                names: manifest.files,
                schema,
            },
        })
    }

    /// The rows of part file `i` of `files`, only the named `columns` of them, in the table's
    /// schema. A file a rewrite of the partition has removed since is an error.
    pub async fn read_partition_file(
        &self,
        files: &PartitionFiles,
        i: usize,
        columns: &[&str],
    ) -> Result<Vec<RecordBatch>> {
        let project = |batch: &RecordBatch| -> Result<RecordBatch> {
            let indices = files.column_indices(&batch.schema(), columns)?;
            batch
                .project(&indices)
                .map_err(|source| files.arrow_error(source))
        };
        let (dir, names, schema) = match &files.files {
            Files::Read(batches) => return batches.iter().map(project).collect(),
            Files::Native { dir, names, schema } => (dir, names, schema),
        };
        let path = dir.clone().join(names[i].as_str());
        let bytes = self.file_bytes(&path).await?;
        let wanted: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
        let name = path.to_string();
        let decoded = tokio::task::spawn_blocking(move || {
            super::catch_decoder_panic(&name, || decode_columns(bytes, &name, &wanted))
        })
        .await
        .map_err(|e| EngineError::Io {
            path: path.to_string(),
            source: std::io::Error::other(e),
        })??;
        let Some(schema) = schema else {
            return decoded.iter().map(project).collect();
        };
        // In the table's schema: an older file may lack a column added since (then null).
        let indices = files.column_indices(schema, columns)?;
        let wanted = Arc::new(
            schema
                .project(&indices)
                .map_err(|source| files.arrow_error(source))?,
        );
        decoded
            .iter()
            .map(|b| schema::conform(b, &wanted, &files.table, &files.partition))
            .collect()
    }
}

/// The named top-level columns of a Parquet file (those it has).
fn decode_columns(bytes: bytes::Bytes, path: &str, columns: &[String]) -> Result<Vec<RecordBatch>> {
    let perr = |source| EngineError::Parquet {
        path: path.to_owned(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(perr)?;
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| columns.iter().any(|c| c == f.name()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(perr)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| EngineError::Arrow {
            context: format!("reading {path}"),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ids = Int64Array::from_iter_values(from..from + n);
        let names = StringArray::from_iter((from..from + n).map(|i| Some(format!("n{i}"))));
        RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(names)]).unwrap()
    }

    fn day() -> PartitionDate {
        PartitionDate::parse("2026-12-07").unwrap()
    }

    fn concat(batches: &[RecordBatch]) -> RecordBatch {
        arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
    }

    #[tokio::test]
    async fn rows_written_a_file_at_a_time_read_back_whole_and_a_file_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
        let table = TableName::parse("t.rows").unwrap();
        let mut writer = warehouse
            .partition_writer(&table, "ds", day())
            .with_file_limits(25, usize::MAX);
        for i in 0..10 {
            writer.write(batch(i * 10, 10)).await.unwrap();
        }
        let info = writer.commit().await.unwrap();
        assert_eq!((info.rows, info.files), (100, 4));

        let whole = warehouse.read_partition(&table, day()).await.unwrap();
        assert_eq!(concat(&whole), batch(0, 100));
        let files = warehouse.partition_files(&table, day()).await.unwrap();
        assert_eq!((files.len(), files.rows()), (4, 100));
        let mut names = Vec::new();
        for i in 0..files.len() {
            for b in warehouse
                .read_partition_file(&files, i, &["name"])
                .await
                .unwrap()
            {
                assert_eq!(b.num_columns(), 1);
                names.extend(
                    b.column(0)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .unwrap()
                        .iter()
                        .map(|n| n.unwrap().to_owned()),
                );
            }
        }
        assert_eq!(names, (0..100).map(|i| format!("n{i}")).collect::<Vec<_>>());
        let err = warehouse
            .read_partition_file(&files, 0, &["nope"])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[tokio::test]
    async fn a_writer_dropped_before_its_commit_leaves_the_previous_partition() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
        let table = TableName::parse("t.rows").unwrap();
        warehouse
            .write_partition(&table, "ds", day(), &[batch(0, 5)])
            .await
            .unwrap();
        let mut writer = warehouse
            .partition_writer(&table, "ds", day())
            .with_file_limits(10, usize::MAX);
        for i in 0..5 {
            writer.write(batch(100 + i * 10, 10)).await.unwrap();
        }
        drop(writer); // part files written, no manifest: a crash before the commit
        let read = warehouse.read_partition(&table, day()).await.unwrap();
        assert_eq!(concat(&read), batch(0, 5));
        let files = warehouse.partition_files(&table, day()).await.unwrap();
        assert_eq!((files.len(), files.rows()), (1, 5));
    }

    #[tokio::test]
    async fn an_empty_partition_is_committed_with_its_schema() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
        let table = TableName::parse("t.rows").unwrap();
        let mut writer = warehouse.partition_writer(&table, "ds", day());
        writer.write(batch(0, 0)).await.unwrap();
        let info = writer.commit().await.unwrap();
        assert_eq!((info.rows, info.files), (0, 1));
        let schema = warehouse.schema(&table).await.unwrap().unwrap();
        assert_eq!(schema.fields().len(), 2);
    }
}
