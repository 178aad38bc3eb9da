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
    /// The partial of one row, or why `agg` has none for it (an operation without a partial, or
    /// a value of the wrong type: a row written by another definition).
    pub fn of(agg: &Aggregation, ts: i64, v: &Val) -> Result<Partial, String> {
        use Operation::*;
        Ok(match agg.operation {
            Count => Partial::Count(1),
            Sum => Partial::IntSum(int(v)?, 1),
            Average => Partial::IntMean(int(v)? as f64, 1),
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
                return Err(format!(
                    "{} has no partial aggregate",
                    agg.operation.lower_name()
                ));
            }
        })
    }

    /// Adds `self` to `acc`, or starts it.
    pub fn add_to(self, agg: &Aggregation, acc: &mut Option<Partial>) -> Result<(), String> {
        match acc {
            Some(acc) => acc.merge(agg, self),
            None => {
                self.fits(agg)?;
                *acc = Some(self);
                Ok(())
            }
        }
    }

    /// Whether this is the kind of partial `agg` makes: a stored partial of another operation
    /// (another definition, damaged bytes) is an error rather than a wrong merge.
    pub fn fits(&self, agg: &Aggregation) -> Result<(), String> {
        use Operation::*;
        let fits = match self {
            Partial::Count(_) => agg.operation == Count,
            Partial::IntSum(..) => agg.operation == Sum,
            Partial::IntMean(..) => agg.operation == Average,
            Partial::Min(_) => agg.operation == Min,
            Partial::Max(_) => agg.operation == Max,
            Partial::Earliest(_) => matches!(agg.operation, First | FirstK),
            Partial::Latest(_) => matches!(agg.operation, Last | LastK),
            Partial::Largest(_) => matches!(agg.operation, TopK | UniqueTopK),
            Partial::Smallest(_) => agg.operation == BottomK,
            Partial::Distinct(_) => matches!(
                agg.operation,
                UniqueCount | ApproxUniqueCount | BoundedUniqueCount
            ),
            Partial::Counts(_) => matches!(
                agg.operation,
                Histogram | ApproxHistogramK | ApproxFrequentK | ApproxHeavyHittersK
            ),
        };
        if fits {
            Ok(())
        } else {
            Err(format!(
                "a partial aggregate {} cannot be one of {}",
                self.variant_name(),
                agg.operation.lower_name()
            ))
        }
    }

    fn variant_name(&self) -> &'static str {
        match self {
            Partial::Count(_) => "Count",
            Partial::IntSum(..) => "IntSum",
            Partial::IntMean(..) => "IntMean",
            Partial::Min(_) => "Min",
            Partial::Max(_) => "Max",
            Partial::Earliest(_) => "Earliest",
            Partial::Latest(_) => "Latest",
            Partial::Largest(_) => "Largest",
            Partial::Smallest(_) => "Smallest",
            Partial::Distinct(_) => "Distinct",
            Partial::Counts(_) => "Counts",
        }
    }

    /// The values this partial holds, to check their types.
    pub fn values(&self) -> Box<dyn Iterator<Item = &Val> + '_> {
        match self {
            Partial::Count(_) | Partial::IntSum(..) | Partial::IntMean(..) | Partial::Counts(_) => {
                Box::new(std::iter::empty())
            }
            Partial::Min(v) | Partial::Max(v) => Box::new(std::iter::once(v)),
            Partial::Earliest(r) | Partial::Latest(r) => Box::new(r.iter().map(|(_, v)| v)),
            Partial::Largest(v) | Partial::Smallest(v) | Partial::Distinct(v) => Box::new(v.iter()),
        }
    }

    /// Adds `other` (of the same aggregation) to `self`. Counts saturate: stored counts are
    /// data, and a damaged one must not overflow.
    pub fn merge(&mut self, agg: &Aggregation, other: Partial) -> Result<(), String> {
        let k = keep(agg);
        other.fits(agg)?;
        match (self, other) {
            (Partial::Count(a), Partial::Count(b)) => *a = a.saturating_add(b),
            (Partial::IntSum(a, n), Partial::IntSum(b, m)) => {
                // Wrapping, as `compute` sums integers.
                *a = a.wrapping_add(b);
                *n = n.saturating_add(m);
            }
            (Partial::IntMean(a, n), Partial::IntMean(b, m)) => {
                *a += b;
                *n = n.saturating_add(m);
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
                    let count = a.entry(key).or_default();
                    *count = count.saturating_add(n);
                }
            }
            (a, b) => {
                return Err(format!(
                    "partial aggregates {} and {} cannot be merged",
                    a.variant_name(),
                    b.variant_name()
                ));
            }
        }
        Ok(())
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

fn int(v: &Val) -> Result<i64, String> {
    match v {
        Val::Int(i) => Ok(*i),
        other => Err(format!(
            "integer partials take integers, got {}",
            crate::features::val_json(other)
        )),
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
) -> Result<(), String> {
    for (ts, v) in rows {
        Partial::of(agg, ts, v)?.add_to(agg, partial)?;
    }
    Ok(())
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
            fold(&agg, &mut left, vals[..split].iter().map(|(t, v)| (*t, v))).unwrap();
            fold(&agg, &mut right, vals[split..].iter().map(|(t, v)| (*t, v))).unwrap();
            // Merge the later part first: order must not matter.
            let merged = match (right, left) {
                (Some(mut r), Some(l)) => { r.merge(&agg, l).unwrap(); Some(r) }
                (r, l) => r.or(l),
            };
            prop_assert_eq!(merged.and_then(|p| p.finalize(&agg)), expected);
        }
    }
}
