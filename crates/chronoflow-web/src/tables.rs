//! The tables pages: every warehouse table with its partitions, and per partition its row count,
//! null fractions and a row-count flag (the engine's `flag_row_counts`, one rule for every
//! caller), with the configs that read and write the table.
//!
//! Figures come from the statistics committed in each partition's manifest: no data file is read
//! except for the schema (from the newest partition) on a table's own page.

use std::collections::BTreeSet;

use axum::extract::{Path as UrlPath, State};
use axum::routing::get;
use axum::{Json, Router};
use chronoflow_config::PartitionDate;
use chronoflow_engine::{
    EngineError, PartitionStats, RowCountCheck, RowFlag, TableName, Warehouse, flag_row_counts,
};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::WebState;
use crate::error::{Result, WebError};

/// Tables summarized at once on the list page (each reads its manifests, 16 at a time).
const TABLES_AT_ONCE: usize = 4;

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/ui/tables", get(tables))
        .route("/api/v1/ui/tables/{name}", get(table))
}

/// A partition's statistics and its row count, known even for manifests without statistics.
struct Partition {
    ds: PartitionDate,
    rows: Option<u64>,
    stats: Option<PartitionStats>,
}

/// Every partition of `table` in date order, and the flag of each.
async fn partitions(
    warehouse: &Warehouse,
    table: &TableName,
    ratio: f64,
) -> Result<Vec<(Partition, RowCountCheck)>> {
    let stats = warehouse.partition_stats(table).await?;
    let mut out = Vec::with_capacity(stats.len());
    for (ds, stats) in stats {
        let rows = match &stats {
            Some(s) => Some(s.rows),
            // Written before statistics existed: the manifest still has the row count.
            None => match warehouse.partition_info(table, ds).await {
                Ok(info) => Some(info.rows),
                // Dropped since it was listed.
                Err(EngineError::PartitionNotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            },
        };
        out.push(Partition { ds, rows, stats });
    }
    let rows: Vec<Option<u64>> = out.iter().map(|p| p.rows).collect();
    let checks = flag_row_counts(&rows, ratio)?;
    Ok(out.into_iter().zip(checks).collect())
}

#[derive(Serialize)]
struct TableSummary {
    name: String,
    partitions: usize,
    newest: Option<String>,
    /// Rows of the newest partition.
    rows: Option<u64>,
    flagged: usize,
    /// Why the table's metadata or partitions could not be read: it is listed all the same, so
    /// one broken table (a corrupt Delta log, an Iceberg catalog gone) does not hide the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl TableSummary {
    fn unreadable(name: &TableName, error: impl std::fmt::Display) -> TableSummary {
        TableSummary {
            name: name.to_string(),
            partitions: 0,
            newest: None,
            rows: None,
            flagged: 0,
            error: Some(error.to_string()),
        }
    }
}

async fn tables(State(ctx): State<WebState>) -> Result<Json<Value>> {
    let listing = ctx.warehouse.table_listing().await?;
    let ratio = ctx.quality_ratio;
    let warehouse = &ctx.warehouse;
    let summaries: Vec<Option<TableSummary>> = futures::stream::iter(listing)
        .map(|listed| async move {
            let name = listed.name;
            if let Some(e) = listed.error {
                return Some(TableSummary::unreadable(&name, e));
            }
            let parts = match partitions(warehouse, &name, ratio).await {
                Ok(p) => p,
                // Dropped since it was listed.
                Err(WebError::Engine(EngineError::TableNotFound { .. })) => return None,
                Err(e) => return Some(TableSummary::unreadable(&name, e)),
            };
            let newest = parts.last().map(|(p, _)| p);
            Some(TableSummary {
                name: name.to_string(),
                partitions: parts.len(),
                newest: newest.map(|p| p.ds.to_string()),
                rows: newest.and_then(|p| p.rows),
                flagged: parts.iter().filter(|(_, c)| c.flag.is_some()).count(),
                error: None,
            })
        })
        .buffered(TABLES_AT_ONCE)
        .collect()
        .await;
    let tables: Vec<TableSummary> = summaries.into_iter().flatten().collect();
    Ok(Json(json!({ "tables": tables })))
}

#[derive(Serialize)]
struct ColumnView {
    name: String,
    null_fraction: Option<f64>,
}

#[derive(Serialize)]
struct PartitionView {
    ds: String,
    rows: Option<u64>,
    columns: Vec<ColumnView>,
    flag: Option<RowFlag>,
    median: Option<f64>,
}

async fn table(State(ctx): State<WebState>, UrlPath(name): UrlPath<String>) -> Result<Json<Value>> {
    let table = TableName::parse(&name).map_err(|_| {
        WebError::NotFound(format!(
            "{name:?} is not a table name: expected namespace.table, both [A-Za-z0-9_]"
        ))
    })?;
    let not_found = || {
        WebError::NotFound(format!(
            "no table {table} in the warehouse {}",
            ctx.warehouse.uri()
        ))
    };
    let Some(meta) = ctx.warehouse.table_meta(&table).await? else {
        return Err(not_found());
    };
    let parts = match partitions(&ctx.warehouse, &table, ctx.quality_ratio).await {
        Err(WebError::Engine(EngineError::TableNotFound { .. })) => return Err(not_found()),
        other => other?,
    };
    let schema: Vec<Value> = match ctx.warehouse.schema(&table).await {
        Ok(Some(schema)) => schema
            .fields()
            .iter()
            .map(|f| json!({ "name": f.name(), "type": f.data_type().to_string() }))
            .collect(),
        Ok(None) => Vec::new(),
        // Dropped between the listing and the read: the rest of the page still holds.
        Err(EngineError::TableNotFound { .. } | EngineError::PartitionNotFound { .. }) => {
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let partitions: Vec<PartitionView> = parts
        .into_iter()
        .map(|(p, check)| PartitionView {
            ds: p.ds.to_string(),
            rows: p.rows,
            columns: p
                .stats
                .as_ref()
                .map(|s| {
                    s.columns
                        .iter()
                        .map(|c| ColumnView {
                            name: c.name.clone(),
                            null_fraction: s.null_fraction(&c.name),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            flag: check.flag,
            median: check.median,
        })
        .collect();

    // Who reads and who writes it, from the plan. A repo that cannot be loaded leaves these
    // empty rather than hiding the table's own figures.
    let (readers, producer) = match ctx.repo_cache.get(&ctx.repo_dir).await {
        Ok(loaded) => {
            let wanted = table.to_string();
            let plan = &loaded.plan;
            let readers: BTreeSet<&str> = plan
                .jobs
                .iter()
                .filter(|j| j.inputs.iter().any(|i| i.table == wanted))
                .map(|j| j.config.as_str())
                .collect();
            let producer = plan
                .jobs
                .iter()
                .find(|j| j.outputs.contains(&wanted))
                .map(|j| j.config.clone());
            (
                readers.into_iter().map(str::to_owned).collect::<Vec<_>>(),
                producer,
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "table page without readers and producer");
            (Vec::new(), None)
        }
    };
    let format = ctx.warehouse.table_format(&table).await?;
    Ok(Json(json!({
        "name": table.to_string(),
        "format": format.name(),
        "partition_column": meta.partition_column,
        "schema": schema,
        "partitions": partitions,
        "readers": readers,
        "producer": producer,
    })))
}
