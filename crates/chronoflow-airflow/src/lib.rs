//! Exports the plan as Apache Airflow 3 DAG files: one Python file per DAG of the plan, rendered
//! by a minijinja template (a built-in default, or the user's) from the DAG, its tasks, their
//! dependencies and the merged params.
//!
//! Pure like the planner: [`export`] takes the plan and what else it needs as values and returns
//! the files' names and contents (the binary writes them). The same inputs give the same bytes:
//! every collection is sorted and nothing depends on the time or the machine.

pub mod command;
mod error;
pub mod grouping;
pub mod params;
mod render;
mod resources;
mod view;

use std::collections::{BTreeMap, BTreeSet};

pub use error::AirflowError;
pub use params::Params;
pub use render::DEFAULT_TEMPLATE;
pub use resources::{job_resources, profiles_from_config};
use serde::Serialize;

use chronoflow_plan::Plan;

/// Where and with what an Airflow task runs, from the job's resolved resource profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskResources {
    /// Airflow's `executor_config` (e.g. a Kubernetes pod override): free-form.
    pub executor_config: BTreeMap<String, serde_json::Value>,
    pub pool: Option<String>,
    pub queue: Option<String>,
}

/// A user template: its name (for messages) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Template<'a> {
    pub name: &'a str,
    pub source: &'a str,
}

/// Everything an export reads.
#[derive(Debug, Clone)]
pub struct ExportRequest<'a> {
    pub plan: &'a Plan,
    /// Job id -> what its task runs with. Jobs without an entry get none.
    pub resources: &'a BTreeMap<String, TaskResources>,
    pub params: &'a Params,
    /// `None`: the built-in template.
    pub template: Option<Template<'a>>,
    /// The repo directory commands run in, unless `command.repo` says otherwise.
    pub repo_dir: &'a str,
}

/// One DAG file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagFile {
    /// `<dag_id>.py`.
    pub file_name: String,
    pub contents: String,
}

/// Renders every DAG of the plan. Nothing is returned unless every DAG rendered.
pub fn export(request: &ExportRequest<'_>) -> Result<Vec<DagFile>, AirflowError> {
    let plan = request.plan;
    let dag_ids: BTreeSet<&str> = plan.dags.iter().map(|d| d.dag_id.as_str()).collect();
    let teams: BTreeSet<&str> = plan.jobs.iter().map(|j| j.team.as_str()).collect();
    request.params.check_sections(&dag_ids, &teams)?;

    // Config name -> its tags (every job of a config carries the config's tags).
    let tags: BTreeMap<String, Vec<String>> = plan
        .jobs
        .iter()
        .map(|j| (j.config.clone(), j.tags.clone()))
        .collect();
    let mut merged = BTreeMap::new();
    let mut grouped = BTreeMap::new();
    for dag in &plan.dags {
        let params = request.params.for_dag(&dag.dag_id, dag.team.as_deref())?;
        let settings = view::Settings::from_params(&dag.dag_id, &params)?;
        let tasks = grouping::group_dag(dag, &tags, &settings.grouping.tag_prefix)?;
        grouped.insert(dag.dag_id.as_str(), tasks);
        merged.insert(dag.dag_id.as_str(), (params, settings));
    }
    // A cross-DAG wait on a task that grouping merged waits on its group.
    let renamed: BTreeMap<(&str, &str), &str> = grouped
        .iter()
        .flat_map(|(dag_id, tasks)| {
            tasks.iter().flat_map(move |t| {
                t.members
                    .iter()
                    .map(move |m| ((*dag_id, m.task_id.as_str()), t.task_id.as_str()))
            })
        })
        .collect();

    let renderer = render::Renderer::new(request.template)?;
    let mut files = Vec::with_capacity(plan.dags.len());
    for dag in &plan.dags {
        let (params, settings) = &merged[dag.dag_id.as_str()];
        let context = view::dag_context(
            request,
            dag,
            &grouped[dag.dag_id.as_str()],
            &renamed,
            params,
            settings,
        );
        let contents = renderer.render(&context)?;
        files.push(DagFile {
            file_name: format!("{}.py", dag.dag_id),
            contents,
        });
    }
    Ok(files)
}
