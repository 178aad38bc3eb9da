//! The consumer loop: fetch from every partition of the GroupBy's topics, decode, evaluate the
//! source query (the backfill's code), and store the rows and the new offsets in one atomic
//! KV write.
//!
//! Delivery: offsets live in the KV store, written in the same transaction (redb) or script
//! (Redis) as the rows they cover, so after a crash at any instant the store holds both or
//! neither; a restart resumes from them. A row's stored value names its record (topic,
//! partition, offset, source), and the streaming dataset is a set: a record delivered twice
//! adds nothing. Together: every record counted exactly once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::naming::{batch_dataset, streaming_dataset};
use chronoflow_config::{Config, GroupBy, LoadedConfig, PartitionDate, Source};
use chronoflow_engine::TableName;
use chronoflow_engine::online::{self, StreamedRecords};
use chronoflow_engine::source::ORIGIN;
use chronoflow_engine::warehouse::Warehouse;
use chronoflow_serve::codec::{self, Origin, StreamedRow};
use chronoflow_serve::kv::{Checkpoint, Entry, KvStore};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::RecordAndOffset;
use tokio::sync::watch;

use crate::decode::{self, RecordDecoder, Row};
use crate::error::{Result, StreamError};
use crate::status::{PartitionStatus, StreamStatus};
use crate::topic::{Format, Topic};

/// The column a record's (placeholder) partition goes in: a record's partition is its event's
/// day, known only once the query gave its time.
const RECORD_DS: &str = "__record_ds";

/// How long a broker may take to answer beyond a fetch's own wait before it counts as down.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Where a stream starts in a partition it has no stored offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

/// Kafka's own default per partition (`max.partition.fetch.bytes`): about 8,000 records of 128
/// bytes. A live stream's fetches are far smaller; this bounds how a lagging one catches up,
/// and what a killed consumer redoes. Smaller costs brokers more: tansu rescans a partition's
/// backlog for every fetch, so at 256 KiB it spent 2.5 times the CPU per record (BENCHMARKS.md).
pub const DEFAULT_MAX_FETCH_BYTES: i32 = 1 << 20;

/// How long the broker may hold a fetch open waiting for records, by default.
pub const DEFAULT_FETCH_MAX_WAIT_MS: u64 = 100;

/// How a stream runs.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Bootstrap brokers (`host:port`); when empty, the topic's `host`/`port` arguments.
    pub brokers: Vec<String>,
    /// Records larger than this are malformed.
    pub max_record_bytes: usize,
    /// Bytes fetched per partition per request.
    pub max_fetch_bytes: i32,
    /// How long the broker may hold a fetch open waiting for records.
    pub max_wait: Duration,
    /// Malformed records are also appended here (JSON lines), or produced to `topic:<name>`.
    pub dead_letter: Option<String>,
    /// The status file, rewritten about once a second.
    pub status_file: Option<PathBuf>,
    /// The Avro writer schema, when not given by the topic's `schema=` argument.
    pub avro_schema: Option<PathBuf>,
    /// Relative paths of the topic's `schema=` argument are read from here.
    pub repo_dir: Option<PathBuf>,
    pub start_from: StartFrom,
    /// Return once every partition has been read to its end (tests, benchmarks, backfilling a
    /// topic once).
    pub until_caught_up: bool,
    /// The longest wait between retries while the broker or the KV store is unreachable.
    pub max_backoff: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            brokers: Vec::new(),
            max_record_bytes: 1 << 20,
            max_fetch_bytes: DEFAULT_MAX_FETCH_BYTES,
            max_wait: Duration::from_millis(DEFAULT_FETCH_MAX_WAIT_MS),
            dead_letter: None,
            status_file: None,
            avro_schema: None,
            repo_dir: None,
            start_from: StartFrom::Earliest,
            until_caught_up: false,
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// What a stream did before it returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamReport {
    pub records_read: u64,
    pub rows_written: u64,
    pub malformed: u64,
}

/// One topic of the GroupBy: the sources reading it and how to decode its records.
struct TopicReader {
    topic: Topic,
    /// Indices of the GroupBy's event sources with this topic.
    sources: Vec<usize>,
    decoder: RecordDecoder,
    partitions: BTreeMap<i32, PartitionReader>,
}

struct PartitionReader {
    client: Option<Arc<PartitionClient>>,
    /// Every record before it is stored or skipped for good.
    next: i64,
    high_watermark: i64,
}

/// A record that became no row, and why.
struct Rejected {
    topic: String,
    partition: i32,
    offset: i64,
    reason: String,
    value: Option<Vec<u8>>,
}

