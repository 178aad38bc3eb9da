//! Partial aggregates: what an operation needs of some rows to be combined with more rows later
//! (Chronon's intermediate results), for the operations where combining is exact.
//!
//! Finalizing a partial gives exactly what [`compute`] gives over the same rows: most partials
//! keep the few rows that decide the result (the k earliest, the k largest, the distinct values…)
//! and finalize by running `compute` over them. Operations whose result depends on the order
//! floating values are added in (SUM and AVERAGE of floats, VARIANCE, SKEW, KURTOSIS) and
//! APPROX_PERCENTILE have no partial: their rows are kept as rows.

use std::collections::BTreeMap;

use chronoflow_config::{Aggregation, Operation};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Out, compute, rank_counts};
use crate::value::{ScalarKind, Val};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Partial {
    Count(i64),
    /// Integer SUM: the wrapping sum, and how many rows.
    IntSum(i64, i64),
    /// AVERAGE of integers: the sum (exact as a float below 2^53) and how many rows.
    IntMean(f64, i64),
    Min(Val),
    Max(Val),
    /// FIRST, FIRST_K: the k rows first by `(ts, value)`, in that order.
    Earliest(Vec<(i64, Val)>),
    /// LAST, LAST_K: the k rows last by `(ts, value)`, in that order.
    Latest(Vec<(i64, Val)>),
    /// TOP_K, UNIQUE_TOP_K (distinct): the k largest values, ascending.
    Largest(Vec<Val>),
    /// BOTTOM_K: the k smallest values, ascending.
    Smallest(Vec<Val>),
    /// UNIQUE_COUNT and its approximations (computed exactly): the distinct values, sorted.
    Distinct(Vec<Val>),
    /// HISTOGRAM and the frequency sketches (computed exactly): value -> count.
    Counts(BTreeMap<String, i64>),
}

/// Whether `agg` over inputs of `input` has an exact partial aggregate.
pub fn has_partial(agg: &Aggregation, input: ScalarKind) -> bool {
    use Operation::*;
    match agg.operation {
        Sum | Average => input == ScalarKind::Int,
        Variance | Skew | Kurtosis | ApproxPercentile => false,
        _ => true,
    }
}

impl Partial {
    /// The partial of one row (`has_partial` must hold).
    pub fn of(agg: &Aggregation, ts: i64, v: &Val) -> Partial {
        use Operation::*;
        match agg.operation {
            Count => Partial::Count(1),
            Sum => Partial::IntSum(int(v), 1),
            Average => Partial::IntMean(int(v) as f64, 1),
            Min => Partial::Min(v.clone()),
            Max => Partial::Max(v.clone()),
            First | FirstK => Partial::Earliest(vec![(ts, v.clone())]),
            Last | LastK => Partial::Latest(vec![(ts, v.clone())]),
            TopK | UniqueTopK => Partial::Largest(vec![v.clone()]),
            BottomK => Partial::Smallest(vec![v.clone()]),
            UniqueCount | ApproxUniqueCount | BoundedUniqueCount => {
                Partial::Distinct(vec![v.clone()])
            }
            Histogram | ApproxHistogramK | ApproxFrequentK | ApproxHeavyHittersK => {
                Partial::Counts(BTreeMap::from([(v.key_text(), 1)]))
            }
            Variance | Skew | Kurtosis | ApproxPercentile => {
                unreachable!("no partial for {:?}", agg.operation)
            }
        }
    }

    /// Adds `self` to `acc`, or starts it.
    pub fn add_to(self, agg: &Aggregation, acc: &mut Option<Partial>) {
        match acc {
            Some(acc) => acc.merge(agg, self),
            None => *acc = Some(self),
        }
    }

    /// Adds `other` (of the same aggregation) to `self`.
    pub fn merge(&mut self, agg: &Aggregation, other: Partial) {
        let k = keep(agg);
        match (self, other) {
            (Partial::Count(a), Partial::Count(b)) => *a += b,
            (Partial::IntSum(a, n), Partial::IntSum(b, m)) => {
                *a = a.wrapping_add(b);
                *n += m;
            }
            (Partial::IntMean(a, n), Partial::IntMean(b, m)) => {
                *a += b;
                *n += m;
            }
            (Partial::Min(a), Partial::Min(b)) => {
                if b < *a {
                    *a = b;
                }
            }
            (Partial::Max(a), Partial::Max(b)) => {
                if b > *a {
                    *a = b;
                }
            }
            (Partial::Earliest(a), Partial::Earliest(b)) => {
                a.extend(b);
                a.sort();
                a.truncate(k);
            }
            (Partial::Latest(a), Partial::Latest(b)) => {
                a.extend(b);
                a.sort();
                let extra = a.len().saturating_sub(k);
                a.drain(..extra);
            }
            (Partial::Largest(a), Partial::Largest(b)) => {
                a.extend(b);
                a.sort();
                if agg.operation == Operation::UniqueTopK {
                    a.dedup();
                }
                let extra = a.len().saturating_sub(k);
                a.drain(..extra);
            }
            (Partial::Smallest(a), Partial::Smallest(b)) => {
                a.extend(b);
                a.sort();
                a.truncate(k);
            }
            (Partial::Distinct(a), Partial::Distinct(b)) => {
                a.extend(b);
                a.sort();
                a.dedup();
            }
            (Partial::Counts(a), Partial::Counts(b)) => {
                for (key, n) in b {
                    *a.entry(key).or_default() += n;
                }
            }
            (a, b) => unreachable!("partials of one aggregation: {a:?} and {b:?}"),
        }
    }

