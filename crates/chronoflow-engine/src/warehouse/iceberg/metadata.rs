//! An Iceberg table's metadata JSON (format versions 1 and 2): the fields the reader uses, the
//! current schema as Arrow, and the table's date partition field.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

/// What the reader uses of `metadata.json` (`format-version` is checked by [`parse`]; logs,
/// statistics and the rest are skipped).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct TableMetadata {
    /// Absent (pyiceberg), `null` or `-1` (Java) when the table has no snapshot.
    pub(crate) current_snapshot_id: Option<i64>,
    #[serde(default)]
    snapshots: Vec<Snapshot>,
    #[serde(default)]
    schemas: Vec<IcebergSchema>,
    current_schema_id: Option<i64>,
    /// v1's single schema.
    schema: Option<IcebergSchema>,
    #[serde(default)]
    partition_specs: Vec<PartitionSpec>,
    default_spec_id: Option<i64>,
    #[serde(default)]
    pub(crate) properties: HashMap<String, String>,
    #[serde(default)]
    refs: HashMap<String, SnapshotRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Snapshot {
    pub(crate) snapshot_id: i64,
    pub(crate) manifest_list: Option<String>,
    /// Old v1 snapshots list their manifests inline instead of in a manifest list.
    manifests: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SnapshotRef {
    snapshot_id: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct IcebergSchema {
    #[serde(default)]
    schema_id: i64,
    fields: Vec<NestedField>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct NestedField {
    pub(crate) id: i32,
    pub(crate) name: String,
    #[serde(default)]
    required: bool,
    #[serde(rename = "type")]
    ty: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct PartitionSpec {
    spec_id: i64,
    fields: Vec<PartitionField>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct PartitionField {
    source_id: i32,
    name: String,
    transform: String,
}

/// How a date partition field's values are written in manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateEncoding {
    /// identity on a `string` column of `yyyy-MM-dd`: strings; bounds are UTF-8 bytes.
    Text,
    /// identity on a `date` column, or `day(...)`: days since 1970-01-01; bounds 4-byte LE.
    Days,
}

/// The partition field that gives chronoflow's daily partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DateField {
    /// The partition column chronoflow shows (the partition field's name).
    pub(crate) name: String,
    pub(crate) source_id: i32,
    transform: String,
    pub(crate) encoding: DateEncoding,
    /// The source column, dropped from the table's columns when the transform is identity (the
    /// partition column replaces it, as a Hive table's `ds` folder does).
    pub(crate) dropped: Option<i32>,
}

/// Parses a metadata file, refusing views and format versions this reader does not know.
pub(crate) fn parse(json: &[u8]) -> Result<TableMetadata, String> {
    parse_value(serde_json::from_slice(json).map_err(|e| format!("is not JSON: {e}"))?)
}

/// [`parse`] of JSON already parsed (a REST catalog's answer).
pub(crate) fn parse_value(value: serde_json::Value) -> Result<TableMetadata, String> {
    if value.get("view-uuid").is_some() {
        return Err("is an Iceberg view, not a table".to_owned());
    }
    match value
        .get("format-version")
        .and_then(serde_json::Value::as_i64)
    {
        Some(1 | 2) => {}
        Some(v) => {
            return Err(format!(
                "has Iceberg format-version {v}: chronoflow reads format versions 1 and 2"
            ));
        }
        None => return Err("has no format-version: not Iceberg table metadata".to_owned()),
    }
    serde_json::from_value(value).map_err(|e| format!("is not valid Iceberg metadata: {e}"))
}

impl TableMetadata {
    /// The current snapshot, `None` for a table without one.
    pub(crate) fn current_snapshot(&self) -> Result<Option<&Snapshot>, String> {
        let id = match self.current_snapshot_id {
            Some(id) if id != -1 => id,
            _ => match self.refs.get("main") {
                Some(r) => r.snapshot_id,
                None => return Ok(None),
            },
        };
        let snapshot = self
            .snapshots
            .iter()
            .find(|s| s.snapshot_id == id)
            .ok_or_else(|| format!("the current snapshot {id} is not in its snapshots"))?;
        if snapshot.manifest_list.is_none() && snapshot.manifests.is_some() {
            return Err(format!(
                "snapshot {id} lists its manifests inline (an old v1 writer): chronoflow reads \
                 snapshots with a manifest list; rewrite the table with a newer writer"
            ));
        }
        Ok(Some(snapshot))
    }

    fn current_schema(&self) -> Result<&IcebergSchema, String> {
        match self.current_schema_id {
            Some(id) => self.schemas.iter().find(|s| s.schema_id == id),
            None => self.schema.as_ref().or(self.schemas.last()),
        }
        .ok_or_else(|| "has no current schema".to_owned())
    }

    pub(crate) fn fields(&self) -> Result<&[NestedField], String> {
        Ok(&self.current_schema()?.fields)
    }

    /// The fields of partition spec `id` (v1 tables written by pyiceberg have an empty
    /// `partition-spec` beside the real `partition-specs`: only the latter is read).
    pub(crate) fn spec(&self, id: i64) -> Option<&[PartitionField]> {
        self.partition_specs
            .iter()
            .find(|s| s.spec_id == id)
            .map(|s| s.fields.as_slice())
    }

    /// The date partition field of the default spec: the one named `column` if given.
    pub(crate) fn date_field(&self, column: Option<&str>) -> Result<DateField, String> {
        let spec_id = self.default_spec_id.unwrap_or(0);
        let spec = self.spec(spec_id).unwrap_or(&[]);
        let fields = self.fields()?;
        let source = |id: i32| fields.iter().find(|f| f.id == id);
        let mut candidates = Vec::new();
        for p in spec {
            let Some(src) = source(p.source_id) else {
                continue;
            };
            let ty = src.ty.as_str().unwrap_or("");
            let encoding = match (p.transform.as_str(), ty) {
                ("identity", "string") => DateEncoding::Text,
                ("identity", "date") => DateEncoding::Days,
                ("day", "date" | "timestamp" | "timestamptz") => DateEncoding::Days,
                _ => continue,
            };
            candidates.push(DateField {
                name: p.name.clone(),
                source_id: p.source_id,
                transform: p.transform.clone(),
                encoding,
                dropped: (p.transform == "identity").then_some(p.source_id),
            });
        }
        let describe = || {
            let parts: Vec<String> = spec
                .iter()
                .map(|p| {
                    let src = source(p.source_id).map_or("?", |f| f.name.as_str());
                    format!("{}={}({src})", p.name, p.transform)
                })
                .collect();
            if parts.is_empty() {
                "none (unpartitioned)".to_owned()
            } else {
                parts.join(", ")
            }
        };
        if let Some(column) = column {
            return candidates
                .into_iter()
                .find(|c| c.name == column || source(c.source_id).is_some_and(|f| f.name == column))
                .ok_or_else(|| {
                    format!(
                        "has no date partition field {column:?} (partition_column); its partition \
                         spec {spec_id} is: {}",
                        describe()
                    )
                });
        }
        match candidates.len() {
            1 => Ok(candidates.remove(0)),
            0 => Err(format!(
                "is not partitioned by a date: chronoflow reads Iceberg tables partitioned by \
                 identity(a yyyy-MM-dd string or a date column) or day(a date or timestamp \
                 column); its partition spec {spec_id} is: {}",
                describe()
            )),
            _ => Err(format!(
                "has several date partition fields ({}): set `partition_column` to one",
                describe()
            )),
        }
    }

    /// The position of `field` in partition spec `spec_id`, matched by source column and
    /// transform (names may differ between specs).
    pub(crate) fn position_in(&self, spec_id: i64, field: &DateField) -> Option<usize> {
        self.spec(spec_id)?
            .iter()
            .position(|p| p.source_id == field.source_id && p.transform == field.transform)
    }

    /// Column names to field ids from `schema.name-mapping.default`, for files without field
    /// ids (imported with `add_files` or migrated from Hive); top-level columns only.
    pub(crate) fn name_mapping(&self) -> Result<HashMap<String, i32>, String> {
        #[derive(Deserialize)]
        struct Mapped {
            #[serde(default)]
            names: Vec<String>,
            #[serde(rename = "field-id")]
            field_id: Option<i32>,
        }
        let Some(text) = self.properties.get("schema.name-mapping.default") else {
            return Ok(HashMap::new());
        };
        let mapped: Vec<Mapped> = serde_json::from_str(text)
            .map_err(|e| format!("has an invalid schema.name-mapping.default: {e}"))?;
        let mut out = HashMap::new();
        for m in mapped {
            if let Some(id) = m.field_id {
                for name in m.names {
                    out.insert(name, id);
                }
            }
        }
        Ok(out)
    }
}

/// The current schema as Arrow (without the column `dropped`), and each column's field id.
pub(crate) fn arrow_schema(
    fields: &[NestedField],
    dropped: Option<i32>,
) -> Result<(SchemaRef, Vec<i32>), String> {
    let mut out = Vec::new();
    let mut ids = Vec::new();
    for f in fields.iter().filter(|f| Some(f.id) != dropped) {
        let ty = arrow_type(&f.ty).map_err(|e| format!("column {:?}: {e}", f.name))?;
        out.push(Field::new(&f.name, ty, !f.required));
        ids.push(f.id);
    }
    Ok((Arc::new(Schema::new(out)), ids))
}

/// An Iceberg type (JSON) as the Arrow type the Parquet reader yields for it.
pub(crate) fn arrow_type(ty: &serde_json::Value) -> Result<DataType, String> {
    if let Some(name) = ty.as_str() {
        return primitive(name);
    }
    let nested = |key: &str| ty.get(key).ok_or_else(|| format!("{ty} has no {key:?}"));
    let required = |key: &str| ty.get(key).and_then(serde_json::Value::as_bool) == Some(true);
    match ty.get("type").and_then(serde_json::Value::as_str) {
        Some("struct") => {
            let fields: Vec<NestedField> = serde_json::from_value(nested("fields")?.clone())
                .map_err(|e| format!("{ty}: {e}"))?;
            let fields: Result<Vec<Field>, String> = fields
                .iter()
                .map(|f| Ok(Field::new(&f.name, arrow_type(&f.ty)?, !f.required)))
                .collect();
            Ok(DataType::Struct(Fields::from(fields?)))
        }
        Some("list") => Ok(DataType::List(Arc::new(Field::new(
            "element",
            arrow_type(nested("element")?)?,
            !required("element-required"),
        )))),
        Some("map") => {
            let entries = Field::new(
                "key_value",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", arrow_type(nested("key")?)?, false),
                    Field::new(
                        "value",
                        arrow_type(nested("value")?)?,
                        !required("value-required"),
                    ),
                ])),
                false,
            );
            Ok(DataType::Map(Arc::new(entries), false))
        }
        _ => Err(format!("unknown Iceberg type {ty}")),
    }
}