/// Runs the stream of `loaded` (a TEMPORAL GroupBy with topics) until `stop` turns true, or
/// (with `until_caught_up`) every partition is read to its end. The status is kept in
/// `status` (and its file). Unreachable brokers and KV stores are retried with capped
/// backoff; an error is returned only for what retrying cannot fix (the definition).
pub async fn run_stream(
    loaded: &LoadedConfig,
    warehouse: &Warehouse,
    kv: Arc<dyn KvStore>,
    options: StreamOptions,
    status: Arc<Mutex<StreamStatus>>,
    mut stop: watch::Receiver<bool>,
) -> Result<StreamReport> {
    let mut stream = Stream::new(loaded, warehouse, kv, options, status).await?;
    let result = stream.run(&mut stop).await;
    stream.set_state(
        if result.is_ok() { "stopped" } else { "failed" },
        result.as_ref().err().map(ToString::to_string),
    );
    stream.write_status();
    result
}

struct Stream {
    gb: GroupBy,
    dataset: String,
    checkpoint_name: String,
    kv: Arc<dyn KvStore>,
    options: StreamOptions,
    brokers: Vec<String>,
    client: Option<Client>,
    topics: Vec<TopicReader>,
    status: Arc<Mutex<StreamStatus>>,
    report: StreamReport,
    last_event_ms: Option<i64>,
    /// The batch day streamed rows were last pruned for.
    pruned_for: Option<PartitionDate>,
    /// The fetch in flight while the last batch was being stored.
    prefetch: Option<Prefetch>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.cancel_prefetch();
    }
}

fn config_error(gb: &GroupBy, message: impl Into<String>) -> StreamError {
    StreamError::Config {
        group_by: gb.metadata.name.clone(),
        message: message.into(),
    }
}

impl Stream {
    async fn new(
        loaded: &LoadedConfig,
        warehouse: &Warehouse,
        kv: Arc<dyn KvStore>,
        options: StreamOptions,
        status: Arc<Mutex<StreamStatus>>,
    ) -> Result<Stream> {
        let Config::GroupBy(gb) = &loaded.config else {
            return Err(StreamError::Config {
                group_by: loaded.name().to_owned(),
                message: "--mode streaming takes a GroupBy".to_owned(),
            });
        };
        if !online::is_temporal(gb) {
            return Err(config_error(
                gb,
                "only TEMPORAL GroupBys stream (a topic on an events source, or accuracy TEMPORAL)",
            ));
        }
        let mut by_topic: BTreeMap<String, (Topic, Vec<usize>)> = BTreeMap::new();
        for (i, source) in gb.sources.iter().enumerate() {
            if let Source::Events(events) = source
                && let Some(text) = &events.topic
            {
                let topic = Topic::parse(text).map_err(|e| config_error(gb, e))?;
                by_topic
                    .entry(topic.name.clone())
                    .or_insert_with(|| (topic, Vec::new()))
                    .1
                    .push(i);
            }
        }
        if by_topic.is_empty() {
            return Err(config_error(
                gb,
                "no events source has a topic: nothing to consume (replay a table instead: --replay-table)",
            ));
        }
        let mut brokers = options.brokers.clone();
        if brokers.is_empty() {
            brokers = by_topic
                .values()
                .filter_map(|(t, _)| t.broker.clone())
                .collect();
            brokers.dedup();
        }
        if brokers.is_empty() {
            return Err(config_error(
                gb,
                "no Kafka brokers: give --kafka-brokers host:port (or host=/port= in the topic)",
            ));
        }
        let mut topics = Vec::new();
        for (_, (topic, sources)) in by_topic {
            let decoder = decoder_for(gb, warehouse, &topic, &sources, &options).await?;
            // The query must fit the records' columns: checked now, on no records, so a
            // definition error stops the stream instead of marking every record malformed.
            for &s in &sources {
                online::stream_records(
                    gb,
                    s,
                    with_origin(decoder.batch(&[]).map_err(|e| config_error(gb, e))?, 0)?,
                    RECORD_DS,
                )
                .await?;
            }
            topics.push(TopicReader {
                topic,
                sources,
                decoder,
                partitions: BTreeMap::new(),
            });
        }
        {
            let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
            s.group_by = gb.metadata.name.clone();
            s.topic = topics
                .iter()
                .map(|t| t.topic.name.as_str())
                .collect::<Vec<_>>()
                .join(",");
            s.pid = std::process::id();
            s.state = "starting".to_owned();
        }
        Ok(Stream {
            dataset: streaming_dataset(&gb.metadata.name),
            checkpoint_name: format!("stream:{}", gb.metadata.name),
            gb: gb.clone(),
            kv,
            options,
            brokers,
            client: None,
            topics,
            status,
            report: StreamReport::default(),
            last_event_ms: None,
            pruned_for: None,
            prefetch: None,
        })
    }

