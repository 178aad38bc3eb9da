//! The commands Airflow tasks run, built here (not in the template) so every template runs the
//! same, correctly quoted commands: job commands per flavor, and the partition check.

use chronoflow_plan::{Job, Mode};
use serde::Deserialize;

/// What job tasks run (`command.flavor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    /// `chronoflow run --mode ... --repo ... --conf ... --ds ...`
    Chronoflow,
    /// Zipline's `zipline run --mode ... --conf ... --ds ...`
    Zipline,
    /// Chronon's `run.py --mode ... --conf ... --ds ...`
    RunPy,
}

/// The `[command]` params.
#[derive(Debug, Clone, Deserialize)]
pub struct CommandParams {
    pub flavor: Flavor,
    pub chronoflow: String,
    pub zipline: String,
    pub run_py: String,
    pub repo: String,
    pub warehouse: String,
    pub kv: String,
    pub artifact_prefix: String,
    pub version: String,
    pub enable_debug: bool,
    pub flink_parallelism: u32,
    pub extra_args: Vec<String>,
}

/// Airflow's template for the run's date, and for a manual run's range (params).
const DS: &str = "{{ ds }}";
const START_DS: &str = "{{ params.start_ds }}";
const END_DS: &str = "{{ params.end_ds }}";

/// Whether `chronoflow run` takes a date in this mode.
fn takes_dates(mode: Mode) -> bool {
    !matches!(mode, Mode::MetadataUpload | Mode::Streaming)
}

/// The argv of a job, with Airflow templates (`{{ ds }}`, `{{ params.start_ds }}`) where the
/// run's dates go. A manual DAG's run covers the range its params give.
pub fn job_argv(p: &CommandParams, repo: &str, job: &Job, manual: bool) -> Vec<String> {
    let mut argv: Vec<String> = match p.flavor {
        Flavor::Chronoflow => vec![p.chronoflow.clone(), "run".to_owned()],
        Flavor::Zipline => vec![p.zipline.clone(), "run".to_owned()],
        Flavor::RunPy => vec![p.run_py.clone()],
    };
    argv.extend(["--mode".to_owned(), job.mode.as_str().to_owned()]);
    if p.flavor == Flavor::Chronoflow {
        argv.extend(["--repo".to_owned(), repo.to_owned()]);
        if !p.warehouse.is_empty() {
            argv.extend(["--warehouse".to_owned(), p.warehouse.clone()]);
        }
        if !p.kv.is_empty() {
            argv.extend(["--kv".to_owned(), p.kv.clone()]);
        }
    }
    argv.extend(["--conf".to_owned(), job.conf_path.clone()]);
    if takes_dates(job.mode) {
        if manual {
            argv.extend([
                "--start-ds".to_owned(),
                START_DS.to_owned(),
                "--end-ds".to_owned(),
                END_DS.to_owned(),
            ]);
        } else {
            argv.extend(["--ds".to_owned(), DS.to_owned()]);
        }
    }
    if p.flavor != Flavor::Chronoflow {
        if !p.artifact_prefix.is_empty() {
            argv.extend(["--artifact-prefix".to_owned(), p.artifact_prefix.clone()]);
        }
        if !p.version.is_empty() {
            argv.extend(["--version".to_owned(), p.version.clone()]);
        }
        if p.enable_debug {
            argv.push("--enable-debug".to_owned());
        }
        if job.mode == Mode::Streaming && p.flink_parallelism > 0 {
            argv.extend(["--parallelism".to_owned(), p.flink_parallelism.to_string()]);
        }
    }
    argv.extend(p.extra_args.iter().cloned());
    argv
}

/// `chronoflow table partitions` (the partition check of sensors; `TABLE --require RANGE` is
/// appended at run time).
pub fn partitions_argv(p: &CommandParams) -> Vec<String> {
    let mut argv = vec![
        p.chronoflow.clone(),
        "table".to_owned(),
        "partitions".to_owned(),
    ];
    if !p.warehouse.is_empty() {
        argv.extend(["--warehouse".to_owned(), p.warehouse.clone()]);
    }
    argv
}

/// One shell word per argument. Airflow templates (`{{ ds }}`) stay unquoted: Airflow renders
/// them before bash runs, into a date (manual runs' params are validated as dates).
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_word(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_word(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./=:,@%+".contains(c);
    if arg == DS || arg == START_DS || arg == END_DS {
        return arg.to_owned();
    }
    if !arg.is_empty() && arg.chars().all(safe) {
        return arg.to_owned();
    }
    // Single quotes; a single quote inside ends the quoting, adds an escaped quote, restarts.
    // Braces are escaped from Airflow's Jinja too: `{{` in a value must reach bash as is.
    let quoted = format!("'{}'", arg.replace('\'', "'\\''"));
    if quoted.contains("{{") || quoted.contains("{%") || quoted.contains("{#") {
        // Jinja would render it; keep it literal.
        format!("{{% raw %}}{quoted}{{% endraw %}}")
    } else {
        quoted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        let argv: Vec<String> = ["chronoflow", "--conf", "a b", "it's", "{{ ds }}", "x{{y}}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            shell_join(&argv),
            "chronoflow --conf 'a b' 'it'\\''s' {{ ds }} {% raw %}'x{{y}}'{% endraw %}"
        );
    }
}
