//! The Redis KV store (`--kv redis://...`): one hash per batch version, and a pointer key per
//! dataset switched by a script, so readers never see a half-loaded batch.

use futures::future::BoxFuture;
use redis::aio::ConnectionManager;

use super::{Checkpoint, Entry, Keep, KvStore};
use crate::error::{Result, ServeError};

#[derive(Clone)]
pub struct RedisKv {
    /// Reconnects by itself after the server comes back.
    conn: ConnectionManager,
    url: String,
    prefix: String,
}

/// Switches the pointer and drops the previous version's hash, atomically.
const COMMIT: &str = r#"
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
if previous and previous ~= ARGV[1] then
  redis.call('UNLINK', ARGV[2] .. previous)
end
return previous
"#;

/// Reads the pointer and the values in one step, so all come from one version.
const MULTI_GET: &str = r#"
local version = redis.call('GET', KEYS[1])
if not version then return false end
return redis.call('HMGET', ARGV[1] .. version, unpack(ARGV, 2))
"#;

/// Adds values to sets and counts in KEYS[1] the ones not already there, in one step: a
/// redelivered value is counted once, and the count never disagrees with the sets. ARGV[1] is
/// '1' when a checkpoint (KEYS[2], value ARGV[2]) is set in the same step; the sets follow, each
/// KEYS[i] with value ARGV[i].
const APPEND: &str = r#"
local first = 2
if ARGV[1] == '1' then
  redis.call('SET', KEYS[2], ARGV[2])
  first = 3
end
local added = 0
for i = first, #KEYS do
  added = added + redis.call('SADD', KEYS[i], ARGV[i])
end
if added > 0 then
  redis.call('INCRBY', KEYS[1], added)
end
return added
"#;

/// Removes values from one set (KEYS[2]) and takes them off the count (KEYS[1]).
const PRUNE: &str = r#"
local removed = redis.call('SREM', KEYS[2], unpack(ARGV))
if removed > 0 then
  redis.call('DECRBY', KEYS[1], removed)
end
return removed
"#;

