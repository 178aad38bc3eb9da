//! DAGs (SPEC §3.2) and their tasks: job tasks, partition sensors and cross-DAG waits (§3.3).

use std::collections::{BTreeMap, BTreeSet};

use chronoflow_config::{ConfigKind, PartitionDate, PartitionDependency};
use serde::Serialize;

use crate::job::{Job, Mode};
use crate::schedule::Schedule;

/// Which of the DAG families of SPEC §3.2 a DAG belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DagKind {
    /// `chronon_gb_backfill`: GroupBy backfills over a user-given range.
    GroupByBackfill,
    /// `chronon_gb_batch_{team}`: sensors -> daily backfill -> upload -> upload-to-kv.
    GroupByBatch,
    /// `chronon_gb_streaming_{team}`: keep streaming jobs alive.
    GroupByStreaming,
    /// `chronon_join_backfill`: Join backfills over a user-given range.
    JoinBackfill,
    /// `chronon_join_{team}`: daily (or per `offlineSchedule`) frontfill of training tables.
    Join,
    /// `chronon_join_ooc_{team}`: online/offline consistency.
    JoinConsistency,
    /// `chronon_staging_query_{team}`.
    StagingQuery,
    /// `chronon_metadata`: metadata uploads, only when a config changed.
    Metadata,
}

/// A task: one node of a DAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    /// Unique in its DAG; `[A-Za-z0-9_]` only.
    pub task_id: String,
    #[serde(flatten)]
    pub kind: TaskKind,
    /// Task ids of this DAG that must succeed (for the same run) first; sorted.
    pub upstream: Vec<String>,
    pub retries: u32,
    pub retry_delay_seconds: u64,
}

/// What a task does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskKind {
    /// Runs one job for the run's `ds` (or its range, in a manual DAG).
    Job {
        job: String,
        config: String,
        mode: Mode,
    },
    /// Uploads the metadata of these jobs' configs, skipping those whose content hash did not
    /// change since the last successful upload.
    MetadataUpload { jobs: Vec<String> },
    /// Waits, without holding a worker, until partition `ds + offset_days` of `table` exists
    /// (with its sub-partitions). Succeeds at once when `end <= ds`.
    PartitionSensor {
        table: String,
        partition_column: String,
        offset_days: i64,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        sub_partitions: Vec<(String, String)>,
        #[serde(skip_serializing_if = "Option::is_none")]
        end: Option<PartitionDate>,
        /// The job of this repo that writes `table`, if any (lineage only; a manual DAG run
        /// waits on the partition, not on that job's schedule).
        #[serde(skip_serializing_if = "Option::is_none")]
        produced_by: Option<String>,
        poke_interval_seconds: u64,
        timeout_seconds: u64,
    },
    /// Waits until task `task_id` of DAG `dag_id` succeeded for `ds + offset_days`: the table
    /// this DAG reads is produced by that job. Succeeds at once when `end <= ds`.
    UpstreamWait {
        dag_id: String,
        upstream_task_id: String,
        job: String,
        table: String,
        offset_days: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        end: Option<PartitionDate>,
        poke_interval_seconds: u64,
        timeout_seconds: u64,
    },
}

/// A DAG: a schedule and a set of tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dag {
    pub dag_id: String,
    pub kind: DagKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub schedule: Schedule,
    /// Whether missed runs are created on start (off by default, as in Chronon's DAGs).
    pub catchup: bool,
    pub max_active_runs: u32,
    /// Task instances of this DAG running at once.
    pub concurrency: u32,
    /// Parameters a manual run takes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// Sorted by task id.
    pub tasks: Vec<Task>,
}

impl Dag {
    pub fn task(&self, task_id: &str) -> Option<&Task> {
        self.tasks
            .binary_search_by(|t| t.task_id.as_str().cmp(task_id))
            .ok()
            .map(|i| &self.tasks[i])
    }

