//! The fetcher: features of GroupBys and Joins for key sets at a point in time, read from the
//! KV store and computed with the engine's own aggregation code (SPEC §4.6).
//!
//! A GroupBy's batch carries its serving info; the fetcher caches the decoded form and checks on
//! every read that the batch it reads is still the one it decoded (the info entry is read in the
//! same atomic multi-get as the values). Join definitions are cached for a few seconds.
//!
//! Answers are [`Fetched`]: values per part, with feature names made once per batch (and per
//! Join prefix), not per request; the HTTP route writes its JSON straight from them.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chronoflow_config::naming::{
    batch_dataset, join_part_prefix, normalize_join_name, prefixed_feature, streaming_dataset,
};
use chronoflow_config::{Config, ConfigKind, Join, JoinPart};
use chronoflow_engine::aggregate::Out;
use chronoflow_engine::online::{BatchValue, Key, OnlineGroupBy};
use serde_json::Value;

use crate::codec::{self, SERVING_INFO_KEY, StoredConfig, StoredServingInfo};
use crate::error::{Result, ServeError};
use crate::fetched::{FeatureNames, Fetched, FetchedPart, distinct_names};
use crate::kv::SharedKv;
use crate::logging::{FetchLogger, LoggedJoin};
use crate::upload::metadata_dataset;
use crate::{Features, KeySet};

/// How long a Join definition is used before it is read again.
const JOIN_TTL: Duration = Duration::from_secs(10);

struct ServedGroupBy {
    /// The stored info entry this was decoded from: a batch with other bytes is another batch.
    info_bytes: Vec<u8>,
    online: OnlineGroupBy,
    batch_dataset: String,
    streaming_dataset: String,
    /// Its features' names, as a GroupBy fetch answers them.
    names: Arc<FeatureNames>,
    /// Its features' names as Join parts answer them, by prefix.
    prefixed: RwLock<Vec<(String, Arc<FeatureNames>)>>,
}

impl ServedGroupBy {
    /// Its features' names with `prefix`, made once per prefix.
    fn names_with_prefix(&self, prefix: &str) -> Arc<FeatureNames> {
        let find = |list: &[(String, Arc<FeatureNames>)]| {
            list.iter()
                .find(|(p, _)| p == prefix)
                .map(|(_, n)| n.clone())
        };
        if let Some(names) = find(&self.prefixed.read().unwrap_or_else(PoisonError::into_inner)) {
            return names;
        }
        let mut prefixed = self
            .prefixed
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(names) = find(&prefixed) {
            return names;
        }
        let names = Arc::new(FeatureNames::new(
            self.online
                .info
                .features
                .iter()
                .map(|f| prefixed_feature(prefix, f))
                .collect(),
        ));
        prefixed.push((prefix.to_owned(), names.clone()));
        names
    }
}

struct ServedJoin {
    join: Join,
    /// Per part, its feature prefix.
    prefixes: Vec<String>,
    /// Per part, the name of the feature a failed part answers (`<prefix>_exception`).
    exceptions: Vec<Arc<FeatureNames>>,
    /// The parts' names last checked for clashes, and whether they were distinct.
    checked: RwLock<(Vec<Arc<FeatureNames>>, bool)>,
    /// The request fields a key set carries: every part's keys, as left columns (logged keys).
    key_columns: Vec<String>,
    config: StoredConfig,
    /// Content version: logged schema events are per version.
    version: String,
    loaded_at: Instant,
}

impl ServedJoin {
    /// Whether the names `parts` answer are distinct: checked once per combination of batches.
    fn distinct(&self, parts: &[FetchedPart]) -> bool {
        let names: Vec<Arc<FeatureNames>> = parts.iter().map(|p| p.names().clone()).collect();
        {
            let (checked, distinct) = &*self.checked.read().unwrap_or_else(PoisonError::into_inner);
            if checked.len() == names.len()
                && checked.iter().zip(&names).all(|(a, b)| Arc::ptr_eq(a, b))
            {
                return *distinct;
            }
        }
        let distinct = distinct_names(names.iter().map(|n| &**n));
        *self.checked.write().unwrap_or_else(PoisonError::into_inner) = (names, distinct);
        distinct
    }
}

