//! `consistency <join>`: a Join's daily consistency figures, as text or JSON (the JSON is what
//! `GET /api/v1/joins/{join}/consistency` returns: one reader, `consistency::join_report`).

use std::process::ExitCode;

use anyhow::Context;
use chronoflow_engine::consistency_report::render_text;
use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::consistency::join_report;

use crate::cli::{CheckFormat, ConsistencyArgs};

/// Worst features shown per day in text.
const WORST_SHOWN: usize = 5;

pub fn run(args: &ConsistencyArgs) -> anyhow::Result<ExitCode> {
    let repo = super::load_repo(&args.repo.repo)?;
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| args.repo.repo.join("chronoflow.toml"));
    if args.config.is_some() && !path.exists() {
        anyhow::bail!("scheduler config {} does not exist", path.display());
    }
    let config = SchedulerConfig::load(&path)?;
    let warehouse = args.warehouse.open(Some(&args.repo.repo))?;
    let report = super::service::runtime()?
        .block_on(join_report(
            &warehouse,
            &repo,
            &config,
            &args.join,
            args.start_ds.as_deref(),
            args.end_ds.as_deref(),
        ))
        .with_context(|| format!("reading the consistency figures of {}", args.join))?;
    match args.format {
        CheckFormat::Text => print!("{}", render_text(&report, WORST_SHOWN)),
        CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}
