//! Drift (issue 13): per feature and side of `<join>_comparison` (`online`: the served values
//! `<f>_online`; `offline`: the backfilled values `<f>`), the day's distribution summary and its
//! population stability index (PSI) against the same side of the trailing week, into
//! `<join>_drift`. Method: docs/consistency.md, "Drift".
//!
//! Everything is deterministic: the distinct-count sketch hashes with a fixed function, the
//! baseline sample draws from a fixed-seed generator, and ties are broken by value.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use chronoflow_config::naming::{comparison_table, drift_table};
use chronoflow_config::{LoadedConfig, PartitionDate};
use serde_json::Value;

use crate::consistency::ONLINE_SUFFIX;
use crate::error::{EngineError, Result};
use crate::table_name::TableName;
use crate::values::to_json;
use crate::warehouse::Warehouse;

/// How many days before `D` form the PSI baseline (`D-7..D-1`).
pub const BASELINE_DAYS: i64 = 7;
/// Categories of text and boolean features that get their own PSI bin; the rest share one.
pub const TOP_CATEGORIES: usize = 20;
/// The proportion an empty PSI bin counts as (its logarithm would be infinite).
pub const PSI_EPSILON: f64 = 1e-4;
/// Baseline values kept per feature and side (a uniform sample when the week holds more), so
/// memory does not grow with the week's rows.
pub const BASELINE_SAMPLE: usize = 65_536;
/// Distinct values counted exactly up to this many; above it, the HyperLogLog estimate.
pub const EXACT_DISTINCT: usize = 4_096;
/// The quantiles of the summary: p05, p25, p50, p75, p95.
const QUANTILES: [f64; 5] = [0.05, 0.25, 0.5, 0.75, 0.95];

/// Which values of a feature a drift row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// What the fetcher served (`<f>_online` of the comparison table).
    Online,
    /// What the backfill computes for the same keys and times (`<f>`).
    Offline,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Online => "online",
            Side::Offline => "offline",
        }
    }

    fn column(self, feature: &str) -> String {
        match self {
            Side::Online => format!("{feature}{ONLINE_SUFFIX}"),
            Side::Offline => feature.to_owned(),
        }
    }
}

/// One row of `<join>_drift`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDrift {
    pub feature: String,
    pub side: Side,
    pub rows: u64,
    /// Null (or NaN) values / rows; `None` for a day without rows.
    pub null_rate: Option<f64>,
    pub distinct_estimate: u64,
    /// Numbers only, over the non-null values.
    pub mean: Option<f64>,
    /// p05, p25, p50, p75, p95 (linear interpolation); numbers only.
    pub quantiles: Option<[f64; 5]>,
    /// Against the pooled same-side values of the baseline days; `None` without a baseline
    /// (no earlier day, or no rows in it) or without rows today.
    pub psi: Option<f64>,
    /// Days of `D-7..D-1` the comparison table has.
    pub baseline_days: u64,
}

/// A column's values as the summary sees them: numbers (NaN as null), or categories (text as
/// is, booleans `true`/`false`, anything else its JSON text).
enum Values {
    Numbers(Vec<Option<f64>>),
    Categories(Vec<Option<String>>),
}

