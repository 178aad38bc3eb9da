//! Job history: one record per try a worker ran, for the warehouse table `chronoflow.job_runs`
//! (partitioned by `ds`, the UTC date the try ended), so job costs and failures can be queried
//! like any other table.
//!
//! The worker hands each record to a [`TryHistory`] and never waits on it. With the `engine`
//! feature, [`JobRunWriter`] batches records through a bounded channel and appends them every
//! few seconds (and on flush); when the channel is full, records are dropped and counted.

use futures::future::BoxFuture;
use serde::Serialize;

/// The warehouse table of job history.
pub const JOB_RUNS_TABLE: &str = "chronoflow.job_runs";

/// One finished try, as a row of `chronoflow.job_runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRun {
    /// The job's mode (`backfill`, `upload`, `metadata-upload`, `streaming`...).
    pub job_type: String,
    /// The config's name (comma-separated for a metadata upload of several).
    pub config: String,
    pub team: String,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: i64,
    pub worker_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub duration_ms: i64,
    /// The task instance's state after the try: `success`, `skipped`, `up_for_retry`,
    /// `failed` (or, for a try stopped or taken over meanwhile, the try's recorded state).
    pub state: String,
    pub error: Option<String>,
    pub cpu_ms: Option<i64>,
    pub max_rss_kb: Option<i64>,
    pub exit_code: Option<i64>,
}

/// Where a worker reports the tries it ran.
pub trait TryHistory: Send + Sync {
    /// Takes a record without waiting (drops it when the writer is behind).
    fn record(&self, run: JobRun);

    /// Returns once everything recorded so far is written (the worker calls it when it stops).
    fn flush(&self) -> BoxFuture<'_, ()>;
}

#[cfg(feature = "engine")]
pub use writer::JobRunWriter;

#[cfg(feature = "engine")]
mod writer {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};
    use chronoflow_config::PartitionDate;
    use chronoflow_engine::window::date_of;
    use chronoflow_engine::{TableName, Warehouse};
    use futures::future::BoxFuture;
    use tokio::sync::{mpsc, oneshot};

    use super::{JOB_RUNS_TABLE, JobRun, TryHistory};

    /// Records buffered between the workers and the writer.
    const CAPACITY: usize = 10_000;
    /// Records per write at most.
    const BATCH: usize = 5_000;

    enum Message {
        Record(Box<JobRun>),
        Flush(oneshot::Sender<()>),
    }

    /// Appends job history to the warehouse from a thread of its own; cheap to share.
    #[derive(Clone)]
    pub struct JobRunWriter {
        tx: mpsc::Sender<Message>,
        dropped: Arc<AtomicU64>,
    }

    impl JobRunWriter {
        /// Starts the writer, appending every `every`.
        pub fn start(warehouse: Warehouse, every: Duration) -> JobRunWriter {
            let (tx, rx) = mpsc::channel(CAPACITY);
            std::thread::Builder::new()
                .name("job-runs-writer".to_owned())
                .spawn(move || {
                    // The warehouse's futures are not all Send: the writer has a runtime of its own.
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for the job history writer");
                    runtime.block_on(write_loop(warehouse, rx, every));
                })
                .expect("spawning the job history writer");
            JobRunWriter {
                tx,
                dropped: Arc::default(),
            }
        }

        /// Records dropped because the writer fell behind.
        pub fn dropped(&self) -> u64 {
            self.dropped.load(Ordering::Relaxed)
        }
    }

    impl TryHistory for JobRunWriter {
        fn record(&self, run: JobRun) {
            if self.tx.try_send(Message::Record(Box::new(run))).is_err() {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "job history writer behind: records dropped");
                }
            }
        }

        fn flush(&self) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                let (done, wait) = oneshot::channel();
                if self.tx.send(Message::Flush(done)).await.is_ok() {
                    let _ = wait.await;
                }
            })
        }
    }

    async fn write_loop(warehouse: Warehouse, mut rx: mpsc::Receiver<Message>, every: Duration) {
        let mut buffer: Vec<JobRun> = Vec::new();
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

    /// Appends the buffered records, one file per day. A failed write is logged and its records
    /// dropped: history must not hold up the worker on a warehouse outage.
    async fn write(warehouse: &Warehouse, buffer: &mut Vec<JobRun>) {
        if buffer.is_empty() {
            return;
        }
        let mut by_day: BTreeMap<PartitionDate, Vec<JobRun>> = BTreeMap::new();
        for r in buffer.drain(..) {
            by_day.entry(date_of(r.end_ms)).or_default().push(r);
        }
        let table = TableName::parse(JOB_RUNS_TABLE).expect("a valid table name");
        for (ds, records) in by_day {
            if let Err(e) = warehouse
                .append_partition(&table, "ds", ds, &[batch(&records)])
                .await
            {
                tracing::warn!(%ds, records = records.len(), error = %e, "job history write failed");
            }
        }
    }

    fn batch(records: &[JobRun]) -> RecordBatch {
        let strings = |f: &dyn Fn(&JobRun) -> Option<&str>| {
            let mut b = StringBuilder::new();
            for r in records {
                b.append_option(f(r));
            }
            Arc::new(b.finish()) as ArrayRef
        };
        let ints = |f: &dyn Fn(&JobRun) -> Option<i64>| {
            let mut b = Int64Builder::new();
            for r in records {
                b.append_option(f(r));
            }
            Arc::new(b.finish()) as ArrayRef
        };
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("job_type", strings(&|r| Some(&r.job_type))),
            ("config", strings(&|r| Some(&r.config))),
            ("team", strings(&|r| Some(&r.team))),
            ("dag_id", strings(&|r| Some(&r.dag_id))),
            ("run_id", strings(&|r| Some(&r.run_id))),
            ("task_id", strings(&|r| Some(&r.task_id))),
            ("try_number", ints(&|r| Some(r.try_number))),
            ("worker_id", strings(&|r| Some(&r.worker_id))),
            ("start_ms", ints(&|r| Some(r.start_ms))),
            ("end_ms", ints(&|r| Some(r.end_ms))),
            ("duration_ms", ints(&|r| Some(r.duration_ms))),
            ("state", strings(&|r| Some(&r.state))),
            ("error", strings(&|r| r.error.as_deref())),
            ("cpu_ms", ints(&|r| r.cpu_ms)),
            ("max_rss_kb", ints(&|r| r.max_rss_kb)),
            ("exit_code", ints(&|r| r.exit_code)),
        ];
        let nullable = ["error", "cpu_ms", "max_rss_kb", "exit_code"];
        let schema = Schema::new(
            columns
                .iter()
                .map(|(name, array)| {
                    Field::new(*name, array.data_type().clone(), nullable.contains(name))
                })
                .collect::<Vec<_>>(),
        );
        debug_assert!(
            columns
                .iter()
                .all(|(_, a)| matches!(a.data_type(), DataType::Utf8 | DataType::Int64))
        );
        RecordBatch::try_new(
            Arc::new(schema),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("consistent columns")
    }
}
