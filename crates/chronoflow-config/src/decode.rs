//! A small decoding layer over `serde_json::Value` that tracks the JSON path and collects
//! diagnostics instead of stopping at the first problem.
//!
//! Derived `Deserialize` stops at the first error and cannot accept Chronon's loose encodings
//! (booleans as `0`/`1`, JSON inside strings), so every config type is decoded by hand through
//! [`Fields`], which also reports fields it was never asked for.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::date::PartitionDate;
use crate::diagnostic::{Diagnostic, DiagnosticCode, Severity};
use crate::model::Dialect;

/// A JSON path such as `$.joinParts[0].groupBy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(String);

impl JsonPath {
    pub fn root() -> Self {
        JsonPath("$".to_owned())
    }

    pub fn field(&self, name: &str) -> Self {
        let mut s = self.0.clone();
        if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty() {
            s.push('.');
            s.push_str(name);
        } else {
            // Keys with dots or spaces (map keys) are quoted so the path stays unambiguous.
            let _ = write!(s, "[{}]", serde_json::Value::String(name.to_owned()));
        }
        JsonPath(s)
    }

    pub fn index(&self, i: usize) -> Self {
        JsonPath(format!("{}[{i}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where diagnostics go while one file is decoded, and what the decoders need to know about it.
pub struct DecodeContext<'a> {
    pub file: &'a str,
    pub dialect: Dialect,
    pub diagnostics: &'a mut Vec<Diagnostic>,
}

impl DecodeContext<'_> {
    pub fn push(
        &mut self,
        severity: Severity,
        code: DiagnosticCode,
        path: &JsonPath,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::new(
            severity,
            code,
            self.file,
            path.as_str(),
            message,
        ));
        self.diagnostics.last_mut().expect("just pushed")
    }

    pub fn error(
        &mut self,
        code: DiagnosticCode,
        path: &JsonPath,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Severity::Error, code, path, message)
    }

    pub fn wrong_type(&mut self, path: &JsonPath, expected: &str, found: &Value) {
        let d = self.error(DiagnosticCode::WrongType, path, "wrong type");
        d.expected = Some(expected.to_owned());
        d.found = Some(describe(found));
    }

    pub fn invalid_value(
        &mut self,
        path: &JsonPath,
        message: impl Into<String>,
        expected: &str,
        found: &Value,
    ) {
        let d = self.error(DiagnosticCode::InvalidValue, path, message);
        d.expected = Some(expected.to_owned());
        d.found = Some(describe(found));
    }

    /// How many errors this file has so far: a decoder compares it before and after to know
    /// whether what it decoded is whole.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn missing(&mut self, path: &JsonPath, expected: &str) {
        let d = self.error(
            DiagnosticCode::MissingField,
            path,
            "required field is missing",
        );
        d.expected = Some(expected.to_owned());
    }

    /// Views `value` as an object, or reports that it is not one.
    pub fn object(&mut self, value: Value, path: &JsonPath) -> Option<Fields> {
        match value {
            Value::Object(map) => Some(Fields::new(map, path.clone())),
            other => {
                self.wrong_type(path, "object", &other);
                None
            }
        }
    }
}

