//! The KV store: datasets of key -> value, loaded as whole batches and switched atomically.
//!
//! A batch (one `version`, e.g. the upload's `ds`) is written beside the one being served and
//! becomes visible only at `commit_batch`, in one atomic step; the previous batch is then
//! dropped. A load that dies half-way leaves the previous batch serving, and its leftovers are
//! cleared when the same version is loaded again (`begin_batch`) or the store is reopened.

mod embedded;
mod redis_store;

pub use embedded::EmbeddedKv;
pub use redis_store::RedisKv;

use futures::future::BoxFuture;

use crate::error::Result;

pub type Entry = (Vec<u8>, Vec<u8>);

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
}
