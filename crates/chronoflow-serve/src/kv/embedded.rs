//! The embedded KV store: one redb file (`./.chronoflow/kv` by default).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use futures::future::BoxFuture;
use redb::{
    Database, Durability, MultimapTableDefinition, ReadOnlyMultimapTable, ReadOnlyTable,
    ReadTransaction, ReadableDatabase, ReadableMultimapTable, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle,
};

use super::{Checkpoint, Entry, Keep, KvStore, Values};
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

type BatchTable = ReadOnlyTable<&'static [u8], &'static [u8]>;
type StreamTable = ReadOnlyMultimapTable<&'static [u8], &'static [u8]>;

#[derive(Clone)]
pub struct EmbeddedKv {
    db: Arc<Database>,
    path: PathBuf,
    reads: Arc<Reads>,
}

/// The read transaction fetches share, and when it stops being current.
///
/// The file is open in this process only (redb locks it), and every write goes through an
/// `EmbeddedKv` of this database, which bumps `generation` once it committed. So a read
/// transaction begun at a generation sees the latest data until the generation moves, and
/// fetches can share it with the tables it opened, instead of each beginning a transaction and
/// looking up the served version and its table again (a third of a Join fetch's CPU time).
#[derive(Default)]
struct Reads {
    generation: AtomicU64,
    current: RwLock<Option<Arc<Snapshot>>>,
}

struct Snapshot {
    generation: u64,
    txn: ReadTransaction,
    /// dataset -> the batch it serves (`None`: none is served).
    batches: RwLock<HashMap<String, Option<Arc<BatchTable>>>>,
    /// dataset -> its appended values (`None`: nothing was ever appended).
    streams: RwLock<HashMap<String, Option<Arc<StreamTable>>>>,
}

impl Reads {
    /// After a write committed (or failed): later reads begin a new transaction. The snapshot
    /// is dropped now so it does not hold pages the write freed.
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl Snapshot {
    /// The table of the batch `dataset` serves, `None` when none is served.
    fn batch(&self, dataset: &str) -> std::result::Result<Option<Arc<BatchTable>>, String> {
        if let Some(t) = self
            .batches
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(dataset)
        {
            return Ok(t.clone());
        }
        let version = match self.txn.open_table(ACTIVE) {
            Ok(active) => active
                .get(dataset)
                .map_err(|e| e.to_string())?
                .map(|v| v.value().to_owned()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.to_string()),
        };
        let table = match version {
            Some(version) => {
                let name = batch_table(dataset, &version);
                let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
                Some(Arc::new(
                    self.txn.open_table(def).map_err(|e| e.to_string())?,
                ))
            }
            None => None,
        };
        self.batches
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dataset.to_owned(), table.clone());
        Ok(table)
    }

    /// The values appended to `dataset`, `None` when nothing was.
    fn stream(&self, dataset: &str) -> std::result::Result<Option<Arc<StreamTable>>, String> {
        if let Some(t) = self
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(dataset)
        {
            return Ok(t.clone());
        }
        let name = stream_table(dataset);
        let def: MultimapTableDefinition<&[u8], &[u8]> = MultimapTableDefinition::new(&name);
        let table = match self.txn.open_multimap_table(def) {
            Ok(t) => Some(Arc::new(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.to_string()),
        };
        self.streams
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dataset.to_owned(), table.clone());
        Ok(table)
    }
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
            reads: Arc::default(),
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

    /// The current shared read transaction, begun now if the last write made the previous one
    /// stale.
    fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let generation = self.reads.generation.load(Ordering::SeqCst);
        if let Some(s) = self
            .reads
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            && s.generation == generation
        {
            return Ok(s.clone());
        }
        let snapshot = Arc::new(Snapshot {
            generation,
            txn: self.db.begin_read().map_err(|e| self.err(e))?,
            batches: RwLock::default(),
            streams: RwLock::default(),
        });
        let mut current = self
            .reads
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // A write that committed since `generation` was read may not be in this transaction:
        // then it serves this read only.
        if self.reads.generation.load(Ordering::SeqCst) == generation {
            *current = Some(snapshot.clone());
        }
        Ok(snapshot)
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
        self.write(move |db| {
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

    /// [`blocking`](Self::blocking) for a write: reads after it begin a new transaction.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> std::result::Result<T, String> + Send + 'static,
    ) -> BoxFuture<'static, Result<T>> {
        let reads = self.reads.clone();
        self.blocking(move |db| {
            let result = f(db);
            reads.invalidate();
            result
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
        self.write(move |db| {
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
        self.write(move |db| {
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
        self.write(move |db| {
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
        // Reads are microseconds in redb: done inline, from one read transaction, so every
        // value comes from the same version.
        Box::pin(async move {
            let snapshot = self.snapshot()?;
            let Some(table) = snapshot.batch(dataset).map_err(|e| self.err(e))? else {
                return Err(ServeError::Dataset {
                    dataset: dataset.to_owned(),
                    message: "no batch has been uploaded".to_owned(),
                });
            };
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

    fn multi_get_if<'a>(
        &'a self,
        dataset: &'a str,
        expected: &'a [u8],
        keys: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Option<Values>>> {
        Box::pin(async move {
            let snapshot = self.snapshot()?;
            let Some(table) = snapshot.batch(dataset).map_err(|e| self.err(e))? else {
                return Err(ServeError::Dataset {
                    dataset: dataset.to_owned(),
                    message: "no batch has been uploaded".to_owned(),
                });
            };
            let Some((check, keys)) = keys.split_first() else {
                return Ok(None);
            };
            // Compared where it lies in the page: the serving info is kilobytes.
            let holds = table
                .get(check.as_slice())
                .map_err(|e| self.err(e))?
                .is_some_and(|v| v.value() == expected);
            if !holds {
                return Ok(None);
            }
            keys.iter()
                .map(|k| {
                    table
                        .get(k.as_slice())
                        .map(|v| v.map(|v| v.value().to_vec()))
                        .map_err(|e| self.err(e))
                })
                .collect::<Result<_>>()
                .map(Some)
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
        self.write(move |db| {
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
            let snapshot = self.snapshot()?;
            let Some(table) = snapshot.stream(dataset).map_err(|e| self.err(e))? else {
                return Ok(vec![Vec::new(); keys.len()]);
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
