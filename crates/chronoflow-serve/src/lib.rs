//! Online serving. Today: the KV store that uploads load and the fetcher reads.

pub mod error;
pub mod kv;

pub use error::{Result, ServeError};
