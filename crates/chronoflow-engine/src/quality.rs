//! Flags partitions whose row count departs from the recent ones: a pure function over row counts,
//! so the web UI, the CLI and tests share one rule.

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// The ratio used unless the user picks another: half or double the recent median is flagged.
pub const DEFAULT_QUALITY_RATIO: f64 = 0.5;
/// How many earlier partitions the median looks at.
const WINDOW: usize = 7;
/// Fewer earlier partitions than this give no median worth comparing to.
const MIN_HISTORY: usize = 3;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RowFlag {
    /// Fewer rows than `ratio` × the median.
    Drop,
    /// More rows than the median / `ratio`.
    Jump,
}

/// The verdict on one partition's row count.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct RowCountCheck {
    pub flag: Option<RowFlag>,
    /// The median of the earlier partitions compared to, `None` when there were too few.
    pub median: Option<f64>,
}

/// Checks each partition's row count against the median of up to 7 earlier partitions (`rows` in
/// date order; the result is aligned with it). Partitions, not days, are counted: a missing day is
/// no partition, not zero rows. `None` (a row count that is not known, as for manifests older
/// than statistics) is neither checked nor part of a later median. No flag with fewer than 3
/// earlier known counts; a count exactly at a threshold is not flagged. `ratio` must be in (0, 1].
pub fn flag_row_counts(rows: &[Option<u64>], ratio: f64) -> Result<Vec<RowCountCheck>> {
    if !(ratio > 0.0 && ratio <= 1.0) {
        return Err(EngineError::Input {
            file: "quality ratio".to_owned(),
            message: format!("{ratio} is not in (0, 1]"),
        });
    }
    let mut known: Vec<u64> = Vec::new();
    let mut out = Vec::with_capacity(rows.len());
    for &count in rows {
        let Some(count) = count else {
            out.push(RowCountCheck {
                flag: None,
                median: None,
            });
            continue;
        };
        let median = (known.len() >= MIN_HISTORY)
            .then(|| median(&known[known.len().saturating_sub(WINDOW)..]));
        let flag = median.and_then(|m| flag(count as f64, m, ratio));
        out.push(RowCountCheck { flag, median });
        known.push(count);
    }
    Ok(out)
}

/// Compares by quotients rather than products so that a count exactly at the threshold stays
/// unflagged despite rounding (3 / 10 is the double 0.3; 10 × 0.3 is not).
fn flag(count: f64, median: f64, ratio: f64) -> Option<RowFlag> {
    if median == 0.0 {
        // Nothing can drop below zero; any rows after empty partitions are a jump.
        return (count > 0.0).then_some(RowFlag::Jump);
    }
    if count / median < ratio {
        Some(RowFlag::Drop)
    } else if count > 0.0 && median / count < ratio {
        Some(RowFlag::Jump)
    } else {
        None
    }
}

fn median(values: &[u64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid] as f64
    } else {
        (sorted[mid - 1] as f64 + sorted[mid] as f64) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(rows: &[Option<u64>], ratio: f64) -> Vec<Option<RowFlag>> {
        flag_row_counts(rows, ratio)
            .unwrap()
            .into_iter()
            .map(|c| c.flag)
            .collect()
    }

    fn known(rows: &[u64]) -> Vec<Option<u64>> {
        rows.iter().copied().map(Some).collect()
    }

    #[test]
    fn no_flag_before_three_earlier_partitions() {
        let checks = flag_row_counts(&known(&[100, 1, 1000]), 0.5).unwrap();
        assert!(
            checks
                .iter()
                .all(|c| c.flag.is_none() && c.median.is_none())
        );
        let checks = flag_row_counts(&known(&[100, 100, 100, 1]), 0.5).unwrap();
        assert_eq!(checks[3].flag, Some(RowFlag::Drop));
        assert_eq!(checks[3].median, Some(100.0));
    }

    #[test]
    fn drops_and_jumps_against_the_median_of_up_to_seven_earlier() {
        // The median of the 7 before the last ignores the 1 and the 5 at the start.
        let rows = known(&[1, 5, 100, 100, 100, 100, 100, 100, 100, 49, 201]);
        let checks = flag_row_counts(&rows, 0.5).unwrap();
        assert_eq!(checks[9].flag, Some(RowFlag::Drop));
        assert_eq!(checks[9].median, Some(100.0));
        assert_eq!(checks[10].flag, Some(RowFlag::Jump));
        assert_eq!(checks[10].median, Some(100.0));
        // An even number of earlier partitions: the mean of the middle two.
        let checks = flag_row_counts(&known(&[10, 20, 30, 40, 25]), 0.5).unwrap();
        assert_eq!(checks[4].median, Some(25.0));
        assert_eq!(checks[4].flag, None);
    }

    #[test]
    fn exactly_at_the_threshold_is_not_flagged() {
        assert_eq!(flags(&known(&[100, 100, 100, 50]), 0.5)[3], None);
        assert_eq!(flags(&known(&[100, 100, 100, 200]), 0.5)[3], None);
        // 10 × 0.3 rounds above 3; the threshold still holds 3.
        assert_eq!(flags(&known(&[10, 10, 10, 3]), 0.3)[3], None);
        assert_eq!(flags(&known(&[3, 3, 3, 10]), 0.3)[3], None);
        assert_eq!(flags(&known(&[10, 10, 10, 2]), 0.3)[3], Some(RowFlag::Drop));
        // Ratio 1: any change is flagged, equality is not.
        assert_eq!(
            flags(&known(&[5, 5, 5, 5, 4, 6]), 1.0)[3..],
            [None, Some(RowFlag::Drop), Some(RowFlag::Jump)]
        );
    }

    #[test]
    fn zeros() {
        // An empty partition after normal ones is a drop; rows after empty ones are a jump.
        assert_eq!(flags(&known(&[7, 7, 7, 0]), 0.5)[3], Some(RowFlag::Drop));
        assert_eq!(
            flags(&known(&[0, 0, 0, 0, 1]), 0.5)[3..],
            [None, Some(RowFlag::Jump)]
        );
        let checks = flag_row_counts(&known(&[0, 0, 0, 0]), 0.5).unwrap();
        assert_eq!(checks[3].median, Some(0.0));
    }

    #[test]
    fn unknown_counts_are_skipped_not_zero() {
        // Gaps (no known count) neither count as history nor get flagged.
        let rows = [Some(100), None, Some(100), None, Some(100), None, Some(10)];
        let checks = flag_row_counts(&rows, 0.5).unwrap();
        assert_eq!(
            checks[5],
            RowCountCheck {
                flag: None,
                median: None
            }
        );
        assert_eq!(checks[6].flag, Some(RowFlag::Drop));
        assert_eq!(checks[6].median, Some(100.0));
        assert_eq!(checks[4].median, None, "only two earlier known counts");
        assert!(flag_row_counts(&[], 0.5).unwrap().is_empty());
    }

    #[test]
    fn the_ratio_must_be_in_zero_one() {
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            let err = flag_row_counts(&known(&[1]), bad).unwrap_err();
            assert!(err.to_string().contains("quality ratio"), "{err}");
        }
        assert!(flag_row_counts(&known(&[1]), 1.0).is_ok());
    }
}
