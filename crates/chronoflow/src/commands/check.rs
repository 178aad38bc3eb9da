use std::process::ExitCode;

use chronoflow_config::DiagnosticCounts;

use crate::cli::{CheckArgs, CheckFormat};

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let repo = super::load_repo(&args.repo.repo)?;
    // Planning finds what loading cannot (cycles, invalid schedules, tables written twice).
    let plan = chronoflow_plan::plan(&repo);
    let counts = DiagnosticCounts::of(&plan.diagnostics);
    match args.format {
        CheckFormat::Text => {
            for d in &plan.diagnostics {
                println!("{d}");
            }
            println!(
                "checked {} files: {} configs loaded; {} errors, {} warnings, {} notices",
                repo.file_count,
                repo.configs.len(),
                counts.errors,
                counts.warnings,
                counts.notices
            );
        }
        CheckFormat::Json => {
            let report = serde_json::json!({
                "files": repo.file_count,
                "configs": repo.configs.len(),
                "counts": counts,
                "diagnostics": plan.diagnostics,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if counts.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
