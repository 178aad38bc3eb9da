//! Computing a GroupBy's features for one key as of a point in time (SPEC §4.2–4.3), and
//! turning them into Arrow columns.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::naming::feature_column;
use chronoflow_config::{Aggregation, Operation, PartitionDate, Window};
use serde_json::Value;

use crate::aggregate::{Out, OutKind, compute};
use crate::error::{EngineError, Result};
use crate::feature_columns::FeatureColumn;
use crate::value::{ScalarKind, Val};
use crate::window::{end_of_day, oldest_partition, window_start};

/// One output column of a GroupBy: an aggregation over a window (or none), for a bucket column (or none).
#[derive(Debug, Clone)]
pub struct Feature {
    pub name: String,
    pub aggregation: usize,
    /// Which of [`KeyedRows::inputs`] the aggregation reads.
    pub input: usize,
    pub window: Option<Window>,
    pub bucket: Option<usize>,
    pub kind: OutKind,
}

/// The rows of one GroupBy's sources, columnar, with an index by key.
#[derive(Debug, Default)]
pub struct KeyedRows {
    pub ts: Vec<Option<i64>>,
    pub ds: Vec<PartitionDate>,
    pub is_entity: Vec<bool>,
    /// Per distinct input column: its values (aggregations over one column share them). Empty
    /// for an input held in [`Self::numbers`].
    pub inputs: Vec<Vec<Option<Val>>>,
    /// Per distinct input column (or empty: none): its values as plain numbers, when only the
    /// in-place paths over event rows (SUM, COUNT, AVERAGE, LAST_K) read it: 9 bytes a row
    /// instead of an `Option<Val>`'s 24.
    pub numbers: Vec<Option<Numbers>>,
    /// Whether every row comes from an event source (then a window is found by binary search).
    pub all_events: bool,
    /// Per bucket column: the bucket of each row.
    pub buckets: Vec<Vec<Option<String>>>,
    /// Per row, the [`ORIGIN`](crate::source::ORIGIN) value of the input row it came from, when
    /// the input had that column (streamed records); empty otherwise.
    pub origin: Vec<u32>,
    /// Per key: its rows, contiguous and sorted by time (rows without time first).
    pub by_key: HashMap<Vec<Option<Val>>, Range<u32>, foldhash::fast::RandomState>,
    /// The same index for a single 64-bit integer key column: looked up by its value, without
    /// building a key.
    pub by_int_key: Option<HashMap<i64, Range<u32>, foldhash::fast::RandomState>>,
    /// `0..` the number of rows: each key's rows as a slice of row indices (see [`Self::rows`]).
    pub row_ids: Vec<u32>,
}

/// An input column of 64-bit numbers: values, and whether each row has one. Integers may carry
/// their [`RunningSums`].
#[derive(Debug)]
pub enum Numbers {
    Int {
        values: Vec<i64>,
        valid: Vec<bool>,
        sums: Option<RunningSums>,
    },
    Float {
        values: Vec<f64>,
        valid: Vec<bool>,
    },
}

/// Running sums of an integer input over the index's rows, so that a window's SUM, COUNT and
/// AVERAGE are two lookups and a few corrections instead of a walk over its rows. Exact, and equal
/// to the walk's result to the bit: integer sums wrap the same in any order, and they are only
/// kept when the input's absolute values add up to less than 2^53, so that every float sum
/// AVERAGE adds (in time order) is exact too, hence the integer sum.
#[derive(Debug)]
pub struct RunningSums {
    /// `before[r]`: the wrapping sum of the values of rows `0..r`.
    before: Vec<i64>,
    /// Rows a window may not count even between its ends (sorted): without value or time, or in
    /// a partition other than their time's day.
    irregular: Vec<u32>,
}

impl RunningSums {
    /// The running sums of `values` (`valid`: which rows have one) of rows at `ts` in
    /// partitions `ds`; `None` when the values are too large for them to be exact.
    pub fn of(
        values: &[i64],
        valid: &[bool],
        ts: &[Option<i64>],
        ds: &[PartitionDate],
    ) -> Option<RunningSums> {
        let mut before = Vec::with_capacity(values.len() + 1);
        let mut irregular = Vec::new();
        let (mut sum, mut magnitude) = (0i64, 0u64);
        before.push(0);
        // The last partition seen and its day's times: partitions are few and rows of a key
        // mostly share them, so the day is not worked out again per row.
        let mut day: Option<(PartitionDate, std::ops::Range<i64>)> = None;
        for r in 0..values.len() {
            if valid[r] {
                sum = sum.wrapping_add(values[r]);
                magnitude = magnitude.saturating_add(values[r].unsigned_abs());
            }
            before.push(sum);
            let times = match &day {
                Some((d, times)) if *d == ds[r] => times,
                _ => {
                    let d = ds[r];
                    &day.insert((d, d.epoch_millis()..end_of_day(d))).1
                }
            };
            if !(valid[r] && ts[r].is_some_and(|t| times.contains(&t))) {
                irregular.push(u32::try_from(r).ok()?);
            }
        }
        (magnitude < 1 << 53).then_some(RunningSums { before, irregular })
    }
}

impl KeyedRows {
    /// Gives every integer input held as numbers its [`RunningSums`] (where they are exact).
    pub fn add_running_sums(&mut self) {
        for numbers in self.numbers.iter_mut().flatten() {
            if let Numbers::Int {
                values,
                valid,
                sums,
            } = numbers
            {
                *sums = RunningSums::of(values, valid, &self.ts, &self.ds);
            }
        }
    }
}

impl KeyedRows {
    /// Input `c` as plain numbers, if it is held so.
    pub fn numbers(&self, c: usize) -> Option<&Numbers> {
        self.numbers.get(c).and_then(Option::as_ref)
    }

    /// The row indices of a key's rows (`range`, from [`Self::by_key`]). A non-empty key's
    /// slice starts where no other key's does: its address identifies the key.
    pub fn rows(&self, range: &Range<u32>) -> &[u32] {
        &self.row_ids[range.start as usize..range.end as usize]
    }
}

