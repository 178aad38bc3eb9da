//! The planner: from a loaded repo to jobs, DAGs and every dependency between them.
//!
//! Planning is pure and deterministic: [`plan`] reads nothing but its argument, and the same repo
//! always gives the same plan, byte for byte once serialized (everything is sorted). The JSON
//! form of [`Plan`] is the contract the scheduler consumes (see `docs/plan-format.md`).

pub mod cycles;
pub mod dag;
pub mod job;
pub mod partitions;
pub mod profile;
pub mod render;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};

use chronoflow_config::decode::JsonPath;
use chronoflow_config::naming::sanitize;
use chronoflow_config::{Config, ConfigKind, Diagnostic, DiagnosticCode, Layout, Repo, Severity};
use serde::Serialize;

pub use dag::{Dag, DagKind, Task, TaskKind};
pub use job::{Job, Mode};
pub use schedule::Schedule;

use dag::{DagBuilder, Placement, defaults};

/// The version of the JSON plan format; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// Everything the scheduler needs to run a repo.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub format_version: u32,
    pub layouts: Vec<Layout>,
    /// Sorted by id.
    pub jobs: Vec<Job>,
    /// Sorted by DAG id.
    pub dags: Vec<Dag>,
    /// What loading and planning found (sorted by file, severity, path).
    pub diagnostics: Vec<Diagnostic>,
}

