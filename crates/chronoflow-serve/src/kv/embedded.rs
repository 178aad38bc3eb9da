//! The embedded KV store: one redb file (`./.chronoflow/kv` by default).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use redb::{
    Database, Durability, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable,
    ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};

use super::{Checkpoint, Entry, Keep, KvStore};
use crate::error::{Result, ServeError};

/// dataset -> the version served.
const ACTIVE: TableDefinition<&str, &str> = TableDefinition::new("active");
/// checkpoint name -> value (consumers' positions, written with their rows).
const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoints");
/// Batch tables are named `batch\x1f<dataset>\x1f<version>`.
const BATCH_PREFIX: &str = "batch\u{1f}";

/// Append-only datasets are multimap tables named `stream\x1f<dataset>`.
fn stream_table(dataset: &str) -> String {
    format!("stream\u{1f}{dataset}")
}

fn batch_table(dataset: &str, version: &str) -> String {
    format!("{BATCH_PREFIX}{dataset}\u{1f}{version}")
}

#[derive(Clone)]
pub struct EmbeddedKv {
    db: Arc<Database>,
    path: PathBuf,
}

impl EmbeddedKv {
    /// Opens (or creates) the store, and clears batches no dataset serves: leftovers of loads
    /// that died before their commit.
    pub fn open(path: &Path) -> Result<EmbeddedKv> {
        let err = |message: String| ServeError::Embedded {
            path: path.display().to_string(),
            message,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => err(
                "it is open in another process (a running `chronoflow serve` or `standalone`?); \
                 fetch over that process's HTTP API, or share a Redis store between processes"
                    .to_owned(),
            ),
            e => err(e.to_string()),
        })?;
        let kv = EmbeddedKv {
            db: Arc::new(db),
            path: path.to_owned(),
        };
        kv.clear_unserved().map_err(err)?;
        Ok(kv)
    }

    fn err(&self, message: impl ToString) -> ServeError {
        ServeError::Embedded {
            path: self.path.display().to_string(),
            message: message.to_string(),
        }
    }

    fn clear_unserved(&self) -> std::result::Result<(), String> {
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let active = txn.open_table(ACTIVE).map_err(|e| e.to_string())?;
            let mut stale = Vec::new();
            for handle in txn.list_tables().map_err(|e| e.to_string())? {
                let name = handle.name().to_owned();
                let Some(rest) = name.strip_prefix(BATCH_PREFIX) else {
                    continue;
                };
                let Some((dataset, version)) = rest.split_once('\u{1f}') else {
                    continue;
                };
                let served = active.get(dataset).map_err(|e| e.to_string())?;
                if served.as_ref().map(|v| v.value()) != Some(version) {
                    stale.push(name);
                }
            }
            drop(active);
            for name in stale {
                let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
                txn.delete_table(def).map_err(|e| e.to_string())?;
            }
        }
        txn.commit().map_err(|e| e.to_string())
    }

    /// Appends `entries` to `dataset`'s multimap table, and sets `checkpoint`, in one durable
    /// transaction.
    fn write_appended(
        &self,
        dataset: &str,
        entries: Vec<Entry>,
        checkpoint: Option<Checkpoint>,
    ) -> BoxFuture<'static, Result<()>> {
        let name = stream_table(dataset);
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let def: MultimapTableDefinition<&[u8], &[u8]> =
                    MultimapTableDefinition::new(&name);
                let mut table = txn.open_multimap_table(def).map_err(|e| e.to_string())?;
                for (k, v) in &entries {
                    table
                        .insert(k.as_slice(), v.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                if let Some(c) = &checkpoint {
                    let mut checkpoints = txn.open_table(CHECKPOINTS).map_err(|e| e.to_string())?;
                    checkpoints
                        .insert(c.name.as_str(), c.value.as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
            txn.commit().map_err(|e| e.to_string())
        })
    }

    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> std::result::Result<T, String> + Send + 'static,
    ) -> BoxFuture<'static, Result<T>> {
        let db = self.db.clone();
        let path = self.path.display().to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&db))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|message| ServeError::Embedded { path, message })
        })
    }
}

