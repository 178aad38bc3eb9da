//! Reading the consistency figures back (issue 13, "Read it"): the `<join>_consistency` and
//! `<join>_drift` partitions of a date range as typed rows, with the thresholds applied.
//!
//! The warehouse tables are the one source of truth: the `chronoflow consistency` command, the
//! API route and the scheduler's gauges and alerts all read them through [`read_report`] /
//! [`read_day`], so they cannot disagree. A table whose columns are not what the jobs write is
//! an error naming the table, the partition and the column, never a guess.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use chronoflow_config::PartitionDate;
use chronoflow_config::naming::{consistency_table, drift_table};
use serde::Serialize;

use crate::consistency::OVERALL;
use crate::error::{EngineError, Result};
use crate::table_name::TableName;
use crate::warehouse::Warehouse;

/// The lowest consistency rate that raises no alert, unless configured otherwise.
pub const DEFAULT_MIN_RATE: f64 = 0.99;
/// The highest population stability index that raises no alert, unless configured otherwise.
pub const DEFAULT_MAX_PSI: f64 = 0.2;
/// The most days one report covers (a request for more is refused, not truncated).
pub const MAX_REPORT_DAYS: i64 = 366;

/// When figures are bad enough to alert on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// A consistency rate (overall or a feature's) below this is an alert.
    pub min_rate: f64,
    /// A feature's PSI above this is an alert.
    pub max_psi: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_rate: DEFAULT_MIN_RATE,
            max_psi: DEFAULT_MAX_PSI,
        }
    }
}

/// One feature's row of `<join>_consistency`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureFigures {
    pub feature: String,
    pub rows: i64,
    pub both_null: i64,
    pub online_null_only: i64,
    pub offline_null_only: i64,
    pub mismatches: i64,
    pub smape: Option<f64>,
    pub consistency_rate: f64,
}

/// One feature's and side's row of `<join>_drift`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftFigures {
    pub feature: String,
    /// `online` or `offline`.
    pub side: String,
    pub rows: i64,
    pub null_rate: Option<f64>,
    pub distinct_estimate: Option<i64>,
    pub mean: Option<f64>,
    pub p05: Option<f64>,
    pub p25: Option<f64>,
    pub p50: Option<f64>,
    pub p75: Option<f64>,
    pub p95: Option<f64>,
    /// Against the trailing 7 days; `None` without a baseline.
    pub psi: Option<f64>,
    pub baseline_days: Option<i64>,
}

/// One day's figures of a Join.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayFigures {
    pub ds: PartitionDate,
    /// Logged rows of the day.
    pub rows: i64,
    /// Rows with any inconsistent feature.
    pub inconsistent_rows: i64,
    /// The overall consistency rate (`__overall__`).
    pub consistency_rate: f64,
    /// Every feature, worst first (lowest rate, then most mismatches, then by name).
    pub features: Vec<FeatureFigures>,
    /// Whether the overall rate is below `min_rate`.
    pub below_min_rate: bool,
    /// The features whose rate is below `min_rate`, worst first.
    pub features_below_min_rate: Vec<String>,
    /// The day's drift rows; `None` when `<join>_drift` has no partition for the day.
    pub drift: Option<Vec<DriftFigures>>,
    /// The drift rows whose PSI is above `max_psi`, highest first.
    pub drift_above_max_psi: Vec<DriftFigures>,
}

impl DayFigures {
    /// The features with any inconsistency, worst first, at most `n`.
    pub fn worst_features(&self, n: usize) -> impl Iterator<Item = &FeatureFigures> {
        self.features
            .iter()
            .filter(|f| f.consistency_rate < 1.0)
            .take(n)
    }
}

/// A Join's figures over a date range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsistencyReport {
    pub join: String,
    pub consistency_table: String,
    pub drift_table: String,
    pub start_ds: PartitionDate,
    pub end_ds: PartitionDate,
    pub thresholds: Thresholds,
    /// The days with figures, oldest first.
    pub days: Vec<DayFigures>,
    /// The days of the range `<join>_consistency` has no partition for.
    pub days_without_figures: Vec<PartitionDate>,
}