impl Plan {
    pub fn dag(&self, dag_id: &str) -> Option<&Dag> {
        self.dags
            .binary_search_by(|d| d.dag_id.as_str().cmp(dag_id))
            .ok()
            .map(|i| &self.dags[i])
    }

    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs
            .binary_search_by(|j| j.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.jobs[i])
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Plans a loaded repo. Configs with errors were already left out by the loader; configs that
/// plan into a dependency cycle are left out here, with an error naming the cycle.
pub fn plan(repo: &Repo) -> Plan {
    let mut diagnostics = repo.diagnostics.clone();
    let paths: BTreeMap<&str, &str> = repo
        .configs
        .iter()
        .map(|c| (c.name(), c.path.as_str()))
        .collect();
    let all_jobs = job::jobs(repo);

    let producers = producers(&all_jobs, &paths, &mut diagnostics);
    let excluded = configs_in_cycles(&all_jobs, &producers, &paths, &mut diagnostics);
    let jobs: Vec<Job> = all_jobs
        .into_iter()
        .filter(|j| !excluded.contains(&j.config))
        .collect();
    let job_ids: BTreeSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let producers: BTreeMap<String, String> = producers
        .into_iter()
        .filter(|(_, job_id)| job_ids.contains(job_id.as_str()))
        .collect();

    let slugs = config_slugs(repo, &mut diagnostics);
    let join_schedules = join_schedules(repo, &mut diagnostics);

    let mut builders: BTreeMap<String, DagBuilder> = BTreeMap::new();
    let mut scheduled: BTreeMap<String, Placement> = BTreeMap::new();
    let mut manual: BTreeMap<String, Placement> = BTreeMap::new();
    let mut metadata_jobs: BTreeMap<String, Vec<String>> = BTreeMap::new();

    for job in &jobs {
        let team = sanitize(&job.team);
        let task_id = format!("{}__{}", slugs[job.config.as_str()], job.mode.snake());
        if job.mode == Mode::MetadataUpload {
            metadata_jobs.entry(team).or_default().push(job.id.clone());
            continue;
        }
        let scheduled_dag = match dag::scheduled_dag_family(job) {
            Some(DagKind::GroupByBatch) if !group_by_is_scheduled(repo, &job.config) => None,
            Some(DagKind::GroupByBatch) => Some(new_dag(
                format!("chronon_gb_batch_{team}"),
                DagKind::GroupByBatch,
                Some(&job.team),
                Schedule::daily(),
            )),
            Some(DagKind::GroupByStreaming) => Some(new_dag(
                format!("chronon_gb_streaming_{team}"),
                DagKind::GroupByStreaming,
                Some(&job.team),
                Schedule::Interval {
                    minutes: defaults::STREAMING_INTERVAL_MINUTES,
                },
            )),
            Some(DagKind::Join) => match join_schedules.get(job.config.as_str()).cloned().flatten()
            {
                Some(schedule) => {
                    let dag_id = if schedule.is_daily() {
                        format!("chronon_join_{team}")
                    } else {
                        format!("chronon_join_{team}__{}", schedule.slug())
                    };
                    Some(new_dag(dag_id, DagKind::Join, Some(&job.team), schedule))
                }
                None => None,
            },
            Some(DagKind::JoinConsistency) => Some(new_dag(
                format!("chronon_join_ooc_{team}"),
                DagKind::JoinConsistency,
                Some(&job.team),
                Schedule::daily(),
            )),
            Some(DagKind::StagingQuery) => Some(new_dag(
                format!("chronon_staging_query_{team}"),
                DagKind::StagingQuery,
                Some(&job.team),
                Schedule::daily(),
            )),
            _ => None,
        };
        if let Some(dag) = scheduled_dag {
            place(&mut builders, dag, job, &task_id, &mut scheduled);
        }
        let manual_dag = match (job.kind, job.mode) {
            (ConfigKind::GroupBy, Mode::Backfill) => Some(new_dag(
                "chronon_gb_backfill".to_owned(),
                DagKind::GroupByBackfill,
                None,
                Schedule::Manual,
            )),
            (ConfigKind::Join, Mode::Backfill) => Some(new_dag(
                "chronon_join_backfill".to_owned(),
                DagKind::JoinBackfill,
                None,
                Schedule::Manual,
            )),
            _ => None,
        };
        if let Some(dag) = manual_dag {
            place(&mut builders, dag, job, &task_id, &mut manual);
        }
    }

    if !metadata_jobs.is_empty() {
        let dag = new_dag(
            "chronon_metadata".to_owned(),
            DagKind::Metadata,
            None,
            Schedule::Interval {
                minutes: defaults::METADATA_INTERVAL_MINUTES,
            },
        );
        let builder = builders
            .entry(dag.dag_id.clone())
            .or_insert_with(|| DagBuilder::new(dag));
        for (team, jobs) in metadata_jobs {
            builder.add_task(
                format!("metadata_upload__{team}"),
                TaskKind::MetadataUpload { jobs },
            );
        }
    }

    for job in &jobs {
        for (placements, is_manual) in [(&scheduled, false), (&manual, true)] {
            let Some(here) = placements.get(&job.id) else {
                continue;
            };
            let builder = builders
                .get_mut(&here.dag_id)
                .expect("placed jobs have a DAG");
            wire_inputs(
                builder,
                job,
                here,
                &producers,
                &scheduled,
                if is_manual { &manual } else { &scheduled },
            );
        }
    }
    chain_group_by_batches(&jobs, &scheduled, &mut builders);

    diagnostics.sort_by(|a, b| {
        (&a.file, a.severity, &a.path, &a.message).cmp(&(&b.file, b.severity, &b.path, &b.message))
    });
    Plan {
        format_version: FORMAT_VERSION,
        layouts: repo.layouts.clone(),
        jobs,
        dags: builders.into_values().map(DagBuilder::finish).collect(),
        diagnostics,
    }
}

fn new_dag(dag_id: String, kind: DagKind, team: Option<&str>, schedule: Schedule) -> Dag {
    let manual = schedule == Schedule::Manual;
    let concurrency = match kind {
        DagKind::GroupByBatch | DagKind::GroupByBackfill | DagKind::GroupByStreaming => {
            defaults::GROUP_BY_CONCURRENCY
        }
        DagKind::Join | DagKind::JoinBackfill => defaults::JOIN_CONCURRENCY,
        _ => defaults::OTHER_CONCURRENCY,
    };
    Dag {
        dag_id,
        kind,
        team: team.map(str::to_owned),
        schedule,
        catchup: false,
        max_active_runs: if manual {
            defaults::MANUAL_MAX_ACTIVE_RUNS
        } else {
            1
        },
        concurrency,
        params: if manual {
            vec!["start_ds".to_owned(), "end_ds".to_owned()]
        } else {
            Vec::new()
        },
        tasks: Vec::new(),
    }
}

fn place(
    builders: &mut BTreeMap<String, DagBuilder>,
    dag: Dag,
    job: &Job,
    task_id: &str,
    placements: &mut BTreeMap<String, Placement>,
) {
    let scheduled = dag.schedule != Schedule::Manual;
    let builder = builders
        .entry(dag.dag_id.clone())
        .or_insert_with(|| DagBuilder::new(dag));
    builder.add_task(
        task_id.to_owned(),
        TaskKind::Job {
            job: job.id.clone(),
            config: job.config.clone(),
            mode: job.mode,
        },
    );
    placements.insert(
        job.id.clone(),
        Placement {
            dag_id: builder.dag.dag_id.clone(),
            task_id: task_id.to_owned(),
            scheduled,
        },
    );
}

/// Turns a job's inputs into upstream tasks: an edge when the producing job is in the same DAG
/// (same `ds`), a cross-DAG wait when a scheduled DAG waits on another scheduled job, and a
/// partition sensor otherwise (external tables, and everything a manual range run reads).
fn wire_inputs(
    builder: &mut DagBuilder,
    job: &Job,
    here: &Placement,
    producers: &BTreeMap<String, String>,
    scheduled: &BTreeMap<String, Placement>,
    same_kind: &BTreeMap<String, Placement>,
) {
    for dep in &job.inputs {
        let producer = producers.get(&dep.table);
        let Some(producer) = producer else {
            let id = builder.sensor(dep, None);
            builder.add_edge(&id, &here.task_id);
            continue;
        };
        if let Some(p) = same_kind.get(producer)
            && p.dag_id == here.dag_id
            && dep.offset_days == 0
            && producer != &job.id
        {
            builder.add_edge(&p.task_id, &here.task_id);
            continue;
        }
        if here.scheduled
            && let Some(p) = scheduled.get(producer)
        {
            // A job reading its own earlier output waits on its own earlier runs; reading its own
            // same-day output is a cycle, already reported.
            if producer == &job.id && dep.offset_days >= 0 {
                continue;
            }
            let id = builder.upstream_wait(dep, p, producer);
            builder.add_edge(&id, &here.task_id);
            continue;
        }
        let id = builder.sensor(dep, Some(producer));
        builder.add_edge(&id, &here.task_id);
    }
}

/// In a GroupBy batch DAG: backfill -> upload (upload-to-kv already follows upload through the
/// upload table). The upload's own sensors that the backfill already waits for are dropped.
fn chain_group_by_batches(
    jobs: &[Job],
    scheduled: &BTreeMap<String, Placement>,
    builders: &mut BTreeMap<String, DagBuilder>,
) {
    for job in jobs
        .iter()
        .filter(|j| j.kind == ConfigKind::GroupBy && j.mode == Mode::Upload)
    {
        let (Some(upload), Some(backfill)) = (
            scheduled.get(&job.id),
            scheduled.get(&Job::job_id(&job.config, Mode::Backfill)),
        ) else {
            continue;
        };
        if upload.dag_id != backfill.dag_id {
            continue;
        }
        let builder = builders
            .get_mut(&upload.dag_id)
            .expect("placed jobs have a DAG");
        let before_backfill: BTreeSet<String> =
            builder.upstream_of(&backfill.task_id).into_iter().collect();
        builder.remove_upstream(&upload.task_id, &before_backfill);
        builder.add_edge(&backfill.task_id, &upload.task_id);
    }
}

fn group_by_is_scheduled(repo: &Repo, config: &str) -> bool {
    repo.config(config).is_some_and(|c| {
        !c.config
            .metadata()
            .offline_schedule()
            .trim()
            .eq_ignore_ascii_case("@never")
    })
}

/// Table -> the job that writes it. Two jobs writing one table is an error on the second.
fn producers(
    jobs: &[Job],
    paths: &BTreeMap<&str, &str>,
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<String, String> {
    let mut producers: BTreeMap<String, String> = BTreeMap::new();
    for job in jobs {
        for table in &job.outputs {
            match producers.get(table) {
                Some(first) if first != &job.id => diagnostics.push(
                    Diagnostic::new(
                        Severity::Error,
                        DiagnosticCode::DuplicateName,
                        paths.get(job.config.as_str()).copied().unwrap_or_default(),
                        JsonPath::root().field("metaData").field("name").as_str(),
                        format!(
                            "job {} writes table {table}, which job {first} already writes",
                            job.id
                        ),
                    )
                    .found(table.clone()),
                ),
                Some(_) => {}
                None => {
                    producers.insert(table.clone(), job.id.clone());
                }
            }
        }
    }
    producers
}

/// Configs whose jobs wait on each other for the same (or a later) partition can never run:
/// each cycle is reported once, naming every job on it, and its configs are left out.
fn configs_in_cycles(
    jobs: &[Job],
    producers: &BTreeMap<String, String>,
    paths: &BTreeMap<&str, &str>,
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeSet<String> {
    let mut edges: BTreeMap<String, Vec<String>> =
        jobs.iter().map(|j| (j.id.clone(), Vec::new())).collect();
    for job in jobs {
        for dep in job.inputs.iter().filter(|d| d.offset_days >= 0) {
            if let Some(p) = producers.get(&dep.table) {
                edges.entry(p.clone()).or_default().push(job.id.clone());
            }
        }
    }
    let config_of: BTreeMap<&str, &str> = jobs
        .iter()
        .map(|j| (j.id.as_str(), j.config.as_str()))
        .collect();
    let mut excluded = BTreeSet::new();
    for cycle in cycles::find_cycles(&edges) {
        let first_config = config_of[cycle[0].as_str()];
        diagnostics.push(Diagnostic::new(
            Severity::Error,
            DiagnosticCode::DependencyCycle,
            paths.get(first_config).copied().unwrap_or_default(),
            "$",
            format!(
                "dependency cycle: {}; these configs are left out of the plan",
                cycle.join(" -> ")
            ),
        ));
        excluded.extend(cycle.iter().map(|j| config_of[j.as_str()].to_owned()));
    }
    excluded
}

/// Config name -> its identifier in task ids. Names that sanitize alike get `_2`, `_3`, ... in
/// name order, with a warning, so task ids stay unique and stable.
fn config_slugs<'r>(
    repo: &'r Repo,
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<&'r str, String> {
    let mut used: BTreeMap<String, &str> = BTreeMap::new();
    let mut slugs = BTreeMap::new();
    for c in &repo.configs {
        let base = sanitize(c.name());
        let mut slug = base.clone();
        let mut n = 2;
        while used.contains_key(&slug) {
            slug = format!("{base}_{n}");
            n += 1;
        }
        if slug != base {
            diagnostics.push(Diagnostic::new(
                Severity::Warning,
                DiagnosticCode::DuplicateName,
                &c.path,
                "$.metaData.name",
                format!(
                    "{:?} and {:?} have the same sanitized name; this one's tasks are named {slug}",
                    c.name(),
                    used[&base]
                ),
            ));
        }
        used.insert(slug.clone(), c.name());
        slugs.insert(c.name(), slug);
    }
    slugs
}

/// Each Join's parsed `offlineSchedule` (`None` for `@never`); invalid ones are errors and the
/// Join gets no scheduled frontfill.
fn join_schedules<'r>(
    repo: &'r Repo,
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<&'r str, Option<Schedule>> {
    let mut out = BTreeMap::new();
    for c in &repo.configs {
        let Config::Join(join) = &c.config else {
            continue;
        };
        match schedule::parse_offline_schedule(join.metadata.offline_schedule()) {
            Ok(s) => {
                out.insert(c.name(), s);
            }
            Err(reason) => {
                let field = if join
                    .metadata
                    .execution_info
                    .as_ref()
                    .is_some_and(|e| e.offline_schedule.is_some())
                {
                    "$.metaData.executionInfo.offlineSchedule"
                } else {
                    "$.metaData.offlineSchedule"
                };
                diagnostics.push(
                    Diagnostic::new(
                        Severity::Error,
                        DiagnosticCode::InvalidValue,
                        &c.path,
                        field,
                        reason,
                    )
                    .expected("@daily, @weekly, @never, ... or a 5-field cron expression")
                    .found(join.metadata.offline_schedule().to_owned()),
                );
                out.insert(c.name(), None);
            }
        }
    }
    out
}
