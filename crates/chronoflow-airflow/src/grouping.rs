//! Grouping by tag: the job tasks of a DAG whose configs carry the same grouping tag
//! (`airflow:<group>`) become one Airflow task that runs them in dependency order.
//!
//! Grouping contracts the DAG's graph: every edge into or out of a member becomes an edge into
//! or out of the group. If that makes the tasks wait on each other (a member waits on a task that
//! waits on another member), the grouping is rejected, naming the cycle.

use std::collections::{BTreeMap, BTreeSet};

use chronoflow_config::naming::sanitize;
use chronoflow_plan::cycles::find_cycles;
use chronoflow_plan::{Dag, Task, TaskKind};

use crate::AirflowError;

/// One Airflow task: a plan task, or a group of job tasks.
#[derive(Debug, Clone)]
pub struct GroupedTask<'p> {
    pub task_id: String,
    /// The group's name (the tag without its prefix); `None` for a task of the plan as is.
    pub group: Option<String>,
    /// The plan's tasks it runs, upstream first.
    pub members: Vec<&'p Task>,
    /// Sorted Airflow task ids of the same DAG.
    pub upstream: Vec<String>,
    pub retries: u32,
    pub retry_delay_seconds: u64,
}

/// The task id of group `name`.
pub fn group_task_id(name: &str) -> String {
    format!("group__{}", sanitize(name))
}

/// The group a config's tags put its jobs in, if any. `prefix` empty turns grouping off.
pub fn group_of(
    config: &str,
    tags: &[String],
    prefix: &str,
) -> Result<Option<String>, AirflowError> {
    if prefix.is_empty() {
        return Ok(None);
    }
    let mut found: Option<&str> = None;
    for tag in tags {
        let Some(name) = tag.strip_prefix(prefix) else {
            continue;
        };
        check_name(config, tag, name)?;
        match found {
            Some(first) if first != name => {
                return Err(AirflowError::TwoGroups {
                    config: config.to_owned(),
                    first: format!("{prefix}{first}"),
                    second: tag.clone(),
                });
            }
            _ => found = Some(name),
        }
    }
    Ok(found.map(str::to_owned))
}

fn check_name(config: &str, tag: &str, name: &str) -> Result<(), AirflowError> {
    let bad = |reason: &str| AirflowError::BadTag {
        config: config.to_owned(),
        tag: tag.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(bad("the group name after the prefix is empty"));
    }
    if name.len() > 200 {
        return Err(bad("the group name is longer than 200 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(bad(
            "a group name may contain only ASCII letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

/// The Airflow tasks of `dag`: its tasks, with the job tasks of each group merged into one.
/// `tags` maps a config name to its tags.
pub fn group_dag<'p>(
    dag: &'p Dag,
    tags: &BTreeMap<String, Vec<String>>,
    prefix: &str,
) -> Result<Vec<GroupedTask<'p>>, AirflowError> {
    // Task id -> the Airflow task it becomes.
    let mut node_of: BTreeMap<&str, String> = BTreeMap::new();
    let mut groups: BTreeMap<String, String> = BTreeMap::new(); // task id -> group name
    for task in &dag.tasks {
        let mut node = task.task_id.clone();
        if let TaskKind::Job { config, .. } = &task.kind {
            let config_tags = tags.get(config).map(Vec::as_slice).unwrap_or_default();
            if let Some(name) = group_of(config, config_tags, prefix)? {
                node = group_task_id(&name);
                match groups.get(&node) {
                    Some(other) if other != &name => {
                        return Err(AirflowError::GroupIdTaken {
                            dag_id: dag.dag_id.clone(),
                            group: name,
                            task_id: node,
                        });
                    }
                    _ => {
                        groups.insert(node.clone(), name);
                    }
                }
            }
        }
        node_of.insert(&task.task_id, node);
    }
    if let Some(taken) = groups.keys().find(|id| dag.task(id).is_some()) {
        return Err(AirflowError::GroupIdTaken {
            dag_id: dag.dag_id.clone(),
            group: groups[taken].clone(),
            task_id: taken.clone(),
        });
    }

    let mut edges: BTreeMap<String, BTreeSet<String>> = node_of
        .values()
        .map(|n| (n.clone(), BTreeSet::new()))
        .collect();
    for task in &dag.tasks {
        let down = &node_of[task.task_id.as_str()];
        for up in &task.upstream {
            let Some(up) = node_of.get(up.as_str()) else {
                continue;
            };
            if up != down {
                edges.entry(up.clone()).or_default().insert(down.clone());
            }
        }
    }
    let as_lists: BTreeMap<String, Vec<String>> = edges
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
        .collect();
    if let Some(cycle) = find_cycles(&as_lists).into_iter().next() {
        let named: Vec<String> = cycle
            .iter()
            .map(|n| match groups.get(n) {
                Some(name) => format!("group {name}"),
                None => n.clone(),
            })
            .collect();
        return Err(AirflowError::GroupCycle {
            dag_id: dag.dag_id.clone(),
            cycle: named.join(" -> "),
        });
    }

    let mut out: BTreeMap<String, GroupedTask<'p>> = BTreeMap::new();
    // Members in dependency order: the DAG's own topological order.
    for task in dag.topological_order() {
        let node = node_of[task.task_id.as_str()].clone();
        let entry = out.entry(node.clone()).or_insert_with(|| GroupedTask {
            task_id: node.clone(),
            group: groups.get(&node).cloned(),
            members: Vec::new(),
            upstream: Vec::new(),
            retries: 0,
            retry_delay_seconds: 0,
        });
        entry.members.push(task);
        entry.retries = entry.retries.max(task.retries);
        entry.retry_delay_seconds = entry.retry_delay_seconds.max(task.retry_delay_seconds);
    }
    for (up, downs) in &edges {
        for down in downs {
            if let Some(t) = out.get_mut(down) {
                t.upstream.push(up.clone());
            }
        }
    }
    let mut tasks: Vec<GroupedTask<'p>> = out.into_values().collect();
    for t in &mut tasks {
        t.upstream.sort();
        t.upstream.dedup();
    }
    Ok(tasks)
}
