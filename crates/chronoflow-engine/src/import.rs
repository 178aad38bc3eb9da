//! Importing a CSV or Parquet file into a warehouse table, split into partitions by a column.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chronoflow_config::PartitionDate;

use crate::error::{EngineError, Result};
use crate::schema::check_unique_names;
use crate::shard::{BatchStore, MemoryLimit, SpillDir};
use crate::table_name::TableName;
use crate::warehouse::{PartitionInfo, Warehouse, catch_decoder_panic};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

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
/// Holds about the machine's default [`MemoryLimit`] ([`import_file_within`]).
pub async fn import_file(
    warehouse: &Warehouse,
    table: &TableName,
    file: &Path,
    partition_column: &str,
) -> Result<ImportReport> {
    import_file_within(
        warehouse,
        table,
        file,
        partition_column,
        MemoryLimit::default_for_machine(),
    )
    .await
}

/// [`import_file`], holding about `limit`: the file is read a batch at a time, each batch's rows
/// go to their day, and once the days' rows pass half the limit they are spilled to the temp
/// directory. Nothing is written before the whole file has been read and checked.
pub async fn import_file_within(
    warehouse: &Warehouse,
    table: &TableName,
    file: &Path,
    partition_column: &str,
    limit: MemoryLimit,
) -> Result<ImportReport> {
    let name = file.display().to_string();
    let current = match warehouse.schema(table).await {
        Ok(schema) => schema,
        Err(EngineError::TableNotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut rows_of_file = FileRows::open(file, current.as_deref().map(|s| (table, s)))?;
    let schema = rows_of_file.schema();
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
    let data_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != column)
            .map(|(_, f)| f.as_ref().clone())
            .collect::<Vec<Field>>(),
    ));
    let mut days = DayRows::new(limit, data_schema.clone())?;
    let mut rows = 0u64;
    while let Some(batch) = rows_of_file.next_batch()? {
        let by_day = rows_by_partition(&batch, column, &name, partition_column, rows)?;
        for (ds, indices) in by_day {
            let taken =
                crate::values::take_rows(&batch, &indices, Some(column)).map_err(|source| {
                    EngineError::Arrow {
                        context: format!("splitting {name} by {partition_column}"),
                        source,
                    }
                })?;
            days.push(ds, taken)?;
        }
        rows += batch.num_rows() as u64;
    }
    if rows == 0 {
        return Err(EngineError::Input {
            file: name,
            message: "the file has no rows".to_owned(),
        });
    }
    // Checked once before writing, so a file that does not fit leaves the table untouched.
    if let Some(first) = days.first_day() {
        let partition = format!("{partition_column}={first}");
        crate::schema::evolve(table, &partition, current.as_deref(), &data_schema).map_err(
            |e| EngineError::Input {
                file: name.clone(),
                message: e.to_string(),
            },
        )?;
    }

    let mut partitions = Vec::new();
    let (_spill, days) = days.into_days();
    for (ds, store) in days {
        let mut writer = warehouse.partition_writer(table, partition_column, ds);
        for batch in store.into_batches()? {
            writer.write(batch?).await?;
        }
        partitions.push(writer.commit().await?);
    }
    let schema = warehouse.schema(table).await?.unwrap_or(data_schema);
    Ok(ImportReport {
        table: table.clone(),
        rows,
        partitions,
        schema,
    })
}

/// An import's rows by partition day: in memory until they pass half the limit, then spilled
/// (every day's rows so far, and all that follow).
struct DayRows {
    budget: usize,
    held: usize,
    schema: SchemaRef,
    spill: Option<SpillDir>,
    days: BTreeMap<PartitionDate, BatchStore>,
}

impl DayRows {
    fn new(limit: MemoryLimit, schema: SchemaRef) -> Result<DayRows> {
        Ok(DayRows {
            budget: usize::try_from(limit.bytes / 2).unwrap_or(usize::MAX),
            held: 0,
            schema,
            spill: None,
            days: BTreeMap::new(),
        })
    }

