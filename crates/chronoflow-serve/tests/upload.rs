//! The batch side of serving in bounded memory, on the quickstart's data: an upload split into
//! shards writes the very rows an upload in one piece writes, and `upload-to-kv` loads a
//! partition of many part files, one file at a time, entry for entry.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use arrow::array::{AsArray, RecordBatch};
use chronoflow_config::Config;
use chronoflow_engine::online::UploadShards;
use chronoflow_engine::{MemoryLimit, SpillDir, TableName};
use chronoflow_serve::kv::{EmbeddedKv, KvStore};
use chronoflow_serve::upload;
use common::{batch_day as day, quickstart, quickstart_warehouse};

const GROUP_BYS: [&str; 2] = ["quickstart.purchases.v1", "quickstart.returns.v1"];
/// Small enough that the quickstart's few thousand rows make dozens of shards.
const TINY: MemoryLimit = MemoryLimit { bytes: 64 << 10 };
const UNBOUNDED: MemoryLimit = MemoryLimit { bytes: 1 << 40 };

fn upload_table(loaded: &chronoflow_config::LoadedConfig) -> TableName {
    TableName::parse(&chronoflow_config::naming::upload_table(
        &loaded.output_table(),
        loaded.dialect,
    ))
    .unwrap()
}

fn concat(batches: &[RecordBatch]) -> RecordBatch {
    arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
}

#[tokio::test]
async fn an_upload_split_into_shards_writes_the_rows_of_an_upload_in_one_piece() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = quickstart_warehouse(dir.path()).await;
    let repo = chronoflow_config::fs::load_repo(&quickstart()).unwrap();
    for name in GROUP_BYS {
        let loaded = repo.config(name).unwrap();
        let Config::GroupBy(gb) = &loaded.config else {
            panic!("{name} is a GroupBy")
        };
        // The limit does split the keys (else this test would compare one piece with itself).
        let mut spill = SpillDir::new().unwrap();
        let shards = UploadShards::load(&warehouse, gb, day(), TINY, 1024, &mut spill)
            .await
            .unwrap();
        assert!(shards.count() > 10, "{name}: {} shards", shards.count());

        let mut written = Vec::new();
        for limit in [UNBOUNDED, TINY] {
            let stored = upload::stored_config(&quickstart(), loaded).unwrap();
            upload::upload_within(&warehouse, loaded, stored, day(), limit)
                .await
                .unwrap();
            let rows = warehouse
                .read_partition(&upload_table(loaded), day())
                .await
                .unwrap();
            written.push(concat(&rows));
        }
        assert!(
            written[0].num_rows() > 100,
            "{name}: {}",
            written[0].num_rows()
        );
        assert_eq!(written[0], written[1], "{name}");
    }
}

#[tokio::test]
async fn upload_to_kv_loads_every_entry_of_a_partition_of_many_files() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = quickstart_warehouse(dir.path()).await;
    let repo = chronoflow_config::fs::load_repo(&quickstart()).unwrap();
    let kv = EmbeddedKv::open(&dir.path().join("kv")).unwrap();
    let loaded = repo.config("quickstart.returns.v1").unwrap();
    let stored = upload::stored_config(&quickstart(), loaded).unwrap();
    upload::upload_within(&warehouse, loaded, stored, day(), TINY)
        .await
        .unwrap();
    // The same rows again, in part files of 7 rows each.
    let table = upload_table(loaded);
    let rows = warehouse.read_partition(&table, day()).await.unwrap();
    let mut writer = warehouse
        .partition_writer(&table, "ds", day())
        .with_file_limits(7, usize::MAX); // cut between batches, which are as big
    let all = concat(&rows);
    for from in (0..all.num_rows()).step_by(7) {
        let n = 7.min(all.num_rows() - from);
        writer.write(all.slice(from, n)).await.unwrap();
    }
    let info = writer.commit().await.unwrap();
    assert!(info.files > 10, "{} files", info.files);

    let mut progress = Vec::new();
    let total = upload::upload_to_kv(&warehouse, &kv, loaded, day(), &mut |done, total| {
        progress.push((done, total))
    })
    .await
    .unwrap();
    let rows = all;
    assert_eq!(total, rows.num_rows());
    assert_eq!(progress.last(), Some(&(total, total)));
    let keys = rows.column(0).as_binary::<i32>();
    let values = rows.column(1).as_binary::<i32>();
    let asked: Vec<Vec<u8>> = keys.iter().map(|k| k.unwrap().to_vec()).collect();
    let got = kv
        .multi_get(
            &chronoflow_config::naming::batch_dataset(loaded.name()),
            &asked,
        )
        .await
        .unwrap();
    for (r, got) in got.into_iter().enumerate() {
        assert_eq!(got.as_deref(), Some(values.value(r)), "entry {r}");
    }
}