/// A short rendering of a JSON value for "found ..." messages: its type and a truncated excerpt.
pub fn describe(value: &Value) -> String {
    const MAX: usize = 60;
    let kind = match value {
        Value::Null => return "null".to_owned(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut text = value.to_string();
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    format!("{kind} {text}")
}

/// The fields of one JSON object. Decoders take fields out by name (moving their values, so
/// nothing is copied); whatever is left at [`Fields::finish`] was never asked for and is
/// reported as unknown.
pub struct Fields {
    map: Map<String, Value>,
    pub path: JsonPath,
}

impl Fields {
    pub fn new(map: Map<String, Value>, path: JsonPath) -> Self {
        Fields { map, path }
    }

    /// Takes a field's value out (null counts as absent: Chronon's compilers omit unset fields,
    /// but hand-written JSON often spells them `null`).
    pub fn take(&mut self, name: &str) -> Option<Value> {
        match self.map.remove(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        matches!(self.map.get(name), Some(v) if !v.is_null())
    }

    /// Whether the field is present and an empty array (`[]`, which can mean something else
    /// than an absent field).
    pub fn is_empty_array(&self, name: &str) -> bool {
        matches!(self.map.get(name), Some(Value::Array(items)) if items.is_empty())
    }

    pub fn field_path(&self, name: &str) -> JsonPath {
        self.path.field(name)
    }

    /// Reports every field that no decoder took as a notice: unknown fields are ignored, which
    /// keeps configs from newer Chronon versions loading.
    pub fn finish(self, cx: &mut DecodeContext<'_>) {
        for key in self.map.keys() {
            cx.push(
                Severity::Notice,
                DiagnosticCode::UnknownField,
                &self.path.field(key),
                "unknown field is ignored",
            );
        }
    }

    /// Marks fields as known without decoding them.
    pub fn ignore(&mut self, names: &[&str]) {
        for name in names {
            self.map.remove(*name);
        }
    }

    pub fn string(&mut self, cx: &mut DecodeContext<'_>, name: &str) -> Option<String> {
        match self.take(name)? {
            Value::String(s) => Some(s),
            other => {
                cx.wrong_type(&self.path.field(name), "string", &other);
                None
            }
        }
    }

    pub fn required_string(&mut self, cx: &mut DecodeContext<'_>, name: &str) -> Option<String> {
        if !self.has(name) {
            self.map.remove(name);
            cx.missing(&self.path.field(name), "string");
            return None;
        }
        self.string(cx, name)
    }

    /// A boolean in either encoding: `true`/`false` or `1`/`0`.
    pub fn boolean(&mut self, cx: &mut DecodeContext<'_>, name: &str) -> Option<bool> {
        let v = self.take(name)?;
        decode_bool(cx, &self.path.field(name), &v)
    }

    pub fn integer(&mut self, cx: &mut DecodeContext<'_>, name: &str) -> Option<i64> {
        let v = self.take(name)?;
        decode_i64(cx, &self.path.field(name), &v)
    }

    pub fn number(&mut self, cx: &mut DecodeContext<'_>, name: &str) -> Option<f64> {
        let v = self.take(name)?;
        match v.as_f64() {
            Some(x) if x.is_finite() => Some(x),
            _ => {
                cx.wrong_type(&self.path.field(name), "number", &v);
                None
            }
        }
    }

    pub fn date(&mut self, cx: &mut DecodeContext<'_>, name: &str) -> Option<PartitionDate> {
        let s = self.string(cx, name)?;
        match PartitionDate::parse(&s) {
            Ok(d) => Some(d),
            Err(_) => {
                cx.invalid_value(
                    &self.path.field(name),
                    "not a date",
                    "yyyy-MM-dd",
                    &Value::String(s),
                );
                None
            }
        }
    }

    pub fn string_list(&mut self, cx: &mut DecodeContext<'_>, name: &str) -> Vec<String> {
        let Some(v) = self.take(name) else {
            return Vec::new();
        };
        decode_string_list(cx, &self.path.field(name), v)
    }

    /// A JSON object of strings, keys sorted (for maps whose order carries no meaning).
    pub fn string_map(
        &mut self,
        cx: &mut DecodeContext<'_>,
        name: &str,
    ) -> BTreeMap<String, String> {
        let Some(v) = self.take(name) else {
            return BTreeMap::new();
        };
        decode_string_map(cx, &self.path.field(name), v)
            .into_iter()
            .collect()
    }

    /// A JSON object of strings in file order (for `selects`, whose order is the column order).
    pub fn ordered_string_map(
        &mut self,
        cx: &mut DecodeContext<'_>,
        name: &str,
    ) -> Option<IndexMap<String, String>> {
        let v = self.take(name)?;
        Some(decode_string_map(cx, &self.path.field(name), v))
    }

    /// A nested object decoded by `decode`; absent gives `None`.
    pub fn object<T>(
        &mut self,
        cx: &mut DecodeContext<'_>,
        name: &str,
        decode: impl FnOnce(&mut DecodeContext<'_>, Fields) -> Option<T>,
    ) -> Option<T> {
        let v = self.take(name)?;
        let fields = cx.object(v, &self.path.field(name))?;
        decode(cx, fields)
    }

    /// A list whose items are decoded by `decode`; items that fail to decode are dropped (their
    /// diagnostics are already recorded, and an error there keeps the config out of the plan).
    pub fn list<T>(
        &mut self,
        cx: &mut DecodeContext<'_>,
        name: &str,
        mut decode: impl FnMut(&mut DecodeContext<'_>, Value, JsonPath) -> Option<T>,
    ) -> Option<Vec<T>> {
        let v = self.take(name)?;
        let path = self.path.field(name);
        match v {
            Value::Array(items) => Some(
                items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, item)| decode(cx, item, path.index(i)))
                    .collect(),
            ),
            other => {
                cx.wrong_type(&path, "array", &other);
                None
            }
        }
    }

    /// A string that holds JSON (Chronon's `customJson`): parsed, or reported.
    pub fn embedded_json(&mut self, cx: &mut DecodeContext<'_>, name: &str) -> Option<Value> {
        let s = self.string(cx, name)?;
        match serde_json::from_str::<Value>(&s) {
            Ok(v) => Some(v),
            Err(e) => {
                let d = cx.error(
                    DiagnosticCode::InvalidJson,
                    &self.path.field(name),
                    format!("string does not hold valid JSON: {e}"),
                );
                d.found = Some(describe(&Value::String(s)));
                None
            }
        }
    }
}

pub fn decode_bool(cx: &mut DecodeContext<'_>, path: &JsonPath, v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) if n.as_u64() == Some(0) => Some(false),
        Value::Number(n) if n.as_u64() == Some(1) => Some(true),
        other => {
            cx.wrong_type(path, "boolean (true/false or 1/0)", other);
            None
        }
    }
}

pub fn decode_i64(cx: &mut DecodeContext<'_>, path: &JsonPath, v: &Value) -> Option<i64> {
    match v.as_i64() {
        Some(i) => Some(i),
        None => {
            cx.wrong_type(path, "integer", v);
            None
        }
    }
}

pub fn decode_string_list(cx: &mut DecodeContext<'_>, path: &JsonPath, v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(s) => Some(s),
                other => {
                    cx.wrong_type(&path.index(i), "string", &other);
                    None
                }
            })
            .collect(),
        other => {
            cx.wrong_type(path, "array of strings", &other);
            Vec::new()
        }
    }
}

pub fn decode_string_map(
    cx: &mut DecodeContext<'_>,
    path: &JsonPath,
    v: Value,
) -> IndexMap<String, String> {
    match v {
        Value::Object(map) => map
            .into_iter()
            .filter_map(|(k, item)| match item {
                Value::String(s) => Some((k, s)),
                other => {
                    cx.wrong_type(&path.field(&k), "string", &other);
                    None
                }
            })
            .collect(),
        other => {
            cx.wrong_type(path, "object of strings", &other);
            IndexMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        let p = JsonPath::root()
            .field("metaData")
            .field("spark.chronon.partition.column")
            .index(2);
        assert_eq!(
            p.as_str(),
            "$.metaData[\"spark.chronon.partition.column\"][2]"
        );
    }

    #[test]
    fn describe_truncates_long_values_on_a_char_boundary() {
        let long = Value::String("é".repeat(100));
        let d = describe(&long);
        assert!(d.starts_with("string \"é"));
        assert!(d.ends_with('…'));
        assert!(d.len() < 80);
    }
}