    async fn run(&mut self, stop: &mut watch::Receiver<bool>) -> Result<StreamReport> {
        let mut backoff = Duration::from_millis(100);
        let mut last_status = Instant::now() - Duration::from_secs(10);
        let mut last_housekeeping = Instant::now() - Duration::from_secs(3600);
        let mut last_log = Instant::now();
        loop {
            if *stop.borrow() {
                return Ok(self.report.clone());
            }
            if last_housekeeping.elapsed() >= Duration::from_secs(30) {
                last_housekeeping = Instant::now();
                if let Err(e) = self.housekeeping().await {
                    tracing::warn!(group_by = %self.gb.metadata.name, error = %e, "housekeeping");
                }
            }
            match self.step().await {
                Ok(caught_up) => {
                    backoff = Duration::from_millis(100);
                    self.set_state("running", None);
                    if caught_up && self.options.until_caught_up {
                        self.write_status();
                        return Ok(self.report.clone());
                    }
                }
                Err(Step::Fatal(e)) => return Err(e),
                Err(Step::Retry(message)) => {
                    tracing::warn!(
                        group_by = %self.gb.metadata.name,
                        retry_in_ms = backoff.as_millis() as u64,
                        "{message}"
                    );
                    self.set_state("retrying", Some(message));
                    self.write_status();
                    // Reconnect from scratch: the broker may have come back elsewhere.
                    self.cancel_prefetch();
                    self.client = None;
                    for t in &mut self.topics {
                        for p in t.partitions.values_mut() {
                            p.client = None;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
            if last_status.elapsed() >= Duration::from_secs(1) {
                last_status = Instant::now();
                self.write_status();
            }
            if last_log.elapsed() >= Duration::from_secs(10) {
                last_log = Instant::now();
                let s = self.snapshot();
                tracing::info!(
                    group_by = %self.gb.metadata.name,
                    records = s.records_read,
                    rows = s.rows_written,
                    malformed = s.malformed,
                    lag = s.total_lag(),
                    "streaming"
                );
            }
        }
    }

    fn snapshot(&self) -> StreamStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_state(&self, state: &str, error: Option<String>) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        s.state = state.to_owned();
        if error.is_some() {
            s.last_error = error;
        }
        s.updated_ms = now_ms();
        s.records_read = self.report.records_read;
        s.rows_written = self.report.rows_written;
        s.malformed = self.report.malformed;
        s.last_event_ms = self.last_event_ms;
        s.partitions = self
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|(p, r)| PartitionStatus {
                    topic: t.topic.name.clone(),
                    partition: *p,
                    committed_offset: r.next,
                    high_watermark: r.high_watermark,
                    lag: (r.high_watermark - r.next).max(0),
                })
            })
            .collect();
    }

    fn write_status(&self) {
        if let Some(path) = &self.options.status_file {
            let status = self.snapshot();
            if let Err(e) = status.write(path) {
                tracing::warn!(path = %path.display(), error = %e, "writing the stream status");
            }
        }
    }

    /// Drops streamed rows the served batch covers, once per batch day.
    async fn housekeeping(&mut self) -> Result<()> {
        let version = self
            .kv
            .active_version(&batch_dataset(&self.gb.metadata.name))
            .await?;
        let Some(ds) = version
            .as_deref()
            .and_then(|v| v.get(..10))
            .and_then(|d| PartitionDate::parse(d).ok())
        else {
            return Ok(());
        };
        if self.pruned_for != Some(ds) {
            let dropped =
                chronoflow_serve::upload::prune_streamed(self.kv.as_ref(), &self.dataset, ds)
                    .await?;
            tracing::info!(group_by = %self.gb.metadata.name, batch_ds = %ds, dropped, "dropped streamed rows the batch covers");
            self.pruned_for = Some(ds);
        }
        Ok(())
    }