pub struct Fetcher {
    kv: SharedKv,
    group_bys: RwLock<HashMap<String, Arc<ServedGroupBy>>>,
    joins: RwLock<HashMap<String, Arc<ServedJoin>>>,
    logger: Option<FetchLogger>,
}

impl Fetcher {
    pub fn new(kv: SharedKv, logger: Option<FetchLogger>) -> Fetcher {
        Fetcher {
            kv,
            group_bys: RwLock::default(),
            joins: RwLock::default(),
            logger,
        }
    }

    /// The fetch logger, when fetches are logged.
    pub fn logger(&self) -> Option<&FetchLogger> {
        self.logger.as_ref()
    }

    /// Features of GroupBy `name` for each key set, at `at` (epoch millis).
    pub async fn fetch_group_by(
        &self,
        name: &str,
        requests: &[KeySet],
        at: i64,
    ) -> Result<Vec<Features>> {
        Ok(self
            .fetch_group_by_values(name, requests, at)
            .await?
            .into_features())
    }

    /// [`fetch_group_by`](Self::fetch_group_by), as values with their names.
    pub async fn fetch_group_by_values(
        &self,
        name: &str,
        requests: &[KeySet],
        at: i64,
    ) -> Result<Fetched> {
        let at = codec::fetch_time(at)?;
        let name = normalize_join_name(name);
        let (served, rows) = self.part_features(&name, requests, None, at).await?;
        let distinct = distinct_names([&*served.names]);
        let names = served.names.clone();
        Ok(Fetched::new(
            requests.len(),
            vec![FetchedPart::Values { names, rows }],
            distinct,
        ))
    }

    /// Features of Join `name` for each key set, at `at`. A part that fails (its batch missing,
    /// the store unreachable) gives `<part prefix>_exception` in every result instead of
    /// failing the request; keys that cannot be read are the caller's error.
    pub async fn fetch_join(
        &self,
        name: &str,
        requests: &[KeySet],
        at: i64,
    ) -> Result<Vec<Features>> {
        Ok(self
            .fetch_join_values(name, requests, at)
            .await?
            .into_features())
    }

    /// [`fetch_join`](Self::fetch_join), as values with their names.
    pub async fn fetch_join_values(
        &self,
        name: &str,
        requests: &[KeySet],
        at: i64,
    ) -> Result<Fetched> {
        let at = codec::fetch_time(at)?;
        let name = normalize_join_name(name);
        let served = self.join(&name).await?;
        let join = &served.join;
        if !join.derivations.is_empty() {
            return Err(ServeError::Config {
                name: name.clone(),
                message: "the fetcher does not evaluate derivations yet".to_owned(),
            });
        }
        let parts = futures::future::join_all(join.join_parts.iter().map(|part| {
            self.part_features(&part.group_by.metadata.name, requests, Some(part), at)
        }))
        .await;
        let mut answered = Vec::with_capacity(parts.len());
        for ((prefix, exception), result) in
            served.prefixes.iter().zip(&served.exceptions).zip(parts)
        {
            answered.push(match result {
                Ok((gb, rows)) => FetchedPart::Values {
                    names: gb.names_with_prefix(prefix),
                    rows,
                },
                Err(e @ ServeError::BadRequest(_)) => return Err(e),
                Err(e) => FetchedPart::Failed {
                    name: exception.clone(),
                    message: e.to_string(),
                },
            });
        }
        let distinct = served.distinct(&answered);
        let out = Fetched::new(requests.len(), answered, distinct);
        let sample_percent = join.metadata.sample_percent.unwrap_or(0.0);
        if let Some(logger) = &self.logger
            && sample_percent > 0.0
        {
            let logged = LoggedJoin {
                name: &name,
                version: &served.version,
                output_table: &served.config.output_table,
                sample_percent,
                key_columns: &served.key_columns,
            };
            logger.log(&logged, requests, &out, at);
        }
        Ok(out)
    }