/// The point in time a computation is "as of".
#[derive(Debug, Clone, Copy)]
pub enum AsOf {
    /// Event rows with `ts` before `end` (or at `end` when `inclusive`), from partitions landed by
    /// `a`; entity rows are the snapshot of partition `a` (windows measured back from the end of `a`).
    Time {
        end: i64,
        inclusive: bool,
        a: PartitionDate,
    },
}

impl AsOf {
    /// A daily snapshot of day `d`: everything before the end of `d`, as landed by `d`.
    pub fn end_of(d: PartitionDate) -> AsOf {
        AsOf::Time {
            end: end_of_day(d),
            inclusive: false,
            a: d,
        }
    }
}

/// The rows an input column's aggregations count over one window: `(input, window)`.
type CountedFor = (usize, Option<Window>);

/// Buffers [`compute_features`] reuses from one call to the next, so computing a key's
/// features allocates nothing but the values it returns.
#[derive(Default)]
pub struct FeatureScratch<'d> {
    /// The rows counted per `(input, window)`; the first `used` entries belong to this call.
    counted: Vec<(CountedFor, Vec<(i64, &'d Val)>)>,
    used: usize,
    /// The sums of the rows counted per `(input, window)` (event rows only); the first
    /// `sums_used` entries belong to this call.
    sums: Vec<(CountedFor, WindowSums)>,
    sums_used: usize,
    by_bucket: BTreeMap<&'d str, Vec<(i64, &'d Val)>>,
    sorted: Vec<(i64, &'d Val)>,
    /// LAST_K's last rows: `(ts, row)`.
    tail: Vec<(i64, usize)>,
}

/// Where [`compute_features_into`] puts a key's values: one per feature, in order.
pub trait FeatureSink {
    fn value(&mut self, v: Option<Out>);
    /// A LAST_K value: the list of `items` (what `Some(Out::List(items))` would hold).
    fn list(&mut self, items: impl Iterator<Item = Val>);
}

impl FeatureSink for Vec<Option<Out>> {
    fn value(&mut self, v: Option<Out>) {
        self.push(v);
    }

    fn list(&mut self, items: impl Iterator<Item = Val>) {
        self.push(Some(Out::List(items.collect())));
    }
}

/// Typed columns as a [`FeatureSink`]: a key's values go to the columns in turn.
pub(crate) struct ColumnsSink<'c> {
    pub(crate) columns: &'c mut [FeatureColumn],
    pub(crate) next: usize,
}

impl FeatureSink for ColumnsSink<'_> {
    fn value(&mut self, v: Option<Out>) {
        self.columns[self.next].push(v);
        self.next += 1;
    }

    fn list(&mut self, items: impl Iterator<Item = Val>) {
        self.columns[self.next].push_list(items);
        self.next += 1;
    }
}

/// The features of one key (`rows`: its row indices) as of `as_of`, in `features` order.
pub fn compute_features<'d>(
    aggregations: &[Aggregation],
    features: &[Feature],
    data: &'d KeyedRows,
    rows: &[u32],
    as_of: AsOf,
    scratch: &mut FeatureScratch<'d>,
) -> Vec<Option<Out>> {
    let mut out = Vec::with_capacity(features.len());
    compute_features_into(aggregations, features, data, rows, as_of, scratch, &mut out);
    out
}

/// [`compute_features`], each value handed to `sink` as it is computed.
pub fn compute_features_into<'d>(
    aggregations: &[Aggregation],
    features: &[Feature],
    data: &'d KeyedRows,
    rows: &[u32],
    as_of: AsOf,
    scratch: &mut FeatureScratch<'d>,
    sink: &mut impl FeatureSink,
) {
    scratch.used = 0;
    scratch.sums_used = 0;
    // Event rows only: every window ends at the same row.
    let rows = if data.all_events {
        &rows[..end_of_rows(data, rows, as_of)]
    } else {
        rows
    };
    for f in features {
        let agg = &aggregations[f.aggregation];
        // Event rows only: the window's rows are a time-ordered run, read in place.
        if f.bucket.is_none() && data.all_events {
            let k = agg.k.unwrap_or(0) as usize;
            match agg.operation {
                Operation::Count | Operation::Sum | Operation::Average => {
                    sink.value(
                        scratch
                            .sums_of(f, aggregations, features, data, rows, as_of)
                            .finish(agg.operation),
                    );
                    continue;
                }
                Operation::LastK if k > 0 => {
                    last_k(f, k, data, rows, as_of, &mut scratch.tail, sink);
                    continue;
                }
                _ => {}
            }
        }
        // Only the order-sensitive operations need ties broken by value; rows already come in time order.
        let ordered = matches!(
            agg.operation,
            Operation::First | Operation::Last | Operation::FirstK | Operation::LastK
        );
        let value = match f.bucket {
            None => {
                // Aggregations of one column over one window count the same rows: count them once.
                let slot = (f.input, f.window);
                let used = scratch.used;
                let i = match scratch.counted[..used].iter().position(|(s, _)| *s == slot) {
                    Some(i) => i,
                    None => {
                        if used == scratch.counted.len() {
                            scratch.counted.push((slot, Vec::new()));
                        }
                        let (s, rows_of) = &mut scratch.counted[used];
                        *s = slot;
                        count_rows(f, data, rows, as_of, rows_of, &mut scratch.by_bucket);
                        scratch.used += 1;
                        used
                    }
                };
                let counted = &scratch.counted[i].1;
                if ordered {
                    // Sorted apart: the shared rows keep time order with ties as loaded,
                    // which a floating-point sum's result depends on.
                    let sorted = &mut scratch.sorted;
                    sorted.clear();
                    sorted.extend_from_slice(counted);
                    sort_by_time_then_value(sorted);
                    compute(agg, sorted)
                } else {
                    compute(agg, counted)
                }
            }
            Some(_) => {
                let FeatureScratch {
                    by_bucket, sorted, ..
                } = scratch;
                count_rows(f, data, rows, as_of, sorted, by_bucket);
                let map: Vec<(String, Out)> = by_bucket
                    .iter_mut()
                    .filter_map(|(b, rows)| {
                        if ordered {
                            sort_by_time_then_value(rows);
                        }
                        compute(agg, rows).map(|o| ((*b).to_owned(), o))
                    })
                    .collect();
                (!map.is_empty()).then_some(Out::Buckets(map))
            }
        };
        sink.value(value);
    }
}