    /// Connects, and learns every partition of every topic (with its starting offset).
    async fn connect(&mut self) -> std::result::Result<(), Step> {
        if self.client.is_none() {
            let client = ClientBuilder::new(self.brokers.clone())
                .client_id("chronoflow")
                .backoff_config(rskafka::BackoffConfig {
                    deadline: Some(Duration::from_secs(5)),
                    ..Default::default()
                })
                .build()
                .await
                .map_err(|e| {
                    Step::Retry(format!("connecting to {}: {e}", self.brokers.join(",")))
                })?;
            self.client = Some(client);
        }
        let Some(client) = &self.client else {
            return Ok(());
        };
        if self
            .topics
            .iter()
            .all(|t| !t.partitions.is_empty() && t.partitions.values().all(|p| p.client.is_some()))
        {
            return Ok(());
        }
        let listed = client
            .list_topics()
            .await
            .map_err(|e| Step::Retry(format!("listing topics: {e}")))?;
        let stored = self.stored_offsets().await?;
        for t in &mut self.topics {
            let Some(found) = listed.iter().find(|l| l.name == t.topic.name) else {
                return Err(Step::Retry(format!(
                    "topic {} does not exist on {} (yet)",
                    t.topic.name,
                    self.brokers.join(",")
                )));
            };
            for &p in &found.partitions {
                let pc = client
                    .partition_client(t.topic.name.clone(), p, UnknownTopicHandling::Retry)
                    .await
                    .map_err(|e| Step::Retry(format!("{} partition {p}: {e}", t.topic.name)))?;
                let reader = match t.partitions.get_mut(&p) {
                    Some(r) => r,
                    None => {
                        let next = match stored.get(&t.topic.name).and_then(|o| o.get(&p)) {
                            Some(next) => *next,
                            None => pc
                                .get_offset(match self.options.start_from {
                                    StartFrom::Earliest => OffsetAt::Earliest,
                                    StartFrom::Latest => OffsetAt::Latest,
                                })
                                .await
                                .map_err(|e| {
                                    Step::Retry(format!(
                                        "{} partition {p}: offsets: {e}",
                                        t.topic.name
                                    ))
                                })?,
                        };
                        t.partitions.entry(p).or_insert(PartitionReader {
                            client: None,
                            next,
                            high_watermark: next,
                        })
                    }
                };
                reader.client = Some(Arc::new(pc));
            }
        }
        Ok(())
    }

