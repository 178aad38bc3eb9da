//! Loading a Chronon source's rows: the partitions a computation needs, its `selects`,
//! `wheres` and `timeColumn` evaluated as SQL by DataFusion.
//!
//! The result has the selected columns, then `__ts` (epoch millis, for event sources with a time
//! column or the end of the row's day without one) and `__ds` (the row's partition).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chronoflow_config::{PartitionDate, Query};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;

use crate::error::{EngineError, Result};
use crate::table_name::TableName;
use crate::warehouse::Warehouse;

pub const TS: &str = "__ts";
pub const DS: &str = "__ds";

/// The partition dates of a `__ds`-style text column. Rows come grouped by partition, so a text
/// is parsed once per run of equal texts.
#[derive(Default)]
pub(crate) struct PartitionTexts<'a> {
    last: Option<(&'a str, PartitionDate)>,
}

impl<'a> PartitionTexts<'a> {
    /// The date `text` names; an error names `config`, whose rows these are.
    pub(crate) fn date(&mut self, text: &'a str, config: &str) -> Result<PartitionDate> {
        if let Some((t, d)) = self.last
            && t == text
        {
            return Ok(d);
        }
        let d = PartitionDate::parse(text).map_err(|e| EngineError::Input {
            file: config.to_owned(),
            message: e.to_string(),
        })?;
        self.last = Some((text, d));
        Ok(d)
    }
}
/// An input column a query passes through untouched when present (streaming: the position of
/// each record in its micro-batch, so every output row names the record it came from).
pub const ORIGIN: &str = "__origin";

/// A DataFusion session configured for Chronon's Spark SQL: identifiers keep their case.
pub fn session() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(2)
        .set_bool("datafusion.sql_parser.enable_ident_normalization", false);
    let ctx = SessionContext::new_with_config(config);
    crate::udf::register(&ctx);
    ctx
}

/// Which partitions to read: `start: None` reads from the first one.
#[derive(Debug, Clone, Copy)]
pub struct PartitionBounds {
    pub start: Option<PartitionDate>,
    pub end: PartitionDate,
}

/// How the time column is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMode {
    /// `timeColumn` as written, or the last millisecond of the row's day if there is none.
    EventTime,
    /// `timeColumn` if there is one, else null.
    Optional,
}

/// Loads the rows of `table` in `bounds` (clamped to the query's start and end partitions),
/// evaluating `query`. `config` names the config in errors.
pub async fn load(
    warehouse: &Warehouse,
    table: &TableName,
    query: &Query,
    bounds: PartitionBounds,
    time: TimeMode,
    config: &str,
) -> Result<RecordBatch> {
    let read = Reading::plan(warehouse, table, query, bounds).await?;
    let mut batches = Vec::new();
    for d in &read.dates {
        for b in warehouse.read_partition(table, *d).await? {
            batches.push(with_partition(&b, &read.partition_column, *d, table)?);
        }
    }
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => read.empty_schema(warehouse, table).await?,
    };
    let plan = if !batches.is_empty() && batches.iter().all(|b| b.schema() == schema) {
        Renames::of(&schema, query, time, &read.partition_column).await
    } else {
        None
    };
    evaluate_with(
        plan.as_ref(),
        schema,
        batches,
        query,
        time,
        &read,
        config,
        table,
    )
    .await
}

/// `batches` through `query`: by `renames` when the query only renames their columns, else by
/// DataFusion ([`evaluate`]).
#[allow(clippy::too_many_arguments)]
async fn evaluate_with(
    renames: Option<&Renames>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    query: &Query,
    time: TimeMode,
    read: &Reading,
    config: &str,
    table: &TableName,
) -> Result<RecordBatch> {
    match renames {
        Some(plan) => plan.apply(&batches).map_err(|source| EngineError::Arrow {
            context: format!("{config}: reading {table}"),
            source,
        }),
        None => {
            evaluate(
                schema,
                batches,
                query,
                time,
                &read.partition_column,
                config,
                table,
            )
            .await
        }
    }
}

