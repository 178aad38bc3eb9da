use thiserror::Error;

/// Why a stream cannot run. Problems of single records are not errors (they are counted and
/// skipped), and an unreachable broker or KV store is retried, not returned.
#[derive(Debug, Error)]
pub enum StreamError {
    /// The GroupBy cannot stream as defined (no topic, not TEMPORAL, a query that does not fit
    /// the source's columns...).
    #[error("{group_by}: {message}")]
    Config { group_by: String, message: String },
    #[error("{group_by}: topic {topic}: {message}")]
    Topic {
        group_by: String,
        topic: String,
        message: String,
    },
    #[error(transparent)]
    Engine(#[from] chronoflow_engine::EngineError),
    #[error(transparent)]
    Serve(#[from] chronoflow_serve::ServeError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = StreamError> = std::result::Result<T, E>;