fn primitive(name: &str) -> Result<DataType, String> {
    Ok(match name {
        "boolean" => DataType::Boolean,
        "int" => DataType::Int32,
        "long" => DataType::Int64,
        "float" => DataType::Float32,
        "double" => DataType::Float64,
        "date" => DataType::Date32,
        "time" => DataType::Time64(TimeUnit::Microsecond),
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "string" => DataType::Utf8,
        "uuid" => DataType::FixedSizeBinary(16),
        "binary" => DataType::Binary,
        other => {
            if let Some(args) = other
                .strip_prefix("decimal(")
                .and_then(|r| r.strip_suffix(')'))
            {
                let (p, s) = args
                    .split_once(',')
                    .ok_or_else(|| format!("bad decimal type {other:?}"))?;
                let p: u8 = p.trim().parse().map_err(|_| format!("bad {other:?}"))?;
                let s: i8 = s.trim().parse().map_err(|_| format!("bad {other:?}"))?;
                return Ok(DataType::Decimal128(p, s));
            }
            if let Some(len) = other
                .strip_prefix("fixed[")
                .and_then(|r| r.strip_suffix(']'))
            {
                let len: i32 = len.trim().parse().map_err(|_| format!("bad {other:?}"))?;
                return Ok(DataType::FixedSizeBinary(len));
            }
            return Err(format!("unsupported Iceberg type {other:?}"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"{"format-version": 2, "location": "file:///t", "current-snapshot-id": 8408248731664396513,
      "schemas": [{"schema-id": 0, "type": "struct", "fields": [
          {"id": 1, "name": "ts", "type": "long", "required": false},
          {"id": 6, "name": "ds", "type": "string", "required": true}]},
        {"schema-id": 1, "type": "struct", "fields": [
          {"id": 1, "name": "ts", "type": "long", "required": false},
          {"id": 6, "name": "ds", "type": "string", "required": true},
          {"id": 7, "name": "coupon", "type": "string", "required": false},
          {"id": 8, "name": "price", "type": "decimal(10, 2)", "required": false},
          {"id": 9, "name": "tags", "type": {"type": "list", "element-id": 10, "element": "string", "element-required": false}, "required": false}]}],
      "current-schema-id": 1,
      "partition-specs": [{"spec-id": 0, "fields": []},
        {"spec-id": 1, "fields": [{"source-id": 6, "field-id": 1000, "transform": "identity", "name": "ds"}]}],
      "default-spec-id": 1,
      "snapshots": [{"snapshot-id": 8408248731664396513, "manifest-list": "file:///t/snap.avro"}]}"#;

    #[test]
    fn the_current_schema_and_date_field_of_a_v2_table() {
        let m = parse(V2.as_bytes()).unwrap();
        let field = m.date_field(None).unwrap();
        assert_eq!(field.name, "ds");
        assert_eq!(field.encoding, DateEncoding::Text);
        assert_eq!(m.position_in(1, &field), Some(0));
        assert_eq!(m.position_in(0, &field), None);
        let (schema, ids) = arrow_schema(m.fields().unwrap(), field.dropped).unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["ts", "coupon", "price", "tags"]);
        assert_eq!(ids, [1, 7, 8, 9]);
        assert_eq!(
            schema.field(2).data_type(),
            &DataType::Decimal128(10, 2),
            "decimal(P, S) with a space"
        );
        assert_eq!(
            m.current_snapshot()
                .unwrap()
                .unwrap()
                .manifest_list
                .as_deref(),
            Some("file:///t/snap.avro")
        );
    }

    #[test]
    fn newer_format_versions_and_views_are_refused() {
        let v3 = V2.replace("\"format-version\": 2", "\"format-version\": 3");
        let e = parse(v3.as_bytes()).unwrap_err();
        assert!(e.contains("format-version 3"), "{e}");
        let e = parse(br#"{"view-uuid": "x", "format-version": 1}"#).unwrap_err();
        assert!(e.contains("view"), "{e}");
    }

    #[test]
    fn tables_not_partitioned_by_a_date_are_refused_with_their_spec() {
        let month = V2.replace("\"transform\": \"identity\"", "\"transform\": \"month\"");
        let e = parse(month.as_bytes())
            .unwrap()
            .date_field(None)
            .unwrap_err();
        assert!(e.contains("ds=month(ds)"), "{e}");
        let e = parse(V2.as_bytes())
            .unwrap()
            .date_field(Some("day"))
            .unwrap_err();
        assert!(e.contains("\"day\""), "{e}");
    }

    #[test]
    fn no_snapshot_is_absent_or_minus_one() {
        let none = V2.replace("8408248731664396513,", "-1,");
        assert!(
            parse(none.as_bytes())
                .unwrap()
                .current_snapshot()
                .unwrap()
                .is_none()
        );
    }
}
