//! A topic's record values into rows of the source table's columns.
//!
//! Records come from outside: each is decoded on its own and either becomes one row or is
//! rejected with the reason (not an object, a value of the wrong type, a missing required
//! column, too large). A rejected record never affects its neighbours.

use std::sync::Arc;

use apache_avro::Schema as AvroSchema;
use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int8Builder,
    Int16Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder, TimestampMillisecondBuilder, TimestampNanosecondBuilder,
    TimestampSecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
    new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

use crate::topic::Format;

/// Turns record values into rows of `schema`.
pub struct RecordDecoder {
    schema: SchemaRef,
    format: Format,
    avro: Option<AvroSchema>,
    max_bytes: usize,
    /// The position of the table's partition column, added to the table's columns: a record
    /// that carries it says which partition it lands in.
    partition: usize,
}

/// The decoded values of one record, one per schema column.
pub type Row = Vec<Value>;

impl RecordDecoder {
    /// `schema`: the source table's columns (its partition column `partition_column` is added
    /// when missing). `avro`: the writer schema of Avro records.
    pub fn new(
        schema: SchemaRef,
        partition_column: &str,
        format: Format,
        avro: Option<AvroSchema>,
        max_bytes: usize,
    ) -> Result<RecordDecoder, String> {
        if matches!(format, Format::Avro { .. }) && avro.is_none() {
            return Err(
                "serde=avro needs the writer schema: a `schema=<file>` topic argument or --avro-schema"
                    .to_owned(),
            );
        }
        let (schema, partition) = match schema.index_of(partition_column) {
            Ok(i) => (schema, i),
            Err(_) => {
                let mut fields: Vec<Field> =
                    schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                fields.push(Field::new(partition_column, DataType::Utf8, true));
                (Arc::new(Schema::new(fields)), schema.fields().len())
            }
        };
        Ok(RecordDecoder {
            schema,
            format,
            avro,
            max_bytes,
            partition,
        })
    }

    /// The partition a decoded record names (days since 1970-01-01), if it names one.
    pub fn partition_day(&self, row: &Row) -> Option<i64> {
        let text = row.get(self.partition)?.as_str()?;
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        Some(i64::from(date.to_epoch_days()))
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// One record's row, or why it is rejected.
    pub fn decode(&self, value: Option<&[u8]>) -> Result<Row, String> {
        let bytes = value.ok_or("the record has no value (a tombstone)")?;
        if bytes.len() > self.max_bytes {
            return Err(format!(
                "the record is {} bytes, over the limit of {} (--max-record-bytes)",
                bytes.len(),
                self.max_bytes
            ));
        }
        let object = match &self.format {
            Format::Json => match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(map)) => map,
                Ok(other) => return Err(format!("not a JSON object: {}", kind_of(&other))),
                Err(e) => return Err(format!("not JSON: {e}")),
            },
            Format::Csv { fields } => {
                let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
                let values: Vec<&str> = text.trim_end_matches(['\r', '\n']).split(',').collect();
                if values.len() != fields.len() {
                    return Err(format!(
                        "{} comma-separated values, the topic's fields are {}",
                        values.len(),
                        fields.len()
                    ));
                }
                fields
                    .iter()
                    .zip(values)
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(f, v)| (f.clone(), Value::String(v.to_owned())))
                    .collect()
            }
            Format::Avro { confluent } => {
                let Some(schema) = &self.avro else {
                    return Err("no Avro schema".to_owned());
                };
                let mut body = bytes;
                if *confluent {
                    body = match bytes.split_first() {
                        Some((0, rest)) if rest.len() >= 4 => &rest[4..],
                        _ => return Err("no Confluent header (magic byte 0, schema id)".to_owned()),
                    };
                }
                let value = apache_avro::from_avro_datum(schema, &mut body, None)
                    .map_err(|e| format!("not an Avro datum of the schema: {e}"))?;
                match Value::try_from(value) {
                    Ok(Value::Object(map)) => map,
                    Ok(other) => return Err(format!("an Avro {} , not a record", kind_of(&other))),
                    Err(e) => return Err(format!("an Avro value JSON cannot hold: {e}")),
                }
            }
        };
        let text_values = matches!(self.format, Format::Csv { .. });
        let row: Row = self
            .schema
            .fields()
            .iter()
            .map(|field| {
                let value = object.get(field.name()).cloned().unwrap_or(Value::Null);
                check(field, &value, text_values)
                    .map_err(|e| format!("column {:?}: {e}", field.name()))
            })
            .collect::<Result<_, _>>()?;
        match row.get(self.partition) {
            Some(Value::String(ds)) if self.partition_day(&row).is_none() => Err(format!(
                "partition column {:?}: {ds:?} is not a YYYY-MM-DD date",
                self.schema.field(self.partition).name()
            )),
            _ => Ok(row),
        }
    }

    /// The rows as a batch of the schema's columns.
    pub fn batch(&self, rows: &[Row]) -> Result<RecordBatch, String> {
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| build(f.data_type(), rows.iter().map(|r| &r[i]), rows.len()))
            .collect();
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `value` fits `field`, normalized to what [`build`] appends: numbers as JSON numbers,
/// text as strings. `text`: values arrived as text (CSV) and are parsed.
fn check(field: &Field, value: &Value, text: bool) -> Result<Value, String> {
    if value.is_null() {
        return if field.is_nullable() {
            Ok(Value::Null)
        } else {
            Err("missing, and the column is not nullable".to_owned())
        };
    }
    scalar(field.data_type(), value, text)
}