    /// Task ids in dependency order (upstream first; ties by id), for display.
    pub fn topological_order(&self) -> Vec<&Task> {
        let mut remaining: BTreeMap<&str, BTreeSet<&str>> = self
            .tasks
            .iter()
            .map(|t| {
                (
                    t.task_id.as_str(),
                    t.upstream.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        let mut order = Vec::with_capacity(self.tasks.len());
        while !remaining.is_empty() {
            let ready: Vec<&str> = remaining
                .iter()
                .filter(|(_, ups)| ups.is_empty())
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                // Not reachable for planner output (cycles are rejected); keep the rest in id order.
                order.extend(remaining.keys().filter_map(|id| self.task(id)));
                break;
            }
            for id in &ready {
                remaining.remove(id);
            }
            for ups in remaining.values_mut() {
                for id in &ready {
                    ups.remove(id);
                }
            }
            order.extend(ready.iter().filter_map(|id| self.task(id)));
        }
        order
    }
}

/// Airflow boilerplate of Chronon's DAGs (SPEC §3.3).
pub mod defaults {
    pub const TASK_RETRIES: u32 = 1;
    pub const TASK_RETRY_DELAY_SECONDS: u64 = 60;
    pub const SENSOR_RETRIES: u32 = 3;
    pub const SENSOR_TIMEOUT_SECONDS: u64 = 48 * 3600;
    pub const SENSOR_POKE_INTERVAL_SECONDS: u64 = 60;
    pub const GROUP_BY_CONCURRENCY: u32 = 300;
    pub const JOIN_CONCURRENCY: u32 = 100;
    pub const OTHER_CONCURRENCY: u32 = 100;
    pub const MANUAL_MAX_ACTIVE_RUNS: u32 = 16;
    pub const STREAMING_INTERVAL_MINUTES: u32 = 10;
    pub const METADATA_INTERVAL_MINUTES: u32 = 10;
}

/// Where a job's task lives once DAGs are assembled.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub dag_id: String,
    pub task_id: String,
    pub scheduled: bool,
}

/// A DAG being assembled: tasks by id, and sensors/waits by what they wait for.
pub(crate) struct DagBuilder {
    pub dag: Dag,
    tasks: BTreeMap<String, Task>,
    waits: BTreeMap<WaitKey, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum WaitKey {
    Partition {
        table: String,
        column: String,
        offset: i64,
        sub_partitions: Vec<(String, String)>,
    },
    Task {
        dag_id: String,
        task_id: String,
        offset: i64,
    },
}

impl DagBuilder {
    pub fn new(dag: Dag) -> Self {
        DagBuilder {
            dag,
            tasks: BTreeMap::new(),
            waits: BTreeMap::new(),
        }
    }

    pub fn add_task(&mut self, task_id: String, kind: TaskKind) {
        self.tasks.insert(
            task_id.clone(),
            Task {
                task_id,
                kind,
                upstream: Vec::new(),
                retries: defaults::TASK_RETRIES,
                retry_delay_seconds: defaults::TASK_RETRY_DELAY_SECONDS,
            },
        );
    }

    pub fn add_edge(&mut self, upstream: &str, downstream: &str) {
        if let Some(t) = self.tasks.get_mut(downstream)
            && !t.upstream.iter().any(|u| u == upstream)
        {
            t.upstream.push(upstream.to_owned());
        }
    }

    pub fn upstream_of(&self, task_id: &str) -> Vec<String> {
        self.tasks
            .get(task_id)
            .map(|t| t.upstream.clone())
            .unwrap_or_default()
    }

    /// A partition sensor for `dep`, shared by every task of the DAG that waits for the same
    /// partition; `end` merges to the later one (none if either has none).
    pub fn sensor(&mut self, dep: &PartitionDependency, produced_by: Option<&str>) -> String {
        let key = WaitKey::Partition {
            table: dep.table.clone(),
            column: dep.partition_column.clone(),
            offset: dep.offset_days,
            sub_partitions: dep.sub_partitions.clone(),
        };
        let base = sensor_task_id(dep);
        let kind = TaskKind::PartitionSensor {
            table: dep.table.clone(),
            partition_column: dep.partition_column.clone(),
            offset_days: dep.offset_days,
            sub_partitions: dep.sub_partitions.clone(),
            end: dep.end,
            produced_by: produced_by.map(str::to_owned),
            poke_interval_seconds: defaults::SENSOR_POKE_INTERVAL_SECONDS,
            timeout_seconds: defaults::SENSOR_TIMEOUT_SECONDS,
        };
        self.wait(key, base, kind, dep.end)
    }

