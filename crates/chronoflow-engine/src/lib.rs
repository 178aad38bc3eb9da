//! The local compute engine: the warehouse (Parquet tables with atomic partitions on any
//! `object_store`), importing and exporting tables, Chronon's backfills, and what online serving
//! needs of a GroupBy (`online`).

pub mod aggregate;
pub mod backfill;
pub mod consistency;
pub mod consistency_report;
mod drift;
mod error;
pub mod export;
mod feature_columns;
pub mod features;
pub mod import;
mod index;
pub mod jobs;
mod join;
pub mod online;
pub mod partial;
mod quality;
mod schema;
mod shard;
pub mod source;
pub mod staging;
mod table_name;
mod udf;
pub mod value;
pub mod values;
pub mod warehouse;
pub mod window;

pub use error::{EngineError, Result};
pub use quality::{DEFAULT_QUALITY_RATIO, RowCountCheck, RowFlag, flag_row_counts};
pub use shard::{BatchStore, MemoryLimit, SpillDir, parse_memory_limit};
pub use table_name::TableName;
pub use warehouse::{
    ColumnStats, PartitionInfo, PartitionStats, RemovedFile, VacuumReport, Warehouse,
};
