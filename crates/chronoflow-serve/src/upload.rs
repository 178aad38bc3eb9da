//! The batch side of serving: `upload` (a GroupBy's values as of the end of a day, into the
//! warehouse's upload table), `upload-to-kv` (that partition into the KV store, switched in
//! atomically), `metadata-upload` (definitions the fetcher reads), and streaming replay.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::naming::{self, batch_dataset, streaming_dataset, upload_table};
use chronoflow_config::{Config, GroupBy, LoadedConfig, PartitionDate};
use chronoflow_engine::online;
use chronoflow_engine::warehouse::{PartitionFiles, PartitionInfo, PartitionWriter};
use chronoflow_engine::window::DAY;
use chronoflow_engine::{BatchStore, EngineError, MemoryLimit, SpillDir, TableName, Warehouse};

use crate::codec::{self, Origin, SERVING_INFO_KEY, StoredConfig, StoredServingInfo, StreamedRow};
use crate::error::{Result, ServeError};
use crate::kv::{Entry, KvStore};
use chronoflow_engine::online::{BatchValue, Key, StreamedRows};

/// Entries per KV write while loading a batch.
const CHUNK: usize = 5_000;

fn group_by_of<'a>(loaded: &'a LoadedConfig, mode: &str) -> Result<&'a GroupBy> {
    match &loaded.config {
        Config::GroupBy(gb) => Ok(gb),
        _ => Err(ServeError::Config {
            name: loaded.name().to_owned(),
            message: format!("--mode {mode} takes a GroupBy"),
        }),
    }
}

/// The config as stored for the fetcher: its compiled text, read from the repo at `repo_dir`.
pub fn stored_config(repo_dir: &std::path::Path, loaded: &LoadedConfig) -> Result<StoredConfig> {
    let path = repo_dir.join(&loaded.path);
    let text = std::fs::read_to_string(&path).map_err(|e| ServeError::Config {
        name: loaded.name().to_owned(),
        message: format!("reading {}: {e}", path.display()),
    })?;
    Ok(StoredConfig {
        name: loaded.name().to_owned(),
        zipline: loaded.dialect == chronoflow_config::Dialect::Zipline,
        output_table: loaded.output_table(),
        text,
    })
}

/// `upload`: computes what serving needs of GroupBy `loaded` as of the end of `ds`, and writes it
/// as partition `ds` of its upload table (`key_bytes`, `value_bytes`, and both as JSON to read),
/// within the machine's default memory limit.
pub async fn upload(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    config: StoredConfig,
    ds: PartitionDate,
) -> Result<PartitionInfo> {
    upload_within(
        warehouse,
        loaded,
        config,
        ds,
        MemoryLimit::default_for_machine(),
    )
    .await
}

/// [`upload`], holding about `limit`: past it the GroupBy's keys are split into shards, each
/// shard's entries computed and spilled in key order, and the shards merged back, so the
/// partition's rows are the same whatever the limit (its serving info row, then keys ascending).
pub async fn upload_within(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    config: StoredConfig,
    ds: PartitionDate,
    limit: MemoryLimit,
) -> Result<PartitionInfo> {
    let gb = group_by_of(loaded, "upload")?;
    let mut spill = SpillDir::new()?;
    let mut shards =
        online::UploadShards::load(warehouse, gb, ds, limit, UPLOAD_ROW_BYTES, &mut spill).await?;
    let count = shards.count();
    let mut runs = Vec::with_capacity(count);
    let mut info = None;
    for s in 0..count {
        let mut run = match count {
            1 => BatchStore::memory(),
            _ => BatchStore::disk(&mut spill, "upload", upload_schema())?,
        };
        // Each computed value is dropped once encoded, so the columns fill as the values go; a
        // batch is cut well before any column nears Arrow's 2 GiB per array.
        let mut columns = UploadColumns::new(RUN_BATCH_BYTES);
        let shard_info = shards.compute(s, |key, value| -> Result<()> {
            columns.push(
                &codec::key_bytes(key),
                &codec::encode(&value),
                Some(&to_json(loaded, key)?),
                &to_json(loaded, &value)?,
            );
            if columns.full() {
                run.push(columns.finish())?;
            }
            Ok(())
        })?;
        run.push(columns.finish())?;
        runs.push(run);
        info.get_or_insert(shard_info);
    }
    let info = StoredServingInfo {
        config,
        // `UploadShards` has at least one shard.
        info: info.expect("one shard at least"),
    };
    let table = TableName::parse(&upload_table(&loaded.output_table(), loaded.dialect))?;
    let mut writer = warehouse.partition_writer(&table, "ds", ds);
    let mut columns = UploadColumns::new(RUN_BATCH_BYTES);
    columns.push(
        SERVING_INFO_KEY,
        &codec::encode(&info),
        None,
        &to_json(loaded, &info.info)?,
    );
    writer.write(columns.finish()).await?;
    merge_runs(runs, &mut writer).await?;
    Ok(writer.commit().await?)
}

