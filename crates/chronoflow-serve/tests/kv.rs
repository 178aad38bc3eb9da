//! The KV store contract, on both backends: batches switch atomically, an interrupted load
//! leaves the previous batch serving, and a rerun of the load completes.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use chronoflow_serve::kv::{EmbeddedKv, KvStore, RedisKv};

fn entries(version: &str, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("k{i}").into_bytes(),
                format!("{version}:{i}").into_bytes(),
            )
        })
        .collect()
}

fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("k{i}").into_bytes()).collect()
}

async fn values(kv: &dyn KvStore, dataset: &str, n: usize) -> Vec<Option<String>> {
    kv.multi_get(dataset, &keys(n))
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.map(|v| String::from_utf8(v).unwrap()))
        .collect()
}

async fn batches_switch_atomically(kv: &dyn KvStore, dataset: &str) {
    let err = kv.multi_get(dataset, &keys(1)).await.unwrap_err();
    assert!(
        err.to_string().contains("no batch has been uploaded"),
        "{err}"
    );

    kv.begin_batch(dataset, "2026-11-19").await.unwrap();
    kv.put_batch(dataset, "2026-11-19", entries("a", 3))
        .await
        .unwrap();
    // Loaded but not committed: nothing served yet.
    assert_eq!(kv.active_version(dataset).await.unwrap(), None);
    kv.commit_batch(dataset, "2026-11-19").await.unwrap();
    assert_eq!(
        values(kv, dataset, 3).await,
        [Some("a:0".into()), Some("a:1".into()), Some("a:2".into())]
    );

    // A new batch, loaded in chunks, is invisible until its commit.
    kv.begin_batch(dataset, "2026-11-20").await.unwrap();
    kv.put_batch(dataset, "2026-11-20", entries("b", 2))
        .await
        .unwrap();
    assert_eq!(values(kv, dataset, 3).await[0].as_deref(), Some("a:0"));
    kv.commit_batch(dataset, "2026-11-20").await.unwrap();
    // Keys of the old batch only are gone with it.
    assert_eq!(
        values(kv, dataset, 3).await,
        [Some("b:0".into()), Some("b:1".into()), None]
    );
    assert_eq!(
        kv.active_version(dataset).await.unwrap().as_deref(),
        Some("2026-11-20")
    );

    // Values read only while a key holds what the reader expects (the fetcher's check that
    // the batch is still the one it decoded), a missing key included.
    assert_eq!(
        kv.multi_get_if(dataset, b"b:0", &keys(3)).await.unwrap(),
        Some(vec![Some(b"b:1".to_vec()), None])
    );
    assert_eq!(
        kv.multi_get_if(dataset, b"a:0", &keys(3)).await.unwrap(),
        None
    );
    assert_eq!(
        kv.multi_get_if(dataset, b"b:0", &[b"gone".to_vec()])
            .await
            .unwrap(),
        None
    );

    // The served version cannot be reloaded in place.
    let err = kv.begin_batch(dataset, "2026-11-20").await.unwrap_err();
    assert!(err.to_string().contains("being served"), "{err}");
}

/// A load that dies before its commit: the previous batch keeps serving; loading the same
/// version again starts from scratch and completes.
async fn interrupted_load_keeps_the_previous_batch(kv: &dyn KvStore, dataset: &str) {
    kv.begin_batch(dataset, "v1").await.unwrap();
    kv.put_batch(dataset, "v1", entries("one", 2))
        .await
        .unwrap();
    kv.commit_batch(dataset, "v1").await.unwrap();
    kv.begin_batch(dataset, "v2").await.unwrap();
    kv.put_batch(dataset, "v2", entries("half", 1))
        .await
        .unwrap();
    // ... the loader dies here.
    assert_eq!(
        values(kv, dataset, 2).await,
        [Some("one:0".into()), Some("one:1".into())]
    );
    kv.begin_batch(dataset, "v2").await.unwrap();
    kv.put_batch(dataset, "v2", vec![(b"k1".to_vec(), b"two:1".to_vec())])
        .await
        .unwrap();
    kv.commit_batch(dataset, "v2").await.unwrap();
    // Nothing of the interrupted load survived the rerun.
    assert_eq!(values(kv, dataset, 2).await, [None, Some("two:1".into())]);
}

