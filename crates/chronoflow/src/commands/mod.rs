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

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chronoflow_config::Repo;

use crate::cli::{Cli, Command};

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
