//! Backfills in bounded memory: a GroupBy's rows split by key into shards, computed one shard at
//! a time, with what does not fit spilled to local disk as Arrow IPC.
//!
//! Every feature of a key depends only on that key's rows, so a shard (the keys whose hash falls
//! in it, and all their rows) computes exactly what the whole table would for those keys. Results
//! do not depend on the shard count: outputs are put back in the order a single shard gives.

use std::fs::File;
use std::hash::BuildHasher;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{Int64Type, SchemaRef};
use arrow::ipc::reader::{FileReader, StreamReader};
use arrow::ipc::writer::{FileWriter, StreamWriter};

use chronoflow_config::{GroupBy, PartitionDate};

use crate::error::{EngineError, Result};
use crate::jobs::LoadedGroupBy;
use crate::source;
use crate::value::{Val, val_at};
use crate::warehouse::Warehouse;

/// How much memory a backfill plans to hold. A GroupBy whose indexed rows would need more than
/// half of it is split into shards by key (the other half is for the left rows and outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
}

impl MemoryLimit {
    /// The smallest limit accepted: below it, shards would be too many to be worth it.
    pub const MIN: u64 = 64 << 20;

    /// One sixteenth of the machine's memory (at least [`MemoryLimit::MIN`] and 512 MiB when it
    /// cannot be read): room for other jobs and the page cache the spill files live in.
    pub fn default_for_machine() -> MemoryLimit {
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kb| kb * 1024);
        MemoryLimit {
            bytes: total.map_or(512 << 20, |t| (t / 16).max(Self::MIN)),
        }
    }

    /// How many shards a GroupBy of `rows` input rows, each costing about `row_bytes` indexed,
    /// needs so that one shard fits in half the limit.
    pub fn shards_for(&self, rows: u64, row_bytes: u64) -> usize {
        let budget = (self.bytes / 2).max(1);
        let needed = rows.saturating_mul(row_bytes);
        needed.div_ceil(budget).clamp(1, 4096) as usize
    }
}

/// Parses `512MB`, `4GiB`, `1.5G`, `1073741824`, `25%` (of the machine's memory).
pub fn parse_memory_limit(text: &str) -> std::result::Result<MemoryLimit, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not a size (e.g. 512MB, 4GB, 25%)");
    let bytes = if let Some(pct) = t.strip_suffix('%') {
        let p: f64 = pct.trim().parse().map_err(|_| bad())?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!("{text:?}: a percentage must be in (0, 100]"));
        }
        let total = MemoryLimit::default_for_machine().bytes * 16;
        (total as f64 * p / 100.0) as u64
    } else {
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: f64 = number.parse().map_err(|_| bad())?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => return Err(bad()),
        };
        (n * scale as f64) as u64
    };
    if bytes < MemoryLimit::MIN {
        return Err(format!(
            "{text:?} is below the smallest memory limit, {} MiB",
            MemoryLimit::MIN >> 20
        ));
    }
    Ok(MemoryLimit { bytes })
}

/// The shard of a key: a fixed hash (the same in every process and run), so left rows and
/// GroupBy rows with equal keys meet in the same shard. Values equal as [`Val`]s (an int and
/// the integral float) hash alike.
pub fn shard_of(key: &[Option<Val>], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let hash = foldhash::fast::FixedState::with_seed(0x5eed_c4f0).hash_one(key);
    (hash % shards as u64) as usize
}

/// The shard of every row of `batch`, keyed by `key_columns` (rows with every key null go to 0:
/// they count for no key).
pub fn shards_of_rows(key_columns: &[ArrayRef], rows: usize, shards: usize) -> Vec<u32> {
    // A single 64-bit integer key (the common case): its one-value key, without a reader per value.
    if let [only] = key_columns
        && let Some(ints) = only.as_primitive_opt::<Int64Type>()
    {
        return (0..rows)
            .map(|r| shard_of(&[ints.is_valid(r).then(|| Val::Int(ints.value(r)))], shards) as u32)
            .collect();
    }
    let mut key: Vec<Option<Val>> = Vec::with_capacity(key_columns.len());
    (0..rows)
        .map(|r| {
            key.clear();
            key.extend(key_columns.iter().map(|k| val_at(k.as_ref(), r)));
            shard_of(&key, shards) as u32
        })
        .collect()
}

