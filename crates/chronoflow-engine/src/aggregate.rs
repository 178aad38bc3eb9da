//! Chronon's aggregation operations (SPEC §4.4) over the rows a window selects.
//!
//! Every function takes the counted rows of one key and one window, sorted by `(ts, value)`,
//! and returns the finalized value, or `None` when nothing counted (COUNT and SUM included) or
//! the result is not finite. Sketch operations are computed exactly: APPROX_UNIQUE_COUNT is the
//! exact distinct count, APPROX_PERCENTILE the exact percentile at every `n`, and the
//! approximate top-k operations exact frequency rankings — each within any error bound the
//! approximations promise.

use std::collections::HashMap;

use chronoflow_config::{Aggregation, Operation};

use crate::value::{ScalarKind, Val};

/// A finalized aggregate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Out {
    Int(i64),
    Float(f64),
    Scalar(Val),
    List(Vec<Val>),
    FloatList(Vec<f64>),
    /// Sorted by key.
    Counts(Vec<(String, i64)>),
    /// Per bucket value (sorted), the aggregate of that bucket's rows (never buckets again).
    Buckets(#[serde(deserialize_with = "bucket_values")] Vec<(String, Out)>),
}

/// [`Out`] without `Buckets`, in the same order (so the same encoding): what a bucket holds.
/// Decoding buckets through it keeps stored values one level deep, so damaged or hostile bytes
/// cannot nest buckets until the decoder's recursion overflows the stack.
#[derive(serde::Deserialize)]
enum BucketOut {
    Int(i64),
    Float(f64),
    Scalar(Val),
    List(Vec<Val>),
    FloatList(Vec<f64>),
    Counts(Vec<(String, i64)>),
}

fn bucket_values<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, Out)>, D::Error> {
    let buckets: Vec<(String, BucketOut)> = serde::Deserialize::deserialize(d)?;
    Ok(buckets
        .into_iter()
        .map(|(b, o)| {
            let o = match o {
                BucketOut::Int(x) => Out::Int(x),
                BucketOut::Float(x) => Out::Float(x),
                BucketOut::Scalar(x) => Out::Scalar(x),
                BucketOut::List(x) => Out::List(x),
                BucketOut::FloatList(x) => Out::FloatList(x),
                BucketOut::Counts(x) => Out::Counts(x),
            };
            (b, o)
        })
        .collect())
}

/// The Arrow type an operation produces from an input of kind `input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OutKind {
    Int,
    Float,
    /// Same as the input.
    Scalar(ScalarKind),
    /// A list of the input's kind.
    List(ScalarKind),
    FloatList,
    /// A map of string -> count.
    Counts,
}

/// The output kind of `op` over `input`, or why the combination is not allowed.
pub fn out_kind(op: Operation, input: ScalarKind) -> Result<OutKind, String> {
    use Operation::*;
    let numeric = matches!(input, ScalarKind::Int | ScalarKind::Float);
    Ok(match op {
        Count | UniqueCount | ApproxUniqueCount | BoundedUniqueCount => OutKind::Int,
        Sum if input == ScalarKind::Int => OutKind::Int,
        Sum | Average | Variance | Skew | Kurtosis if numeric => OutKind::Float,
        Sum | Average | Variance | Skew | Kurtosis => return Err("a numeric column".to_owned()),
        Min | Max if input == ScalarKind::Bool => {
            return Err("a numeric or string column".to_owned());
        }
        Min | Max | First | Last => OutKind::Scalar(input),
        LastK | FirstK | TopK | BottomK | UniqueTopK => OutKind::List(input),
        ApproxPercentile if numeric => OutKind::FloatList,
        ApproxPercentile => return Err("a numeric column".to_owned()),
        Histogram | ApproxHistogramK | ApproxFrequentK | ApproxHeavyHittersK => OutKind::Counts,
    })
}

