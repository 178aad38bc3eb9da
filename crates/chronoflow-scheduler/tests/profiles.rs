//! Resource profiles through the executors: `[profiles]` in `chronoflow.toml`, each try's
//! profile resolved from its mode, team and config tags; the command executor passes it to argv
//! and env placeholders, the in-process executor logs it; a re-planning whose tags name an
//! undefined profile is refused.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chronoflow_config::{fs::read_repo_files, repo};
use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::executor::{Executor, Executors, NoopExecutor, TaskRun};
use chronoflow_scheduler::spec::{JobRef, profile_errors};

const PURCHASES: &str = "compiled/production/group_bys/quickstart/purchases.v1";

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart")
}

/// Backfills are large and uploads small for every team; team quickstart's uploads to the
/// KV store get their own profile.
const PROFILES: &str = r#"
[profiles.modes]
backfill = "large"
upload = "small"
[profiles.teams.quickstart]
upload-to-kv = "kv"
[profiles.large]
cpu = 8
memory = "32g"
cluster = { workers = 10 }
pool = "backfills"
[profiles.small]
cpu = 1
memory = "2g"
cluster = "local[1]"
[profiles.kv]
queue = "kv-loads"
"#;

/// A command executor whose argv writes its profile placeholders and env to `<task>.out`.
fn config(profiles: &str) -> Arc<SchedulerConfig> {
    let script = r#"printf '%s|%s|%s|%s|%s|%s|%s\n' "$1" "$2" "$3" "$4" "$CHRONOFLOW_PROFILE" "$CHRONOFLOW_PROFILE_MEMORY" "$SPARK_MEM" > "$0.out""#;
    Arc::new(
        SchedulerConfig::parse(&format!(
            "default_executor = \"cmd\"\n[executors.cmd]\nkind = \"command\"\nargv = [\"sh\", \"-c\", {script:?}, \"{{task_id}}\", \"{{profile.name}}\", \"{{profile.cpu}}\", \"--memory={{profile.memory}}\", \"{{profile.cluster}}\"]\nenv = {{ SPARK_MEM = \"{{profile.memory}}\" }}\n{profiles}"
        ))
        .unwrap(),
    )
}

fn task(dir: &Path, config: &str, conf_path: &str, mode: &str) -> TaskRun {
    let task_id = format!("{}__{}", config.replace('.', "_"), mode.replace('-', "_"));
    TaskRun {
        dag_id: "d".into(),
        run_id: "manual__1".into(),
        task_id: dir.join(&task_id).display().to_string(),
        try_number: 1,
        ds: "2023-11-29".into(),
        start_ds: "2023-11-29".into(),
        end_ds: "2023-11-29".into(),
        job: JobRef {
            job: format!("{config}/{mode}"),
            config: config.into(),
            mode: mode.into(),
            team: "quickstart".into(),
            conf_path: conf_path.into(),
            content_hash: String::new(),
        },
        log_path: dir.join(format!("{task_id}.log")),
    }
}

async fn run_and_read(executor: &dyn Executor, t: &TaskRun) -> String {
    let report = executor.run(t).await;
    assert_eq!(report.result, Ok(()), "{}", read(&t.log_path));
    read(Path::new(&format!("{}.out", t.task_id)))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{}: {e}>", path.display()))
}

#[tokio::test]
async fn a_backfill_and_an_upload_of_one_team_get_different_profiles_in_argv_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(PROFILES);
    let executors = Executors::new(
        config,
        Arc::new(NoopExecutor::default()),
        Some(quickstart()),
    );
    let cmd = executors.for_team("quickstart");
    let backfill = task(dir.path(), "quickstart.training_set.v1", "", "backfill");
    let upload = task(dir.path(), "quickstart.purchases.v1", PURCHASES, "upload");
    let to_kv = task(
        dir.path(),
        "quickstart.purchases.v1",
        PURCHASES,
        "upload-to-kv",
    );
    let streaming = task(dir.path(), "quickstart.returns.v1", "", "streaming");
    assert_eq!(
        run_and_read(cmd.as_ref(), &backfill).await,
        "large|8|--memory=32g|{\"workers\":10}|large|32g|32g\n"
    );
    assert_eq!(
        run_and_read(cmd.as_ref(), &upload).await,
        "small|1|--memory=2g|local[1]|small|2g|2g\n"
    );
    // A profile may leave fields unset: their placeholders are empty, their variables absent.
    assert_eq!(
        run_and_read(cmd.as_ref(), &to_kv).await,
        "kv||--memory=||kv||\n"
    );
    // Nothing selects a profile for streaming: every placeholder is empty.
    assert_eq!(
        run_and_read(cmd.as_ref(), &streaming).await,
        "||--memory=||||\n"
    );
    // The try's log names the profile and what selected it.
    let log = read(&backfill.log_path);
    assert!(
        log.starts_with(
            "profile large (selected by profiles.modes.backfill): cpu=8 memory=32g cluster={\"workers\":10} pool=backfills\n$ sh -c"
        ),
        "{log}"
    );
    assert!(read(&to_kv.log_path).starts_with(
        "profile kv (selected by profiles.teams.quickstart.upload-to-kv): queue=kv-loads\n"
    ));
}

