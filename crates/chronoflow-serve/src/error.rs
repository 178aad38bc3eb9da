//! The serving crate's one error type.

use thiserror::Error;

pub type Result<T, E = ServeError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("embedded KV store {path}: {message}")]
    Embedded { path: String, message: String },
    #[error("Redis KV store {url}: {message}")]
    Redis { url: String, message: String },
    #[error("dataset {dataset:?}: {message}")]
    Dataset { dataset: String, message: String },
}
