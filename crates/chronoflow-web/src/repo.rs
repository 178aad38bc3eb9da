//! The repo pages: configs and their diagnostics, a dry-run check of an edited config (what the
//! scheduler would run differently), lineage, and freshness of the tables the configs write.
//!
//! The repo and its plan are loaded once and shared ([`RepoCache`]): every page reads the same
//! snapshot, and a change on disk is picked up within a few seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chronoflow_config::naming::normalize_join_name;
use chronoflow_config::{
    ConfigKind, Diagnostic, Layout, LoadedConfig, PartitionDate, Repo, RepoFile, Severity,
};
use chronoflow_engine::{EngineError, TableName, Warehouse};
use chronoflow_plan::{Mode, Plan, Schedule, TaskKind};
use chronoflow_scheduler::SchedulerError;
use chronoflow_scheduler::spec::{DagSpec, specs_from_plan};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::WebState;
use crate::error::{Result, WebError};

/// How long a loaded repo is used without looking at the disk again.
const FRESH_FOR: Duration = Duration::from_secs(3);
/// Milliseconds per day.
const DAY_MS: i64 = 86_400_000;
/// The largest config text `configs/check` takes (compiled configs are a few KB).
const MAX_CHECK_BYTES: usize = 4 << 20;

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/ui/freshness", get(freshness))
        .route("/api/v1/ui/lineage", get(lineage))
        .route("/api/v1/ui/configs", get(configs))
        .route("/api/v1/ui/configs/check", post(check))
        // Config names may hold a `/` (`quickstart/training_set.v2`): a wildcard.
        .route("/api/v1/ui/configs/{*name}", get(config))
}

// ---------------------------------------------------------------------------------------------
// The cache

/// A loaded repo and its plan, as of one look at the disk.
pub(crate) struct LoadedRepo {
    pub(crate) repo: Repo,
    pub(crate) plan: Plan,
    /// What the files looked like when loaded: a different fingerprint means reload.
    fingerprint: Fingerprint,
}

/// Every file the loader reads, with its size and modification time (sorted by path).
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The repo and plan every page reads. Within [`FRESH_FOR`] of the last look the cached value is
/// used without any IO; after that, the files are listed (off the runtime) and the repo is
/// reloaded only if a file was added, removed, or changed size or mtime. Requests arriving while a
/// load runs wait for it (the lock is held across the load) instead of loading again.
#[derive(Default)]
pub(crate) struct RepoCache {
    slot: tokio::sync::Mutex<Option<(Instant, Arc<LoadedRepo>)>>,
}

impl RepoCache {
    pub(crate) async fn get(&self, dir: &Path) -> Result<Arc<LoadedRepo>> {
        let mut slot = self.slot.lock().await;
        if let Some((checked, loaded)) = slot.as_ref()
            && checked.elapsed() < FRESH_FOR
        {
            return Ok(loaded.clone());
        }
        let previous = slot.as_ref().map(|(_, loaded)| loaded.clone());
        let dir = dir.to_owned();
        let loaded = blocking(move || {
            let fingerprint = fingerprint(&dir)?;
            if let Some(previous) = previous
                && previous.fingerprint == fingerprint
            {
                return Ok(previous);
            }
            let repo = chronoflow_config::fs::load_repo(&dir).map_err(|e| repo_error(&dir, e))?;
            let plan = chronoflow_plan::plan(&repo);
            Ok(Arc::new(LoadedRepo {
                repo,
                plan,
                fingerprint,
            }))
        })
        .await?;
        *slot = Some((Instant::now(), loaded.clone()));
        Ok(loaded)
    }
}

/// Runs `f` on the blocking pool: loading and planning are CPU and file work.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(format!("loading the repo failed: {e}")))?
}

/// A failure of the system (not of the request): answered 500 with the message.
fn internal(message: String) -> WebError {
    WebError::Scheduler(SchedulerError::Io(std::io::Error::other(message)))
}

fn repo_error(dir: &Path, e: impl std::fmt::Display) -> WebError {
    internal(format!("config repo {}: {e}", dir.display()))
}

