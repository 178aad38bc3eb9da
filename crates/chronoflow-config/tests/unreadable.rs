//! Regression tests: an entry of the repo that cannot be read (a dangling symlink, a symlink loop)
//! is an `unreadable-file` error for that entry, and every other file still loads. Before, either
//! stopped the whole repo from loading (found by the hostile-input probe, bench/probe.sh).
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::fs;
use std::path::{Path, PathBuf};

use chronoflow_config::diagnostic::DiagnosticCode;
use chronoflow_config::fs::load_repo;

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of the quickstart's compiled configs in a fresh directory.
fn quickstart_copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chronoflow-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart");
    copy_dir(&fixtures.join("compiled"), &dir.join("compiled"));
    dir
}

#[test]
fn a_dangling_symlink_and_a_symlink_loop_are_diagnostics_not_a_failed_load() {
    let repo = quickstart_copy("unreadable");
    let group_bys = repo.join("compiled/production/group_bys/quickstart");
    std::os::unix::fs::symlink(repo.join("nowhere"), group_bys.join("dangling.v1")).unwrap();
    std::os::unix::fs::symlink(&group_bys, group_bys.join("loop")).unwrap();

    let loaded = load_repo(&repo).unwrap();
    let unreadable: Vec<&str> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.code == DiagnosticCode::UnreadableFile)
        .map(|d| d.file.as_str())
        .collect();
    assert_eq!(
        unreadable,
        [
            "compiled/production/group_bys/quickstart/dangling.v1",
            "compiled/production/group_bys/quickstart/loop",
        ],
        "{:#?}",
        loaded.diagnostics
    );
    assert!(
        loaded
            .diagnostics
            .iter()
            .all(|d| d.is_error() == (d.code == DiagnosticCode::UnreadableFile))
    );
    // The quickstart's configs all load beside them.
    for name in [
        "quickstart.purchases.v1",
        "quickstart.users.v1",
        "quickstart.training_set.v2",
    ] {
        assert!(
            loaded.configs.iter().any(|c| c.name() == name),
            "{name} missing"
        );
    }
    fs::remove_dir_all(&repo).unwrap();
}
