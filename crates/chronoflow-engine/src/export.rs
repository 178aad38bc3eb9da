//! Exporting a warehouse table (one partition or all) as CSV, JSON lines or Parquet, with the
//! partition column as the last column.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{Schema, SchemaRef};
use chronoflow_config::PartitionDate;
use parquet::arrow::ArrowWriter;

use crate::error::{EngineError, Result};
use crate::table_name::TableName;
use crate::values::{to_csv_field, to_json};
use crate::warehouse::Warehouse;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A header row, then one line per row; nested values as JSON; nulls as empty fields.
    Csv,
    /// One JSON object per line, keys in column order.
    Json,
    /// One Parquet file.
    Parquet,
}

/// Writes partition `ds` of `table` (every partition when `None`, in date order) to `out`;
/// returns the number of rows written.
pub async fn export_table<W: Write + Send>(
    warehouse: &Warehouse,
    table: &TableName,
    ds: Option<PartitionDate>,
    format: ExportFormat,
    out: W,
) -> Result<u64> {
    let meta = warehouse.require_table(table).await?;
    let dates = match ds {
        Some(d) => vec![d],
        None => warehouse.partitions(table).await?,
    };
    let mut sink = Sink::new(format, out, table);
    let mut schema_of: Option<(SchemaRef, PartitionDate)> = None;
    for d in dates {
        let batches = warehouse.read_partition(table, d).await?;
        for batch in batches {
            let batch = with_partition_column(&batch, &meta.partition_column, d, table)?;
            match &schema_of {
                Some((s, first)) if s.fields() != batch.schema().fields() => {
                    return Err(EngineError::Corrupt {
                        table: table.to_string(),
                        reason: format!(
                            "partition {d} has a different schema from partition {first}; export one partition at a time"
                        ),
                    });
                }
                Some(_) => {}
                None => schema_of = Some((batch.schema(), d)),
            }
            sink.write(&batch)?;
        }
    }
    sink.finish(schema_of.map(|(s, _)| s))
}

fn with_partition_column(
    batch: &RecordBatch,
    column: &str,
    ds: PartitionDate,
    table: &TableName,
) -> Result<RecordBatch> {
    crate::values::with_constant_column(batch, column, &ds.to_string()).map_err(|source| {
        EngineError::Arrow {
            context: format!("exporting {table}"),
            source,
        }
    })
}

// One sink per export; its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Sink<W: Write + Send> {
    Text {
        out: W,
        format: ExportFormat,
        header_written: bool,
        rows: u64,
        table: String,
    },
    Parquet {
        out: Option<W>,
        writer: Option<ArrowWriter<W>>,
        rows: u64,
        table: String,
    },
}

impl<W: Write + Send> Sink<W> {
    fn new(format: ExportFormat, out: W, table: &TableName) -> Self {
        match format {
            ExportFormat::Parquet => Sink::Parquet {
                out: Some(out),
                writer: None,
                rows: 0,
                table: table.to_string(),
            },
            _ => Sink::Text {
                out,
                format,
                header_written: false,
                rows: 0,
                table: table.to_string(),
            },
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Sink::Text {
                out,
                format,
                header_written,
                rows,
                table,
            } => {
                let io = |source| EngineError::Io {
                    path: format!("export of {table}"),
                    source,
                };
                let mut text = String::new();
                let schema = batch.schema();
                if *format == ExportFormat::Csv && !*header_written {
                    let names: Vec<String> = schema
                        .fields()
                        .iter()
                        .map(|f| {
                            let a = StringArray::from(vec![f.name().as_str()]);
                            to_csv_field(&a, 0)
                        })
                        .collect();
                    text.push_str(&names.join(","));
                    text.push('\n');
                    *header_written = true;
                }
                for row in 0..batch.num_rows() {
                    match format {
                        ExportFormat::Csv => {
                            let fields: Vec<String> = batch
                                .columns()
                                .iter()
                                .map(|c| to_csv_field(c.as_ref(), row))
                                .collect();
                            text.push_str(&fields.join(","));
                        }
                        _ => {
                            let object: serde_json::Map<String, serde_json::Value> = schema
                                .fields()
                                .iter()
                                .zip(batch.columns())
                                .map(|(f, c)| (f.name().clone(), to_json(c.as_ref(), row)))
                                .collect();
                            text.push_str(&serde_json::Value::Object(object).to_string());
                        }
                    }
                    text.push('\n');
                }
                *rows += batch.num_rows() as u64;
                out.write_all(text.as_bytes()).map_err(io)
            }
            Sink::Parquet {
                out,
                writer,
                rows,
                table,
            } => {
                let perr = |source| EngineError::Parquet {
                    path: format!("export of {table}"),
                    source,
                };
                if writer.is_none() {
                    let target = out.take().expect("writer is created once");
                    *writer =
                        Some(ArrowWriter::try_new(target, batch.schema(), None).map_err(perr)?);
                }
                writer
                    .as_mut()
                    .expect("just created")
                    .write(batch)
                    .map_err(perr)?;
                *rows += batch.num_rows() as u64;
                Ok(())
            }
        }
    }

    fn finish(self, schema: Option<SchemaRef>) -> Result<u64> {
        match self {
            Sink::Text {
                mut out,
                rows,
                table,
                ..
            } => {
                out.flush().map_err(|source| EngineError::Io {
                    path: format!("export of {table}"),
                    source,
                })?;
                Ok(rows)
            }
            Sink::Parquet {
                out,
                writer,
                rows,
                table,
            } => {
                let perr = |source| EngineError::Parquet {
                    path: format!("export of {table}"),
                    source,
                };
                let writer = match (writer, out) {
                    (Some(w), _) => w,
                    // No rows at all: still a valid Parquet file.
                    (None, Some(o)) => ArrowWriter::try_new(
                        o,
                        schema.unwrap_or_else(|| Arc::new(Schema::empty())),
                        None,
                    )
                    .map_err(perr)?,
                    (None, None) => return Ok(rows),
                };
                writer.close().map_err(perr)?;
                Ok(rows)
            }
        }
    }
}
