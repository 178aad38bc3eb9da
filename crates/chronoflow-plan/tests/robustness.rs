//! Randomly damaged sample configs (wrong types, missing fields, truncated files, huge numbers,
//! stray bytes) never panic the loader or the planner, and every diagnostic names the file and
//! a JSON path.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::Path;
use std::sync::OnceLock;

use chronoflow_config::{Layout, RepoFile, RepoFiles, repo};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// Every compiled sample: (path in its repo, layout, contents).
fn samples() -> &'static Vec<(String, Layout, Value)> {
    static SAMPLES: OnceLock<Vec<(String, Layout, Value)>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon");
        let mut out = Vec::new();
        for (rel, layout) in [
            (
                "samples/airbnb",
                Layout::Airbnb {
                    prefix: String::new(),
                },
            ),
            (
                "samples/zipline",
                Layout::Zipline {
                    prefix: "compiled/".to_owned(),
                },
            ),
            (
                "quickstart",
                Layout::Airbnb {
                    prefix: "compiled/".to_owned(),
                },
            ),
        ] {
            let files = chronoflow_config::fs::read_repo_files(&root.join(rel)).unwrap();
            for f in files.files {
                let value: Value = serde_json::from_slice(&f.contents).unwrap();
                out.push((f.path, layout.clone(), value));
            }
        }
        out
    })
}

/// Paths to every node of a JSON value.
fn node_paths(value: &Value) -> Vec<Vec<PathSeg>> {
    let mut out = vec![Vec::new()];
    fn walk(v: &Value, prefix: &mut Vec<PathSeg>, out: &mut Vec<Vec<PathSeg>>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    prefix.push(PathSeg::Key(k.clone()));
                    out.push(prefix.clone());
                    walk(x, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    prefix.push(PathSeg::Index(i));
                    out.push(prefix.clone());
                    walk(x, prefix, out);
                    prefix.pop();
                }
            }
            _ => {}
        }
    }
    walk(value, &mut Vec::new(), &mut out);
    out
}

#[derive(Debug, Clone)]
enum PathSeg {
    Key(String),
    Index(usize),
}

fn node_mut<'v>(value: &'v mut Value, path: &[PathSeg]) -> &'v mut Value {
    path.iter().fold(value, |v, seg| match seg {
        PathSeg::Key(k) => &mut v[k.as_str()],
        PathSeg::Index(i) => &mut v[*i],
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    Remove,
    Truncate(Index),
    InsertBytes(Index, Vec<u8>),
}

fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(serde_json::from_str::<Value>("1e308").unwrap()),
        Just(serde_json::from_str::<Value>("-1e308").unwrap()),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        Just(Value::String("{\"not\": json".to_owned())),
        Just(Value::String(
            "data.t/ds={{ macros.ds_add(ds, 99999999999999999999) }}".to_owned()
        )),
        Just(Value::Array(vec![Value::from(1), Value::Null])),
        Just(serde_json::json!({"unexpected": [1, {"deep": null}]})),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => replacement().prop_map(Mutation::Replace),
        2 => Just(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..4)).prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
    ]
}

fn mutate(value: &Value, target: Index, m: &Mutation) -> Vec<u8> {
    let mut value = value.clone();
    let paths = node_paths(&value);
    let path = &paths[target.index(paths.len())];
    match m {
        Mutation::Replace(v) => *node_mut(&mut value, path) = v.clone(),
        Mutation::Remove => {
            if let Some((last, parent)) = path.split_last() {
                match (node_mut(&mut value, parent), last) {
                    (Value::Object(map), PathSeg::Key(k)) => {
                        map.shift_remove(k);
                    }
                    (Value::Array(items), PathSeg::Index(i)) => {
                        items.remove(*i);
                    }
                    _ => {}
                }
            }
        }
        Mutation::Truncate(_) | Mutation::InsertBytes(..) => {}
    }
    let mut bytes = serde_json::to_vec_pretty(&value).unwrap();
    match m {
        Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        Mutation::InsertBytes(at, extra) => {
            let at = at.index(bytes.len());
            bytes.splice(at..at, extra.iter().copied());
        }
        _ => {}
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_configs_never_panic_and_always_name_file_and_path(
        sample in any::<Index>(),
        target in any::<Index>(),
        m in mutation(),
    ) {
        let all = samples();
        let (path, layout, value) = &all[sample.index(all.len())];
        let contents = mutate(value, target, &m);
        let repo = repo::load(RepoFiles {
            layouts: vec![layout.clone()],
            files: vec![RepoFile { path: path.clone(), contents }],
 unreadable: Vec::new(),
});
        for d in &repo.diagnostics {
            prop_assert_eq!(&d.file, path);
            prop_assert!(d.path.starts_with('$'), "path {:?}", d.path);
            prop_assert!(!d.message.is_empty());
        }
        // A file with an error never yields a config; one without errors always does (unless it
        // is not a config at all).
        let has_error = repo.has_errors();
        let is_config = !path.contains("teams") && !path.contains("/models/");
        if is_config {
            prop_assert_eq!(repo.configs.len(), usize::from(!has_error), "{:#?}", repo.diagnostics);
        }
        // The planner must not panic on whatever loaded, nor blame another file.
        let plan = chronoflow_plan::plan(&repo);
        for d in &plan.diagnostics {
            prop_assert_eq!(&d.file, path);
        }
    }
}

#[test]
fn a_truncated_file_reports_its_line_and_column() {
    let (path, layout, value) = &samples()[0];
    let mut bytes = serde_json::to_vec_pretty(value).unwrap();
    bytes.truncate(bytes.len() / 2);
    let repo = repo::load(RepoFiles {
        layouts: vec![layout.clone()],
        files: vec![RepoFile {
            path: path.clone(),
            contents: bytes,
        }],
        unreadable: Vec::new(),
    });
    let d = &repo.diagnostics[0];
    assert_eq!(d.code, chronoflow_config::DiagnosticCode::InvalidJson);
    assert!(d.message.contains("line"), "{d}");
}