    /// The offsets stored with the rows: topic -> partition -> next offset.
    async fn stored_offsets(
        &self,
    ) -> std::result::Result<BTreeMap<String, BTreeMap<i32, i64>>, Step> {
        let stored = self
            .kv
            .checkpoint(&self.checkpoint_name)
            .await
            .map_err(|e| Step::Retry(format!("reading the stored offsets: {e}")))?;
        match stored {
            None => Ok(BTreeMap::new()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Step::Fatal(config_error(
                    &self.gb,
                    format!(
                        "the stored offsets ({}) cannot be read: {e}",
                        self.checkpoint_name
                    ),
                ))
            }),
        }
    }

    /// One round: fetch what every partition has, store it. Whether everything was read.
    async fn step(&mut self) -> std::result::Result<bool, Step> {
        tokio::time::timeout(ANSWER_WITHIN, self.connect())
            .await
            .map_err(|_| {
                Step::Retry(format!(
                    "no answer from {} within {ANSWER_WITHIN:?}",
                    self.brokers.join(",")
                ))
            })??;
        // The fetch that went out while the last batch was stored, when it asked from where
        // that batch ends (it always does unless a retry reset the positions since).
        let answers = match self.prefetch.take() {
            Some(prefetch) if prefetch.from == self.fetch_positions() => prefetch
                .answers
                .await
                .map_err(|e| Step::Retry(format!("fetching: {e}")))?,
            Some(stale) => {
                stale.answers.abort();
                self.fetch_from(&self.fetch_positions()).await
            }
            None => self.fetch_from(&self.fetch_positions()).await,
        }?;
        let mut fetched: Vec<(usize, i32, Vec<RecordAndOffset>)> = Vec::new();
        for (ti, p, result) in answers {
            let topic = self.topics[ti].topic.name.clone();
            match result {
                Ok((records, high_watermark)) => {
                    if let Some(r) = self.topics[ti].partitions.get_mut(&p) {
                        r.high_watermark = high_watermark;
                        let next = r.next;
                        let records: Vec<RecordAndOffset> =
                            records.into_iter().filter(|r| r.offset >= next).collect();
                        if !records.is_empty() {
                            fetched.push((ti, p, records));
                        }
                    }
                }
                Err(rskafka::client::error::Error::ServerError {
                    protocol_error: rskafka::client::error::ProtocolError::OffsetOutOfRange,
                    ..
                }) => {
                    // Retention removed records not read yet: they are gone; say so loudly and
                    // go on from the earliest kept.
                    let Some(r) = self.topics[ti].partitions.get_mut(&p) else {
                        continue;
                    };
                    let Some(client) = r.client.clone() else {
                        continue;
                    };
                    let earliest = client
                        .get_offset(OffsetAt::Earliest)
                        .await
                        .map_err(|e| Step::Retry(format!("{topic} partition {p}: offsets: {e}")))?;
                    tracing::error!(topic = %topic, partition = p, from = r.next, to = earliest, "records were deleted by the broker before they were read: skipping to the earliest kept");
                    r.next = earliest.max(r.next);
                }
                Err(e) => return Err(Step::Retry(format!("fetching {topic} partition {p}: {e}"))),
            }
        }
        if fetched.is_empty() {
            return Ok(self.caught_up());
        }
        // Fetch the next records while these are decoded and stored: a broker that holds every
        // fetch for its full wait (tansu does) then costs max(wait, store) a round, not the sum.
        let from: Vec<(usize, i32, i64)> = self
            .fetch_positions()
            .into_iter()
            .map(|(ti, p, next)| {
                let after = fetched
                    .iter()
                    .find(|(fti, fp, _)| (*fti, *fp) == (ti, p))
                    .and_then(|(_, _, records)| records.last())
                    .map_or(next, |last| last.offset + 1);
                (ti, p, after)
            })
            .collect();
        if !self.options.until_caught_up || !self.caught_up_after(&from) {
            self.prefetch = Some(Prefetch {
                answers: tokio::spawn(self.fetch_from(&from)),
                from,
            });
        }
        if let Err(e) = self.store(fetched).await {
            self.cancel_prefetch();
            return Err(e);
        }
        Ok(self.caught_up())
    }

    /// Where each connected partition's next fetch starts: its first record not stored yet.
    fn fetch_positions(&self) -> Vec<(usize, i32, i64)> {
        self.topics
            .iter()
            .enumerate()
            .flat_map(|(ti, t)| {
                t.partitions
                    .iter()
                    .filter(|(_, r)| r.client.is_some())
                    .map(move |(&p, r)| (ti, p, r.next))
            })
            .collect()
    }

    fn caught_up_after(&self, from: &[(usize, i32, i64)]) -> bool {
        from.iter().all(|&(ti, p, next)| {
            self.topics[ti]
                .partitions
                .get(&p)
                .is_none_or(|r| next >= r.high_watermark)
        })
    }

    /// One fetch from each partition in `from`, at its position; owns what it needs, so it can
    /// run as a task of its own while a batch is stored.
    fn fetch_from(
        &self,
        from: &[(usize, i32, i64)],
    ) -> impl Future<Output = std::result::Result<Vec<FetchAnswer>, Step>> + Send + 'static {
        let requests = from
            .iter()
            .filter_map(|&(ti, p, next)| {
                let client = self.topics[ti].partitions.get(&p)?.client.clone()?;
                Some(FetchRequest {
                    topic: ti,
                    partition: p,
                    client,
                    from: next,
                })
            })
            .collect();
        fetch_partitions(
            requests,
            self.options.max_wait,
            self.options.max_fetch_bytes,
            self.brokers.join(","),
        )
    }

    fn cancel_prefetch(&mut self) {
        if let Some(prefetch) = self.prefetch.take() {
            prefetch.answers.abort();
        }
    }

    fn caught_up(&self) -> bool {
        self.topics
            .iter()
            .all(|t| t.partitions.values().all(|p| p.next >= p.high_watermark))
    }

    /// Decodes and evaluates the fetched records, and stores their rows with the new offsets.
    async fn store(
        &mut self,
        fetched: Vec<(usize, i32, Vec<RecordAndOffset>)>,
    ) -> std::result::Result<(), Step> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut rejected: Vec<Rejected> = Vec::new();
        let mut new_offsets: Vec<(usize, i32, i64)> = Vec::new();
        let mut records_read = 0u64;
        let mut last_event = self.last_event_ms;
        let mut per_topic: BTreeMap<usize, Vec<(i32, RecordAndOffset)>> = BTreeMap::new();
        for (ti, p, records) in fetched {
            if let Some(last) = records.last() {
                new_offsets.push((ti, p, last.offset + 1));
            }
            records_read += records.len() as u64;
            per_topic
                .entry(ti)
                .or_default()
                .extend(records.into_iter().map(|r| (p, r)));
        }
        for (ti, records) in per_topic {
            let reader = &self.topics[ti];
            let topic = reader.topic.name.clone();
            let mut rows: Vec<Row> = Vec::with_capacity(records.len());
            let mut kept: Vec<(i32, i64)> = Vec::with_capacity(records.len());
            for (p, r) in &records {
                match reader.decoder.decode(r.record.value.as_deref()) {
                    Ok(row) => {
                        rows.push(row);
                        kept.push((*p, r.offset));
                    }
                    Err(reason) => rejected.push(Rejected {
                        topic: topic.clone(),
                        partition: *p,
                        offset: r.offset,
                        reason,
                        value: r.record.value.clone(),
                    }),
                }
            }
            if rows.is_empty() {
                continue;
            }
            for &source in &reader.sources {
                let streamed = evaluate(&self.gb, source, &reader.decoder, &rows).await;
                let source_no = u32::try_from(source).unwrap_or(u32::MAX);
                let layout = streamed.schema.fingerprint();
                for (record, reason) in streamed.rejected {
                    let (p, offset) = kept[record as usize];
                    rejected.push(Rejected {
                        topic: topic.clone(),
                        partition: p,
                        offset,
                        reason,
                        value: value_of(&records, &kept, record as usize),
                    });
                }
                for mut row in streamed.rows {
                    let (partition, offset) = kept[row.record as usize];
                    last_event = last_event.max(Some(row.row.ts));
                    // A record naming its partition lands there, as in the table; else on its
                    // event's day.
                    if let Some(day) = rows
                        .get(row.record as usize)
                        .and_then(|r| reader.decoder.partition_day(r))
                    {
                        row.row.day = day;
                    }
                    let value = codec::encode_streamed(
                        layout,
                        &StreamedRow {
                            origin: Origin::Topic {
                                topic: topic.clone(),
                                partition,
                                offset,
                                source: source_no,
                            },
                            row: row.row,
                        },
                    );
                    entries.push((codec::key_bytes(&row.key), value));
                }
            }
        }
        // Malformed records are logged (and dead-lettered) before the offsets move past them.
        rejected.sort_by(|a, b| {
            (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset))
        });
        rejected.dedup_by(|a, b| {
            (&a.topic, a.partition, a.offset) == (&b.topic, b.partition, b.offset)
        });
        self.reject(&rejected).await?;
        let mut offsets = self.committed_offsets();
        for &(ti, p, next) in &new_offsets {
            offsets
                .entry(self.topics[ti].topic.name.clone())
                .or_default()
                .insert(p, next);
        }
        let checkpoint = Checkpoint {
            name: self.checkpoint_name.clone(),
            value: serde_json::to_vec(&offsets).map_err(|e| Step::Retry(e.to_string()))?,
        };
        let rows_written = entries.len() as u64;
        self.kv
            .append_checkpointed(&self.dataset, entries, checkpoint)
            .await
            .map_err(|e| Step::Retry(format!("storing rows: {e}")))?;
        for (ti, p, next) in new_offsets {
            if let Some(r) = self.topics[ti].partitions.get_mut(&p) {
                r.next = next;
            }
        }
        self.report.records_read += records_read;
        self.report.rows_written += rows_written;
        self.report.malformed += rejected.len() as u64;
        self.last_event_ms = last_event;
        Ok(())
    }

    fn committed_offsets(&self) -> BTreeMap<String, BTreeMap<i32, i64>> {
        self.topics
            .iter()
            .map(|t| {
                (
                    t.topic.name.clone(),
                    t.partitions.iter().map(|(p, r)| (*p, r.next)).collect(),
                )
            })
            .collect()
    }

    /// Logs malformed records with their offsets, and copies them to the dead letter sink.
    async fn reject(&mut self, rejected: &[Rejected]) -> std::result::Result<(), Step> {
        const LOGGED: usize = 20;
        for r in rejected.iter().take(LOGGED) {
            tracing::warn!(
                group_by = %self.gb.metadata.name,
                topic = %r.topic,
                partition = r.partition,
                offset = r.offset,
                "malformed record skipped: {}",
                r.reason
            );
        }
        if rejected.len() > LOGGED {
            tracing::warn!(
                group_by = %self.gb.metadata.name,
                more = rejected.len() - LOGGED,
                "more malformed records skipped in this batch"
            );
        }
        let Some(sink) = self.options.dead_letter.clone() else {
            return Ok(());
        };
        if rejected.is_empty() {
            return Ok(());
        }
        if let Some(topic) = sink.strip_prefix("topic:") {
            let Some(client) = &self.client else {
                return Err(Step::Retry(
                    "no broker connection for the dead letter topic".to_owned(),
                ));
            };
            let pc = client
                .partition_client(topic.to_owned(), 0, UnknownTopicHandling::Retry)
                .await
                .map_err(|e| Step::Retry(format!("dead letter topic {topic}: {e}")))?;
            let records = rejected
                .iter()
                .map(|r| rskafka::record::Record {
                    key: None,
                    value: r.value.clone(),
                    headers: BTreeMap::from([
                        ("chronoflow.topic".to_owned(), r.topic.clone().into_bytes()),
                        (
                            "chronoflow.partition".to_owned(),
                            r.partition.to_string().into_bytes(),
                        ),
                        (
                            "chronoflow.offset".to_owned(),
                            r.offset.to_string().into_bytes(),
                        ),
                        (
                            "chronoflow.reason".to_owned(),
                            r.reason.clone().into_bytes(),
                        ),
                    ]),
                    timestamp: chrono::Utc::now(),
                })
                .collect();
            pc.produce(records, Default::default())
                .await
                .map_err(|e| Step::Retry(format!("dead letter topic {topic}: {e}")))?;
            return Ok(());
        }
        let mut text = String::new();
        for r in rejected {
            let mut line = serde_json::json!({
                "group_by": self.gb.metadata.name,
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "reason": r.reason,
            });
            match r.value.as_deref().map(std::str::from_utf8) {
                Some(Ok(v)) => line["value"] = v.into(),
                Some(Err(_)) => {
                    line["value_hex"] = r
                        .value
                        .iter()
                        .flatten()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                        .into()
                }
                None => {}
            }
            text.push_str(&line.to_string());
            text.push('\n');
        }
        use tokio::io::AsyncWriteExt;
        let write = async {
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&sink)
                .await?;
            file.write_all(text.as_bytes()).await?;
            file.sync_data().await
        };
        write
            .await
            .map_err(|e| Step::Retry(format!("writing the dead letter file {sink}: {e}")))
    }
}

