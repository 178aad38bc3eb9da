//! `chronoflow table` through the binary: imports whose schema does not fit the table, and
//! `vacuum` of files that no partition lists.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

fn chronoflow(warehouse: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chronoflow"))
        .args(args)
        .env("CHRONOFLOW_WAREHOUSE", warehouse)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn old_file(path: &Path, bytes: usize) {
    std::fs::write(path, vec![0u8; bytes]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3 * 3600))
        .unwrap();
}

#[test]
fn import_of_a_changed_type_fails_naming_table_partition_column_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let csv = dir.path().join("a.csv");
    std::fs::write(&csv, "ds,id,score\n2024-01-01,1,0.5\n").unwrap();
    ok(&chronoflow(
        &wh,
        &["table", "import", "data.t", csv.to_str().unwrap()],
    ));
    // The same column as text, in a Parquet file exported from another table.
    let other = dir.path().join("b.csv");
    std::fs::write(&other, "ds,id,score\n2024-01-02,1,high\n").unwrap();
    ok(&chronoflow(
        &wh,
        &["table", "import", "data.u", other.to_str().unwrap()],
    ));
    let parquet = dir.path().join("b.parquet");
    ok(&chronoflow(
        &wh,
        &[
            "table",
            "export",
            "data.u",
            "--format",
            "parquet",
            "-o",
            parquet.to_str().unwrap(),
        ],
    ));
    let out = chronoflow(
        &wh,
        &["table", "import", "data.t", parquet.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "table data.t, partition ds=2024-01-02: column \"score\" is Utf8 in this write but Float64 in the table"
        ),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        ok(&chronoflow(&wh, &["table", "partitions", "data.t"])),
        "2024-01-01\t1 rows\t1 files\n"
    );
}

#[test]
fn vacuum_prints_and_removes_only_old_orphans_and_reads_stay_equal() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let csv = dir.path().join("a.csv");
    std::fs::write(&csv, "ds,id\n2024-01-01,1\n2024-01-02,2\n").unwrap();
    ok(&chronoflow(
        &wh,
        &["table", "import", "data.t", csv.to_str().unwrap()],
    ));
    ok(&chronoflow(
        &wh,
        &["table", "import", "data.u", csv.to_str().unwrap()],
    ));
    let before = ok(&chronoflow(
        &wh,
        &["table", "export", "data.t", "--format", "csv"],
    ));
    // What killed writers leave: a part no manifest lists, in two tables, and a young one.
    old_file(
        &wh.join("data/t/ds=2024-01-01/part-killed-00000.parquet"),
        100,
    );
    old_file(
        &wh.join("data/u/ds=2024-01-02/part-killed-00000.parquet"),
        20,
    );
    std::fs::write(
        wh.join("data/t/ds=2024-01-02/part-young-00000.parquet"),
        [0u8; 5],
    )
    .unwrap();

    let dry = chronoflow(&wh, &["table", "vacuum", "data.t", "--dry-run"]);
    assert_eq!(
        ok(&dry),
        "would remove\tdata/t/ds=2024-01-01/part-killed-00000.parquet\t100 bytes\n"
    );
    assert!(
        text(&dry.stderr).contains(
            "would remove 1 orphan file (100 bytes) in 1 table; 1 orphan younger than 1h kept"
        ),
        "{}",
        text(&dry.stderr)
    );
    assert!(
        wh.join("data/t/ds=2024-01-01/part-killed-00000.parquet")
            .exists()
    );

    // Every table when none is named.
    let done = chronoflow(&wh, &["table", "vacuum", "--older-than", "2h"]);
    assert_eq!(
        ok(&done),
        "removed\tdata/t/ds=2024-01-01/part-killed-00000.parquet\t100 bytes\n\
         removed\tdata/u/ds=2024-01-02/part-killed-00000.parquet\t20 bytes\n"
    );
    assert!(
        text(&done.stderr).contains("removed 2 orphan files (120 bytes) in 2 tables"),
        "{}",
        text(&done.stderr)
    );
    assert!(
        !wh.join("data/t/ds=2024-01-01/part-killed-00000.parquet")
            .exists()
    );
    assert!(
        wh.join("data/t/ds=2024-01-02/part-young-00000.parquet")
            .exists()
    );
    assert_eq!(
        ok(&chronoflow(
            &wh,
            &["table", "export", "data.t", "--format", "csv"]
        )),
        before
    );

    let bad = chronoflow(&wh, &["table", "vacuum", "--older-than", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("\"soon\" is not an age such as 90s, 30m, 1h or 2d"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn the_grace_period_of_commits_comes_from_chronoflow_orphan_grace() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let csv = dir.path().join("a.csv");
    std::fs::write(&csv, "ds,id\n2024-01-01,1\n").unwrap();
    ok(&chronoflow(
        &wh,
        &["table", "import", "data.t", csv.to_str().unwrap()],
    ));
    let young = wh.join("data/t/ds=2024-01-01/part-killed-00000.parquet");
    std::fs::write(&young, [0u8; 5]).unwrap();
    // The default hour keeps it...
    ok(&chronoflow(
        &wh,
        &["table", "import", "data.t", csv.to_str().unwrap()],
    ));
    assert!(young.exists());
    // ... a grace of zero does not.
    let mut import = Command::new(env!("CARGO_BIN_EXE_chronoflow"));
    import
        .args(["table", "import", "data.t", csv.to_str().unwrap()])
        .env("CHRONOFLOW_WAREHOUSE", &wh);
    ok(&import
        .env("CHRONOFLOW_ORPHAN_GRACE", "0s")
        .output()
        .unwrap());
    assert!(!young.exists());
    let bad = import
        .env("CHRONOFLOW_ORPHAN_GRACE", "soon")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("CHRONOFLOW_ORPHAN_GRACE: \"soon\" is not an age"),
        "{}",
        text(&bad.stderr)
    );
}
