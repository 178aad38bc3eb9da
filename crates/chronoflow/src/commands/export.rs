//! `export airflow`: the plan as Airflow DAG files, written all or nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chronoflow_airflow::{DagFile, ExportRequest, Params, TaskResources, Template};
use chronoflow_config::{DiagnosticCounts, Repo};

use crate::cli::{ExportAirflowArgs, ExportCommand};

pub fn run(command: ExportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ExportCommand::Airflow(args) => airflow(&args),
    }
}

fn airflow(args: &ExportAirflowArgs) -> anyhow::Result<ExitCode> {
    let repo_dir = &args.repo.repo;
    let repo = super::load_repo(repo_dir)?;
    let plan = chronoflow_plan::plan(&repo);
    let counts = DiagnosticCounts::of(&plan.diagnostics);
    if counts.errors > 0 {
        for d in plan.diagnostics.iter().filter(|d| d.is_error()) {
            eprintln!("{d}");
        }
        // A plan missing configs is not a plan to deploy.
        bail!(
            "the repo has {} errors (configs left out of the plan); nothing exported. Run `chronoflow check --repo {}`",
            counts.errors,
            repo_dir.display()
        );
    }
    let template_text = read_optional(args.template.as_deref(), "template")?;
    let params_text = read_optional(args.params.as_deref(), "params file")?;
    let params = Params::new(
        params_text
            .as_ref()
            .map(|(name, text)| (name.as_str(), text.as_str())),
        &args.param,
    )?;
    let repo_abs = std::path::absolute(repo_dir)
        .with_context(|| format!("resolving {}", repo_dir.display()))?;
    let resources = resources(args, &repo, &plan)?;
    let files = chronoflow_airflow::export(&ExportRequest {
        plan: &plan,
        resources: &resources,
        params: &params,
        template: template_text.as_ref().map(|(name, source)| Template {
            name: name.as_str(),
            source: source.as_str(),
        }),
        repo_dir: &repo_abs.display().to_string(),
    })?;
    write_all_or_nothing(&args.out, &files)?;
    eprintln!(
        "wrote {} DAG files into {}",
        files.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_optional(path: Option<&Path>, what: &str) -> anyhow::Result<Option<(String, String)>> {
    path.map(|p| {
        std::fs::read_to_string(p)
            .with_context(|| format!("reading {what} {}", p.display()))
            .map(|text| (p.display().to_string(), text))
    })
    .transpose()
}

/// Each job's resources: its profile from `[profiles]` of the scheduler configuration
/// (--config, else `<repo>/chronoflow.toml` when it exists), the queue defaulting to teams.json
/// `airflow_queue`.
fn resources(
    args: &ExportAirflowArgs,
    repo: &Repo,
    plan: &chronoflow_plan::Plan,
) -> anyhow::Result<BTreeMap<String, TaskResources>> {
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| args.repo.repo.join("chronoflow.toml"));
    if args.config.is_some() && !path.exists() {
        bail!("scheduler config {} does not exist", path.display());
    }
    let profiles = if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        chronoflow_airflow::profiles_from_config(&path.display().to_string(), &text)?
    } else {
        Default::default()
    };
    let queues: BTreeMap<String, String> = plan
        .jobs
        .iter()
        .filter_map(|j| {
            repo.teams
                .airflow_queue(&j.team)
                .map(|q| (j.team.clone(), q.to_owned()))
        })
        .collect();
    Ok(chronoflow_airflow::job_resources(plan, &profiles, &queues)?)
}

/// Writes the files into a new directory beside `out`, then swaps it into place: a failure
/// at any point leaves `out` as it was (no half-written directory).
fn write_all_or_nothing(out: &Path, files: &[DagFile]) -> anyhow::Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = out
        .file_name()
        .with_context(|| format!("--out {}: not a directory name", out.display()))?
        .to_string_lossy()
        .into_owned();
    let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = write_into(&staging, files).and_then(|()| swap_into_place(&staging, out));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn write_into(dir: &Path, files: &[DagFile]) -> anyhow::Result<()> {
    std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    for f in files {
        let path = dir.join(&f.file_name);
        std::fs::write(&path, &f.contents)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `rename` replaces an empty directory only, so an existing `out` is first moved aside and
/// removed once the new one is in place.
fn swap_into_place(staging: &Path, out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        if !out.is_dir() {
            bail!("--out {} exists and is not a directory", out.display());
        }
        let old = staging.with_extension("old");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(out, &old)
            .with_context(|| format!("moving the previous {} aside", out.display()))?;
        if let Err(e) = std::fs::rename(staging, out) {
            let _ = std::fs::rename(&old, out);
            return Err(e).with_context(|| format!("moving the DAG files into {}", out.display()));
        }
        let _ = std::fs::remove_dir_all(&old);
        return Ok(());
    }
    std::fs::rename(staging, out)
        .with_context(|| format!("moving the DAG files into {}", out.display()))
}