/// What SUM, COUNT and AVERAGE need of the rows counted over one window: computed in one
/// pass over the rows in place, as [`compute`] would from them.
#[derive(Debug, Clone, Copy, Default)]
struct WindowSums {
    rows: usize,
    /// Whether the first row counted holds an integer: then SUM adds the integers.
    first_int: bool,
    /// The integers counted, added with wraparound.
    ints: i64,
    /// Every numeric value counted, as a float, added in time order.
    floats: f64,
}

impl WindowSums {
    /// No rows yet. The float sum starts where `f64`'s `Sum` (what `compute` uses) starts, at
    /// -0.0, and [`Self::add`] adds in the same order: the same result to the bit (a test holds
    /// them together).
    fn empty() -> WindowSums {
        WindowSums {
            floats: -0.0,
            ..WindowSums::default()
        }
    }

    /// `operation` (COUNT, SUM or AVERAGE) of the rows, as [`compute`] gives it.
    fn finish(self, operation: Operation) -> Option<Out> {
        if self.rows == 0 {
            return None;
        }
        let out = match operation {
            Operation::Count => return Some(Out::Int(self.rows as i64)),
            Operation::Sum if self.first_int => return Some(Out::Int(self.ints)),
            Operation::Sum => self.floats,
            _ => self.floats / self.rows as f64,
        };
        out.is_finite().then_some(Out::Float(out))
    }

    /// [`Self::add`] of `Val::Int(i)`.
    #[inline]
    fn add_int(&mut self, i: i64) {
        if self.rows == 0 {
            self.first_int = true;
        }
        self.rows += 1;
        self.ints = self.ints.wrapping_add(i);
        self.floats += i as f64;
    }

    /// [`Self::add`] of `Val::Float(f)`.
    #[inline]
    fn add_float(&mut self, f: f64) {
        if self.rows == 0 {
            self.first_int = false;
        }
        self.rows += 1;
        self.floats += f;
    }

    /// Adds one counted value (in time order), as `compute` would count it.
    #[inline]
    fn add(&mut self, v: &Val) {
        if self.rows == 0 {
            self.first_int = matches!(v, Val::Int(_));
        }
        self.rows += 1;
        match v {
            Val::Int(i) => {
                self.ints = self.ints.wrapping_add(*i);
                self.floats += *i as f64;
            }
            Val::Float(f) => self.floats += *f,
            Val::Bool(b) => self.floats += f64::from(u8::from(*b)),
            Val::Str(_) => {}
        }
    }
}

/// Whether feature `f` is SUM, COUNT or AVERAGE read in place by [`FeatureScratch::sums_of`].
fn summed(aggregations: &[Aggregation], f: &Feature) -> bool {
    f.bucket.is_none()
        && matches!(
            aggregations[f.aggregation].operation,
            Operation::Count | Operation::Sum | Operation::Average
        )
}

impl<'d> FeatureScratch<'d> {
    /// The sums of the rows feature `f` (no bucket, event rows only) counts. The first call for
    /// an input computes the sums of every window the summed `features` read it over, in one
    /// pass over the rows of the widest (each window's values still added in time order).
    #[allow(clippy::too_many_arguments)]
    fn sums_of(
        &mut self,
        f: &Feature,
        aggregations: &[Aggregation],
        features: &[Feature],
        data: &'d KeyedRows,
        rows: &[u32],
        as_of: AsOf,
    ) -> WindowSums {
        let slot = (f.input, f.window);
        if let Some((_, sums)) = self.sums[..self.sums_used].iter().find(|(s, _)| *s == slot) {
            return *sums;
        }
        let first = self.sums_used;
        for g in features {
            if g.input == f.input
                && summed(aggregations, g)
                && !self.sums[first..self.sums_used]
                    .iter()
                    .any(|(s, _)| s.1 == g.window)
            {
                let entry = ((g.input, g.window), WindowSums::default());
                if self.sums_used == self.sums.len() {
                    self.sums.push(entry);
                } else {
                    self.sums[self.sums_used] = entry;
                }
                self.sums_used += 1;
            }
        }
        let windows = &mut self.sums[first..self.sums_used];
        sum_windows(windows, data, rows, as_of);
        windows
            .iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, sums)| *sums)
            .expect("the feature's own window is among its input's summed windows")
    }
}

/// An input column as the in-place paths read it: an `Option<Val>` per row, or plain numbers.
trait InputValues: Copy {
    type V: Copy;
    /// Row `r`'s value, if it has one.
    fn at(self, r: usize) -> Option<Self::V>;
    /// [`WindowSums::add`] of the value.
    fn add(sums: &mut WindowSums, v: Self::V);
    /// [`Val`]'s order of the values.
    fn cmp(a: Self::V, b: Self::V) -> std::cmp::Ordering;
    fn val(v: Self::V) -> Val;
}

impl<'d> InputValues for &'d [Option<Val>] {
    type V = &'d Val;
    #[inline]
    fn at(self, r: usize) -> Option<&'d Val> {
        self[r].as_ref()
    }
    #[inline]
    fn add(sums: &mut WindowSums, v: &'d Val) {
        sums.add(v);
    }
    fn cmp(a: &'d Val, b: &'d Val) -> std::cmp::Ordering {
        a.cmp(b)
    }
    fn val(v: &'d Val) -> Val {
        v.clone()
    }
}

/// A number type an input is indexed as ([`KeyedRows::numbers`]).
trait Number: Copy {
    /// [`WindowSums::add`] of the number.
    fn add_to(self, sums: &mut WindowSums);
    /// [`Val`]'s order of the numbers.
    fn order(a: Self, b: Self) -> std::cmp::Ordering;
    fn val(self) -> Val;
}

impl Number for i64 {
    #[inline]
    fn add_to(self, sums: &mut WindowSums) {
        sums.add_int(self);
    }
    fn order(a: i64, b: i64) -> std::cmp::Ordering {
        a.cmp(&b)
    }
    fn val(self) -> Val {
        Val::Int(self)
    }
}

impl Number for f64 {
    #[inline]
    fn add_to(self, sums: &mut WindowSums) {
        sums.add_float(self);
    }
    fn order(a: f64, b: f64) -> std::cmp::Ordering {
        a.total_cmp(&b)
    }
    fn val(self) -> Val {
        Val::Float(self)
    }
}

