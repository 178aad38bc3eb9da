//! Fetch logging (SPEC §4.6): a key-consistent sample of Join requests and responses, plus one
//! schema event per Join version, written to the warehouse table `<join output>_log`,
//! partitioned by `ds` (one table per Join, so partitioned by Join, then by day).
//!
//! The fetch path only hashes the key and hands the record to a bounded channel (`try_send`):
//! it never waits on the writer. When the writer falls behind, records are dropped and counted.

use std::collections::{BTreeMap, HashSet};
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
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::fetcher::{Features, KeySet};

/// Records buffered between the fetch path and the writer.
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
    event: &'static str,
    join: String,
    ts_millis: i64,
    schema_hash: String,
    key_json: Option<String>,
    value_json: String,
}

enum Message {
    Record(Box<LogRecord>),
    Flush(oneshot::Sender<()>),
}

/// The handle the fetcher logs through; cheap to share.
#[derive(Clone)]
pub struct FetchLogger {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    schemas: Arc<Mutex<HashSet<(String, String)>>>,
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
        std::thread::Builder::new()
            .name("fetch-log-writer".to_owned())
            .spawn(move || {
                // The warehouse's futures are not all Send: the writer has a runtime of its own.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the log writer");
                runtime.block_on(write_loop(warehouse, rx, every));
            })
            .expect("spawning the log writer");
        FetchLogger {
            tx,
            dropped: Arc::default(),
            schemas: Arc::default(),
        }
    }

    /// Records dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Logs the sampled share of one fetch of a Join.
    pub fn log(&self, join: &LoggedJoin<'_>, requests: &[KeySet], responses: &[Features], at: i64) {
        if join.sample_percent <= 0.0 {
            return;
        }
        let ds = date_of(at);
        let table = fetch_log_table(join.output_table);
        let new_schema = self
            .schemas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((join.name.to_owned(), join.version.to_owned()));
        if new_schema {
            let features: Vec<&String> = responses
                .first()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            let schema = json!({
                "join": join.name,
                "key_columns": join.key_columns,
                "features": features,
            });
            self.send(LogRecord {
                table: table.clone(),
                ds,
                event: "schema",
                join: join.name.to_owned(),
                ts_millis: at,
                schema_hash: join.version.to_owned(),
                key_json: None,
                value_json: schema.to_string(),
            });
        }
        for (request, response) in requests.iter().zip(responses) {
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
                event: "fetch",
                join: join.name.to_owned(),
                ts_millis: at,
                schema_hash: join.version.to_owned(),
                key_json: Some(key_json),
                value_json: Value::Object(response.clone()).to_string(),
            });
        }
    }

    fn send(&self, record: LogRecord) {
        if self.tx.try_send(Message::Record(Box::new(record))).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes everything logged so far; returns once it is in the warehouse.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(warehouse: Warehouse, mut rx: mpsc::Receiver<Message>, every: Duration) {
    let mut buffer: Vec<LogRecord> = Vec::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Record(r)) => {
                    buffer.push(*r);
                    if buffer.len() >= BATCH {
                        write(&warehouse, &mut buffer).await;
                    }
                }
                Some(Message::Flush(done)) => {
                    write(&warehouse, &mut buffer).await;
                    let _ = done.send(());
                }
                None => {
                    write(&warehouse, &mut buffer).await;
                    return;
                }
            },
            _ = tick.tick() => write(&warehouse, &mut buffer).await,
        }
    }
}

/// Appends the buffered records, one file per (table, day). A failed write is logged and its
/// records dropped: the fetch path must not stall on a warehouse outage.
async fn write(warehouse: &Warehouse, buffer: &mut Vec<LogRecord>) {
    let mut groups: BTreeMap<(String, PartitionDate), Vec<LogRecord>> = BTreeMap::new();
    for r in buffer.drain(..) {
        groups.entry((r.table.clone(), r.ds)).or_default().push(r);
    }
    for ((table, ds), records) in groups {
        let result = async {
            let name = TableName::parse(&table)?;
            warehouse
                .append_partition(&name, "ds", ds, &[log_batch(&records)])
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(table, %ds, records = records.len(), error = %e, "fetch log write failed");
        }
    }
}

fn log_batch(records: &[LogRecord]) -> RecordBatch {
    let mut event = StringBuilder::new();
    let mut join = StringBuilder::new();
    let mut ts = Int64Builder::new();
    let mut schema_hash = StringBuilder::new();
    let mut key_json = StringBuilder::new();
    let mut value_json = StringBuilder::new();
    for r in records {
        event.append_value(r.event);
        join.append_value(&r.join);
        ts.append_value(r.ts_millis);
        schema_hash.append_value(&r.schema_hash);
        key_json.append_option(r.key_json.as_deref());
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