impl KvStore for EmbeddedKv {
    fn begin_batch<'a>(&'a self, dataset: &'a str, version: &'a str) -> BoxFuture<'a, Result<()>> {
        let name = batch_table(dataset, version);
        let dataset = dataset.to_owned();
        let version = version.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let active = txn.open_table(ACTIVE).map_err(|e| e.to_string())?;
                if active
                    .get(dataset.as_str())
                    .map_err(|e| e.to_string())?
                    .map(|v| v.value() == version)
                    == Some(true)
                {
                    return Err(format!(
                        "version {version} of {dataset} is being served; load a new version instead"
                    ));
                }
            }
            let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
            txn.delete_table(def).map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())
        })
    }

    fn put_batch<'a>(
        &'a self,
        dataset: &'a str,
        version: &'a str,
        entries: Vec<Entry>,
    ) -> BoxFuture<'a, Result<()>> {
        let name = batch_table(dataset, version);
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(|e| e.to_string())?;
            // Chunks need not reach the disk one by one: the commit that switches versions is
            // durable, and makes every earlier commit durable with it.
            txn.set_durability(Durability::None)
                .map_err(|e| e.to_string())?;
            {
                let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
                let mut table = txn.open_table(def).map_err(|e| e.to_string())?;
                for (k, v) in &entries {
                    table
                        .insert(k.as_slice(), v.as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
            txn.commit().map_err(|e| e.to_string())
        })
    }

    fn commit_batch<'a>(&'a self, dataset: &'a str, version: &'a str) -> BoxFuture<'a, Result<()>> {
        let name = batch_table(dataset, version);
        let dataset = dataset.to_owned();
        let version = version.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
                // An empty batch is a valid batch (no keys): make sure its table exists.
                txn.open_table(def).map_err(|e| e.to_string())?;
                let mut active = txn.open_table(ACTIVE).map_err(|e| e.to_string())?;
                let previous = active
                    .insert(dataset.as_str(), version.as_str())
                    .map_err(|e| e.to_string())?
                    .map(|v| v.value().to_owned());
                drop(active);
                if let Some(previous) = previous.filter(|p| *p != version) {
                    let old = batch_table(&dataset, &previous);
                    let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&old);
                    txn.delete_table(def).map_err(|e| e.to_string())?;
                }
            }
            txn.commit().map_err(|e| e.to_string())
        })
    }

    fn active_version<'a>(&'a self, dataset: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let active = match txn.open_table(ACTIVE) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(self.err(e)),
            };
            Ok(active
                .get(dataset)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_owned()))
        })
    }

    fn multi_get<'a>(
        &'a self,
        dataset: &'a str,
        keys: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>>> {
        // Reads are microseconds in redb: done inline, one read transaction for the whole
        // request, so every value comes from the same version.
        Box::pin(async move {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let version = match txn.open_table(ACTIVE) {
                Ok(active) => active
                    .get(dataset)
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_owned()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(self.err(e)),
            };
            let Some(version) = version else {
                return Err(ServeError::Dataset {
                    dataset: dataset.to_owned(),
                    message: "no batch has been uploaded".to_owned(),
                });
            };
            let name = batch_table(dataset, &version);
            let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
            let table = txn.open_table(def).map_err(|e| self.err(e))?;
            keys.iter()
                .map(|k| {
                    table
                        .get(k.as_slice())
                        .map(|v| v.map(|v| v.value().to_vec()))
                        .map_err(|e| self.err(e))
                })
                .collect()
        })
    }

    fn append<'a>(&'a self, dataset: &'a str, entries: Vec<Entry>) -> BoxFuture<'a, Result<()>> {
        self.write_appended(dataset, entries, None)
    }

    fn append_checkpointed<'a>(
        &'a self,
        dataset: &'a str,
        entries: Vec<Entry>,
        checkpoint: Checkpoint,
    ) -> BoxFuture<'a, Result<()>> {
        self.write_appended(dataset, entries, Some(checkpoint))
    }

    fn checkpoint<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        let name = name.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            let table = match txn.open_table(CHECKPOINTS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            let value = table.get(name.as_str()).map_err(|e| e.to_string())?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    fn prune_appended<'a>(&'a self, dataset: &'a str, keep: Keep) -> BoxFuture<'a, Result<u64>> {
        let name = stream_table(dataset);
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            let mut removed = 0;
            {
                let def: MultimapTableDefinition<&[u8], &[u8]> =
                    MultimapTableDefinition::new(&name);
                let mut table = txn.open_multimap_table(def).map_err(|e| e.to_string())?;
                let mut dropped: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                for entry in table.iter().map_err(|e| e.to_string())? {
                    let (key, values) = entry.map_err(|e| e.to_string())?;
                    for value in values {
                        let value = value.map_err(|e| e.to_string())?;
                        if !keep(value.value()) {
                            dropped.push((key.value().to_vec(), value.value().to_vec()));
                        }
                    }
                }
                for (k, v) in &dropped {
                    if table
                        .remove(k.as_slice(), v.as_slice())
                        .map_err(|e| e.to_string())?
                    {
                        removed += 1;
                    }
                }
            }
            txn.commit().map_err(|e| e.to_string())?;
            Ok(removed)
        })
    }

    fn multi_get_appended<'a>(
        &'a self,
        dataset: &'a str,
        keys: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Vec<Vec<Vec<u8>>>>> {
        Box::pin(async move {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let name = stream_table(dataset);
            let def: MultimapTableDefinition<&[u8], &[u8]> = MultimapTableDefinition::new(&name);
            let table = match txn.open_multimap_table(def) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => {
                    return Ok(vec![Vec::new(); keys.len()]);
                }
                Err(e) => return Err(self.err(e)),
            };
            keys.iter()
                .map(|k| {
                    let values = table.get(k.as_slice()).map_err(|e| self.err(e))?;
                    values
                        .map(|v| v.map(|v| v.value().to_vec()).map_err(|e| self.err(e)))
                        .collect()
                })
                .collect()
        })
    }

    fn appended_count<'a>(&'a self, dataset: &'a str) -> BoxFuture<'a, Result<u64>> {
        // The table keeps its number of (key, value) pairs in its header: no scan.
        Box::pin(async move {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let name = stream_table(dataset);
            let def: MultimapTableDefinition<&[u8], &[u8]> = MultimapTableDefinition::new(&name);
            match txn.open_multimap_table(def) {
                Ok(table) => table.len().map_err(|e| self.err(e)),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
                Err(e) => Err(self.err(e)),
            }
        })
    }
}
