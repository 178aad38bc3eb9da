//! The serving crate's one error type.

use chronoflow_engine::EngineError;
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
    /// A join or GroupBy the store knows nothing about.
    #[error("{kind} {name:?} is not served: {message}")]
    UnknownName {
        kind: &'static str,
        name: String,
        message: String,
    },
    /// A request that cannot be answered as asked (bad keys, bad JSON): the caller's to fix.
    #[error("{0}")]
    BadRequest(String),
    /// A config that decodes but that serving cannot handle, or a stored value that does not.
    #[error("{name}: {message}")]
    Config { name: String, message: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}