/// The files [`chronoflow_config::fs::read_repo_files`] would read, with size and mtime.
fn fingerprint(dir: &Path) -> Result<Fingerprint> {
    let mut out = Vec::new();
    for layout in chronoflow_config::fs::detect_layouts(dir) {
        match layout {
            Layout::Airbnb { prefix } => {
                stat_into(&dir.join(&prefix).join("teams.json"), &mut out);
                walk(&dir.join(&prefix).join("production"), &mut out)
                    .map_err(|e| repo_error(dir, e))?;
            }
            Layout::Zipline { prefix } => {
                for kind in [
                    "group_bys",
                    "joins",
                    "staging_queries",
                    "models",
                    "teams_metadata",
                ] {
                    walk(&dir.join(&prefix).join(kind), &mut out)
                        .map_err(|e| repo_error(dir, e))?;
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn stat_into(path: &Path, out: &mut Fingerprint) {
    // A file that vanished between listing and stat is simply not part of this look.
    if let Ok(meta) = std::fs::metadata(path)
        && meta.is_file()
    {
        out.push((path.to_owned(), meta.len(), meta.modified().ok()));
    }
}

fn walk(dir: &Path, out: &mut Fingerprint) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        // `metadata` follows symlinks, as the loader does.
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            stat_into(&path, out);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Configs

#[derive(Serialize)]
struct ConfigSummary {
    name: String,
    kind: ConfigKind,
    team: String,
    file: String,
    errors: usize,
    warnings: usize,
}

#[derive(Serialize)]
struct DiagnosticView<'a> {
    severity: Severity,
    code: &'static str,
    file: &'a str,
    path: &'a str,
    message: String,
}

impl<'a> DiagnosticView<'a> {
    fn of(d: &'a Diagnostic) -> Self {
        // The message carries expected/found, as `chronoflow check` prints them.
        let message = match (&d.expected, &d.found) {
            (Some(e), Some(x)) => format!("{} (expected {e}, found {x})", d.message),
            (Some(e), None) => format!("{} (expected {e})", d.message),
            (None, Some(x)) => format!("{} (found {x})", d.message),
            (None, None) => d.message.clone(),
        };
        DiagnosticView {
            severity: d.severity,
            code: d.code.as_str(),
            file: &d.file,
            path: &d.path,
            message,
        }
    }
}

/// A config file that did not load (it has errors): named from where it lives, since its name
/// field may be what is broken.
struct BrokenConfig {
    name: String,
    kind: ConfigKind,
    team: String,
    file: String,
}

/// Config files with errors that yielded no config, named `<team>.<file name>`.
fn broken_configs(repo: &Repo, plan: &Plan) -> Vec<BrokenConfig> {
    let loaded: BTreeSet<&str> = repo.configs.iter().map(|c| c.path.as_str()).collect();
    let mut files: BTreeSet<&str> = BTreeSet::new();
    for d in plan.diagnostics.iter().filter(|d| d.is_error()) {
        if !loaded.contains(d.file.as_str()) {
            files.insert(&d.file);
        }
    }
    files
        .into_iter()
        .filter_map(|file| {
            let (kind, team, name) = config_location(&repo.layouts, file)?;
            Some(BrokenConfig {
                name: format!("{team}.{name}"),
                kind,
                team: team.to_owned(),
                file: file.to_owned(),
            })
        })
        .collect()
}

/// The kind, team and file name of a config path under one of `layouts`, or `None` when the path
/// is not where configs live.
fn config_location<'a>(
    layouts: &[Layout],
    path: &'a str,
) -> Option<(ConfigKind, &'a str, &'a str)> {
    layouts.iter().find_map(|layout| {
        let rest = match layout {
            Layout::Airbnb { prefix } => path
                .strip_prefix(prefix.as_str())?
                .strip_prefix("production/")?,
            Layout::Zipline { prefix } => path.strip_prefix(prefix.as_str())?,
        };
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [dir, team, file] => Some((ConfigKind::from_directory(dir)?, *team, *file)),
            _ => None,
        }
    })
}

fn counts(plan: &Plan, file: &str) -> (usize, usize) {
    let mut errors = 0;
    let mut warnings = 0;
    for d in plan.diagnostics.iter().filter(|d| d.file == file) {
        match d.severity {
            Severity::Error => errors += 1,
            Severity::Warning => warnings += 1,
            Severity::Notice => {}
        }
    }
    (errors, warnings)
}

async fn configs(State(ctx): State<WebState>) -> Result<Json<Value>> {
    let loaded = ctx.repo_cache.get(&ctx.repo_dir).await?;
    let (repo, plan) = (&loaded.repo, &loaded.plan);
    let mut out: Vec<ConfigSummary> = repo
        .configs
        .iter()
        .map(|c| {
            let (errors, warnings) = counts(plan, &c.path);
            ConfigSummary {
                name: c.name().to_owned(),
                kind: c.kind(),
                team: c.team.clone(),
                file: c.path.clone(),
                errors,
                warnings,
            }
        })
        .collect();
    out.extend(broken_configs(repo, plan).into_iter().map(|b| {
        let (errors, warnings) = counts(plan, &b.file);
        ConfigSummary {
            name: b.name,
            kind: b.kind,
            team: b.team,
            file: b.file,
            errors,
            warnings,
        }
    }));
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.file.cmp(&b.file)));
    Ok(Json(json!({ "configs": out })))
}

