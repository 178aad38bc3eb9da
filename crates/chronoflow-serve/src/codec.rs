//! How keys and values are laid out in the KV store and in the upload table.
//!
//! Keys are a tag byte and the key values in postcard; batch values, serving info and streamed
//! rows are postcard too: compact, and decoded in microseconds on the fetch path.
//!
//! Stored bytes are checked, never trusted: every decoder here returns an error for bytes it
//! cannot read (property-tested with random and damaged bytes), and the engine checks what
//! decodes against the GroupBy's definition. Two things are versioned:
//! - the serving info entry's key names its layout ([`SERVING_INFO_KEY`]): a batch uploaded
//!   before rows carried a [`RowSchema`](chronoflow_engine::online::RowSchema) has no such
//!   entry, and fetching it says to upload it again;
//! - each streamed row starts with [`STREAMED_TAG`] and the fingerprint of the row layout it was
//!   made with. The streaming dataset is append-only, so rows of another layout (made by another
//!   definition of the GroupBy, or written before rows were versioned) stay in it: a fetch skips
//!   them, counts them ([`stale_streamed_rows`]) and logs it, and counts the rows a replay with
//!   the served definition appends instead.

use std::sync::atomic::{AtomicU64, Ordering};

use chronoflow_config::{Config, ConfigKind, Dialect};
use chronoflow_engine::online::{Key, OnlineRow, ServingInfo};
use chronoflow_engine::value::{ScalarKind, Val};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, ServeError};

/// The batch entry describing the batch itself. Data keys start with `KEY_TAG`, so they never
/// collide with it. The suffix is the batch layout's version: batches of an older layout have
/// no entry of this name, so they are never read as this one.
pub const SERVING_INFO_KEY: &[u8] = b"\0serving_info.2";
const KEY_TAG: u8 = 1;

/// The first bytes of every streamed row value (then the row layout's fingerprint and the row's
/// partition day). Rows written under the previous tag (`C7 02`, no day, another origin) are
/// rows of another layout: skipped and counted.
pub const STREAMED_TAG: [u8; 2] = [0xC7, 0x03];

/// The KV key of a GroupBy key.
pub fn key_bytes(key: &[Option<Val>]) -> Vec<u8> {
    let mut out = vec![KEY_TAG];
    out.extend(encode(&key));
    out
}

/// The key values of a KV key written by [`key_bytes`].
pub fn key_of(bytes: &[u8]) -> Option<Key> {
    let rest = bytes.strip_prefix(&[KEY_TAG])?;
    postcard::from_bytes(rest).ok()
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard fails only for what serde's derives never produce (sequences of unknown length).
    postcard::to_allocvec(value).expect("values serialize")
}

/// Decodes a stored value; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| ServeError::Config {
        name: what.to_owned(),
        message: format!("stored value cannot be decoded ({e}); upload it again"),
    })
}

/// A config as the fetcher reads it back: its compiled text, so that it decodes with the same
/// rules as the repo it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredConfig {
    pub name: String,
    pub zipline: bool,
    /// Where its tables live (fetch logs of a Join go beside it).
    pub output_table: String,
    pub text: String,
}

impl StoredConfig {
    pub fn decode(&self, kind: ConfigKind) -> Result<(Dialect, Config)> {
        let layout = if self.zipline {
            Dialect::Zipline
        } else {
            Dialect::Airbnb
        };
        chronoflow_config::repo::decode_text(&self.name, &self.text, kind, layout).map_err(
            |message| ServeError::Config {
                name: self.name.clone(),
                message,
            },
        )
    }
}

/// What a batch says about itself: the GroupBy it was made from, and how to read its values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredServingInfo {
    pub config: StoredConfig,
    pub info: ServingInfo,
}

/// Where a streamed row came from. It is part of the stored value, so two identical events stay
/// two rows, and a row delivered twice (a replay rerun, a record redelivered after a crash) is
/// stored once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// A replayed table partition: its day and the row's position in it.
    Replay { day: i64, position: u64 },
    /// A topic's record, and which of the GroupBy's sources read it (two sources on one topic
    /// make two rows of one record).
    Topic {
        topic: String,
        partition: i32,
        offset: i64,
        source: u32,
    },
}

/// A streamed row as appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamedRow {
    pub origin: Origin,
    pub row: OnlineRow,
}

/// The length of a streamed value's header: tag, layout fingerprint, partition day.
const STREAMED_HEADER: usize = STREAMED_TAG.len() + 16;

/// A streamed row's stored bytes: [`STREAMED_TAG`], the fingerprint of the row layout it was
/// made with and the row's partition day (both little-endian: housekeeping reads the day
/// without decoding the row), then the row.
pub fn encode_streamed(layout: u64, row: &StreamedRow) -> Vec<u8> {
    let mut out = STREAMED_TAG.to_vec();
    out.extend(layout.to_le_bytes());
    out.extend(row.row.day.to_le_bytes());
    out.extend(encode(row));
    out
}

/// The partition day of a streamed value, from its header: `None` for a value written before
/// rows carried it (or damaged).
pub fn streamed_day(bytes: &[u8]) -> Option<i64> {
    let rest = bytes.strip_prefix(&STREAMED_TAG)?;
    let day = rest.get(8..16)?;
    Some(i64::from_le_bytes(day.try_into().ok()?))
}