    fn push(&mut self, ds: PartitionDate, batch: RecordBatch) -> Result<()> {
        if self.spill.is_none() {
            self.held += batch.get_array_memory_size();
            if self.held > self.budget {
                self.spill_all()?;
            }
        }
        let store = match self.days.entry(ds) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(match &mut self.spill {
                None => BatchStore::memory(),
                Some(spill) => BatchStore::disk(spill, "import", self.schema.clone())?,
            }),
        };
        store.push(batch)
    }

    /// Moves every day's rows to a spill file; later rows go to files too.
    fn spill_all(&mut self) -> Result<()> {
        let spill = self.spill.insert(SpillDir::new()?);
        for store in self.days.values_mut() {
            let mut disk = BatchStore::disk(spill, "import", self.schema.clone())?;
            for batch in store.take_all()? {
                disk.push(batch)?;
            }
            *store = disk;
        }
        self.held = 0;
        Ok(())
    }

    fn first_day(&self) -> Option<PartitionDate> {
        self.days.keys().next().copied()
    }

    /// The days in order with their rows, and the spill directory their files are in (which
    /// must outlive reading them).
    fn into_days(self) -> (Option<SpillDir>, BTreeMap<PartitionDate, BatchStore>) {
        (self.spill, self.days)
    }
}

/// Row indices per partition date; a null or malformed date is an error naming the row and value.
fn rows_by_partition(
    batch: &RecordBatch,
    column: usize,
    file: &str,
    column_name: &str,
    rows_before: u64,
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
                    rows_before + row as u64 + 1,
                    raw.map_or("null".to_owned(), |r| format!("{r:?}"))
                ),
            })?;
        let index = u32::try_from(row).map_err(|_| EngineError::Input {
            file: file.to_owned(),
            message: "more than 4 billion rows in one batch".to_owned(),
        })?;
        out.entry(ds).or_default().push(index);
    }
    Ok(out)
}

/// The rows of a file being imported, a batch at a time; CSV columns the table has are read as
/// its types.
enum FileRows {
    Parquet {
        name: String,
        schema: SchemaRef,
        reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    },
    Csv(Box<CsvRows>),
}

impl FileRows {
    fn open(file: &Path, table: Option<(&TableName, &Schema)>) -> Result<FileRows> {
        let name = file.display().to_string();
        let open = || {
            std::fs::File::open(file).map_err(|source| EngineError::Io {
                path: name.clone(),
                source,
            })
        };
        let rows = match file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("parquet") | Some("pq") => {
                let file = open()?;
                let perr = |source| EngineError::Parquet {
                    path: name.clone(),
                    source,
                };
                let reader = catch_decoder_panic(&name, || {
                    ParquetRecordBatchReaderBuilder::try_new(file)
                        .and_then(|b| b.with_batch_size(PARQUET_BATCH_ROWS).build())
                        .map_err(perr)
                })?;
                FileRows::Parquet {
                    schema: arrow::array::RecordBatchReader::schema(&reader),
                    name,
                    reader,
                }
            }
            Some("csv") => FileRows::Csv(Box::new(CsvRows::open(file, &name, table)?)),
            _ => {
                return Err(EngineError::Input {
                    file: name,
                    message: "unknown file type: expected .csv or .parquet".to_owned(),
                });
            }
        };
        check_unique_names(&rows.schema(), &file.display().to_string())?;
        Ok(rows)
    }

    fn schema(&self) -> SchemaRef {
        match self {
            FileRows::Parquet { schema, .. } => schema.clone(),
            FileRows::Csv(csv) => csv.schema.clone(),
        }
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            FileRows::Parquet { name, reader, .. } => {
                let next = catch_decoder_panic(name, || Ok(reader.next()))?;
                next.transpose().map_err(|source| EngineError::Arrow {
                    context: format!("reading {name}"),
                    source,
                })
            }
            FileRows::Csv(csv) => csv.next_batch(),
        }
    }
}

/// Rows per batch read from a Parquet file being imported.
const PARQUET_BATCH_ROWS: usize = 64 << 10;

/// Cells Arrow's CSV reader decodes at once. It reserves room for a whole batch up front (an
/// offset and about 8 bytes of text per cell), so rows per batch shrink as columns grow: a fixed
/// 65,536 rows made a 1-row file of 4,000 columns take 8 GB.
const CSV_BATCH_CELLS: usize = 4 << 20;

/// Rows per batch of a CSV file with `columns` columns: at most 65,536, at most
/// [`CSV_BATCH_CELLS`] cells, at least one row.
fn csv_batch_rows(columns: usize) -> usize {
    (CSV_BATCH_CELLS / columns.max(1)).clamp(1, 65_536)
}

/// A CSV file's rows: every field read as text first, then each column given its type (the
/// table's, or the one its values show, found by a first pass over the file). Doing the
/// conversion here (not in Arrow's CSV reader) lets an error name the row, the column and the
/// value, and lets an integer too large for Int64 become Float64.
struct CsvRows {
    name: String,
    schema: SchemaRef,
    /// Per column, the table it takes its type from (`None`: inferred).
    from_table: Vec<Option<TableName>>,
    text: arrow::csv::reader::BufReader<std::io::BufReader<std::fs::File>>,
    rows_before: usize,
}

