//! Fetch logging (SPEC §4.6): a key-consistent sample of Join requests and responses, plus one
//! schema event per Join version and day, written to the warehouse table `<join output>_log`,
//! partitioned by `ds` (one table per Join, so partitioned by Join, then by day).
//!
//! The fetch path only hashes the key and hands the record to a bounded channel (`try_send`):
//! it never waits on the writer. When the writer falls behind, records are dropped and counted.
//!
//! A record is acknowledged as logged once its write committed (the warehouse's append is atomic:
//! a crash mid-write leaves no partial file visible). Writes happen every flush interval, when a
//! batch fills, on `flush` and when the logger stops (SIGINT/SIGTERM of `serve` and
//! `standalone`); a failed write is retried on the next one, its records kept up to the channel's
//! capacity. Only records not yet acknowledged can be lost, by a kill -9 or a power cut.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::PartitionDate;
use chronoflow_config::naming::fetch_log_table;
use chronoflow_engine::window::date_of;
use chronoflow_engine::{TableName, Warehouse};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::KeySet;
use crate::fetched::Fetched;

/// Records buffered between the fetch path and the writer; also the most a failing writer keeps
/// for its retry.
const CAPACITY: usize = 100_000;
/// Records per write at most.
const BATCH: usize = 50_000;

/// What the fetcher tells the logger about a Join.
pub struct LoggedJoin<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub output_table: &'a str,
    pub sample_percent: f64,
    pub key_columns: &'a [String],
}

#[derive(Debug, Clone)]
struct LogRecord {
    table: String,
    ds: PartitionDate,
    join: String,
    ts_millis: i64,
    schema_hash: String,
    key_json: String,
    value_json: String,
    /// The schema event of the record's Join version, written once per day and version.
    schema_json: Arc<str>,
}

enum Message {
    Record(Box<LogRecord>),
    Flush(oneshot::Sender<()>),
}

/// What happened to the records handed to the logger, since it started.
#[derive(Debug, Default)]
struct Counters {
    /// Committed to the warehouse: acknowledged.
    written: AtomicU64,
    /// Never written: the channel was full, or a failing writer's retry buffer overflowed.
    dropped: AtomicU64,
    /// Write attempts that failed (their records are retried).
    failed_writes: AtomicU64,
    /// Held by the writer, not yet committed.
    pending: AtomicU64,
}

/// A snapshot of the logger's counters (the `POST /v1/log/flush` answer and `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LogStats {
    pub written: u64,
    pub dropped: u64,
    pub failed_writes: u64,
    pub pending: u64,
}

/// The schema event of each (Join, version) seen, built once.
type SchemaJsons = HashMap<(String, String), Arc<str>>;

/// The handle the fetcher logs through; cheap to share.
#[derive(Clone)]
pub struct FetchLogger {
    tx: mpsc::Sender<Message>,
    counters: Arc<Counters>,
    schemas: Arc<Mutex<SchemaJsons>>,
}

/// Whether a key set is in a `percent` sample: decided by a hash of its key values alone, so a
/// key is always or never logged.
pub fn sampled(key_json: &str, percent: f64) -> bool {
    if percent >= 100.0 {
        return true;
    }
    let h = chronoflow_config::repo::content_hash(key_json.as_bytes());
    let h = u64::from_str_radix(&h, 16).unwrap_or(0);
    ((h % 1_000_000) as f64) < percent * 10_000.0
}

