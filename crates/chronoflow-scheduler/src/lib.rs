//! The durable scheduler: DAG runs from the plan, sensors, retries, workers and executors.
//!
//! Layers, from pure to IO:
//! - [`timetable`], [`state`] and [`spec`] are pure: when runs are due, how states move, what
//!   a DAG is. They never read the clock or the database.
//! - [`store`] is the only code that talks to the database; every state change is one
//!   transaction, so a process killed at any point leaves a consistent state.
//! - [`scheduler`] and [`worker`] are the loops: they read time from a [`clock::Clock`] and
//!   do their work through the store, the [`executor`]s and the sensors' warehouse.

pub mod alert;
pub mod api;
pub mod clock;
pub mod config;
pub mod consistency;
pub mod error;
pub mod executor;
pub mod failpoint;
pub mod history;
pub mod metrics;
pub mod scheduler;
pub mod spec;
pub mod state;
pub mod store;
pub mod streams;
pub mod timetable;
pub mod worker;

pub use error::{Result, SchedulerError};
