//! Time, injected: the scheduler never reads the wall clock directly, so tests drive it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch, UTC.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        since.as_millis() as i64
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<AtomicI64>);

impl FakeClock {
    pub fn new(now_ms: i64) -> Self {
        FakeClock(Arc::new(AtomicI64::new(now_ms)))
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set_ms(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Simulated time running `speed` times faster than the wall clock from `start_ms` at wall time
/// `wall_origin_ms`. Every process given the same three numbers agrees on the time, so a chaos or
/// soak test can run days of daily DAGs in minutes while its processes are killed and restarted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaledClock {
    pub start_ms: i64,
    pub wall_origin_ms: i64,
    pub speed: u32,
}

impl ScaledClock {
    /// The environment variable [`clock_from_env`] reads.
    pub const ENV: &'static str = "CHRONOFLOW_CLOCK";

    /// Parses `start=<yyyy-MM-dd>,wall_ms=<epoch ms>,speed=<N>`.
    pub fn parse(text: &str) -> Result<ScaledClock, String> {
        let (mut start, mut wall, mut speed) = (None, None, None);
        for part in text.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=value"))?;
            match key.trim() {
                "start" => {
                    start = Some(
                        crate::timetable::ms_of_ds(value.trim())
                            .ok_or_else(|| format!("start {value:?} is not a yyyy-MM-dd date"))?,
                    );
                }
                "wall_ms" => {
                    wall = Some(
                        value
                            .trim()
                            .parse::<i64>()
                            .map_err(|_| format!("wall_ms {value:?} is not a number"))?,
                    );
                }
                "speed" => {
                    speed = Some(
                        value
                            .trim()
                            .parse::<u32>()
                            .ok()
                            .filter(|s| (1..=1_000_000).contains(s))
                            .ok_or_else(|| format!("speed {value:?} is not in 1..=1000000"))?,
                    );
                }
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        Ok(ScaledClock {
            start_ms: start.ok_or("start is missing")?,
            wall_origin_ms: wall.ok_or("wall_ms is missing")?,
            speed: speed.ok_or("speed is missing")?,
        })
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> i64 {
        let elapsed = SystemClock.now_ms().saturating_sub(self.wall_origin_ms);
        self.start_ms
            .saturating_add(elapsed.saturating_mul(i64::from(self.speed)))
    }
}

/// The wall clock, or the [`ScaledClock`] that `CHRONOFLOW_CLOCK` describes (tests only; the
/// scheduler says so in its log when it runs on simulated time).
pub fn clock_from_env() -> Result<Arc<dyn Clock>, String> {
    match std::env::var(ScaledClock::ENV) {
        Ok(text) => ScaledClock::parse(&text)
            .map(|c| Arc::new(c) as Arc<dyn Clock>)
            .map_err(|e| format!("{}: {e}", ScaledClock::ENV)),
        Err(_) => Ok(Arc::new(SystemClock)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_clock_parses_and_runs_fast() {
        let c = ScaledClock::parse("start=2023-11-20,wall_ms=0,speed=720").unwrap();
        assert_eq!(c.start_ms, 1_700_438_400_000);
        assert!(c.now_ms() > c.start_ms);
        assert!(ScaledClock::parse("start=2023-11-20,wall_ms=0,speed=0").is_err());
        assert!(ScaledClock::parse("start=nope,wall_ms=0,speed=2").is_err());
        assert!(ScaledClock::parse("start=2023-11-20,speed=2").is_err());
    }
}