/// The newest day `<join>_consistency` has figures for.
pub async fn newest_day(
    warehouse: &Warehouse,
    output_table: &str,
) -> Result<Option<PartitionDate>> {
    let name = TableName::parse(&consistency_table(output_table))?;
    if warehouse.table_meta(&name).await?.is_none() {
        return Ok(None);
    }
    Ok(warehouse.partitions(&name).await?.into_iter().max())
}

/// The figures of `join` (whose output table is `output_table`) for every day from `start` to
/// `end`. A range of more than [`MAX_REPORT_DAYS`] or ending before it starts is an input error.
pub async fn read_report(
    warehouse: &Warehouse,
    join: &str,
    output_table: &str,
    start: PartitionDate,
    end: PartitionDate,
    thresholds: Thresholds,
) -> Result<ConsistencyReport> {
    let days = start.days_until(end) + 1;
    if !(1..=MAX_REPORT_DAYS).contains(&days) {
        return Err(EngineError::Input {
            file: join.to_owned(),
            message: format!(
                "the range {start}..{end} must cover 1 to {MAX_REPORT_DAYS} days (it covers {days})"
            ),
        });
    }
    let consistency = TableName::parse(&consistency_table(output_table))?;
    let drift = TableName::parse(&drift_table(output_table))?;
    let present = partitions_of(warehouse, &consistency).await?;
    let drift_present = partitions_of(warehouse, &drift).await?;
    let mut report = ConsistencyReport {
        join: join.to_owned(),
        consistency_table: consistency.to_string(),
        drift_table: drift.to_string(),
        start_ds: start,
        end_ds: end,
        thresholds,
        days: Vec::new(),
        days_without_figures: Vec::new(),
    };
    for offset in 0..days {
        let ds = start.add_days(offset);
        if !present.contains(&ds) {
            report.days_without_figures.push(ds);
            continue;
        }
        let features = read_consistency(warehouse, &consistency, ds).await?;
        let drift = if drift_present.contains(&ds) {
            Some(read_drift(warehouse, &drift, ds).await?)
        } else {
            None
        };
        report
            .days
            .push(day_figures(&consistency, ds, features, drift, thresholds)?);
    }
    Ok(report)
}

/// One day's figures, or `None` when `<join>_consistency` has no partition for it.
pub async fn read_day(
    warehouse: &Warehouse,
    join: &str,
    output_table: &str,
    ds: PartitionDate,
    thresholds: Thresholds,
) -> Result<Option<DayFigures>> {
    let report = read_report(warehouse, join, output_table, ds, ds, thresholds).await?;
    Ok(report.days.into_iter().next())
}

/// The partitions of `table`; none when the table does not exist (yet).
async fn partitions_of(warehouse: &Warehouse, table: &TableName) -> Result<Vec<PartitionDate>> {
    if warehouse.table_meta(table).await?.is_none() {
        return Ok(Vec::new());
    }
    warehouse.partitions(table).await
}

fn day_figures(
    table: &TableName,
    ds: PartitionDate,
    mut features: Vec<FeatureFigures>,
    drift: Option<Vec<DriftFigures>>,
    thresholds: Thresholds,
) -> Result<DayFigures> {
    let position = features.iter().position(|f| f.feature == OVERALL);
    let overall = position
        .map(|i| features.remove(i))
        .ok_or_else(|| EngineError::Corrupt {
            table: table.to_string(),
            reason: format!("partition ds={ds} has no {OVERALL:?} row"),
        })?;
    features.sort_by(|a, b| {
        a.consistency_rate
            .total_cmp(&b.consistency_rate)
            .then(b.mismatches.cmp(&a.mismatches))
            .then(a.feature.cmp(&b.feature))
    });
    let features_below_min_rate = features
        .iter()
        .filter(|f| f.consistency_rate < thresholds.min_rate)
        .map(|f| f.feature.clone())
        .collect();
    let mut drift_above_max_psi: Vec<DriftFigures> = drift
        .iter()
        .flatten()
        .filter(|d| d.psi.is_some_and(|p| p > thresholds.max_psi))
        .cloned()
        .collect();
    drift_above_max_psi.sort_by(|a, b| {
        b.psi
            .unwrap_or(0.0)
            .total_cmp(&a.psi.unwrap_or(0.0))
            .then(a.feature.cmp(&b.feature))
            .then(a.side.cmp(&b.side))
    });
    Ok(DayFigures {
        ds,
        rows: overall.rows,
        inconsistent_rows: overall.mismatches,
        consistency_rate: overall.consistency_rate,
        below_min_rate: overall.consistency_rate < thresholds.min_rate,
        features,
        features_below_min_rate,
        drift,
        drift_above_max_psi,
    })
}

