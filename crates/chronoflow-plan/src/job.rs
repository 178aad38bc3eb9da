//! Jobs (SPEC §3.1): what each config needs run, and which partitions each job reads and writes.

use std::fmt;

use chronoflow_config::naming::{self, sanitize};
use chronoflow_config::{
    Config, ConfigKind, Dialect, GroupBy, Join, LoadedConfig, PartitionDate, PartitionDependency,
    Repo, Source, StagingQuery, TableRef,
};
use serde::Serialize;

/// What a job does; the names are the `--mode`s Chronon users know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Backfill,
    Upload,
    UploadToKv,
    Streaming,
    MetadataUpload,
    LogFlattener,
    BuildComparisonTable,
    ConsistencyMetricsCompute,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Backfill => "backfill",
            Mode::Upload => "upload",
            Mode::UploadToKv => "upload-to-kv",
            Mode::Streaming => "streaming",
            Mode::MetadataUpload => "metadata-upload",
            Mode::LogFlattener => "log-flattener",
            Mode::BuildComparisonTable => "build-comparison-table",
            Mode::ConsistencyMetricsCompute => "consistency-metrics-compute",
        }
    }

    /// The mode in identifiers: `upload_to_kv`.
    pub fn snake(self) -> String {
        self.as_str().replace('-', "_")
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One job: a config run in one mode, for one `ds` at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// `<config name>/<mode>`, unique in the plan.
    pub id: String,
    pub config: String,
    pub kind: ConfigKind,
    pub mode: Mode,
    pub team: String,
    /// The compiled config, relative to the repo directory (what `--conf` takes).
    pub conf_path: String,
    pub dialect: Dialect,
    /// FNV-1a of the compiled file (what metadata uploads compare).
    pub content_hash: String,
    /// Tables this job writes (partition `ds` of each).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Partitions this job waits for, relative to its `ds`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<PartitionDependency>,
    /// The config's tags (`key:value`, see `MetaData::tags`): `machine:<profile>` picks a
    /// resource profile ([`crate::profile`]), `airflow:<group>` groups tasks in the Airflow export.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The resource profile the job runs with: `None` from [`crate::plan`], which reads only the
    /// repo; set by [`crate::profile::Profiles::apply`] from `chronoflow.toml`'s `[profiles]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::ResolvedProfile>,
}

impl Job {
    pub fn job_id(config: &str, mode: Mode) -> String {
        format!("{config}/{mode}")
    }
}

/// Chronon's shared fetch-log table (partitioned by `ds`, with one sub-partition
/// `name=<join name>` per Join), named by the `CHRONON_LOG_TABLE` environment variable. Without
/// it, a Join's log is the table chronoflow's fetcher writes, `<join output>_log` (one table per
/// Join, partitioned by `ds`), so the OOC DAG's sensor sees what the fetcher logged.
pub const LOG_TABLE_ENV: &str = "CHRONON_LOG_TABLE";

/// The partition column when neither the query, the config nor the team names one.
pub const DEFAULT_PARTITION_COLUMN: &str = "ds";

