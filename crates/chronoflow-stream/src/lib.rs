//! Streaming (SPEC §4.6): a TEMPORAL GroupBy's topics consumed into its streaming dataset in the
//! KV store, so a fetch counts an event within moments of its arrival.
//!
//! - [`topic`]: Chronon's topic strings.
//! - [`decode`]: record values (JSON, CSV in `fields=` order, Avro) into rows of the source
//!   table's columns; a record that does not fit is rejected on its own.
//! - [`consumer`]: the loop. The source query runs through the engine's own
//!   [`stream_records`](chronoflow_engine::online::stream_records), so a streamed event gives the
//!   row the backfill would read from the table; rows and offsets are stored in one atomic KV
//!   write, so every record counts exactly once.
//! - [`status`]: what a stream reports (counters, lag, freshness).

pub mod consumer;
pub mod decode;
pub mod error;
pub mod status;
pub mod topic;

pub use consumer::{
    DEFAULT_FETCH_MAX_WAIT_MS, DEFAULT_MAX_FETCH_BYTES, StartFrom, StreamOptions, StreamReport,
    run_stream,
};
pub use error::{Result, StreamError};
pub use status::{PartitionStatus, StreamStatus};
