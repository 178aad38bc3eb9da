//! StagingQuery backfill (SPEC §4.5): Spark SQL with date macros, run by DataFusion over the
//! warehouse tables it names, written partitioned by `ds`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use chronoflow_config::{LoadedConfig, PartitionDate, StagingQuery};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;

use crate::error::{EngineError, Result};
use crate::source::session;
use crate::table_name::TableName;
use crate::warehouse::{PartitionInfo, Warehouse};

/// Renders `{{ start_date }}`, `{{ end_date }}`, `{{ latest_date }}` and
/// `{{ max_date(table=ns.t) }}`; any other macro is an error naming it.
pub async fn render(
    warehouse: &Warehouse,
    sql: &str,
    config: &str,
    start: PartitionDate,
    end: PartitionDate,
    latest: PartitionDate,
) -> Result<String> {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| EngineError::Input {
            file: config.to_owned(),
            message: format!(
                "unterminated macro in the query: {:?}",
                &rest[open..(open + 40).min(rest.len())]
            ),
        })?;
        let body: String = after[..close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let value = match body.as_str() {
            "start_date" => start.to_string(),
            "end_date" => end.to_string(),
            "latest_date" => latest.to_string(),
            m if m.starts_with("max_date(table=") && m.ends_with(')') => {
                let table = TableName::parse(&m["max_date(table=".len()..m.len() - 1])?;
                warehouse
                    .partitions(&table)
                    .await?
                    .last()
                    .map(ToString::to_string)
                    .ok_or_else(|| EngineError::Input {
                        file: config.to_owned(),
                        message: format!(
                            "{{{{ max_date(table={table}) }}}}: the table has no partitions"
                        ),
                    })?
            }
            _ => {
                return Err(EngineError::Input {
                    file: config.to_owned(),
                    message: format!(
                        "unknown macro {{{{ {} }}}}: expected start_date, end_date, latest_date or max_date(table=ns.t)",
                        after[..close].trim()
                    ),
                });
            }
        };
        out.push_str(&value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Computes partitions `days` (consecutive) of a StagingQuery's output table; `latest` is the last
/// date of the whole requested range.
pub async fn backfill_staging_query(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    sq: &StagingQuery,
    days: &[PartitionDate],
    latest: PartitionDate,
) -> Result<Vec<PartitionInfo>> {
    let name = loaded.name().to_owned();
    let (Some(first), Some(last)) = (days.iter().min().copied(), days.iter().max().copied()) else {
        return Ok(Vec::new());
    };
    if !sq.setups.is_empty() {
        return Err(EngineError::Input {
            file: name,
            message: "setups (Hive UDF registrations) are not supported by the local engine"
                .to_owned(),
        });
    }
    let sql = render(warehouse, &sq.query, &name, first, last, latest).await?;
    let df_err = |e: datafusion::error::DataFusionError| EngineError::Input {
        file: name.clone(),
        message: format!(
            "query: {}",
            e.to_string().lines().next().unwrap_or_default()
        ),
    };
    let ctx = session();
    let state = ctx.state();
    let statement = state
        .sql_to_statement(&sql, &state.config().options().sql_parser.dialect)
        .map_err(df_err)?;
    for reference in state.resolve_table_references(&statement).map_err(df_err)? {
        let TableReference::Partial { schema, table } = &reference else {
            return Err(EngineError::Input {
                file: name.clone(),
                message: format!("table {reference} must be written namespace.table"),
            });
        };
        let table_name = TableName::parse(&format!("{schema}.{table}"))?;
        let meta = warehouse.require_table(&table_name).await?;
        let mut batches = Vec::new();
        for d in warehouse.partitions(&table_name).await? {
            for b in warehouse.read_partition(&table_name, d).await? {
                batches.push(with_column(&b, &meta.partition_column, &d.to_string()));
            }
        }
        let Some(schema_ref) = batches.first().map(RecordBatch::schema) else {
            return Err(EngineError::Corrupt {
                table: table_name.to_string(),
                reason: "the table has no partitions".to_owned(),
            });
        };
        if ctx
            .catalog("datafusion")
            .and_then(|c| c.schema(schema))
            .is_none()
        {
            ctx.catalog("datafusion")
                .expect("default catalog")
                .register_schema(schema, Arc::new(MemorySchemaProvider::new()))
                .map_err(df_err)?;
        }
        let mem = MemTable::try_new(schema_ref, vec![batches]).map_err(df_err)?;
        ctx.register_table(reference.clone(), Arc::new(mem))
            .map_err(df_err)?;
    }
    let (schema, batches) = crate::source::collect_sql(&ctx, &sql)
        .await
        .map_err(df_err)?;
    let result =
        arrow::compute::concat_batches(&schema, &batches).map_err(|source| EngineError::Arrow {
            context: format!("{name}: query result"),
            source,
        })?;

    let ds_index = schema.index_of("ds").map_err(|_| EngineError::Input {
        file: name.clone(),
        message: "the query's result has no ds column to partition by".to_owned(),
    })?;
    let ds_text =
        arrow::compute::cast(result.column(ds_index), &DataType::Utf8).map_err(|source| {
            EngineError::Arrow {
                context: format!("{name}: ds"),
                source,
            }
        })?;
    let ds_text = ds_text.as_string::<i32>();
    let mut by_day: BTreeMap<PartitionDate, Vec<u32>> =
        days.iter().map(|d| (*d, Vec::new())).collect();
    for r in 0..result.num_rows() {
        let value = (!ds_text.is_null(r)).then(|| ds_text.value(r));
        let day = value.and_then(|v| PartitionDate::parse(v).ok());
        match day.and_then(|d| by_day.get_mut(&d)) {
            Some(rows) => rows.push(r as u32),
            None => {
                return Err(EngineError::Input {
                    file: name.clone(),
                    message: format!("the query returned ds {value:?}, outside {first}..={last}"),
                });
            }
        }
    }
    let output = TableName::parse(&loaded.output_table())?;
    let mut written = Vec::new();
    for (day, rows) in by_day {
        let batch = crate::values::take_rows(&result, &rows, Some(ds_index)).map_err(|source| {
            EngineError::Arrow {
                context: format!("{name}: splitting by ds"),
                source,
            }
        })?;
        written.push(
            warehouse
                .write_partition(&output, "ds", day, &[batch])
                .await?,
        );
    }
    Ok(written)
}

fn with_column(batch: &RecordBatch, column: &str, value: &str) -> RecordBatch {
    crate::values::with_constant_column(batch, column, value)
        .expect("a column as long as the batch")
}