/// An input indexed as plain numbers with their validity.
#[derive(Clone, Copy)]
struct Plain<'d, T> {
    values: &'d [T],
    valid: &'d [bool],
}

impl<T: Number> InputValues for Plain<'_, T> {
    type V = T;
    #[inline]
    fn at(self, r: usize) -> Option<T> {
        self.valid[r].then(|| self.values[r])
    }
    #[inline]
    fn add(sums: &mut WindowSums, v: T) {
        v.add_to(sums);
    }
    fn cmp(a: T, b: T) -> std::cmp::Ordering {
        T::order(a, b)
    }
    fn val(v: T) -> Val {
        v.val()
    }
}

/// Runs `$body` with `$v` bound to input `$c` of `$data` as an [`InputValues`] of its storage.
macro_rules! with_input {
    ($data:expr, $c:expr, |$v:ident| $body:expr) => {
        match $data.numbers($c) {
            Some(Numbers::Int { values, valid, .. }) => {
                let $v = Plain { values, valid };
                $body
            }
            Some(Numbers::Float { values, valid }) => {
                let $v = Plain { values, valid };
                $body
            }
            None => {
                let $v: &[Option<Val>] = &$data.inputs[$c];
                $body
            }
        }
    };
}

/// Up to this many windows of one input are summed in one pass (more go in several).
const MAX_WINDOWS_PER_PASS: usize = 8;

/// The sums of `windows` (each `(input, window)`) of the rows [`event_rows`] gives: one pass
/// over the rows of all of them, each row added to every window it counts for, so each
/// window's values are added in time order. `rows` end at the end of `as_of`, as
/// [`compute_features_into`] cuts them ([`end_of_rows`]).
fn sum_windows(
    windows: &mut [(CountedFor, WindowSums)],
    data: &KeyedRows,
    rows: &[u32],
    as_of: AsOf,
) {
    let Some(&((c, _), _)) = windows.first() else {
        return;
    };
    if let Some(Numbers::Int {
        values,
        valid,
        sums: Some(sums),
    }) = data.numbers(c)
        && data.all_events
        && let Some(ts) = contiguous(data, rows)
        && regular_rows_count(windows.iter().map(|((_, w), _)| *w), as_of)
    {
        let first = rows[0] as usize;
        // The key's irregular rows up to the end, found once for all the windows: a search of
        // the whole list (of every key) per window misses the caches each time.
        let from = sums.irregular.partition_point(|&r| (r as usize) < first);
        let to =
            from + sums.irregular[from..].partition_point(|&r| (r as usize) < first + ts.len());
        let irregular = &sums.irregular[from..to];
        for ((_, window), out) in windows.iter_mut() {
            *out = sum_by_running_sums(
                *window,
                (values, valid),
                (&sums.before, irregular),
                data,
                (first, ts),
                as_of,
            );
        }
        return;
    }
    with_input!(data, c, |values| sum_windows_of(
        windows, values, data, rows, as_of
    ))
}

/// Whether every row between each window's ends (as of `as_of`) whose partition is its time's
/// day is counted: then only the irregular rows need a look.
fn regular_rows_count(mut windows: impl Iterator<Item = Option<Window>>, as_of: AsOf) -> bool {
    let AsOf::Time { end, inclusive, a } = as_of;
    // The latest time counted is in day `a` or before, so the partition rule (p <= a) holds.
    // (In milliseconds: `date_of(t) > d` is `t >= end_of_day(d)`; per left row, dates cost.)
    let last = if inclusive { end } else { end - 1 };
    // And each window's first time is in its oldest partition or after.
    last < end_of_day(a)
        && windows.all(|window| {
            window.is_none_or(|w| window_start(end, w) >= oldest_partition(a, w).epoch_millis())
        })
}

/// [`sum_windows_of`] of one window, from running sums (`before`, see [`RunningSums`]): the
/// rows between the window's ends, less the `irregular` ones among them (the key's, sorted)
/// that the window does not count. The key's rows up to the end of `as_of` are
/// `first..first + ts.len()` of the index.
fn sum_by_running_sums(
    window: Option<Window>,
    (values, valid): (&[i64], &[bool]),
    (before, irregular): (&[i64], &[u32]),
    data: &KeyedRows,
    (first, ts): (usize, &[Option<i64>]),
    as_of: AsOf,
) -> WindowSums {
    let AsOf::Time { end, a, .. } = as_of;
    // Every row up to `hi` is before the end, or has no time.
    let hi = ts.len();
    let (lo, oldest) = match window {
        Some(w) => {
            let s = window_start(end, w);
            let lo = ts.partition_point(|t| t.is_none_or(|t| t < s));
            (lo, Some(oldest_partition(a, w)))
        }
        None => (0, None),
    };
    let (lo, hi) = (first + lo, first + hi);
    let mut sum = before[hi].wrapping_sub(before[lo]);
    let mut rows = hi - lo;
    let from = irregular.partition_point(|&r| (r as usize) < lo);
    for &r in irregular[from..].iter().take_while(|&&r| (r as usize) < hi) {
        let r = r as usize;
        let counted = valid[r]
            && data.ts[r].is_some()
            && data.ds[r] <= a
            && oldest.is_none_or(|o| data.ds[r] >= o);
        if !counted {
            rows -= 1;
            if valid[r] {
                sum = sum.wrapping_sub(values[r]);
            }
        }
    }
    if rows == 0 {
        return WindowSums::empty();
    }
    WindowSums {
        rows,
        first_int: true,
        ints: sum,
        floats: sum as f64,
    }
}

