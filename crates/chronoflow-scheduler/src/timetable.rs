//! When runs are due: pure functions of a schedule, the last run and the time.
//!
//! A run is keyed by its logical time `L`, the start of the interval it covers; it is due once
//! that interval has ended, and its jobs get `ds` = the UTC date of `L` (never the wall clock's).

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Timetable {
    /// A 5-field cron expression, UTC.
    Cron { expr: String },
    /// Every `minutes` minutes, aligned to the epoch.
    Interval { minutes: u32 },
    /// Runs only when triggered.
    Manual,
}

/// At most this many runs are created by one catch-up (a guard against a start date in 1970).
pub const MAX_CATCHUP_RUNS: usize = 1000;

impl Timetable {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Timetable::Cron { expr } => expr
                .parse::<croner::Cron>()
                .map(|_| ())
                .map_err(|e| format!("invalid cron expression {expr:?}: {e}")),
            Timetable::Interval { minutes: 0 } => Err("an interval of 0 minutes".to_owned()),
            _ => Ok(()),
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(self, Timetable::Manual)
    }

    /// The end of the interval that starts at `logical` (the next schedule point after it).
    pub fn interval_end(&self, logical: i64) -> Option<i64> {
        match self {
            Timetable::Cron { expr } => {
                let cron = expr.parse::<croner::Cron>().ok()?;
                let t = to_utc(logical)?;
                cron.find_next_occurrence(&t, false)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }
            Timetable::Interval { minutes } => Some(logical + period(*minutes)),
            Timetable::Manual => None,
        }
    }

    /// The newest logical time whose interval has ended by `now`.
    pub fn latest_ended(&self, now: i64) -> Option<i64> {
        match self {
            Timetable::Cron { expr } => {
                let cron = expr.parse::<croner::Cron>().ok()?;
                let now = to_utc(now)?;
                let end = cron.find_previous_occurrence(&now, true).ok()?;
                let start = cron.find_previous_occurrence(&end, false).ok()?;
                Some(start.timestamp_millis())
            }
            Timetable::Interval { minutes } => {
                let p = period(*minutes);
                Some(now.div_euclid(p) * p - p)
            }
            Timetable::Manual => None,
        }
    }

    /// The first schedule point at or after `t`.
    pub fn first_at_or_after(&self, t: i64) -> Option<i64> {
        match self {
            Timetable::Cron { expr } => {
                let cron = expr.parse::<croner::Cron>().ok()?;
                cron.find_next_occurrence(&to_utc(t)?, true)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }
            Timetable::Interval { minutes } => {
                let p = period(*minutes);
                Some((t + p - 1).div_euclid(p) * p)
            }
            Timetable::Manual => None,
        }
    }

    /// The logical times of the runs to create at `now`, oldest first.
    ///
    /// Without catch-up (or with nothing to catch up from) only the newest ended interval runs;
    /// with it, every interval after `last` (or from `start`) up to the newest.
    pub fn due(&self, catchup: bool, start: Option<i64>, last: Option<i64>, now: i64) -> Vec<i64> {
        let Some(latest) = self.latest_ended(now) else {
            return Vec::new();
        };
        if last.is_some_and(|l| l >= latest) {
            return Vec::new();
        }
        let from = match (catchup, last, start) {
            (true, Some(last), _) => self.interval_end(last),
            (true, None, Some(start)) => self.first_at_or_after(start),
            _ => None,
        };
        let Some(mut t) = from else {
            return vec![latest];
        };
        let mut out = Vec::new();
        while t <= latest && out.len() < MAX_CATCHUP_RUNS {
            out.push(t);
            match self.interval_end(t) {
                Some(next) if next > t => t = next,
                _ => break,
            }
        }
        if out.last() != Some(&latest) {
            // Over the guard: keep the newest runs, which matter most.
            out.push(latest);
        }
        out
    }
}

fn period(minutes: u32) -> i64 {
    i64::from(minutes.max(1)) * 60_000
}

fn to_utc(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// The `ds` of a logical time: its UTC date.
pub fn ds_of(ms: i64) -> String {
    to_utc(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "invalid-date".to_owned())
}

/// Midnight UTC of `ds`.
pub fn ms_of_ds(ds: &str) -> Option<i64> {
    let d = chronoflow_config::PartitionDate::parse(ds).ok()?;
    Some(d.epoch_millis())
}

/// `2026-11-20T00:00:00Z`, for run ids and displays.
pub fn iso(ms: i64) -> String {
    to_utc(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn daily_run_for_d_is_due_once_d_has_ended() {
        let daily = Timetable::Cron {
            expr: "0 0 * * *".into(),
        };
        // At 23:59 on the 21st the newest ended day is the 20th.
        let due = daily.due(false, None, None, ms("2026-11-21T23:59:00Z"));
        assert_eq!(
            due.iter().map(|&t| ds_of(t)).collect::<Vec<_>>(),
            ["2026-11-20"]
        );
        // At midnight the 21st has ended.
        let due = daily.due(false, None, None, ms("2026-11-22T00:00:00Z"));
        assert_eq!(ds_of(due[0]), "2026-11-21");
        // Nothing new once the 21st ran.
        assert!(
            daily
                .due(false, None, Some(due[0]), ms("2026-11-22T12:00:00Z"))
                .is_empty()
        );
    }

    #[test]
    fn catchup_creates_every_missed_interval_and_none_without_it() {
        let daily = Timetable::Cron {
            expr: "0 0 * * *".into(),
        };
        let last = ms("2026-11-17T00:00:00Z");
        let now = ms("2026-11-21T01:00:00Z");
        let due = daily.due(true, None, Some(last), now);
        let ds: Vec<String> = due.iter().map(|&t| ds_of(t)).collect();
        assert_eq!(ds, ["2026-11-18", "2026-11-19", "2026-11-20"]);
        assert_eq!(daily.due(false, None, Some(last), now).len(), 1);
        let from_start = daily.due(true, Some(ms("2026-11-19T00:00:00Z")), None, now);
        assert_eq!(from_start.len(), 2);
    }

    #[test]
    fn hourly_and_interval_schedules() {
        let hourly = Timetable::Cron {
            expr: "0 * * * *".into(),
        };
        let due = hourly.due(false, None, None, ms("2026-11-21T10:30:00Z"));
        assert_eq!(iso(due[0]), "2026-11-21T09:00:00Z");
        let every10 = Timetable::Interval { minutes: 10 };
        let due = every10.due(false, None, None, ms("2026-11-21T10:35:00Z"));
        assert_eq!(iso(due[0]), "2026-11-21T10:20:00Z");
        assert!(Timetable::Manual.due(true, None, None, 0).is_empty());
    }

    #[test]
    fn invalid_cron_is_an_error_naming_it() {
        let err = Timetable::Cron {
            expr: "61 * * * *".into(),
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("61 * * * *"), "{err}");
    }
}
