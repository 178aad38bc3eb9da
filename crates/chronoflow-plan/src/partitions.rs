//! Partition range math for the scheduler and the engine: which input partitions a job reads
//! for a range of `ds`, which output partitions are missing, and how to cut them into steps.
//!
//! Input ranges are nominal: they assume a left row's `ts` falls on its own `ds` (the engine
//! computes exact bounds from the data). They follow SPEC §4.2 rule 1: a windowed aggregation
//! as of `a` reads partitions `date(epoch(a) - 1 day - W) ..= a`.

use std::collections::BTreeSet;

use chronoflow_config::{Config, GroupBy, Join, LoadedConfig, PartitionDate, Query, Source};
use serde::Serialize;

/// An inclusive range of partitions, `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PartitionRange {
    pub start: PartitionDate,
    pub end: PartitionDate,
}

/// The most days one command or request covers unless told otherwise (`run
/// --allow-large-range`): a mistyped year would otherwise write thousands of empty partitions
/// or queue thousands of runs. The REST API's backfills stop at this many runs.
pub const MAX_RANGE_DAYS: i64 = 10_000;

/// The years a date given on a command line or in a request may have. [`PartitionDate`] reads
/// any four-digit year; `0001` or `9999` there is a typo or a sentinel, not a partition to compute.
pub const SANE_YEARS: std::ops::RangeInclusive<i32> = 1900..=2999;

/// A range whose end is before its start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("empty partition range: end {end} is before start {start}")]
pub struct EmptyRange {
    pub start: PartitionDate,
    pub end: PartitionDate,
}

impl PartitionRange {
    pub fn new(start: PartitionDate, end: PartitionDate) -> Result<Self, EmptyRange> {
        if end < start {
            return Err(EmptyRange { start, end });
        }
        Ok(PartitionRange { start, end })
    }

    pub fn single(ds: PartitionDate) -> Self {
        PartitionRange { start: ds, end: ds }
    }

    /// Number of partitions in the range.
    pub fn len(&self) -> i64 {
        self.start.days_until(self.end) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, ds: PartitionDate) -> bool {
        self.start <= ds && ds <= self.end
    }

    /// Every partition, in order.
    pub fn dates(&self) -> impl Iterator<Item = PartitionDate> + use<> {
        let start = self.start;
        (0..self.len()).map(move |i| start.add_days(i))
    }
}

impl std::fmt::Display for PartitionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}..={}", self.start, self.end)
        }
    }
}

/// The partitions of `range` that are not in `existing`, in order.
pub fn missing_partitions(
    range: PartitionRange,
    existing: &BTreeSet<PartitionDate>,
) -> Vec<PartitionDate> {
    range.dates().filter(|d| !existing.contains(d)).collect()
}

/// Cuts sorted dates into ranges of consecutive days, each at most `step_days` long.
/// `step_days = 0` is treated as 1.
pub fn steps(dates: &[PartitionDate], step_days: u32) -> Vec<PartitionRange> {
    let step = i64::from(step_days.max(1));
    let mut out: Vec<PartitionRange> = Vec::new();
    for &d in dates {
        match out.last_mut() {
            Some(r) if r.end.add_days(1) == d && r.len() < step => r.end = d,
            _ => out.push(PartitionRange::single(d)),
        }
    }
    out
}

/// The missing output partitions of `range`, cut into steps: what a backfill must run.
pub fn backfill_steps(
    range: PartitionRange,
    existing: &BTreeSet<PartitionDate>,
    step_days: u32,
) -> Vec<PartitionRange> {
    steps(&missing_partitions(range, existing), step_days)
}

/// A table read by a job over a range of partitions; `start: None` reaches back to the
/// beginning of the table (unwindowed aggregations).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TableRead {
    pub table: String,
    pub start: Option<PartitionDate>,
    pub end: PartitionDate,
}

/// The partitions a backfill of `range` reads, per table (merged per table, sorted).
pub fn backfill_reads(loaded: &LoadedConfig, range: PartitionRange) -> Vec<TableRead> {
    let mut reads = Vec::new();
    match &loaded.config {
        Config::GroupBy(gb) => {
            for s in &gb.sources {
                group_by_source_reads(gb, s, range, 0, &mut reads);
            }
        }
        Config::Join(join) => join_reads(join, range, &mut reads),
        Config::StagingQuery(sq) => {
            for td in &sq.table_dependencies {
                let back =
                    |w: Option<chronoflow_config::Window>| w.map(|w| w.days_ceil()).unwrap_or(0);
                let start = range.start.add_days(-back(td.start_offset));
                let end = range.end.add_days(-back(td.end_offset));
                reads.push(TableRead {
                    table: td.table.table.clone(),
                    start: Some(start.min(end)),
                    end,
                });
            }
        }
    }
    merge(reads)
}