/// The value of decoded record `record` (`kept` maps decoded records to partition and offset).
fn value_of(
    records: &[(i32, RecordAndOffset)],
    kept: &[(i32, i64)],
    record: usize,
) -> Option<Vec<u8>> {
    let (p, offset) = *kept.get(record)?;
    records
        .iter()
        .find(|(rp, r)| *rp == p && r.offset == offset)
        .and_then(|(_, r)| r.record.value.clone())
}

/// A fetch from one partition.
struct FetchRequest {
    topic: usize,
    partition: i32,
    client: Arc<PartitionClient>,
    from: i64,
}

/// A partition's answer: its records and high watermark, or why not.
type FetchAnswer = (
    usize,
    i32,
    std::result::Result<(Vec<RecordAndOffset>, i64), rskafka::client::error::Error>,
);

/// A fetch sent before the batch it follows was stored, and the positions it asked from.
struct Prefetch {
    from: Vec<(usize, i32, i64)>,
    answers: tokio::task::JoinHandle<std::result::Result<Vec<FetchAnswer>, Step>>,
}

/// Fetches every partition of `requests` at once. rskafka's own retries bound the time spent
/// sleeping between attempts, not an attempt that waits on a dead connection: without the
/// timeout an outage could look like a quiet topic (found by the broker-outage test under load).
async fn fetch_partitions(
    requests: Vec<FetchRequest>,
    max_wait: Duration,
    max_bytes: i32,
    brokers: String,
) -> std::result::Result<Vec<FetchAnswer>, Step> {
    let wait = i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX);
    let fetches = requests.into_iter().map(|r| async move {
        (
            r.topic,
            r.partition,
            r.client.fetch_records(r.from, 1..max_bytes, wait).await,
        )
    });
    tokio::time::timeout(max_wait + ANSWER_WITHIN, futures::future::join_all(fetches))
        .await
        .map_err(|_| {
            Step::Retry(format!(
                "fetching: no answer from {brokers} within {ANSWER_WITHIN:?}"
            ))
        })
}