/// Like [`load`], but one partition at a time: `each` gets every partition's evaluated rows (and
/// at least one batch, empty when there are no partitions, so it always learns the schema).
/// Only one partition is held at once. Returns the number of rows read.
pub async fn load_each(
    warehouse: &Warehouse,
    table: &TableName,
    query: &Query,
    bounds: PartitionBounds,
    time: TimeMode,
    config: &str,
    each: &mut (dyn FnMut(RecordBatch) -> Result<()> + Send),
) -> Result<u64> {
    let read = Reading::plan(warehouse, table, query, bounds).await?;
    let mut rows = 0;
    // Whether the query only picks and renames columns of partitions with this schema.
    let mut renames: Option<(SchemaRef, Option<Renames>)> = None;
    // The next partitions are read (their files decoded on the other cores) while one is
    // evaluated: the decoding is most of the reading's work.
    let decoders = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut partitions = futures::stream::iter(read.dates.iter().copied())
        .map(|d| async move { (d, warehouse.read_partition(table, d).await) })
        .buffered(decoders + 1);
    while let Some((d, batches)) = partitions.next().await {
        let batches = batches?
            .iter()
            .map(|b| with_partition(b, &read.partition_column, d, table))
            .collect::<Result<Vec<_>>>()?;
        let Some(schema) = batches.first().map(RecordBatch::schema) else {
            continue;
        };
        let known = renames.as_ref().filter(|(s, _)| *s == schema);
        let plan = match known {
            Some((_, plan)) => plan.clone(),
            None => {
                let plan = Renames::of(&schema, query, time, &read.partition_column).await;
                renames = Some((schema.clone(), plan.clone()));
                plan
            }
        };
        let evaluated = evaluate_with(
            plan.as_ref(),
            schema,
            batches,
            query,
            time,
            &read,
            config,
            table,
        )
        .await?;
        rows += evaluated.num_rows() as u64;
        each(evaluated)?;
    }
    if rows == 0 {
        let schema = read.empty_schema(warehouse, table).await?;
        each(
            evaluate(
                schema,
                Vec::new(),
                query,
                time,
                &read.partition_column,
                config,
                table,
            )
            .await?,
        )?;
    }
    Ok(rows)
}

/// The rows (from the partitions' manifests) that [`load`] would read, without reading them.
pub async fn count_rows(
    warehouse: &Warehouse,
    table: &TableName,
    query: &Query,
    bounds: PartitionBounds,
) -> Result<u64> {
    let read = Reading::plan(warehouse, table, query, bounds).await?;
    let mut rows = 0;
    for d in &read.dates {
        rows += warehouse.partition_info(table, *d).await?.rows;
    }
    Ok(rows)
}

/// Which partitions of a table a query reads, and under which column name.
struct Reading {
    dates: Vec<PartitionDate>,
    partition_column: String,
}

impl Reading {
    async fn plan(
        warehouse: &Warehouse,
        table: &TableName,
        query: &Query,
        bounds: PartitionBounds,
    ) -> Result<Reading> {
        let meta = warehouse.require_table(table).await?;
        let start = match (bounds.start, query.start_partition) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let end = query
            .end_partition
            .map_or(bounds.end, |e| e.min(bounds.end));
        let dates: Vec<PartitionDate> = warehouse
            .partitions(table)
            .await?
            .into_iter()
            .filter(|d| start.is_none_or(|s| *d >= s) && *d <= end)
            .collect();
        let partition_column = query
            .partition_column
            .clone()
            .unwrap_or(meta.partition_column.clone());
        Ok(Reading {
            dates,
            partition_column,
        })
    }

