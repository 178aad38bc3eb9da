//! Time rules of SPEC §4.1–4.2: tail hops, window starts, and the oldest partition a
//! computation as of a date may read.

use chronoflow_config::{PartitionDate, Window};

use crate::error::{EngineError, Result};

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// The times a caller may ask about (a fetch's `at`): from 1970-01-01 to the end of 9999-12-31,
/// the span of the partition dates (`yyyy-MM-dd`) the warehouse can name. Window arithmetic on
/// them never comes near `i64`'s ends.
pub const MIN_TIME: i64 = 0;
pub const MAX_TIME: i64 = 253_402_300_799_999;

/// `millis` if it is within [`MIN_TIME`]..=[`MAX_TIME`], else an error naming it as `what`.
pub fn check_time(what: &str, millis: i64) -> Result<i64> {
    if (MIN_TIME..=MAX_TIME).contains(&millis) {
        Ok(millis)
    } else {
        Err(EngineError::TimeOutOfRange {
            what: what.to_owned(),
            millis,
        })
    }
}

/// The resolution a window's start is rounded down to: 1 day for windows of 12 days or more,
/// 1 hour for 12 hours or more, else 5 minutes.
pub fn tail_hop(window_millis: i64) -> i64 {
    if window_millis >= 12 * DAY {
        DAY
    } else if window_millis >= 12 * HOUR {
        HOUR
    } else {
        5 * MINUTE
    }
}

/// `floor(t / h) * h`, flooring toward negative infinity; `h` must be positive (a tail hop).
/// Saturates at `i64::MIN`: a time that far back rounds to the beginning of time instead of
/// overflowing (callers reject such times from users with [`check_time`]).
pub fn round_down(t: i64, h: i64) -> i64 {
    t.div_euclid(h).saturating_mul(h)
}

/// The first millisecond a window ending at `end` covers: `round(end - W, tailHop(W))`.
pub fn window_start(end: i64, window: Window) -> i64 {
    round_down(
        end.saturating_sub(window.millis()),
        tail_hop(window.millis()),
    )
}

/// The oldest partition a windowed computation as of `a` reads: `date(epoch(a) - 1 day - W)`.
pub fn oldest_partition(a: PartitionDate, window: Window) -> PartitionDate {
    a.add_days(-1 - window.days_ceil())
}

/// The end (exclusive) of day `d`: `epoch(d + 1)`.
pub fn end_of_day(d: PartitionDate) -> i64 {
    (d.epoch_days() + 1) * DAY
}

/// The UTC date of epoch millis (saturating at the ends of the calendar).
pub fn date_of(millis: i64) -> PartitionDate {
    date_of_day(millis.div_euclid(DAY))
}

/// The date `day` days after 1970-01-01 (saturating at the ends of the calendar).
pub fn date_of_day(day: i64) -> PartitionDate {
    PartitionDate::from_epoch_days(day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronoflow_config::TimeUnit;

    fn w(length: u32, unit: TimeUnit) -> Window {
        Window { length, unit }
    }

    #[test]
    fn tail_hops_by_window_size() {
        assert_eq!(tail_hop(w(30, TimeUnit::Days).millis()), DAY);
        assert_eq!(tail_hop(w(12, TimeUnit::Days).millis()), DAY);
        assert_eq!(tail_hop(w(3, TimeUnit::Days).millis()), HOUR);
        assert_eq!(tail_hop(w(12, TimeUnit::Hours).millis()), HOUR);
        assert_eq!(tail_hop(w(1, TimeUnit::Hours).millis()), 5 * MINUTE);
    }

    #[test]
    fn window_starts_round_down_to_the_hop() {
        // A 1h window ending at 10:07 starts at 09:05 (5-minute hop).
        let end = 10 * HOUR + 7 * MINUTE;
        assert_eq!(
            window_start(end, w(1, TimeUnit::Hours)),
            9 * HOUR + 5 * MINUTE
        );
        // A 3d window ending at 10:07 on day 5 starts at 10:00 on day 2 (1-hour hop).
        assert_eq!(
            window_start(5 * DAY + end, w(3, TimeUnit::Days)),
            2 * DAY + 10 * HOUR
        );
        assert_eq!(round_down(-1, DAY), -DAY);
    }

    #[test]
    fn oldest_partition_of_a_one_hour_window_is_two_days_back() {
        let a = PartitionDate::parse("2024-03-10").unwrap();
        assert_eq!(
            oldest_partition(a, w(1, TimeUnit::Hours)).to_string(),
            "2024-03-08"
        );
        assert_eq!(
            oldest_partition(a, w(3, TimeUnit::Days)).to_string(),
            "2024-03-06"
        );
        assert_eq!(date_of(end_of_day(a) - 1), a);
        assert_eq!(date_of(-1).to_string(), "1969-12-31");
    }
}
