use std::process::ExitCode;

use anyhow::{Context, bail};
use chronoflow_config::{LoadedConfig, PartitionDate};
use chronoflow_engine::Warehouse;
use chronoflow_engine::backfill::{BackfillOptions, backfill_range};
use chronoflow_engine::consistency::ConsistencyJob;
use chronoflow_plan::partitions::{MAX_RANGE_DAYS, PartitionRange, SANE_YEARS};

use chronoflow_serve::upload as online;

use crate::cli::{RunArgs, RunMode, StartFromArg};

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let repo = super::load_repo(&args.repo.repo)?;
    let loaded = find_config(&repo, args)?;
    let range = match args.mode {
        RunMode::Backfill
        | RunMode::Upload
        | RunMode::UploadToKv
        | RunMode::LogFlattener
        | RunMode::BuildComparisonTable
        | RunMode::ConsistencyMetricsCompute => Some(date_range(args)?),
        RunMode::MetadataUpload | RunMode::Streaming => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let warehouse = args.warehouse.open(Some(&args.repo.repo))?;
        match args.mode {
            RunMode::Backfill => backfill(&warehouse, loaded, range.expect("given"), args).await,
            RunMode::Upload => upload(&warehouse, loaded, range.expect("given"), args).await,
            RunMode::UploadToKv => {
                upload_to_kv(&warehouse, loaded, range.expect("given"), args).await
            }
            RunMode::MetadataUpload => metadata_upload(loaded, args).await,
            RunMode::Streaming => streaming(&warehouse, loaded, args).await,
            RunMode::LogFlattener => {
                consistency(&warehouse, loaded, ConsistencyJob::LogFlattener, range).await
            }
            RunMode::BuildComparisonTable => {
                consistency(
                    &warehouse,
                    loaded,
                    ConsistencyJob::BuildComparisonTable,
                    range,
                )
                .await
            }
            RunMode::ConsistencyMetricsCompute => {
                let job = ConsistencyJob::ConsistencyMetricsCompute;
                consistency(&warehouse, loaded, job, range).await
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One of the consistency jobs, day by day; the summary on stdout.
async fn consistency(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    job: ConsistencyJob,
    range: Option<PartitionRange>,
) -> anyhow::Result<()> {
    for ds in range.expect("given").dates() {
        for line in job.run(warehouse, loaded, ds).await? {
            println!("{line}");
        }
    }
    Ok(())
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
    let range = match (&args.ds, &args.start_ds, &args.end_ds) {
        (Some(ds), _, _) => PartitionRange::single(parse_date("--ds", ds)?),
        (None, Some(a), Some(b)) => {
            PartitionRange::new(parse_date("--start-ds", a)?, parse_date("--end-ds", b)?)?
        }
        _ => bail!("give --ds, or --start-ds and --end-ds"),
    };
    if range.len() > MAX_RANGE_DAYS && !args.allow_large_range {
        bail!(
            "{range} is {} days, more than {MAX_RANGE_DAYS}: pass --allow-large-range if that is meant",
            range.len()
        );
    }
    Ok(range)
}

/// A date given as `flag`: `yyyy-MM-dd`, in a year a partition may have.
fn parse_date(flag: &str, text: &str) -> anyhow::Result<PartitionDate> {
    let date = PartitionDate::parse(text).with_context(|| flag.to_owned())?;
    if !SANE_YEARS.contains(&date.year()) {
        bail!(
            "{flag} {text}: the year is outside {}..={}",
            SANE_YEARS.start(),
            SANE_YEARS.end()
        );
    }
    Ok(date)
}

async fn backfill(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    range: PartitionRange,
    args: &RunArgs,
) -> anyhow::Result<()> {
    let output = loaded.output_table();
    // A progress bar on a terminal; one structured line per step otherwise (logs, CI).
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
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
    let options = BackfillOptions {
        step_days: args.step_days,
        parallelism: args.parallelism,
        force: args.force,
        memory_limit: args
            .memory_limit
            .unwrap_or_else(chronoflow_engine::MemoryLimit::default_for_machine),
    };
    let steps = backfill_range(warehouse, loaded, range, options, &mut |step| {
        let line = format!(
            "step={}/{} table={} range={} partitions={} rows={}",
            step.index, step.total, step.output, step.range, step.partitions, step.rows
        );
        match &bar {
            Some(bar) => {
                bar.set_length(step.total as u64);
                bar.println(line);
                bar.inc(1);
            }
            None => eprintln!("{line}"),
        }
    })
    .await
    .with_context(|| format!("backfilling {}", loaded.name()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if steps.is_empty() {
        eprintln!("{output}: every partition of {range} exists (use --force to recompute)");
    }
    Ok(())
}

/// The compiled text of a config, as the fetcher will decode it.
fn stored_config(
    args: &RunArgs,
    loaded: &LoadedConfig,
) -> anyhow::Result<chronoflow_serve::codec::StoredConfig> {
    Ok(online::stored_config(&args.repo.repo, loaded)?)
}

async fn upload(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    range: PartitionRange,
    args: &RunArgs,
) -> anyhow::Result<()> {
    for ds in range.dates() {
        let started = std::time::Instant::now();
        let limit = args
            .memory_limit
            .unwrap_or_else(chronoflow_engine::MemoryLimit::default_for_machine);
        let info =
            online::upload_within(warehouse, loaded, stored_config(args, loaded)?, ds, limit)
                .await
                .with_context(|| format!("uploading {} for {ds}", loaded.name()))?;
        eprintln!(
            "upload {} ds={ds}: {} keys in {:.2?}",
            loaded.name(),
            info.rows.saturating_sub(1),
            started.elapsed()
        );
    }
    Ok(())
}

async fn upload_to_kv(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    range: PartitionRange,
    args: &RunArgs,
) -> anyhow::Result<()> {
    let kv = chronoflow_serve::kv::open(&args.kv.kv).await?;
    for ds in range.dates() {
        let started = std::time::Instant::now();
        let name = loaded.name().to_owned();
        let total = online::upload_to_kv(warehouse, kv.as_ref(), loaded, ds, &mut |done, total| {
            eprintln!("upload-to-kv {name} ds={ds}: loaded {done}/{total} entries");
        })
        .await
        .with_context(|| format!("loading {} for {ds} into the KV store", loaded.name()))?;
        eprintln!(
            "upload-to-kv {} ds={ds}: {total} entries serving, in {:.2?}",
            loaded.name(),
            started.elapsed()
        );
    }
    Ok(())
}

async fn metadata_upload(loaded: &LoadedConfig, args: &RunArgs) -> anyhow::Result<()> {
    let kv = chronoflow_serve::kv::open(&args.kv.kv).await?;
    let uploaded = online::metadata_upload(kv.as_ref(), loaded, stored_config(args, loaded)?)
        .await
        .with_context(|| format!("uploading the metadata of {}", loaded.name()))?;
    if uploaded {
        eprintln!(
            "metadata-upload {}: stored (hash {})",
            loaded.name(),
            loaded.content_hash
        );
    } else {
        eprintln!(
            "metadata-upload {}: unchanged (hash {})",
            loaded.name(),
            loaded.content_hash
        );
    }
    Ok(())
}

async fn streaming(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    args: &RunArgs,
) -> anyhow::Result<()> {
    if let (Some(table), Some(since)) = (&args.replay_table, &args.since) {
        return replay(warehouse, loaded, args, table, since).await;
    }
    let kv = chronoflow_serve::kv::open(&args.kv.kv).await?;
    let stream = &args.stream;
    let options = chronoflow_stream::StreamOptions {
        brokers: stream.kafka_brokers.clone(),
        max_record_bytes: stream.max_record_bytes,
        max_wait: std::time::Duration::from_millis(stream.fetch_max_wait_ms),
        max_fetch_bytes: stream.max_fetch_bytes,
        dead_letter: stream.dead_letter.clone(),
        status_file: stream.status_file.clone(),
        avro_schema: stream.avro_schema.clone(),
        repo_dir: Some(args.repo.repo.clone()),
        start_from: match stream.start_from {
            StartFromArg::Earliest => chronoflow_stream::StartFrom::Earliest,
            StartFromArg::Latest => chronoflow_stream::StartFrom::Latest,
        },
        until_caught_up: stream.until_caught_up,
        ..Default::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // SIGTERM (the supervisor stopping it) and Ctrl-C end the stream between two batches:
    // what is stored stays stored with its offsets.
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = stop_tx.send(true);
    });
    let status = std::sync::Arc::new(std::sync::Mutex::new(
        chronoflow_stream::StreamStatus::default(),
    ));
    let report = chronoflow_stream::run_stream(loaded, warehouse, kv, options, status, stop_rx)
        .await
        .with_context(|| format!("streaming {}", loaded.name()))?;
    eprintln!(
        "streaming {}: {} records, {} rows stored, {} malformed",
        loaded.name(),
        report.records_read,
        report.rows_written,
        report.malformed
    );
    Ok(())
}

async fn replay(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    args: &RunArgs,
    table: &str,
    since: &str,
) -> anyhow::Result<()> {
    let since = parse_date("--since", since)?;
    let kv = chronoflow_serve::kv::open(&args.kv.kv).await?;
    let report = online::replay(
        warehouse,
        kv.as_ref(),
        loaded,
        table,
        since,
        &mut |day, rows| {
            eprintln!(
                "streaming {}: replayed {table} partition {day}: {rows} rows",
                loaded.name()
            );
        },
    )
    .await
    .with_context(|| format!("replaying {table} into {}", loaded.name()))?;
    eprintln!(
        "streaming {}: {} partitions, {} rows after {since}",
        loaded.name(),
        report.partitions,
        report.rows
    );
    Ok(())
}
