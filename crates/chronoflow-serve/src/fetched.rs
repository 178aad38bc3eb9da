//! A fetch's answer as the fetcher computes it: per part, each key set's feature values, with
//! the part's feature names made and rendered as JSON once per batch instead of once per
//! request. The HTTP route writes the response JSON straight from it (no map of name -> value
//! per key set); [`Fetched::into_features`] gives the maps the library API returns. Both render
//! the same JSON (tested).

use std::collections::HashSet;
use std::sync::Arc;

use chronoflow_engine::aggregate::Out;
use chronoflow_engine::features::out_json;
use chronoflow_engine::value::Val;
use serde_json::Value;

use crate::{Features, KeySet};

/// Feature names in answer order, each also rendered once as a JSON object key (`"name":`).
#[derive(Debug)]
pub struct FeatureNames {
    names: Vec<String>,
    json_keys: Vec<Vec<u8>>,
    /// Bytes of all `json_keys`: sizes the response buffer.
    key_bytes: usize,
}

impl FeatureNames {
    pub fn new(names: Vec<String>) -> FeatureNames {
        let json_keys: Vec<Vec<u8>> = names
            .iter()
            .map(|n| {
                let mut key = Vec::with_capacity(n.len() + 3);
                // A string always renders as JSON.
                let _ = serde_json::to_writer(&mut key, n);
                key.push(b':');
                key
            })
            .collect();
        FeatureNames {
            key_bytes: json_keys.iter().map(Vec::len).sum(),
            names,
            json_keys,
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// One part of an answer (a Join part, or the GroupBy fetched).
#[derive(Debug)]
pub enum FetchedPart {
    /// Per key set, its values in `names` order (`None`: null).
    Values {
        names: Arc<FeatureNames>,
        rows: Vec<Vec<Option<Out>>>,
    },
    /// The part failed: every key set gets `name` (its `_exception` feature) with the message.
    Failed {
        name: Arc<FeatureNames>,
        message: String,
    },
}

impl FetchedPart {
    /// The names it answers.
    pub fn names(&self) -> &Arc<FeatureNames> {
        match self {
            FetchedPart::Values { names, .. } => names,
            FetchedPart::Failed { name, .. } => name,
        }
    }
}

/// The features of each key set of one fetch.
#[derive(Debug)]
pub struct Fetched {
    len: usize,
    parts: Vec<FetchedPart>,
    /// No two parts (or features of one part) share a name. The maps of the library API keep one
    /// value per name (the last, at the first one's place); the JSON writer matches them only
    /// without clashes, so with one (a Join the repo's checks refuse) it renders the maps.
    distinct: bool,
}

impl Fetched {
    /// An answer for `len` key sets; `distinct` as computed by [`distinct_names`].
    pub fn new(len: usize, parts: Vec<FetchedPart>, distinct: bool) -> Fetched {
        Fetched {
            len,
            parts,
            distinct,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The feature names of every key set's answer, in order, each once.
    pub fn names(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.parts
            .iter()
            .flat_map(|p| p.names().names())
            .map(String::as_str)
            .filter(|n| self.distinct || seen.insert(*n))
            .collect()
    }

    /// The features of key set `i` as a map (what the library API returns).
    pub fn features(&self, i: usize) -> Features {
        let mut out = Features::with_capacity(self.width());
        for part in &self.parts {
            match part {
                FetchedPart::Values { names, rows } => {
                    for (name, v) in names.names().iter().zip(&rows[i]) {
                        out.insert(name.clone(), v.as_ref().map_or(Value::Null, out_json));
                    }
                }
                FetchedPart::Failed { name, message } => {
                    for n in name.names() {
                        out.insert(n.clone(), Value::String(message.clone()));
                    }
                }
            }
        }
        out
    }

    pub fn into_features(self) -> Vec<Features> {
        (0..self.len).map(|i| self.features(i)).collect()
    }

    fn width(&self) -> usize {
        self.parts.iter().map(|p| p.names().names.len()).sum()
    }

    /// Appends the features of key set `i` as a JSON object: the bytes `serde_json` writes for
    /// [`features(i)`](Self::features).
    pub fn write_features(&self, i: usize, out: &mut Vec<u8>) -> serde_json::Result<()> {
        if !self.distinct {
            return serde_json::to_writer(out, &self.features(i));
        }
        out.push(b'{');
        let mut first = true;
        let mut separate = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        for part in &self.parts {
            match part {
                FetchedPart::Values { names, rows } => {
                    for (key, v) in names.json_keys.iter().zip(&rows[i]) {
                        separate(out);
                        out.extend_from_slice(key);
                        write_out(out, v.as_ref())?;
                    }
                }
                FetchedPart::Failed { name, message } => {
                    for key in &name.json_keys {
                        separate(out);
                        out.extend_from_slice(key);
                        serde_json::to_writer(&mut *out, message)?;
                    }
                }
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// The features of key set `i` as JSON text (what the fetch log records).
    pub fn features_json(&self, i: usize) -> String {
        let mut out = Vec::new();
        // Values and names always render; the writer is a Vec.
        let _ = self.write_features(i, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The response body of the fetch routes: per key set its status, keys and features.
    pub fn response_json(&self, requests: &[KeySet]) -> serde_json::Result<Vec<u8>> {
        // About 10 bytes a value beside the names: one allocation for most answers.
        let per_row: usize = 64
            + self
                .parts
                .iter()
                .map(|p| match p {
                    FetchedPart::Values { names, .. } => names.key_bytes + 10 * names.names.len(),
                    FetchedPart::Failed { name, message } => name.key_bytes + message.len() + 2,
                })
                .sum::<usize>();
        let mut out = Vec::with_capacity(16 + per_row * requests.len());
        out.extend_from_slice(b"{\"results\":[");
        for (i, keys) in requests.iter().enumerate().take(self.len) {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"status\":\"Success\",\"entityKeys\":");
            serde_json::to_writer(&mut out, keys)?;
            out.extend_from_slice(b",\"features\":");
            self.write_features(i, &mut out)?;
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    }
}

/// Whether the names of `parts` are all distinct.
pub fn distinct_names<'a>(parts: impl IntoIterator<Item = &'a FeatureNames>) -> bool {
    let mut seen = HashSet::new();
    parts
        .into_iter()
        .flat_map(|p| p.names())
        .all(|n| seen.insert(n.as_str()))
}

/// Appends a feature value as JSON: the bytes `serde_json` writes for [`out_json`]'s value.
fn write_out(out: &mut Vec<u8>, value: Option<&Out>) -> serde_json::Result<()> {
    match value {
        None => out.extend_from_slice(b"null"),
        // serde_json writes non-finite floats as null, as `out_json` makes them.
        Some(Out::Int(i)) => serde_json::to_writer(&mut *out, i)?,
        Some(Out::Float(f)) => serde_json::to_writer(&mut *out, f)?,
        Some(Out::Scalar(v)) => write_val(out, v)?,
        Some(Out::List(vs)) => {
            out.push(b'[');
            for (n, v) in vs.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_val(out, v)?;
            }
            out.push(b']');
        }
        // Rare shapes (maps): through the value itself.
        Some(other) => serde_json::to_writer(&mut *out, &out_json(other))?,
    }
    Ok(())
}

fn write_val(out: &mut Vec<u8>, v: &Val) -> serde_json::Result<()> {
    match v {
        Val::Bool(b) => serde_json::to_writer(out, b),
        Val::Int(i) => serde_json::to_writer(out, i),
        Val::Float(f) => serde_json::to_writer(out, f),
        Val::Str(s) => serde_json::to_writer(out, &**s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn val() -> impl Strategy<Value = Val> {
        prop_oneof![
            any::<bool>().prop_map(Val::Bool),
            any::<i64>().prop_map(Val::Int),
            prop_oneof![
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(-0.0),
                Just(1e300)
            ]
            .prop_map(Val::Float),
            ".{0,8}".prop_map(|s: String| Val::Str(s.into())),
        ]
    }

    fn leaf() -> impl Strategy<Value = Out> {
        prop_oneof![
            any::<i64>().prop_map(Out::Int),
            prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::NEG_INFINITY)].prop_map(Out::Float),
            val().prop_map(Out::Scalar),
            prop::collection::vec(val(), 0..4).prop_map(Out::List),
            prop::collection::vec(any::<f64>(), 0..3).prop_map(Out::FloatList),
            prop::collection::vec((".{0,4}", any::<i64>()), 0..3).prop_map(Out::Counts),
        ]
    }

    fn out() -> impl Strategy<Value = Option<Out>> {
        prop::option::of(prop_oneof![
            leaf(),
            prop::collection::vec((".{0,4}", leaf()), 0..3).prop_map(Out::Buckets),
        ])
    }

    fn part(names: &[&str], rows: Vec<Vec<Option<Out>>>) -> FetchedPart {
        FetchedPart::Values {
            names: Arc::new(FeatureNames::new(
                names.iter().map(|n| n.to_string()).collect(),
            )),
            rows,
        }
    }

    proptest! {
        #[test]
        fn values_render_as_their_json_value(v in out()) {
            let mut written = Vec::new();
            write_out(&mut written, v.as_ref()).unwrap();
            let expected = serde_json::to_vec(&v.as_ref().map_or(Value::Null, out_json)).unwrap();
            prop_assert_eq!(String::from_utf8(written).unwrap(), String::from_utf8(expected).unwrap());
        }

        #[test]
        fn answers_render_as_their_maps(
            rows in prop::collection::vec(prop::collection::vec(out(), 3), 0..4),
            clash in any::<bool>(),
        ) {
            let n = rows.len();
            let second: Vec<Vec<Option<Out>>> = rows.iter().map(|r| r[..1].to_vec()).collect();
            let parts = vec![
                part(&["a", "b\"\\\u{1}é", "c"], rows),
                part(&[if clash { "a" } else { "d" }], second),
                FetchedPart::Failed {
                    name: Arc::new(FeatureNames::new(vec!["p_exception".to_owned()])),
                    message: "its batch is \"missing\"".to_owned(),
                },
            ];
            let distinct = distinct_names(parts.iter().map(|p| &**p.names()));
            prop_assert_eq!(distinct, !clash);
            let fetched = Fetched::new(n, parts, distinct);
            let requests: Vec<KeySet> = (0..n)
                .map(|i| serde_json::from_value(serde_json::json!({"user_id": i, "x": "y"})).unwrap())
                .collect();
            let maps: Vec<Features> = (0..n).map(|i| fetched.features(i)).collect();
            if let Some(first) = maps.first() {
                let keys: Vec<&str> = first.keys().map(String::as_str).collect();
                prop_assert_eq!(fetched.names(), keys);
            }
            let expected = serde_json::json!({"results": requests.iter().zip(&maps).map(|(k, f)| {
                serde_json::json!({"status": "Success", "entityKeys": k, "features": f})
            }).collect::<Vec<_>>()});
            let written = fetched.response_json(&requests).unwrap();
            prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&expected).unwrap()
            );
        }
    }
}
