//! How keys and values are laid out in the KV store and in the upload table.
//!
//! Keys are a tag byte and the key values in postcard; batch values, serving info and streamed
//! rows are postcard too: compact, and decoded in microseconds on the fetch path.

use chronoflow_config::{Config, ConfigKind, Dialect};
use chronoflow_engine::online::{Key, OnlineRow, ServingInfo};
use chronoflow_engine::value::{ScalarKind, Val};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, ServeError};

/// The batch entry describing the batch itself. Data keys start with `KEY_TAG`, so they never
/// collide with it.
pub const SERVING_INFO_KEY: &[u8] = b"\0serving_info";
const KEY_TAG: u8 = 1;

/// The KV key of a GroupBy key.
pub fn key_bytes(key: &[Option<Val>]) -> Vec<u8> {
    let mut out = vec![KEY_TAG];
    out.extend(postcard::to_allocvec(key).expect("keys serialize"));
    out
}

/// The key values of a KV key written by [`key_bytes`].
pub fn key_of(bytes: &[u8]) -> Option<Key> {
    let rest = bytes.strip_prefix(&[KEY_TAG])?;
    postcard::from_bytes(rest).ok()
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
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

/// A streamed row as appended. `origin` (partition day, position in it) keeps two identical
/// events apart, and makes a rerun of the same replay append nothing new.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamedRow {
    pub origin: (i64, u64),
    pub row: OnlineRow,
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
