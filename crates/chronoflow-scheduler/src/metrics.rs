//! Prometheus metrics, rendered by hand in the text exposition format.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::state::TaskState;

/// Upper bounds, in seconds, of the latency histograms.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    inner: Mutex<(Vec<u64>, u64, f64)>,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let mut h = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if h.0.is_empty() {
            h.0 = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.0[i] += 1;
            }
        }
        h.1 += 1;
        h.2 += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let h = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let n = h.0.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.1);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.2, h.1);
    }
}

/// What a benchmark traces per task instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceEvent {
    /// A worker's claim committed: the task starts.
    Claimed,
    /// The try's success committed: downstream tasks are ready.
    Succeeded,
}

/// Precise per-task timestamps, kept only when a benchmark asks (the database keeps
/// milliseconds; dispatch latency needs better).
#[derive(Debug, Default)]
pub struct Trace {
    pub events: Mutex<Vec<(String, TraceEvent, std::time::Instant)>>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// Per-task timestamps (benchmarks only).
    pub trace: Option<Trace>,
    pub scheduler_loop_seconds: Histogram,
    pub task_duration_seconds: Histogram,
    /// From the moment a task's upstream was done to the moment a worker started it.
    pub dispatch_latency_seconds: Histogram,
    pub sensor_pokes: AtomicU64,
    pub runs_created: AtomicU64,
    finished: [AtomicU64; 9],
    /// Families other parts of the process export here (the fetch log's counters in
    /// `standalone`), appended to every render.
    sources: Sources,
}

/// Appends metric families in Prometheus' text format.
pub type MetricSource = Box<dyn Fn(&mut String) + Send + Sync>;

#[derive(Default)]
struct Sources(Mutex<Vec<MetricSource>>);

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        write!(f, "Sources({n})")
    }
}

impl Metrics {
    pub fn with_trace() -> Metrics {
        Metrics {
            trace: Some(Trace::default()),
            ..Metrics::default()
        }
    }

    pub fn record(&self, task: impl FnOnce() -> String, event: TraceEvent) {
        if let Some(trace) = &self.trace {
            let now = std::time::Instant::now();
            trace
                .events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((task(), event, now));
        }
    }

    /// Adds families that every render appends.
    pub fn add_source(&self, source: MetricSource) {
        self.sources
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(source);
    }

    pub fn task_finished(&self, state: TaskState) {
        let i = TaskState::ALL.iter().position(|s| *s == state).unwrap_or(0);
        self.finished[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text; `states` are the current task instance counts per state.
    pub fn render(&self, states: &std::collections::BTreeMap<String, i64>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP chronoflow_task_instances Task instances per state.\n# TYPE chronoflow_task_instances gauge"
        );
        for s in TaskState::ALL {
            let n = states.get(s.as_str()).copied().unwrap_or(0);
            let _ = writeln!(out, "chronoflow_task_instances{{state=\"{s}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP chronoflow_queue_depth Task instances queued for a worker.\n# TYPE chronoflow_queue_depth gauge\nchronoflow_queue_depth {}",
            states.get("queued").copied().unwrap_or(0)
        );
        let _ = writeln!(
            out,
            "# HELP chronoflow_task_finished_total Tries finished by this process, per resulting state.\n# TYPE chronoflow_task_finished_total counter"
        );
        for (i, s) in TaskState::ALL.iter().enumerate() {
            let n = self.finished[i].load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "chronoflow_task_finished_total{{state=\"{s}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP chronoflow_sensor_pokes_total Sensor checks made by this process.\n# TYPE chronoflow_sensor_pokes_total counter\nchronoflow_sensor_pokes_total {}",
            self.sensor_pokes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP chronoflow_runs_created_total DAG runs created by this process.\n# TYPE chronoflow_runs_created_total counter\nchronoflow_runs_created_total {}",
            self.runs_created.load(Ordering::Relaxed)
        );
        self.scheduler_loop_seconds.render(
            &mut out,
            "chronoflow_scheduler_loop_seconds",
            "Time of one scheduler loop.",
        );
        self.task_duration_seconds.render(
            &mut out,
            "chronoflow_task_duration_seconds",
            "Time of one try, start to finish.",
        );
        self.dispatch_latency_seconds.render(
            &mut out,
            "chronoflow_dispatch_latency_seconds",
            "From a task's upstream done to its start on a worker.",
        );
        for source in self
            .sources
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            source(&mut out);
        }
        out
    }
}

/// Appends the metrics of every stream (from the `streaming_jobs` rows, so any process serving
/// the API shows every worker's streams), labeled by GroupBy. `now_ms` is wall time.
pub fn render_streams(out: &mut String, streams: &[crate::store::StreamingJob], now_ms: i64) {
    type Value = fn(&crate::store::StreamingJob, i64) -> Option<String>;
    let families: [(&str, &str, &str, Value); 6] = [
        (
            "chronoflow_stream_records_read_total",
            "counter",
            "Records the stream's consumer read from its topic (since it started).",
            |s, _| s.status_int("records_read").map(|n| n.to_string()),
        ),
        (
            "chronoflow_stream_rows_written_total",
            "counter",
            "Rows the stream's consumer appended to the KV store (since it started).",
            |s, _| s.status_int("rows_written").map(|n| n.to_string()),
        ),
        (
            "chronoflow_stream_malformed_total",
            "counter",
            "Records the stream's consumer could not decode (since it started).",
            |s, _| s.status_int("malformed").map(|n| n.to_string()),
        ),
        (
            "chronoflow_stream_last_event_age_seconds",
            "gauge",
            "Seconds since the event time of the newest record the stream read.",
            |s, now| {
                s.status_int("last_event_ms")
                    .map(|t| (now.saturating_sub(t).max(0) as f64 / 1000.0).to_string())
            },
        ),
        (
            "chronoflow_stream_restarts_total",
            "counter",
            "Crashes of the stream since its worker took it.",
            |s, _| Some(s.restarts.to_string()),
        ),
        (
            "chronoflow_stream_up",
            "gauge",
            "1 when the stream is consuming (its supervisor reports it running, and not stale), else 0.",
            |s, now| Some(if s.is_up(now) { "1" } else { "0" }.to_owned()),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in streams {
            if let Some(v) = value(s, now_ms) {
                let _ = writeln!(out, "{name}{{group_by=\"{}\"}} {v}", label(s.group_by()));
            }
        }
    }
    let name = "chronoflow_stream_lag";
    let _ = writeln!(
        out,
        "# HELP {name} Records of a topic partition the stream has not committed yet.\n# TYPE {name} gauge"
    );
    for s in streams {
        for (topic, partition, lag) in s.partition_lags() {
            // A GroupBy may read several topics, whose partition numbers overlap.
            let topic = topic
                .map(|t| format!(",topic=\"{}\"", label(t)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{name}{{group_by=\"{}\",partition=\"{partition}\"{topic}}} {lag}",
                label(s.group_by())
            );
        }
    }
}

/// A label value as the exposition format wants it: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
