//! The one error type of the Airflow export: every variant names what was wrong and where.

/// Why an export failed. Nothing is written when any of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum AirflowError {
    /// A params file that is not valid TOML, or whose layout is wrong.
    #[error("params file {file}: {message}")]
    ParamsFile { file: String, message: String },
    /// A parameter the export does not know (set in a params file or with `--param`).
    #[error(
        "{origin}: unknown param {key:?}; known params: {known} (free-form values go under `vars.`)"
    )]
    UnknownParam {
        origin: String,
        key: String,
        known: String,
    },
    /// A parameter given a value of the wrong type or outside its allowed values.
    #[error("{origin}: param {key:?} = {value}: {reason}")]
    BadParam {
        origin: String,
        key: String,
        value: String,
        reason: String,
    },
    /// A section of the params file for a DAG or team the plan does not have.
    #[error(
        "params file {file}: section [{section}] names no {what} of the plan; the plan has: {known}"
    )]
    UnknownSection {
        file: String,
        section: String,
        what: &'static str,
        known: String,
    },
    /// A grouping tag that cannot name an Airflow task.
    #[error("config {config}: bad grouping tag {tag:?}: {reason}")]
    BadTag {
        config: String,
        tag: String,
        reason: String,
    },
    /// A config carrying more than one grouping tag.
    #[error(
        "config {config} has two grouping tags, {first:?} and {second:?}: a job can be in one group only"
    )]
    TwoGroups {
        config: String,
        first: String,
        second: String,
    },
    /// Merging the grouped jobs of a DAG into one task each would make its tasks wait on each other.
    #[error("DAG {dag_id}: grouping creates a cycle: {cycle}")]
    GroupCycle { dag_id: String, cycle: String },
    /// A group's task id is already the id of another task of its DAG.
    #[error("DAG {dag_id}: group {group:?} would be task {task_id}, which the DAG already has")]
    GroupIdTaken {
        dag_id: String,
        group: String,
        task_id: String,
    },
    /// A `[profiles]` section that does not load, or a job whose profile does not resolve.
    #[error("{file}: {message}")]
    Profiles { file: String, message: String },
    /// The template does not parse, or rendering it failed (an undefined variable, a bad filter...).
    #[error("template {name}, line {line}: {message}")]
    Template {
        name: String,
        line: usize,
        message: String,
    },
}
