mod check;
mod consistency;
mod export;
mod fetch;
mod output;
mod plan;
mod run;
mod service;
mod state;
mod streams;
mod table;
mod tokens;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chronoflow_config::Repo;
use chronoflow_engine::Warehouse;
use chronoflow_engine::warehouse::TableFormats;

use crate::cli::{Cli, Command, WarehouseArg};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Table(command) => table::run(command),
        Command::Run(args) => run::run(&args),
        Command::Consistency(args) => consistency::run(&args),
        Command::Standalone(args) => service::standalone(&args),
        Command::Scheduler(args) => service::scheduler(&args),
        Command::Worker(args) => service::worker_command(&args),
        Command::Dags(command) => state::dags(command),
        Command::Runs(command) => state::runs(command),
        Command::Tasks(command) => state::tasks(command),
        Command::Fetch(args) => fetch::fetch(&args),
        Command::Serve(args) => fetch::serve(&args),
        Command::Tokens(command) => tokens::run(command),
        Command::Streams(command) => streams::run(command),
        Command::Export(command) => export::run(command),
    }
}

fn load_repo(path: &Path) -> anyhow::Result<Repo> {
    chronoflow_config::fs::load_repo(path)
        .with_context(|| format!("loading repo {}", path.display()))
}

/// A warehouse to open: where it is and its table formats (`[warehouse]`, `--warehouse-format`).
#[derive(Debug, Clone)]
pub struct WarehouseSpec {
    pub uri: String,
    formats: TableFormats,
}

impl WarehouseSpec {
    pub fn open(&self) -> anyhow::Result<Warehouse> {
        Ok(Warehouse::open(&self.uri)?.with_formats(&self.formats)?)
    }
}

impl WarehouseArg {
    /// The warehouse these flags name, with the `[warehouse]` section of `--warehouse-config`,
    /// else of `<repo>/chronoflow.toml` or `./chronoflow.toml`, whichever exists first.
    pub fn spec(&self, repo: Option<&Path>) -> anyhow::Result<WarehouseSpec> {
        let file = match &self.warehouse_config {
            Some(file) => Some(file.clone()),
            None => repo
                .map(|r| r.join("chronoflow.toml"))
                .into_iter()
                .chain([PathBuf::from("chronoflow.toml")])
                .find(|f| f.is_file()),
        };
        let mut formats = match file {
            Some(file) => warehouse_section(&file)?,
            None => TableFormats::default(),
        };
        if let Some(format) = self.warehouse_format {
            formats.format = format;
        }
        Ok(WarehouseSpec {
            uri: self.warehouse.clone(),
            formats,
        })
    }

    pub fn open(&self, repo: Option<&Path>) -> anyhow::Result<Warehouse> {
        self.spec(repo)?.open()
    }
}

/// The `[warehouse]` section of a TOML file (none: every default).
fn warehouse_section(file: &Path) -> anyhow::Result<TableFormats> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    let Some(section) = doc.remove("warehouse") else {
        return Ok(TableFormats::default());
    };
    section
        .try_into()
        .with_context(|| format!("{}: [warehouse]", file.display()))
}
