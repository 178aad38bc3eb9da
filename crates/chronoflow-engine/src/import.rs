//! Importing a CSV or Parquet file into a warehouse table, split into partitions by a column.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chronoflow_config::PartitionDate;

use crate::error::{EngineError, Result};
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
/// value of `partition_column`, replacing partitions that exist. CSV types are inferred: integers
/// as Int64, decimals as Float64, `true`/`false` as Boolean, everything else (dates included) as
/// strings; empty fields are null.
pub async fn import_file(
    warehouse: &Warehouse,
    table: &TableName,
    file: &Path,
    partition_column: &str,
) -> Result<ImportReport> {
    let name = file.display().to_string();
    let batches = read_file(file)?;
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
    let data_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != column)
            .map(|(_, f)| f.as_ref().clone())
            .collect::<Vec<Field>>(),
    ));
    let all = concat_batches(&schema, &batches).map_err(|source| EngineError::Arrow {
        context: format!("reading {name}"),
        source,
    })?;
    let by_day = rows_by_partition(&all, column, &name, partition_column)?;

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
    Ok(ImportReport {
        table: table.clone(),
        rows: all.num_rows() as u64,
        partitions,
        schema: data_schema,
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

fn read_file(file: &Path) -> Result<Vec<RecordBatch>> {
    let name = file.display().to_string();
    let bytes = std::fs::read(file).map_err(|source| EngineError::Io {
        path: name.clone(),
        source,
    })?;
    match file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("parquet") | Some("pq") => read_parquet_bytes(bytes.into(), &name),
        Some("csv") => read_csv(bytes, &name),
        _ => Err(EngineError::Input {
            file: name,
            message: "unknown file type: expected .csv or .parquet".to_owned(),
        }),
    }
}

fn read_csv(bytes: Vec<u8>, name: &str) -> Result<Vec<RecordBatch>> {
    let arrow_err = |source| EngineError::Arrow {
        context: format!("reading {name}"),
        source,
    };
    let format = arrow::csv::reader::Format::default().with_header(true);
    let (inferred, _) = format
        .infer_schema(std::io::Cursor::new(&bytes), None)
        .map_err(arrow_err)?;
    // Dates and times stay strings: Chronon's SQL treats `ds`-like columns as strings.
    let schema = Arc::new(Schema::new(
        inferred
            .fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    DataType::Int64 | DataType::Float64 | DataType::Boolean => {
                        f.data_type().clone()
                    }
                    _ => DataType::Utf8,
                };
                Field::new(f.name(), t, true)
            })
            .collect::<Vec<_>>(),
    ));
    let reader = arrow::csv::ReaderBuilder::new(schema)
        .with_format(format)
        .with_batch_size(65_536)
        .build(std::io::Cursor::new(bytes))
        .map_err(arrow_err)?;
    reader.collect::<Result<Vec<_>, _>>().map_err(arrow_err)
}