/// Derives every job of every loaded config, sorted by id.
pub fn jobs(repo: &Repo) -> Vec<Job> {
    let mut out = Vec::new();
    for loaded in &repo.configs {
        match &loaded.config {
            Config::GroupBy(gb) => group_by_jobs(repo, loaded, gb, &mut out),
            Config::Join(join) => join_jobs(repo, loaded, join, &mut out),
            Config::StagingQuery(sq) => staging_query_jobs(repo, loaded, sq, &mut out),
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn job(
    loaded: &LoadedConfig,
    mode: Mode,
    outputs: Vec<String>,
    inputs: Vec<PartitionDependency>,
) -> Job {
    Job {
        id: Job::job_id(loaded.name(), mode),
        config: loaded.name().to_owned(),
        kind: loaded.kind(),
        mode,
        team: loaded.team.clone(),
        conf_path: loaded.path.clone(),
        dialect: loaded.dialect,
        content_hash: loaded.content_hash.clone(),
        outputs,
        inputs,
        tags: loaded.config.metadata().tags(),
        profile: None,
    }
}

fn is_never(schedule: &str) -> bool {
    schedule.trim().eq_ignore_ascii_case("@never")
}

fn group_by_jobs(repo: &Repo, loaded: &LoadedConfig, gb: &GroupBy, out: &mut Vec<Job>) {
    let output = loaded.output_table();
    let inputs = group_by_dependencies(repo, loaded, gb);
    if gb.backfill_start_date.is_some() {
        out.push(job(
            loaded,
            Mode::Backfill,
            vec![output.clone()],
            inputs.clone(),
        ));
    }
    if gb.metadata.online {
        let upload = naming::upload_table(&output, loaded.dialect);
        out.push(job(loaded, Mode::Upload, vec![upload.clone()], inputs));
        out.push(job(
            loaded,
            Mode::UploadToKv,
            vec![],
            vec![dependency_on(&upload, DEFAULT_PARTITION_COLUMN, 0)],
        ));
        out.push(job(loaded, Mode::MetadataUpload, vec![], vec![]));
        if gb.is_streaming() {
            out.push(job(loaded, Mode::Streaming, vec![], vec![]));
        }
    }
}

fn join_jobs(repo: &Repo, loaded: &LoadedConfig, join: &Join, out: &mut Vec<Job>) {
    let output = loaded.output_table();
    if !is_never(join.metadata.offline_schedule()) {
        let mut outputs = vec![output.clone()];
        outputs.extend(
            join.join_parts
                .iter()
                .map(|p| naming::join_part_table(&output, &p.group_by.metadata.name)),
        );
        if !join.bootstrap_parts.is_empty() {
            outputs.push(naming::bootstrap_table(&output));
        }
        out.push(job(
            loaded,
            Mode::Backfill,
            outputs,
            join_dependencies(repo, loaded, join),
        ));
    }
    out.push(job(loaded, Mode::MetadataUpload, vec![], vec![]));
    let logging = join.metadata.sample_percent.unwrap_or(0.0) > 0.0;
    if join.metadata.check_consistency() && logging {
        let logged = naming::logged_table(&output);
        let comparison = naming::comparison_table(&output);
        let log_partition = log_partition_of(repo, join, &output, loaded.name());
        out.push(job(
            loaded,
            Mode::LogFlattener,
            vec![logged.clone()],
            vec![log_partition],
        ));
        out.push(job(
            loaded,
            Mode::BuildComparisonTable,
            vec![comparison.clone()],
            vec![dependency_on(&logged, DEFAULT_PARTITION_COLUMN, 0)],
        ));
        out.push(job(
            loaded,
            Mode::ConsistencyMetricsCompute,
            vec![naming::consistency_table(&output)],
            vec![dependency_on(&comparison, DEFAULT_PARTITION_COLUMN, 0)],
        ));
    }
}

/// The partition of the fetch log the OOC DAG waits for: the Join's sub-partition of Chronon's
/// shared log table when `CHRONON_LOG_TABLE` names one, else chronoflow's `<join output>_log`.
fn log_partition_of(
    repo: &Repo,
    join: &Join,
    output: &str,
    join_name: &str,
) -> PartitionDependency {
    let shared = repo
        .teams
        .layered_env(&join.metadata, Mode::LogFlattener.as_str(), "production")
        .get(LOG_TABLE_ENV)
        .cloned();
    match shared {
        Some(table) => {
            let mut partition = dependency_on(&table, DEFAULT_PARTITION_COLUMN, 0);
            partition
                .sub_partitions
                .push(("name".to_owned(), join_name.to_owned()));
            partition
        }
        None => dependency_on(
            &naming::fetch_log_table(output),
            DEFAULT_PARTITION_COLUMN,
            0,
        ),
    }
}

fn staging_query_jobs(repo: &Repo, loaded: &LoadedConfig, sq: &StagingQuery, out: &mut Vec<Job>) {
    if is_never(sq.metadata.offline_schedule()) {
        return;
    }
    let inputs = staging_query_dependencies(repo, loaded, sq);
    out.push(job(
        loaded,
        Mode::Backfill,
        vec![loaded.output_table()],
        inputs,
    ));
}

fn dependency_on(table: &str, partition_column: &str, offset_days: i64) -> PartitionDependency {
    PartitionDependency {
        table: table.to_owned(),
        partition_column: partition_column.to_owned(),
        offset_days,
        sub_partitions: Vec::new(),
        start: None,
        end: None,
    }
}

/// The partition column of a config: ZL `executionInfo.conf`, else its team's, else `ds`.
fn partition_column<'a>(repo: &'a Repo, loaded: &'a LoadedConfig) -> &'a str {
    loaded
        .config
        .metadata()
        .partition_column()
        .or_else(|| repo.teams.partition_column(&loaded.team))
        .unwrap_or(DEFAULT_PARTITION_COLUMN)
}

/// The dependencies a config declares (AB `metaData.dependencies`, ZL `airflowDependencies`),
/// or `None` when it declares none.
fn declared(loaded: &LoadedConfig) -> Option<Vec<PartitionDependency>> {
    let meta = loaded.config.metadata();
    match loaded.dialect {
        Dialect::Airbnb if !meta.dependencies.is_empty() => Some(meta.dependencies.clone()),
        _ => meta.custom_json.airflow_dependencies.clone(),
    }
}

fn lag(loaded: &LoadedConfig) -> i64 {
    -loaded.config.metadata().custom_json.lag.unwrap_or(0)
}

/// A GroupBy's dependencies: the declared ones, or else one per source table. A `joinSource`
/// always adds a wait on its parent Join's output: chaining needs the parent's partition.
fn group_by_dependencies(
    repo: &Repo,
    loaded: &LoadedConfig,
    gb: &GroupBy,
) -> Vec<PartitionDependency> {
    let column = partition_column(repo, loaded);
    let mut deps = declared(loaded).unwrap_or_else(|| {
        gb.sources
            .iter()
            .flat_map(|s| source_dependencies(repo, loaded, s, column, lag(loaded)))
            .collect()
    });
    for source in &gb.sources {
        if let Source::JoinSource(js) = source {
            let parent = parent_output_table(repo, loaded, &js.join);
            if !deps.iter().any(|d| d.table == parent) {
                deps.push(with_range(
                    dependency_on(&parent, column, lag(loaded)),
                    &js.query,
                ));
            }
        }
    }
    normalize(deps)
}

fn join_dependencies(repo: &Repo, loaded: &LoadedConfig, join: &Join) -> Vec<PartitionDependency> {
    let column = partition_column(repo, loaded);
    let deps = declared(loaded).unwrap_or_else(|| {
        let lag = lag(loaded);
        let mut deps = source_dependencies(repo, loaded, &join.left, column, lag);
        for part in &join.join_parts {
            for s in &part.group_by.sources {
                deps.extend(source_dependencies(repo, loaded, s, column, lag));
            }
        }
        for b in &join.bootstrap_parts {
            let mut d = table_dependency(&b.table, column, lag);
            if let Some(q) = &b.query {
                d = with_range(d, q);
            }
            deps.push(d);
        }
        deps
    });
    normalize(deps)
}

fn staging_query_dependencies(
    repo: &Repo,
    loaded: &LoadedConfig,
    sq: &StagingQuery,
) -> Vec<PartitionDependency> {
    let column = partition_column(repo, loaded);
    let deps = declared(loaded).unwrap_or_else(|| {
        sq.table_dependencies
            .iter()
            .map(|td| {
                let back = td.end_offset.map(|w| w.days_ceil()).unwrap_or(0);
                table_dependency(
                    &td.table,
                    td.partition_column.as_deref().unwrap_or(column),
                    -back,
                )
            })
            .collect()
    });
    normalize(deps)
}

fn source_dependencies(
    repo: &Repo,
    loaded: &LoadedConfig,
    source: &Source,
    config_column: &str,
    offset: i64,
) -> Vec<PartitionDependency> {
    let column = source
        .query()
        .partition_column
        .as_deref()
        .unwrap_or(config_column);
    let deps = match source {
        Source::Events(e) => vec![table_dependency(&e.table, column, offset)],
        Source::Entities(e) => {
            let mut deps = vec![table_dependency(&e.snapshot_table, column, offset)];
            deps.extend(
                e.mutation_table
                    .as_ref()
                    .map(|m| table_dependency(m, column, offset)),
            );
            deps
        }
        Source::JoinSource(js) => vec![dependency_on(
            &parent_output_table(repo, loaded, &js.join),
            column,
            offset,
        )],
    };
    deps.into_iter()
        .map(|d| with_range(d, source.query()))
        .collect()
}

fn table_dependency(table: &TableRef, column: &str, offset: i64) -> PartitionDependency {
    let mut d = dependency_on(&table.table, column, offset);
    d.sub_partitions = table.sub_partitions.clone();
    d
}

/// Chronon's own rule: `start` and `end` of a derived dependency are the query's partitions.
fn with_range(mut d: PartitionDependency, query: &chronoflow_config::Query) -> PartitionDependency {
    d.start = query.start_partition;
    d.end = query.end_partition;
    d
}

/// The output table of a parent Join: the repo's own config if it has one (its namespace may
/// come from its team), else what the inlined copy says.
fn parent_output_table(repo: &Repo, child: &LoadedConfig, parent: &Join) -> String {
    if let Some(p) = repo.config(&parent.metadata.name) {
        return p.output_table();
    }
    let namespace = parent
        .metadata
        .output_namespace
        .clone()
        .or_else(|| {
            repo.teams
                .namespace(parent.metadata.team.as_deref().unwrap_or(&child.team))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| child.namespace.clone());
    naming::output_table(&namespace, &parent.metadata.name)
}

/// Sorts and merges duplicates (same table, column, offset, sub-partitions): a merged
/// dependency waits whenever either did, so `end` is the later one (none if either has none).
pub fn normalize(mut deps: Vec<PartitionDependency>) -> Vec<PartitionDependency> {
    deps.sort();
    let mut out: Vec<PartitionDependency> = Vec::with_capacity(deps.len());
    for d in deps {
        match out.last_mut() {
            Some(last) if last.sensor_key() == d.sensor_key() => {
                last.start = min_option(last.start, d.start);
                last.end = match (last.end, d.end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => out.push(d),
        }
    }
    out
}

fn min_option(a: Option<PartitionDate>, b: Option<PartitionDate>) -> Option<PartitionDate> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => None,
    }
}

/// The identifier-safe form of a config name used in task ids.
pub fn config_slug(name: &str) -> String {
    sanitize(name)
}
