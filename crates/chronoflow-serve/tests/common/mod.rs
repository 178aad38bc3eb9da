//! What the serving tests set up alike: the quickstart's configs and data in a real warehouse,
//! and its GroupBys uploaded to a KV store for the batch day.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test
// Each test binary uses its own share of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chronoflow_config::{LoadedConfig, PartitionDate};
use chronoflow_engine::import::import_file;
use chronoflow_engine::{TableName, Warehouse};
use chronoflow_serve::kv::KvStore;
use chronoflow_serve::upload;

/// The day the quickstart's GroupBys are uploaded for.
pub const BATCH_DAY: &str = "2023-11-29";

/// The quickstart's repo (configs and data), a fixture of the repo.
pub fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart")
}

pub fn batch_day() -> PartitionDate {
    PartitionDate::parse(BATCH_DAY).unwrap()
}

/// A warehouse under `dir` with the quickstart's three tables imported.
pub async fn quickstart_warehouse(dir: &Path) -> Warehouse {
    let warehouse = Warehouse::open(dir.join("warehouse").to_str().unwrap()).unwrap();
    for t in ["purchases", "returns", "users"] {
        import_file(
            &warehouse,
            &TableName::parse(&format!("data.{t}")).unwrap(),
            &quickstart().join(format!("data/{t}.csv")),
            "ds",
        )
        .await
        .unwrap();
    }
    warehouse
}

/// `upload` then `upload-to-kv` of GroupBy `loaded` for the batch day, as the CLI runs them.
pub async fn upload_group_by(warehouse: &Warehouse, store: &dyn KvStore, loaded: &LoadedConfig) {
    let stored = upload::stored_config(&quickstart(), loaded).unwrap();
    upload::upload(warehouse, loaded, stored, batch_day())
        .await
        .unwrap();
    upload::upload_to_kv(warehouse, store, loaded, batch_day(), &mut |_, _| {})
        .await
        .unwrap();
}
