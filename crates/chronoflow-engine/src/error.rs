/// Everything that can go wrong in the engine, each naming the table, partition, file or value.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid table name {name:?}: expected namespace.table (letters, digits and _)")]
    InvalidTableName { name: String },
    #[error("invalid warehouse location {uri:?}: {reason}")]
    InvalidWarehouse { uri: String, reason: String },
    #[error("table {table} does not exist in warehouse {warehouse}")]
    TableNotFound { table: String, warehouse: String },
    #[error("partition {column}={ds} of table {table} does not exist")]
    PartitionNotFound {
        table: String,
        column: String,
        ds: String,
    },
    #[error("table {table}: {reason}")]
    Corrupt { table: String, reason: String },
    #[error("{path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Two columns with one name: SQL could not tell them apart.
    #[error("{file}: column {column:?} appears more than once")]
    DuplicateColumn { file: String, column: String },
    /// Rows whose columns do not fit the table's schema (see `schema::evolve`).
    #[error("table {table}, partition {partition}: column {column:?} {reason}")]
    SchemaMismatch {
        table: String,
        partition: String,
        column: String,
        reason: String,
    },
    /// A part file of a write disappeared before its manifest was committed (a vacuum with a
    /// grace period shorter than the write?): committing would publish a broken partition.
    #[error("{path} disappeared before the partition was committed; nothing was committed")]
    VanishedFile { path: String },
    /// Bad input data (a file to import, a column, a value), with what was wrong.
    #[error("{file}: {message}")]
    Input { file: String, message: String },
    /// A time (epoch millis) outside what the engine computes with: 1970-01-01 to 9999-12-31.
    #[error(
        "{what} {millis} is outside the supported time range: epoch milliseconds from 0 \
         (1970-01-01T00:00:00Z) to 253402300799999 (9999-12-31T23:59:59.999Z)"
    )]
    TimeOutOfRange { what: String, millis: i64 },
    /// A fetch at a time the served batch cannot answer: the batch of day `D` holds the events
    /// of `D` and before, so counting it at an earlier time would count events after that time.
    #[error(
        "{group_by}: at_millis {at} is before the end of the served batch's day {batch_ds}, \
         whose events it would count; the batch answers times from {from} on (upload an earlier \
         day's batch to fetch at earlier times)"
    )]
    BeforeBatch {
        group_by: String,
        at: i64,
        batch_ds: String,
        from: i64,
    },
    /// A stored online value (a batch's tile or row, a streamed row) that does not fit the
    /// GroupBy definition reading it: written by another definition, or damaged.
    #[error(
        "{group_by}: a stored value does not fit its definition ({message}); upload and replay \
         it again"
    )]
    StoredValue { group_by: String, message: String },
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A scoped thread's result; if it panicked, the panic goes on in the calling thread with its
/// own payload, as if the work had run there.
pub(crate) fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The text of a caught panic (a third-party decoder's or DataFusion's), for the error that
/// replaces it.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}
