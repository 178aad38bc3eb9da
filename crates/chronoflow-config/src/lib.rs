//! The Chronon config model: what a repo of compiled Chronon configs says, in either dialect.
//!
//! - [`fs::load_repo`] reads a repo directory (the crate's only IO) and [`repo::load`] decodes it;
//! - [`model`] is the typed model, the same for the Airbnb and Zipline dialects;
//! - [`naming`] derives every table, column and dataset name (SPEC §2);
//! - problems are [`Diagnostic`]s naming the file and JSON path, never panics, and a bad file
//!   never stops the others from loading.

pub mod date;
pub mod decode;
pub mod dependency;
pub mod diagnostic;
mod error;
pub mod fs;
pub mod model;
pub mod naming;
pub mod parse;
pub mod repo;
pub mod teams;
mod validate;

pub use date::PartitionDate;
pub use dependency::PartitionDependency;
pub use diagnostic::{Diagnostic, DiagnosticCode, DiagnosticCounts, Severity};
pub use error::ConfigError;
pub use model::*;
pub use repo::{Layout, LoadedConfig, Repo, RepoFile, RepoFiles, UnreadableEntry};
pub use teams::{TeamInfo, Teams};