/// What one source row may add to the upload while its shard is computed: its key's value
/// (tiles or the row itself), encoded and as JSON. Measured: 1.6 KB per key, everything held,
/// for one row a key.
const UPLOAD_ROW_BYTES: u64 = 1024;

/// Bytes a column of a spilled or written upload batch may hold before the batch is cut: small,
/// as the merge holds one batch of each shard.
const RUN_BATCH_BYTES: usize = 4 << 20;

fn upload_schema() -> arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key_bytes", DataType::Binary, false),
        Field::new("value_bytes", DataType::Binary, false),
        Field::new("key_json", DataType::Utf8, true),
        Field::new("value_json", DataType::Utf8, false),
    ]))
}

/// Writes the entries of `runs` (each sorted by key, their keys disjoint) to `writer` in key
/// order: one batch of each run held at a time.
async fn merge_runs(runs: Vec<BatchStore>, writer: &mut PartitionWriter<'_>) -> Result<()> {
    if runs.len() == 1 {
        for batch in runs.into_iter().flat_map(|r| r.into_batches()).flatten() {
            writer.write(batch?).await?;
        }
        return Ok(());
    }
    let mut heads = Vec::with_capacity(runs.len());
    let mut order = BinaryHeap::new();
    for (i, run) in runs.into_iter().enumerate() {
        let mut head = RunHead::new(run.into_batches()?);
        if let Some(key) = head.advance()? {
            order.push(Reverse((key, i)));
        }
        heads.push(head);
    }
    let mut out = UploadColumns::new(RUN_BATCH_BYTES);
    while let Some(Reverse((_, i))) = order.pop() {
        let head = &mut heads[i];
        head.push_current(&mut out);
        if out.full() {
            writer.write(out.finish()).await?;
        }
        if let Some(key) = head.advance()? {
            order.push(Reverse((key, i)));
        }
    }
    writer.write(out.finish()).await?;
    Ok(())
}

/// A spilled run of upload entries, read a batch at a time, at its current row.
struct RunHead {
    batches: Box<dyn Iterator<Item = std::result::Result<RecordBatch, EngineError>> + Send>,
    batch: Option<RecordBatch>,
    /// The current row; `advance` moves to the next.
    row: usize,
}

impl RunHead {
    fn new(
        batches: Box<dyn Iterator<Item = std::result::Result<RecordBatch, EngineError>> + Send>,
    ) -> RunHead {
        RunHead {
            batches,
            batch: None,
            row: 0,
        }
    }

    /// Moves to the next entry and returns its key (`None` at the end of the run).
    fn advance(&mut self) -> Result<Option<Key>> {
        self.row += 1;
        loop {
            if let Some(batch) = &self.batch
                && self.row < batch.num_rows()
            {
                let bytes = batch.column(0).as_binary::<i32>().value(self.row);
                // Written by `upload_within` from keys: they decode.
                return Ok(Some(codec::key_of(bytes).expect("spilled keys decode")));
            }
            match self.batches.next() {
                None => return Ok(None),
                Some(batch) => (self.batch, self.row) = (Some(batch?), 0),
            }
        }
    }

    fn push_current(&self, out: &mut UploadColumns) {
        let batch = self.batch.as_ref().expect("a run is popped at an entry");
        let r = self.row;
        let key_json = batch.column(2).as_string::<i32>();
        out.push(
            batch.column(0).as_binary::<i32>().value(r),
            batch.column(1).as_binary::<i32>().value(r),
            (!key_json.is_null(r)).then(|| key_json.value(r)),
            batch.column(3).as_string::<i32>().value(r),
        );
    }
}