/// Decodes a streamed row's stored bytes: `None` when it was made with another layout than
/// `layout` (or before rows were versioned), an error when its bytes are damaged.
pub fn decode_streamed(bytes: &[u8], layout: u64, what: &str) -> Result<Option<StreamedRow>> {
    let Some(rest) = bytes.strip_prefix(&STREAMED_TAG) else {
        return Ok(None);
    };
    let damaged = |e: String| ServeError::Config {
        name: what.to_owned(),
        message: format!("a streamed row cannot be decoded ({e}); replay its partition again"),
    };
    match rest.split_first_chunk::<8>() {
        Some((stored, _)) if u64::from_le_bytes(*stored) == layout => {
            let row = bytes
                .get(STREAMED_HEADER..)
                .ok_or_else(|| damaged("its header is cut short".to_owned()))?;
            let row: StreamedRow = postcard::from_bytes(row).map_err(|e| damaged(e.to_string()))?;
            if Some(row.row.day) != streamed_day(bytes) {
                return Err(damaged(
                    "its header and its row disagree on the day".to_owned(),
                ));
            }
            Ok(Some(row))
        }
        _ => Ok(None),
    }
}

/// Streamed rows skipped by this process's fetches for having another layout than the batch
/// served.
static STALE_STREAMED_ROWS: AtomicU64 = AtomicU64::new(0);

/// How many streamed rows of another layout this process's fetches skipped.
pub fn stale_streamed_rows() -> u64 {
    STALE_STREAMED_ROWS.load(Ordering::Relaxed)
}

/// The rows among one key's streamed `values` (of `dataset`) made with row layout `layout`.
/// The others are skipped and counted, and logged each time the count doubles (a log line per
/// fetch would flood the log when a definition changed and its rows were not replayed yet).
pub fn streamed_rows(values: &[Vec<u8>], layout: u64, dataset: &str) -> Result<Vec<OnlineRow>> {
    let mut rows = Vec::with_capacity(values.len());
    let mut stale = 0u64;
    for value in values {
        match decode_streamed(value, layout, dataset)? {
            Some(streamed) => rows.push(streamed.row),
            None => stale += 1,
        }
    }
    if stale > 0 {
        let before = STALE_STREAMED_ROWS.fetch_add(stale, Ordering::Relaxed);
        let after = before.saturating_add(stale);
        if before == 0 || after.ilog2() > before.ilog2() {
            tracing::warn!(
                dataset,
                skipped = after,
                "streamed rows made by another definition of the GroupBy (or by an older \
                 chronoflow) are not counted; replay its partitions after the batch day again"
            );
        }
    }
    Ok(rows)
}

/// A fetch's time (`at_millis`), checked: a time before 1970 or after 9999 is the caller's error.
pub fn fetch_time(at: i64) -> Result<i64> {
    chronoflow_engine::window::check_time("at_millis", at)
        .map_err(|e| ServeError::BadRequest(e.to_string()))
}

/// Reads a GroupBy key from request JSON. Numeric keys also accept their decimal text (as
/// Chronon's examples send `{"user_id": "5"}`); anything else of the wrong type is an error.
pub fn key_from_json(
    request: &Map<String, Value>,
    columns: &[(&str, &str, ScalarKind)],
) -> std::result::Result<Key, String> {
    columns
        .iter()
        .map(|(field, key, kind)| {
            let v = request.get(*field).ok_or_else(|| {
                if field == key {
                    format!("missing key {field:?}")
                } else {
                    format!("missing key {field:?} (mapped to {key:?})")
                }
            })?;
            let wrong = || {
                let expected = match kind {
                    ScalarKind::Int => "an integer",
                    ScalarKind::Float => "a number",
                    ScalarKind::Str => "a string",
                    ScalarKind::Bool => "a boolean",
                };
                format!("key {field:?} must be {expected}, got {v}")
            };
            let val = match (kind, v) {
                (_, Value::Null) => return Err(format!("key {field:?} is null")),
                (ScalarKind::Int, Value::Number(n)) => Val::Int(n.as_i64().ok_or_else(wrong)?),
                (ScalarKind::Int, Value::String(s)) => {
                    Val::Int(s.trim().parse().map_err(|_| wrong())?)
                }
                (ScalarKind::Float, Value::Number(n)) => Val::Float(n.as_f64().ok_or_else(wrong)?),
                (ScalarKind::Float, Value::String(s)) => {
                    Val::Float(s.trim().parse().map_err(|_| wrong())?)
                }
                (ScalarKind::Str, Value::String(s)) => Val::Str(s.as_str().into()),
                (ScalarKind::Bool, Value::Bool(b)) => Val::Bool(*b),
                _ => return Err(wrong()),
            };
            Ok(Some(val))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn numeric_keys_accept_numbers_and_their_text_only() {
        let cols = [("user_id", "user_id", ScalarKind::Int)];
        assert_eq!(
            key_from_json(&request(r#"{"user_id": 5}"#), &cols),
            Ok(vec![Some(Val::Int(5))])
        );
        assert_eq!(
            key_from_json(&request(r#"{"user_id": "5"}"#), &cols),
            Ok(vec![Some(Val::Int(5))])
        );
        assert_eq!(
            key_from_json(&request(r#"{"user_id": "five"}"#), &cols),
            Err(r#"key "user_id" must be an integer, got "five""#.to_owned())
        );
        assert_eq!(
            key_from_json(&request(r#"{"user": 5}"#), &cols),
            Err(r#"missing key "user_id""#.to_owned())
        );
        assert_eq!(
            key_from_json(&request(r#"{"user_id": 1.5}"#), &cols),
            Err(r#"key "user_id" must be an integer, got 1.5"#.to_owned())
        );
    }

    #[test]
    fn data_keys_never_collide_with_the_serving_info_entry() {
        let k = key_bytes(&[Some(Val::Int(0))]);
        assert_ne!(k.as_slice(), SERVING_INFO_KEY);
        assert_eq!(key_of(&k), Some(vec![Some(Val::Int(0))]));
        assert_eq!(key_of(SERVING_INFO_KEY), None);
    }
}