    /// The features of GroupBy `name` for each request, in its feature order; `part` (of a Join)
    /// maps request fields to keys.
    async fn part_features(
        &self,
        name: &str,
        requests: &[KeySet],
        part: Option<&JoinPart>,
        at: i64,
    ) -> Result<(Arc<ServedGroupBy>, Vec<Vec<Option<Out>>>)> {
        loop {
            let served = self.group_by(name).await?;
            let keys = keys_for(&served, requests, part)?;
            if let Some(values) = self.features(&served, &keys, at).await? {
                return Ok((served, values));
            }
            // A new batch was switched in since its info was decoded: decode it and read again.
            self.group_bys
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name);
        }
    }

    /// Computes the features of `keys` (one per request; `None` when a key is null) at `at`, or
    /// `None` when the batch served is not the one `served` describes.
    async fn features(
        &self,
        served: &ServedGroupBy,
        keys: &[Option<Key>],
        at: i64,
    ) -> Result<Option<Vec<Vec<Option<Out>>>>> {
        let mut read: Vec<Vec<u8>> = vec![SERVING_INFO_KEY.to_vec()];
        read.extend(keys.iter().flatten().map(|k| codec::key_bytes(k)));
        let kv = self.kv.get().await?;
        let Some(values) = kv
            .multi_get_if(&served.batch_dataset, &served.info_bytes, &read)
            .await?
        else {
            return Ok(None);
        };
        let streamed: Vec<Vec<Vec<u8>>> = if served.online.info.temporal {
            kv.multi_get_appended(&served.streaming_dataset, &read[1..])
                .await?
        } else {
            vec![Vec::new(); read.len() - 1]
        };
        let nulls = vec![None; served.online.info.features.len()];
        let mut found = values.iter().zip(&streamed);
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if key.is_none() {
                out.push(nulls.clone());
                continue;
            }
            let (batch, streamed) = found.next().expect("one value per key read");
            let batch: Option<BatchValue> = batch
                .as_deref()
                .map(|b| codec::decode(b, &served.batch_dataset))
                .transpose()?;
            let rows = codec::streamed_rows(
                streamed,
                served.online.row_layout(),
                &served.streaming_dataset,
            )?;
            out.push(served.online.features_at(batch.as_ref(), &rows, at)?);
        }
        Ok(Some(out))
    }

    /// The served form of GroupBy `name`, from the cache or the batch's info entry.
    async fn group_by(&self, name: &str) -> Result<Arc<ServedGroupBy>> {
        if let Some(s) = self
            .group_bys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(s.clone());
        }
        let dataset = batch_dataset(name);
        let info = match self
            .kv
            .get()
            .await?
            .multi_get(&dataset, &[SERVING_INFO_KEY.to_vec()])
            .await
        {
            Ok(mut v) => v.remove(0),
            Err(ServeError::Dataset { message, .. }) => {
                return Err(ServeError::UnknownName {
                    kind: "GroupBy",
                    name: name.to_owned(),
                    message,
                });
            }
            Err(e) => return Err(e),
        };
        let info_bytes = info.ok_or_else(|| ServeError::Config {
            name: name.to_owned(),
            message: "the served batch has no serving info: upload it again".to_owned(),
        })?;
        let stored: StoredServingInfo = codec::decode(&info_bytes, &dataset)?;
        let (dialect, config) = stored.config.decode(ConfigKind::GroupBy)?;
        let Config::GroupBy(gb) = config else {
            unreachable!("decoded as a GroupBy");
        };
        let online = OnlineGroupBy::new(&gb, dialect, stored.info)?;
        let served = Arc::new(ServedGroupBy {
            info_bytes,
            names: Arc::new(FeatureNames::new(online.info.features.clone())),
            prefixed: RwLock::default(),
            online,
            batch_dataset: dataset,
            streaming_dataset: streaming_dataset(name),
        });
        self.group_bys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), served.clone());
        Ok(served)
    }

    /// The definition of Join `name`, read again after [`JOIN_TTL`].
    async fn join(&self, name: &str) -> Result<Arc<ServedJoin>> {
        if let Some(j) = self
            .joins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            && j.loaded_at.elapsed() < JOIN_TTL
        {
            return Ok(j.clone());
        }
        let dataset = metadata_dataset(ConfigKind::Join, name);
        let unknown = |message: String| ServeError::UnknownName {
            kind: "Join",
            name: name.to_owned(),
            message,
        };
        let stored = match self
            .kv
            .get()
            .await?
            .multi_get(&dataset, &[Vec::new()])
            .await
        {
            Ok(mut v) => v.remove(0),
            Err(ServeError::Dataset { .. }) => {
                return Err(unknown(
                    "its metadata was never uploaded (run --mode metadata-upload)".to_owned(),
                ));
            }
            Err(e) => return Err(e),
        };
        let stored = stored.ok_or_else(|| unknown("its metadata entry is empty".to_owned()))?;
        let version = chronoflow_config::repo::content_hash(&stored);
        let config: StoredConfig = codec::decode(&stored, &dataset)?;
        let (dialect, decoded) = config.decode(ConfigKind::Join)?;
        let Config::Join(join) = decoded else {
            unreachable!("decoded as a Join");
        };
        let prefixes: Vec<String> = join
            .join_parts
            .iter()
            .map(|part| join_part_prefix(&join, part, dialect))
            .collect();
        let exceptions = prefixes
            .iter()
            .map(|p| Arc::new(FeatureNames::new(vec![prefixed_feature(p, "exception")])))
            .collect();
        let served = Arc::new(ServedJoin {
            prefixes,
            exceptions,
            checked: RwLock::default(),
            key_columns: left_key_columns(&join),
            join,
            config,
            version,
            loaded_at: Instant::now(),
        });
        self.joins
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), served.clone());
        Ok(served)
    }
}