impl Values {
    fn of(column: &ColumnView) -> Values {
        let rows = 0..column.len();
        match column {
            ColumnView::Numbers(_) => Values::Numbers(rows.map(|r| column.number(r)).collect()),
            _ => Values::Categories(rows.map(|r| column.category(r)).collect()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::Numbers(v) => v.len(),
            Values::Categories(v) => v.len(),
        }
    }
}

/// A column as the summary reads it, value by value (so the baseline copies only the values
/// its sample keeps).
enum ColumnView<'a> {
    Numbers(Float64Array),
    Text(&'a StringArray),
    Other(&'a dyn Array),
}

impl<'a> ColumnView<'a> {
    fn of(column: &'a ArrayRef, context: &str) -> Result<ColumnView<'a>> {
        let t = column.data_type();
        Ok(if t.is_numeric() {
            let floats = arrow::compute::cast(column, &DataType::Float64).map_err(|e| {
                EngineError::Arrow {
                    context: format!("{context} as numbers"),
                    source: e,
                }
            })?;
            ColumnView::Numbers(floats.as_primitive::<Float64Type>().clone())
        } else if let Some(text) = column.as_string_opt::<i32>() {
            ColumnView::Text(text)
        } else {
            ColumnView::Other(column.as_ref())
        })
    }

    fn len(&self) -> usize {
        match self {
            ColumnView::Numbers(a) => a.len(),
            ColumnView::Text(a) => a.len(),
            ColumnView::Other(a) => a.len(),
        }
    }

    /// The number at `row`; NaN is null.
    fn number(&self, row: usize) -> Option<f64> {
        match self {
            ColumnView::Numbers(a) => (!a.is_null(row))
                .then(|| a.value(row))
                .filter(|x| !x.is_nan()),
            _ => None,
        }
    }

    /// The category at `row`: text as is, anything else its JSON text.
    fn category(&self, row: usize) -> Option<String> {
        match self {
            ColumnView::Numbers(a) => (!a.is_null(row)).then(|| a.value(row).to_string()),
            ColumnView::Text(a) => (!a.is_null(row)).then(|| a.value(row).to_owned()),
            ColumnView::Other(a) => match to_json(*a, row) {
                Value::Null => None,
                Value::String(s) => Some(s),
                v => Some(v.to_string()),
            },
        }
    }
}

/// The pooled baseline of one feature and side: a uniform sample (reservoir, fixed seed) of at
/// most `BASELINE_SAMPLE` values, nulls included; exact while the week has fewer rows.
#[derive(Default)]
struct Baseline {
    numbers: Vec<Option<f64>>,
    categories: Vec<Option<String>>,
    seen: u64,
    random: SplitMix64,
}

impl Baseline {
    fn add(&mut self, column: &ColumnView) {
        let numeric = matches!(column, ColumnView::Numbers(_));
        for row in 0..column.len() {
            let Some(slot) = self.slot() else {
                continue;
            };
            if numeric {
                place(&mut self.numbers, slot, column.number(row));
            } else {
                place(&mut self.categories, slot, column.category(row));
            }
        }
    }

    /// Where the next value goes in the sample (Algorithm R): appended while there is room,
    /// then into a random slot with probability `BASELINE_SAMPLE / seen`, else nowhere.
    fn slot(&mut self) -> Option<Slot> {
        self.seen += 1;
        let seen = self.seen;
        if seen <= BASELINE_SAMPLE as u64 {
            return Some(Slot::Append);
        }
        let j = self.random.next() % seen;
        (j < BASELINE_SAMPLE as u64).then_some(Slot::Replace(j as usize))
    }
}

enum Slot {
    Append,
    Replace(usize),
}

fn place<T>(sample: &mut Vec<T>, slot: Slot, value: T) {
    match slot {
        Slot::Replace(i) if i < sample.len() => sample[i] = value,
        _ => sample.push(value),
    }
}

/// A fixed-seed generator (SplitMix64): the baseline sample is the same on every run.
struct SplitMix64(u64);

impl Default for SplitMix64 {
    fn default() -> Self {
        SplitMix64(0x5EED_0FC4_0F10_u64)
    }
}

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
}

/// SplitMix64's finalizer: spreads every input bit over the output.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of bytes: FNV-1a, then `mix64` (FNV's low bits are weak, and the
/// sketch takes its register from the high ones).
fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(h)
}

/// A number's hash: its Float64 bits, with -0.0 as 0.0 (equal numbers, one hash).
fn hash_number(x: f64) -> u64 {
    let x = if x == 0.0 { 0.0 } else { x };
    hash_bytes(&x.to_bits().to_le_bytes())
}

/// Distinct values: exact (a set of 64-bit hashes) up to `EXACT_DISTINCT`, then a HyperLogLog
/// of 2^14 registers (standard error about 0.8%).
pub struct DistinctSketch {
    exact: Option<HashSet<u64>>,
    registers: Vec<u8>,
}

const HLL_BITS: u32 = 14;

impl Default for DistinctSketch {
    fn default() -> Self {
        DistinctSketch {
            exact: Some(HashSet::new()),
            registers: vec![0; 1 << HLL_BITS],
        }
    }
}

impl DistinctSketch {
    pub fn add_hash(&mut self, hash: u64) {
        let register = (hash >> (64 - HLL_BITS)) as usize;
        // The rank of the remaining bits: leading zeros + 1, at most 64 - HLL_BITS + 1.
        let rest = hash << HLL_BITS;
        let rank = (rest.leading_zeros().min(64 - HLL_BITS) + 1) as u8;
        if let Some(r) = self.registers.get_mut(register) {
            *r = (*r).max(rank);
        }
        if let Some(set) = &mut self.exact {
            set.insert(hash);
            if set.len() > EXACT_DISTINCT {
                self.exact = None;
            }
        }
    }

