//! The scheduler's one error type.

use thiserror::Error;

pub type Result<T, E = SchedulerError> = std::result::Result<T, E>;

/// Each variant's message includes its cause, and no variant reports the cause again as its
/// `source()`: printers that walk the chain (`anyhow`'s `{:#}`) would print it twice.
#[derive(Debug, Error)]
pub enum SchedulerError {
    #[error("state store {url}: {cause}")]
    Connect { url: String, cause: sqlx::Error },
    #[error("state store: {context}: {cause}")]
    Database {
        context: &'static str,
        cause: sqlx::Error,
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
    /// A stored value that is not what the schema says (edited by hand, a half-applied
    /// migration, a type the other database stores differently), named so it can be fixed.
    #[error("state store: {table}{row}, column {column}: {message}")]
    CorruptValue {
        table: &'static str,
        /// The row's key as far as it could be read, ` (dag_id "d", run_id "r")`, or empty.
        row: String,
        column: String,
        message: String,
    },
    #[error("unknown Join {0:?}")]
    UnknownJoin(String),
    /// Figures the warehouse holds that cannot be read (a malformed table, an unreachable
    /// object store).
    #[error("warehouse: {0}")]
    Warehouse(String),
    /// A request parameter that is not one of the values it may take.
    #[error("{name}: {message}")]
    InvalidParameter { name: String, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl SchedulerError {
    pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> SchedulerError {
        move |cause| SchedulerError::Database { context, cause }
    }

    /// A stored DAG version or value that cannot be read: it concerns the one DAG (or run) it
    /// belongs to, and the scheduler goes on with the others.
    pub fn is_corrupt_data(&self) -> bool {
        matches!(
            self,
            SchedulerError::CorruptSpec { .. } | SchedulerError::CorruptValue { .. }
        )
    }

    /// Client errors (unknown names, bad parameters) as opposed to failures of the system.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            SchedulerError::UnknownDag(_)
                | SchedulerError::UnknownTask { .. }
                | SchedulerError::UnknownRun { .. }
                | SchedulerError::UnknownJoin(_)
                | SchedulerError::InvalidRequest { .. }
                | SchedulerError::InvalidToken(_)
                | SchedulerError::InvalidParameter { .. }
                | SchedulerError::InvalidSchedule { .. }
        )
    }
}
