//! Memory of an import, alone in its test binary so that the process's peak resident size is
//! this test's (Linux: `VmHWM` of /proc/self/status; elsewhere the test only checks the import).
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use chronoflow_engine::import::import_file;
use chronoflow_engine::{TableName, Warehouse};

fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Found by bench/probe: the CSV reader reserved room for 65,536 rows of every column before
/// reading one, so a 1-row file of 4,000 columns (16 KB) took 8 GB and 28 s, and one of 10,000
/// columns exhausted memory. Now a batch holds a bounded number of cells.
#[tokio::test]
async fn a_wide_csv_imports_in_bounded_memory() {
    const COLUMNS: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let header: Vec<String> = (0..COLUMNS).map(|i| format!("c{i}")).collect();
    let row = vec!["1"; COLUMNS].join(",");
    let file = dir.path().join("wide.csv");
    std::fs::write(
        &file,
        format!("ds,{}\n2024-01-01,{row}\n", header.join(",")),
    )
    .unwrap();
    let warehouse = Warehouse::open(dir.path().join("wh").to_str().unwrap()).unwrap();
    let table = TableName::parse("data.wide").unwrap();

    let report = import_file(&warehouse, &table, &file, "ds").await.unwrap();

    assert_eq!(report.rows, 1);
    if let Some(peak) = peak_resident_bytes() {
        assert!(
            peak < 1 << 30,
            "importing a 1-row file of {COLUMNS} columns peaked at {} MB",
            peak >> 20
        );
    }
}