#[derive(Serialize)]
struct JobPlacement {
    job: String,
    mode: &'static str,
    dag_id: Option<String>,
    task_id: Option<String>,
}

/// Where the jobs of config `name` run: one entry per task that runs one of them (a job in a
/// scheduled and a manual DAG appears twice), and jobs placed in no DAG with `null`s.
fn placements(plan: &Plan, name: &str) -> Vec<JobPlacement> {
    let jobs: BTreeMap<&str, Mode> = plan
        .jobs
        .iter()
        .filter(|j| j.config == name)
        .map(|j| (j.id.as_str(), j.mode))
        .collect();
    let mut out = Vec::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    for dag in &plan.dags {
        for task in &dag.tasks {
            let ran: Vec<&str> = match &task.kind {
                TaskKind::Job { job, .. } => vec![job.as_str()],
                TaskKind::MetadataUpload { jobs } => jobs.iter().map(String::as_str).collect(),
                _ => Vec::new(),
            };
            for job in ran {
                if let Some((id, mode)) = jobs.get_key_value(job) {
                    placed.insert(id);
                    out.push(JobPlacement {
                        job: (*id).to_owned(),
                        mode: mode.as_str(),
                        dag_id: Some(dag.dag_id.clone()),
                        task_id: Some(task.task_id.clone()),
                    });
                }
            }
        }
    }
    for (id, mode) in &jobs {
        if !placed.contains(id) {
            out.push(JobPlacement {
                job: (*id).to_owned(),
                mode: mode.as_str(),
                dag_id: None,
                task_id: None,
            });
        }
    }
    out
}