/// A config's `machine:` tag wins over every selector; the tags are read from the repo the
/// executor runs in.
#[tokio::test]
async fn a_config_tag_overrides_the_mode_and_team_selectors() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    copy_dir(&quickstart(), &repo_dir);
    tag_purchases(&repo_dir, "large");
    let executors = Executors::new(
        config(PROFILES),
        Arc::new(NoopExecutor::default()),
        Some(repo_dir.clone()),
    );
    let cmd = executors.for_team("quickstart");
    let upload = task(dir.path(), "quickstart.purchases.v1", PURCHASES, "upload");
    assert_eq!(
        run_and_read(cmd.as_ref(), &upload).await,
        "large|8|--memory=32g|{\"workers\":10}|large|32g|32g\n"
    );
    assert!(read(&upload.log_path).starts_with(
        "profile large (selected by tag machine:large of config quickstart.purchases.v1)"
    ));
    // A tag naming no profile fails the try with the tag and the config named.
    tag_purchases(&repo_dir, "huge");
    let executors = Executors::new(
        config(PROFILES),
        Arc::new(NoopExecutor::default()),
        Some(repo_dir),
    );
    let report = executors.for_team("quickstart").run(&upload).await;
    let err = report.result.unwrap_err();
    assert_eq!(
        err,
        "tag machine:huge of config quickstart.purchases.v1 names profile \"huge\", which is not defined (defined: kv, large, small)"
    );
}

/// The in-process executor runs in the worker: it logs the profile and never fails on it.
#[tokio::test]
async fn the_in_process_executor_logs_the_profile_and_runs_even_with_a_bad_tag() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    copy_dir(&quickstart(), &repo_dir);
    let config = Arc::new(
        SchedulerConfig::parse(&format!("default_executor = \"in_process\"\n{PROFILES}")).unwrap(),
    );
    let executors = Executors::new(
        config.clone(),
        Arc::new(NoopExecutor::default()),
        Some(repo_dir.clone()),
    );
    let engine = executors.for_team("quickstart");
    let backfill = task(dir.path(), "quickstart.training_set.v1", "", "backfill");
    let upload = task(dir.path(), "quickstart.purchases.v1", PURCHASES, "upload");
    assert_eq!(engine.run(&backfill).await.result, Ok(()));
    assert_eq!(engine.run(&upload).await.result, Ok(()));
    assert_eq!(
        read(&backfill.log_path),
        "profile large (selected by profiles.modes.backfill): cpu=8 memory=32g cluster={\"workers\":10} pool=backfills\n"
    );
    assert_eq!(
        read(&upload.log_path),
        "profile small (selected by profiles.modes.upload): cpu=1 memory=2g cluster=local[1]\n"
    );
    tag_purchases(&repo_dir, "huge");
    let executors = Executors::new(config, Arc::new(NoopExecutor::default()), Some(repo_dir));
    let upload = task(
        dir.path(),
        "quickstart.purchases.v1",
        PURCHASES,
        "upload-to-kv",
    );
    assert_eq!(
        executors.for_team("quickstart").run(&upload).await.result,
        Ok(())
    );
    let log = read(&upload.log_path);
    assert!(
        log.starts_with(
            "profile: tag machine:huge of config quickstart.purchases.v1 names profile \"huge\""
        ),
        "{log}"
    );
}

/// Without `[profiles]`, nothing changes: no log line, empty placeholders, no variables.
#[tokio::test]
async fn without_profiles_placeholders_are_empty_and_logs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let executors = Executors::new(
        config(""),
        Arc::new(NoopExecutor::default()),
        Some(quickstart()),
    );
    let backfill = task(dir.path(), "quickstart.training_set.v1", "", "backfill");
    assert_eq!(
        run_and_read(executors.for_team("quickstart").as_ref(), &backfill).await,
        "||--memory=||||\n"
    );
    assert!(read(&backfill.log_path).starts_with("$ sh -c"));
}

#[test]
fn profiles_in_chronoflow_toml_are_checked_at_load_time() {
    let err = SchedulerConfig::parse("[profiles.modes]\nbackfill = \"huge\"\n").unwrap_err();
    assert_eq!(
        err,
        "profiles.modes.backfill names profile \"huge\", which is not defined (defined: none)"
    );
    let err = SchedulerConfig::parse("[profiles.large]\ncpu = 8\nram = \"1g\"\n").unwrap_err();
    assert!(
        err.contains("profiles.large") && err.contains("ram"),
        "{err}"
    );
    let err =
        SchedulerConfig::parse("[profiles.teams.t]\nbackfil = \"l\"\n[profiles.l]\n").unwrap_err();
    assert!(err.starts_with("profiles.teams.t.backfil:"), "{err}");
}

/// Re-planning a repo whose tag names an undefined profile reports it (the binary refuses to
/// apply such a plan); the quickstart as shipped has none.
#[test]
fn profile_errors_of_a_plan_name_the_tag_and_config() {
    let config = config(PROFILES);
    let plan = chronoflow_plan::plan(&repo::load(read_repo_files(&quickstart()).unwrap()));
    assert!(profile_errors(&plan, &config).is_empty());
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&quickstart(), dir.path());
    tag_purchases(dir.path(), "huge");
    let plan = chronoflow_plan::plan(&repo::load(read_repo_files(dir.path()).unwrap()));
    // One message for the config, not one per job of it.
    assert_eq!(
        profile_errors(&plan, &config),
        [
            "tag machine:huge of config quickstart.purchases.v1 names profile \"huge\", which is not defined (defined: kv, large, small)"
        ]
    );
}

/// Gives the quickstart's purchases GroupBy the AB tag `machine:<profile>`.
fn tag_purchases(repo_dir: &Path, profile: &str) {
    let path = repo_dir.join(PURCHASES);
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let custom = serde_json::json!({"lag": 0, "groupby_tags": {"machine": profile}});
    value["metaData"]["customJson"] = serde_json::Value::String(custom.to_string());
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
