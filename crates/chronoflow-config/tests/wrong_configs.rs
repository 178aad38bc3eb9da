//! Configs that decode cleanly but would compute the wrong thing (or nothing): each gets a
//! diagnostic of the right severity, code, file and JSON path. Every case is the quickstart repo
//! with one edit, so the rest of the repo stays clean and the diagnostic is the only one.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::Path;

use chronoflow_config::{
    Diagnostic, DiagnosticCode, Repo, RepoFiles, Severity, fs::read_repo_files, repo,
};
use serde_json::{Value, json};

const PURCHASES: &str = "compiled/production/group_bys/quickstart/purchases.v1";
const RETURNS: &str = "compiled/production/group_bys/quickstart/returns.v1";
const USERS: &str = "compiled/production/group_bys/quickstart/users.v1";
const TRAINING_V1: &str = "compiled/production/joins/quickstart/training_set.v1";
const TRAINING_V2: &str = "compiled/production/joins/quickstart/training_set.v2";

fn quickstart() -> RepoFiles {
    read_repo_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart"),
    )
    .unwrap()
}

/// The quickstart with file `path` edited by `edit` (or removed when `edit` returns `None`).
fn quickstart_with(path: &str, edit: impl FnOnce(Value) -> Option<Value>) -> Repo {
    let mut files = quickstart();
    let i = files.files.iter().position(|f| f.path == path).unwrap();
    let value: Value = serde_json::from_slice(&files.files[i].contents).unwrap();
    match edit(value) {
        Some(v) => files.files[i].contents = serde_json::to_vec_pretty(&v).unwrap(),
        None => {
            files.files.remove(i);
        }
    }
    repo::load(files)
}

/// The one diagnostic that is not a notice, checked for severity, code, file and path.
fn only_diagnostic(
    repo: &Repo,
    severity: Severity,
    code: DiagnosticCode,
    file: &str,
    path: &str,
) -> Diagnostic {
    let found: Vec<&Diagnostic> = repo
        .diagnostics
        .iter()
        .filter(|d| d.severity != Severity::Notice)
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    let d = found[0].clone();
    assert_eq!(
        (d.severity, d.code, d.file.as_str(), d.path.as_str()),
        (severity, code, file, path),
        "{d}"
    );
    d
}

#[test]
fn the_quickstart_itself_is_clean() {
    let repo = repo::load(quickstart());
    assert!(repo.diagnostics.is_empty(), "{:#?}", repo.diagnostics);
}

#[test]
fn a_duplicated_aggregation_is_an_error_not_two_columns_of_one_name() {
    let repo = quickstart_with(PURCHASES, |mut v| {
        let aggs = v["aggregations"].as_array_mut().unwrap();
        let first = aggs[0].clone();
        aggs.push(first);
        Some(v)
    });
    let d = only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::DuplicateColumn,
        PURCHASES,
        "$.aggregations[4]",
    );
    assert!(d.message.contains("purchase_price_sum_3d"), "{d}");
    assert!(d.message.contains("$.aggregations[0]"), "{d}");
    // The GroupBy is left out, so no job writes a table with two columns of one name.
    assert!(repo.config("quickstart.purchases.v1").is_none());
}

#[test]
fn a_window_listed_twice_is_an_error() {
    let repo = quickstart_with(PURCHASES, |mut v| {
        let windows = v["aggregations"][1]["windows"].as_array_mut().unwrap();
        windows.push(json!({"length": 14, "timeUnit": 1}));
        Some(v)
    });
    let d = only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::DuplicateColumn,
        PURCHASES,
        "$.aggregations[1].windows[3]",
    );
    assert!(d.message.contains("purchase_price_count_14d"), "{d}");
}