    /// The finalized value: what `compute` gives over the rows this partial was made of.
    pub fn finalize(&self, agg: &Aggregation) -> Option<Out> {
        let rows = |vals: &mut dyn Iterator<Item = &Val>| -> Option<Out> {
            let rows: Vec<(i64, &Val)> = vals.map(|v| (0, v)).collect();
            compute(agg, &rows)
        };
        match self {
            Partial::Count(n) => Some(Out::Int(*n)),
            Partial::IntSum(s, _) => Some(Out::Int(*s)),
            Partial::IntMean(s, n) => Some(Out::Float(s / *n as f64)).filter(finite),
            Partial::Min(v) | Partial::Max(v) => rows(&mut std::iter::once(v)),
            Partial::Earliest(r) | Partial::Latest(r) => {
                let r: Vec<(i64, &Val)> = r.iter().map(|(t, v)| (*t, v)).collect();
                compute(agg, &r)
            }
            Partial::Largest(v) | Partial::Smallest(v) | Partial::Distinct(v) => {
                rows(&mut v.iter())
            }
            Partial::Counts(c) => Some(Out::Counts(rank_counts(
                c.iter().map(|(k, n)| (k.clone(), *n)).collect(),
                agg.k.unwrap_or(0) as usize,
            ))),
        }
    }
}

fn finite(o: &Out) -> bool {
    !matches!(o, Out::Float(x) if !x.is_finite())
}

fn int(v: &Val) -> i64 {
    match v {
        Val::Int(i) => *i,
        other => unreachable!("integer partials take integers, got {other:?}"),
    }
}

/// How many rows a k-operation's partial keeps (FIRST and LAST: one).
fn keep(agg: &Aggregation) -> usize {
    match agg.operation {
        Operation::First | Operation::Last => 1,
        _ => agg.k.unwrap_or(0) as usize,
    }
}

/// Folds rows into a partial (the first row starts it).
pub fn fold<'a>(
    agg: &Aggregation,
    partial: &mut Option<Partial>,
    rows: impl IntoIterator<Item = (i64, &'a Val)>,
) {
    for (ts, v) in rows {
        Partial::of(agg, ts, v).add_to(agg, partial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn agg(operation: Operation, k: Option<u32>) -> Aggregation {
        Aggregation {
            input_column: "x".to_owned(),
            operation,
            arg_map: Default::default(),
            windows: vec![],
            buckets: vec![],
            k,
            percentiles: vec![],
        }
    }

    const OPS: [Operation; 15] = [
        Operation::Count,
        Operation::Sum,
        Operation::Average,
        Operation::Min,
        Operation::Max,
        Operation::First,
        Operation::Last,
        Operation::FirstK,
        Operation::LastK,
        Operation::TopK,
        Operation::BottomK,
        Operation::UniqueTopK,
        Operation::UniqueCount,
        Operation::BoundedUniqueCount,
        Operation::Histogram,
    ];

    proptest! {
        /// Split anywhere, folded, merged in any order: the same as `compute` over all the rows.
        #[test]
        fn partials_finalize_to_what_compute_gives(
            rows in prop::collection::vec((0i64..20, -5i64..5), 1..40),
            split in 0usize..40,
            k in 1u32..5,
            op in 0usize..OPS.len(),
        ) {
            let agg = agg(OPS[op], Some(k));
            let vals: Vec<(i64, Val)> = rows.iter().map(|(t, v)| (*t, Val::Int(*v))).collect();
            let mut sorted: Vec<(i64, &Val)> = vals.iter().map(|(t, v)| (*t, v)).collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
            let expected = compute(&agg, &sorted);

            let split = split.min(vals.len());
            let (mut left, mut right) = (None, None);
            fold(&agg, &mut left, vals[..split].iter().map(|(t, v)| (*t, v)));
            fold(&agg, &mut right, vals[split..].iter().map(|(t, v)| (*t, v)));
            // Merge the later part first: order must not matter.
            let merged = match (right, left) {
                (Some(mut r), Some(l)) => { r.merge(&agg, l); Some(r) }
                (r, l) => r.or(l),
            };
            prop_assert_eq!(merged.and_then(|p| p.finalize(&agg)), expected);
        }
    }
}