/// What one round of fetching could not do.
enum Step {
    /// The broker or KV store is unreachable: retry after a backoff.
    Retry(String),
    /// Retrying cannot help.
    Fatal(StreamError),
}

impl From<StreamError> for Step {
    fn from(e: StreamError) -> Step {
        Step::Fatal(e)
    }
}

/// `batch` with an [`ORIGIN`] column numbering its records from `first`, and the placeholder
/// partition column.
fn with_origin(batch: RecordBatch, first: u32) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    fields.push(Field::new(ORIGIN, DataType::UInt32, false));
    columns.push(Arc::new(UInt32Array::from_iter_values((0..n).map(|i| {
        first.saturating_add(u32::try_from(i).unwrap_or(u32::MAX))
    }))));
    fields.push(Field::new(RECORD_DS, DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from(vec!["1970-01-01"; n])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| StreamError::Io {
        what: "building a batch of records".to_owned(),
        source: std::io::Error::other(e),
    })
}

/// The rows of `rows` for `source`, through the source's query. A batch the query fails on
/// (an expression that errors on one record's value) is evaluated record by record, and the
/// records it fails on are rejected with the error.
async fn evaluate(
    gb: &GroupBy,
    source: usize,
    decoder: &RecordDecoder,
    rows: &[Row],
) -> StreamedRecords {
    let whole = match decoder.batch(rows).map_err(|e| e.to_string()) {
        Ok(batch) => match with_origin(batch, 0) {
            Ok(batch) => online::stream_records(gb, source, batch, RECORD_DS)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e),
    };
    if let Ok(streamed) = whole {
        return streamed;
    }
    let mut out = StreamedRecords::default();
    for (i, row) in rows.iter().enumerate() {
        let record = u32::try_from(i).unwrap_or(u32::MAX);
        let one = match decoder.batch(std::slice::from_ref(row)) {
            Ok(batch) => match with_origin(batch, record) {
                Ok(batch) => online::stream_records(gb, source, batch, RECORD_DS)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e),
        };
        match one {
            Ok(streamed) => {
                out.schema = streamed.schema;
                out.rows.extend(streamed.rows);
                out.rejected.extend(streamed.rejected);
            }
            Err(e) => out.rejected.push((record, e)),
        }
    }
    out
}