/// Reads one partition as one batch.
async fn read_batch(
    warehouse: &Warehouse,
    table: &TableName,
    ds: PartitionDate,
) -> Result<RecordBatch> {
    let batches = warehouse.read_partition(table, ds).await?;
    let Some(first) = batches.first() else {
        return Ok(RecordBatch::new_empty(std::sync::Arc::new(
            arrow::datatypes::Schema::empty(),
        )));
    };
    arrow::compute::concat_batches(&first.schema(), &batches).map_err(|e| EngineError::Arrow {
        context: format!("reading {table} ds={ds}"),
        source: e,
    })
}

/// The columns of one partition, each checked for the type the jobs write.
#[derive(Clone, Copy)]
struct Columns<'a> {
    batch: &'a RecordBatch,
    table: &'a TableName,
    ds: PartitionDate,
}

impl<'a> Columns<'a> {
    fn column(&self, name: &str, want: &DataType) -> Result<&'a dyn Array> {
        let column = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| self.corrupt(name, "is missing".to_owned()))?;
        if column.data_type() != want {
            return Err(self.corrupt(name, format!("is {} (expected {want})", column.data_type())));
        }
        Ok(column.as_ref())
    }

    fn corrupt(&self, column: &str, what: String) -> EngineError {
        EngineError::Corrupt {
            table: self.table.to_string(),
            reason: format!("partition ds={}: column {column:?} {what}", self.ds),
        }
    }

    fn text(&self, name: &str) -> Result<impl Fn(usize) -> Result<String> + 'a> {
        let c = self.column(name, &DataType::Utf8)?.as_string::<i32>();
        let this = *self;
        let name = name.to_owned();
        Ok(move |r: usize| {
            if c.is_null(r) {
                Err(this.corrupt(&name, format!("is null in row {r}")))
            } else {
                Ok(c.value(r).to_owned())
            }
        })
    }

    fn int(&self, name: &str) -> Result<impl Fn(usize) -> Option<i64> + 'a> {
        let c = self
            .column(name, &DataType::Int64)?
            .as_primitive::<Int64Type>();
        Ok(move |r: usize| (!c.is_null(r)).then(|| c.value(r)))
    }

    /// A column that must have a value in every row.
    fn required_int(&self, name: &str) -> Result<impl Fn(usize) -> Result<i64> + 'a> {
        let c = self.int(name)?;
        let this = *self;
        let name = name.to_owned();
        Ok(move |r: usize| c(r).ok_or_else(|| this.corrupt(&name, format!("is null in row {r}"))))
    }

    fn float(&self, name: &str) -> Result<impl Fn(usize) -> Option<f64> + 'a> {
        let c = self
            .column(name, &DataType::Float64)?
            .as_primitive::<Float64Type>();
        Ok(move |r: usize| (!c.is_null(r)).then(|| c.value(r)))
    }
}

