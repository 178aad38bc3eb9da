//! What the scheduler runs: DAG specs compiled from the plan and the scheduler configuration.
//!
//! A spec is stored as JSON with a version per change, so runs keep the definition they started
//! with while the repo moves on (Vector-style: compile the config into a graph, diff on reload).

use std::collections::BTreeMap;

use chronoflow_plan::{Plan, TaskKind, dag::DagKind, schedule::Schedule};
use serde::{Deserialize, Serialize};

use crate::config::SchedulerConfig;
use crate::timetable::Timetable;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagSpec {
    pub dag_id: String,
    /// The planner's DAG kind (`join`, `group_by_batch`, ...), or `custom`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub timetable: Timetable,
    pub catchup: bool,
    /// Whether one run fills every missing partition up to its `ds` (Chronon's backfill jobs
    /// do), so catch-up makes one run for the newest date instead of one per missed date.
    pub fills_missing: bool,
    /// The first logical date catch-up goes back to (`yyyy-MM-dd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    pub max_active_runs: u32,
    pub concurrency: u32,
    /// Sorted by task id.
    pub tasks: Vec<TaskSpec>,
    /// Task id -> the tasks that list it as upstream, built on first use: finishing a task
    /// must not walk every task of a 10,000-task DAG.
    #[serde(skip)]
    pub downstream_index: std::sync::OnceLock<std::collections::HashMap<String, Vec<String>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub task_id: String,
    /// Sorted task ids of the same DAG.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
    pub retries: u32,
    pub retry_delay_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_timeout_seconds: Option<u64>,
    pub action: Action,
}

/// What a task does when its turn comes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// A job run by the team's executor (a worker slot).
    Job(JobRef),
    /// Uploads the metadata of these jobs' configs whose content hash changed (a worker slot).
    MetadataUpload { jobs: Vec<JobRef> },
    /// Checked by the scheduler itself on a poke interval (no worker slot).
    PartitionSensor {
        table: String,
        partition_column: String,
        offset_days: i64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sub_partitions: Vec<(String, String)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end: Option<String>,
        poke_interval_seconds: u64,
        timeout_seconds: u64,
    },
    /// Checked by the scheduler: task `task_id` of DAG `dag_id` succeeded for `ds + offset_days`.
    UpstreamWait {
        dag_id: String,
        task_id: String,
        offset_days: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end: Option<String>,
        poke_interval_seconds: u64,
        timeout_seconds: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    pub job: String,
    pub config: String,
    pub mode: String,
    pub team: String,
    pub conf_path: String,
    pub content_hash: String,
}

impl Action {
    /// Sensors and waits are performed by the scheduler; everything else takes a worker slot.
    pub fn is_sensor(&self) -> bool {
        matches!(
            self,
            Action::PartitionSensor { .. } | Action::UpstreamWait { .. }
        )
    }
}

impl DagSpec {
    pub fn task(&self, task_id: &str) -> Option<&TaskSpec> {
        self.tasks
            .binary_search_by(|t| t.task_id.as_str().cmp(task_id))
            .ok()
            .map(|i| &self.tasks[i])
    }

    /// The tasks that list `task_id` as upstream (sorted).
    pub fn downstream_of(&self, task_id: &str) -> &[String] {
        self.downstream_index
            .get_or_init(|| {
                self.downstream()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
                    .collect()
            })
            .get(task_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Task id -> the tasks that list it as upstream (sorted).
    pub fn downstream(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in &self.tasks {
            for up in &t.upstream {
                out.entry(up.as_str()).or_default().push(&t.task_id);
            }
        }
        out
    }

    /// Every task downstream of `task_id`, transitively (not including it).
    pub fn all_downstream(&self, task_id: &str) -> Vec<String> {
        let edges = self.downstream();
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![task_id];
        while let Some(t) = stack.pop() {
            for d in edges.get(t).into_iter().flatten() {
                if seen.insert(d.to_string()) {
                    stack.push(d);
                }
            }
        }
        seen.into_iter().collect()
    }

    /// A stable hash of the spec: a changed hash is a new version.
    pub fn content_hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("specs serialize");
        chronoflow_config::repo::content_hash(&json)
    }

    /// Checks what the store relies on: unique sorted ids, known upstreams, no cycle.
    pub fn validate(&self) -> Result<(), String> {
        for w in self.tasks.windows(2) {
            if w[0].task_id >= w[1].task_id {
                return Err(format!(
                    "tasks are not sorted and unique at {:?}",
                    w[1].task_id
                ));
            }
        }
        for t in &self.tasks {
            for up in &t.upstream {
                if self.task(up).is_none() {
                    return Err(format!("task {:?} has unknown upstream {up:?}", t.task_id));
                }
            }
        }
        // Kahn's algorithm: every task must be reachable in dependency order.
        let mut indegree: BTreeMap<&str, usize> = self
            .tasks
            .iter()
            .map(|t| (t.task_id.as_str(), t.upstream.len()))
            .collect();
        let edges = self.downstream();
        let mut ready: Vec<&str> = indegree
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(t, _)| *t)
            .collect();
        let mut seen = 0;
        while let Some(t) = ready.pop() {
            seen += 1;
            for d in edges.get(t).into_iter().flatten() {
                let n = indegree.get_mut(d).expect("known task");
                *n -= 1;
                if *n == 0 {
                    ready.push(d);
                }
            }
        }
        if seen != self.tasks.len() {
            return Err("the tasks form a cycle".to_owned());
        }
        Ok(())
    }
}