/// The decoder of `topic`'s records: the columns of the sources' table as the warehouse records
/// them, else those of the Avro writer schema.
async fn decoder_for(
    gb: &GroupBy,
    warehouse: &Warehouse,
    topic: &Topic,
    sources: &[usize],
    options: &StreamOptions,
) -> Result<RecordDecoder> {
    let avro_path = options.avro_schema.clone().or_else(|| {
        topic.args.get("schema").map(|s| {
            let path = PathBuf::from(s);
            match &options.repo_dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path,
            }
        })
    });
    let avro = match &avro_path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| StreamError::Io {
                what: format!("reading the Avro schema {}", path.display()),
                source: e,
            })?;
            Some(apache_avro::Schema::parse_str(&text).map_err(|e| {
                config_error(
                    gb,
                    format!("the Avro schema {} does not parse: {e}", path.display()),
                )
            })?)
        }
        None => None,
    };
    let table = sources
        .first()
        .and_then(|&s| match &gb.sources[s] {
            Source::Events(e) => Some(e.table.table.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let table = TableName::parse(&table)?;
    let recorded = match warehouse.schema(&table).await {
        Ok(schema) => schema,
        Err(chronoflow_engine::EngineError::TableNotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let schema = match (recorded, &avro) {
        (Some(schema), _) => schema,
        (None, Some(avro)) => {
            decode::arrow_schema_of_avro(avro).map_err(|e| config_error(gb, e))?
        }
        (None, None) => {
            return Err(StreamError::Topic {
                group_by: gb.metadata.name.clone(),
                topic: topic.name.clone(),
                message: format!(
                    "the types of its records are unknown: {table} has no recorded schema in the warehouse (load a partition of it) and no Avro schema is given (schema=<file> in the topic, or --avro-schema)"
                ),
            });
        }
    };
    for field in schema.fields() {
        if !decode::supported(field.data_type()) {
            tracing::warn!(topic = %topic.name, column = %field.name(), data_type = %field.data_type(), "records cannot carry this column's type: it stays null");
        }
    }
    let format = match (&topic.format, &avro) {
        // An Avro schema given for a topic without serde=: its records are Avro.
        (Format::Json, Some(_)) if !topic.args.contains_key("serde") => Format::Avro {
            confluent: topic.args.get("framing").is_some_and(|f| f == "confluent"),
        },
        (format, _) => format.clone(),
    };
    let partition_column = sources
        .first()
        .and_then(|&s| gb.sources[s].query().partition_column.clone())
        .or_else(|| gb.metadata.partition_column().map(str::to_owned))
        .unwrap_or_else(|| "ds".to_owned());
    RecordDecoder::new(
        schema,
        &partition_column,
        format,
        avro,
        options.max_record_bytes,
    )
    .map_err(|e| config_error(gb, e))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
