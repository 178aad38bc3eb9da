use std::path::PathBuf;

/// Failures that stop loading a repo altogether. Problems inside files are not errors but
/// [`Diagnostic`](crate::Diagnostic)s: they never stop the other files from loading.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} holds no compiled Chronon configs: expected production/ and teams.json (Airbnb layout) \
         or compiled/ (Zipline layout)"
    )]
    NotARepo { path: PathBuf },
}