/// Row indices of `batch` per shard, given each row's shard.
pub fn split_rows(shard_per_row: &[u32], shards: usize) -> Vec<UInt32Array> {
    let mut per: Vec<Vec<u32>> = vec![Vec::new(); shards];
    for (r, s) in shard_per_row.iter().enumerate() {
        per[*s as usize].push(r as u32);
    }
    per.into_iter().map(UInt32Array::from).collect()
}

/// A directory of spill files, removed (with its files) when dropped.
pub struct SpillDir {
    dir: tempfile::TempDir,
    next: usize,
}

impl SpillDir {
    pub fn new() -> Result<SpillDir> {
        let dir = tempfile::Builder::new()
            .prefix("chronoflow-spill-")
            .tempdir()
            .map_err(|source| EngineError::Io {
                path: std::env::temp_dir().display().to_string(),
                source,
            })?;
        Ok(SpillDir { dir, next: 0 })
    }

    fn file(&mut self, what: &str) -> PathBuf {
        self.next += 1;
        self.dir.path().join(format!("{}-{what}.arrow", self.next))
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn ipc_err(path: &Path) -> impl FnOnce(arrow::error::ArrowError) -> EngineError + '_ {
    move |source| EngineError::Arrow {
        context: format!("spill file {}", path.display()),
        source,
    }
}

/// Batches appended one by one and read back in order: in memory, or in a spill file.
pub enum BatchStore {
    Memory(Vec<RecordBatch>),
    Disk {
        path: PathBuf,
        schema: SchemaRef,
        writer: Option<Box<StreamWriter<BufWriter<File>>>>,
    },
}

impl BatchStore {
    pub fn memory() -> BatchStore {
        BatchStore::Memory(Vec::new())
    }

    pub fn disk(spill: &mut SpillDir, what: &str, schema: SchemaRef) -> Result<BatchStore> {
        let path = spill.file(what);
        let file = File::create(&path).map_err(io_err(&path))?;
        let writer =
            StreamWriter::try_new(BufWriter::new(file), &schema).map_err(ipc_err(&path))?;
        Ok(BatchStore::Disk {
            path,
            schema,
            writer: Some(Box::new(writer)),
        })
    }

    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            BatchStore::Memory(batches) => batches.push(batch),
            BatchStore::Disk { path, writer, .. } => {
                if batch.num_rows() > 0 {
                    let w = writer.as_mut().expect("pushes come before the first read");
                    w.write(&batch).map_err(ipc_err(path))?;
                }
            }
        }
        Ok(())
    }

    /// Every batch pushed, in order (memory stores hand theirs over).
    pub fn take_all(&mut self) -> Result<Vec<RecordBatch>> {
        match self {
            BatchStore::Memory(batches) => Ok(std::mem::take(batches)),
            BatchStore::Disk {
                path,
                schema,
                writer,
            } => {
                if let Some(mut w) = writer.take() {
                    w.finish().map_err(ipc_err(path))?;
                }
                let file = File::open(&*path).map_err(io_err(path))?;
                let reader =
                    StreamReader::try_new(BufReader::new(file), None).map_err(ipc_err(path))?;
                let mut out = vec![RecordBatch::new_empty(schema.clone())];
                for b in reader {
                    out.push(b.map_err(ipc_err(path))?);
                }
                std::fs::remove_file(&*path).map_err(io_err(path))?;
                Ok(out)
            }
        }
    }
}

impl BatchStore {
    /// Every batch pushed, in order, read back one at a time (a spill file's are not all held).
    pub fn into_batches(self) -> Result<Box<dyn Iterator<Item = Result<RecordBatch>> + Send>> {
        match self {
            BatchStore::Memory(batches) => Ok(Box::new(batches.into_iter().map(Ok))),
            BatchStore::Disk { path, writer, .. } => {
                if let Some(mut w) = writer {
                    w.finish().map_err(ipc_err(&path))?;
                }
                let file = File::open(&path).map_err(io_err(&path))?;
                let reader =
                    StreamReader::try_new(BufReader::new(file), None).map_err(ipc_err(&path))?;
                Ok(Box::new(
                    reader.map(move |b| b.map_err(|e| ipc_err(&path)(e))),
                ))
            }
        }
    }
}

/// Batches written once, each read back by its index: a shard's outputs, one per output group.
pub enum IndexedBatches {
    Memory(Vec<RecordBatch>),
    Disk { path: PathBuf, count: usize },
}