#[test]
fn a_bucket_listed_twice_is_an_error() {
    let repo = quickstart_with(PURCHASES, |mut v| {
        v["aggregations"][0]["buckets"] = json!(["user_id", "user_id"]);
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::DuplicateColumn,
        PURCHASES,
        "$.aggregations[0].buckets[1]",
    );
}

#[test]
fn a_derivation_named_like_a_feature_kept_by_star_is_an_error() {
    let repo = quickstart_with(PURCHASES, |mut v| {
        v["derivations"] = json!([
            {"name": "*", "expression": "*"},
            {"name": "purchase_price_sum_3d", "expression": "purchase_price_sum_3d * 2"}
        ]);
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::DuplicateColumn,
        PURCHASES,
        "$.derivations[1]",
    );
}

#[test]
fn two_derivations_of_one_name_are_an_error() {
    let repo = quickstart_with(PURCHASES, |mut v| {
        v["derivations"] = json!([
            {"name": "ratio", "expression": "purchase_price_sum_3d / purchase_price_count_3d"},
            {"name": "ratio", "expression": "purchase_price_sum_14d / purchase_price_count_14d"}
        ]);
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::DuplicateColumn,
        PURCHASES,
        "$.derivations[1]",
    );
}

#[test]
fn a_key_column_listed_twice_is_an_error() {
    let repo = quickstart_with(PURCHASES, |mut v| {
        v["keyColumns"] = json!(["user_id", "user_id"]);
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::DuplicateColumn,
        PURCHASES,
        "$.keyColumns[1]",
    );
}

#[test]
fn two_join_parts_with_one_column_prefix_are_an_error() {
    let repo = quickstart_with(TRAINING_V2, |mut v| {
        let parts = v["joinParts"].as_array_mut().unwrap();
        let first = parts[0].clone();
        parts.push(first);
        Some(v)
    });
    let d = only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::DuplicateColumn,
        TRAINING_V2,
        "$.joinParts[2]",
    );
    assert!(
        d.message
            .contains("quickstart_purchases_v1_purchase_price_sum_3d"),
        "{d}"
    );
    assert!(d.message.contains("prefix"), "{d}");
    // The same GroupBy twice is fine when the prefixes keep the columns apart.
    let repo = quickstart_with(TRAINING_V2, |mut v| {
        let parts = v["joinParts"].as_array_mut().unwrap();
        let mut again = parts[0].clone();
        again["prefix"] = json!("again");
        parts.push(again);
        Some(v)
    });
    assert!(repo.diagnostics.is_empty(), "{:#?}", repo.diagnostics);
}

#[test]
fn empty_key_columns_are_an_error_not_a_backfill_of_zero_rows() {
    let repo = quickstart_with(PURCHASES, |mut v| {
        v["keyColumns"] = json!([]);
        Some(v)
    });
    let d = only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::InvalidValue,
        PURCHASES,
        "$.keyColumns",
    );
    assert!(d.message.contains("key column"), "{d}");
}

#[test]
fn empty_key_columns_of_a_join_part_are_an_error() {
    let repo = quickstart_with(TRAINING_V1, |mut v| {
        v["joinParts"][2]["groupBy"]["keyColumns"] = json!([]);
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::InvalidValue,
        TRAINING_V1,
        "$.joinParts[2].groupBy.keyColumns",
    );
}

#[test]
fn empty_aggregations_windows_and_buckets_are_errors() {
    for (field, path) in [
        ("aggregations", "$.aggregations"),
        ("windows", "$.aggregations[0].windows"),
        ("buckets", "$.aggregations[0].buckets"),
    ] {
        let repo = quickstart_with(PURCHASES, |mut v| {
            match field {
                "aggregations" => v["aggregations"] = json!([]),
                other => v["aggregations"][0][other] = json!([]),
            }
            Some(v)
        });
        only_diagnostic(
            &repo,
            Severity::Error,
            DiagnosticCode::InvalidValue,
            PURCHASES,
            path,
        );
    }
}

#[test]
fn a_join_without_parts_is_a_warning() {
    let repo = quickstart_with(TRAINING_V1, |mut v| {
        v["joinParts"] = json!([]);
        Some(v)
    });
    let d = only_diagnostic(
        &repo,
        Severity::Warning,
        DiagnosticCode::InvalidValue,
        TRAINING_V1,
        "$.joinParts",
    );
    assert!(d.message.contains("no features"), "{d}");
    // A warning: the Join still loads.
    assert!(repo.config("quickstart.training_set.v1").is_some());
    // Absent is the same as empty.
    let repo = quickstart_with(TRAINING_V1, |mut v| {
        v.as_object_mut().unwrap().remove("joinParts");
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Warning,
        DiagnosticCode::InvalidValue,
        TRAINING_V1,
        "$.joinParts",
    );
}

#[test]
fn an_online_join_part_whose_group_by_is_not_in_the_repo_is_an_error() {
    // training_set.v2 is online: nothing would upload returns.v1, so fetches could never serve it.
    let repo = quickstart_with(RETURNS, |_| None);
    let d = only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::UnknownConfig,
        TRAINING_V2,
        "$.joinParts[1].groupBy.metaData.name",
    );
    assert!(d.message.contains("quickstart.returns.v1"), "{d}");
    assert!(repo.config("quickstart.training_set.v2").is_none());
    // training_set.v1 is offline: its backfill computes the inlined GroupBy itself, as Chronon's does.
    assert!(repo.config("quickstart.training_set.v1").is_some());
}

#[test]
fn an_online_join_part_whose_group_by_is_offline_is_an_error() {
    let repo = quickstart_with(RETURNS, |mut v| {
        v["metaData"]["online"] = json!(0);
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::Inconsistent,
        TRAINING_V2,
        "$.joinParts[1].groupBy.metaData.name",
    );
}

#[test]
fn an_online_join_inlining_another_version_of_a_group_by_is_an_error() {
    // The repo's GroupBy lost an aggregation since the Join was compiled: the fetcher would serve
    // the repo's features, the backfill the inlined ones.
    let repo = quickstart_with(PURCHASES, |mut v| {
        v["aggregations"].as_array_mut().unwrap().pop();
        Some(v)
    });
    let d = only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::Inconsistent,
        TRAINING_V2,
        "$.joinParts[0].groupBy",
    );
    assert!(d.message.contains("purchase_price_last10"), "{d}");
}

#[test]
fn a_key_the_source_does_not_select_is_an_error() {
    let repo = quickstart_with(PURCHASES, |mut v| {
        v["keyColumns"] = json!(["buyer_id"]);
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::MissingColumn,
        PURCHASES,
        "$.sources[0].events.query.selects",
    );
}

#[test]
fn an_aggregation_input_the_source_does_not_select_is_an_error() {
    let repo = quickstart_with(PURCHASES, |mut v| {
        v["aggregations"][2]["inputColumn"] = json!("price");
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::MissingColumn,
        PURCHASES,
        "$.aggregations[2].inputColumn",
    );
}

#[test]
fn sources_of_mixed_kinds_are_an_error() {
    let repo = quickstart_with(PURCHASES, |mut v| {
        let sources = v["sources"].as_array_mut().unwrap();
        let events = sources[0]["events"].clone();
        sources.push(json!({"entities": {
            "snapshotTable": events["table"],
            "query": events["query"],
        }}));
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::InvalidValue,
        PURCHASES,
        "$.sources[1]",
    );
}

#[test]
fn an_empty_staging_query_is_an_error() {
    let mut files = quickstart();
    files.files.push(chronoflow_config::RepoFile {
        path: "compiled/production/staging_queries/quickstart/nothing.v1".to_owned(),
        contents: serde_json::to_vec(&json!({
            "metaData": {"name": "quickstart.nothing.v1", "outputNamespace": "default"},
            "query": "  "
        }))
        .unwrap(),
    });
    let repo = repo::load(files);
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::InvalidValue,
        "compiled/production/staging_queries/quickstart/nothing.v1",
        "$.query",
    );
}

#[test]
fn empty_selects_are_an_error_through_the_keys_they_miss() {
    let repo = quickstart_with(USERS, |mut v| {
        v["sources"][0]["entities"]["query"]["selects"] = json!({});
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::MissingColumn,
        USERS,
        "$.sources[0].entities.query.selects",
    );
}

#[test]
fn a_key_mapping_to_something_not_a_key_is_an_error_not_ignored() {
    let repo = quickstart_with(TRAINING_V1, |mut v| {
        v["joinParts"][0]["keyMapping"] = json!({"user_id": "userid"});
        Some(v)
    });
    let d = only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::InvalidValue,
        TRAINING_V1,
        "$.joinParts[0].keyMapping.user_id",
    );
    assert_eq!(d.found.as_deref(), Some("userid"));
}

#[test]
fn a_key_mapped_from_two_left_columns_is_an_error() {
    let repo = quickstart_with(TRAINING_V1, |mut v| {
        v["left"]["events"]["query"]["selects"]["buyer"] = json!("user_id");
        v["joinParts"][0]["keyMapping"] = json!({"user_id": "user_id", "buyer": "user_id"});
        Some(v)
    });
    only_diagnostic(
        &repo,
        Severity::Error,
        DiagnosticCode::InvalidValue,
        TRAINING_V1,
        "$.joinParts[0].keyMapping.buyer",
    );
}

/// Regression (hostile-input probe): a config saved with a UTF-8 byte-order mark was "invalid JSON".
#[test]
fn a_config_with_a_byte_order_mark_loads_like_without() {
    let mut files = quickstart();
    let i = files.files.iter().position(|f| f.path == USERS).unwrap();
    let mut contents = "\u{feff}".as_bytes().to_vec();
    contents.extend_from_slice(&files.files[i].contents);
    files.files[i].contents = contents;
    let repo = repo::load(files);
    assert!(
        repo.diagnostics
            .iter()
            .all(|d| d.severity == Severity::Notice),
        "{:#?}",
        repo.diagnostics
    );
    assert!(repo.configs.iter().any(|c| c.path == USERS));
}
