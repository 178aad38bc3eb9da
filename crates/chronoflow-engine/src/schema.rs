//! A table's schema and the rule by which it may change (docs/engine.md, "Schema evolution").
//!
//! The schema is recorded in the table's `_table.json` by the first write and widened by later
//! ones, before their manifest commits; readers give every partition that schema. So partitions
//! written before a column existed read it as nulls, and a scan over many partitions never sees
//! two schemas (which DataFusion refuses with "Mismatch between schema and batches").

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::table_name::TableName;

/// One column as `_table.json` stores it: the type is Arrow's text form (`Int64`, `Utf8`,
/// `List(Int64)`...), readable by people and parsed back by Arrow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

pub(crate) fn to_specs(schema: &Schema) -> Vec<ColumnSpec> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnSpec {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

pub(crate) fn from_specs(table: &TableName, specs: &[ColumnSpec]) -> Result<SchemaRef> {
    let fields = specs
        .iter()
        .map(|c| {
            let data_type: DataType = c.data_type.parse().map_err(|e| EngineError::Corrupt {
                table: table.to_string(),
                reason: format!(
                    "_table.json: column {:?} has type {:?}, which this version cannot read: {e}",
                    c.name, c.data_type
                ),
            })?;
            Ok(Field::new(&c.name, data_type, c.nullable))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// An error if two columns of `schema` share a name (DataFusion cannot address them).
pub(crate) fn check_unique_names(schema: &Schema, file: &str) -> Result<()> {
    let mut seen = HashSet::new();
    for f in schema.fields() {
        if !seen.insert(f.name().as_str()) {
            return Err(EngineError::DuplicateColumn {
                file: file.to_owned(),
                column: f.name().clone(),
            });
        }
    }
    Ok(())
}

/// Whether values of type `from` convert to `to` without loss, so that a partition holding
/// `from` can be read (or written) as a column of type `to`.
pub fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from.equals_datatype(to) || *from == Null {
        return true;
    }
    let int_bits = |t: &DataType| match t {
        Int8 => Some((true, 8)),
        Int16 => Some((true, 16)),
        Int32 => Some((true, 32)),
        Int64 => Some((true, 64)),
        UInt8 => Some((false, 8)),
        UInt16 => Some((false, 16)),
        UInt32 => Some((false, 32)),
        UInt64 => Some((false, 64)),
        _ => None,
    };
    match (from, to) {
        (Float16, Float32 | Float64) | (Float32, Float64) => true,
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => true,
        (Binary | LargeBinary | BinaryView, Binary | LargeBinary | BinaryView) => true,
        // Every integer of up to 32 bits is exact in a double.
        (_, Float64) => int_bits(from).is_some_and(|(_, bits)| bits <= 32),
        _ => match (int_bits(from), int_bits(to)) {
            (Some((from_signed, a)), Some((to_signed, b))) => {
                (from_signed == to_signed && a < b) || (!from_signed && to_signed && a < b)
            }
            _ => false,
        },
    }
}

/// The table's schema once a partition whose rows have schema `incoming` is written to it:
/// the table's columns in their order (a new partition may hold them in any order), widened to
/// nullable where the new rows are, then the new columns (nullable: older partitions have no
/// value for them). An error names the table, the partition and the column when the rows
/// change a column's type or lack a column the table declares not nullable.
pub(crate) fn evolve(
    table: &TableName,
    partition: &str,
    current: Option<&Schema>,
    incoming: &Schema,
) -> Result<Schema> {
    check_unique_names(incoming, &format!("{table}, partition {partition}"))?;
    let Some(current) = current else {
        return Ok(incoming.clone());
    };
    let mismatch = |column: &str, reason: String| EngineError::SchemaMismatch {
        table: table.to_string(),
        partition: partition.to_owned(),
        column: column.to_owned(),
        reason,
    };
    let mut fields = Vec::with_capacity(current.fields().len());
    for field in current.fields() {
        let evolved = match incoming.field_with_name(field.name()) {
            Ok(new) if *field.data_type() == DataType::Null => {
                // A column that was only ever null takes its first real type.
                Field::new(field.name(), new.data_type().clone(), true)
            }
            Ok(new) if widens(new.data_type(), field.data_type()) => {
                field.as_ref().clone().with_nullable(
                    field.is_nullable() || new.is_nullable() || *new.data_type() == DataType::Null,
                )
            }
            Ok(new) => {
                return Err(mismatch(
                    field.name(),
                    format!(
                        "is {} in this write but {} in the table; a column cannot change type \
                         (write to a new table instead, e.g. a new version of the config)",
                        new.data_type(),
                        field.data_type()
                    ),
                ));
            }
            Err(_) if field.is_nullable() => field.as_ref().clone(),
            Err(_) => {
                return Err(mismatch(
                    field.name(),
                    format!(
                        "({}, not nullable in the table) is missing from this write",
                        field.data_type()
                    ),
                ));
            }
        };
        fields.push(evolved);
    }
    for new in incoming.fields() {
        if current.field_with_name(new.name()).is_err() {
            fields.push(new.as_ref().clone().with_nullable(true));
        }
    }
    Ok(Schema::new(fields))
}

/// The columns of both (`a`'s first), `b`'s type winning a conflict: for tables written before
/// schemas were recorded, whose partitions may disagree (readers name those that do not fit).
pub(crate) fn union_latest(a: &Schema, b: &Schema) -> Schema {
    let mut fields: Vec<Field> = a
        .fields()
        .iter()
        .map(|f| match b.field_with_name(f.name()) {
            Ok(newer) => newer
                .clone()
                .with_nullable(f.is_nullable() || newer.is_nullable()),
            Err(_) => f.as_ref().clone().with_nullable(true),
        })
        .collect();
    for f in b.fields() {
        if a.field_with_name(f.name()).is_err() {
            fields.push(f.as_ref().clone().with_nullable(true));
        }
    }
    Schema::new(fields)
}

/// `batch` with exactly the columns of `schema`, matched by name: in its order, converted where
/// the type widens, null where the batch lacks one. An error (naming table, partition and
/// column) when a column has a type that does not widen, or is not in `schema` at all.
pub(crate) fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
    table: &TableName,
    partition: &str,
) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let mismatch = |column: &str, reason: String| EngineError::SchemaMismatch {
        table: table.to_string(),
        partition: partition.to_owned(),
        column: column.to_owned(),
        reason,
    };
    let found = batch.schema();
    if let Some(extra) = found
        .fields()
        .iter()
        .find(|f| schema.field_with_name(f.name()).is_err())
    {
        return Err(mismatch(
            extra.name(),
            "is not in the table's schema (was it written while another writer changed the \
             schema? rewrite the partition)"
                .to_owned(),
        ));
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match found.index_of(field.name()) {
            Ok(i) => {
                let column = batch.column(i);
                if column.data_type().equals_datatype(field.data_type()) {
                    Ok(column.clone())
                } else if widens(column.data_type(), field.data_type()) {
                    arrow::compute::cast(column, field.data_type()).map_err(|e| {
                        mismatch(
                            field.name(),
                            format!(
                                "cannot be read as {} from {}: {e}",
                                field.data_type(),
                                column.data_type()
                            ),
                        )
                    })
                } else {
                    Err(mismatch(
                        field.name(),
                        format!(
                            "is {} in this partition's files but {} in the table",
                            column.data_type(),
                            field.data_type()
                        ),
                    ))
                }
            }
            Err(_) => {
                Ok::<ArrayRef, EngineError>(new_null_array(field.data_type(), batch.num_rows()))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some((field, _)) = schema
        .fields()
        .iter()
        .zip(&columns)
        .find(|(f, c)| !f.is_nullable() && c.logical_null_count() > 0)
    {
        return Err(mismatch(
            field.name(),
            "has nulls but is not nullable in the table".to_owned(),
        ));
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|source| {
        EngineError::Arrow {
            context: format!("table {table}, partition {partition}"),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Fields, TimeUnit};

    #[test]
    fn every_type_the_engine_writes_survives_the_text_form() {
        let item = Arc::new(Field::new("item", DataType::Int64, true));
        let types = [
            DataType::Null,
            DataType::Boolean,
            DataType::Int32,
            DataType::Int64,
            DataType::Float64,
            DataType::Utf8,
            DataType::LargeUtf8,
            DataType::Binary,
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Millisecond, None),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::List(item.clone()),
            DataType::LargeList(item.clone()),
            DataType::Struct(Fields::from(vec![
                Field::new("a", DataType::Utf8, false),
                Field::new("b", DataType::List(item), true),
            ])),
            DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", DataType::Float64, true),
                    ])),
                    false,
                )),
                false,
            ),
            DataType::Decimal128(20, 3),
        ];
        let schema = Schema::new(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| Field::new(format!("c{i}"), t.clone(), i % 2 == 0))
                .collect::<Vec<_>>(),
        );
        let table = TableName::parse("a.b").unwrap();
        let back = from_specs(&table, &to_specs(&schema)).unwrap();
        assert_eq!(back.as_ref(), &schema);
    }

    #[test]
    fn widening_is_lossless_only() {
        use DataType::*;
        for (from, to) in [
            (Int32, Int64),
            (UInt32, Int64),
            (Int8, Float64),
            (Float32, Float64),
            (Null, Utf8),
            (LargeUtf8, Utf8),
        ] {
            assert!(widens(&from, &to), "{from} -> {to}");
        }
        for (from, to) in [
            (Int64, Int32),
            (Int64, Float64),
            (Int32, UInt64),
            (Float64, Int64),
            (Utf8, Int64),
            (Int64, Utf8),
            (Utf8, Null),
        ] {
            assert!(!widens(&from, &to), "{from} -> {to}");
        }
    }
}
