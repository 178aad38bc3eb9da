//! A backfill over a date range: only the missing partitions (unless forced), in steps.
//!
//! Shared by `chronoflow run` and the scheduler's in-process executor.

use std::collections::BTreeSet;

use chronoflow_config::{Config, LoadedConfig, PartitionDate};
use chronoflow_plan::partitions::{PartitionRange, backfill_steps};

use crate::error::EngineError;
use crate::jobs::{backfill_group_by_within, backfill_join_within};
use crate::shard::MemoryLimit;
use crate::staging::backfill_staging_query;
use crate::{TableName, Warehouse};

#[derive(Debug, Clone, Copy)]
pub struct BackfillOptions {
    /// Days computed together.
    pub step_days: u32,
    /// Steps computed at once.
    pub parallelism: usize,
    /// Recompute partitions that exist.
    pub force: bool,
    /// Memory each step plans to hold; past it, GroupBy rows are split by key and spilled.
    pub memory_limit: MemoryLimit,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            step_days: 30,
            parallelism: 1,
            force: false,
            memory_limit: MemoryLimit::default_for_machine(),
        }
    }
}

/// What one finished step wrote.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// 1-based.
    pub index: usize,
    pub total: usize,
    pub output: TableName,
    pub range: PartitionRange,
    pub partitions: usize,
    pub rows: u64,
}

/// Computes the missing partitions of `loaded`'s output over `range`. `on_step` hears of each
/// step as it finishes (progress). Returns the steps; none when every partition exists.
pub async fn backfill_range(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    range: PartitionRange,
    options: BackfillOptions,
    on_step: &mut (dyn FnMut(&StepReport) + Send),
) -> Result<Vec<StepReport>, EngineError> {
    let output = TableName::parse(&loaded.output_table())?;
    let existing: BTreeSet<PartitionDate> =
        if options.force || warehouse.table_meta(&output).await?.is_none() {
            BTreeSet::new()
        } else {
            warehouse.partitions(&output).await?.into_iter().collect()
        };
    let steps = backfill_steps(range, &existing, options.step_days);
    let total = steps.len();
    let mut reports = Vec::with_capacity(total);
    for chunk in steps.chunks(options.parallelism.max(1)) {
        let runs = chunk.iter().map(|step| async move {
            let days: Vec<PartitionDate> = step.dates().collect();
            let written = match &loaded.config {
                Config::GroupBy(gb) => {
                    backfill_group_by_within(warehouse, loaded, gb, &days, options.memory_limit)
                        .await?
                }
                Config::Join(join) => {
                    backfill_join_within(warehouse, loaded, join, &days, options.memory_limit)
                        .await?
                }
                Config::StagingQuery(sq) => {
                    backfill_staging_query(warehouse, loaded, sq, &days, range.end).await?
                }
            };
            Ok::<_, EngineError>((*step, written))
        });
        for result in futures::future::join_all(runs).await {
            let (step, written) = result?;
            let report = StepReport {
                index: reports.len() + 1,
                total,
                output: output.clone(),
                range: step,
                partitions: written.len(),
                rows: written.iter().map(|p| p.rows).sum(),
            };
            on_step(&report);
            reports.push(report);
        }
    }
    Ok(reports)
}