/// Computes `agg` over `rows` (sorted by `(ts, value)`, nulls already removed).
pub fn compute(agg: &Aggregation, rows: &[(i64, &Val)]) -> Option<Out> {
    use Operation::*;
    if rows.is_empty() {
        return None;
    }
    let k = agg.k.unwrap_or(0) as usize;
    let values = || rows.iter().map(|(_, v)| *v);
    let floats = || rows.iter().filter_map(|(_, v)| v.as_f64());
    let out = match agg.operation {
        Count => Out::Int(rows.len() as i64),
        Sum => match rows[0].1 {
            Val::Int(_) => Out::Int(values().fold(0i64, |acc, v| match v {
                Val::Int(i) => acc.wrapping_add(*i),
                _ => acc,
            })),
            _ => Out::Float(floats().sum()),
        },
        Average => Out::Float(floats().sum::<f64>() / rows.len() as f64),
        Min => Out::Scalar(values().min()?.clone()),
        Max => Out::Scalar(values().max()?.clone()),
        First => Out::Scalar(rows[0].1.clone()),
        Last => Out::Scalar(rows[rows.len() - 1].1.clone()),
        FirstK => Out::List(values().take(k).cloned().collect()),
        LastK => Out::List(values().rev().take(k).cloned().collect()),
        TopK | BottomK | UniqueTopK => {
            let mut all: Vec<&Val> = values().collect();
            all.sort();
            if agg.operation == UniqueTopK {
                all.dedup();
            }
            if agg.operation != BottomK {
                all.reverse();
            }
            Out::List(all.into_iter().take(k).cloned().collect())
        }
        UniqueCount | ApproxUniqueCount | BoundedUniqueCount => {
            let mut all: Vec<&Val> = values().collect();
            all.sort();
            all.dedup();
            let n = all.len() as i64;
            Out::Int(if agg.operation == BoundedUniqueCount && k > 0 {
                n.min(k as i64)
            } else {
                n
            })
        }
        Variance | Skew | Kurtosis => moments(agg.operation, &floats().collect::<Vec<_>>())?,
        ApproxPercentile => {
            let mut sorted: Vec<f64> = floats().collect();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            if n == 0 {
                // Only non-numeric values (rows of another definition): nothing to rank.
                return None;
            }
            Out::FloatList(
                agg.percentiles
                    .iter()
                    .map(|phi| sorted[((phi * n as f64).floor() as usize).min(n - 1)])
                    .collect(),
            )
        }
        Histogram | ApproxHistogramK | ApproxFrequentK | ApproxHeavyHittersK => {
            let mut counts: HashMap<String, i64> = HashMap::new();
            for v in values() {
                *counts.entry(v.key_text()).or_default() += 1;
            }
            Out::Counts(rank_counts(counts.into_iter().collect(), k))
        }
    };
    match out {
        Out::Float(x) if !x.is_finite() => None,
        Out::Scalar(Val::Float(x)) if !x.is_finite() => None,
        other => Some(other),
    }
}

/// A histogram's entries sorted by key; with `k > 0` only the k most frequent (ties: key ascending).
pub(crate) fn rank_counts(mut ranked: Vec<(String, i64)>, k: usize) -> Vec<(String, i64)> {
    if k > 0 {
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(k);
    }
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    ranked
}