    /// The raw schema (with the partition column) when no partition is read.
    async fn empty_schema(&self, warehouse: &Warehouse, table: &TableName) -> Result<SchemaRef> {
        let base = warehouse
            .schema(table)
            .await?
            .ok_or_else(|| EngineError::Corrupt {
                table: table.to_string(),
                reason: "the table has no partitions, so its schema is unknown".to_owned(),
            })?;
        let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(&self.partition_column, DataType::Utf8, false));
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// Evaluates `query` over raw rows of `table` (its columns plus `partition_column`): the step
/// shared by tables read from the warehouse and events arriving from a stream.
pub async fn evaluate(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    query: &Query,
    time: TimeMode,
    partition_column: &str,
    config: &str,
    table: &TableName,
) -> Result<RecordBatch> {
    let ctx = session();
    let mem = MemTable::try_new(schema.clone(), vec![batches])
        .map_err(|e| df_error(config, table, "registering", e))?;
    ctx.register_table("__src", Arc::new(mem))
        .map_err(|e| df_error(config, table, "registering", e))?;
    let sql = query_sql(&ctx, &schema, query, time, partition_column).await;
    match run(&ctx, &sql).await {
        Ok(b) => Ok(b),
        Err(e) => Err(explain_failure(&ctx, query, config, table, e).await),
    }
}

/// The SQL [`evaluate`] runs over `__src` (registered in `ctx`, with `schema`).
async fn query_sql(
    ctx: &SessionContext,
    schema: &SchemaRef,
    query: &Query,
    time: TimeMode,
    partition_column: &str,
) -> String {
    let carries_origin = schema.field_with_name(ORIGIN).is_ok();
    let mut columns: Vec<String> = match &query.selects {
        Some(selects) => selects
            .iter()
            .map(|(name, expr)| format!("{expr} AS {}", quote(name)))
            .collect(),
        None => vec!["*".to_owned()],
    };
    let ts_expr = match (&query.time_column, time) {
        (Some(t), _) if is_timestamp(ctx, t).await => {
            format!("CAST(to_timestamp_millis({t}) AS BIGINT)")
        }
        (Some(t), _) => format!("CAST({t} AS BIGINT)"),
        (None, TimeMode::EventTime) => format!(
            "CAST((EXTRACT(EPOCH FROM CAST({} AS DATE)) + 86400) * 1000 - 1 AS BIGINT)",
            quote(partition_column)
        ),
        (None, TimeMode::Optional) => "CAST(NULL AS BIGINT)".to_owned(),
    };
    columns.push(format!("{ts_expr} AS {TS}"));
    columns.push(format!("{} AS {DS}", quote(partition_column)));
    if carries_origin {
        columns.push(format!("{ORIGIN} AS {ORIGIN}"));
    }
    let wheres = if query.wheres.is_empty() {
        String::new()
    } else {
        format!(
            " WHERE {}",
            query
                .wheres
                .iter()
                .map(|w| format!("({w})"))
                .collect::<Vec<_>>()
                .join(" AND ")
        )
    };
    format!("SELECT {} FROM __src{wheres}", columns.join(", "))
}

/// A query that only picks and renames columns (the common `selects` of `col` per output
/// column, a 64-bit integer time column, no `wheres`), applied without DataFusion: per
/// partition, planning and running the SQL cost more than reading the rows. Used only where
/// DataFusion plans the query to exactly this schema.
#[derive(Clone)]
struct Renames {
    schema: SchemaRef,
    /// Per output column, the input column it is.
    columns: Vec<usize>,
}

impl Renames {
    /// The renames `query` makes of rows with `schema`, if that is all it does.
    async fn of(
        schema: &SchemaRef,
        query: &Query,
        time: TimeMode,
        partition_column: &str,
    ) -> Option<Renames> {
        // A bare identifier, not one SQL reads as something else (a literal or a function
        // without parentheses).
        let plain = |e: &str| {
            let mut chars = e.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && ![
                    "true",
                    "false",
                    "null",
                    "current_date",
                    "current_time",
                    "current_timestamp",
                    "localtime",
                    "localtimestamp",
                    "current_user",
                    "session_user",
                    "user",
                ]
                .contains(&e.to_ascii_lowercase().as_str())
        };
        let index = |e: &str| schema.index_of(e).ok();
        if !query.wheres.is_empty() {
            return None;
        }
        let mut columns: Vec<usize> = match &query.selects {
            Some(selects) => selects
                .values()
                .map(|e| plain(e).then(|| index(e)).flatten())
                .collect::<Option<_>>()?,
            None => (0..schema.fields().len()).collect(),
        };
        let ts = query.time_column.as_deref().filter(|t| plain(t))?;
        let ts = index(ts).filter(|&i| schema.field(i).data_type() == &DataType::Int64)?;
        columns.push(ts);
        columns.push(index(partition_column)?);
        if let Ok(origin) = schema.index_of(ORIGIN) {
            columns.push(origin);
        }
        // What DataFusion makes of the query: the same columns, named and typed alike.
        let ctx = session();
        let mem = MemTable::try_new(schema.clone(), vec![Vec::new()]).ok()?;
        ctx.register_table("__src", Arc::new(mem)).ok()?;
        let sql = query_sql(&ctx, schema, query, time, partition_column).await;
        let planned = ctx.sql_with_options(&sql, queries_only()).await.ok()?;
        let planned: SchemaRef = Arc::new(planned.schema().as_arrow().clone());
        let ours = planned.fields().len() == columns.len()
            && planned.fields().iter().zip(&columns).all(|(f, &c)| {
                let input = schema.field(c);
                f.data_type() == input.data_type()
                    && f.is_nullable() == input.is_nullable()
                    && f.metadata() == input.metadata()
            });
        ours.then_some(Renames {
            schema: planned,
            columns,
        })
    }