impl CsvRows {
    fn open(file: &Path, name: &str, table: Option<(&TableName, &Schema)>) -> Result<CsvRows> {
        let arrow_err = |source| EngineError::Arrow {
            context: format!("reading {name}"),
            source,
        };
        let open = || {
            std::fs::File::open(file).map_err(|source| EngineError::Io {
                path: name.to_owned(),
                source,
            })
        };
        let format = arrow::csv::reader::Format::default().with_header(true);
        let (header, _) = format.infer_schema(open()?, Some(0)).map_err(arrow_err)?;
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
        let text_schema = Arc::new(Schema::new(
            header
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let text_reader = || -> Result<_> {
            arrow::csv::ReaderBuilder::new(text_schema.clone())
                .with_format(format.clone())
                .with_batch_size(csv_batch_rows(text_schema.fields().len()))
                .build_buffered(std::io::BufReader::new(open()?))
                .map_err(arrow_err)
        };
        let known: Vec<Option<&Field>> = text_schema
            .fields()
            .iter()
            .map(|f| table.and_then(|(_, s)| s.field_with_name(f.name()).ok()))
            .collect();
        // The first pass, for the columns whose type the values decide.
        let mut guesses = vec![TypeGuess::default(); known.len()];
        if known.iter().any(Option::is_none) {
            for batch in text_reader()? {
                let batch = batch.map_err(arrow_err)?;
                for (i, guess) in guesses.iter_mut().enumerate() {
                    if known[i].is_none() {
                        guess.see(batch.column(i).as_string::<i32>());
                    }
                }
            }
        }
        let fields: Vec<Field> = text_schema
            .fields()
            .iter()
            .zip(&known)
            .zip(&guesses)
            .map(|((f, known), guess)| {
                let data_type = match known {
                    Some(field) => field.data_type().clone(),
                    None => guess.data_type(),
                };
                Field::new(f.name(), data_type, true)
            })
            .collect();
        Ok(CsvRows {
            name: name.to_owned(),
            schema: Arc::new(Schema::new(fields)),
            from_table: known
                .iter()
                .map(|k| k.and(table.map(|(t, _)| t.clone())))
                .collect(),
            text: text_reader()?,
            rows_before: 0,
        })
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let name = self.name.as_str();
        let arrow_err = |source| EngineError::Arrow {
            context: format!("reading {name}"),
            source,
        };
        let Some(batch) = self.text.next().transpose().map_err(arrow_err)? else {
            return Ok(None);
        };
        let columns = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let from_table = self.from_table[i].as_ref();
                convert(batch.column(i).as_string::<i32>(), field, from_table).map_err(
                    |(row, value)| EngineError::Input {
                        file: name.to_owned(),
                        message: format!(
                            "row {}, column {:?}: {value:?} is not a {}{}",
                            self.rows_before + row + 1,
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
        self.rows_before += batch.num_rows();
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Some)
            .map_err(arrow_err)
    }
}

/// What the text values of a column seen so far show.
#[derive(Clone)]
struct TypeGuess {
    ints: bool,
    floats: bool,
    bools: bool,
    any: bool,
}

impl Default for TypeGuess {
    fn default() -> Self {
        TypeGuess {
            ints: true,
            floats: true,
            bools: true,
            any: false,
        }
    }
}

impl TypeGuess {
    fn see(&mut self, column: &StringArray) {
        if !(self.ints || self.floats || self.bools) {
            return;
        }
        for value in column.iter().flatten() {
            self.any = true;
            self.ints &= value.parse::<i64>().is_ok() && is_integer_text(value);
            self.floats &= parse_float(value).is_some();
            self.bools &= value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false");
            if !self.ints && !self.floats && !self.bools {
                return;
            }
        }
    }

    /// Int64 if all are integers that fit, Float64 if all are numbers, Boolean if all are
    /// `true`/`false`, else Utf8 (also when all are null).
    fn data_type(&self) -> DataType {
        match (self.any, self.ints, self.floats, self.bools) {
            (false, ..) => DataType::Utf8,
            (_, true, ..) => DataType::Int64,
            (_, _, true, _) => DataType::Float64,
            (_, _, _, true) => DataType::Boolean,
            _ => DataType::Utf8,
        }
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