/// Appended values are counted once each, over all keys, however often they are redelivered.
async fn appended_values_are_counted_once(kv: &dyn KvStore, dataset: &str) {
    assert_eq!(kv.appended_count(dataset).await.unwrap(), 0);
    let rows = |key: &str, values: &[&str]| -> Vec<(Vec<u8>, Vec<u8>)> {
        values
            .iter()
            .map(|v| (key.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    };
    kv.append(dataset, rows("k1", &["a", "b"])).await.unwrap();
    assert_eq!(kv.appended_count(dataset).await.unwrap(), 2);
    // The same values again (a rerun replay), and a duplicate within one append.
    kv.append(dataset, rows("k1", &["a", "b", "b"]))
        .await
        .unwrap();
    assert_eq!(kv.appended_count(dataset).await.unwrap(), 2);
    // Another key adds up, even with a value k1 holds; one new value beside old ones counts one.
    kv.append(dataset, rows("k2", &["a", "c"])).await.unwrap();
    kv.append(dataset, rows("k1", &["a", "d"])).await.unwrap();
    assert_eq!(kv.appended_count(dataset).await.unwrap(), 5);
    assert_eq!(
        kv.multi_get_appended(dataset, &[b"k1".to_vec(), b"k2".to_vec()])
            .await
            .unwrap(),
        [
            vec![b"a".to_vec(), b"b".to_vec(), b"d".to_vec()],
            vec![b"a".to_vec(), b"c".to_vec()]
        ]
    );
    // Other datasets are counted apart.
    assert_eq!(kv.appended_count("NO_SUCH_STREAMING").await.unwrap(), 0);
}

#[tokio::test]
async fn embedded_appended_values_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let kv = EmbeddedKv::open(&dir.path().join("kv")).unwrap();
    appended_values_are_counted_once(&kv, "TEAM_GB_V1_STREAMING").await;
    // The count survives a reopen.
    drop(kv);
    let kv = EmbeddedKv::open(&dir.path().join("kv")).unwrap();
    assert_eq!(kv.appended_count("TEAM_GB_V1_STREAMING").await.unwrap(), 5);
}

#[tokio::test]
async fn redis_appended_values_are_counted_once() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("REDIS_URL is not set: skipping the Redis run");
        return;
    };
    let prefix = format!("chronoflow-test-append-{}", std::process::id());
    let kv = RedisKv::connect(&url, &prefix).await.unwrap();
    appended_values_are_counted_once(&kv, "TEAM_GB_V1_STREAMING").await;
    // Leave the server as it was: two sets and the count.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left.len(), 3, "{left:?}");
    for key in left {
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn embedded_batches_switch_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let kv = EmbeddedKv::open(&dir.path().join("kv")).unwrap();
    batches_switch_atomically(&kv, "TEAM_GB_V1_BATCH").await;
    interrupted_load_keeps_the_previous_batch(&kv, "TEAM_OTHER_V1_BATCH").await;
}

/// Reads share one read transaction between writes: every write, through any handle of the
/// store, is seen by the next read, and a batch not committed yet by none.
#[tokio::test]
async fn embedded_reads_see_each_write_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let kv = EmbeddedKv::open(&dir.path().join("kv")).unwrap();
    let writer = kv.clone();
    let key = vec![b"k".to_vec()];
    assert!(kv.multi_get("D", &key).await.is_err());
    assert_eq!(
        kv.multi_get_appended("S", &key).await.unwrap(),
        [Vec::<Vec<u8>>::new()]
    );
    let mut served: Vec<Option<String>> = vec![None; 3];
    for (n, version) in ["v1", "v2", "v3"].into_iter().enumerate() {
        writer.begin_batch("D", version).await.unwrap();
        writer
            .put_batch("D", version, entries(version, n + 1))
            .await
            .unwrap();
        if n > 0 {
            assert_eq!(values(&kv, "D", 3).await, served, "before the commit");
        }
        writer.commit_batch("D", version).await.unwrap();
        served = (0..3)
            .map(|i| (i <= n).then(|| format!("{version}:{i}")))
            .collect();
        assert_eq!(values(&kv, "D", 3).await, served, "after the commit");

        writer
            .append("S", vec![(b"k".to_vec(), vec![n as u8])])
            .await
            .unwrap();
        let appended = kv.multi_get_appended("S", &key).await.unwrap();
        assert_eq!(appended[0].len(), n + 1);
    }
}

#[tokio::test]
async fn embedded_reopen_clears_an_interrupted_load_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv");
    {
        let kv = EmbeddedKv::open(&path).unwrap();
        kv.begin_batch("D", "v1").await.unwrap();
        kv.put_batch("D", "v1", entries("one", 2)).await.unwrap();
        kv.commit_batch("D", "v1").await.unwrap();
        kv.begin_batch("D", "v2").await.unwrap();
        kv.put_batch("D", "v2", entries("half", 2)).await.unwrap();
        // Dropped without a commit, as a process that dies.
    }
    let kv = EmbeddedKv::open(&path).unwrap();
    assert_eq!(
        values(&kv, "D", 2).await,
        [Some("one:0".into()), Some("one:1".into())]
    );
    kv.begin_batch("D", "v2").await.unwrap();
    kv.put_batch("D", "v2", entries("two", 1)).await.unwrap();
    kv.commit_batch("D", "v2").await.unwrap();
    assert_eq!(values(&kv, "D", 2).await, [Some("two:0".into()), None]);
}