impl FetchLogger {
    /// Starts the writer task, flushing every `every`.
    pub fn start(warehouse: Warehouse, every: Duration) -> FetchLogger {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            warehouse,
            counters: counters.clone(),
            pending: Vec::new(),
            schemas_written: HashSet::new(),
        };
        std::thread::Builder::new()
            .name("fetch-log-writer".to_owned())
            .spawn(move || {
                lower_priority();
                // The warehouse's futures are not all Send: the writer has a runtime of its own.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the log writer");
                runtime.block_on(writer.run(rx, every));
            })
            .expect("spawning the log writer");
        FetchLogger {
            tx,
            counters,
            schemas: Arc::default(),
        }
    }

    /// Records dropped so far (never written).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// The counters now.
    pub fn stats(&self) -> LogStats {
        let c = &self.counters;
        LogStats {
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed_writes: c.failed_writes.load(Ordering::Relaxed),
            pending: c.pending.load(Ordering::Relaxed),
        }
    }

    /// Appends the logger's counters in Prometheus' text format.
    pub fn render_metrics(&self, out: &mut String) {
        let s = self.stats();
        let _ = writeln!(
            out,
            "# HELP chronoflow_fetch_log_records_total Fetch-log records: written (committed, acknowledged) or dropped (never written: the writer fell behind or kept failing).\n\
             # TYPE chronoflow_fetch_log_records_total counter\n\
             chronoflow_fetch_log_records_total{{outcome=\"written\"}} {}\n\
             chronoflow_fetch_log_records_total{{outcome=\"dropped\"}} {}\n\
             # HELP chronoflow_fetch_log_write_failures_total Failed fetch-log writes (their records are retried).\n\
             # TYPE chronoflow_fetch_log_write_failures_total counter\n\
             chronoflow_fetch_log_write_failures_total {}\n\
             # HELP chronoflow_fetch_log_pending_records Fetch-log records held by the writer, not yet committed.\n\
             # TYPE chronoflow_fetch_log_pending_records gauge\n\
             chronoflow_fetch_log_pending_records {}",
            s.written, s.dropped, s.failed_writes, s.pending
        );
    }

    /// Logs the sampled share of one fetch of a Join.
    pub fn log(&self, join: &LoggedJoin<'_>, requests: &[KeySet], responses: &Fetched, at: i64) {
        // No key sets, nothing to log (and no schema to learn from a fetch that answered none).
        if join.sample_percent <= 0.0 || requests.is_empty() {
            return;
        }
        let ds = date_of(at);
        let table = fetch_log_table(join.output_table);
        let schema_json = self.schema_of(join, responses);
        for (i, request) in requests.iter().enumerate().take(responses.len()) {
            let keys: serde_json::Map<String, Value> = join
                .key_columns
                .iter()
                .map(|c| (c.clone(), request.get(c).cloned().unwrap_or(Value::Null)))
                .collect();
            let key_json = Value::Object(keys).to_string();
            if !sampled(&key_json, join.sample_percent) {
                continue;
            }
            self.send(LogRecord {
                table: table.clone(),
                ds,
                join: join.name.to_owned(),
                ts_millis: at,
                schema_hash: join.version.to_owned(),
                key_json,
                value_json: responses.features_json(i),
                schema_json: schema_json.clone(),
            });
        }
    }

    /// The schema event of a Join version: its key columns and the features it serves.
    fn schema_of(&self, join: &LoggedJoin<'_>, responses: &Fetched) -> Arc<str> {
        let mut schemas = self.schemas.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (join.name.to_owned(), join.version.to_owned());
        schemas
            .entry(key)
            .or_insert_with(|| {
                let features = responses.names();
                let schema = json!({
                    "join": join.name,
                    "key_columns": join.key_columns,
                    "features": features,
                });
                Arc::from(schema.to_string())
            })
            .clone()
    }

    fn send(&self, record: LogRecord) {
        if self.tx.try_send(Message::Record(Box::new(record))).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes everything logged so far; returns once the write committed (or failed, leaving the
    /// records for the next attempt), with the counters after it.
    pub async fn flush(&self) -> LogStats {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
        self.stats()
    }
}

/// A schema event a write adds: the version's key columns and features, at its first fetch.
struct SchemaEvent {
    version: String,
    at: i64,
    json: Arc<str>,
}

/// Lowers the calling thread's CPU priority (nice 10; threads it starts inherit it). The writer
/// encodes Parquet in bursts: on a busy machine they wait for fetches instead of delaying them
/// (measured: the p99 of closed-loop fetches on 2 cores, bench/consistency.sh).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's id changes only its nice value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// The writer task's state.
struct Writer {
    warehouse: Warehouse,
    counters: Arc<Counters>,
    /// Records received and not yet committed, oldest first.
    pending: Vec<LogRecord>,
    /// (table, day, version) whose schema event is committed in that day's partition.
    schemas_written: HashSet<(String, PartitionDate, String)>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(Message::Record(r)) => {
                        self.pending.push(*r);
                        self.counters.pending.fetch_add(1, Ordering::Relaxed);
                        if self.pending.len() >= BATCH {
                            self.write().await;
                        }
                    }
                    Some(Message::Flush(done)) => {
                        self.write().await;
                        let _ = done.send(());
                    }
                    None => {
                        self.write().await;
                        return;
                    }
                },
                _ = tick.tick() => self.write().await,
            }
        }
    }

    /// Appends the pending records, one file per (table, day), each with the schema events its
    /// day's partition does not hold yet. A failed write keeps its records for the next attempt
    /// (the fetch path must not stall on a warehouse outage), up to `CAPACITY`.
    async fn write(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut groups: BTreeMap<(String, PartitionDate), Vec<LogRecord>> = BTreeMap::new();
        for r in self.pending.drain(..) {
            groups.entry((r.table.clone(), r.ds)).or_default().push(r);
        }
        let mut failed: Vec<LogRecord> = Vec::new();
        for ((table, ds), records) in groups {
            let new_schemas = self.schemas_missing(&table, ds, &records);
            let batch = log_batch(&records, &new_schemas);
            let result = async {
                let name = TableName::parse(&table)?;
                self.warehouse
                    .append_partition(&name, "ds", ds, &[batch])
                    .await
            }
            .await;
            match result {
                Ok(_) => {
                    let n = records.len() as u64;
                    self.counters.written.fetch_add(n, Ordering::Relaxed);
                    self.counters.pending.fetch_sub(n, Ordering::Relaxed);
                    for event in new_schemas {
                        self.schemas_written
                            .insert((table.clone(), ds, event.version));
                    }
                }
                Err(e) => {
                    self.counters.failed_writes.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(table, %ds, records = records.len(), error = %e, "fetch log write failed: retried on the next write");
                    failed.extend(records);
                }
            }
        }
        if failed.len() > CAPACITY {
            let excess = failed.len() - CAPACITY;
            failed.drain(..excess);
            self.counters
                .dropped
                .fetch_add(excess as u64, Ordering::Relaxed);
            self.counters
                .pending
                .fetch_sub(excess as u64, Ordering::Relaxed);
        }
        self.pending = failed;
        self.forget_old_days();
    }

    /// The schema events (version, event JSON) a write of `records` to `table`'s partition `ds`
    /// must carry: one per version not yet written there by this writer. (After a restart they
    /// are written again; the flattener reads duplicates of a version's event as one.)
    fn schemas_missing(
        &self,
        table: &str,
        ds: PartitionDate,
        records: &[LogRecord],
    ) -> Vec<SchemaEvent> {
        let mut missing: BTreeMap<&str, SchemaEvent> = BTreeMap::new();
        for r in records {
            let key = (table.to_owned(), ds, r.schema_hash.clone());
            if self.schemas_written.contains(&key) {
                continue;
            }
            let event = missing
                .entry(&r.schema_hash)
                .or_insert_with(|| SchemaEvent {
                    version: r.schema_hash.clone(),
                    at: r.ts_millis,
                    json: r.schema_json.clone(),
                });
            event.at = event.at.min(r.ts_millis);
        }
        missing.into_values().collect()
    }

    /// Keeps the memory of written schema events to the last few days.
    fn forget_old_days(&mut self) {
        let Some(newest) = self.schemas_written.iter().map(|(_, ds, _)| *ds).max() else {
            return;
        };
        let horizon = newest.add_days(-2);
        self.schemas_written.retain(|(_, ds, _)| *ds >= horizon);
    }
}