/// Reads of one source of a GroupBy computed as of `a` for every `a` in `range` shifted by
/// `shift` days (a SNAPSHOT part of an event-left Join reads the day before).
fn group_by_source_reads(
    gb: &GroupBy,
    source: &Source,
    range: PartitionRange,
    shift: i64,
    out: &mut Vec<TableRead>,
) {
    let (first, last) = (range.start.add_days(shift), range.end.add_days(shift));
    match source {
        Source::Entities(e) => {
            out.push(clamp(&e.snapshot_table.table, Some(first), last, &e.query));
        }
        Source::Events(e) => {
            let start = gb.lookback_days().map(|days| first.add_days(-days));
            out.push(clamp(&e.table.table, start, last, &e.query));
        }
        Source::JoinSource(js) => {
            let start = gb.lookback_days().map(|days| first.add_days(-days));
            let table = js
                .join
                .metadata
                .output_namespace
                .as_deref()
                .map(|ns| chronoflow_config::naming::output_table(ns, &js.join.metadata.name));
            if let Some(table) = table {
                out.push(clamp(&table, start, last, &js.query));
            }
        }
    }
}

fn join_reads(join: &Join, range: PartitionRange, out: &mut Vec<TableRead>) {
    let event_left = matches!(join.left, Source::Events(_));
    let left_table = match &join.left {
        Source::Events(e) => e.table.table.clone(),
        Source::Entities(e) => e.snapshot_table.table.clone(),
        Source::JoinSource(_) => return,
    };
    out.push(clamp(
        &left_table,
        Some(range.start),
        range.end,
        join.left.query(),
    ));
    for part in &join.join_parts {
        let gb = &part.group_by;
        let temporal = gb.accuracy() == chronoflow_config::Accuracy::Temporal;
        for source in &gb.sources {
            // SNAPSHOT parts of an event left read the snapshot of the day before; so do entity
            // sources of an event left. TEMPORAL events read up to the query time.
            let shift = match (event_left, source) {
                (false, _) => 0,
                (true, Source::Entities(_)) => -1,
                (true, _) if temporal => 0,
                (true, _) => -1,
            };
            group_by_source_reads(gb, source, range, shift, out);
            if let (true, true, Source::Entities(e)) = (event_left, temporal, source)
                && let Some(m) = &e.mutation_table
            {
                out.push(clamp(&m.table, Some(range.start), range.end, &e.query));
            }
        }
    }
}

fn clamp(
    table: &str,
    start: Option<PartitionDate>,
    end: PartitionDate,
    query: &Query,
) -> TableRead {
    let start = match (start, query.start_partition) {
        (Some(s), Some(q)) => Some(s.max(q)),
        (None, q) => q,
        (s, None) => s,
    };
    let end = query.end_partition.map_or(end, |q| end.min(q));
    TableRead {
        table: table.to_owned(),
        start,
        end,
    }
}

fn merge(mut reads: Vec<TableRead>) -> Vec<TableRead> {
    reads.sort();
    let mut out: Vec<TableRead> = Vec::new();
    for r in reads {
        match out.last_mut() {
            Some(last) if last.table == r.table => {
                last.start = match (last.start, r.start) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    _ => None,
                };
                last.end = last.end.max(r.end);
            }
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> PartitionDate {
        PartitionDate::parse(s).unwrap()
    }

    #[test]
    fn missing_partitions_and_steps() {
        let range = PartitionRange::new(d("2023-11-01"), d("2023-11-10")).unwrap();
        let existing: BTreeSet<_> = [d("2023-11-03"), d("2023-11-04"), d("2023-11-08")].into();
        let missing = missing_partitions(range, &existing);
        assert_eq!(missing.len(), 7);
        let s: Vec<String> = backfill_steps(range, &existing, 2)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            s,
            [
                "2023-11-01..=2023-11-02",
                "2023-11-05..=2023-11-06",
                "2023-11-07",
                "2023-11-09..=2023-11-10"
            ]
        );
        // Step size never changes which partitions run, only how they are grouped.
        let one_step: Vec<PartitionDate> = backfill_steps(range, &existing, 100)
            .iter()
            .flat_map(|r| r.dates())
            .collect();
        assert_eq!(one_step, missing);
        assert_eq!(steps(&missing, 0).len(), 7);
    }

    #[test]
    fn empty_ranges_are_rejected() {
        let err = PartitionRange::new(d("2023-11-02"), d("2023-11-01")).unwrap_err();
        assert!(
            err.to_string()
                .contains("2023-11-01 is before start 2023-11-02")
        );
    }
}
