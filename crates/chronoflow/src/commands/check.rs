use std::process::ExitCode;

use chronoflow_config::DiagnosticCounts;

use crate::cli::{CheckArgs, CheckFormat};

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let repo = super::load_repo(&args.repo.repo)?;
    // Planning finds what loading cannot (cycles, invalid schedules, tables written twice).
    let plan = chronoflow_plan::plan(&repo);
    let counts = DiagnosticCounts::of(&plan.diagnostics);
    let text = match args.format {
        CheckFormat::Text => {
            let mut text = String::new();
            for d in &plan.diagnostics {
                text.push_str(&format!("{d}\n"));
            }
            text.push_str(&format!(
                "checked {} files: {} configs loaded; {} errors, {} warnings, {} notices\n",
                repo.file_count,
                repo.configs.len(),
                counts.errors,
                counts.warnings,
                counts.notices
            ));
            text
        }
        CheckFormat::Json => {
            let report = serde_json::json!({
                "files": repo.file_count,
                "configs": repo.configs.len(),
                "counts": counts,
                "diagnostics": plan.diagnostics,
            });
            serde_json::to_string_pretty(&report)? + "\n"
        }
    };
    super::output::emit(&text, None)?;
    Ok(if counts.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
