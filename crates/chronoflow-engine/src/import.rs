//! Importing a CSV or Parquet file into a warehouse table, split into partitions by a column.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::{CastOptions, cast_with_options, concat_batches};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chronoflow_config::PartitionDate;

use crate::error::{EngineError, Result};
use crate::schema::check_unique_names;
use crate::table_name::TableName;
use crate::warehouse::{PartitionInfo, Warehouse, read_parquet_bytes};

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub table: TableName,
    pub rows: u64,
    pub partitions: Vec<PartitionInfo>,
    pub schema: SchemaRef,
}

/// Reads `file` (`.csv` with a header row, or `.parquet`) and writes one partition per distinct
/// value of `partition_column`, replacing partitions that exist. CSV values of a column the table
/// already has are read as the table's type; other CSV types are inferred: integers as Int64
/// (too large for it: Float64, as Spark does), decimals as Float64, `true`/`false` as Boolean,
/// everything else (dates included) as strings; empty fields are null.
///
/// The file's columns must fit the table's schema by the rule of `schema::evolve` (checked
/// before anything is written); names must be unique and, in a CSV header, not empty.
pub async fn import_file(
    warehouse: &Warehouse,
    table: &TableName,
    file: &Path,
    partition_column: &str,
) -> Result<ImportReport> {
    let name = file.display().to_string();
    let current = match warehouse.schema(table).await {
        Ok(schema) => schema,
        Err(EngineError::TableNotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let batches = read_file(file, current.as_deref().map(|s| (table, s)))?;
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| EngineError::Input {
            file: name.clone(),
            message: "the file has no rows".to_owned(),
        })?;
    let column = schema
        .index_of(partition_column)
        .map_err(|_| EngineError::Input {
            file: name.clone(),
            message: format!(
                "no partition column {partition_column:?}; the columns are {}",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
    if schema.fields().len() == 1 {
        return Err(EngineError::Input {
            file: name.clone(),
            message: format!(
                "the file has no column besides the partition column {partition_column:?}"
            ),
        });
    }
    let data_schema = Schema::new(
        schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != column)
            .map(|(_, f)| f.as_ref().clone())
            .collect::<Vec<Field>>(),
    );
    let all = concat_batches(&schema, &batches).map_err(|source| EngineError::Arrow {
        context: format!("reading {name}"),
        source,
    })?;
    // One copy of the file's rows at a time: at 100M rows the batches were 4 GB more.
    drop(batches);
    let by_day = rows_by_partition(&all, column, &name, partition_column)?;
    // Checked once before writing, so a file that does not fit leaves the table untouched.
    if let Some(first) = by_day.keys().next() {
        let partition = format!("{partition_column}={first}");
        crate::schema::evolve(table, &partition, current.as_deref(), &data_schema).map_err(
            |e| EngineError::Input {
                file: name.clone(),
                message: e.to_string(),
            },
        )?;
    }

    let mut partitions = Vec::new();
    for (ds, rows) in by_day {
        let batch = crate::values::take_rows(&all, &rows, Some(column)).map_err(|source| {
            EngineError::Arrow {
                context: format!("splitting {name} by {partition_column}"),
                source,
            }
        })?;
        partitions.push(
            warehouse
                .write_partition(table, partition_column, ds, &[batch])
                .await?,
        );
    }
    let schema = warehouse
        .schema(table)
        .await?
        .unwrap_or_else(|| Arc::new(data_schema));
    Ok(ImportReport {
        table: table.clone(),
        rows: all.num_rows() as u64,
        partitions,
        schema,
    })
}

/// Row indices per partition date; a null or malformed date is an error naming the row and value.
fn rows_by_partition(
    batch: &RecordBatch,
    column: usize,
    file: &str,
    column_name: &str,
) -> Result<BTreeMap<PartitionDate, Vec<u32>>> {
    let values = batch.column(column);
    let text = |row: usize| -> Option<String> {
        if values.is_null(row) {
            return None;
        }
        match values.data_type() {
            DataType::Utf8 => Some(values.as_string::<i32>().value(row).to_owned()),
            DataType::LargeUtf8 => Some(values.as_string::<i64>().value(row).to_owned()),
            DataType::Utf8View => Some(values.as_string_view().value(row).to_owned()),
            DataType::Date32 => crate::values::to_json(values.as_ref(), row)
                .as_str()
                .map(str::to_owned),
            _ => None,
        }
    };
    if !matches!(
        values.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Date32
    ) {
        return Err(EngineError::Input {
            file: file.to_owned(),
            message: format!(
                "partition column {column_name:?} has type {}; expected yyyy-MM-dd strings or dates",
                values.data_type()
            ),
        });
    }
    let mut out: BTreeMap<PartitionDate, Vec<u32>> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let raw = text(row);
        let ds = raw
            .as_deref()
            .and_then(|t| PartitionDate::parse(t).ok())
            .ok_or_else(|| EngineError::Input {
                file: file.to_owned(),
                message: format!(
                    "row {}: partition column {column_name:?} holds {}, not a yyyy-MM-dd date",
                    row + 1,
                    raw.map_or("null".to_owned(), |r| format!("{r:?}"))
                ),
            })?;
        let index = u32::try_from(row).map_err(|_| EngineError::Input {
            file: file.to_owned(),
            message: "more than 4 billion rows in one file".to_owned(),
        })?;
        out.entry(ds).or_default().push(index);
    }
    Ok(out)
}

/// The rows of `file`; CSV columns the table has (`table`) are read as its types.
fn read_file(file: &Path, table: Option<(&TableName, &Schema)>) -> Result<Vec<RecordBatch>> {
    let name = file.display().to_string();
    let bytes = std::fs::read(file).map_err(|source| EngineError::Io {
        path: name.clone(),
        source,
    })?;
    let batches = match file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("parquet") | Some("pq") => read_parquet_bytes(bytes.into(), &name)?,
        Some("csv") => read_csv(bytes, &name, table)?,
        _ => {
            return Err(EngineError::Input {
                file: name,
                message: "unknown file type: expected .csv or .parquet".to_owned(),
            });
        }
    };
    if let Some(first) = batches.first() {
        check_unique_names(&first.schema(), &name)?;
    }
    Ok(batches)
}

/// Cells Arrow's CSV reader decodes at once. It reserves room for a whole batch up front (an
/// offset and about 8 bytes of text per cell), so rows per batch shrink as columns grow: a fixed
/// 65,536 rows made a 1-row file of 4,000 columns take 8 GB.
const CSV_BATCH_CELLS: usize = 4 << 20;

/// Rows per batch of a CSV file with `columns` columns: at most 65,536, at most
/// [`CSV_BATCH_CELLS`] cells, at least one row.
fn csv_batch_rows(columns: usize) -> usize {
    (CSV_BATCH_CELLS / columns.max(1)).clamp(1, 65_536)
}

/// Reads every field as text first, then gives each column its type: the table's, or the one
/// its values show. Doing the conversion here (not in Arrow's CSV reader) lets an error name the
/// row, the column and the value, and lets an integer too large for Int64 become Float64.
fn read_csv(
    bytes: Vec<u8>,
    name: &str,
    table: Option<(&TableName, &Schema)>,
) -> Result<Vec<RecordBatch>> {
    let arrow_err = |source| EngineError::Arrow {
        context: format!("reading {name}"),
        source,
    };
    let format = arrow::csv::reader::Format::default().with_header(true);
    let (header, _) = format
        .infer_schema(std::io::Cursor::new(&bytes), Some(0))
        .map_err(arrow_err)?;
    if let Some(i) = header
        .fields()
        .iter()
        .position(|f| f.name().trim().is_empty())
    {
        return Err(EngineError::Input {
            file: name.to_owned(),
            message: format!("column {} has no name in the header row", i + 1),
        });
    }
    check_unique_names(&header, name)?;
    let text = Arc::new(Schema::new(
        header
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow::csv::ReaderBuilder::new(text.clone())
        .with_format(format)
        .with_batch_size(csv_batch_rows(text.fields().len()))
        .build(std::io::Cursor::new(bytes))
        .map_err(arrow_err)?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(arrow_err)?;

    let mut fields = Vec::with_capacity(text.fields().len());
    for (i, f) in text.fields().iter().enumerate() {
        let column = batches.iter().map(|b| b.column(i).as_string::<i32>());
        let known = table.and_then(|(_, s)| s.field_with_name(f.name()).ok());
        let data_type = match known {
            Some(field) => field.data_type().clone(),
            None => infer_type(column),
        };
        fields.push(Field::new(f.name(), data_type, true));
    }
    let schema = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    let mut first_row = 0usize;
    for batch in &batches {
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let from_table = table
                    .filter(|(_, s)| s.field_with_name(field.name()).is_ok())
                    .map(|(t, _)| t);
                convert(batch.column(i).as_string::<i32>(), field, from_table).map_err(
                    |(row, value)| EngineError::Input {
                        file: name.to_owned(),
                        message: format!(
                            "row {}, column {:?}: {value:?} is not a {}{}",
                            first_row + row + 1,
                            field.name(),
                            field.data_type(),
                            from_table.map_or(String::new(), |t| format!(
                                " (the column's type in table {t})"
                            ))
                        ),
                    },
                )
            })
            .collect::<Result<Vec<_>>>()?;
        first_row += batch.num_rows();
        out.push(RecordBatch::try_new(schema.clone(), columns).map_err(arrow_err)?);
    }
    Ok(out)
}

/// The type the text values of a column show: Int64 if all are integers that fit, Float64 if
/// all are numbers, Boolean if all are `true`/`false`, else Utf8 (also when all are null).
fn infer_type<'a>(column: impl Iterator<Item = &'a StringArray>) -> DataType {
    let (mut ints, mut floats, mut bools, mut any) = (true, true, true, false);
    for value in column.flat_map(|a| a.iter().flatten()) {
        any = true;
        ints &= value.parse::<i64>().is_ok() && is_integer_text(value);
        floats &= parse_float(value).is_some();
        bools &= value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false");
        if !ints && !floats && !bools {
            return DataType::Utf8;
        }
    }
    match (any, ints, floats, bools) {
        (false, ..) => DataType::Utf8,
        (_, true, ..) => DataType::Int64,
        (_, _, true, _) => DataType::Float64,
        (_, _, _, true) => DataType::Boolean,
        _ => DataType::Utf8,
    }
}

