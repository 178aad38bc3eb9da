//! What each job's Airflow task runs with: its resolved resource profile (`[profiles]` of
//! `chronoflow.toml`, the same resolver the scheduler's executors use) as `executor_config`,
//! `pool` and `queue`; the queue falls back to teams.json `airflow_queue`.

use std::collections::BTreeMap;

use chronoflow_plan::Plan;
use chronoflow_plan::profile::Profiles;
use serde_json::json;

use crate::{AirflowError, TaskResources};

/// The `[profiles]` section of a `chronoflow.toml` (none: no profiles).
pub fn profiles_from_config(file: &str, text: &str) -> Result<Profiles, AirflowError> {
    let bad = |message: String| AirflowError::Profiles {
        file: file.to_owned(),
        message,
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.to_string().trim_end().to_owned()))?;
    let Some(section) = table.remove("profiles") else {
        return Ok(Profiles::default());
    };
    let profiles: Profiles = section
        .try_into()
        .map_err(|e: toml::de::Error| bad(format!("[profiles]: {}", e.message())))?;
    profiles.validate().map_err(|e| bad(e.to_string()))?;
    Ok(profiles)
}

/// Job id -> its task's resources, for every job of the plan that has any. `queues` maps a
/// team to its teams.json `airflow_queue`.
pub fn job_resources(
    plan: &Plan,
    profiles: &Profiles,
    queues: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, TaskResources>, AirflowError> {
    let mut out = BTreeMap::new();
    for job in &plan.jobs {
        let profile = profiles
            .resolve_job(job)
            .map_err(|e| AirflowError::Profiles {
                file: "[profiles]".to_owned(),
                message: e.to_string(),
            })?;
        let mut resources = TaskResources::default();
        if let Some(p) = &profile {
            // Executor-neutral: a cluster policy or a user template maps it onto the executor's
            // own format (a Kubernetes pod override, ...).
            resources.executor_config.insert(
                "chronoflow_profile".to_owned(),
                json!({
                    "name": p.name,
                    "selected_by": p.selected_by,
                    "cpu": p.cpu,
                    "memory": p.memory,
                    "cluster": p.cluster,
                }),
            );
            resources.pool = p.pool.clone();
            resources.queue = p.queue.clone();
        }
        if resources.queue.is_none() {
            resources.queue = queues.get(&job.team).cloned();
        }
        if resources != TaskResources::default() {
            out.insert(job.id.clone(), resources);
        }
    }
    Ok(out)
}