/// `text` with the characters a `SCAN MATCH` pattern treats specially escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisKv {
    /// Connects to `url`; `prefix` namespaces every key (several deployments per server).
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisKv> {
        let err = |message: String| ServeError::Redis {
            url: url.to_owned(),
            message,
        };
        let client = redis::Client::open(url).map_err(|e| err(e.to_string()))?;
        let conn = ConnectionManager::new(client)
            .await
            .map_err(|e| err(format!("unreachable: {e}")))?;
        Ok(RedisKv {
            conn,
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    fn err(&self, e: redis::RedisError) -> ServeError {
        ServeError::Redis {
            url: self.url.clone(),
            message: e.to_string(),
        }
    }

    fn pointer(&self, dataset: &str) -> String {
        format!("{}:{dataset}:active", self.prefix)
    }

    /// The set holding a key's appended values (keys are bytes: the name is too).
    fn appended(&self, dataset: &str, key: &[u8]) -> Vec<u8> {
        let mut name = format!("{}:{dataset}:s:", self.prefix).into_bytes();
        name.extend_from_slice(key);
        name
    }

    fn checkpoint_key(&self, name: &str) -> String {
        format!("{}:checkpoint:{name}", self.prefix)
    }

    /// The number of distinct values appended to the dataset, over all its sets.
    fn appended_count_key(&self, dataset: &str) -> String {
        format!("{}:{dataset}:appended", self.prefix)
    }

    fn batch_prefix(&self, dataset: &str) -> String {
        format!("{}:{dataset}:v:", self.prefix)
    }

    /// Runs [`APPEND`]: a batch of rows lands whole, with its count (and the checkpoint), as
    /// one step.
    async fn write_appended(
        &self,
        dataset: &str,
        entries: Vec<Entry>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<()> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(APPEND);
        let mut invocation = script.key(self.appended_count_key(dataset));
        match &checkpoint {
            Some(c) => {
                invocation
                    .arg("1")
                    .key(self.checkpoint_key(&c.name))
                    .arg(c.value.as_slice());
            }
            None => {
                invocation.arg("0");
            }
        }
        for (k, v) in &entries {
            invocation.key(self.appended(dataset, k)).arg(v.as_slice());
        }
        invocation
            .invoke_async::<u64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// A reply is the server's data: one that does not answer every key asked is an error, so
    /// callers can pair values with keys.
    fn check_len<T>(&self, what: &str, asked: usize, reply: Vec<T>) -> Result<Vec<T>> {
        if reply.len() == asked {
            Ok(reply)
        } else {
            Err(ServeError::Redis {
                url: self.url.clone(),
                message: format!("{what} answered {} values for {asked} keys", reply.len()),
            })
        }
    }
}

impl KvStore for RedisKv {
    fn begin_batch<'a>(&'a self, dataset: &'a str, version: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let active: Option<String> = redis::cmd("GET")
                .arg(self.pointer(dataset))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            if active.as_deref() == Some(version) {
                return Err(ServeError::Dataset {
                    dataset: dataset.to_owned(),
                    message: format!(
                        "version {version} is being served; load a new version instead"
                    ),
                });
            }
            redis::cmd("UNLINK")
                .arg(format!("{}{version}", self.batch_prefix(dataset)))
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.err(e))
        })
    }

    fn put_batch<'a>(
        &'a self,
        dataset: &'a str,
        version: &'a str,
        entries: Vec<Entry>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if entries.is_empty() {
                return Ok(());
            }
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("HSET");
            cmd.arg(format!("{}{version}", self.batch_prefix(dataset)));
            for (k, v) in &entries {
                cmd.arg(k.as_slice()).arg(v.as_slice());
            }
            cmd.query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.err(e))
        })
    }

    fn commit_batch<'a>(&'a self, dataset: &'a str, version: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis::Script::new(COMMIT)
                .key(self.pointer(dataset))
                .arg(version)
                .arg(self.batch_prefix(dataset))
                .invoke_async::<Option<String>>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| self.err(e))
        })
    }

    fn active_version<'a>(&'a self, dataset: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis::cmd("GET")
                .arg(self.pointer(dataset))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))
        })
    }

    fn multi_get<'a>(
        &'a self,
        dataset: &'a str,
        keys: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut conn = self.conn.clone();
            let script = redis::Script::new(MULTI_GET);
            let mut invocation = script.key(self.pointer(dataset));
            invocation.arg(self.batch_prefix(dataset));
            for k in keys {
                invocation.arg(k.as_slice());
            }
            let values: Option<Vec<Option<Vec<u8>>>> = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            let values = values.ok_or_else(|| ServeError::Dataset {
                dataset: dataset.to_owned(),
                message: "no batch has been uploaded".to_owned(),
            })?;
            self.check_len("HMGET", keys.len(), values)
        })
    }

    fn append<'a>(&'a self, dataset: &'a str, entries: Vec<Entry>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if entries.is_empty() {
                return Ok(());
            }
            self.write_appended(dataset, entries, None).await
        })
    }

    fn append_checkpointed<'a>(
        &'a self,
        dataset: &'a str,
        entries: Vec<Entry>,
        checkpoint: Checkpoint,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.write_appended(dataset, entries, Some(checkpoint)))
    }

    fn checkpoint<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis::cmd("GET")
                .arg(self.checkpoint_key(name))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))
        })
    }

    fn prune_appended<'a>(&'a self, dataset: &'a str, keep: Keep) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let pattern = format!("{}:{}:s:*", glob_escape(&self.prefix), glob_escape(dataset));
            let mut cursor: u64 = 0;
            let mut removed = 0;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.err(e))?;
                for key in keys {
                    let members: Vec<Vec<u8>> = redis::cmd("SMEMBERS")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| self.err(e))?;
                    let dropped: Vec<Vec<u8>> = members.into_iter().filter(|m| !keep(m)).collect();
                    for chunk in dropped.chunks(1000) {
                        let script = redis::Script::new(PRUNE);
                        let mut invocation = script.key(self.appended_count_key(dataset));
                        invocation.key(key.as_slice());
                        for m in chunk {
                            invocation.arg(m.as_slice());
                        }
                        removed += invocation
                            .invoke_async::<u64>(&mut conn)
                            .await
                            .map_err(|e| self.err(e))?;
                    }
                }
                cursor = next;
                if cursor == 0 {
                    return Ok(removed);
                }
            }
        })
    }

    fn multi_get_appended<'a>(
        &'a self,
        dataset: &'a str,
        keys: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Vec<Vec<Vec<u8>>>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut conn = self.conn.clone();
            let mut pipe = redis::pipe();
            for k in keys {
                pipe.cmd("SMEMBERS").arg(self.appended(dataset, k));
            }
            let mut sets: Vec<Vec<Vec<u8>>> =
                pipe.query_async(&mut conn).await.map_err(|e| self.err(e))?;
            for set in &mut sets {
                set.sort();
            }
            self.check_len("SMEMBERS", keys.len(), sets)
        })
    }

    fn appended_count<'a>(&'a self, dataset: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let count: Option<u64> = redis::cmd("GET")
                .arg(self.appended_count_key(dataset))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            Ok(count.unwrap_or(0))
        })
    }
}
