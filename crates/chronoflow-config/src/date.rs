//! Partition dates (`ds`): UTC days written `yyyy-MM-dd`.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One daily partition, `yyyy-MM-dd`. All date math is in whole UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionDate(NaiveDate);

/// Days from 0001-01-01 (day 1 of the common era, as chrono counts) to 1970-01-01.
const EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// A `ds` string that is not a valid `yyyy-MM-dd` date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid partition date {0:?}: expected yyyy-MM-dd")]
pub struct InvalidDate(pub String);

impl PartitionDate {
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        NaiveDate::from_ymd_opt(year, month, day).map(PartitionDate)
    }

    /// Parses exactly `yyyy-MM-dd` (four-digit year, two-digit month and day).
    pub fn parse(s: &str) -> Result<Self, InvalidDate> {
        let b = s.as_bytes();
        let well_formed = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !well_formed {
            return Err(InvalidDate(s.to_owned()));
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(PartitionDate)
            .map_err(|_| InvalidDate(s.to_owned()))
    }

    /// The date `days` later (earlier when negative); `None` past the supported calendar.
    pub fn checked_add_days(self, days: i64) -> Option<Self> {
        self.0
            .checked_add_signed(chrono::TimeDelta::try_days(days)?)
            .map(PartitionDate)
    }

    /// The date `days` later, saturating at the ends of the calendar.
    pub fn add_days(self, days: i64) -> Self {
        self.checked_add_days(days).unwrap_or(if days < 0 {
            PartitionDate(NaiveDate::MIN)
        } else {
            PartitionDate(NaiveDate::MAX)
        })
    }

    /// The date `days` days after 1970-01-01, saturating at the ends of the calendar. Direct
    /// (the engine asks it per row and window), where `add_days` from 1970 walks the years.
    pub fn from_epoch_days(days: i64) -> Self {
        i32::try_from(days.saturating_add(EPOCH_DAYS_FROM_CE))
            .ok()
            .and_then(NaiveDate::from_num_days_from_ce_opt)
            .map_or(
                if days < 0 {
                    PartitionDate(NaiveDate::MIN)
                } else {
                    PartitionDate(NaiveDate::MAX)
                },
                PartitionDate,
            )
    }

    /// Days since 1970-01-01 (negative before it).
    pub fn epoch_days(self) -> i64 {
        i64::from(self.0.num_days_from_ce()) - EPOCH_DAYS_FROM_CE
    }

    /// Whole days from `self` to `other` (positive when `other` is later).
    pub fn days_until(self, other: PartitionDate) -> i64 {
        (other.0 - self.0).num_days()
    }

    /// Milliseconds since the epoch of this day's UTC midnight.
    pub fn epoch_millis(self) -> i64 {
        self.epoch_days() * 86_400_000
    }

    pub fn naive(self) -> NaiveDate {
        self.0
    }

    pub fn year(self) -> i32 {
        self.0.year()
    }
}

impl fmt::Display for PartitionDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

impl FromStr for PartitionDate {
    type Err = InvalidDate;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PartitionDate::parse(s)
    }
}

impl Serialize for PartitionDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PartitionDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PartitionDate::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_the_canonical_form() {
        assert_eq!(
            PartitionDate::parse("2023-11-30").unwrap().to_string(),
            "2023-11-30"
        );
        for bad in [
            "2023-11-3",
            "2023/11/30",
            "20231130",
            "2023-02-30",
            "+2023-11-30",
            "2023-11-30 ",
            "",
        ] {
            assert!(
                PartitionDate::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn day_arithmetic_crosses_months_and_leap_days() {
        let d = PartitionDate::parse("2024-02-28").unwrap();
        assert_eq!(d.add_days(1).to_string(), "2024-02-29");
        assert_eq!(d.add_days(2).to_string(), "2024-03-01");
        assert_eq!(d.add_days(-59).to_string(), "2023-12-31");
        assert_eq!(d.days_until(d.add_days(30)), 30);
    }

    #[test]
    fn huge_offsets_saturate_instead_of_panicking() {
        let d = PartitionDate::parse("2024-02-28").unwrap();
        assert!(d.checked_add_days(i64::MAX).is_none());
        assert!(d.add_days(i64::MIN) < d);
    }

    #[test]
    fn epoch_days_agree_with_day_arithmetic_from_1970() {
        let epoch = PartitionDate::from_ymd(1970, 1, 1).unwrap();
        for days in [-800_000, -1, 0, 1, 59, 365, 19_723, 2_932_896, 5_000_000] {
            let d = PartitionDate::from_epoch_days(days);
            assert_eq!(d, epoch.add_days(days), "{days}");
            assert_eq!(d.epoch_days(), days, "{days}");
            assert_eq!(
                d.epoch_millis(),
                d.naive()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc()
                    .timestamp_millis()
            );
        }
        assert_eq!(
            PartitionDate::from_epoch_days(i64::MIN),
            epoch.add_days(i64::MIN)
        );
        assert_eq!(
            PartitionDate::from_epoch_days(i64::MAX),
            epoch.add_days(i64::MAX)
        );
    }

    #[test]
    fn epoch_millis_is_utc_midnight() {
        assert_eq!(
            PartitionDate::parse("1970-01-02").unwrap().epoch_millis(),
            86_400_000
        );
    }
}
