//! `chronoflow`: one binary that runs Chronon feature pipelines end to end.
//!
//! The binary is thin: it parses the command line, calls the library crates, and prints.
//! Exit codes: 0 success, 1 the repo has errors (`check`), 2 the command could not run.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

// Loading a repo allocates many small strings and maps; mimalloc makes that markedly cheaper
// than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Structured logs on stderr (`RUST_LOG=debug` for more).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
