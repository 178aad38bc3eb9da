//! Online serving (SPEC §4.6): the KV store, the batch side (upload, upload-to-kv,
//! metadata-upload, streaming replay), the fetcher with its HTTP routes, fetch logging, and the
//! bounded HTTP server every port of chronoflow runs on (`server`).
//!
//! Values are computed by the engine's `online` module with the backfill's own aggregation code;
//! this crate stores, moves and serves them.

pub mod codec;
pub mod error;
pub mod fetched;
pub mod fetcher;
pub mod http;
pub mod kv;
pub mod logging;
pub mod server;
pub mod upload;

pub use error::{Result, ServeError};
pub use fetcher::Fetcher;

/// A key set as requests send it: key column -> value.
pub type KeySet = serde_json::Map<String, serde_json::Value>;
/// Feature -> value for one key set.
pub type Features = serde_json::Map<String, serde_json::Value>;