impl IndexedBatches {
    /// Keeps `batches` in memory, or writes them to a spill file when `spill` is given.
    pub fn store(batches: Vec<RecordBatch>, spill: Option<&mut SpillDir>) -> Result<Self> {
        let (Some(spill), Some(first)) = (spill, batches.first()) else {
            return Ok(IndexedBatches::Memory(batches));
        };
        let path = spill.file("out");
        let file = File::create(&path).map_err(io_err(&path))?;
        let mut writer =
            FileWriter::try_new(BufWriter::new(file), &first.schema()).map_err(ipc_err(&path))?;
        for b in &batches {
            writer.write(b).map_err(ipc_err(&path))?;
        }
        writer.finish().map_err(ipc_err(&path))?;
        Ok(IndexedBatches::Disk {
            path,
            count: batches.len(),
        })
    }

    /// Batch `i`.
    pub fn get(&self, i: usize) -> Result<RecordBatch> {
        match self {
            IndexedBatches::Memory(batches) => Ok(batches[i].clone()),
            IndexedBatches::Disk { path, count } => {
                debug_assert!(i < *count);
                let file = File::open(path).map_err(io_err(path))?;
                let mut reader =
                    FileReader::try_new(BufReader::new(file), None).map_err(ipc_err(path))?;
                reader.set_index(i).map_err(ipc_err(path))?;
                reader
                    .next()
                    .ok_or_else(|| EngineError::Corrupt {
                        table: path.display().to_string(),
                        reason: format!("spill file has no batch {i}"),
                    })?
                    .map_err(ipc_err(path))
            }
        }
    }
}

/// About what one source row costs once indexed (times, partition, key entry, the evaluated
/// batch it came from) plus each value it carries; measured on the engine benchmark.
fn indexed_row_bytes(gb: &GroupBy) -> u64 {
    let aggregations = gb.aggregations.as_deref().unwrap_or_default();
    let inputs = if gb.aggregations.is_some() {
        crate::jobs::input_columns(aggregations).len() as u64
    } else {
        4
    };
    let buckets = crate::jobs::bucket_columns(aggregations).len() as u64;
    64 + 32 * inputs + 24 * buckets
}

/// A GroupBy's source rows over `first..=last`, split by key into shards (in memory when one
/// shard holds them all, else spilled).
pub(crate) struct ShardedRows<'g> {
    gb: &'g GroupBy,
    /// Per shard, per source: its rows, and whether the source is an entity source.
    shards: Vec<Vec<(BatchStore, bool)>>,
}

