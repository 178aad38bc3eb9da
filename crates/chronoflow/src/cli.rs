//! The command line: every subcommand and flag, each documented where it is declared.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "chronoflow",
    version,
    about = "Runs Chronon feature pipelines end to end: plan, schedule, compute, serve."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load every compiled config of a repo and report every problem found.
    ///
    /// Exits 1 when any diagnostic is an error, 0 otherwise (warnings and notices are printed).
    Check(CheckArgs),
    /// Derive the jobs and DAGs of a repo and print them.
    Plan(PlanArgs),
}

#[derive(Debug, clap::Args)]
pub struct RepoArg {
    /// The repo of compiled configs: a directory with `production/` and `teams.json` (Airbnb
    /// layout), or with `compiled/` (Zipline layout).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// How to print diagnostics.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// One line per diagnostic, then a summary.
    Text,
    /// A JSON object: `{"files", "configs", "counts", "diagnostics"}`.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Output format. `json` is the stable plan format the scheduler consumes
    /// (docs/plan-format.md).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Only this DAG (e.g. `chronon_gb_batch_quickstart`). With `--format json` the jobs are
    /// limited to those the DAG runs.
    #[arg(long, value_name = "ID")]
    pub dag: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// DAGs and their tasks, upstream first.
    Text,
    /// The full plan: jobs, DAGs, diagnostics.
    Json,
    /// Graphviz dot (`dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}
