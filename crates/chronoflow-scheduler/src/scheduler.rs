//! The scheduler loop: due runs, run starts, retries, dead workers, sensors, re-planning.
//!
//! Each step is a transaction of its own through the store, so several schedulers can run the
//! loop at once against one PostgreSQL, and a scheduler killed at any point loses nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chronoflow_config::PartitionDate;
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::alert::{Alert, Alerter};
use crate::clock::Clock;
use crate::config::SchedulerConfig;
use crate::error::Result;
use crate::failpoint::FailPoints;
use crate::metrics::Metrics;
use crate::spec::{Action, DagSpec};
use crate::state::{TaskState, seconds_ms};
use crate::store::{Claimed, FinishOutcome, Store};

/// Sensors poked per loop, at most.
const SENSOR_BATCH: usize = 256;
/// How long a poke may take before another scheduler may poke the same sensor.
const SENSOR_LEASE_MS: i64 = 60_000;
/// Loops between two reconciliations (the safety net behind the fast paths).
const RECONCILE_EVERY: u64 = 30;

/// How often the store's housekeeping runs (see `Store::maintain`).
const MAINTENANCE_EVERY: Duration = Duration::from_secs(10);

/// What one loop did (tests assert on it; logs print it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub runs_created: usize,
    pub runs_started: usize,
    pub retries_woken: usize,
    pub reaped: usize,
    pub sensors_poked: usize,
}

/// Where the DAG specs come from when the repo changes: plans it, or says why it cannot.
pub trait SpecSource: Send + Sync {
    fn specs(&self) -> std::result::Result<Vec<DagSpec>, String>;
}

pub struct Scheduler {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<SchedulerConfig>,
    pub catalog: Option<Arc<dyn PartitionCatalog>>,
    pub alerter: Alerter,
    pub metrics: Arc<Metrics>,
    pub failpoints: Arc<FailPoints>,
    ticks: AtomicU64,
    last_maintenance: std::sync::Mutex<Option<Instant>>,
}

