//! Manifest lists and manifests: Avro files read as generic values and walked by field name
//! (which fields are unions differs between format versions, so serde structs would need one
//! shape per version), and the partition pruning their bounds allow.

use apache_avro::Reader;
use apache_avro::types::Value;
use chronoflow_config::PartitionDate;

use super::metadata::DateEncoding;

/// One entry of a manifest list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ManifestFile {
    pub(crate) path: String,
    pub(crate) spec_id: i64,
    /// 0 data, 1 deletes (absent in v1: data).
    pub(crate) content: i64,
    /// Per partition field, in spec order (absent: no summary, the manifest must be read).
    pub(crate) partitions: Option<Vec<FieldSummary>>,
    /// Added + existing files, when both counts are recorded.
    pub(crate) live_files: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldSummary {
    pub(crate) contains_null: bool,
    pub(crate) lower: Option<Vec<u8>>,
    pub(crate) upper: Option<Vec<u8>>,
}

/// A partition value as a manifest records it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PartitionValue {
    Null,
    Text(String),
    Days(i32),
    Other,
}

/// One live (not deleted) entry of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// 0 data, 1 position deletes, 2 equality deletes.
    pub(crate) content: i64,
    pub(crate) path: String,
    pub(crate) format: String,
    /// The values of the spec's fields, in spec order.
    pub(crate) partition: Vec<PartitionValue>,
    pub(crate) record_count: i64,
}

fn unwrap(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => unwrap(inner),
        v => v,
    }
}

fn field<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    match unwrap(record) {
        Value::Record(fields) => fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| unwrap(v)),
        _ => None,
    }
}