impl<'g> ShardedRows<'g> {
    /// Reads `gb`'s sources partition by partition into as many shards as `limit` requires, given
    /// that `other_bytes` of the limit are taken by the caller's own rows, and that the caller's
    /// output for a shard adds up to `output_row_bytes` per row.
    pub(crate) async fn load(
        warehouse: &Warehouse,
        gb: &'g GroupBy,
        (first, last): (PartitionDate, PartitionDate),
        limit: MemoryLimit,
        (other_bytes, output_row_bytes): (u64, u64),
        spill: &mut SpillDir,
    ) -> Result<ShardedRows<'g>> {
        let name = gb.metadata.name.as_str();
        let reads = crate::jobs::source_reads(gb, first, last)?;
        let mut rows = 0;
        for read in &reads {
            rows += source::count_rows(warehouse, &read.table, read.query, read.bounds).await?;
        }
        let row_bytes = indexed_row_bytes(gb) + output_row_bytes;
        let count = limit.shards_for(1, rows.saturating_mul(row_bytes) + other_bytes);
        let mut shards: Vec<Vec<(BatchStore, bool)>> = (0..count).map(|_| Vec::new()).collect();
        for read in &reads {
            let mut stores: Option<Vec<BatchStore>> = None;
            let mut route = |batch: RecordBatch| -> Result<()> {
                let stores = match &mut stores {
                    Some(s) => s,
                    None if count == 1 => stores.insert(vec![BatchStore::memory()]),
                    None => {
                        let schema = batch.schema();
                        let made = (0..count)
                            .map(|s| BatchStore::disk(spill, &format!("shard{s}"), schema.clone()))
                            .collect::<Result<Vec<_>>>()?;
                        stores.insert(made)
                    }
                };
                if count == 1 {
                    return stores[0].push(batch);
                }
                let keys = gb
                    .key_columns
                    .iter()
                    .map(|k| crate::jobs::source_column(name, &batch, k))
                    .collect::<Result<Vec<_>>>()?;
                let per_row = shards_of_rows(&keys, batch.num_rows(), count);
                for (s, indices) in split_rows(&per_row, count).into_iter().enumerate() {
                    if indices.is_empty() {
                        continue;
                    }
                    let taken = batch
                        .columns()
                        .iter()
                        .map(|c| arrow::compute::take(c.as_ref(), &indices, None))
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .and_then(|cols| RecordBatch::try_new(batch.schema(), cols))
                        .map_err(|source| EngineError::Arrow {
                            context: format!("{name}: splitting rows by key"),
                            source,
                        })?;
                    stores[s].push(taken)?;
                }
                Ok(())
            };
            source::load_each(
                warehouse,
                &read.table,
                read.query,
                read.bounds,
                read.time,
                name,
                &mut route,
            )
            .await?;
            let stores = stores.expect("load_each hands over at least one batch");
            for (s, store) in stores.into_iter().enumerate() {
                shards[s].push((store, read.entity));
            }
        }
        Ok(ShardedRows { gb, shards })
    }

    pub(crate) fn count(&self) -> usize {
        self.shards.len()
    }

    /// Shard `s`'s rows, indexed (each shard is taken once).
    pub(crate) fn index(&mut self, s: usize) -> Result<LoadedGroupBy> {
        let loaded = self.take(s)?;
        let mut indexed = crate::jobs::index_group_bys(&[self.gb], &loaded)?;
        Ok(indexed.remove(0))
    }

    /// Shard `s`'s rows indexed with every input kept as values (`KeyedRows::inputs`), which
    /// online serving reads itself; each shard is taken once.
    pub(crate) fn index_with_inputs(&mut self, s: usize) -> Result<LoadedGroupBy> {
        let loaded = self.take(s)?;
        crate::jobs::index_group_by(self.gb, &loaded)
    }

    /// Shard `s`'s rows indexed once for each of `gbs`, which index them as this one does
    /// ([`crate::jobs::same_index`]); each shard is taken once.
    pub(crate) fn index_for(&mut self, s: usize, gbs: &[&GroupBy]) -> Result<Vec<LoadedGroupBy>> {
        let loaded = self.take(s)?;
        crate::jobs::index_group_bys(gbs, &loaded)
    }

    fn take(&mut self, s: usize) -> Result<Vec<(RecordBatch, bool)>> {
        let mut loaded: Vec<(RecordBatch, bool)> = Vec::new();
        for (store, entity) in &mut self.shards[s] {
            for batch in store.take_all()? {
                loaded.push((batch, *entity));
            }
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_parse_with_units_and_refuse_tiny_ones() {
        assert_eq!(parse_memory_limit("512MB").unwrap().bytes, 512 << 20);
        assert_eq!(parse_memory_limit("4GiB").unwrap().bytes, 4 << 30);
        assert_eq!(
            parse_memory_limit("1.5g").unwrap().bytes,
            (1.5 * (1u64 << 30) as f64) as u64
        );
        assert!(parse_memory_limit("1KB").is_err());
        assert!(parse_memory_limit("lots").is_err());
        assert!(parse_memory_limit("0%").is_err());
    }

    #[test]
    fn equal_values_of_different_types_share_a_shard() {
        let a = [Some(Val::Int(42))];
        let b = [Some(Val::Float(42.0))];
        assert_eq!(shard_of(&a, 7), shard_of(&b, 7));
        assert_eq!(shard_of(&a, 1), 0);
    }

    #[test]
    fn an_int64_key_column_is_sharded_as_any_other_column_of_its_values() {
        let values = [Some(3), None, Some(-9), Some(70_000), Some(i32::MAX)];
        let int64: ArrayRef = std::sync::Arc::new(arrow::array::Int64Array::from(
            values.iter().map(|v| v.map(i64::from)).collect::<Vec<_>>(),
        ));
        // Int32 is read value by value (`val_at`), the path of every other key type.
        let int32: ArrayRef = std::sync::Arc::new(arrow::array::Int32Array::from(values.to_vec()));
        for shards in [2, 5, 64] {
            assert_eq!(
                shards_of_rows(std::slice::from_ref(&int64), values.len(), shards),
                shards_of_rows(std::slice::from_ref(&int32), values.len(), shards)
            );
        }
    }

    #[test]
    fn shards_cover_half_the_limit_each() {
        let limit = MemoryLimit { bytes: 1 << 30 };
        assert_eq!(limit.shards_for(1_000, 100), 1);
        assert_eq!(limit.shards_for(10_000_000, 100), 2);
        assert_eq!(limit.shards_for(100_000_000, 100), 19);
    }
}