    pub fn estimate(&self) -> u64 {
        if let Some(set) = &self.exact {
            return set.len() as u64;
        }
        let m = self.registers.len() as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self
            .registers
            .iter()
            .map(|r| 2f64.powi(-i32::from(*r)))
            .sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|r| **r == 0).count();
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            // Linear counting, better for small cardinalities.
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

/// The value at quantile `q` of sorted values, interpolated linearly between the two nearest
/// ranks (`None` for no values).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = q.clamp(0.0, 1.0) * last as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let (lo, hi) = (*sorted.get(below)?, *sorted.get(above)?);
    Some(lo + (hi - lo) * (position - below as f64))
}

/// `Σ (a - e) · ln(a / e)` over bins of counts, proportions floored at `PSI_EPSILON`; `None`
/// when either side has no values.
pub fn psi(actual: &[u64], expected: &[u64]) -> Option<f64> {
    let (total_a, total_e) = (actual.iter().sum::<u64>(), expected.iter().sum::<u64>());
    if total_a == 0 || total_e == 0 {
        return None;
    }
    let share = |n: u64, total: u64| (n as f64 / total as f64).max(PSI_EPSILON);
    Some(
        actual
            .iter()
            .zip(expected)
            .map(|(a, e)| {
                let (a, e) = (share(*a, total_a), share(*e, total_e));
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// Numbers' PSI bins: the baseline's deciles as cut points (`(c[i-1], c[i]]`), then one bin
/// for nulls. Equal cut points merge (discrete values).
fn number_bins(today: &[Option<f64>], baseline: &[Option<f64>]) -> (Vec<u64>, Vec<u64>) {
    let mut sorted: Vec<f64> = baseline.iter().flatten().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let mut cuts: Vec<f64> = (1..10)
        .filter_map(|k| quantile(&sorted, f64::from(k) / 10.0))
        .collect();
    cuts.dedup();
    let count = |values: &[Option<f64>]| {
        let mut bins = vec![0u64; cuts.len() + 2];
        for v in values {
            let bin = match v {
                Some(x) => cuts.partition_point(|c| c < x),
                None => cuts.len() + 1,
            };
            bins[bin] += 1;
        }
        bins
    };
    (count(today), count(baseline))
}

/// Categories' PSI bins: the baseline's `TOP_CATEGORIES` most frequent values (ties by value),
/// one bin for all others, one for nulls.
fn category_bins(today: &[Option<String>], baseline: &[Option<String>]) -> (Vec<u64>, Vec<u64>) {
    let mut frequency: HashMap<&str, u64> = HashMap::new();
    for v in baseline.iter().flatten() {
        *frequency.entry(v.as_str()).or_default() += 1;
    }
    let mut ranked: Vec<(&str, u64)> = frequency.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top: HashMap<&str, usize> = ranked
        .iter()
        .take(TOP_CATEGORIES)
        .enumerate()
        .map(|(i, (v, _))| (*v, i))
        .collect();
    let (other, null) = (top.len(), top.len() + 1);
    let count = |values: &[Option<String>]| {
        let mut bins = vec![0u64; top.len() + 2];
        for v in values {
            let bin = match v {
                Some(x) => top.get(x.as_str()).copied().unwrap_or(other),
                None => null,
            };
            bins[bin] += 1;
        }
        bins
    };
    (count(today), count(baseline))
}

/// The summary of one feature and side for the day, and its PSI against `baseline`.
fn summarize(
    feature: &str,
    side: Side,
    today: &Values,
    baseline: Option<&Baseline>,
    baseline_days: u64,
) -> FeatureDrift {
    let rows = today.len() as u64;
    let mut sketch = DistinctSketch::default();
    let (nulls, mean, quantiles, psi_value) = match today {
        Values::Numbers(v) => {
            let mut sorted: Vec<f64> = v.iter().flatten().copied().collect();
            for x in &sorted {
                sketch.add_hash(hash_number(*x));
            }
            let mean =
                (!sorted.is_empty()).then(|| sorted.iter().sum::<f64>() / sorted.len() as f64);
            sorted.sort_by(f64::total_cmp);
            let q = QUANTILES.map(|q| quantile(&sorted, q));
            let quantiles = q
                .iter()
                .all(Option::is_some)
                .then(|| q.map(|x| x.unwrap_or_default()));
            let psi_value = baseline.and_then(|b| {
                let (a, e) = number_bins(v, &b.numbers);
                psi(&a, &e)
            });
            (rows - sorted.len() as u64, mean, quantiles, psi_value)
        }
        Values::Categories(v) => {
            let mut present = 0u64;
            for x in v.iter().flatten() {
                sketch.add_hash(hash_bytes(x.as_bytes()));
                present += 1;
            }
            let psi_value = baseline.and_then(|b| {
                let (a, e) = category_bins(v, &b.categories);
                psi(&a, &e)
            });
            (rows - present, None, None, psi_value)
        }
    };
    FeatureDrift {
        feature: feature.to_owned(),
        side,
        rows,
        null_rate: (rows > 0).then(|| nulls as f64 / rows as f64),
        distinct_estimate: sketch.estimate(),
        mean,
        quantiles,
        psi: psi_value,
        baseline_days,
    }
}

/// The features of a comparison table: the columns with an `_online` twin, in table order.
pub fn features_of(comparison: &Schema) -> Vec<String> {
    comparison
        .fields()
        .iter()
        .map(|f| f.name())
        .filter(|f| {
            comparison
                .column_with_name(&format!("{f}{ONLINE_SUFFIX}"))
                .is_some()
        })
        .cloned()
        .collect()
}

/// Partition `ds` of `<join>_drift` from that day's comparison rows (already read by the
/// metrics job) and the comparison partitions of `D-7..D-1`; the rows written.
pub async fn compute_drift(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    ds: PartitionDate,
    comparison: &RecordBatch,
) -> Result<Vec<FeatureDrift>> {
    let output = loaded.output_table();
    let source = comparison_table(&output);
    let source_name = TableName::parse(&source)?;
    let features = features_of(&comparison.schema());
    let sides = [Side::Online, Side::Offline];

    // The baseline, one day at a time, so the week is never in memory at once.
    let earlier: Vec<PartitionDate> = warehouse
        .partitions(&source_name)
        .await?
        .into_iter()
        .filter(|d| (1..=BASELINE_DAYS).contains(&d.days_until(ds)))
        .collect();
    let mut baselines: HashMap<(usize, Side), Baseline> = HashMap::new();
    for day in &earlier {
        let batches = warehouse.read_partition(&source_name, *day).await?;
        for batch in &batches {
            for (i, feature) in features.iter().enumerate() {
                for side in sides {
                    let column = side.column(feature);
                    // A feature added since that day is null there (the table's schema).
                    let Some(values) = batch.column_by_name(&column) else {
                        continue;
                    };
                    let values = ColumnView::of(values, &format!("{source} ds={day} {column}"))?;
                    baselines.entry((i, side)).or_default().add(&values);
                }
            }
        }
    }

    let mut out = Vec::new();
    for (i, feature) in features.iter().enumerate() {
        for side in sides {
            let column = side.column(feature);
            let Some(values) = comparison.column_by_name(&column) else {
                continue;
            };
            let today = Values::of(&ColumnView::of(
                values,
                &format!("{source} ds={ds} {column}"),
            )?);
            let baseline = baselines.get(&(i, side)).filter(|b| b.seen > 0);
            out.push(summarize(
                feature,
                side,
                &today,
                baseline,
                earlier.len() as u64,
            ));
        }
    }
    let table = drift_table(&output);
    let batch = drift_batch(&out).map_err(|e| EngineError::Arrow {
        context: format!("building {table}"),
        source: e,
    })?;
    warehouse
        .write_partition(&TableName::parse(&table)?, "ds", ds, &[batch])
        .await?;
    Ok(out)
}

/// The rows as the table contract has them (column names and order are read by the alerts,
/// gauges and `chronoflow consistency`).
fn drift_batch(
    rows: &[FeatureDrift],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let count = |f: fn(&FeatureDrift) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| i64::try_from(f(r)).unwrap_or(i64::MAX)),
        ))
    };
    let float = |f: fn(&FeatureDrift) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let quantile_column = |i: usize| -> ArrayRef {
        Arc::new(Float64Array::from(
            rows.iter()
                .map(|r| r.quantiles.map(|q| q[i]))
                .collect::<Vec<_>>(),
        ))
    };
    let mut fields = vec![
        Field::new("feature", DataType::Utf8, false),
        Field::new("side", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("null_rate", DataType::Float64, true),
        Field::new("distinct_estimate", DataType::Int64, false),
        Field::new("mean", DataType::Float64, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.feature.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.side.as_str()),
        )),
        count(|r| r.rows),
        float(|r| r.null_rate),
        count(|r| r.distinct_estimate),
        float(|r| r.mean),
    ];
    for (i, name) in ["p05", "p25", "p50", "p75", "p95"].iter().enumerate() {
        fields.push(Field::new(*name, DataType::Float64, true));
        columns.push(quantile_column(i));
    }
    fields.push(Field::new("psi", DataType::Float64, true));
    columns.push(float(|r| r.psi));
    fields.push(Field::new("baseline_days", DataType::Int64, false));
    columns.push(count(|r| r.baseline_days));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Summary lines: the rows written and the highest PSIs.
pub fn summary(join: &str, ds: PartitionDate, rows: &[FeatureDrift]) -> Vec<String> {
    let baseline_days = rows.first().map_or(0, |r| r.baseline_days);
    let mut lines = vec![format!(
        "drift {join} ds={ds}: {} features x sides, baseline {baseline_days} of the {BASELINE_DAYS} days before",
        rows.len()
    )];
    let mut ranked: Vec<&FeatureDrift> = rows.iter().filter(|r| r.psi.is_some()).collect();
    ranked.sort_by(|a, b| {
        b.psi
            .unwrap_or_default()
            .total_cmp(&a.psi.unwrap_or_default())
            .then(a.feature.cmp(&b.feature))
    });
    for r in ranked.iter().take(5) {
        lines.push(format!(
            "  {} ({}): PSI {:.4}",
            r.feature,
            r.side.as_str(),
            r.psi.unwrap_or_default()
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&sorted, 0.5), Some(3.0));
        assert_eq!(quantile(&sorted, 0.25), Some(2.0));
        assert_eq!(quantile(&sorted, 0.1), Some(1.4));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7.0], 0.95), Some(7.0));
    }

    #[test]
    fn psi_is_zero_for_equal_shares_and_grows_with_the_shift() {
        assert_eq!(psi(&[10, 20, 30], &[1, 2, 3]), Some(0.0));
        let small = psi(&[52, 48], &[50, 50]).expect("values");
        let large = psi(&[90, 10], &[50, 50]).expect("values");
        assert!(small < 0.01 && large > 0.2, "{small} {large}");
        // An empty bin counts as PSI_EPSILON, not as an infinite logarithm.
        assert!(psi(&[0, 100], &[100, 0]).expect("values").is_finite());
        assert_eq!(psi(&[0, 0], &[1, 1]), None);
    }

    #[test]
    fn distinct_counts_are_exact_when_small_and_close_when_large() {
        let mut small = DistinctSketch::default();
        for i in 0..1000 {
            small.add_hash(hash_number(f64::from(i % 100)));
        }
        assert_eq!(small.estimate(), 100);
        let mut large = DistinctSketch::default();
        for i in 0..200_000 {
            large.add_hash(hash_number(f64::from(i)));
        }
        let e = large.estimate() as f64;
        assert!((e - 200_000.0).abs() / 200_000.0 < 0.03, "{e}");
        assert_eq!(hash_number(0.0), hash_number(-0.0));
    }

    #[test]
    fn number_bins_are_the_baseline_deciles_plus_nulls() {
        let baseline: Vec<Option<f64>> = (1..=100).map(|i| Some(f64::from(i))).collect();
        let (today, expected) = number_bins(&[Some(1.0), Some(100.0), None], &baseline);
        assert_eq!(expected.iter().sum::<u64>(), 100);
        assert!(expected[..10].iter().all(|n| *n == 10), "{expected:?}");
        assert_eq!(today, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn categories_beyond_the_top_share_one_bin() {
        let baseline: Vec<Option<String>> = (0..30)
            .flat_map(|i| std::iter::repeat_n(Some(format!("c{i}")), 30 - i))
            .collect();
        let today = vec![Some("c0".to_owned()), Some("c29".to_owned()), None];
        let (a, e) = category_bins(&today, &baseline);
        assert_eq!(a.len(), TOP_CATEGORIES + 2);
        assert_eq!(a[0], 1);
        assert_eq!(a[TOP_CATEGORIES], 1, "c29 is not in the top 20");
        assert_eq!(a[TOP_CATEGORIES + 1], 1);
        assert_eq!(e[0], 30);
    }

    #[test]
    fn the_baseline_sample_is_bounded_and_deterministic() {
        let run = || {
            let mut b = Baseline::default();
            let column: ArrayRef =
                Arc::new(Float64Array::from_iter_values((0..200_000).map(f64::from)));
            b.add(&ColumnView::of(&column, "test").expect("numbers"));
            b
        };
        let (a, b) = (run(), run());
        assert_eq!(a.numbers.len(), BASELINE_SAMPLE);
        assert_eq!(a.numbers, b.numbers);
        assert_eq!(a.seen, 200_000);
        // Uniform: the sample's median is near the population's.
        let mut sorted: Vec<f64> = a.numbers.iter().flatten().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let median = quantile(&sorted, 0.5).expect("values");
        assert!((median - 100_000.0).abs() < 2_000.0, "{median}");
    }
}