/// Compiles the planner's DAGs into specs, applying the configuration's overrides.
pub fn specs_from_plan(plan: &Plan, config: &SchedulerConfig) -> Vec<DagSpec> {
    plan.dags
        .iter()
        .map(|dag| {
            let o = config.dags.get(&dag.dag_id).cloned().unwrap_or_default();
            let timetable = match &dag.schedule {
                Schedule::Cron { expr } => Timetable::Cron { expr: expr.clone() },
                Schedule::Interval { minutes } => Timetable::Interval { minutes: *minutes },
                Schedule::Manual => Timetable::Manual,
            };
            let fills_missing = matches!(
                dag.kind,
                DagKind::GroupByBatch | DagKind::Join | DagKind::StagingQuery
            );
            let tasks = dag
                .tasks
                .iter()
                .map(|t| {
                    let to = config
                        .tasks
                        .get(&format!("{}.{}", dag.dag_id, t.task_id))
                        .cloned()
                        .unwrap_or_default();
                    let is_sensor = matches!(
                        t.kind,
                        TaskKind::PartitionSensor { .. } | TaskKind::UpstreamWait { .. }
                    );
                    // DAG-level retry settings are for jobs; sensors keep theirs.
                    let (dag_retries, dag_delay) = if is_sensor {
                        (None, None)
                    } else {
                        (o.retries, o.retry_delay_seconds)
                    };
                    TaskSpec {
                        task_id: t.task_id.clone(),
                        upstream: t.upstream.clone(),
                        retries: to.retries.or(dag_retries).unwrap_or(t.retries),
                        retry_delay_seconds: to
                            .retry_delay_seconds
                            .or(dag_delay)
                            .unwrap_or(t.retry_delay_seconds),
                        execution_timeout_seconds: to
                            .execution_timeout_seconds
                            .or(o.execution_timeout_seconds),
                        action: action_of(plan, &t.kind),
                    }
                })
                .collect();
            DagSpec {
                dag_id: dag.dag_id.clone(),
                kind: serde_json::to_value(dag.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                team: dag.team.clone(),
                timetable,
                catchup: o.catchup.unwrap_or(dag.catchup),
                fills_missing,
                start_date: o.start_date.clone(),
                max_active_runs: o.max_active_runs.unwrap_or(dag.max_active_runs).max(1),
                concurrency: o.concurrency.unwrap_or(dag.concurrency).max(1),
                tasks,
                downstream_index: Default::default(),
            }
        })
        .collect()
}

/// What keeps the plan's jobs from resolving a resource profile under `config` (a config tag
/// naming an undefined profile, two profile tags on one config), one message per problem. A
/// re-planning with any is not applied, like a repo with errors: each try would fail on it.
pub fn profile_errors(plan: &Plan, config: &SchedulerConfig) -> Vec<String> {
    let errors: std::collections::BTreeSet<String> = plan
        .jobs
        .iter()
        .filter_map(|job| config.profiles.resolve_job(job).err())
        .map(|e| e.to_string())
        .collect();
    errors.into_iter().collect()
}

fn job_ref(plan: &Plan, job_id: &str) -> JobRef {
    match plan.job(job_id) {
        Some(j) => JobRef {
            job: j.id.clone(),
            config: j.config.clone(),
            mode: j.mode.as_str().to_owned(),
            team: j.team.clone(),
            conf_path: j.conf_path.clone(),
            content_hash: j.content_hash.clone(),
        },
        // The planner only references its own jobs; keep the id so the failure names it.
        None => JobRef {
            job: job_id.to_owned(),
            config: job_id.to_owned(),
            mode: String::new(),
            team: String::new(),
            conf_path: String::new(),
            content_hash: String::new(),
        },
    }
}

fn action_of(plan: &Plan, kind: &TaskKind) -> Action {
    match kind {
        TaskKind::Job { job, .. } => Action::Job(job_ref(plan, job)),
        TaskKind::MetadataUpload { jobs } => Action::MetadataUpload {
            jobs: jobs.iter().map(|j| job_ref(plan, j)).collect(),
        },
        TaskKind::PartitionSensor {
            table,
            partition_column,
            offset_days,
            sub_partitions,
            end,
            poke_interval_seconds,
            timeout_seconds,
            ..
        } => Action::PartitionSensor {
            table: table.clone(),
            partition_column: partition_column.clone(),
            offset_days: *offset_days,
            sub_partitions: sub_partitions.clone(),
            end: end.map(|d| d.to_string()),
            poke_interval_seconds: *poke_interval_seconds,
            timeout_seconds: *timeout_seconds,
        },
        TaskKind::UpstreamWait {
            dag_id,
            upstream_task_id,
            offset_days,
            end,
            poke_interval_seconds,
            timeout_seconds,
            ..
        } => Action::UpstreamWait {
            dag_id: dag_id.clone(),
            task_id: upstream_task_id.clone(),
            offset_days: *offset_days,
            end: end.map(|d| d.to_string()),
            poke_interval_seconds: *poke_interval_seconds,
            timeout_seconds: *timeout_seconds,
        },
    }
}
