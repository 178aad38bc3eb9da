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
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=error,deltalake=warn,deltalake_core=warn,buoyant_kernel=warn,delta_kernel=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each once. `{:#}` prints every level of the chain, and a level
/// whose message already includes its cause (`#[error("{path}: {source}")]` beside
/// `#[source]`, a common shape in dependencies too) would print that cause twice.
fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !previous.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        previous = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::describe;

    /// The shape that printed its cause twice: a message that includes its source, as
    /// `#[error("cannot read {path}: {source}")]` with `#[source]` makes.
    #[derive(Debug)]
    struct Read {
        path: String,
        source: std::io::Error,
    }

    impl std::fmt::Display for Read {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read {}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for Read {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_already_in_its_parents_message_prints_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::from(Read {
            path: "a.json".into(),
            source: io,
        })
        .context("loading the repo");
        assert_eq!(
            format!("{err:#}"),
            "loading the repo: cannot read a.json: no such file: no such file"
        );
        assert_eq!(
            describe(&err),
            "loading the repo: cannot read a.json: no such file"
        );
    }
}