impl Scheduler {
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        config: Arc<SchedulerConfig>,
        catalog: Option<Arc<dyn PartitionCatalog>>,
        metrics: Arc<Metrics>,
        failpoints: Arc<FailPoints>,
    ) -> Self {
        Scheduler {
            alerter: Alerter::new(config.clone()),
            store,
            clock,
            config,
            catalog,
            metrics,
            failpoints,
            ticks: AtomicU64::new(0),
            last_maintenance: std::sync::Mutex::new(None),
        }
    }

    /// One pass of the loop.
    pub async fn tick(&self) -> Result<TickReport> {
        let started = Instant::now();
        let tick = self.ticks.fetch_add(1, Ordering::Relaxed);
        let mut report = TickReport::default();
        let now = self.clock.now_ms();
        if tick.is_multiple_of(RECONCILE_EVERY) {
            self.store.reconcile(now).await?;
        }
        report.runs_created = self.store.create_due_runs(now).await?;
        self.metrics
            .runs_created
            .fetch_add(report.runs_created as u64, Ordering::Relaxed);
        self.failpoints.check("scheduler.after_create_run")?;
        report.runs_started = self.store.start_queued_runs(now).await?.len();
        report.retries_woken = self.store.wake_retries(now).await?;
        let reaped = self
            .store
            .reap_dead(
                now,
                seconds_ms(self.config.heartbeat_timeout_seconds),
                self.config.retry_max_delay_seconds,
            )
            .await?;
        report.reaped = reaped.len();
        for (t, error) in reaped {
            self.alert("task_failed", &t, error);
        }
        report.sensors_poked = self.poke_sensors(now).await?;
        let due = {
            let mut last = self
                .last_maintenance
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = last.is_none_or(|t| t.elapsed() >= MAINTENANCE_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            self.store.maintain().await?;
        }
        self.metrics
            .scheduler_loop_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(report)
    }

    /// Runs the loop until `shutdown` turns true; re-plans from `source` every
    /// `replan_every`. A failing loop is logged and retried: the scheduler keeps going.
    pub async fn run(
        &self,
        interval: Duration,
        source: Option<(Arc<dyn SpecSource>, Duration)>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut last_plan: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Some((source, every)) = &source
                && last_plan.is_none_or(|t| t.elapsed() >= *every)
            {
                last_plan = Some(Instant::now());
                if let Err(e) = self.replan(source.clone()).await {
                    tracing::error!(error = %e, "re-planning failed");
                }
            }
            match self.tick().await {
                Ok(r) if r != TickReport::default() => tracing::debug!(?r, "scheduler loop"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "scheduler loop failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Plans the repo again and applies the difference. A repo that does not plan is reported
    /// (API, `dags list`) and the DAGs keep their last good version.
    pub async fn replan(&self, source: Arc<dyn SpecSource>) -> Result<()> {
        let now = self.clock.now_ms();
        let planned = tokio::task::spawn_blocking(move || source.specs())
            .await
            .unwrap_or_else(|e| Err(format!("planning panicked: {e}")));
        match planned {
            Ok(specs) => {
                let report = self.store.sync_dags(&specs, now).await?;
                for (dag, why) in &report.rejected {
                    tracing::error!(dag_id = %dag, error = %why, "DAG rejected; keeping its last version");
                }
                if !report.added.is_empty()
                    || !report.changed.is_empty()
                    || !report.removed.is_empty()
                {
                    tracing::info!(
                        added = report.added.len(),
                        changed = report.changed.len(),
                        removed = report.removed.len(),
                        "re-planned"
                    );
                }
                let message = if report.rejected.is_empty() {
                    String::new()
                } else {
                    report
                        .rejected
                        .iter()
                        .map(|(d, why)| format!("{d}: {why}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                self.store
                    .set_plan_status(report.rejected.is_empty(), &message, specs.len(), now)
                    .await
            }
            Err(message) => {
                tracing::error!(error = %message, "the config repo does not plan; keeping the DAGs of the last good plan");
                self.store.set_plan_status(false, &message, 0, now).await
            }
        }
    }

    async fn poke_sensors(&self, now: i64) -> Result<usize> {
        let due = self
            .store
            .due_sensors(now, SENSOR_BATCH, SENSOR_LEASE_MS)
            .await?;
        let mut partitions = PartitionCache::default();
        for t in &due {
            self.metrics.sensor_pokes.fetch_add(1, Ordering::Relaxed);
            let spec = match self.store.spec(&t.dag_id, t.version).await {
                Ok(spec) => spec,
                Err(e) => {
                    // An unreadable DAG version: the other sensors go on.
                    self.store.skip_corrupt(e)?;
                    continue;
                }
            };
            let Some(task) = spec.task(&t.task_id) else {
                continue;
            };
            let (poke_s, timeout_s) = match &task.action {
                Action::PartitionSensor {
                    poke_interval_seconds,
                    timeout_seconds,
                    ..
                }
                | Action::UpstreamWait {
                    poke_interval_seconds,
                    timeout_seconds,
                    ..
                } => (*poke_interval_seconds, *timeout_seconds),
                _ => continue,
            };
            let outcome = match self.check(&task.action, t, &mut partitions).await {
                Ok(true) => FinishOutcome::Success,
                Ok(false) if now.saturating_sub(t.started_ms) >= seconds_ms(timeout_s) => {
                    FinishOutcome::TimedOut(format!(
                        "sensor timed out after {} s: {}",
                        timeout_s,
                        describe(&task.action, t)
                    ))
                }
                Ok(false) => FinishOutcome::NotYet {
                    next_ms: now.saturating_add(seconds_ms(poke_s.max(1))),
                },
                Err(e) => FinishOutcome::Failed(e),
            };
            self.failpoints.check("scheduler.sensor_commit")?;
            let timed_out = matches!(outcome, FinishOutcome::TimedOut(_));
            let error = match &outcome {
                FinishOutcome::TimedOut(e) | FinishOutcome::Failed(e) => Some(e.clone()),
                _ => None,
            };
            let state = self
                .store
                .finish(
                    t,
                    None,
                    outcome,
                    self.config.retry_max_delay_seconds,
                    None,
                    None,
                    now,
                )
                .await?;
            if state == Some(TaskState::Failed) {
                let event = if timed_out {
                    "sensor_timeout"
                } else {
                    "task_failed"
                };
                self.alert(event, t, error.unwrap_or_default());
            }
        }
        Ok(due.len())
    }

    /// Whether the sensor's condition holds for every date of the run.
    async fn check(
        &self,
        action: &Action,
        t: &Claimed,
        cache: &mut PartitionCache,
    ) -> std::result::Result<bool, String> {
        for ds in dates(&t.start_ds, &t.end_ds)? {
            match action {
                Action::PartitionSensor {
                    table,
                    offset_days,
                    end,
                    ..
                } => {
                    if ends_before(end.as_deref(), ds) {
                        continue;
                    }
                    let Some(catalog) = &self.catalog else {
                        return Err("no warehouse is configured for partition sensors".to_owned());
                    };
                    let target = ds.add_days(*offset_days);
                    if !cache.has(catalog.as_ref(), table, target).await? {
                        return Ok(false);
                    }
                }
                Action::UpstreamWait {
                    dag_id,
                    task_id,
                    offset_days,
                    end,
                    ..
                } => {
                    if ends_before(end.as_deref(), ds) {
                        continue;
                    }
                    let target = ds.add_days(*offset_days).to_string();
                    if !self
                        .store
                        .upstream_succeeded(dag_id, task_id, &target)
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        return Ok(false);
                    }
                }
                _ => return Ok(true),
            }
        }
        Ok(true)
    }

    fn alert(&self, event: &'static str, t: &Claimed, error: String) {
        self.alerter.send(Alert::for_try(event, t, error, None));
    }
}

/// `end <= ds`: the dependency ended before this date, nothing to wait for.
fn ends_before(end: Option<&str>, ds: PartitionDate) -> bool {
    end.and_then(|e| PartitionDate::parse(e).ok())
        .is_some_and(|e| e <= ds)
}

fn dates(start: &str, end: &str) -> std::result::Result<Vec<PartitionDate>, String> {
    let parse = |s: &str| PartitionDate::parse(s).map_err(|e| format!("run date {s:?}: {e}"));
    let (mut d, end) = (parse(start)?, parse(end)?);
    let mut out = Vec::new();
    while d <= end {
        out.push(d);
        d = d.add_days(1);
    }
    Ok(out)
}

fn describe(action: &Action, t: &Claimed) -> String {
    match action {
        Action::PartitionSensor {
            table, offset_days, ..
        } => format!("partition {table} ds={}{offset_days:+}d", t.end_ds),
        Action::UpstreamWait {
            dag_id,
            task_id,
            offset_days,
            ..
        } => format!("{dag_id}.{task_id} for ds={}{offset_days:+}d", t.end_ds),
        _ => String::new(),
    }
}

/// Where partition sensors look: the warehouse's catalog.
pub trait PartitionCatalog: Send + Sync {
    /// The partitions of `table` (`namespace.table`); an empty set when it does not exist.
    fn partitions<'a>(
        &'a self,
        table: &'a str,
    ) -> BoxFuture<'a, std::result::Result<std::collections::BTreeSet<PartitionDate>, String>>;
}

#[cfg(feature = "engine")]
impl PartitionCatalog for chronoflow_engine::Warehouse {
    fn partitions<'a>(
        &'a self,
        table: &'a str,
    ) -> BoxFuture<'a, std::result::Result<std::collections::BTreeSet<PartitionDate>, String>> {
        Box::pin(async move {
            let name = chronoflow_engine::TableName::parse(table).map_err(|e| e.to_string())?;
            match self.table_meta(&name).await.map_err(|e| e.to_string())? {
                Some(_) => Ok(chronoflow_engine::Warehouse::partitions(self, &name)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .collect()),
                None => Ok(Default::default()),
            }
        })
    }
}

/// Partitions listed once per loop and table, however many sensors ask.
#[derive(Default)]
struct PartitionCache {
    tables: HashMap<String, std::collections::BTreeSet<PartitionDate>>,
}

impl PartitionCache {
    async fn has(
        &mut self,
        catalog: &dyn PartitionCatalog,
        table: &str,
        ds: PartitionDate,
    ) -> std::result::Result<bool, String> {
        if !self.tables.contains_key(table) {
            let parts = catalog.partitions(table).await?;
            self.tables.insert(table.to_owned(), parts);
        }
        Ok(self.tables[table].contains(&ds))
    }
}