/// The columns of an upload table's batch, filled one entry at a time.
struct UploadColumns {
    /// Bytes per column at which the batch is full.
    limit: usize,
    key_bytes: BinaryBuilder,
    value_bytes: BinaryBuilder,
    key_json: StringBuilder,
    value_json: StringBuilder,
}

impl UploadColumns {
    fn new(limit: usize) -> UploadColumns {
        UploadColumns {
            limit,
            key_bytes: BinaryBuilder::new(),
            value_bytes: BinaryBuilder::new(),
            key_json: StringBuilder::new(),
            value_json: StringBuilder::new(),
        }
    }

    fn push(&mut self, key: &[u8], value: &[u8], key_json: Option<&str>, value_json: &str) {
        self.key_bytes.append_value(key);
        self.value_bytes.append_value(value);
        self.key_json.append_option(key_json);
        self.value_json.append_value(value_json);
    }

    fn full(&self) -> bool {
        [
            self.key_bytes.values_slice().len(),
            self.value_bytes.values_slice().len(),
            self.key_json.values_slice().len(),
            self.value_json.values_slice().len(),
        ]
        .into_iter()
        .any(|bytes| bytes >= self.limit)
    }

    fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.key_bytes.finish()),
            Arc::new(self.value_bytes.finish()),
            Arc::new(self.key_json.finish()),
            Arc::new(self.value_json.finish()),
        ];
        // Every column got one value per entry, of its declared type.
        RecordBatch::try_new(upload_schema(), columns).expect("consistent columns")
    }
}

fn to_json<T: serde::Serialize>(loaded: &LoadedConfig, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| ServeError::Config {
        name: loaded.name().to_owned(),
        message: format!("a value cannot be written as JSON: {e}"),
    })
}

/// `upload-to-kv`: loads partition `ds` of the upload table into the KV store beside the batch
/// being served, then switches to it. `progress(loaded, total)` follows the load.
pub async fn upload_to_kv(
    warehouse: &Warehouse,
    kv: &dyn KvStore,
    loaded: &LoadedConfig,
    ds: PartitionDate,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<usize> {
    group_by_of(loaded, "upload-to-kv")?;
    let table = TableName::parse(&upload_table(&loaded.output_table(), loaded.dialect))?;
    let files = match warehouse.partition_files(&table, ds).await {
        Err(EngineError::PartitionNotFound { .. } | EngineError::TableNotFound { .. }) => {
            return Err(ServeError::Config {
                name: loaded.name().to_owned(),
                message: format!(
                    "{table} has no partition {ds}: run --mode upload --ds {ds} first"
                ),
            });
        }
        other => other?,
    };
    // Read twice, a part file at a time and only the two columns served: checked whole before
    // anything is loaded, then loaded. (Reading the partition at once held its JSON columns
    // too: 5.9 GB for 10M keys of a TEMPORAL GroupBy.)
    let invalid = |message: String| ServeError::Config {
        name: loaded.name().to_owned(),
        message: format!("{table} partition {ds}: {message}; upload it again"),
    };
    let mut check = UploadCheck::default();
    for i in 0..files.len() {
        for (key, value) in entries(&read_entries(warehouse, &files, i, &table, loaded).await?) {
            check.entry(key, value).map_err(invalid)?;
        }
    }
    let total = check.finish().map_err(invalid)?;
    let dataset = batch_dataset(loaded.name());
    // Reloading the day being served (a rerun, a fix) loads a second slot beside it.
    let version = match kv.active_version(&dataset).await? {
        Some(active) if active == ds.to_string() => format!("{ds}#2"),
        _ => ds.to_string(),
    };
    kv.begin_batch(&dataset, &version).await?;
    let mut done = 0;
    let mut chunk: Vec<Entry> = Vec::with_capacity(CHUNK.min(total));
    for i in 0..files.len() {
        for (key, value) in entries(&read_entries(warehouse, &files, i, &table, loaded).await?) {
            chunk.push((key.to_vec(), value.to_vec()));
            if chunk.len() == CHUNK {
                done += chunk.len();
                kv.put_batch(&dataset, &version, std::mem::take(&mut chunk))
                    .await?;
                progress(done, total);
            }
        }
    }
    if !chunk.is_empty() {
        done += chunk.len();
        kv.put_batch(&dataset, &version, chunk).await?;
        progress(done, total);
    }
    if done != total {
        // The partition was rewritten between the check and the load: this load is not
        // committed (the slot is cleared by the next one).
        return Err(ServeError::Config {
            name: loaded.name().to_owned(),
            message: format!(
                "{table} partition {ds} changed while it was loaded ({total} entries checked, \
                 {done} loaded); run upload-to-kv again"
            ),
        });
    }
    kv.commit_batch(&dataset, &version).await?;
    // The batch now covers the streamed rows of its day and before: housekeeping, so the
    // streaming dataset stays bounded. A failure leaves rows the fetcher ignores anyway.
    let streaming = streaming_dataset(loaded.name());
    if let Err(e) = prune_streamed(kv, &streaming, ds).await {
        tracing::warn!(dataset = %streaming, error = %e, "dropping streamed rows the batch covers");
    }
    Ok(total)
}

/// Drops the streamed rows of `dataset` that the batch of day `batch_ds` covers (partition
/// days up to `batch_ds`: a fetch counts only later ones), and rows written before rows carried
/// their day (never counted). Returns how many were dropped.
pub async fn prune_streamed(
    kv: &dyn KvStore,
    dataset: &str,
    batch_ds: PartitionDate,
) -> Result<u64> {
    let batch_day = batch_ds.epoch_millis().div_euclid(DAY);
    kv.prune_appended(
        dataset,
        std::sync::Arc::new(move |value: &[u8]| {
            codec::streamed_day(value).is_some_and(|day| day > batch_day)
        }),
    )
    .await
}

/// The key and value columns of part file `i` of an upload partition, batch by batch.
async fn read_entries(
    warehouse: &Warehouse,
    files: &PartitionFiles,
    i: usize,
    table: &TableName,
    loaded: &LoadedConfig,
) -> Result<Vec<(BinaryArray, BinaryArray)>> {
    let batches = warehouse
        .read_partition_file(files, i, &["key_bytes", "value_bytes"])
        .await?;
    batches
        .iter()
        .map(|batch| {
            let column = |c: usize| {
                batch
                    .column(c)
                    .as_binary_opt::<i32>()
                    .cloned()
                    .ok_or_else(|| ServeError::Config {
                        name: loaded.name().to_owned(),
                        message: format!(
                            "{table}: column {:?} is not binary",
                            batch.schema().field(c).name()
                        ),
                    })
            };
            Ok((column(0)?, column(1)?))
        })
        .collect()
}

/// The entries (key and value bytes, both present) of a part file's batches, in order.
fn entries(batches: &[(BinaryArray, BinaryArray)]) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
    batches.iter().flat_map(|(keys, values)| {
        (0..keys.len())
            .filter(|&r| !keys.is_null(r) && !values.is_null(r))
            .map(|r| (keys.value(r), values.value(r)))
    })
}

