//! When a DAG runs: a cron expression (presets normalized), a fixed interval, or manual.

use serde::Serialize;

/// A DAG's schedule. Runs are keyed by logical date; all cron expressions are in UTC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// A standard 5-field cron expression (`@daily` and friends are normalized to one).
    Cron { expr: String },
    /// Every `minutes` minutes.
    Interval { minutes: u32 },
    /// Only when triggered, with parameters (`start_ds`, `end_ds`).
    Manual,
}

impl Schedule {
    pub fn daily() -> Schedule {
        Schedule::Cron {
            expr: DAILY.to_owned(),
        }
    }

    pub fn is_daily(&self) -> bool {
        matches!(self, Schedule::Cron { expr } if expr == DAILY)
    }

    /// A short, identifier-safe name: `daily`, `weekly`, `every_10_minutes`, `manual`, or
    /// `cron_<hash>` for other expressions (used to name DAGs of non-daily Joins).
    pub fn slug(&self) -> String {
        match self {
            Schedule::Cron { expr } => PRESETS
                .iter()
                .find(|(_, e)| e == expr)
                .map(|(name, _)| name.trim_start_matches('@').to_owned())
                .unwrap_or_else(|| {
                    format!(
                        "cron_{}",
                        &chronoflow_config::repo::content_hash(expr.as_bytes())[..8]
                    )
                }),
            Schedule::Interval { minutes } => format!("every_{minutes}_minutes"),
            Schedule::Manual => "manual".to_owned(),
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Cron { expr } => match PRESETS.iter().find(|(_, e)| e == expr) {
                Some((name, _)) => f.write_str(name),
                None => write!(f, "cron {expr:?}"),
            },
            Schedule::Interval { minutes } => write!(f, "every {minutes} minutes"),
            Schedule::Manual => f.write_str("manual"),
        }
    }
}

const DAILY: &str = "0 0 * * *";

const PRESETS: [(&str, &str); 6] = [
    ("@hourly", "0 * * * *"),
    ("@daily", DAILY),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

/// Parses a Chronon `offlineSchedule`: `@never` gives `Ok(None)` (no scheduled job); presets and
/// 5-field cron expressions give a cron schedule; anything else is an error saying why.
pub fn parse_offline_schedule(text: &str) -> Result<Option<Schedule>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("@never") {
        return Ok(None);
    }
    if let Some((_, expr)) = PRESETS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
    {
        return Ok(Some(Schedule::Cron {
            expr: (*expr).to_owned(),
        }));
    }
    if text.starts_with('@') {
        return Err(format!(
            "unknown schedule preset {text:?}: expected @never, @hourly, @daily, @weekly, @monthly, @yearly or a cron expression"
        ));
    }
    let fields = text.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "cron expression {text:?} has {fields} fields: expected 5 (minute hour day month weekday)"
        ));
    }
    text.parse::<croner::Cron>()
        .map_err(|e| format!("invalid cron expression {text:?}: {e}"))?;
    Ok(Some(Schedule::Cron {
        expr: text.split_whitespace().collect::<Vec<_>>().join(" "),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_normalize_and_never_means_no_schedule() {
        assert_eq!(
            parse_offline_schedule("@daily").unwrap(),
            Some(Schedule::daily())
        );
        assert_eq!(
            parse_offline_schedule(" @WEEKLY ").unwrap().unwrap().slug(),
            "weekly"
        );
        assert_eq!(parse_offline_schedule("@never").unwrap(), None);
        assert!(
            parse_offline_schedule("0 0 * * *")
                .unwrap()
                .unwrap()
                .is_daily()
        );
    }

    #[test]
    fn cron_expressions_are_validated() {
        let s = parse_offline_schedule("30  3 * * 1-5").unwrap().unwrap();
        assert_eq!(
            s,
            Schedule::Cron {
                expr: "30 3 * * 1-5".to_owned()
            }
        );
        assert!(s.slug().starts_with("cron_"));
        assert_eq!(s.to_string(), "cron \"30 3 * * 1-5\"");
        for bad in [
            "@sometimes",
            "61 * * * *",
            "* * *",
            "* * * * * *",
            "",
            "a b c d e",
        ] {
            let err = parse_offline_schedule(bad).unwrap_err();
            assert!(err.contains(bad.trim()) || bad.is_empty(), "{err}");
        }
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(Schedule::daily().to_string(), "@daily");
        assert_eq!(
            Schedule::Interval { minutes: 10 }.to_string(),
            "every 10 minutes"
        );
        assert_eq!(
            Schedule::Interval { minutes: 10 }.slug(),
            "every_10_minutes"
        );
    }
}
