//! Reading stored values without trusting them.
//!
//! The database lives outside this process: someone may edit it by hand, a migration may be
//! half applied, PostgreSQL and SQLite may store a value differently. A column holding
//! something other than what the schema says is an error naming the table, the row and the
//! column ([`SchedulerError::CorruptValue`]): never a panic, and never silently read as a
//! default.

use sqlx::any::AnyRow;
use sqlx::{Any, Decode, Row, Type};

use crate::error::{Result, SchedulerError};
use crate::state::TaskState;

/// A row read from `table`, whose columns decode into `Result`s.
#[derive(Clone, Copy)]
pub(crate) struct Stored<'r> {
    table: &'static str,
    row: &'r AnyRow,
}

impl<'r> Stored<'r> {
    pub(crate) fn new(table: &'static str, row: &'r AnyRow) -> Self {
        Stored { table, row }
    }

    /// `column` as `T` (`Option<T>` for a nullable column).
    pub(crate) fn get<T>(&self, column: &str) -> Result<T>
    where
        T: Decode<'r, Any> + Type<Any>,
    {
        self.row.try_get(column).map_err(|e| {
            let message = match e {
                // Its own text repeats the column, which the error names already.
                sqlx::Error::ColumnDecode { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            self.corrupt(column, message)
        })
    }

    /// A `0`/`1` flag.
    pub(crate) fn flag(&self, column: &str) -> Result<bool> {
        match self.get::<i64>(column)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(self.corrupt(column, format!("{n} is not a flag (0 or 1)"))),
        }
    }

    /// A task state, by its name.
    pub(crate) fn task_state(&self, column: &str) -> Result<TaskState> {
        let text: String = self.get(column)?;
        TaskState::parse(&text)
            .ok_or_else(|| self.corrupt(column, format!("{text:?} is not a task state")))
    }

    /// The error for a value of `column` that is not what it should be.
    pub(crate) fn corrupt(&self, column: &str, message: impl Into<String>) -> SchedulerError {
        SchedulerError::CorruptValue {
            table: self.table,
            row: self.key(),
            column: column.to_owned(),
            message: message.into(),
        }
    }

    /// The row's primary key as far as it was selected and is readable, e.g.
    /// ` (dag_id "d", run_id "r")`; empty when none of it is.
    fn key(&self) -> String {
        let parts: Vec<String> = key_columns(self.table)
            .iter()
            .filter_map(|&c| {
                let value = match self.row.try_get::<String, _>(c) {
                    Ok(text) => format!("{text:?}"),
                    Err(_) => self.row.try_get::<i64, _>(c).ok()?.to_string(),
                };
                Some(format!("{c} {value}"))
            })
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

/// The primary key of each table the store reads rows from.
fn key_columns(table: &str) -> &'static [&'static str] {
    match table {
        "dags" => &["dag_id"],
        "dag_versions" => &["dag_id", "version"],
        "dag_runs" => &["dag_id", "run_id"],
        "task_instances" => &["dag_id", "run_id", "task_id"],
        "task_tries" => &["dag_id", "run_id", "task_id", "try_number"],
        "workers" => &["worker_id"],
        "metadata_uploads" | "streaming_jobs" => &["job_id"],
        "api_tokens" => &["token_id"],
        _ => &[],
    }
}
