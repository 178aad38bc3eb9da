use std::process::ExitCode;

use anyhow::bail;
use chronoflow_config::{DiagnosticCounts, Severity};
use chronoflow_plan::{Dag, Plan, render};

use crate::cli::{PlanArgs, PlanFormat};

/// Prints the plan of the configs that load; errors and warnings go to stderr, and any error
/// makes the exit code 1, as `check`'s: a plan missing configs is not a plan to deploy.
pub fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let repo = super::load_repo(&args.repo.repo)?;
    let mut plan = chronoflow_plan::plan(&repo);
    let counts = DiagnosticCounts::of(&plan.diagnostics);
    for d in plan
        .diagnostics
        .iter()
        .filter(|d| d.severity != Severity::Notice)
    {
        eprintln!("{d}");
    }
    if counts.errors > 0 {
        eprintln!(
            "{} configs were left out of the plan for {} errors; run `chronoflow check` for details",
            configs_with_errors(&plan),
            counts.errors
        );
    }
    let profile_errors = apply_profiles(&mut plan, &args.repo.repo)?;
    if let Some(id) = &args.dag {
        select_dag(&mut plan, id)?;
    }
    let dags: Vec<&Dag> = plan.dags.iter().collect();
    let rendered = match args.format {
        PlanFormat::Text => render::text(&dags),
        PlanFormat::Json => serde_json::to_string_pretty(&plan)? + "\n",
        PlanFormat::Dot => render::dot(&dags),
        PlanFormat::Mermaid => render::mermaid(&dags),
    };
    super::output::emit(&rendered, args.out.as_deref())?;
    Ok(if counts.errors > 0 || profile_errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Gives each job its resource profile from the repo's `chronoflow.toml` (`[profiles]`; without
/// it jobs have none and the JSON plan is unchanged). Prints what cannot be resolved; their count.
fn apply_profiles(plan: &mut Plan, repo: &std::path::Path) -> anyhow::Result<usize> {
    let config =
        chronoflow_scheduler::config::SchedulerConfig::load(&repo.join("chronoflow.toml"))?;
    let errors = config.profiles.apply(plan);
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(errors.len())
}

fn configs_with_errors(plan: &Plan) -> usize {
    let files: std::collections::BTreeSet<&str> = plan
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.file.as_str())
        .collect();
    files.len()
}

/// Keeps only DAG `id` (and, for JSON, the jobs it runs), or says which DAGs exist.
fn select_dag(plan: &mut Plan, id: &str) -> anyhow::Result<()> {
    let Some(dag) = plan.dag(id).cloned() else {
        let known: Vec<&str> = plan.dags.iter().map(|d| d.dag_id.as_str()).collect();
        bail!("unknown DAG {id:?}; the plan has: {}", known.join(", "));
    };
    let jobs: std::collections::BTreeSet<&str> = dag
        .tasks
        .iter()
        .flat_map(|t| match &t.kind {
            chronoflow_plan::TaskKind::Job { job, .. } => vec![job.as_str()],
            chronoflow_plan::TaskKind::MetadataUpload { jobs } => {
                jobs.iter().map(String::as_str).collect()
            }
            _ => vec![],
        })
        .collect();
    plan.jobs.retain(|j| jobs.contains(j.id.as_str()));
    plan.dags = vec![dag];
    Ok(())
}