/// The rows of one write: the schema events first, then the fetches.
fn log_batch(records: &[LogRecord], schemas: &[SchemaEvent]) -> RecordBatch {
    let mut event = StringBuilder::new();
    let mut join = StringBuilder::new();
    let mut ts = Int64Builder::new();
    let mut schema_hash = StringBuilder::new();
    let mut key_json = StringBuilder::new();
    let mut value_json = StringBuilder::new();
    let join_name = records.first().map(|r| r.join.as_str()).unwrap_or_default();
    for schema in schemas {
        event.append_value("schema");
        join.append_value(join_name);
        ts.append_value(schema.at);
        schema_hash.append_value(&schema.version);
        key_json.append_null();
        value_json.append_value(schema.json.as_ref());
    }
    for r in records {
        event.append_value("fetch");
        join.append_value(&r.join);
        ts.append_value(r.ts_millis);
        schema_hash.append_value(&r.schema_hash);
        key_json.append_value(&r.key_json);
        value_json.append_value(&r.value_json);
    }
    let schema = Schema::new(vec![
        Field::new("event", DataType::Utf8, false),
        Field::new("join_name", DataType::Utf8, false),
        Field::new("ts_millis", DataType::Int64, false),
        Field::new("schema_hash", DataType::Utf8, false),
        Field::new("key_json", DataType::Utf8, true),
        Field::new("value_json", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(event.finish()),
        Arc::new(join.finish()),
        Arc::new(ts.finish()),
        Arc::new(schema_hash.finish()),
        Arc::new(key_json.finish()),
        Arc::new(value_json.finish()),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("consistent columns")
}
