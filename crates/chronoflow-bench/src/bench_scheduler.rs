//! The scheduler benchmark: one run of a DAG of no-op tasks, `wide` (N independent tasks) or
//! `chain` (N tasks in a line), through the real store, scheduler loop and worker, in one
//! process (what `chronoflow standalone` runs). Prints one JSON line:
//! throughput (task completions per second, first start to last end) and dispatch latency
//! (dependencies met -> task started: for a chain, the upstream's committed success to the
//! downstream's committed claim; for wide, the run's start to each claim, queueing included).
//!
//! Usage: `bench-scheduler --shape wide|chain --tasks N [--database-url URL]
//!         [--concurrency 16] [--slots 16] [--tick-ms 200]`
//! (default store: a fresh SQLite file).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chronoflow_scheduler::clock::{Clock, SystemClock};
use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::executor::{Executors, NoopExecutor};
use chronoflow_scheduler::failpoint::FailPoints;
use chronoflow_scheduler::metrics::{Metrics, TraceEvent};
use chronoflow_scheduler::scheduler::Scheduler;
use chronoflow_scheduler::spec::{Action, DagSpec, JobRef, TaskSpec};
use chronoflow_scheduler::store::{RunTrigger, Store};
use chronoflow_scheduler::timetable::Timetable;
use chronoflow_scheduler::worker::Worker;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    shape: String,
    tasks: usize,
    database_url: Option<String>,
    concurrency: u32,
    slots: usize,
    tick_ms: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        shape: String::new(),
        tasks: 0,
        database_url: None,
        concurrency: 16,
        slots: 16,
        tick_ms: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--shape" => a.shape = value()?,
            "--tasks" => a.tasks = value()?.parse()?,
            "--database-url" => a.database_url = Some(value()?),
            "--concurrency" => a.concurrency = value()?.parse()?,
            "--slots" => a.slots = value()?.parse()?,
            "--tick-ms" => a.tick_ms = value()?.parse()?,
            other => bail!("unexpected argument {other:?}"),
        }
    }
    if !matches!(a.shape.as_str(), "wide" | "chain") || a.tasks == 0 {
        bail!("usage: bench-scheduler --shape wide|chain --tasks N [--database-url URL]");
    }
    Ok(a)
}

fn spec(dag_id: &str, shape: &str, n: usize, concurrency: u32) -> DagSpec {
    let tasks = (0..n)
        .map(|k| {
            let id = format!("t{k:06}");
            TaskSpec {
                task_id: id.clone(),
                upstream: if shape == "chain" && k > 0 {
                    vec![format!("t{:06}", k - 1)]
                } else {
                    vec![]
                },
                retries: 1,
                retry_delay_seconds: 60,
                execution_timeout_seconds: None,
                action: Action::Job(JobRef {
                    job: id.clone(),
                    config: id,
                    mode: "backfill".into(),
                    team: "bench".into(),
                    conf_path: String::new(),
                    content_hash: String::new(),
                }),
            }
        })
        .collect();
    DagSpec {
        dag_id: dag_id.to_owned(),
        kind: "custom".into(),
        team: Some("bench".into()),
        timetable: Timetable::Manual,
        catchup: false,
        fills_missing: false,
        start_date: None,
        max_active_runs: 1,
        concurrency,
        tasks,
        downstream_index: Default::default(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("state.db").display()));
    let store_kind = if url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let store = Arc::new(Store::open(&url).await?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = Arc::new(SchedulerConfig::default());
    let metrics = Arc::new(Metrics::with_trace());
    let dag_id = format!(
        "bench_{}_{}_{}",
        args.shape,
        std::process::id(),
        clock.now_ms()
    );
    store
        .sync_dags(
            &[spec(&dag_id, &args.shape, args.tasks, args.concurrency)],
            clock.now_ms(),
        )
        .await?;
    let run_id = store
        .trigger(
            &dag_id,
            RunTrigger::Manual {
                start_ds: "2026-11-20".into(),
                end_ds: "2026-11-20".into(),
            },
            clock.now_ms(),
        )
        .await?
        .remove(0);
    let failpoints = Arc::new(FailPoints::default());
    let worker = Arc::new(Worker::new(
        "bench".into(),
        store.clone(),
        clock.clone(),
        config.clone(),
        Executors::new(config.clone(), Arc::new(NoopExecutor::default()), None),
        args.slots,
        tmp.path().join("logs"),
        metrics.clone(),
        failpoints.clone(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker_task = tokio::spawn(worker.clone().run(stop_rx.clone()));
    // Start the run here (not at the scheduler's next loop) so its start time is known.
    store.start_queued_runs(clock.now_ms()).await?;
    let run_started = Instant::now();
    let scheduler = Scheduler::new(
        store.clone(),
        clock.clone(),
        config,
        None,
        metrics.clone(),
        failpoints,
    );
    let tick = Duration::from_millis(args.tick_ms);
    let scheduler_task = tokio::spawn(async move { scheduler.run(tick, None, stop_rx).await });
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let run = store.run(&dag_id, &run_id).await?;
        match run.state.as_str() {
            "success" => break,
            "failed" => bail!("the benchmark run failed"),
            _ => {}
        }
        if run_started.elapsed() > Duration::from_secs(3600) {
            bail!("the benchmark run did not finish in an hour");
        }
    }
    let _ = stop_tx.send(true);
    worker_task.await??;
    scheduler_task.await?;

    let events = metrics
        .trace
        .as_ref()
        .expect("the benchmark's metrics were created with a trace")
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut claimed: HashMap<String, Instant> = HashMap::new();
    let mut succeeded: HashMap<String, Instant> = HashMap::new();
    for (key, event, at) in events {
        let task = key.rsplit('/').next().unwrap_or(&key).to_owned();
        match event {
            TraceEvent::Claimed => claimed.insert(task, at),
            TraceEvent::Succeeded => succeeded.insert(task, at),
        };
    }
    let first = claimed.values().min().copied().context("no task ran")?;
    let last = succeeded
        .values()
        .max()
        .copied()
        .context("no task succeeded")?;
    let seconds = (last - first).as_secs_f64();
    let mut dispatch: Vec<f64> = (0..args.tasks)
        .filter_map(|k| {
            let task = format!("t{k:06}");
            let ready = if args.shape == "chain" && k > 0 {
                *succeeded.get(&format!("t{:06}", k - 1))?
            } else {
                run_started
            };
            Some(
                claimed
                    .get(&task)?
                    .saturating_duration_since(ready)
                    .as_secs_f64()
                    * 1000.0,
            )
        })
        .collect();
    dispatch.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "system": "chronoflow",
            "store": store_kind,
            "shape": args.shape,
            "tasks": args.tasks,
            "concurrency": args.concurrency,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "throughput_per_s": (args.tasks as f64 / seconds * 10.0).round() / 10.0,
            "dispatch_p50_ms": (percentile(&dispatch, 0.5) * 1000.0).round() / 1000.0,
            "dispatch_p99_ms": (percentile(&dispatch, 0.99) * 1000.0).round() / 1000.0,
        })
    );
    Ok(())
}
