//! The scheduler's one error type.

use thiserror::Error;

pub type Result<T, E = SchedulerError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum SchedulerError {
    #[error("state store {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("state store: {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("state store schema: {0}")]
    Schema(String),
    #[error("unknown DAG {0:?}")]
    UnknownDag(String),
    #[error("DAG {dag_id:?} has no task {task_id:?}")]
    UnknownTask { dag_id: String, task_id: String },
    #[error("DAG {dag_id:?} has no run {run_id:?}")]
    UnknownRun { dag_id: String, run_id: String },
    #[error("DAG {dag_id:?}: {message}")]
    InvalidRequest { dag_id: String, message: String },
    /// A token request that cannot be done as asked (unknown id, missing name or team).
    #[error("{0}")]
    InvalidToken(String),
    #[error("invalid schedule {schedule:?}: {message}")]
    InvalidSchedule { schedule: String, message: String },
    #[error("scheduler config {path}: {message}")]
    Config { path: String, message: String },
    #[error("injected failure at {0}")]
    Injected(&'static str),
    #[error("stored DAG {dag_id:?} version {version}: {message}")]
    CorruptSpec {
        dag_id: String,
        version: i64,
        message: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl SchedulerError {
    pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> SchedulerError {
        move |source| SchedulerError::Database { context, source }
    }

    /// Client errors (unknown names, bad parameters) as opposed to failures of the system.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            SchedulerError::UnknownDag(_)
                | SchedulerError::UnknownTask { .. }
                | SchedulerError::UnknownRun { .. }
                | SchedulerError::InvalidRequest { .. }
                | SchedulerError::InvalidToken(_)
                | SchedulerError::InvalidSchedule { .. }
        )
    }
}
