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
    /// Work with the tables of the warehouse: import, list, partitions, export.
    #[command(subcommand)]
    Table(TableCommand),
    /// Run one Chronon job on the local engine, as Chronon's `run.py --mode ... --conf ...` does.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job: `backfill` computes the config's output partitions.
    #[arg(long, value_enum, default_value_t = RunMode::Backfill)]
    pub mode: RunMode,
    /// The compiled config (a file of the repo), e.g. `production/joins/team/name.v1`.
    #[arg(long, value_name = "PATH")]
    pub conf: PathBuf,
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    /// Run for this one partition.
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with_all = ["start_ds", "end_ds"])]
    pub ds: Option<String>,
    /// First partition of a range (with --end-ds).
    #[arg(long, value_name = "YYYY-MM-DD", requires = "end_ds")]
    pub start_ds: Option<String>,
    /// Last partition of a range, inclusive.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "start_ds")]
    pub end_ds: Option<String>,
    /// Partitions computed per step; results do not depend on it, memory does.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub step_days: u32,
    /// Steps run at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallelism: usize,
    /// Recompute partitions that already exist (by default only missing ones are computed).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunMode {
    /// Compute output partitions (GroupBy daily snapshots, Join training rows).
    Backfill,
}

#[derive(Debug, clap::Args)]
pub struct WarehouseArg {
    /// Where tables live: a directory, `file://…`, or `s3://bucket/prefix` / `gs://bucket/prefix`
    /// (credentials from the usual environment variables).
    #[arg(long, value_name = "URI", env = "CHRONOFLOW_WAREHOUSE", default_value = chronoflow_engine::warehouse::DEFAULT_WAREHOUSE)]
    pub warehouse: String,
}

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Import a CSV (with a header row) or Parquet file as a table, one partition per value of the
    /// partition column; partitions that exist are replaced atomically.
    Import {
        /// The table, `namespace.table`.
        table: String,
        /// The file: `.csv` or `.parquet`.
        file: PathBuf,
        /// The column whose `yyyy-MM-dd` values name the partitions.
        #[arg(long, default_value = "ds")]
        partition_column: String,
        #[command(flatten)]
        warehouse: WarehouseArg,
    },
    /// List the tables with their partition counts and date ranges.
    List {
        #[command(flatten)]
        warehouse: WarehouseArg,
    },
    /// List a table's partitions with their row counts.
    Partitions {
        /// The table, `namespace.table`.
        table: String,
        #[command(flatten)]
        warehouse: WarehouseArg,
    },
    /// Write a table (or one partition) as CSV, JSON lines or Parquet, the partition column last.
    Export {
        /// The table, `namespace.table`.
        table: String,
        /// Only this partition.
        #[arg(long, value_name = "YYYY-MM-DD")]
        ds: Option<String>,
        #[arg(long, value_enum)]
        format: ExportFormatArg,
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        warehouse: WarehouseArg,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormatArg {
    /// Header row; lists as JSON arrays, maps as JSON objects with sorted keys, nulls as empty fields.
    Csv,
    /// One JSON object per line.
    Json,
    /// One Parquet file.
    Parquet,
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