/// Checks that an upload partition's entries decode as the fetcher will read them: one serving
/// info of this layout, and keys and batch values that decode. What the KV serves is then known
/// to be readable, whatever happened to the partition since `upload` wrote it.
#[derive(Default)]
struct UploadCheck {
    entries: usize,
    infos: usize,
}

impl UploadCheck {
    /// Checks the next entry; the first that does not decode is the error.
    fn entry(&mut self, key: &[u8], value: &[u8]) -> std::result::Result<(), String> {
        let i = self.entries;
        self.entries += 1;
        if key == SERVING_INFO_KEY {
            self.infos += 1;
            codec::decode::<StoredServingInfo>(value, "serving info")
                .map_err(|e| format!("its serving info row: {e}"))?;
        } else if codec::key_of(key).is_none() {
            return Err(format!("row {i} has a key that cannot be decoded"));
        } else {
            codec::decode::<BatchValue>(value, "value").map_err(|e| format!("row {i}: {e}"))?;
        }
        Ok(())
    }

    /// How many entries there are, or what is wrong with them.
    fn finish(self) -> std::result::Result<usize, String> {
        match self.infos {
            1 => Ok(self.entries),
            0 => Err(
                "it has no serving info row of this chronoflow's layout (uploaded by an older \
                 version, or damaged)"
                    .to_owned(),
            ),
            n => Err(format!("it has {n} serving info rows")),
        }
    }
}

/// The KV dataset holding a config's definition for the fetcher: Chronon's
/// `joins/<team>/<rest of name>` (`group_bys/…` for GroupBys), with the team taken from the name so
/// a fetcher finds it from the name alone.
pub fn metadata_dataset(kind: chronoflow_config::ConfigKind, name: &str) -> String {
    let team = name.split('.').next().unwrap_or(name);
    match kind {
        chronoflow_config::ConfigKind::Join => naming::join_metadata_key(team, name),
        _ => naming::group_by_metadata_key(team, name),
    }
}