#[tokio::test]
async fn redis_batches_switch_atomically() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("REDIS_URL is not set: skipping the Redis run");
        return;
    };
    let prefix = format!("chronoflow-test-{}", std::process::id());
    let kv = RedisKv::connect(&url, &prefix).await.unwrap();
    batches_switch_atomically(&kv, "TEAM_GB_V1_BATCH").await;
    interrupted_load_keeps_the_previous_batch(&kv, "TEAM_OTHER_V1_BATCH").await;
    // Leave the server as it was.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    // Each dataset keeps its pointer and its served batch: the replaced batches are gone.
    assert_eq!(left.len(), 4, "{left:?}");
    for key in left {
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let err = match RedisKv::connect("redis://127.0.0.1:1", "x").await {
        Ok(_) => panic!("connected to port 1"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with("Redis KV store redis://127.0.0.1:1: unreachable"),
        "{err}"
    );
}

/// A consumer's rows and its checkpoint land together; housekeeping removes what `keep`
/// refuses and takes it off the count.
async fn checkpointed_appends_and_pruning(kv: &dyn KvStore, dataset: &str, checkpoint: &str) {
    use chronoflow_serve::kv::Checkpoint;
    assert_eq!(kv.checkpoint(checkpoint).await.unwrap(), None);
    let rows = |key: &str, values: &[&str]| -> Vec<(Vec<u8>, Vec<u8>)> {
        values
            .iter()
            .map(|v| (key.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    };
    let at = |offset: &str| Checkpoint {
        name: checkpoint.to_owned(),
        value: offset.as_bytes().to_vec(),
    };
    kv.append_checkpointed(dataset, rows("k1", &["old-1", "new-1"]), at("2"))
        .await
        .unwrap();
    // A redelivery: nothing new is counted, the checkpoint moves.
    kv.append_checkpointed(dataset, rows("k1", &["new-1"]), at("3"))
        .await
        .unwrap();
    kv.append_checkpointed(dataset, rows("k2", &["old-2"]), at("4"))
        .await
        .unwrap();
    // No rows, only offsets (every record of a batch malformed or filtered).
    kv.append_checkpointed(dataset, Vec::new(), at("5"))
        .await
        .unwrap();
    assert_eq!(
        kv.checkpoint(checkpoint).await.unwrap(),
        Some(b"5".to_vec())
    );
    assert_eq!(kv.appended_count(dataset).await.unwrap(), 3);
    let removed = kv
        .prune_appended(
            dataset,
            std::sync::Arc::new(|v: &[u8]| !v.starts_with(b"old")),
        )
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(kv.appended_count(dataset).await.unwrap(), 1);
    assert_eq!(
        kv.multi_get_appended(dataset, &[b"k1".to_vec(), b"k2".to_vec()])
            .await
            .unwrap(),
        [vec![b"new-1".to_vec()], Vec::new()]
    );
    // Nothing left to prune; a dataset never appended to prunes nothing.
    let keep_all: chronoflow_serve::kv::Keep = std::sync::Arc::new(|_: &[u8]| false);
    assert_eq!(
        kv.prune_appended("NO_SUCH_STREAMING", keep_all)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn embedded_checkpointed_appends_and_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let kv = EmbeddedKv::open(&dir.path().join("kv")).unwrap();
    checkpointed_appends_and_pruning(&kv, "TEAM_GB_V1_STREAMING", "stream:team.gb.v1").await;
    drop(kv);
    // Durable: the checkpoint survives a reopen.
    let kv = EmbeddedKv::open(&dir.path().join("kv")).unwrap();
    assert_eq!(
        kv.checkpoint("stream:team.gb.v1").await.unwrap(),
        Some(b"5".to_vec())
    );
}

#[tokio::test]
async fn redis_checkpointed_appends_and_pruning() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "REDIS_URL is not set under CI"
        );
        eprintln!("REDIS_URL is not set: skipping the Redis run");
        return;
    };
    let prefix = format!("chronoflow-test-checkpoint-{}", std::process::id());
    let kv = RedisKv::connect(&url, &prefix).await.unwrap();
    checkpointed_appends_and_pruning(&kv, "TEAM_GB_V1_STREAMING", "stream:team.gb.v1").await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in left {
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}
