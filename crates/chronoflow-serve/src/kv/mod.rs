//! The KV store: datasets of key -> value, loaded as whole batches and switched atomically.
//!
//! A batch (one `version`, e.g. the upload's `ds`) is written beside the one being served and
//! becomes visible only at `commit_batch`, in one atomic step; the previous batch is then
//! dropped. A load that dies half-way leaves the previous batch serving, and its leftovers are
//! cleared when the same version is loaded again (`begin_batch`) or the store is reopened.
//!
//! Streamed rows go to append-only datasets instead: each key holds a set of values, so a replay
//! that is rerun adds nothing twice.

mod embedded;
mod redis_store;

pub use embedded::EmbeddedKv;
pub use redis_store::RedisKv;

use futures::future::BoxFuture;

use crate::error::Result;

pub type Entry = (Vec<u8>, Vec<u8>);

/// The values of some keys, in their order (`None`: the key is absent).
pub type Values = Vec<Option<Vec<u8>>>;

/// Which appended values housekeeping keeps (called with each stored value).
pub type Keep = std::sync::Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A consumer's position (e.g. a topic's offsets), stored in the same atomic write as the rows
/// it covers: after a crash the store holds both or neither, so a restart resumes exactly after
/// the last rows stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub name: String,
    pub value: Vec<u8>,
}

pub trait KvStore: Send + Sync {
    /// Starts loading `version` of `dataset`, clearing what an interrupted load of it left.
    fn begin_batch<'a>(&'a self, dataset: &'a str, version: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Adds entries to the batch being loaded (not visible until `commit_batch`).
    fn put_batch<'a>(
        &'a self,
        dataset: &'a str,
        version: &'a str,
        entries: Vec<Entry>,
    ) -> BoxFuture<'a, Result<()>>;
    /// Makes `version` the one served, atomically, and drops the previous one.
    fn commit_batch<'a>(&'a self, dataset: &'a str, version: &'a str) -> BoxFuture<'a, Result<()>>;
    /// The version being served, if any.
    fn active_version<'a>(&'a self, dataset: &'a str) -> BoxFuture<'a, Result<Option<String>>>;
    /// Values of `keys` in the served version (all from the same version).
    fn multi_get<'a>(
        &'a self,
        dataset: &'a str,
        keys: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>>>;
    /// The values of `keys[1..]`, if `keys[0]` holds `expected` in the served version (all from
    /// the same version); `None` when it holds anything else. The fetcher checks with it that
    /// the batch it decoded is still the one served, without copying the check value out.
    fn multi_get_if<'a>(
        &'a self,
        dataset: &'a str,
        expected: &'a [u8],
        keys: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Option<Values>>> {
        Box::pin(async move {
            let mut values = self.multi_get(dataset, keys).await?;
            if values.first().and_then(Option::as_deref) != Some(expected) {
                return Ok(None);
            }
            values.remove(0);
            Ok(Some(values))
        })
    }
    /// Adds values to keys of an append-only dataset. A value the key already holds is kept once.
    fn append<'a>(&'a self, dataset: &'a str, entries: Vec<Entry>) -> BoxFuture<'a, Result<()>>;
    /// [`append`](KvStore::append), and sets `checkpoint`, in one atomic and durable write.
    fn append_checkpointed<'a>(
        &'a self,
        dataset: &'a str,
        entries: Vec<Entry>,
        checkpoint: Checkpoint,
    ) -> BoxFuture<'a, Result<()>>;
    /// The value of checkpoint `name`, if one was stored.
    fn checkpoint<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>>;
    /// Removes the appended values of `dataset` that `keep` refuses; returns how many. Values
    /// appended meanwhile are not touched.
    fn prune_appended<'a>(&'a self, dataset: &'a str, keep: Keep) -> BoxFuture<'a, Result<u64>>;
    /// Every value appended to each of `keys` (in byte order), empty for keys never appended to.
    fn multi_get_appended<'a>(
        &'a self,
        dataset: &'a str,
        keys: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Vec<Vec<Vec<u8>>>>>;
    /// How many distinct values were appended to `dataset`, over all its keys (0 for a dataset
    /// never appended to). Cheap: a stored count, not a scan of the keys.
    fn appended_count<'a>(&'a self, dataset: &'a str) -> BoxFuture<'a, Result<u64>>;
}

/// The default embedded store, relative to the working directory.
pub const DEFAULT_KV: &str = "./.chronoflow/kv";

/// Opens the store `spec` names: `redis://…` (keys prefixed `chronoflow:`), else the path of an
/// embedded store.
pub async fn open(spec: &str) -> Result<std::sync::Arc<dyn KvStore>> {
    if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        Ok(std::sync::Arc::new(
            RedisKv::connect(spec, "chronoflow").await?,
        ))
    } else {
        let path = spec.strip_prefix("file://").unwrap_or(spec);
        Ok(std::sync::Arc::new(EmbeddedKv::open(
            std::path::Path::new(path),
        )?))
    }
}

/// The store a process uses, opened on first use and then shared by everything in it (the
/// embedded store can be open in one process at a time). An open that fails is retried on the
/// next use, so a store that comes up later is picked up.
#[derive(Clone)]
pub struct SharedKv {
    spec: String,
    cell: std::sync::Arc<tokio::sync::OnceCell<std::sync::Arc<dyn KvStore>>>,
}

impl SharedKv {
    pub fn new(spec: impl Into<String>) -> SharedKv {
        SharedKv {
            spec: spec.into(),
            cell: Default::default(),
        }
    }

    pub fn spec(&self) -> &str {
        &self.spec
    }

    pub async fn get(&self) -> Result<std::sync::Arc<dyn KvStore>> {
        self.cell
            .get_or_try_init(|| open(&self.spec))
            .await
            .cloned()
    }
}
