//! The batch side of serving: `upload` (a GroupBy's values as of the end of a day, into the
//! warehouse's upload table), `upload-to-kv` (that partition into the KV store, switched in
//! atomically), `metadata-upload` (definitions the fetcher reads), and streaming replay.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::naming::{self, batch_dataset, streaming_dataset, upload_table};
use chronoflow_config::{Config, GroupBy, LoadedConfig, PartitionDate};
use chronoflow_engine::online;
use chronoflow_engine::warehouse::PartitionInfo;
use chronoflow_engine::window::DAY;
use chronoflow_engine::{EngineError, TableName, Warehouse};

use crate::codec::{self, Origin, SERVING_INFO_KEY, StoredConfig, StoredServingInfo, StreamedRow};
use crate::error::{Result, ServeError};
use crate::kv::{Entry, KvStore};
use chronoflow_engine::online::{BatchValue, StreamedRows};

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
/// as partition `ds` of its upload table (`key_bytes`, `value_bytes`, and both as JSON to read).
pub async fn upload(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    config: StoredConfig,
    ds: PartitionDate,
) -> Result<PartitionInfo> {
    let gb = group_by_of(loaded, "upload")?;
    let upload = online::compute_upload(warehouse, gb, ds).await?;
    let info = StoredServingInfo {
        config,
        info: upload.info,
    };
    let mut columns = UploadColumns::new(upload.entries.len() + 1, UPLOAD_BATCH_BYTES);
    columns.push(
        SERVING_INFO_KEY,
        &codec::encode(&info),
        None,
        &to_json(loaded, &info.info)?,
    );
    // Each computed value is dropped once encoded, so the columns fill as the values go; a
    // batch is cut before any column nears Arrow's 2 GiB per array.
    let mut batches = Vec::new();
    for (key, value) in upload.entries {
        columns.push(
            &codec::key_bytes(&key),
            &codec::encode(&value),
            Some(&to_json(loaded, &key)?),
            &to_json(loaded, &value)?,
        );
        if columns.full() {
            batches.push(columns.finish());
        }
    }
    batches.push(columns.finish());
    let table = TableName::parse(&upload_table(&loaded.output_table(), loaded.dialect))?;
    Ok(warehouse
        .write_partition(&table, "ds", ds, &batches)
        .await?)
}

/// Bytes a column of one upload batch may hold before the batch is cut (Arrow's binary and
/// string arrays address theirs with `i32` offsets: 2 GiB).
const UPLOAD_BATCH_BYTES: usize = 256 << 20;

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
    fn new(entries: usize, limit: usize) -> UploadColumns {
        let n = entries.min(1 << 20);
        UploadColumns {
            limit,
            key_bytes: BinaryBuilder::with_capacity(n, n * 16),
            value_bytes: BinaryBuilder::with_capacity(n, n * 64),
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
        let schema = Schema::new(vec![
            Field::new("key_bytes", DataType::Binary, false),
            Field::new("value_bytes", DataType::Binary, false),
            Field::new("key_json", DataType::Utf8, true),
            Field::new("value_json", DataType::Utf8, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.key_bytes.finish()),
            Arc::new(self.value_bytes.finish()),
            Arc::new(self.key_json.finish()),
            Arc::new(self.value_json.finish()),
        ];
        // Every column got one value per entry, of its declared type.
        RecordBatch::try_new(Arc::new(schema), columns).expect("consistent columns")
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
    let batches = match warehouse.read_partition(&table, ds).await {
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
    // The entries are read where the partition's arrays hold them: checked in one pass, then
    // copied out one chunk at a time as they are written. (Copying every entry out first held the
    // partition twice: 1M keys of a TEMPORAL GroupBy took 1 GB.)
    let mut columns = Vec::with_capacity(batches.len());
    for batch in &batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_binary_opt::<i32>())
                .ok_or_else(|| ServeError::Config {
                    name: loaded.name().to_owned(),
                    message: format!("{table} partition {ds} has no binary column {name:?}"),
                })
        };
        columns.push((column("key_bytes")?, column("value_bytes")?));
    }
    let entries = || {
        columns.iter().flat_map(|(keys, values)| {
            (0..keys.len())
                .filter(|&r| !keys.is_null(r) && !values.is_null(r))
                .map(|r| (keys.value(r), values.value(r)))
        })
    };
    let total = check_upload(entries()).map_err(|message| ServeError::Config {
        name: loaded.name().to_owned(),
        message: format!("{table} partition {ds}: {message}; upload it again"),
    })?;
    let dataset = batch_dataset(loaded.name());
    // Reloading the day being served (a rerun, a fix) loads a second slot beside it.
    let version = match kv.active_version(&dataset).await? {
        Some(active) if active == ds.to_string() => format!("{ds}#2"),
        _ => ds.to_string(),
    };
    kv.begin_batch(&dataset, &version).await?;
    let mut done = 0;
    let mut chunk: Vec<Entry> = Vec::with_capacity(CHUNK.min(total));
    for (key, value) in entries() {
        chunk.push((key.to_vec(), value.to_vec()));
        if chunk.len() == CHUNK {
            done += chunk.len();
            kv.put_batch(&dataset, &version, std::mem::take(&mut chunk))
                .await?;
            progress(done, total);
        }
    }
    if !chunk.is_empty() {
        done += chunk.len();
        kv.put_batch(&dataset, &version, chunk).await?;
        progress(done, total);
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

/// Checks that an upload partition's entries decode as the fetcher will read them: one serving
/// info of this layout, and keys and batch values that decode. What the KV serves is then known
/// to be readable, whatever happened to the partition since `upload` wrote it. Returns how many
/// entries there are.
fn check_upload<'a>(
    entries: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> std::result::Result<usize, String> {
    let mut infos = 0;
    let mut count = 0;
    for (i, (key, value)) in entries.enumerate() {
        count += 1;
        if key == SERVING_INFO_KEY {
            infos += 1;
            codec::decode::<StoredServingInfo>(value, "serving info")
                .map_err(|e| format!("its serving info row: {e}"))?;
        } else if codec::key_of(key).is_none() {
            return Err(format!("row {i} has a key that cannot be decoded"));
        } else {
            codec::decode::<BatchValue>(value, "value").map_err(|e| format!("row {i}: {e}"))?;
        }
    }
    match infos {
        1 => Ok(count),
        0 => Err(
            "it has no serving info row of this chronoflow's layout (uploaded by an older \
             version, or damaged)"
                .to_owned(),
        ),
        n => Err(format!("it has {n} serving info rows")),
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
        let mut columns = UploadColumns::new(1000, 4096);
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
