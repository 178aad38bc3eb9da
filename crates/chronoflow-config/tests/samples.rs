//! Every real compiled config we have loads with zero errors, in both dialects.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::{Path, PathBuf};

use chronoflow_config::{Config, Dialect, Repo, Severity, fs::load_repo};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/chronon")
        .join(rel)
}

fn load(rel: &str) -> Repo {
    load_repo(&fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn assert_no_errors_or_warnings(repo: &Repo, allowed_notice_files: &[&str]) {
    let unexpected: Vec<String> = repo
        .diagnostics
        .iter()
        .filter(|d| {
            d.severity != Severity::Notice
                || !allowed_notice_files.iter().any(|f| d.file.contains(f))
        })
        .map(|d| d.to_string())
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected diagnostics:\n{}",
        unexpected.join("\n")
    );
}

#[test]
fn airbnb_samples_load_cleanly() {
    let mut repo = load("samples/airbnb");
    // Two of Chronon's test configs are Joins without parts (their tables copy the left rows):
    // loaded, with a warning.
    let without_parts: Vec<String> = repo
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning && d.path == "$.joinParts")
        .map(|d| d.file.clone())
        .collect();
    assert_eq!(
        without_parts,
        [
            "production/joins/sample_team/sample_join_from_shorthand.v1",
            "production/joins/sample_team/sample_join_without_join_parts.v1"
        ]
    );
    repo.diagnostics
        .retain(|d| !(d.severity == Severity::Warning && d.path == "$.joinParts"));
    assert_no_errors_or_warnings(&repo, &[]);
    assert_eq!(repo.configs.len(), 41);
    assert!(repo.configs.iter().all(|c| c.dialect == Dialect::Airbnb));
}

#[test]
fn zipline_samples_load_cleanly_and_models_are_a_notice() {
    let repo = load("samples/zipline");
    assert_no_errors_or_warnings(&repo, &["/models/"]);
    let models = repo
        .diagnostics
        .iter()
        .filter(|d| d.file.contains("/models/"))
        .count();
    assert_eq!(models, 2, "{:#?}", repo.diagnostics);
    // 44 files: 2 models, 6 team metadata files, 36 configs.
    assert_eq!(repo.configs.len(), 36);
    assert!(repo.configs.iter().all(|c| c.dialect == Dialect::Zipline));
    assert!(repo.teams.contains("sample_team"));
}

#[test]
fn quickstart_loads_from_its_repo_dir_and_from_compiled() {
    for rel in ["quickstart", "quickstart/compiled"] {
        let repo = load(rel);
        assert_no_errors_or_warnings(&repo, &[]);
        let names: Vec<&str> = repo.configs.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "quickstart.purchases.v1",
                "quickstart.returns.v1",
                "quickstart.training_set.v1",
                "quickstart.training_set.v2",
                "quickstart.users.v1"
            ]
        );
    }
    let repo = load("quickstart");
    let returns = repo.config("quickstart.returns.v1").unwrap();
    assert_eq!(
        returns.path,
        "compiled/production/group_bys/quickstart/returns.v1"
    );
    let Config::GroupBy(gb) = &returns.config else {
        panic!("returns.v1 is a GroupBy")
    };
    assert!(gb.is_streaming());
    let Config::GroupBy(purchases) = &repo.config("quickstart.purchases.v1").unwrap().config else {
        panic!()
    };
    assert!(!purchases.is_streaming());
}