    /// A wait on another job's task succeeding for `ds + offset`.
    pub fn upstream_wait(
        &mut self,
        dep: &PartitionDependency,
        producer: &Placement,
        job: &str,
    ) -> String {
        let key = WaitKey::Task {
            dag_id: producer.dag_id.clone(),
            task_id: producer.task_id.clone(),
            offset: dep.offset_days,
        };
        let base = format!(
            "wait_for__{}{}",
            producer.task_id,
            offset_suffix(dep.offset_days)
        );
        let kind = TaskKind::UpstreamWait {
            dag_id: producer.dag_id.clone(),
            upstream_task_id: producer.task_id.clone(),
            job: job.to_owned(),
            table: dep.table.clone(),
            offset_days: dep.offset_days,
            end: dep.end,
            poke_interval_seconds: defaults::SENSOR_POKE_INTERVAL_SECONDS,
            timeout_seconds: defaults::SENSOR_TIMEOUT_SECONDS,
        };
        self.wait(key, base, kind, dep.end)
    }

    fn wait(
        &mut self,
        key: WaitKey,
        base_id: String,
        kind: TaskKind,
        end: Option<PartitionDate>,
    ) -> String {
        if let Some(id) = self.waits.get(&key).cloned() {
            if let Some(task) = self.tasks.get_mut(&id) {
                match &mut task.kind {
                    TaskKind::PartitionSensor { end: e, .. }
                    | TaskKind::UpstreamWait { end: e, .. } => {
                        *e = match (*e, end) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        };
                    }
                    _ => {}
                }
            }
            return id;
        }
        let mut id = base_id.clone();
        let mut n = 2;
        while self.tasks.contains_key(&id) {
            id = format!("{base_id}_{n}");
            n += 1;
        }
        self.add_task(id.clone(), kind);
        if let Some(t) = self.tasks.get_mut(&id) {
            t.retries = defaults::SENSOR_RETRIES;
        }
        self.waits.insert(key, id.clone());
        id
    }

    pub fn finish(mut self) -> Dag {
        let mut tasks: Vec<Task> = self.tasks.into_values().collect();
        for t in &mut tasks {
            t.upstream.sort();
        }
        self.dag.tasks = tasks;
        self.dag
    }
}

/// `wait_for__<table>__<column>[_minus_N|_plus_N][__<key>_<value>...]`, sanitized.
pub fn sensor_task_id(dep: &PartitionDependency) -> String {
    use chronoflow_config::naming::sanitize;
    let mut id = format!(
        "wait_for__{}__{}{}",
        sanitize(&dep.table),
        sanitize(&dep.partition_column),
        offset_suffix(dep.offset_days)
    );
    for (k, v) in &dep.sub_partitions {
        id.push_str(&format!("__{}_{}", sanitize(k), sanitize(v)));
    }
    id
}

fn offset_suffix(offset: i64) -> String {
    match offset {
        0 => String::new(),
        n if n < 0 => format!("_minus_{}", -n),
        n => format!("_plus_{n}"),
    }
}

/// The DAG a job's scheduled task goes to, if any (before schedules are checked).
pub(crate) fn scheduled_dag_family(job: &Job) -> Option<DagKind> {
    Some(match (job.kind, job.mode) {
        (ConfigKind::GroupBy, Mode::Backfill | Mode::Upload | Mode::UploadToKv) => {
            DagKind::GroupByBatch
        }
        (ConfigKind::GroupBy, Mode::Streaming) => DagKind::GroupByStreaming,
        (ConfigKind::Join, Mode::Backfill) => DagKind::Join,
        (
            ConfigKind::Join,
            Mode::LogFlattener | Mode::BuildComparisonTable | Mode::ConsistencyMetricsCompute,
        ) => DagKind::JoinConsistency,
        (ConfigKind::StagingQuery, Mode::Backfill) => DagKind::StagingQuery,
        (_, Mode::MetadataUpload) => DagKind::Metadata,
        _ => return None,
    })
}

impl DagBuilder {
    /// Drops the given upstream ids of a task (used when a chain edge makes them redundant).
    pub fn remove_upstream(&mut self, task_id: &str, ids: &BTreeSet<String>) {
        if let Some(t) = self.tasks.get_mut(task_id) {
            t.upstream.retain(|u| !ids.contains(u));
        }
    }
}
