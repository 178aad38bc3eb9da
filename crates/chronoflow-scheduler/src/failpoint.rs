//! Named failure points, for tests that crash the scheduler or a worker at a precise step.
//!
//! Production code calls [`FailPoints::check`] at each point; it costs one atomic load while no
//! failure is armed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Result, SchedulerError};

/// Every named point, so a test cannot arm a point that does not exist.
pub const POINTS: &[&str] = &[
    // The worker claimed a task instance and crashes before starting it.
    "worker.after_claim",
    // The job itself fails (an executor error).
    "worker.in_job",
    // The worker crashes while committing the result (the transaction is rolled back).
    "worker.before_commit",
    // The scheduler crashes after creating a run, before starting its tasks.
    "scheduler.after_create_run",
    // The scheduler crashes while committing a sensor's result.
    "scheduler.sensor_commit",
];

#[derive(Debug, Default)]
pub struct FailPoints {
    armed_any: AtomicBool,
    armed: Mutex<HashMap<&'static str, u32>>,
}

impl FailPoints {
    /// Arms `point` to fail its next `times` checks.
    pub fn arm(&self, point: &'static str, times: u32) {
        assert!(POINTS.contains(&point), "unknown fail point {point}");
        self.armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(point, times);
        self.armed_any.store(true, Ordering::SeqCst);
    }

    pub fn check(&self, point: &'static str) -> Result<()> {
        if !self.armed_any.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
        match armed.get_mut(point) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(SchedulerError::Injected(point))
            }
            _ => Ok(()),
        }
    }
}