/// Population variance, skew (`sqrt(n) m3 / m2^1.5`, n >= 3) and excess kurtosis
/// (`n m4 / m2^2 - 3`, n >= 4) from central moments computed in two passes.
fn moments(op: Operation, xs: &[f64]) -> Option<Out> {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for x in xs {
        let d = x - mean;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    let v = match op {
        Operation::Variance => m2 / n,
        Operation::Skew if xs.len() < 3 || m2 == 0.0 => return None,
        Operation::Skew => n.sqrt() * m3 / m2.powf(1.5),
        Operation::Kurtosis if xs.len() < 4 || m2 == 0.0 => return None,
        _ => n * m4 / (m2 * m2) - 3.0,
    };
    Some(Out::Float(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(operation: Operation, k: Option<u32>) -> Aggregation {
        Aggregation {
            input_column: "x".to_owned(),
            operation,
            arg_map: Default::default(),
            windows: vec![],
            buckets: vec![],
            k,
            percentiles: if operation == Operation::ApproxPercentile {
                vec![0.0, 0.5, 0.99]
            } else {
                vec![]
            },
        }
    }

    fn run(op: Operation, k: Option<u32>, xs: &[(i64, Val)]) -> Option<Out> {
        let mut rows: Vec<(i64, &Val)> = xs.iter().map(|(t, v)| (*t, v)).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        compute(&agg(op, k), &rows)
    }

    fn ints(xs: &[(i64, i64)]) -> Vec<(i64, Val)> {
        xs.iter().map(|(t, v)| (*t, Val::Int(*v))).collect()
    }

    #[test]
    fn nothing_counted_is_null_even_for_count_and_sum() {
        assert_eq!(run(Operation::Count, None, &[]), None);
        assert_eq!(run(Operation::Sum, None, &[]), None);
    }

    #[test]
    fn sums_counts_averages() {
        let xs = ints(&[(1, 3), (2, 4), (3, -1)]);
        assert_eq!(run(Operation::Sum, None, &xs), Some(Out::Int(6)));
        assert_eq!(run(Operation::Count, None, &xs), Some(Out::Int(3)));
        assert_eq!(run(Operation::Average, None, &xs), Some(Out::Float(2.0)));
        let fl = vec![(1, Val::Float(0.5)), (2, Val::Float(0.25))];
        assert_eq!(run(Operation::Sum, None, &fl), Some(Out::Float(0.75)));
        assert_eq!(
            run(Operation::Sum, None, &[(1, Val::Float(f64::INFINITY))]),
            None
        );
    }

    #[test]
    fn first_last_and_k_operations_order_by_ts_then_value() {
        // Two rows at ts 5: the tie is broken by value.
        let xs = ints(&[(5, 9), (1, 7), (5, 2), (3, 4)]);
        assert_eq!(
            run(Operation::First, None, &xs),
            Some(Out::Scalar(Val::Int(7)))
        );
        assert_eq!(
            run(Operation::Last, None, &xs),
            Some(Out::Scalar(Val::Int(9)))
        );
        assert_eq!(
            run(Operation::LastK, Some(3), &xs),
            Some(Out::List(vec![Val::Int(9), Val::Int(2), Val::Int(4)]))
        );
        assert_eq!(
            run(Operation::FirstK, Some(2), &xs),
            Some(Out::List(vec![Val::Int(7), Val::Int(4)]))
        );
        assert_eq!(
            run(Operation::TopK, Some(2), &xs),
            Some(Out::List(vec![Val::Int(9), Val::Int(7)]))
        );
        assert_eq!(
            run(Operation::BottomK, Some(5), &xs),
            Some(Out::List(vec![
                Val::Int(2),
                Val::Int(4),
                Val::Int(7),
                Val::Int(9)
            ]))
        );
        assert_eq!(
            run(Operation::Min, None, &xs),
            Some(Out::Scalar(Val::Int(2)))
        );
        assert_eq!(
            run(Operation::Max, None, &xs),
            Some(Out::Scalar(Val::Int(9)))
        );
    }

    #[test]
    fn distinct_counts_and_histograms() {
        let s = |t, x: &str| (t, Val::Str(x.into()));
        let xs = vec![
            s(1, "b"),
            s(2, "a"),
            s(3, "b"),
            s(4, "c"),
            s(5, "c"),
            s(6, "b"),
        ];
        assert_eq!(run(Operation::UniqueCount, None, &xs), Some(Out::Int(3)));
        assert_eq!(
            run(Operation::BoundedUniqueCount, Some(2), &xs),
            Some(Out::Int(2))
        );
        assert_eq!(
            run(Operation::Histogram, None, &xs),
            Some(Out::Counts(vec![
                ("a".into(), 1),
                ("b".into(), 3),
                ("c".into(), 2)
            ]))
        );
        // k keeps the most frequent; ties by key ascending.
        let ys = vec![s(1, "z"), s(2, "y"), s(3, "x"), s(4, "x")];
        assert_eq!(
            run(Operation::Histogram, Some(2), &ys),
            Some(Out::Counts(vec![("x".into(), 2), ("y".into(), 1)]))
        );
        assert_eq!(
            run(Operation::UniqueTopK, Some(2), &xs),
            Some(Out::List(vec![Val::Str("c".into()), Val::Str("b".into())]))
        );
    }

    #[test]
    fn moments_follow_the_spec() {
        assert_eq!(
            run(Operation::Variance, None, &ints(&[(1, 7)])),
            Some(Out::Float(0.0))
        );
        // 1, 2, 3, 10: mean 4, deviations -3 -2 -1 6: m2 = 50, m3 = 180, m4 = 1394.
        let xs = ints(&[(1, 1), (2, 2), (3, 3), (4, 10)]);
        let close = |a: Option<Out>, b: f64| match a {
            Some(Out::Float(x)) => assert!(((x - b) / b).abs() < 1e-9, "{x} vs {b}"),
            other => panic!("{other:?}"),
        };
        close(run(Operation::Variance, None, &xs), 12.5);
        close(
            run(Operation::Skew, None, &xs),
            2.0 * 180.0 / 50f64.powf(1.5),
        );
        close(
            run(Operation::Kurtosis, None, &xs),
            4.0 * 1394.0 / 2500.0 - 3.0,
        );
        assert_eq!(run(Operation::Skew, None, &ints(&[(1, 1), (2, 2)])), None);
        assert_eq!(
            run(
                Operation::Kurtosis,
                None,
                &ints(&[(1, 5), (2, 5), (3, 5), (4, 5)])
            ),
            None
        );
    }

    #[test]
    fn percentiles_index_floor_phi_n_clamped() {
        let xs = ints(&[(1, 40), (2, 10), (3, 30), (4, 20)]);
        // sorted 10 20 30 40; n = 4: phi 0 -> 0, 0.5 -> 2, 0.99 -> 3.
        assert_eq!(
            run(Operation::ApproxPercentile, Some(128), &xs),
            Some(Out::FloatList(vec![10.0, 30.0, 40.0]))
        );
    }

    #[test]
    fn type_rules() {
        assert_eq!(out_kind(Operation::Sum, ScalarKind::Int), Ok(OutKind::Int));
        assert_eq!(
            out_kind(Operation::Sum, ScalarKind::Float),
            Ok(OutKind::Float)
        );
        assert!(out_kind(Operation::Sum, ScalarKind::Str).is_err());
        assert_eq!(
            out_kind(Operation::Max, ScalarKind::Str),
            Ok(OutKind::Scalar(ScalarKind::Str))
        );
        assert_eq!(
            out_kind(Operation::LastK, ScalarKind::Str),
            Ok(OutKind::List(ScalarKind::Str))
        );
    }
}