fn sum_windows_of<I: InputValues>(
    windows: &mut [(CountedFor, WindowSums)],
    values: I,
    data: &KeyedRows,
    rows: &[u32],
    as_of: AsOf,
) {
    if windows.len() > MAX_WINDOWS_PER_PASS {
        let (head, tail) = windows.split_at_mut(MAX_WINDOWS_PER_PASS);
        sum_windows_of(head, values, data, rows, as_of);
        sum_windows_of(tail, values, data, rows, as_of);
        return;
    }
    let AsOf::Time { end, inclusive, a } = as_of;
    // Per window: the first row of its run (by time), and its oldest partition.
    let mut lo = [0usize; MAX_WINDOWS_PER_PASS];
    let mut oldest = [None; MAX_WINDOWS_PER_PASS];
    let ts = contiguous(data, rows);
    for (j, ((_, window), sums)) in windows.iter_mut().enumerate() {
        *sums = WindowSums::empty();
        if let Some(w) = window {
            let s = window_start(end, *w);
            let before_start = |t: Option<i64>| t.is_none_or(|t| t < s);
            lo[j] = match ts {
                Some(ts) => ts.partition_point(|t| before_start(*t)),
                None => rows.partition_point(|r| before_start(data.ts[*r as usize])),
            };
            oldest[j] = Some(oldest_partition(a, *w));
        }
    }
    let n = windows.len();
    let first = lo[..n].iter().copied().min().unwrap_or(0).min(rows.len());
    for (i, &r) in rows.iter().enumerate().skip(first) {
        let r = r as usize;
        let Some(v) = values.at(r) else {
            continue;
        };
        let Some(t) = data.ts[r] else { continue };
        let p = data.ds[r];
        let before_end = if inclusive { t <= end } else { t < end };
        if p > a || !before_end {
            continue;
        }
        // At or after a window's first row, a row's time is within it (rows are in time order).
        for j in 0..n {
            if i >= lo[j] && oldest[j].is_none_or(|o| p >= o) {
                I::add(&mut windows[j].1, v);
            }
        }
    }
}

/// LAST_K with `k > 0` of the rows feature `f` (no bucket, event rows only) counts, as
/// [`compute`] gives it from all of them, into `sink`: only the last `k` rows and any tied in
/// time with the k-th from last are read, from the end. Sorted by `(ts, value)` keeping their
/// order otherwise, they are the tail of all the rows so sorted.
fn last_k(
    f: &Feature,
    k: usize,
    data: &KeyedRows,
    rows: &[u32],
    as_of: AsOf,
    tail: &mut Vec<(i64, usize)>,
    sink: &mut impl FeatureSink,
) {
    with_input!(data, f.input, |values| last_k_of(
        f, k, values, data, rows, as_of, tail, sink
    ))
}

#[allow(clippy::too_many_arguments)]
fn last_k_of<I: InputValues>(
    f: &Feature,
    k: usize,
    values: I,
    data: &KeyedRows,
    rows: &[u32],
    as_of: AsOf,
    tail: &mut Vec<(i64, usize)>,
    sink: &mut impl FeatureSink,
) {
    tail.clear();
    for row in event_rows(f.window, values, data, rows, as_of).rev() {
        if tail.len() >= k && row.0 < tail[k - 1].0 {
            break;
        }
        tail.push(row);
    }
    if tail.is_empty() {
        sink.value(None);
        return;
    }
    tail.reverse();
    // Present: `event_rows` gives only rows with a value.
    let value = |r: usize| values.at(r).expect("event_rows gives rows with values");
    // By time, then value; a stable sort keeps ties' order (as `sort_by_time_then_value`).
    // The rows are in time order already: only rows tied in time can move.
    if tail.windows(2).any(|w| w[0].0 == w[1].0) {
        tail.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| I::cmp(value(x.1), value(y.1))));
    }
    sink.list(tail.iter().rev().take(k).map(|(_, r)| I::val(value(*r))));
}

/// How many of `rows` (in time order, rows without time first) are before the end of `as_of`.
fn end_of_rows(data: &KeyedRows, rows: &[u32], as_of: AsOf) -> usize {
    let AsOf::Time { end, inclusive, .. } = as_of;
    let before_end = |t: Option<i64>| t.is_none_or(|t| if inclusive { t <= end } else { t < end });
    match contiguous(data, rows) {
        Some(ts) => ts.partition_point(|t| before_end(*t)),
        None => rows.partition_point(|r| before_end(data.ts[*r as usize])),
    }
}

/// The times of `rows` as one slice when they are a run of the index's rows (as a key's rows
/// are in a backfill): searched without going through the row indices.
fn contiguous<'d>(data: &'d KeyedRows, rows: &[u32]) -> Option<&'d [Option<i64>]> {
    let first = *rows.first()? as usize;
    data.row_ids
        .as_ptr_range()
        .contains(&rows.as_ptr())
        .then(|| &data.ts[first..first + rows.len()])
}

/// The rows a feature without bucket over `values` counts as of `as_of` when every row is an
/// event row (`data.all_events`), given `rows` up to the end of `as_of` ([`end_of_rows`]):
/// what [`count_rows`] collects, in the same (time) order, read in place, as `(ts, row)`.
fn event_rows<'r, I: InputValues + 'r>(
    window: Option<Window>,
    values: I,
    data: &'r KeyedRows,
    rows: &'r [u32],
    as_of: AsOf,
) -> impl DoubleEndedIterator<Item = (i64, usize)> + 'r {
    let AsOf::Time { end, inclusive, a } = as_of;
    let (start, oldest) = match window {
        Some(w) => (Some(window_start(end, w)), Some(oldest_partition(a, w))),
        None => (None, None),
    };
    let before_start = |t: Option<i64>, s: i64| t.is_none_or(|t| t < s);
    let lo = start.map_or(0, |s| match contiguous(data, rows) {
        Some(ts) => ts.partition_point(|t| before_start(*t, s)),
        None => rows.partition_point(|r| before_start(data.ts[*r as usize], s)),
    });
    rows[lo.min(rows.len())..].iter().filter_map(move |&r| {
        let r = r as usize;
        values.at(r)?;
        let t = data.ts[r]?;
        let p = data.ds[r];
        let before_end = if inclusive { t <= end } else { t < end };
        if p > a || !before_end || start.is_some_and(|s| t < s) || oldest.is_some_and(|o| p < o) {
            return None;
        }
        Some((t, r))
    })
}

/// Rows in time order with ties broken by value: the order First, Last and their k variants see.
fn sort_by_time_then_value(rows: &mut [(i64, &Val)]) {
    rows.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| x.1.cmp(y.1)));
}