    /// The query's rows of `batches` (in order, as one batch).
    fn apply(
        &self,
        batches: &[RecordBatch],
    ) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
        let picked = batches
            .iter()
            .map(|b| {
                RecordBatch::try_new(
                    self.schema.clone(),
                    self.columns.iter().map(|&c| b.column(c).clone()).collect(),
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        match picked.as_slice() {
            [only] => Ok(only.clone()),
            _ => arrow::compute::concat_batches(&self.schema, &picked),
        }
    }
}

async fn run(
    ctx: &SessionContext,
    sql: &str,
) -> std::result::Result<RecordBatch, datafusion::error::DataFusionError> {
    let (schema, batches) = collect_sql(ctx, sql).await?;
    arrow::compute::concat_batches(&schema, &batches).map_err(Into::into)
}

/// What config SQL may be: queries. DataFusion also runs `COPY ... TO '<any path>'`, `CREATE
/// EXTERNAL TABLE ... LOCATION '<any path>'` and `SET`: a StagingQuery's text wrote a file
/// outside the warehouse (found by bench/probe).
fn queries_only() -> datafusion::execution::context::SQLOptions {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Plans and runs `sql`, with a panic inside DataFusion or Arrow turned into an error. Config
/// expressions are user input, and some of DataFusion's functions panic instead of failing (e.g.
/// `repeat('x', 100000000)` over a hundred rows overflows a string array's 32-bit offsets), so
/// every query made of them runs here: the caller's error then names the config.
pub(crate) async fn collect_sql(
    ctx: &SessionContext,
    sql: &str,
) -> std::result::Result<(SchemaRef, Vec<RecordBatch>), datafusion::error::DataFusionError> {
    use futures::FutureExt;
    let query = async {
        let df = ctx.sql_with_options(sql, queries_only()).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok((schema, batches))
    };
    // Unwind safety: the context and the query's state are dropped or left unused after a panic.
    std::panic::AssertUnwindSafe(query)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let why = crate::error::panic_message(panic.as_ref());
            Err(datafusion::error::DataFusionError::Execution(format!(
                "the query engine failed ({why}); the result is likely too large"
            )))
        })
}

/// Whether `expr` over `__src` is a timestamp. A timestamp cast to BIGINT is its count of its own
/// unit: Spark and most Parquet writers store microseconds, which read as epoch millis put every
/// row 1,000 times further in the future and a backfill silently counted none of them. (An
/// expression that does not plan is reported by the query itself.)
async fn is_timestamp(ctx: &SessionContext, expr: &str) -> bool {
    let sql = format!("SELECT {expr} FROM __src LIMIT 0");
    match ctx.sql_with_options(&sql, queries_only()).await {
        Ok(df) => df
            .schema()
            .fields()
            .first()
            .is_some_and(|f| matches!(f.data_type(), DataType::Timestamp(_, _))),
        Err(_) => false,
    }
}

/// Finds which expression failed, so the error names it.
async fn explain_failure(
    ctx: &SessionContext,
    query: &Query,
    config: &str,
    table: &TableName,
    err: datafusion::error::DataFusionError,
) -> EngineError {
    let candidates = query
        .selects
        .iter()
        .flat_map(|s| {
            s.iter().map(|(n, e)| {
                (
                    format!("select {n:?}"),
                    format!("SELECT {e} FROM __src LIMIT 0"),
                    e.clone(),
                )
            })
        })
        .chain(query.wheres.iter().map(|w| {
            (
                "where".to_owned(),
                format!("SELECT 1 FROM __src WHERE {w} LIMIT 0"),
                w.clone(),
            )
        }))
        .chain(query.time_column.iter().map(|t| {
            (
                "timeColumn".to_owned(),
                format!("SELECT {t} FROM __src LIMIT 0"),
                t.clone(),
            )
        }));
    for (what, sql, expr) in candidates {
        if let Err(e) = run(ctx, &sql).await {
            return EngineError::Input {
                file: config.to_owned(),
                message: format!(
                    "{what} expression {expr:?} on {table} cannot be evaluated: {}",
                    first_line(&e.to_string())
                ),
            };
        }
    }
    df_error(config, table, "evaluating the query", err)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn df_error(
    config: &str,
    table: &TableName,
    what: &str,
    e: datafusion::error::DataFusionError,
) -> EngineError {
    EngineError::Input {
        file: config.to_owned(),
        message: format!("{what} {table}: {}", first_line(&e.to_string())),
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn with_partition(
    batch: &RecordBatch,
    column: &str,
    ds: PartitionDate,
    table: &TableName,
) -> Result<RecordBatch> {
    crate::values::with_constant_column(batch, column, &ds.to_string()).map_err(|source| {
        EngineError::Arrow {
            context: format!("reading {table}"),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};

    use super::*;

    /// Found by bench/probe: `repeat('x', 100000000)` in a select overflowed a string array's
    /// offsets inside DataFusion, which panicked and killed the whole process. That case needs
    /// gigabytes, so a function that panics stands in for DataFusion's own here.
    #[tokio::test]
    async fn a_panic_inside_datafusion_is_an_error_not_a_crash() {
        let ctx = session();
        ctx.register_udf(create_udf(
            "explode",
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Immutable,
            Arc::new(|_: &[ColumnarValue]| panic!("offset overflow")),
        ));
        let err = collect_sql(&ctx, "SELECT explode(x) FROM (VALUES (1)) AS t(x)")
            .await
            .expect_err("the panic is an error");
        assert!(
            err.to_string().contains("offset overflow"),
            "the error says why: {err}"
        );
        // The session still answers afterwards.
        let (_, batches) = collect_sql(&ctx, "SELECT 1").await.expect("still usable");
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    }

    /// Found by bench/probe: data.purchases imported from Parquet with `ts` as a timestamp of
    /// microseconds (as Spark writes them) gave the quickstart's purchases GroupBy a backfill of
    /// 0 rows and exit 0: `CAST(ts AS BIGINT)` read the microseconds as epoch millis.
    #[tokio::test]
    async fn a_timestamp_time_column_is_read_as_epoch_millis_whatever_its_unit() {
        use arrow::array::{StringArray, TimestampMicrosecondArray, TimestampSecondArray};
        let expected = [1_699_874_292_000_i64, -1_500];
        let micros = TimestampMicrosecondArray::from(vec![1_699_874_292_000_000, -1_500_000])
            .with_timezone("UTC");
        let seconds = TimestampSecondArray::from(vec![1_699_874_292, -2]);
        for (column, expected) in [
            (Arc::new(micros) as arrow::array::ArrayRef, expected),
            (Arc::new(seconds), [1_699_874_292_000, -2_000]),
        ] {
            let schema = Arc::new(Schema::new(vec![
                Field::new("ts", column.data_type().clone(), true),
                Field::new("ds", DataType::Utf8, false),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![column, Arc::new(StringArray::from(vec!["2023-11-13"; 2]))],
            )
            .unwrap();
            let query = Query {
                time_column: Some("ts".to_owned()),
                ..Query::default()
            };
            let table = TableName::parse("data.purchases").unwrap();
            let out = evaluate(
                schema,
                vec![batch],
                &query,
                TimeMode::EventTime,
                "ds",
                "quickstart.purchases.v1",
                &table,
            )
            .await
            .unwrap();
            let ts = out.column_by_name(TS).unwrap();
            let ts = ts
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            assert_eq!(ts.values().to_vec(), expected.to_vec());
        }
    }

    /// A query that only renames columns is applied without DataFusion: it must give what
    /// DataFusion gives, schema included; anything more goes through DataFusion.
    #[tokio::test]
    async fn a_query_that_only_renames_columns_gives_what_datafusion_gives() {
        use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Int64, true),
            Field::new("ts", DataType::Int64, true),
            Field::new("value", DataType::Int64, true),
            Field::new(
                "at",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("ds", DataType::Utf8, false),
        ]));
        let batch = |n: i64| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter(
                    (0..n).map(|i| (i % 3 != 0).then_some(i)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    (0..n).map(|i| 1_700_000_000_000 + i),
                )),
                Arc::new(Int64Array::from_iter(
                    (0..n).map(|i| (i % 5 != 0).then_some(i * 7)),
                )),
                Arc::new(TimestampMillisecondArray::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter_values((0..n).map(|_| "2023-11-14"))),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let batches = vec![batch(5), batch(0), batch(9)];
        let table = TableName::parse("data.events").unwrap();
        let renaming = |selects: &[(&str, &str)], time: &str| Query {
            selects: Some(
                selects
                    .iter()
                    .map(|(n, e)| ((*n).to_owned(), (*e).to_owned()))
                    .collect(),
            ),
            time_column: Some(time.to_owned()),
            ..Query::default()
        };
        for query in [
            renaming(&[("user_id", "user_id"), ("value", "value")], "ts"),
            renaming(&[("key", "user_id"), ("v", "value"), ("v2", "value")], "ts"),
            Query {
                time_column: Some("ts".to_owned()),
                ..Query::default()
            },
        ] {
            let plan = Renames::of(&schema, &query, TimeMode::EventTime, "ds")
                .await
                .expect("only renames");
            let fast = plan.apply(&batches).unwrap();
            let slow = evaluate(
                schema.clone(),
                batches.clone(),
                &query,
                TimeMode::EventTime,
                "ds",
                "bench.v1",
                &table,
            )
            .await
            .unwrap();
            assert_eq!(fast, slow, "{query:?}");
        }
        for query in [
            renaming(&[("user_id", "user_id"), ("value", "value + 1")], "ts"),
            renaming(&[("user_id", "user_id"), ("now", "current_date")], "ts"),
            renaming(&[("user_id", "user_id")], "at"),
            renaming(&[("user_id", "missing")], "ts"),
            Query {
                wheres: vec!["value > 3".to_owned()],
                ..renaming(&[("user_id", "user_id")], "ts")
            },
            Query::default(),
        ] {
            assert!(
                Renames::of(&schema, &query, TimeMode::EventTime, "ds")
                    .await
                    .is_none(),
                "{query:?}"
            );
        }
    }

    /// Found by bench/probe: a StagingQuery of `COPY (SELECT 1) TO '<path>'` wrote that file.
    #[tokio::test]
    async fn config_sql_cannot_write_files_or_define_tables() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("written.csv");
        let ctx = session();
        for sql in [
            format!("COPY (SELECT 1 AS x) TO '{}'", target.display()),
            format!(
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}'",
                dir.path().display()
            ),
            "SET datafusion.execution.batch_size = 1".to_owned(),
        ] {
            let err = collect_sql(&ctx, &sql).await.expect_err(&sql);
            assert!(err.to_string().contains("not supported"), "{sql}: {err}");
        }
        assert!(!target.exists(), "COPY wrote {}", target.display());
    }
}