/// The request fields a Join's key sets carry: every part's keys, as left columns.
fn left_key_columns(join: &Join) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in &join.join_parts {
        for key in &part.group_by.key_columns {
            let left = part.left_column(key);
            if !out.iter().any(|c| c == left) {
                out.push(left.to_owned());
            }
        }
    }
    out
}

/// Reads each request's key for a GroupBy. For a Join `part`, its key mapping says which request
/// field holds which key; other keys are fields of their own name. A request whose key field is
/// null gets null features (as a left row with a null key does in a backfill).
fn keys_for(
    served: &ServedGroupBy,
    requests: &[KeySet],
    part: Option<&JoinPart>,
) -> Result<Vec<Option<Key>>> {
    let info = &served.online.info;
    let columns: Vec<(&str, &str, chronoflow_engine::value::ScalarKind)> = info
        .key_columns
        .iter()
        .zip(&info.key_kinds)
        .map(|(key, kind)| {
            let field = part.map_or(key.as_str(), |p| p.left_column(key));
            (field, key.as_str(), *kind)
        })
        .collect();
    requests
        .iter()
        .enumerate()
        .map(|(i, request)| {
            if columns
                .iter()
                .any(|(f, _, _)| request.get(*f) == Some(&Value::Null))
            {
                return Ok(None);
            }
            codec::key_from_json(request, &columns)
                .map(Some)
                .map_err(|e| {
                    let at = if requests.len() > 1 {
                        format!("key set {i}: ")
                    } else {
                        String::new()
                    };
                    let of = part
                        .map(|p| format!(" (for {})", p.group_by.metadata.name))
                        .unwrap_or_default();
                    ServeError::BadRequest(format!("{at}{e}{of}"))
                })
        })
        .collect()
}