/// `metadata-upload`: stores the definition for the fetcher, versioned by its content hash.
/// Returns false when that version is already served (nothing to do).
pub async fn metadata_upload(
    kv: &dyn KvStore,
    loaded: &LoadedConfig,
    config: StoredConfig,
) -> Result<bool> {
    let dataset = metadata_dataset(loaded.kind(), loaded.name());
    let version = &loaded.content_hash;
    if kv.active_version(&dataset).await?.as_deref() == Some(version.as_str()) {
        return Ok(false);
    }
    kv.begin_batch(&dataset, version).await?;
    kv.put_batch(
        &dataset,
        version,
        vec![(Vec::new(), codec::encode(&config))],
    )
    .await?;
    kv.commit_batch(&dataset, version).await?;
    Ok(true)
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    pub partitions: usize,
    pub rows: usize,
}

/// `streaming` in replay: feeds the rows of every partition after `since` of `table` (one of the
/// GroupBy's event sources) into its streaming dataset, as a topic consumer would feed arriving events. Rerunning
/// it appends nothing twice.
pub async fn replay(
    warehouse: &Warehouse,
    kv: &dyn KvStore,
    loaded: &LoadedConfig,
    table: &str,
    since: PartitionDate,
    progress: &mut (dyn FnMut(PartitionDate, usize) + Send),
) -> Result<ReplayReport> {
    let gb = group_by_of(loaded, "streaming")?;
    let table = TableName::parse(table)?;
    let dataset = streaming_dataset(loaded.name());
    let mut report = ReplayReport::default();
    for day in online::partitions_after(warehouse, gb, &table, since).await? {
        let streamed = online::replay_partition(warehouse, gb, &table, day).await?;
        let n = streamed.rows.len();
        append_streamed(kv, &dataset, day, streamed).await?;
        report.partitions += 1;
        report.rows += n;
        progress(day, n);
    }
    Ok(report)
}

/// Appends one partition's streamed rows, tagged with their layout; a row's origin is its day
/// and position.
pub async fn append_streamed(
    kv: &dyn KvStore,
    dataset: &str,
    day: PartitionDate,
    streamed: StreamedRows,
) -> Result<()> {
    let day_number = day.epoch_millis().div_euclid(DAY);
    let layout = streamed.schema.fingerprint();
    let entries: Vec<Entry> = streamed
        .rows
        .into_iter()
        .enumerate()
        .map(|(i, (key, row))| {
            let streamed = StreamedRow {
                origin: Origin::Replay {
                    day: day_number,
                    position: i as u64,
                },
                row,
            };
            (
                codec::key_bytes(&key),
                codec::encode_streamed(layout, &streamed),
            )
        })
        .collect();
    for chunk in entries.chunks(CHUNK) {
        kv.append(dataset, chunk.to_vec()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `upload` of returns.v1 for 10M users built one batch whose `value_json` passed
    /// 2 GiB, and Arrow's builder panicked ("byte array offset overflow"). Batches are now cut
    /// at a byte limit; here a small one, with every entry kept in order.
    #[test]
    fn upload_of_10m_keys_panicked_with_byte_array_offset_overflow() {
        let mut columns = UploadColumns::new(4096);
        let mut batches = Vec::new();
        for i in 0..1000u32 {
            let json = format!("{{\"user_id\": {i}, \"padding\": \"{}\"}}", "x".repeat(40));
            columns.push(&i.to_be_bytes(), json.as_bytes(), Some(&json), &json);
            if columns.full() {
                batches.push(columns.finish());
            }
        }
        batches.push(columns.finish());
        assert!(batches.len() > 10, "{} batches", batches.len());
        let mut next = 0u32;
        for batch in &batches {
            let values = batch.column(3).as_string::<i32>();
            assert!(
                values.values().len() < 4096 + 100,
                "{}",
                values.values().len()
            );
            for v in values.iter() {
                let v = v.expect("value_json is never null");
                assert!(v.starts_with(&format!("{{\"user_id\": {next},")), "{v}");
                next += 1;
            }
        }
        assert_eq!(next, 1000);
    }
}
