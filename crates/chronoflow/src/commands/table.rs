use std::process::ExitCode;

use anyhow::Context;
use chronoflow_config::PartitionDate;
use chronoflow_engine::MemoryLimit;
use chronoflow_engine::export::{ExportFormat, export_table};
use chronoflow_engine::import::import_file_within;
use chronoflow_engine::{DEFAULT_QUALITY_RATIO, RowFlag, TableName, Warehouse, flag_row_counts};

use crate::cli::{ExportFormatArg, TableCommand};

pub fn run(command: TableCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(command))
}

async fn run_async(command: TableCommand) -> anyhow::Result<ExitCode> {
    match command {
        TableCommand::Import {
            table,
            file,
            partition_column,
            memory_limit,
            warehouse,
        } => {
            let warehouse = warehouse.open(None)?;
            let table = TableName::parse(&table)?;
            let limit = memory_limit.unwrap_or_else(MemoryLimit::default_for_machine);
            let report =
                import_file_within(&warehouse, &table, &file, &partition_column, limit).await?;
            let (first, last) = (report.partitions.first(), report.partitions.last());
            let range = match (first, last) {
                (Some(f), Some(l)) if f.ds != l.ds => format!("{}..={}", f.ds, l.ds),
                (Some(f), _) => f.ds.to_string(),
                _ => "-".to_owned(),
            };
            eprintln!(
                "imported {} rows into {} ({} partition{}, {range}) in {}",
                report.rows,
                report.table,
                report.partitions.len(),
                if report.partitions.len() == 1 {
                    ""
                } else {
                    "s"
                },
                warehouse.uri()
            );
        }
        TableCommand::List { warehouse } => {
            let warehouse = warehouse.open(None)?;
            let mut text = String::new();
            let mut unreadable = 0;
            for listed in warehouse.table_listing().await? {
                let table = listed.name;
                let line = match listed.error {
                    Some(e) => Err(e),
                    None => list_line(&warehouse, &table).await,
                };
                match line {
                    Ok(line) => text.push_str(&line),
                    // Listed in its place with its error, so that one table a catalog or a log
                    // no longer serves hides none of the others.
                    Err(e) => {
                        unreadable += 1;
                        let format = match warehouse.table_format(&table).await {
                            Ok(format) => format.to_string(),
                            Err(_) => "?".to_owned(),
                        };
                        let message = crate::describe(&anyhow::Error::new(e));
                        text.push_str(&format!(
                            "{table}\t{format}\terror: {}\n",
                            message.replace('\n', " ")
                        ));
                    }
                }
            }
            super::output::emit(&text, None)?;
            if unreadable > 0 {
                eprintln!(
                    "error: {unreadable} table{} could not be read (listed with the error)",
                    if unreadable == 1 { "" } else { "s" }
                );
                return Ok(ExitCode::from(1));
            }
        }
        TableCommand::Partitions {
            table,
            require: Some(range),
            warehouse,
        } => {
            let warehouse = warehouse.open(None)?;
            let table = TableName::parse(&table)?;
            return require_partitions(&warehouse, &table, &range).await;
        }
        TableCommand::Partitions {
            table, warehouse, ..
        } => {
            let warehouse = warehouse.open(None)?;
            let table = TableName::parse(&table)?;
            let mut infos = Vec::new();
            for ds in warehouse.partitions(&table).await? {
                infos.push(warehouse.partition_info(&table, ds).await?);
            }
            let counts: Vec<Option<u64>> = infos.iter().map(|i| Some(i.rows)).collect();
            let checks = flag_row_counts(&counts, DEFAULT_QUALITY_RATIO)?;
            let mut text = String::new();
            for (info, check) in infos.iter().zip(checks) {
                let flag = match check.flag {
                    Some(RowFlag::Drop) => "\tdrop",
                    Some(RowFlag::Jump) => "\tjump",
                    None => "",
                };
                text.push_str(&format!(
                    "{}\t{} rows\t{} files{flag}\n",
                    info.ds, info.rows, info.files
                ));
            }
            super::output::emit(&text, None)?;
        }
        TableCommand::Export {
            table,
            ds,
            format,
            out,
            warehouse,
        } => {
            let warehouse = warehouse.open(None)?;
            let table = TableName::parse(&table)?;
            let ds = ds.map(|d| PartitionDate::parse(&d)).transpose()?;
            let format = match format {
                ExportFormatArg::Csv => ExportFormat::Csv,
                ExportFormatArg::Json => ExportFormat::Json,
                ExportFormatArg::Parquet => ExportFormat::Parquet,
            };
            match out {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    export_table(
                        &warehouse,
                        &table,
                        ds,
                        format,
                        std::io::BufWriter::new(file),
                    )
                    .await?;
                }
                None => {
                    let mut buf = Vec::new();
                    export_table(&warehouse, &table, ds, format, &mut buf).await?;
                    super::output::emit_bytes(&buf)?;
                }
            }
        }
        TableCommand::Vacuum {
            table,
            older_than,
            dry_run,
            warehouse,
        } => {
            let warehouse = warehouse.open(None)?;
            let tables = match table {
                Some(t) => vec![TableName::parse(&t)?],
                None => warehouse.tables().await?,
            };
            let verb = if dry_run { "would remove" } else { "removed" };
            let (mut text, mut files, mut bytes, mut young) = (String::new(), 0, 0, 0);
            for table in &tables {
                let report = warehouse.vacuum(table, older_than, dry_run).await?;
                for file in &report.removed {
                    text.push_str(&format!("{verb}\t{}\t{} bytes\n", file.path, file.bytes));
                }
                files += report.removed.len();
                bytes += report.bytes();
                young += report.young;
            }
            super::output::emit(&text, None)?;
            let plural =
                |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            eprintln!(
                "{verb} {} ({bytes} bytes) in {}; {} younger than {} kept",
                plural(files, "orphan file"),
                plural(tables.len(), "table"),
                plural(young, "orphan"),
                age_text(older_than),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `older_than` as the CLI takes it.
fn age_text(age: std::time::Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `table list`'s line for `table`: name, format, partition count and date range.
async fn list_line(warehouse: &Warehouse, table: &TableName) -> chronoflow_engine::Result<String> {
    let parts = warehouse.partitions(table).await?;
    let range = match (parts.first(), parts.last()) {
        (Some(f), Some(l)) => format!("{f}..={l}"),
        _ => "-".to_owned(),
    };
    let plural = if parts.len() == 1 { "" } else { "s" };
    let format = warehouse.table_format(table).await?;
    Ok(format!(
        "{table}\t{format}\t{} partition{plural}\t{range}\n",
        parts.len()
    ))
}

/// `partitions --require FIRST[..LAST]`: exit 0 when every partition of the range exists, 1 when
/// some are missing (a table that does not exist has none), listing them. Exported Airflow
/// sensors call this, so the warehouse's rules stay in one place.
async fn require_partitions(
    warehouse: &Warehouse,
    table: &TableName,
    range: &str,
) -> anyhow::Result<ExitCode> {
    let (first, last) = range.split_once("..").unwrap_or((range, range));
    let parse = |s: &str| {
        PartitionDate::parse(s.trim())
            .with_context(|| format!("--require {range:?}: {s:?} is not a date (YYYY-MM-DD)"))
    };
    let (first, last) = (parse(first)?, parse(last)?);
    if last < first {
        anyhow::bail!("--require {range:?}: the range ends before it starts");
    }
    let present: std::collections::BTreeSet<PartitionDate> =
        match warehouse.table_meta(table).await? {
            Some(_) => warehouse.partitions(table).await?.into_iter().collect(),
            None => Default::default(),
        };
    let mut missing = Vec::new();
    let mut ds = first;
    while ds <= last {
        if !present.contains(&ds) {
            missing.push(ds.to_string());
        }
        ds = ds.add_days(1);
    }
    if missing.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let shown = missing
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let more = missing.len().saturating_sub(20);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    super::output::emit(
        &format!(
            "{table}: {} partition(s) missing: {shown}{tail}\n",
            missing.len()
        ),
        None,
    )?;
    Ok(ExitCode::from(1))
}