async fn config(
    State(ctx): State<WebState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>> {
    let loaded = ctx.repo_cache.get(&ctx.repo_dir).await?;
    let (repo, plan) = (&loaded.repo, &loaded.plan);
    let wanted = normalize_join_name(&name);
    let (name, kind, team, file) = match repo.config(&wanted) {
        Some(c) => (
            c.name().to_owned(),
            c.kind(),
            c.team.clone(),
            c.path.clone(),
        ),
        None => {
            let broken = broken_configs(repo, plan)
                .into_iter()
                .find(|b| b.name == wanted || b.file == name)
                .ok_or_else(|| WebError::NotFound(format!("no config named {name:?}")))?;
            (broken.name, broken.kind, broken.team, broken.file)
        }
    };
    // The text as on disk now (it may have changed since the cached load; diagnostics are of
    // the load). Not JSON → `null`; the diagnostics say why.
    let text = tokio::fs::read(ctx.repo_dir.join(&file))
        .await
        .map_err(|e| internal(format!("reading {file}: {e}")))?;
    let json: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
    let diagnostics: Vec<DiagnosticView> = plan
        .diagnostics
        .iter()
        .filter(|d| d.file == file)
        .map(DiagnosticView::of)
        .collect();
    Ok(Json(json!({
        "name": name,
        "kind": kind,
        "team": team,
        "file": file,
        "json": json,
        "diagnostics": diagnostics,
        "jobs": placements(plan, &name),
    })))
}

// ---------------------------------------------------------------------------------------------
// Check: what an edited config would change, applied nowhere

#[derive(Deserialize)]
struct CheckRequest {
    file: String,
    json: String,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct PlanDiff {
    added: Vec<String>,
    changed: Vec<DagChange>,
    removed: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct DagChange {
    dag_id: String,
    tasks_added: Vec<String>,
    tasks_removed: Vec<String>,
    tasks_changed: Vec<String>,
}

/// Checks `file` as a config path of the repo: relative, `/`-separated, no `.`/`..`/empty or
/// hidden segments, and where one of `layouts` keeps configs. A path given without the layout's
/// prefix (`production/joins/team/name` in a repo under `compiled/`) gets it. Returns the path as
/// the repo names it.
fn config_path(layouts: &[Layout], file: &str) -> Result<String> {
    let bad = |why: &str| WebError::BadRequest(format!("file {file:?}: {why}"));
    if file.is_empty() {
        return Err(bad("empty"));
    }
    if file.starts_with('/') || file.contains('\\') || file.contains(':') {
        return Err(bad("must be a relative path with / separators"));
    }
    if file
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.starts_with('.'))
    {
        return Err(bad(
            "must not contain empty, '.', '..' or hidden path segments",
        ));
    }
    if config_location(layouts, file).is_some() {
        return Ok(file.to_owned());
    }
    for layout in layouts {
        let (Layout::Airbnb { prefix } | Layout::Zipline { prefix }) = layout;
        let prefixed = format!("{prefix}{file}");
        if !prefix.is_empty() && config_location(layouts, &prefixed).is_some() {
            return Ok(prefixed);
        }
    }
    let expected: Vec<String> = layouts
        .iter()
        .map(|l| match l {
            Layout::Airbnb { prefix } => format!("{prefix}production/<kind>/<team>/<name>"),
            Layout::Zipline { prefix } => format!("{prefix}<kind>/<team>/<name>"),
        })
        .collect();
    Err(bad(&format!(
        "not where this repo keeps configs (expected {}, kind one of group_bys, joins, staging_queries)",
        expected.join(" or ")
    )))
}

async fn check(
    State(ctx): State<WebState>,
    Json(request): Json<CheckRequest>,
) -> Result<Json<Value>> {
    if request.json.len() > MAX_CHECK_BYTES {
        return Err(WebError::BadRequest(format!(
            "the config text is {} bytes; at most {MAX_CHECK_BYTES} are checked",
            request.json.len()
        )));
    }
    let dir = ctx.repo_dir.clone();
    let config = ctx.scheduler_config.clone();
    let (diagnostics, diff) = blocking(move || {
        // The repo's files in memory, read once: the base and the edited plan come from the
        // same read, and the edit replaces (or adds) one file of it. This is what loading a
        // copy of the repo with the file written into it would see, without touching the disk.
        let files =
            chronoflow_config::fs::read_repo_files(&dir).map_err(|e| repo_error(&dir, e))?;
        let path = config_path(&files.layouts, &request.file)?;
        let mut edited = files.clone();
        match edited.files.iter_mut().find(|f| f.path == path) {
            Some(f) => f.contents = request.json.into_bytes(),
            None => edited.files.push(RepoFile {
                path: path.clone(),
                contents: request.json.into_bytes(),
            }),
        }
        let before = chronoflow_plan::plan(&chronoflow_config::repo::load(files));
        let after = chronoflow_plan::plan(&chronoflow_config::repo::load(edited));
        // The edited file's diagnostics, and any the edit caused elsewhere (a duplicate name,
        // a cycle through another config).
        let diagnostics: Vec<Diagnostic> = after
            .diagnostics
            .iter()
            .filter(|d| d.file == path || !before.diagnostics.contains(d))
            .cloned()
            .collect();
        let diff = diff_specs(
            &specs_from_plan(&before, &config),
            &specs_from_plan(&after, &config),
        );
        Ok((diagnostics, diff))
    })
    .await?;
    let diagnostics: Vec<DiagnosticView> = diagnostics.iter().map(DiagnosticView::of).collect();
    Ok(Json(json!({ "diagnostics": diagnostics, "diff": diff })))
}

/// DAGs by id, tasks by id within DAGs; a task changed when its spec (what the scheduler runs:
/// action, upstream, retries, the config's content hash) differs. A DAG whose own settings
/// changed (schedule, concurrency) is listed as changed even with no task changed.
pub(crate) fn diff_specs(before: &[DagSpec], after: &[DagSpec]) -> PlanDiff {
    let by_id = |specs: &[DagSpec]| -> BTreeMap<String, Value> {
        specs
            .iter()
            .map(|s| {
                (
                    s.dag_id.clone(),
                    serde_json::to_value(s).unwrap_or(Value::Null),
                )
            })
            .collect()
    };
    let (before, after) = (by_id(before), by_id(after));
    let mut diff = PlanDiff::default();
    for (dag_id, old) in &before {
        let Some(new) = after.get(dag_id) else {
            diff.removed.push(dag_id.clone());
            continue;
        };
        if old == new {
            continue;
        }
        let tasks = |dag: &Value| -> BTreeMap<String, Value> {
            dag.get("tasks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| Some((t.get("task_id")?.as_str()?.to_owned(), t.clone())))
                .collect()
        };
        let (old_tasks, new_tasks) = (tasks(old), tasks(new));
        diff.changed.push(DagChange {
            dag_id: dag_id.clone(),
            tasks_added: new_tasks
                .keys()
                .filter(|t| !old_tasks.contains_key(*t))
                .cloned()
                .collect(),
            tasks_removed: old_tasks
                .keys()
                .filter(|t| !new_tasks.contains_key(*t))
                .cloned()
                .collect(),
            tasks_changed: old_tasks
                .iter()
                .filter(|(t, spec)| new_tasks.get(*t).is_some_and(|n| n != *spec))
                .map(|(t, _)| t.clone())
                .collect(),
        });
    }
    diff.added = after
        .keys()
        .filter(|d| !before.contains_key(*d))
        .cloned()
        .collect();
    diff
}

// ---------------------------------------------------------------------------------------------
// Lineage

#[derive(Serialize)]
struct Node {
    id: String,
    kind: &'static str,
    label: String,
    link: String,
}

fn kind_name(kind: ConfigKind) -> &'static str {
    match kind {
        ConfigKind::GroupBy => "group_by",
        ConfigKind::Join => "join",
        ConfigKind::StagingQuery => "staging_query",
    }
}

/// Node ids carry their kind, so a table and a config of the same name stay two nodes.
fn table_id(table: &str) -> String {
    format!("table:{table}")
}

fn config_id(kind: ConfigKind, name: &str) -> String {
    format!("{}:{name}", kind_name(kind))
}

async fn lineage(State(ctx): State<WebState>) -> Result<Json<Value>> {
    let loaded = ctx.repo_cache.get(&ctx.repo_dir).await?;
    let (repo, plan) = (&loaded.repo, &loaded.plan);
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    let table = |nodes: &mut BTreeMap<String, Node>, name: &str| -> String {
        let id = table_id(name);
        nodes.entry(id.clone()).or_insert_with(|| Node {
            id: id.clone(),
            kind: "table",
            label: name.to_owned(),
            link: format!("/ui/tables/{name}"),
        });
        id
    };
    for c in &repo.configs {
        let id = config_id(c.kind(), c.name());
        nodes.insert(
            id.clone(),
            Node {
                id,
                kind: kind_name(c.kind()),
                label: c.name().to_owned(),
                link: format!("/ui/configs/{}", c.name()),
            },
        );
    }
    // Tables read and written, from the jobs (what the scheduler actually waits on and runs).
    for job in &plan.jobs {
        let config = config_id(job.kind, &job.config);
        for input in &job.inputs {
            let from = table(&mut nodes, &input.table);
            edges.insert((from, config.clone()));
        }
        for output in &job.outputs {
            let to = table(&mut nodes, output);
            edges.insert((config.clone(), to));
        }
    }
    // A Join computes its parts with their GroupBys' definitions.
    for c in &repo.configs {
        if let chronoflow_config::Config::Join(join) = &c.config {
            for part in &join.join_parts {
                let gb = config_id(ConfigKind::GroupBy, &part.group_by.metadata.name);
                if nodes.contains_key(&gb) {
                    edges.insert((gb, config_id(ConfigKind::Join, c.name())));
                }
            }
        }
    }
    let nodes: Vec<Node> = nodes.into_values().collect();
    let edges: Vec<[String; 2]> = edges.into_iter().map(|(a, b)| [a, b]).collect();
    Ok(Json(json!({ "nodes": nodes, "edges": edges })))
}

// ---------------------------------------------------------------------------------------------
// Freshness

#[derive(Serialize)]
struct FreshnessItem {
    kind: &'static str,
    name: String,
    table: String,
    newest: Option<String>,
    expected: Option<String>,
    lag_days: Option<i64>,
    schedule: Option<String>,
}

/// The date of `ms` (UTC).
pub(crate) fn date_of_ms(ms: i64) -> PartitionDate {
    PartitionDate::from_ymd(1970, 1, 1)
        .expect("1970-01-01 is a date")
        .add_days(ms.div_euclid(DAY_MS))
}

/// Where a config's output lands on a schedule: the scheduled job that writes a table (backfill
/// first, then upload), its table, and its DAG's schedule.
struct Scheduled<'a> {
    table: &'a str,
    schedule: &'a Schedule,
}

fn scheduled_output<'a>(plan: &'a Plan, config: &LoadedConfig) -> Option<Scheduled<'a>> {
    let mut best: Option<(Mode, Scheduled<'a>)> = None;
    for dag in plan.dags.iter().filter(|d| d.schedule != Schedule::Manual) {
        for task in &dag.tasks {
            let TaskKind::Job {
                job,
                config: c,
                mode,
            } = &task.kind
            else {
                continue;
            };
            if c != config.name() || !matches!(mode, Mode::Backfill | Mode::Upload) {
                continue;
            }
            let Some(table) = plan.job(job).and_then(|j| j.outputs.first()) else {
                continue;
            };
            if best.as_ref().is_none_or(|(m, _)| *mode < *m) {
                best = Some((
                    *mode,
                    Scheduled {
                        table,
                        schedule: &dag.schedule,
                    },
                ));
            }
        }
    }
    best.map(|(_, s)| s)
}

