//! Config tags: AB `customJson` (`tags`, and the Python API's `groupby_tags` / `join_tags`), ZL
//! `metaData.tags` (thrift `map<string, string>`), each normalised to `key:value`. A tag that is
//! not a string map or a list of strings is an error naming the file and the field.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::Path;

use chronoflow_config::{DiagnosticCode, Repo, RepoFiles, Severity, fs::read_repo_files, repo};
use serde_json::{Value, json};

const PURCHASES: &str = "compiled/production/group_bys/quickstart/purchases.v1";
const TRAINING_V1: &str = "compiled/production/joins/quickstart/training_set.v1";
const ZL_USER_DATA: &str = "compiled/group_bys/risk/user_data.user_group_by__0";

fn files(rel: &str) -> RepoFiles {
    read_repo_files(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/chronon")
            .join(rel),
    )
    .unwrap()
}

/// The repo at `rel` with file `path`'s JSON edited by `edit`.
fn with_edit(rel: &str, path: &str, edit: impl FnOnce(&mut Value)) -> Repo {
    let mut files = files(rel);
    let file = files.files.iter_mut().find(|f| f.path == path).unwrap();
    let mut value: Value = serde_json::from_slice(&file.contents).unwrap();
    edit(&mut value);
    file.contents = serde_json::to_vec_pretty(&value).unwrap();
    repo::load(files)
}

/// Replaces the AB `customJson` string of a config with `custom`.
fn set_custom_json(value: &mut Value, custom: Value) {
    value["metaData"]["customJson"] = Value::String(custom.to_string());
}

fn tags_of(repo: &Repo, name: &str) -> Vec<String> {
    repo.config(name).unwrap().config.metadata().tags()
}

fn errors(repo: &Repo) -> Vec<(DiagnosticCode, String, String)> {
    repo.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (d.code, d.file.clone(), d.path.clone()))
        .collect()
}

#[test]
fn configs_without_tags_have_none() {
    let repo = repo::load(files("quickstart"));
    assert!(
        repo.configs
            .iter()
            .all(|c| c.config.metadata().tags().is_empty())
    );
    let repo = repo::load(files("samples/zipline"));
    assert!(
        repo.configs
            .iter()
            .all(|c| c.config.metadata().tags().is_empty())
    );
}

#[test]
fn ab_custom_json_tags_map_is_normalised_to_key_colon_value() {
    let repo = with_edit("quickstart", PURCHASES, |v| {
        set_custom_json(
            v,
            json!({"lag": 0, "tags": {"machine": "large", "airflow": "nightly"}}),
        );
    });
    assert!(errors(&repo).is_empty(), "{:#?}", repo.diagnostics);
    assert_eq!(
        tags_of(&repo, "quickstart.purchases.v1"),
        ["airflow:nightly", "machine:large"]
    );
}

#[test]
fn ab_python_api_groupby_tags_and_join_tags_count_as_tags() {
    let repo = with_edit("quickstart", PURCHASES, |v| {
        set_custom_json(
            v,
            json!({"lag": 0, "groupby_tags": {"machine": "small", "pii": ""}}),
        );
    });
    assert_eq!(
        tags_of(&repo, "quickstart.purchases.v1"),
        ["machine:small", "pii"]
    );
    let repo = with_edit("quickstart", TRAINING_V1, |v| {
        set_custom_json(
            v,
            json!({"join_tags": ["airflow:nightly", "machine:large"]}),
        );
    });
    assert!(errors(&repo).is_empty(), "{:#?}", repo.diagnostics);
    assert_eq!(
        tags_of(&repo, "quickstart.training_set.v1"),
        ["airflow:nightly", "machine:large"]
    );
}

#[test]
fn zl_metadata_tags_map_is_normalised_and_merged_with_custom_json() {
    let repo = with_edit("samples/zipline", ZL_USER_DATA, |v| {
        v["metaData"]["tags"] = json!({"machine": "large", "tier": 1});
    });
    assert!(errors(&repo).is_empty(), "{:#?}", repo.diagnostics);
    assert_eq!(
        tags_of(&repo, "risk.user_data.user_group_by__0"),
        ["machine:large", "tier:1"]
    );
    // A list of strings is accepted too, and the same tag twice counts once.
    let repo = with_edit("samples/zipline", ZL_USER_DATA, |v| {
        v["metaData"]["tags"] = json!(["machine:large", "machine:large"]);
    });
    assert_eq!(
        tags_of(&repo, "risk.user_data.user_group_by__0"),
        ["machine:large"]
    );
}

#[test]
fn tags_of_the_wrong_type_are_an_error_naming_file_and_field() {
    let repo = with_edit("quickstart", PURCHASES, |v| {
        set_custom_json(v, json!({"tags": "machine:large"}));
    });
    assert_eq!(
        errors(&repo),
        [(
            DiagnosticCode::WrongType,
            PURCHASES.to_owned(),
            "$.metaData.customJson.tags".to_owned()
        )]
    );
    let repo = with_edit("samples/zipline", ZL_USER_DATA, |v| {
        v["metaData"]["tags"] = json!({"machine": {"cpu": 8}});
    });
    assert_eq!(
        errors(&repo),
        [(
            DiagnosticCode::WrongType,
            ZL_USER_DATA.to_owned(),
            "$.metaData.tags.machine".to_owned()
        )]
    );
}

#[test]
fn a_tag_without_a_key_is_an_invalid_value() {
    let repo = with_edit("samples/zipline", ZL_USER_DATA, |v| {
        v["metaData"]["tags"] = json!(["machine:large", ":large", ""]);
    });
    let found = errors(&repo);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found
            .iter()
            .all(|(code, file, _)| *code == DiagnosticCode::InvalidValue && file == ZL_USER_DATA)
    );
    assert_eq!(found[0].2, "$.metaData.tags[1]");
    let d = repo
        .diagnostics
        .iter()
        .find(|d| d.path == "$.metaData.tags[1]")
        .unwrap();
    assert!(d.to_string().contains(":large"), "{d}");
}