fn scalar(data_type: &DataType, value: &Value, text: bool) -> Result<Value, String> {
    let wrong = || format!("{} {value} where {data_type} is expected", kind_of(value));
    let parsed;
    let value = match value {
        Value::String(s) if text && !matches!(data_type, DataType::Utf8 | DataType::LargeUtf8) => {
            parsed = serde_json::from_str::<Value>(s).map_err(|_| wrong())?;
            &parsed
        }
        v => v,
    };
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => match value {
            Value::String(_) => Ok(value.clone()),
            // As Spark reads a JSON number or boolean into a string column: its text.
            Value::Number(_) | Value::Bool(_) => Ok(Value::String(value.to_string())),
            _ => Err(wrong()),
        },
        DataType::Boolean => value.is_boolean().then(|| value.clone()).ok_or_else(wrong),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let n = value.as_i64().ok_or_else(wrong)?;
            let (lo, hi) = match data_type {
                DataType::Int8 => (i64::from(i8::MIN), i64::from(i8::MAX)),
                DataType::Int16 => (i64::from(i16::MIN), i64::from(i16::MAX)),
                DataType::Int32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => (i64::MIN, i64::MAX),
            };
            if (lo..=hi).contains(&n) {
                Ok(value.clone())
            } else {
                Err(format!("{n} is out of range for {data_type}"))
            }
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let n = value.as_u64().ok_or_else(wrong)?;
            let hi = match data_type {
                DataType::UInt8 => u64::from(u8::MAX),
                DataType::UInt16 => u64::from(u16::MAX),
                DataType::UInt32 => u64::from(u32::MAX),
                _ => u64::MAX,
            };
            if n <= hi {
                Ok(value.clone())
            } else {
                Err(format!("{n} is out of range for {data_type}"))
            }
        }
        DataType::Float32 | DataType::Float64 => {
            value.as_f64().map(|_| value.clone()).ok_or_else(wrong)
        }
        DataType::Timestamp(_, _) => value.as_i64().map(|_| value.clone()).ok_or_else(wrong),
        DataType::Date32 => {
            let s = value.as_str().ok_or_else(wrong)?;
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|_| value.clone())
                .map_err(|_| format!("{s:?} is not a YYYY-MM-DD date"))
        }
        DataType::List(item) | DataType::LargeList(item) => {
            let items = value.as_array().ok_or_else(wrong)?;
            items
                .iter()
                .map(|v| {
                    if v.is_null() {
                        Ok(Value::Null)
                    } else {
                        scalar(item.data_type(), v, false)
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        // Columns of other types are not read from records (they stay null): the startup log
        // names them.
        _ => Ok(Value::Null),
    }
}

/// Whether records can carry values of `data_type` (else the column stays null).
pub fn supported(data_type: &DataType) -> bool {
    match data_type {
        DataType::List(item) | DataType::LargeList(item) => {
            !matches!(item.data_type(), DataType::List(_) | DataType::LargeList(_))
                && supported(item.data_type())
                && !matches!(item.data_type(), DataType::Date32)
        }
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Timestamp(_, _)
        | DataType::Date32 => true,
        _ => false,
    }
}

macro_rules! build_with {
    ($builder:expr, $values:expr, $get:expr) => {{
        let mut b = $builder;
        for v in $values {
            b.append_option($get(v));
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

fn as_str(v: &Value) -> Option<&str> {
    v.as_str()
}

/// An array of `data_type` from values [`check`] accepted.
fn build<'a>(
    data_type: &DataType,
    values: impl Iterator<Item = &'a Value>,
    len: usize,
) -> ArrayRef {
    let int = |v: &Value| v.as_i64();
    let uint = |v: &Value| v.as_u64();
    match data_type {
        DataType::Utf8 => build_with!(StringBuilder::new(), values, as_str),
        DataType::LargeUtf8 => build_with!(arrow::array::LargeStringBuilder::new(), values, as_str),
        DataType::Boolean => build_with!(BooleanBuilder::new(), values, |v: &Value| v.as_bool()),
        DataType::Int8 => build_with!(Int8Builder::new(), values, |v| int(v)
            .and_then(|n| i8::try_from(n).ok())),
        DataType::Int16 => build_with!(Int16Builder::new(), values, |v| int(v)
            .and_then(|n| i16::try_from(n).ok())),
        DataType::Int32 => build_with!(Int32Builder::new(), values, |v| int(v)
            .and_then(|n| i32::try_from(n).ok())),
        DataType::Int64 => build_with!(Int64Builder::new(), values, int),
        DataType::UInt8 => build_with!(UInt8Builder::new(), values, |v| uint(v)
            .and_then(|n| u8::try_from(n).ok())),
        DataType::UInt16 => build_with!(UInt16Builder::new(), values, |v| uint(v)
            .and_then(|n| u16::try_from(n).ok())),
        DataType::UInt32 => build_with!(UInt32Builder::new(), values, |v| uint(v)
            .and_then(|n| u32::try_from(n).ok())),
        DataType::UInt64 => build_with!(UInt64Builder::new(), values, uint),
        DataType::Float32 => build_with!(Float32Builder::new(), values, |v: &Value| v
            .as_f64()
            .map(|f| f as f32)),
        DataType::Float64 => build_with!(Float64Builder::new(), values, |v: &Value| v.as_f64()),
        DataType::Date32 => build_with!(Date32Builder::new(), values, |v: &Value| v
            .as_str()
            .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .map(|d| d.to_epoch_days())),
        DataType::Timestamp(unit, tz) => {
            let array: ArrayRef = match unit {
                TimeUnit::Second => build_with!(TimestampSecondBuilder::new(), values, int),
                TimeUnit::Millisecond => {
                    build_with!(TimestampMillisecondBuilder::new(), values, int)
                }
                TimeUnit::Microsecond => {
                    build_with!(TimestampMicrosecondBuilder::new(), values, int)
                }
                TimeUnit::Nanosecond => build_with!(TimestampNanosecondBuilder::new(), values, int),
            };
            match tz {
                Some(_) => arrow::compute::cast(&array, data_type).unwrap_or(array),
                None => array,
            }
        }
        DataType::List(item) if supported(data_type) => {
            let values: Vec<&Value> = values.collect();
            let flat: Vec<&Value> = values
                .iter()
                .filter_map(|v| v.as_array())
                .flatten()
                .collect();
            let items = build(item.data_type(), flat.iter().copied(), flat.len());
            let mut offsets = vec![0i32];
            let mut nulls = Vec::with_capacity(values.len());
            for v in &values {
                let n = v.as_array().map_or(0, Vec::len);
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last.saturating_add(i32::try_from(n).unwrap_or(i32::MAX)));
                nulls.push(!v.is_null());
            }
            match arrow::array::ListArray::try_new(
                item.clone(),
                arrow::buffer::OffsetBuffer::new(offsets.into()),
                items,
                Some(nulls.into()),
            ) {
                Ok(list) => Arc::new(list),
                Err(_) => new_null_array(data_type, len),
            }
        }
        _ => new_null_array(data_type, len),
    }
}

/// An Arrow schema for records of an Avro record schema (used when the source table has no
/// recorded schema): Avro's scalar and logical types, nullable unions, arrays of scalars.
pub fn arrow_schema_of_avro(schema: &AvroSchema) -> Result<SchemaRef, String> {
    let AvroSchema::Record(record) = schema else {
        return Err("the Avro schema is not a record".to_owned());
    };
    let fields = record
        .fields
        .iter()
        .map(|f| {
            let (data_type, nullable) = arrow_type(&f.schema);
            Field::new(&f.name, data_type, nullable)
        })
        .collect::<Vec<_>>();
    Ok(Arc::new(Schema::new(fields)))
}

fn arrow_type(schema: &AvroSchema) -> (DataType, bool) {
    match schema {
        AvroSchema::Null => (DataType::Null, true),
        AvroSchema::Boolean => (DataType::Boolean, false),
        AvroSchema::Int | AvroSchema::Date | AvroSchema::TimeMillis => (DataType::Int32, false),
        AvroSchema::Long
        | AvroSchema::TimestampMillis
        | AvroSchema::TimestampMicros
        | AvroSchema::TimestampNanos
        | AvroSchema::LocalTimestampMillis
        | AvroSchema::LocalTimestampMicros
        | AvroSchema::LocalTimestampNanos
        | AvroSchema::TimeMicros => (DataType::Int64, false),
        AvroSchema::Float => (DataType::Float32, false),
        AvroSchema::Double => (DataType::Float64, false),
        AvroSchema::String | AvroSchema::Enum(_) | AvroSchema::Uuid => (DataType::Utf8, false),
        AvroSchema::Array(a) => {
            let (item, _) = arrow_type(&a.items);
            (
                DataType::List(Arc::new(Field::new("item", item, true))),
                false,
            )
        }
        AvroSchema::Union(u) => {
            let variants: Vec<&AvroSchema> = u
                .variants()
                .iter()
                .filter(|v| !matches!(v, AvroSchema::Null))
                .collect();
            let nullable = variants.len() < u.variants().len();
            match variants.as_slice() {
                [one] => (arrow_type(one).0, nullable),
                _ => (DataType::Utf8, true),
            }
        }
        _ => (DataType::Utf8, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, true),
            Field::new("user_id", DataType::Utf8, true),
            Field::new("refund_amt", DataType::Int64, true),
        ]))
    }

    #[test]
    fn json_records_and_rejections() {
        let d = RecordDecoder::new(schema(), "ds", Format::Json, None, 200).unwrap();
        let row = d
            .decode(Some(
                br#"{"ts": 5, "user_id": 7, "refund_amt": 12, "extra": [1]}"#,
            ))
            .unwrap();
        assert_eq!(
            row,
            vec![
                Value::from(5),
                Value::from("7"),
                Value::from(12),
                Value::Null
            ]
        );
        assert_eq!(d.partition_day(&row), None);
        let dated = d
            .decode(Some(br#"{"ts": 5, "user_id": "7", "ds": "1970-01-03"}"#))
            .unwrap();
        assert_eq!(d.partition_day(&dated), Some(2));
        assert!(
            d.decode(Some(br#"{"ds": "yesterday"}"#))
                .unwrap_err()
                .contains("partition column")
        );
        let batch = d.batch(&[row]).unwrap();
        assert_eq!(batch.column(2).as_primitive::<Int64Type>().value(0), 12);
        for (bad, why) in [
            (&b"{nope"[..], "not JSON"),
            (b"[1,2]", "not a JSON object"),
            (br#"{"refund_amt": "ten"}"#, "column \"refund_amt\""),
            (br#"{"refund_amt": 1.5}"#, "column \"refund_amt\""),
        ] {
            let e = d.decode(Some(bad)).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        assert!(d.decode(None).unwrap_err().contains("tombstone"));
        let big = format!(r#"{{"user_id": "{}"}}"#, "x".repeat(300));
        assert!(
            d.decode(Some(big.as_bytes()))
                .unwrap_err()
                .contains("over the limit")
        );
    }

    #[test]
    fn csv_records_follow_fields() {
        let format = Format::Csv {
            fields: vec!["ts".into(), "user_id".into(), "refund_amt".into()],
        };
        let d = RecordDecoder::new(schema(), "ds", format, None, 1 << 20).unwrap();
        let row = d.decode(Some(b"1700000000000,u1,30\n")).unwrap();
        assert_eq!(row[0], Value::from(1_700_000_000_000i64));
        assert_eq!(row[1], Value::from("u1"));
        assert!(d.decode(Some(b"1,u1")).is_err());
        assert!(
            d.decode(Some(b"1,u1,x"))
                .unwrap_err()
                .contains("refund_amt")
        );
        let row = d.decode(Some(b"1,,")).unwrap();
        let batch = d.batch(&[row]).unwrap();
        assert!(batch.column(1).is_null(0));
    }

    #[test]
    fn avro_records() {
        let avro = AvroSchema::parse_str(
            r#"{"type": "record", "name": "r", "fields": [
                {"name": "ts", "type": "long"},
                {"name": "user_id", "type": ["null", "string"]},
                {"name": "refund_amt", "type": "long"}]}"#,
        )
        .unwrap();
        let arrow_schema = arrow_schema_of_avro(&avro).unwrap();
        assert_eq!(arrow_schema.field(1).data_type(), &DataType::Utf8);
        assert!(arrow_schema.field(1).is_nullable());
        let value = apache_avro::types::Value::Record(vec![
            ("ts".into(), apache_avro::types::Value::Long(9)),
            (
                "user_id".into(),
                apache_avro::types::Value::Union(1, Box::new("u".into())),
            ),
            ("refund_amt".into(), apache_avro::types::Value::Long(3)),
        ]);
        let bytes = apache_avro::to_avro_datum(&avro, value).unwrap();
        let d = RecordDecoder::new(
            schema(),
            "ds",
            Format::Avro { confluent: false },
            Some(avro),
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            d.decode(Some(&bytes)).unwrap(),
            vec![
                Value::from(9),
                Value::from("u"),
                Value::from(3),
                Value::Null
            ]
        );
        assert!(d.decode(Some(&[0xff, 0xff, 0xff])).is_err());
    }
}