fn long(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Long(x) => Some(*x),
        Value::Int(x) => Some(i64::from(*x)),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn binary(v: Option<&Value>) -> Option<Vec<u8>> {
    match v? {
        Value::Bytes(b) | Value::Fixed(_, b) => Some(b.clone()),
        _ => None,
    }
}

/// An Avro file's header metadata (the keys other than `avro.*`).
type Header = std::collections::HashMap<String, Vec<u8>>;

fn records(bytes: &[u8]) -> Result<(Vec<Value>, Header), String> {
    let reader = Reader::new(bytes).map_err(|e| format!("not an Avro file: {e}"))?;
    let meta = reader.user_metadata().clone();
    let values = reader
        .collect::<Result<Vec<Value>, _>>()
        .map_err(|e| format!("damaged Avro: {e}"))?;
    Ok((values, meta))
}

/// The entries of a manifest list.
pub(crate) fn read_manifest_list(bytes: &[u8]) -> Result<Vec<ManifestFile>, String> {
    let (values, _) = records(bytes)?;
    values
        .iter()
        .map(|v| {
            let path = text(field(v, "manifest_path")).ok_or("an entry has no manifest_path")?;
            if binary(field(v, "key_metadata")).is_some() {
                return Err(format!(
                    "manifest {path} is encrypted (key_metadata): chronoflow does not read \
                     encrypted tables"
                ));
            }
            let partitions = match field(v, "partitions") {
                Some(Value::Array(items)) => Some(
                    items
                        .iter()
                        .map(|s| FieldSummary {
                            contains_null: matches!(
                                field(s, "contains_null"),
                                Some(Value::Boolean(true))
                            ),
                            lower: binary(field(s, "lower_bound")),
                            upper: binary(field(s, "upper_bound")),
                        })
                        .collect(),
                ),
                _ => None,
            };
            let count = |new: &str, old: &str| long(field(v, new).or_else(|| field(v, old)));
            let live_files = count("added_files_count", "added_data_files_count").and_then(|a| {
                Some(a + count("existing_files_count", "existing_data_files_count")?)
            });
            Ok(ManifestFile {
                spec_id: long(field(v, "partition_spec_id")).unwrap_or(0),
                content: long(field(v, "content")).unwrap_or(0),
                partitions,
                live_files,
                path,
            })
        })
        .collect()
}

/// The live entries of a manifest (status 0 existing or 1 added; 2 is deleted).
pub(crate) fn read_manifest(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let (values, meta) = records(bytes)?;
    let manifest_content = meta.get("content").map(|c| c.as_slice() == b"deletes");
    let mut out = Vec::new();
    for v in &values {
        if long(field(v, "status")) == Some(2) {
            continue;
        }
        let file = field(v, "data_file").ok_or("an entry has no data_file")?;
        let path = text(field(file, "file_path")).ok_or("an entry has no file_path")?;
        let content = long(field(file, "content")).unwrap_or(if manifest_content == Some(true) {
            1
        } else {
            0
        });
        let partition = match field(file, "partition") {
            Some(Value::Record(fields)) => fields
                .iter()
                .map(|(_, value)| match unwrap(value) {
                    Value::Null => PartitionValue::Null,
                    Value::String(s) => PartitionValue::Text(s.clone()),
                    // The spec lets `day` results be plain ints (older Java writers).
                    Value::Date(d) | Value::Int(d) => PartitionValue::Days(*d),
                    _ => PartitionValue::Other,
                })
                .collect(),
            _ => Vec::new(),
        };
        if field(file, "referenced_data_file").is_some_and(|r| *r != Value::Null)
            || field(file, "content_offset").is_some_and(|r| *r != Value::Null)
        {
            return Err(format!(
                "{path} is a deletion vector (Iceberg v3): chronoflow reads format versions 1 and 2"
            ));
        }
        out.push(Entry {
            content,
            format: text(field(file, "file_format")).unwrap_or_default(),
            record_count: long(field(file, "record_count")).unwrap_or(0),
            partition,
            path,
        });
    }
    Ok(out)
}

fn epoch() -> PartitionDate {
    PartitionDate::from_ymd(1970, 1, 1).expect("1970-01-01 exists")
}

/// The partition date a value stands for, `None` for nulls and values that are no date (such
/// values are skipped as a Hive table's unparsable folders are).
pub(crate) fn value_date(value: &PartitionValue) -> Option<PartitionDate> {
    match value {
        PartitionValue::Text(s) => PartitionDate::parse(s).ok(),
        PartitionValue::Days(d) => epoch().checked_add_days(i64::from(*d)),
        PartitionValue::Null | PartitionValue::Other => None,
    }
}

fn days(ds: PartitionDate) -> i64 {
    epoch().days_until(ds)
}

/// Whether a manifest may hold entries of partition `ds`, by its summary of the date field.
pub(crate) fn may_contain(
    summary: Option<&FieldSummary>,
    encoding: DateEncoding,
    ds: PartitionDate,
) -> bool {
    let Some(s) = summary else {
        return true;
    };
    let (Some(lower), Some(upper)) = (&s.lower, &s.upper) else {
        // Bounds are written whenever a value is not null: no bounds, only nulls.
        return s.lower.is_some() || s.upper.is_some();
    };
    match encoding {
        // Byte order, which holds for bounds truncated by the writer too.
        DateEncoding::Text => {
            let d = ds.to_string();
            lower.as_slice() <= d.as_bytes() && d.as_bytes() <= upper.as_slice()
        }
        DateEncoding::Days => match (le_i32(lower), le_i32(upper)) {
            (Some(lo), Some(hi)) => (i64::from(lo)..=i64::from(hi)).contains(&days(ds)),
            _ => true,
        },
    }
}

/// The one date every entry of a manifest has, when its summary says so (lower = upper, no
/// nulls, and it has live files): its entries need not be read to list partitions.
pub(crate) fn single_date(
    manifest: &ManifestFile,
    position: usize,
    encoding: DateEncoding,
) -> Option<PartitionDate> {
    let s = manifest.partitions.as_ref()?.get(position)?;
    if s.contains_null || s.lower != s.upper || manifest.live_files.is_none_or(|n| n <= 0) {
        return None;
    }
    let bound = s.lower.as_ref()?;
    match encoding {
        DateEncoding::Text => PartitionDate::parse(std::str::from_utf8(bound).ok()?).ok(),
        DateEncoding::Days => value_date(&PartitionValue::Days(le_i32(bound)?)),
    }
}

fn le_i32(b: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> PartitionDate {
        PartitionDate::parse(s).unwrap()
    }

    fn summary(lower: &[u8], upper: &[u8]) -> FieldSummary {
        FieldSummary {
            contains_null: false,
            lower: Some(lower.to_vec()),
            upper: Some(upper.to_vec()),
        }
    }

    #[test]
    fn string_bounds_prune_by_bytes() {
        let s = summary(b"2023-11-01", b"2023-11-30");
        assert!(may_contain(
            Some(&s),
            DateEncoding::Text,
            date("2023-11-14")
        ));
        assert!(!may_contain(
            Some(&s),
            DateEncoding::Text,
            date("2023-12-01")
        ));
        // A truncated lower bound is a prefix: still conservative.
        let t = summary(b"2023-11", b"2023-11-30");
        assert!(may_contain(
            Some(&t),
            DateEncoding::Text,
            date("2023-11-01")
        ));
        assert!(may_contain(None, DateEncoding::Text, date("2023-11-01")));
        let nulls = FieldSummary {
            contains_null: true,
            lower: None,
            upper: None,
        };
        assert!(!may_contain(
            Some(&nulls),
            DateEncoding::Text,
            date("2023-11-01")
        ));
    }

    #[test]
    fn day_bounds_are_little_endian_days() {
        // 19675 = 2023-11-14, -1 = 1969-12-31.
        let s = summary(&19675i32.to_le_bytes(), &19676i32.to_le_bytes());
        assert!(may_contain(
            Some(&s),
            DateEncoding::Days,
            date("2023-11-15")
        ));
        assert!(!may_contain(
            Some(&s),
            DateEncoding::Days,
            date("2023-11-13")
        ));
        assert_eq!(
            value_date(&PartitionValue::Days(-1)),
            Some(date("1969-12-31"))
        );
        let m = ManifestFile {
            path: "m".into(),
            spec_id: 0,
            content: 0,
            partitions: Some(vec![summary(&[0xdb, 0x4c, 0, 0], &[0xdb, 0x4c, 0, 0])]),
            live_files: Some(1),
        };
        assert_eq!(
            single_date(&m, 0, DateEncoding::Days),
            Some(date("2023-11-14"))
        );
        let empty = ManifestFile {
            live_files: Some(0),
            ..m
        };
        assert_eq!(single_date(&empty, 0, DateEncoding::Days), None);
    }
}