async fn read_consistency(
    warehouse: &Warehouse,
    table: &TableName,
    ds: PartitionDate,
) -> Result<Vec<FeatureFigures>> {
    let batch = read_batch(warehouse, table, ds).await?;
    let c = Columns {
        batch: &batch,
        table,
        ds,
    };
    let feature = c.text("feature")?;
    let rows = c.required_int("rows")?;
    let both_null = c.required_int("both_null")?;
    let online_null_only = c.required_int("online_null_only")?;
    let offline_null_only = c.required_int("offline_null_only")?;
    let mismatches = c.required_int("mismatches")?;
    let smape = c.float("smape")?;
    let rate = c.float("consistency_rate")?;
    (0..batch.num_rows())
        .map(|r| {
            Ok(FeatureFigures {
                feature: feature(r)?,
                rows: rows(r)?,
                both_null: both_null(r)?,
                online_null_only: online_null_only(r)?,
                offline_null_only: offline_null_only(r)?,
                mismatches: mismatches(r)?,
                smape: smape(r),
                consistency_rate: rate(r)
                    .ok_or_else(|| c.corrupt("consistency_rate", format!("is null in row {r}")))?,
            })
        })
        .collect()
}

async fn read_drift(
    warehouse: &Warehouse,
    table: &TableName,
    ds: PartitionDate,
) -> Result<Vec<DriftFigures>> {
    let batch = read_batch(warehouse, table, ds).await?;
    let c = Columns {
        batch: &batch,
        table,
        ds,
    };
    let feature = c.text("feature")?;
    let side = c.text("side")?;
    let rows = c.required_int("rows")?;
    let null_rate = c.float("null_rate")?;
    let distinct = c.int("distinct_estimate")?;
    let mean = c.float("mean")?;
    let quantiles = [
        c.float("p05")?,
        c.float("p25")?,
        c.float("p50")?,
        c.float("p75")?,
        c.float("p95")?,
    ];
    let psi = c.float("psi")?;
    let baseline_days = c.int("baseline_days")?;
    (0..batch.num_rows())
        .map(|r| {
            let [p05, p25, p50, p75, p95] = [0, 1, 2, 3, 4].map(|i| quantiles[i](r));
            Ok(DriftFigures {
                feature: feature(r)?,
                side: side(r)?,
                rows: rows(r)?,
                null_rate: null_rate(r),
                distinct_estimate: distinct(r),
                mean: mean(r),
                p05,
                p25,
                p50,
                p75,
                p95,
                psi: psi(r),
                baseline_days: baseline_days(r),
            })
        })
        .collect()
}

/// The report as text: per day the overall figure, rows, the worst features and the drift above
/// threshold.
pub fn render_text(report: &ConsistencyReport, worst: usize) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let t = report.thresholds;
    let _ = writeln!(
        out,
        "consistency of {} from {} to {} (min_rate {}, max_psi {})",
        report.join, report.start_ds, report.end_ds, t.min_rate, t.max_psi
    );
    if report.days.is_empty() {
        let _ = writeln!(
            out,
            "no figures: {} has no partition in the range (has consistency-metrics-compute run?)",
            report.consistency_table
        );
    }
    for day in &report.days {
        let flag = if day.below_min_rate {
            "  BELOW min_rate"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{}  rate {:.6}  rows {}  inconsistent rows {}{flag}",
            day.ds, day.consistency_rate, day.rows, day.inconsistent_rows
        );
        for f in day.worst_features(worst) {
            let _ = writeln!(
                out,
                "    {}: {:.6} (mismatches {}, online-only null {}, offline-only null {}{})",
                f.feature,
                f.consistency_rate,
                f.mismatches,
                f.online_null_only,
                f.offline_null_only,
                f.smape
                    .map(|s| format!(", SMAPE {s:.6}"))
                    .unwrap_or_default()
            );
        }
        match &day.drift {
            None => {
                let _ = writeln!(out, "    drift: no figures");
            }
            Some(_) if day.drift_above_max_psi.is_empty() => {}
            Some(_) => {
                for d in day.drift_above_max_psi.iter().take(worst) {
                    let _ = writeln!(
                        out,
                        "    drift {} ({}): PSI {:.4} above {}",
                        d.feature,
                        d.side,
                        d.psi.unwrap_or(0.0),
                        t.max_psi
                    );
                }
            }
        }
    }
    if !report.days_without_figures.is_empty() {
        let days: Vec<String> = report
            .days_without_figures
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(out, "no figures for: {}", days.join(", "));
    }
    out
}
