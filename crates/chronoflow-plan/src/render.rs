//! Human-readable forms of a plan: text, Graphviz dot and Mermaid. (JSON is `serde_json` of
//! [`Plan`](crate::Plan) itself.)

use std::fmt::Write as _;

use crate::dag::{Dag, Task, TaskKind};

/// One line describing what a task does.
pub fn describe_task(task: &Task) -> String {
    match &task.kind {
        TaskKind::Job { job, .. } => format!("run {job}"),
        TaskKind::MetadataUpload { jobs } => {
            format!("upload metadata of {} config(s) when changed", jobs.len())
        }
        TaskKind::PartitionSensor {
            table,
            partition_column,
            offset_days,
            sub_partitions,
            end,
            produced_by,
            ..
        } => {
            let mut s = format!(
                "wait for {table}/{partition_column}={}",
                ds_expr(*offset_days)
            );
            for (k, v) in sub_partitions {
                let _ = write!(s, "/{k}={v}");
            }
            if let Some(end) = end {
                let _ = write!(s, " (until {end})");
            }
            if let Some(p) = produced_by {
                let _ = write!(s, " [written by {p}]");
            }
            s
        }
        TaskKind::UpstreamWait {
            dag_id,
            upstream_task_id,
            offset_days,
            end,
            ..
        } => {
            let mut s = format!(
                "wait for {dag_id}.{upstream_task_id} at {}",
                ds_expr(*offset_days)
            );
            if let Some(end) = end {
                let _ = write!(s, " (until {end})");
            }
            s
        }
    }
}

fn ds_expr(offset: i64) -> String {
    match offset {
        0 => "{ds}".to_owned(),
        n if n < 0 => format!("{{ds-{}}}", -n),
        n => format!("{{ds+{n}}}"),
    }
}

/// The text form: each DAG with its schedule, then its tasks upstream-first.
pub fn text(dags: &[&Dag]) -> String {
    let mut out = String::new();
    for dag in dags {
        let _ = writeln!(
            out,
            "{}  [{}; concurrency {}; max active runs {}{}]",
            dag.dag_id,
            dag.schedule,
            dag.concurrency,
            dag.max_active_runs,
            if dag.params.is_empty() {
                String::new()
            } else {
                format!("; params {}", dag.params.join(", "))
            }
        );
        for task in dag.topological_order() {
            let _ = writeln!(out, "  {}: {}", task.task_id, describe_task(task));
            if !task.upstream.is_empty() {
                let _ = writeln!(out, "      after {}", task.upstream.join(", "));
            }
        }
        out.push('\n');
    }
    out
}

fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Graphviz: one cluster per DAG; cross-DAG waits drawn dashed to the task they wait on.
pub fn dot(dags: &[&Dag]) -> String {
    let mut out =
        String::from("digraph chronoflow {\n  rankdir=LR;\n  node [shape=box, fontsize=10];\n");
    let mut cross = Vec::new();
    for (i, dag) in dags.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_{i} {{\n    label={};",
            quote(&format!("{} ({})", dag.dag_id, dag.schedule))
        );
        for task in &dag.tasks {
            let node = quote(&format!("{}.{}", dag.dag_id, task.task_id));
            let shape = match task.kind {
                TaskKind::PartitionSensor { .. } | TaskKind::UpstreamWait { .. } => {
                    ", shape=ellipse"
                }
                _ => "",
            };
            let _ = writeln!(out, "    {node} [label={}{shape}];", quote(&task.task_id));
            for up in &task.upstream {
                let _ = writeln!(
                    out,
                    "    {} -> {node};",
                    quote(&format!("{}.{}", dag.dag_id, up))
                );
            }
            if let TaskKind::UpstreamWait {
                dag_id,
                upstream_task_id,
                ..
            } = &task.kind
            {
                cross.push((
                    format!("{dag_id}.{upstream_task_id}"),
                    format!("{}.{}", dag.dag_id, task.task_id),
                ));
            }
        }
        out.push_str("  }\n");
    }
    let shown: std::collections::BTreeSet<String> = dags
        .iter()
        .flat_map(|d| {
            d.tasks
                .iter()
                .map(move |t| format!("{}.{}", d.dag_id, t.task_id))
        })
        .collect();
    for (from, to) in cross {
        if shown.contains(&from) {
            let _ = writeln!(out, "  {} -> {} [style=dashed];", quote(&from), quote(&to));
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart: one subgraph per DAG; cross-DAG waits as dotted links.
pub fn mermaid(dags: &[&Dag]) -> String {
    let mut ids = std::collections::BTreeMap::new();
    let mut node_id = |key: String| -> String {
        let n = ids.len();
        ids.entry(key).or_insert_with(|| format!("n{n}")).clone()
    };
    let mut out = String::from("flowchart LR\n");
    let mut cross = Vec::new();
    for dag in dags {
        let _ = writeln!(
            out,
            "  subgraph {}[\"{} ({})\"]",
            node_id(format!("dag:{}", dag.dag_id)),
            dag.dag_id,
            dag.schedule
        );
        for task in &dag.tasks {
            let id = node_id(format!("{}.{}", dag.dag_id, task.task_id));
            let (open, close) = match task.kind {
                TaskKind::PartitionSensor { .. } | TaskKind::UpstreamWait { .. } => ("([", "])"),
                _ => ("[", "]"),
            };
            let _ = writeln!(out, "    {id}{open}\"{}\"{close}", task.task_id);
            if let TaskKind::UpstreamWait {
                dag_id,
                upstream_task_id,
                ..
            } = &task.kind
            {
                cross.push((format!("{dag_id}.{upstream_task_id}"), id.clone()));
            }
        }
        out.push_str("  end\n");
        for task in &dag.tasks {
            let to = node_id(format!("{}.{}", dag.dag_id, task.task_id));
            for up in &task.upstream {
                let from = node_id(format!("{}.{}", dag.dag_id, up));
                let _ = writeln!(out, "  {from} --> {to}");
            }
        }
    }
    for (from_key, to) in cross {
        if let Some(from) = ids.get(&from_key) {
            let _ = writeln!(out, "  {from} -.-> {to}");
        }
    }
    out
}
