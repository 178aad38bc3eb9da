//! Task and run states, and the pure rules that move them.

use serde::Serialize;

/// A task instance's state.
///
/// `waiting` (upstream not done) -> `scheduled` (upstream done, waiting for a concurrency slot)
/// -> `queued` (slot taken, waiting for a worker) -> `running` -> `success` | `failed` |
/// `up_for_retry` (-> `scheduled` once the backoff passed); `upstream_failed` when an upstream
/// failed for good; `skipped` when there was nothing to do. Sensors go from `scheduled` straight
/// to `running`: the scheduler pokes them, no worker holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Waiting,
    Scheduled,
    Queued,
    Running,
    Success,
    Failed,
    UpForRetry,
    UpstreamFailed,
    Skipped,
}

impl TaskState {
    pub const ALL: [TaskState; 9] = [
        TaskState::Waiting,
        TaskState::Scheduled,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Success,
        TaskState::Failed,
        TaskState::UpForRetry,
        TaskState::UpstreamFailed,
        TaskState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Waiting => "waiting",
            TaskState::Scheduled => "scheduled",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failed | TaskState::UpstreamFailed | TaskState::Skipped
        )
    }

    /// Whether downstream tasks may start (Airflow's `all_success`, with nothing-to-do counted
    /// as done).
    pub fn satisfies_downstream(self) -> bool {
        matches!(self, TaskState::Success | TaskState::Skipped)
    }

    pub fn blocks_downstream(self) -> bool {
        matches!(self, TaskState::Failed | TaskState::UpstreamFailed)
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a task waiting on its upstream should become, given the upstream states.
pub fn readiness(upstream: impl IntoIterator<Item = TaskState>) -> Option<TaskState> {
    let mut all_done = true;
    for s in upstream {
        if s.blocks_downstream() {
            return Some(TaskState::UpstreamFailed);
        }
        all_done &= s.satisfies_downstream();
    }
    all_done.then_some(TaskState::Scheduled)
}

/// The delay before try `next_try` (2, 3, ...): `base * 2^(tries so far - 1)`, capped, with a
/// deterministic jitter of up to ±10% derived from the task's key (so tests are repeatable and
/// many tasks failing together do not retry in lockstep).
pub fn retry_delay_ms(base_seconds: u64, cap_seconds: u64, next_try: i64, key: &str) -> i64 {
    let exponent = next_try.saturating_sub(2).clamp(0, 30) as u32;
    let base_ms = seconds_ms(base_seconds);
    let cap_ms = seconds_ms(cap_seconds);
    let capped = base_ms
        .saturating_mul(1 << exponent)
        .min(cap_ms)
        .max(base_ms.min(cap_ms));
    let hash = chronoflow_config::repo::content_hash(format!("{key}#{next_try}").as_bytes());
    let h = u64::from_str_radix(&hash[..8], 16).unwrap_or(0);
    // -10% .. +10%, in thousandths (of a tenth first: no overflow near i64::MAX).
    let permille = (h % 201) as i64 - 100;
    capped.saturating_add(capped / 1000 * permille)
}

/// `seconds` (from the configuration or a spec, so any `u64`) in milliseconds, saturating at
/// `i64::MAX`: a huge timeout means "never", not an overflow.
pub fn seconds_ms(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_all_success() {
        use TaskState::*;
        assert_eq!(readiness([]), Some(Scheduled));
        assert_eq!(readiness([Success, Skipped]), Some(Scheduled));
        assert_eq!(readiness([Success, Running]), None);
        assert_eq!(readiness([UpForRetry, Success]), None);
        assert_eq!(readiness([Waiting, Failed]), Some(UpstreamFailed));
    }

    /// `retry_max_delay_seconds = 18446744073709551615` in chronoflow.toml overflowed
    /// `cap_seconds * 1000` (a panic in debug builds, a negative delay in release).
    #[test]
    fn huge_configured_seconds_saturate_instead_of_overflowing() {
        for (base, cap, try_number) in [
            (u64::MAX, u64::MAX, i64::MAX),
            (u64::MAX, 60, 2),
            (60, u64::MAX, i64::MIN),
            (0, 0, 0),
        ] {
            let delay = retry_delay_ms(base, cap, try_number, "t");
            assert!(delay >= 0, "{base} {cap} {try_number}: {delay}");
        }
        // The cap still holds.
        let capped = retry_delay_ms(u64::MAX, 60, 2, "t");
        assert!((54_000..=66_000).contains(&capped), "{capped}");
        assert_eq!(seconds_ms(u64::MAX), i64::MAX);
        assert_eq!(seconds_ms(5), 5_000);
    }

    #[test]
    fn retry_backoff_doubles_is_capped_and_jittered() {
        let d2 = retry_delay_ms(60, 3600, 2, "t");
        let d3 = retry_delay_ms(60, 3600, 3, "t");
        let d10 = retry_delay_ms(60, 3600, 10, "t");
        assert!((54_000..=66_000).contains(&d2), "{d2}");
        assert!((108_000..=132_000).contains(&d3), "{d3}");
        assert!((3_240_000..=3_960_000).contains(&d10), "{d10}");
        // Deterministic per key and try, different across keys.
        assert_eq!(d2, retry_delay_ms(60, 3600, 2, "t"));
        let spread: std::collections::BTreeSet<i64> = (0..20)
            .map(|i| retry_delay_ms(60, 3600, 2, &format!("k{i}")))
            .collect();
        assert!(spread.len() > 10);
    }
}
