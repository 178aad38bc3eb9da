//! Structured diagnostics: what is wrong, where (file and JSON path), what was expected and found.
//!
//! Loading never stops at the first problem: every decoder pushes diagnostics and carries on, so
//! one run of `chronoflow check` reports everything, and the configs without errors still plan.

use std::fmt;

use serde::Serialize;

/// How bad a diagnostic is. Only errors make `chronoflow check` fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config (or file) cannot be used: it is left out of the plan.
    Error,
    /// The config is used, but something in it is probably not what the author meant.
    Warning,
    /// Information: a feature chronoflow does not support yet, a field it ignores.
    Notice,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
        })
    }
}

/// A stable, machine-readable name for the kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiagnosticCode {
    /// The file is not valid JSON (or not UTF-8).
    InvalidJson,
    /// A field has the wrong JSON type.
    WrongType,
    /// A required field is absent.
    MissingField,
    /// A field has the right type but a value outside what it may hold.
    InvalidValue,
    /// A field chronoflow does not know; it is ignored.
    UnknownField,
    /// Valid Chronon that chronoflow does not support yet.
    Unsupported,
    /// A file that is not where the repo layout expects configs.
    UnexpectedFile,
    /// Two configs share one name, or two jobs one table.
    DuplicateName,
    /// Two columns of one output share a name: features, keys, derivations, Join parts.
    DuplicateColumn,
    /// A column a config reads (a key, an aggregation's input, a bucket) is not selected by the
    /// source it is read from.
    MissingColumn,
    /// The config disagrees with where it lives (team directory, file name) or with the configs
    /// it uses.
    Inconsistent,
    /// A config uses another config the repo does not hold (or holds only with errors).
    UnknownConfig,
    /// A team used by a config is not declared.
    UnknownTeam,
    /// Jobs that wait on each other.
    DependencyCycle,
    /// A file or directory of the repo that cannot be read: a dangling symlink, a symlink loop,
    /// no permission. The other files still load.
    UnreadableFile,
}

impl DiagnosticCode {
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosticCode::InvalidJson => "invalid-json",
            DiagnosticCode::WrongType => "wrong-type",
            DiagnosticCode::MissingField => "missing-field",
            DiagnosticCode::InvalidValue => "invalid-value",
            DiagnosticCode::UnknownField => "unknown-field",
            DiagnosticCode::Unsupported => "unsupported",
            DiagnosticCode::UnexpectedFile => "unexpected-file",
            DiagnosticCode::DuplicateName => "duplicate-name",
            DiagnosticCode::DuplicateColumn => "duplicate-column",
            DiagnosticCode::MissingColumn => "missing-column",
            DiagnosticCode::Inconsistent => "inconsistent",
            DiagnosticCode::UnknownConfig => "unknown-config",
            DiagnosticCode::UnknownTeam => "unknown-team",
            DiagnosticCode::DependencyCycle => "dependency-cycle",
            DiagnosticCode::UnreadableFile => "unreadable-file",
        }
    }
}

/// One problem found in a repo of compiled configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: DiagnosticCode,
    /// The file, relative to the repo root, with `/` separators.
    pub file: String,
    /// A JSON path into the file (`$.joinParts[0].groupBy.metaData.name`); `$` for the whole file.
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl Diagnostic {
    pub fn new(
        severity: Severity,
        code: DiagnosticCode,
        file: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity,
            code,
            file: file.into(),
            path: path.into(),
            message: message.into(),
            expected: None,
            found: None,
        }
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    pub fn found(mut self, found: impl Into<String>) -> Self {
        self.found = Some(found.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: {}: {}: {}",
            self.severity,
            self.code.as_str(),
            self.file,
            self.path,
            self.message
        )?;
        match (&self.expected, &self.found) {
            (Some(e), Some(x)) => write!(f, " (expected {e}, found {x})"),
            (Some(e), None) => write!(f, " (expected {e})"),
            (None, Some(x)) => write!(f, " (found {x})"),
            (None, None) => Ok(()),
        }
    }
}

/// Counts of diagnostics by severity.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiagnosticCounts {
    pub errors: usize,
    pub warnings: usize,
    pub notices: usize,
}

impl DiagnosticCounts {
    pub fn of<'a>(diagnostics: impl IntoIterator<Item = &'a Diagnostic>) -> Self {
        let mut counts = DiagnosticCounts::default();
        for d in diagnostics {
            match d.severity {
                Severity::Error => counts.errors += 1,
                Severity::Warning => counts.warnings += 1,
                Severity::Notice => counts.notices += 1,
            }
        }
        counts
    }
}