/// `-?[0-9]+`: what Arrow and Spark read as an integer (no `+`, no spaces).
fn is_integer_text(value: &str) -> bool {
    let digits = value.strip_prefix('-').unwrap_or(value);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A finite decimal number (`1`, `-2.5`, `.5`, `1e3`); not `inf` or `NaN`, which Rust would parse.
fn parse_float(value: &str) -> Option<f64> {
    let plain = value.bytes().any(|b| b.is_ascii_digit())
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    value.parse::<f64>().ok().filter(|f| plain && f.is_finite())
}

/// Column `text` as `field`'s type; on a value that does not convert, its row and text.
fn convert(
    text: &StringArray,
    field: &Field,
    from_table: Option<&TableName>,
) -> std::result::Result<ArrayRef, (usize, String)> {
    let bad = |row: usize| (row, text.value(row).to_owned());
    let first_bad = |ok: &dyn Fn(&str) -> bool| {
        (0..text.len())
            .find(|&row| text.is_valid(row) && !ok(text.value(row)))
            .map(bad)
    };
    Ok(match field.data_type() {
        DataType::Utf8 => Arc::new(text.clone()),
        DataType::Int64 if from_table.is_none() => {
            if let Some(e) = first_bad(&|v| v.parse::<i64>().is_ok()) {
                return Err(e);
            }
            Arc::new(
                text.iter()
                    .map(|v| v.and_then(|v| v.parse::<i64>().ok()))
                    .collect::<Int64Array>(),
            )
        }
        DataType::Float64 if from_table.is_none() => {
            if let Some(e) = first_bad(&|v| parse_float(v).is_some()) {
                return Err(e);
            }
            Arc::new(
                text.iter()
                    .map(|v| v.and_then(parse_float))
                    .collect::<Float64Array>(),
            )
        }
        DataType::Boolean if from_table.is_none() => Arc::new(
            text.iter()
                .map(|v| v.map(|v| v.eq_ignore_ascii_case("true")))
                .collect::<BooleanArray>(),
        ),
        other => {
            // The table's type: Arrow's conversion, which is strict with `safe: false`; the
            // lenient one finds the row to name.
            let strict = CastOptions {
                safe: false,
                ..Default::default()
            };
            match cast_with_options(text, other, &strict) {
                Ok(array) => array,
                Err(_) => {
                    let lenient = cast_with_options(text, other, &CastOptions::default()).ok();
                    let row = (0..text.len())
                        .find(|&row| {
                            text.is_valid(row) && lenient.as_ref().is_none_or(|a| a.is_null(row))
                        })
                        .unwrap_or(0);
                    return Err(if text.is_empty() {
                        (0, String::new())
                    } else {
                        bad(row)
                    });
                }
            }
        }
    })
}
