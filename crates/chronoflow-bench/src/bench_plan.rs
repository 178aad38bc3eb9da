//! Times `check` + `plan` on a repo, phase by phase, in-process: reading the files, decoding
//! them, planning, and serializing the JSON plan. Prints the median and the range of N runs.
//!
//! Usage: `bench-plan <repo dir> [--runs N]` (default 10).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut repo: Option<PathBuf> = None;
    let mut runs = 10usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().context("--runs needs a number")?.parse()?,
            other if repo.is_none() => repo = Some(PathBuf::from(other)),
            other => bail!("unexpected argument {other:?}"),
        }
    }
    let repo = repo.context("usage: bench-plan <repo dir> [--runs N]")?;
    let phases = ["read files", "decode", "plan", "serialize json", "total"];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); phases.len()];
    let mut summary = String::new();
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        let files = chronoflow_config::fs::read_repo_files(&repo)?;
        let t1 = Instant::now();
        let loaded = chronoflow_config::repo::load(files);
        let t2 = Instant::now();
        let plan = chronoflow_plan::plan(&loaded);
        let t3 = Instant::now();
        let json = serde_json::to_string(&plan)?;
        let t4 = Instant::now();
        for (i, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0]
            .into_iter()
            .enumerate()
        {
            samples[i].push(d);
        }
        summary = format!(
            "{} files, {} configs, {} jobs, {} DAGs, {} tasks, {} diagnostics ({} errors), plan JSON {:.1} MB",
            loaded.file_count,
            loaded.configs.len(),
            plan.jobs.len(),
            plan.dags.len(),
            plan.dags.iter().map(|d| d.tasks.len()).sum::<usize>(),
            plan.diagnostics.len(),
            plan.diagnostics.iter().filter(|d| d.is_error()).count(),
            json.len() as f64 / 1e6
        );
    }
    println!("{summary}");
    println!(
        "{:<16} {:>10} {:>10} {:>10}   ({} runs)",
        "phase", "median ms", "min ms", "max ms", runs
    );
    for (name, mut s) in phases.iter().zip(samples) {
        s.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{:<16} {:>10.1} {:>10.1} {:>10.1}",
            name,
            ms(s[s.len() / 2]),
            ms(s[0]),
            ms(s[s.len() - 1])
        );
    }
    Ok(())
}