/// The rows feature `f` counts as of `as_of` (SPEC §4.2), as `(ts, value)` in time order: into
/// `counted`, or per bucket into `by_bucket` for a bucketed feature. Both are cleared first.
pub fn count_rows<'d>(
    f: &Feature,
    data: &'d KeyedRows,
    rows: &[u32],
    as_of: AsOf,
    counted: &mut Vec<(i64, &'d Val)>,
    by_bucket: &mut BTreeMap<&'d str, Vec<(i64, &'d Val)>>,
) {
    let AsOf::Time { end, inclusive, a } = as_of;
    // The end of a calendar day (within ±2^53 ms) minus a window (under 2^59 ms): no overflow.
    let entity_end = end_of_day(a);
    let values = &data.inputs[f.input];
    let (start, oldest) = match f.window {
        Some(w) => (Some(window_start(end, w)), Some(oldest_partition(a, w))),
        None => (None, None),
    };
    counted.clear();
    by_bucket.clear();
    // Rows are sorted by time: with only event rows, the window is a contiguous slice.
    let candidates = if data.all_events {
        let ts = |r: &u32| data.ts[*r as usize];
        let lo = start.map_or(0, |s| rows.partition_point(|r| ts(r).is_none_or(|t| t < s)));
        let hi = rows
            .partition_point(|r| ts(r).is_none_or(|t| if inclusive { t <= end } else { t < end }));
        &rows[lo..hi.max(lo)]
    } else {
        rows
    };
    for &r in candidates {
        let r = r as usize;
        let Some(v) = &values[r] else { continue };
        let p = data.ds[r];
        let ts = if data.is_entity[r] {
            // Entity rows: only the snapshot partition, exact window back from its end.
            if p != a {
                continue;
            }
            let t = data.ts[r].unwrap_or(entity_end - 1);
            if let Some(w) = f.window
                && !(entity_end - w.millis() <= t && t < entity_end)
            {
                continue;
            }
            t
        } else {
            let Some(t) = data.ts[r] else { continue };
            let before_end = if inclusive { t <= end } else { t < end };
            if p > a || !before_end || start.is_some_and(|s| t < s) || oldest.is_some_and(|o| p < o)
            {
                continue;
            }
            t
        };
        match f.bucket {
            None => counted.push((ts, v)),
            Some(b) => {
                if let Some(bucket) = &data.buckets[b][r] {
                    by_bucket.entry(bucket.as_str()).or_default().push((ts, v));
                }
            }
        }
    }
}

/// The feature columns of a GroupBy's aggregations, buckets outer and windows inner.
pub fn plan_features(
    aggregations: &[Aggregation],
    kinds: &[OutKind],
    inputs: &[usize],
    bucket_names: &[String],
) -> Vec<Feature> {
    let mut out = Vec::new();
    for (i, agg) in aggregations.iter().enumerate() {
        let buckets: Vec<Option<usize>> = if agg.buckets.is_empty() {
            vec![None]
        } else {
            agg.buckets
                .iter()
                .map(|b| bucket_names.iter().position(|n| n == b))
                .collect()
        };
        let windows: Vec<Option<Window>> = if agg.windows.is_empty() {
            vec![None]
        } else {
            agg.windows.iter().copied().map(Some).collect()
        };
        for b in &buckets {
            for w in &windows {
                out.push(Feature {
                    name: feature_column(agg, *w, b.map(|i| bucket_names[i].as_str())),
                    aggregation: i,
                    input: inputs[i],
                    window: *w,
                    bucket: *b,
                    kind: kinds[i],
                });
            }
        }
    }
    out
}

/// The Arrow type of a feature.
pub fn feature_type(kind: OutKind, bucketed: bool) -> DataType {
    let base = match kind {
        OutKind::Int => DataType::Int64,
        OutKind::Float => DataType::Float64,
        OutKind::Scalar(s) => s.data_type(),
        OutKind::List(s) => DataType::List(Arc::new(Field::new("item", s.data_type(), true))),
        OutKind::FloatList => DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
        OutKind::Counts => map_type(DataType::Int64),
    };
    if bucketed { map_type(base) } else { base }
}

