//! Structurally mutated sample repos (array elements deleted or duplicated, arrays and objects
//! emptied, values of one JSON type swapped for another) never panic the loader or the planner;
//! and a repo that checks without errors plans whole, with output columns the engine can write.
//!
//! Where `robustness.rs` damages one file alone, this mutates one file of a whole sample repo,
//! so the checks that need the other configs (a Join's GroupBys) run too.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use chronoflow_config::naming;
use chronoflow_config::{Config, PartitionDate, RepoFile, RepoFiles, fs::read_repo_files, repo};
use chronoflow_plan::partitions::{PartitionRange, backfill_reads};
use chronoflow_plan::{TaskKind, render};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};

/// A sample repo as read from disk, and how many configs it loads cleanly.
struct Sample {
    files: RepoFiles,
    configs: usize,
}

fn samples() -> &'static [Sample] {
    static SAMPLES: OnceLock<Vec<Sample>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon");
        ["samples/airbnb", "samples/zipline", "quickstart"]
            .into_iter()
            .map(|rel| {
                let files = read_repo_files(&root.join(rel)).unwrap();
                let loaded = repo::load(files.clone());
                assert!(!loaded.has_errors(), "{rel}: {:#?}", loaded.diagnostics);
                Sample {
                    configs: loaded.configs.len(),
                    files,
                }
            })
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn node_paths(value: &Value) -> Vec<Vec<Seg>> {
    fn walk(v: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        out.push(prefix.clone());
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    prefix.push(Seg::Key(k.clone()));
                    walk(x, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    prefix.push(Seg::Index(i));
                    walk(x, prefix, out);
                    prefix.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'v>(value: &'v mut Value, path: &[Seg]) -> &'v mut Value {
    path.iter().fold(value, |v, seg| match seg {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::Index(i) => &mut v[*i],
    })
}

#[derive(Debug, Clone, Copy)]
enum Mutation {
    /// Remove the node from its object or array.
    Delete,
    /// Duplicate the nearest array element at or above the node, right after itself.
    Duplicate,
    /// `[]`, `{}` or `""` in place of the node (or of the nearest array or object above it).
    Empty,
    /// The node's value as another JSON type: array <-> object, string <-> number, bool -> number.
    SwapType,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::Delete),
        Just(Mutation::Duplicate),
        Just(Mutation::Empty),
        Just(Mutation::SwapType),
    ]
}

fn apply(value: &mut Value, target: Index, m: Mutation) {
    let paths = node_paths(value);
    let path = paths[target.index(paths.len())].clone();
    match m {
        Mutation::Delete => {
            if let Some((last, parent)) = path.split_last() {
                match (node_mut(value, parent), last) {
                    (Value::Object(map), Seg::Key(k)) => {
                        map.shift_remove(k);
                    }
                    (Value::Array(items), Seg::Index(i)) => {
                        items.remove(*i);
                    }
                    _ => {}
                }
            }
        }
        Mutation::Duplicate => {
            let Some(at) = path.iter().rposition(|s| matches!(s, Seg::Index(_))) else {
                return;
            };
            let Seg::Index(i) = path[at] else {
                unreachable!()
            };
            if let Value::Array(items) = node_mut(value, &path[..at]) {
                let copy = items[i].clone();
                items.insert(i + 1, copy);
            }
        }
        Mutation::Empty => {
            let node = node_mut(value, &path);
            *node = match node {
                Value::Array(_) => Value::Array(Vec::new()),
                Value::String(_) => Value::String(String::new()),
                _ => Value::Object(Map::new()),
            };
        }
        Mutation::SwapType => {
            let node = node_mut(value, &path);
            *node = match node.take() {
                Value::Array(items) => Value::Object(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (i.to_string(), v))
                        .collect(),
                ),
                Value::Object(map) => Value::Array(map.into_iter().map(|(_, v)| v).collect()),
                Value::String(s) => s
                    .trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(Value::from(0)),
                Value::Number(n) => Value::String(n.to_string()),
                Value::Bool(b) => Value::from(i64::from(b)),
                Value::Null => Value::Array(Vec::new()),
            };
        }
    }
}

fn has_duplicates(names: &[String]) -> Option<&String> {
    let mut seen = BTreeSet::new();
    names.iter().find(|n| !seen.insert(n.as_str()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_configs_never_panic_and_a_clean_check_means_a_whole_plan(
        sample in any::<Index>(),
        file in any::<Index>(),
        mutations in proptest::collection::vec((any::<Index>(), mutation()), 1..=3),
    ) {
        let sample = &samples()[sample.index(samples().len())];
        let mut files = sample.files.clone();
        let i = file.index(files.files.len());
        let path = files.files[i].path.clone();
        let mut value: Value = serde_json::from_slice(&files.files[i].contents).unwrap();
        for (target, m) in &mutations {
            apply(&mut value, *target, *m);
        }
        files.files[i] = RepoFile { path: path.clone(), contents: serde_json::to_vec(&value).unwrap() };

        let repo = repo::load(files);
        let plan = chronoflow_plan::plan(&repo);
        for d in &plan.diagnostics {
            prop_assert!(d.path.starts_with('$'), "{}", d);
            prop_assert!(!d.message.is_empty());
        }
        if plan.has_errors() {
            return Ok(());
        }

        // `check` is clean: every config loaded and planned, and every output can be written.
        let is_config = !path.contains("teams") && !path.contains("/models/");
        if is_config {
            prop_assert_eq!(repo.configs.len(), sample.configs, "{:#?}", plan.diagnostics);
        }
        let job_ids: BTreeSet<&str> = plan.jobs.iter().map(|j| j.id.as_str()).collect();
        for dag in &plan.dags {
            for task in &dag.tasks {
                if let TaskKind::Job { job, .. } = &task.kind {
                    prop_assert!(job_ids.contains(job.as_str()), "{} runs unknown job {}", dag.dag_id, job);
                }
            }
            prop_assert_eq!(dag.topological_order().len(), dag.tasks.len(), "{} has a cycle", &dag.dag_id);
        }
        let dags: Vec<_> = plan.dags.iter().collect();
        let _ = (render::text(&dags), render::dot(&dags), render::mermaid(&dags));
        prop_assert!(serde_json::to_string(&plan).is_ok());

        let range = PartitionRange::new(
            PartitionDate::parse("2024-01-01").unwrap(),
            PartitionDate::parse("2024-01-31").unwrap(),
        ).unwrap();
        for loaded in &repo.configs {
            let _ = backfill_reads(loaded, range);
            match &loaded.config {
                Config::GroupBy(gb) => {
                    prop_assert!(!gb.key_columns.is_empty(), "{}: no keys", loaded.path);
                    let mut columns = gb.key_columns.clone();
                    columns.extend(naming::group_by_base_features(gb));
                    prop_assert_eq!(has_duplicates(&columns), None, "{}", &loaded.path);
                }
                Config::Join(join) => {
                    let mut columns = naming::selected_columns(join.left.query());
                    for part in &join.join_parts {
                        columns.extend(naming::join_part_columns(join, part, loaded.dialect));
                    }
                    prop_assert_eq!(has_duplicates(&columns), None, "{}", &loaded.path);
                }
                Config::StagingQuery(_) => {}
            }
        }
    }
}