/// The newest partition of `table`, `None` when the table does not exist (or cannot be named in
/// the warehouse).
async fn newest_partition(warehouse: &Warehouse, table: &str) -> Result<Option<PartitionDate>> {
    let Ok(name) = TableName::parse(table) else {
        return Ok(None);
    };
    match warehouse.partitions(&name).await {
        Ok(p) => Ok(p.last().copied()),
        Err(EngineError::TableNotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn freshness(State(ctx): State<WebState>) -> Result<Json<Value>> {
    let loaded = ctx.repo_cache.get(&ctx.repo_dir).await?;
    let (repo, plan) = (&loaded.repo, &loaded.plan);
    // A daily job for `ds` D runs once D has ended: yesterday's partition is the newest due.
    let yesterday = date_of_ms(ctx.clock.now_ms()).add_days(-1);
    struct Want {
        kind: &'static str,
        name: String,
        table: String,
        expected: Option<PartitionDate>,
        schedule: Option<String>,
    }
    let mut wants: Vec<Want> = Vec::new();
    let mut written: BTreeSet<&str> = BTreeSet::new();
    for job in &plan.jobs {
        written.extend(job.outputs.iter().map(String::as_str));
    }
    for c in &repo.configs {
        let (table, schedule) = match scheduled_output(plan, c) {
            Some(s) => (s.table.to_owned(), Some(s.schedule)),
            None => (c.output_table(), None),
        };
        wants.push(Want {
            kind: kind_name(c.kind()),
            name: c.name().to_owned(),
            table,
            // Only daily schedules have a simple "due" partition; other crons show their lag
            // as unknown rather than wrong.
            expected: schedule.filter(|s| s.is_daily()).map(|_| yesterday),
            schedule: Some(schedule.map_or_else(|| "manual".to_owned(), |s| s.to_string())),
        });
    }
    // Source tables (read, written by no job of the repo): due as the daily jobs reading them
    // wait for them, `ds + offset` for yesterday's run.
    let daily_jobs: BTreeSet<&str> = plan
        .dags
        .iter()
        .filter(|d| d.schedule.is_daily())
        .flat_map(|d| d.tasks.iter())
        .filter_map(|t| match &t.kind {
            TaskKind::Job { job, .. } => Some(job.as_str()),
            _ => None,
        })
        .collect();
    let mut sources: BTreeMap<&str, Option<PartitionDate>> = BTreeMap::new();
    for job in &plan.jobs {
        for input in job
            .inputs
            .iter()
            .filter(|i| !written.contains(i.table.as_str()))
        {
            let due = daily_jobs
                .contains(job.id.as_str())
                .then(|| yesterday.add_days(input.offset_days))
                .filter(|_| input.applies_to(yesterday));
            let entry = sources.entry(input.table.as_str()).or_insert(None);
            *entry = (*entry).max(due);
        }
    }
    for (table, expected) in sources {
        wants.push(Want {
            kind: "table",
            name: table.to_owned(),
            table: table.to_owned(),
            expected,
            schedule: None,
        });
    }
    let newest = futures::future::try_join_all(
        wants
            .iter()
            .map(|w| newest_partition(&ctx.warehouse, &w.table)),
    )
    .await?;
    let items: Vec<FreshnessItem> = wants
        .into_iter()
        .zip(newest)
        .map(|(w, newest)| FreshnessItem {
            kind: w.kind,
            name: w.name,
            table: w.table,
            lag_days: match (newest, w.expected) {
                (Some(n), Some(e)) => Some(n.days_until(e)),
                _ => None,
            },
            newest: newest.map(|d| d.to_string()),
            expected: w.expected.map(|d| d.to_string()),
            schedule: w.schedule,
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn airbnb(prefix: &str) -> Vec<Layout> {
        vec![Layout::Airbnb {
            prefix: prefix.to_owned(),
        }]
    }

    #[test]
    fn config_paths_must_stay_inside_the_config_layout() {
        let layouts = airbnb("compiled/");
        assert_eq!(
            config_path(&layouts, "compiled/production/joins/team/x.v1").ok(),
            Some("compiled/production/joins/team/x.v1".to_owned())
        );
        // The prefix is added when the path starts at `production/`.
        assert_eq!(
            config_path(&layouts, "production/joins/team/x.v1").ok(),
            Some("compiled/production/joins/team/x.v1".to_owned())
        );
        for bad in [
            "",
            "/etc/passwd",
            "compiled/production/joins/../../../x",
            "compiled/production/joins/team/../x",
            "compiled/production/joins/team/.hidden",
            "compiled//production/joins/team/x",
            "compiled/production/models/team/x",
            "compiled/teams.json",
            "compiled/production/joins/team/sub/x",
            "C:\\x",
        ] {
            assert!(
                matches!(config_path(&layouts, bad), Err(WebError::BadRequest(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn dates_of_millis_are_utc_days() {
        assert_eq!(date_of_ms(0).to_string(), "1970-01-01");
        assert_eq!(date_of_ms(-1).to_string(), "1969-12-31");
        assert_eq!(date_of_ms(1_701_374_234_059).to_string(), "2023-11-30");
    }
}