fn map_type(values: DataType) -> DataType {
    let entries = Field::new(
        "entries",
        DataType::Struct(
            vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", values, true),
            ]
            .into(),
        ),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

/// Builds one Arrow column from computed values. Scalars are built directly; nested values go
/// through Arrow's JSON decoder, which handles every nesting the same way.
pub fn build_column(name: &str, data_type: &DataType, values: &[Option<Out>]) -> Result<ArrayRef> {
    let arrow_err = |source| EngineError::Arrow {
        context: format!("building column {name}"),
        source,
    };
    Ok(match data_type {
        DataType::Int64 => {
            let mut b = Int64Builder::with_capacity(values.len());
            for v in values {
                b.append_option(match v {
                    Some(Out::Int(i)) | Some(Out::Scalar(Val::Int(i))) => Some(*i),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::with_capacity(values.len());
            for v in values {
                b.append_option(match v {
                    Some(Out::Float(f)) | Some(Out::Scalar(Val::Float(f))) => Some(*f),
                    Some(Out::Scalar(Val::Int(i))) => Some(*i as f64),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        DataType::Utf8 => {
            let mut b = StringBuilder::with_capacity(values.len(), values.len() * 8);
            for v in values {
                match v {
                    Some(Out::Scalar(Val::Str(s))) => b.append_value(s),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(values.len());
            for v in values {
                b.append_option(match v {
                    Some(Out::Scalar(Val::Bool(x))) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        DataType::List(item) if ScalarKind::of(item.data_type()).is_some() => {
            // Lists of scalars (LAST_K and friends, percentiles) are built directly: they are the
            // common nested features, and the JSON route below costs a parse per row.
            use arrow::array::ListBuilder;
            macro_rules! list {
                ($builder:expr, $push:expr) => {{
                    let mut b = ListBuilder::new($builder).with_field(item.clone());
                    for v in values {
                        match v {
                            Some(Out::List(items)) => {
                                for x in items {
                                    $push(b.values(), Some(x.clone()));
                                }
                                b.append(true);
                            }
                            Some(Out::FloatList(items)) => {
                                for x in items {
                                    $push(b.values(), Some(Val::Float(*x)));
                                }
                                b.append(true);
                            }
                            _ => b.append(false),
                        }
                    }
                    Arc::new(b.finish()) as ArrayRef
                }};
            }
            match item.data_type() {
                DataType::Int64 => list!(
                    Int64Builder::new(),
                    |b: &mut Int64Builder, v: Option<Val>| b.append_option(match v {
                        Some(Val::Int(i)) => Some(i),
                        _ => None,
                    })
                ),
                DataType::Float64 => list!(
                    Float64Builder::new(),
                    |b: &mut Float64Builder, v: Option<Val>| b
                        .append_option(v.and_then(|v| v.as_f64()))
                ),
                DataType::Boolean => list!(
                    BooleanBuilder::new(),
                    |b: &mut BooleanBuilder, v: Option<Val>| b.append_option(match v {
                        Some(Val::Bool(x)) => Some(x),
                        _ => None,
                    })
                ),
                _ => list!(
                    StringBuilder::new(),
                    |b: &mut StringBuilder, v: Option<Val>| b
                        .append_option(v.map(|v| v.key_text()))
                ),
            }
        }
        nested => {
            let schema = Arc::new(Schema::new(vec![Field::new("v", nested.clone(), true)]));
            let mut decoder = arrow::json::ReaderBuilder::new(schema)
                .build_decoder()
                .map_err(arrow_err)?;
            let rows: Vec<Value> = values
                .iter()
                .map(
                    |v| serde_json::json!({ "v": v.as_ref().map(out_json).unwrap_or(Value::Null) }),
                )
                .collect();
            decoder.serialize(&rows).map_err(arrow_err)?;
            let batch: RecordBatch = decoder.flush().map_err(arrow_err)?.unwrap_or_else(|| {
                RecordBatch::new_empty(Arc::new(Schema::new(vec![Field::new(
                    "v",
                    nested.clone(),
                    true,
                )])))
            });
            batch.column(0).clone()
        }
    })
}

/// An input value as JSON.
pub fn val_json(v: &Val) -> Value {
    match v {
        Val::Bool(b) => Value::Bool(*b),
        Val::Int(i) => Value::from(*i),
        Val::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Val::Str(s) => Value::String(s.to_string()),
    }
}

/// A feature value as JSON (what `export` and the fetcher print).
pub fn out_json(o: &Out) -> Value {
    match o {
        Out::Int(i) => Value::from(*i),
        Out::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Out::Scalar(v) => val_json(v),
        Out::List(vs) => Value::Array(vs.iter().map(val_json).collect()),
        Out::FloatList(fs) => Value::Array(
            fs.iter()
                .map(|f| {
                    serde_json::Number::from_f64(*f)
                        .map(Value::Number)
                        .unwrap_or(Value::Null)
                })
                .collect(),
        ),
        Out::Counts(cs) => Value::Object(
            cs.iter()
                .map(|(k, c)| (k.clone(), Value::from(*c)))
                .collect(),
        ),
        Out::Buckets(bs) => {
            Value::Object(bs.iter().map(|(k, o)| (k.clone(), out_json(o))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use chronoflow_config::TimeUnit;
    use proptest::prelude::*;

    use super::*;
    use crate::aggregate::out_kind;

    const DAY: i64 = 86_400_000;

    fn aggregation(operation: Operation, windows: &[Window], k: Option<u32>) -> Aggregation {
        Aggregation {
            input_column: "x".to_owned(),
            operation,
            arg_map: Default::default(),
            windows: windows.to_vec(),
            buckets: vec![],
            k,
            percentiles: vec![],
        }
    }

    /// One key's event rows: `(ts, days late, value)`, the value an int, a float or null.
    fn event_rows() -> impl Strategy<Value = Vec<(Option<i64>, i64, Option<Val>)>> {
        let value = prop_oneof![
            3 => (0i64..4).prop_map(|v| Some(Val::Int(v))),
            1 => (0i64..4).prop_map(|v| Some(Val::Float(v as f64 * 0.1))),
            // Negative zero: the float sums must start where `f64`'s `Sum` does.
            1 => Just(Some(Val::Float(-0.0))),
            1 => Just(None),
        ];
        // Coarse times (an hour apart at most 4 days) so rows tie with each other and with
        // window bounds.
        let ts = prop_oneof![9 => (0i64..96).prop_map(|h| Some(h * 3_600_000)), 1 => Just(None)];
        proptest::collection::vec((ts, 0i64..2, value), 0..40)
    }

    proptest! {
        /// COUNT, SUM, AVERAGE and LAST_K over event rows are read in place from the window's
        /// run of rows (the fast path); every row examined with rule 1 (the path entity rows
        /// take) must give the very same values, floats to the bit.
        #[test]
        fn event_rows_read_in_place_give_what_every_row_examined_gives(
            rows in event_rows(),
            end_hour in 0i64..110,
            inclusive in any::<bool>(),
            k in 1u32..5,
        ) {
            let day0 = PartitionDate::parse("2024-01-01").unwrap();
            let mut data = KeyedRows {
                inputs: vec![Vec::new()],
                all_events: true,
                ..KeyedRows::default()
            };
            // Stored in time order (rows without time first), as the index keeps a key's rows.
            let mut rows = rows;
            rows.sort_by_key(|(ts, _, _)| *ts);
            for (ts, late, v) in &rows {
                let day = ts.map_or(0, |t| t.div_euclid(DAY));
                data.ts.push(ts.map(|t| day0.epoch_millis() + t));
                data.ds.push(day0.add_days(day + late));
                data.is_entity.push(false);
                data.inputs[0].push(v.clone());
            }
            data.row_ids = (0..rows.len() as u32).collect();
            // The same rows by index, not as a run of the index's rows (as streamed rows are).
            let order = data.row_ids.clone();
            let windows = [
                Window { length: 1, unit: TimeUnit::Hours },
                Window { length: 1, unit: TimeUnit::Days },
                Window { length: 2, unit: TimeUnit::Days },
            ];
            let aggs = vec![
                aggregation(Operation::Sum, &windows, None),
                aggregation(Operation::Count, &windows, None),
                aggregation(Operation::Average, &windows, None),
                aggregation(Operation::LastK, &[], Some(k)),
                aggregation(Operation::LastK, &windows[1..2], Some(k)),
                aggregation(Operation::Sum, &[], None),
            ];
            let kinds: Vec<OutKind> = aggs
                .iter()
                .map(|a| out_kind(a.operation, crate::value::ScalarKind::Int).unwrap())
                .collect();
            let features = plan_features(&aggs, &kinds, &vec![0; aggs.len()], &[]);
            let end = day0.epoch_millis() + end_hour * 3_600_000;
            let as_of = AsOf::Time { end, inclusive, a: crate::window::date_of(end) };
            let run = compute_features(&aggs, &features, &data, &data.row_ids, as_of, &mut FeatureScratch::default());
            let by_index = compute_features(&aggs, &features, &data, &order, as_of, &mut FeatureScratch::default());
            data.all_events = false;
            let examined = compute_features(&aggs, &features, &data, &order, as_of, &mut FeatureScratch::default());
            let bits = |o: &[Option<Out>]| format!("{:?}", o.iter().map(|v| match v {
                Some(Out::Float(x)) => format!("F{:x}", x.to_bits()),
                other => format!("{other:?}"),
            }).collect::<Vec<_>>());
            prop_assert_eq!(bits(&run), bits(&examined));
            prop_assert_eq!(bits(&by_index), bits(&examined));
        }

        /// An input held as plain numbers (`KeyedRows::numbers`: all ints or all floats, with
        /// nulls) gives what the same values held as `Option<Val>` give, floats to the bit,
        /// through both the in-place paths and the columns a Join writes.
        #[test]
        fn inputs_held_as_numbers_give_what_vals_give(
            rows in proptest::collection::vec(
                (prop_oneof![9 => (0i64..96).prop_map(|h| Some(h * 3_600_000)), 1 => Just(None)],
                 0i64..2,
                 prop_oneof![4 => (-3i64..4).prop_map(Some), 1 => Just(None)]),
                0..40),
            floats in any::<bool>(),
            end_hour in 0i64..110,
            inclusive in any::<bool>(),
            k in 1u32..5,
            a_shift in -1i64..2,
        ) {
            let day0 = PartitionDate::parse("2024-01-01").unwrap();
            let mut rows = rows;
            rows.sort_by_key(|(ts, _, _)| *ts);
            let mut vals = KeyedRows {
                inputs: vec![Vec::new()],
                all_events: true,
                ..KeyedRows::default()
            };
            let (mut ints, mut fs, mut valid) = (Vec::new(), Vec::new(), Vec::new());
            for (ts, late, v) in &rows {
                let day = ts.map_or(0, |t| t.div_euclid(DAY));
                vals.ts.push(ts.map(|t| day0.epoch_millis() + t));
                vals.ds.push(day0.add_days(day + late));
                vals.is_entity.push(false);
                // Floats with fractions (and -0.0 for 0) so the float sums' order shows.
                let f = |x: i64| if x == 0 { -0.0 } else { x as f64 * 0.1 };
                vals.inputs[0].push(v.map(|x| if floats { Val::Float(f(x)) } else { Val::Int(x) }));
                ints.push(v.unwrap_or_default());
                fs.push(v.map_or(0.0, f));
                valid.push(v.is_some());
            }
            vals.row_ids = (0..rows.len() as u32).collect();
            let mut numbers = KeyedRows {
                ts: vals.ts.clone(),
                ds: vals.ds.clone(),
                is_entity: vals.is_entity.clone(),
                inputs: vec![Vec::new()],
                numbers: vec![Some(if floats {
                    Numbers::Float { values: fs, valid }
                } else {
                    Numbers::Int { values: ints, valid, sums: None }
                })],
                all_events: true,
                row_ids: vals.row_ids.clone(),
                ..KeyedRows::default()
            };
            let windows = [
                Window { length: 1, unit: TimeUnit::Hours },
                Window { length: 1, unit: TimeUnit::Days },
                Window { length: 2, unit: TimeUnit::Days },
            ];
            let aggs = vec![
                aggregation(Operation::Sum, &windows, None),
                aggregation(Operation::Count, &windows, None),
                aggregation(Operation::Average, &windows, None),
                aggregation(Operation::LastK, &[], Some(k)),
                aggregation(Operation::LastK, &windows[1..2], Some(k)),
                aggregation(Operation::Sum, &[], None),
            ];
            let kind = if floats { crate::value::ScalarKind::Float } else { crate::value::ScalarKind::Int };
            let kinds: Vec<OutKind> = aggs.iter().map(|a| out_kind(a.operation, kind).unwrap()).collect();
            let features = plan_features(&aggs, &kinds, &vec![0; aggs.len()], &[]);
            let end = day0.epoch_millis() + end_hour * 3_600_000;
            // Integers get running sums (windows summed by them where the day `a` allows).
            numbers.add_running_sums();
            let a = crate::window::date_of(end).add_days(a_shift);
            let as_of = AsOf::Time { end, inclusive, a };
            let from_vals = compute_features(&aggs, &features, &vals, &vals.row_ids, as_of, &mut FeatureScratch::default());
            let from_numbers = compute_features(&aggs, &features, &numbers, &numbers.row_ids, as_of, &mut FeatureScratch::default());
            let bits = |o: &[Option<Out>]| format!("{:?}", o.iter().map(|v| match v {
                Some(Out::Float(x)) => format!("F{:x}", x.to_bits()),
                other => format!("{other:?}"),
            }).collect::<Vec<_>>());
            prop_assert_eq!(bits(&from_numbers), bits(&from_vals));
            // The columns a Join writes, value by value and with a row repeated (as SNAPSHOT
            // rows of one key and day are), equal the columns built from the values.
            let types: Vec<DataType> = features.iter().map(|f| feature_type(f.kind, false)).collect();
            let mut columns: Vec<FeatureColumn> = features
                .iter()
                .zip(&types)
                .map(|(f, t)| FeatureColumn::new(&f.name, t, 2))
                .collect();
            compute_features_into(&aggs, &features, &numbers, &numbers.row_ids, as_of, &mut FeatureScratch::default(), &mut ColumnsSink { columns: &mut columns, next: 0 });
            for c in columns.iter_mut() {
                c.repeat(0);
            }
            for ((c, t), v) in columns.into_iter().zip(&types).zip(&from_vals) {
                let expected = build_column("x", t, &[v.clone(), v.clone()]).unwrap();
                let got = c.finish().unwrap();
                prop_assert_eq!(got.to_data(), expected.to_data());
            }
        }
    }
}
