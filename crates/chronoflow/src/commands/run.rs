use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chronoflow_config::{Config, LoadedConfig, PartitionDate};
use chronoflow_engine::jobs::{backfill_group_by, backfill_join};
use chronoflow_engine::staging::backfill_staging_query;
use chronoflow_engine::{TableName, Warehouse};
use chronoflow_plan::partitions::{PartitionRange, backfill_steps};

use crate::cli::{RunArgs, RunMode};

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let repo = super::load_repo(&args.repo.repo)?;
    let loaded = find_config(&repo, args)?;
    let range = date_range(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let warehouse = Warehouse::open(&args.warehouse.warehouse)?;
        match args.mode {
            RunMode::Backfill => backfill(&warehouse, loaded, range, args).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The loaded config `--conf` names (a path relative to the repo, or any path to the same file).
fn find_config<'r>(
    repo: &'r chronoflow_config::Repo,
    args: &RunArgs,
) -> anyhow::Result<&'r LoadedConfig> {
    let root = std::fs::canonicalize(&args.repo.repo)
        .with_context(|| format!("repo {}", args.repo.repo.display()))?;
    // The config's path relative to the repo, as the loader records it: `--conf` as given when it
    // is relative to the repo, else the canonical path with the repo prefix removed.
    let relative = if args.conf.is_relative() && root.join(&args.conf).is_file() {
        args.conf.clone()
    } else {
        let wanted = std::fs::canonicalize(&args.conf).with_context(|| {
            format!(
                "config {} not found (relative to the repo {})",
                args.conf.display(),
                root.display()
            )
        })?;
        wanted
            .strip_prefix(&root)
            .with_context(|| {
                format!(
                    "config {} is not inside the repo {}",
                    args.conf.display(),
                    root.display()
                )
            })?
            .to_owned()
    };
    let relative: String = relative
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    if let Some(c) = repo.configs.iter().find(|c| c.path == relative) {
        return Ok(c);
    }
    let problems: Vec<String> = repo
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && d.file == relative)
        .map(|d| d.to_string())
        .collect();
    if problems.is_empty() {
        bail!(
            "{} is not a compiled config of the repo {}",
            args.conf.display(),
            root.display()
        );
    }
    bail!(
        "{} has errors:\n{}",
        args.conf.display(),
        problems.join("\n")
    );
}

fn date_range(args: &RunArgs) -> anyhow::Result<PartitionRange> {
    let parse = |s: &str| PartitionDate::parse(s).map_err(anyhow::Error::from);
    let range = match (&args.ds, &args.start_ds, &args.end_ds) {
        (Some(ds), _, _) => PartitionRange::single(parse(ds)?),
        (None, Some(a), Some(b)) => PartitionRange::new(parse(a)?, parse(b)?)?,
        _ => bail!("give --ds, or --start-ds and --end-ds"),
    };
    Ok(range)
}

async fn backfill(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    range: PartitionRange,
    args: &RunArgs,
) -> anyhow::Result<()> {
    let output = TableName::parse(&loaded.output_table())?;
    let existing: BTreeSet<PartitionDate> =
        if args.force || warehouse.table_meta(&output).await?.is_none() {
            BTreeSet::new()
        } else {
            warehouse.partitions(&output).await?.into_iter().collect()
        };
    let steps = backfill_steps(range, &existing, args.step_days);
    if steps.is_empty() {
        eprintln!("{output}: every partition of {range} exists (use --force to recompute)");
        return Ok(());
    }
    let total = steps.len();
    let mut done = 0usize;
    // A progress bar on a terminal; one structured line per step otherwise (logs, CI).
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} steps, {elapsed}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(format!("backfilling {output}"));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    for chunk in steps.chunks(args.parallelism.max(1)) {
        let runs = chunk.iter().map(|step| async move {
            let days: Vec<PartitionDate> = step.dates().collect();
            let written = match &loaded.config {
                Config::GroupBy(gb) => backfill_group_by(warehouse, loaded, gb, &days).await?,
                Config::Join(join) => backfill_join(warehouse, loaded, join, &days).await?,
                Config::StagingQuery(sq) => {
                    backfill_staging_query(warehouse, loaded, sq, &days, range.end).await?
                }
            };
            anyhow::Ok((*step, written))
        });
        for result in futures::future::join_all(runs).await {
            let (step, written) =
                result.with_context(|| format!("backfilling {}", loaded.name()))?;
            done += 1;
            let rows: u64 = written.iter().map(|p| p.rows).sum();
            let line = format!(
                "step={done}/{total} table={output} range={step} partitions={} rows={rows}",
                written.len()
            );
            match &bar {
                Some(bar) => {
                    bar.println(line);
                    bar.inc(1);
                }
                None => eprintln!("{line}"),
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(())
}
