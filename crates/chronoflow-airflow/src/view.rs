//! What a template sees: the DAG, its Airflow tasks (grouped), their dependencies, the merged
//! params, and the commands each task runs. See docs/airflow.md for every variable.

use std::collections::BTreeMap;

use chronoflow_config::naming::sanitize;
use chronoflow_plan::{Dag, Mode, Schedule, Task, TaskKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::command::{self, CommandParams};
use crate::grouping::GroupedTask;
use crate::{AirflowError, ExportRequest, TaskResources};

/// The params the export itself reads (the template sees all of them).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub command: CommandParams,
    pub dag: DagParams,
    pub sensor: SensorParams,
    pub grouping: GroupingParams,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DagParams {
    pub start_date: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SensorParams {
    pub mode: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GroupingParams {
    pub tag_prefix: String,
}

impl Settings {
    pub fn from_params(dag_id: &str, params: &toml::Table) -> Result<Settings, AirflowError> {
        let bad = |key: &str, value: String, reason: String| AirflowError::BadParam {
            origin: format!("params of DAG {dag_id}"),
            key: key.to_owned(),
            value,
            reason,
        };
        let flavor = params
            .get("command")
            .and_then(|c| c.get("flavor"))
            .and_then(toml::Value::as_str)
            .unwrap_or_default();
        if !["chronoflow", "zipline", "run_py"].contains(&flavor) {
            return Err(bad(
                "command.flavor",
                format!("{flavor:?}"),
                "expected \"chronoflow\", \"zipline\" or \"run_py\"".to_owned(),
            ));
        }
        let settings: Settings = toml::Value::Table(params.clone())
            .try_into()
            .map_err(|e: toml::de::Error| bad("", String::new(), e.message().to_owned()))?;
        if !matches!(settings.sensor.mode.as_str(), "reschedule" | "poke") {
            return Err(bad(
                "sensor.mode",
                format!("{:?}", settings.sensor.mode),
                "expected \"reschedule\" or \"poke\"".to_owned(),
            ));
        }
        if chronoflow_config::PartitionDate::parse(&settings.dag.start_date).is_err() {
            return Err(bad(
                "dag.start_date",
                format!("{:?}", settings.dag.start_date),
                "expected a date, YYYY-MM-DD".to_owned(),
            ));
        }
        Ok(settings)
    }
}

#[derive(Serialize)]
struct JobView<'a> {
    job: &'a str,
    config: &'a str,
    mode: &'a str,
    team: &'a str,
    conf_path: &'a str,
    argv: Vec<String>,
    command: String,
}

/// The template context of one DAG.
pub fn dag_context(
    request: &ExportRequest<'_>,
    dag: &Dag,
    tasks: &[GroupedTask<'_>],
    renamed: &BTreeMap<(&str, &str), &str>,
    params: &toml::Table,
    settings: &Settings,
) -> Value {
    let manual = dag.schedule == Schedule::Manual;
    let repo = if settings.command.repo.is_empty() {
        request.repo_dir
    } else {
        settings.command.repo.as_str()
    };
    let task_views: Vec<Value> = tasks
        .iter()
        .map(|t| task_view(request, t, renamed, settings, repo, manual))
        .collect();
    let mut edges: Vec<(&str, &str)> = tasks
        .iter()
        .flat_map(|t| t.upstream.iter().map(|u| (u.as_str(), t.task_id.as_str())))
        .collect();
    edges.sort();
    let order = topological(tasks);
    let mut dag_tags: Vec<String> = params
        .get("dag")
        .and_then(|d| d.get("tags"))
        .and_then(toml::Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(team) = &dag.team {
        dag_tags.push(format!("team:{team}"));
    }
    let defaults = task_defaults(tasks, dag.team.as_deref().unwrap_or_default());
    let has = |kind: &str| task_views.iter().any(|t| t["type"] == kind);
    let uses = json!({
        "partition_sensor": has("partition_sensor"),
        "upstream_wait": has("upstream_wait"),
        "keep_alive": settings.command.flavor == command::Flavor::Chronoflow
            && task_views.iter().any(|t| t["streaming"] == true),
    });
    json!({
        "dag": {
            "dag_id": dag.dag_id,
            "kind": dag.kind,
            "team": dag.team,
            "schedule": dag.schedule,
            "schedule_text": dag.schedule.to_string(),
            "manual": manual,
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "concurrency": dag.concurrency,
            "params": dag.params,
            "tags": dag_tags,
            "defaults": defaults,
            "file_name": format!("{}.py", dag.dag_id),
        },
        "tasks": task_views,
        "uses": uses,
        "order": order,
        "edges": edges,
        "params": params,
        "repo": repo,
        "partitions_argv": command::partitions_argv(&settings.command),
        "chronoflow_version": env!("CARGO_PKG_VERSION"),
    })
}

fn task_view(
    request: &ExportRequest<'_>,
    t: &GroupedTask<'_>,
    renamed: &BTreeMap<(&str, &str), &str>,
    settings: &Settings,
    repo: &str,
    manual: bool,
) -> Value {
    let jobs = jobs_of(request, &t.members, settings, repo, manual);
    let streaming = jobs.iter().any(|j| j.mode == Mode::Streaming.as_str());
    let kind = match (&t.group, t.members.first().map(|m| &m.kind)) {
        (Some(_), _) => "group",
        (None, Some(TaskKind::Job { .. })) => "job",
        (None, Some(TaskKind::MetadataUpload { .. })) => "metadata_upload",
        (None, Some(TaskKind::PartitionSensor { .. })) => "partition_sensor",
        (None, Some(TaskKind::UpstreamWait { .. })) => "upstream_wait",
        (None, None) => "empty",
    };
    let resources = jobs
        .first()
        .and_then(|j| request.resources.get(j.job))
        .cloned()
        .unwrap_or_else(TaskResources::default);
    let command = (!jobs.is_empty()).then(|| {
        jobs.iter()
            .map(|j| j.command.as_str())
            .collect::<Vec<_>>()
            .join(" && ")
    });
    let streams: Vec<(String, &Vec<String>)> = jobs
        .iter()
        .filter(|j| j.mode == Mode::Streaming.as_str())
        .map(|j| (sanitize(j.config), &j.argv))
        .collect();
    let mut view = json!({
        "task_id": t.task_id,
        "type": kind,
        "group": t.group,
        "members": t.members.iter().map(|m| m.task_id.as_str()).collect::<Vec<_>>(),
        "upstream": t.upstream,
        "retries": t.retries,
        "retry_delay_seconds": t.retry_delay_seconds,
        "jobs": jobs,
        "streaming": streaming,
        "streams": streams,
        "command": command,
        "resources": resources,
    });
    if let (None, Some(member)) = (&t.group, t.members.first()) {
        add_wait_fields(&mut view, member, renamed);
    }
    view
}

fn jobs_of<'p>(
    request: &ExportRequest<'p>,
    members: &[&'p Task],
    settings: &Settings,
    repo: &str,
    manual: bool,
) -> Vec<JobView<'p>> {
    let ids: Vec<&str> = members
        .iter()
        .flat_map(|m| match &m.kind {
            TaskKind::Job { job, .. } => vec![job.as_str()],
            TaskKind::MetadataUpload { jobs } => jobs.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        })
        .collect();
    ids.into_iter()
        .filter_map(|id| request.plan.job(id))
        .map(|job| {
            let argv = command::job_argv(&settings.command, repo, job, manual);
            JobView {
                job: &job.id,
                config: &job.config,
                mode: job.mode.as_str(),
                team: &job.team,
                conf_path: &job.conf_path,
                command: command::shell_join(&argv),
                argv,
            }
        })
        .collect()
}

/// Sensors' and waits' own fields, at the task's top level.
fn add_wait_fields(view: &mut Value, task: &Task, renamed: &BTreeMap<(&str, &str), &str>) {
    let Value::Object(map) = view else { return };
    match &task.kind {
        TaskKind::PartitionSensor {
            table,
            partition_column,
            offset_days,
            sub_partitions,
            end,
            produced_by,
            poke_interval_seconds,
            timeout_seconds,
        } => {
            map.insert("table".into(), json!(table));
            map.insert("partition_column".into(), json!(partition_column));
            map.insert("offset_days".into(), json!(offset_days));
            map.insert("sub_partitions".into(), json!(sub_partitions));
            map.insert("end".into(), json!(end.map(|e| e.to_string())));
            map.insert("produced_by".into(), json!(produced_by));
            map.insert("poke_interval_seconds".into(), json!(poke_interval_seconds));
            map.insert("timeout_seconds".into(), json!(timeout_seconds));
        }
        TaskKind::UpstreamWait {
            dag_id,
            upstream_task_id,
            job,
            table,
            offset_days,
            end,
            poke_interval_seconds,
            timeout_seconds,
        } => {
            let external = renamed
                .get(&(dag_id.as_str(), upstream_task_id.as_str()))
                .copied()
                .unwrap_or(upstream_task_id.as_str());
            map.insert("external_dag_id".into(), json!(dag_id));
            map.insert("external_task_id".into(), json!(external));
            map.insert("job".into(), json!(job));
            map.insert("table".into(), json!(table));
            map.insert("offset_days".into(), json!(offset_days));
            map.insert("end".into(), json!(end.map(|e| e.to_string())));
            map.insert("poke_interval_seconds".into(), json!(poke_interval_seconds));
            map.insert("timeout_seconds".into(), json!(timeout_seconds));
        }
        _ => {}
    }
}

/// Task ids upstream first, ties by id.
fn topological(tasks: &[GroupedTask<'_>]) -> Vec<String> {
    let mut remaining: BTreeMap<&str, Vec<&str>> = tasks
        .iter()
        .map(|t| {
            (
                t.task_id.as_str(),
                t.upstream.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let mut order = Vec::with_capacity(tasks.len());
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, ups)| ups.iter().all(|u| !remaining.contains_key(u)))
            .map(|(id, _)| *id)
            .collect();
        if ready.is_empty() {
            // Unreachable: grouping rejected cycles. Keep the rest in id order.
            order.extend(remaining.keys().map(|id| (*id).to_owned()));
            break;
        }
        for id in ready {
            remaining.remove(id);
            order.push(id.to_owned());
        }
    }
    order
}

/// What most tasks of the DAG share (retries, retry delay; the DAG's team for alerts), so a
/// template can set it once in `default_args`: Airflow parses DAG files often, and per-task
/// arguments cost parse time (about a fifth on the 10,000-config benchmark).
fn task_defaults(tasks: &[GroupedTask<'_>], team: &str) -> Value {
    fn most_common<T: Ord + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
        let mut counts: BTreeMap<T, usize> = BTreeMap::new();
        for v in values {
            *counts.entry(v).or_default() += 1;
        }
        // Ties go to the smallest value, so the choice is deterministic.
        counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(v, _)| v)
    }
    json!({
        "retries": most_common(tasks.iter().map(|t| t.retries)).unwrap_or(0),
        "retry_delay_seconds": most_common(tasks.iter().map(|t| t.retry_delay_seconds)).unwrap_or(0),
        "team": team,
    })
}
