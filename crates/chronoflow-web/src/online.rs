//! The online pages: what each online GroupBy serves, and a playground that fetches features
//! through this process's fetcher and sets them beside the backfill's row for the same keys and
//! time (the consistency the fetcher promises, checked by hand).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use chronoflow_config::naming::{batch_dataset, normalize_join_name, streaming_dataset};
use chronoflow_config::{Config, PartitionDate};
use chronoflow_engine::values::to_json;
use chronoflow_engine::{EngineError, TableName, Warehouse};
use chronoflow_plan::{Mode, TaskKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::WebState;
use crate::error::{Result, WebError};
use crate::repo::date_of_ms;

/// What a process without a fetcher says (the scheduler alone serves no features).
const NOT_SERVING: &str = "this process does not serve features";
/// How far back finished tries are searched for the last upload-to-kv.
const UPLOAD_LOOKBACK_MS: i64 = 30 * 86_400_000;
/// At most this many recent tries are searched for it.
const UPLOAD_TRIES: i64 = 5_000;
/// Relative tolerance when comparing fetched and backfilled floats.
const FLOAT_TOLERANCE: f64 = 1e-9;

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/ui/online", get(online))
        .route("/api/v1/ui/online/playground", post(playground))
}

#[derive(Serialize)]
struct ServedGroupBy {
    name: String,
    batch_ds: Option<String>,
    /// Distinct rows appended to the streaming dataset; null when the KV store did not answer.
    streamed_rows: Option<u64>,
    last_upload_ms: Option<i64>,
}

async fn online(State(ctx): State<WebState>) -> Result<Json<Value>> {
    if ctx.fetcher.is_none() {
        return Ok(Json(json!({
            "group_bys": [],
            "joins": [],
            "message": NOT_SERVING,
        })));
    }
    let loaded = ctx.repo_cache.get(&ctx.repo_dir).await?;
    let (repo, plan) = (&loaded.repo, &loaded.plan);
    let mut group_bys: Vec<&str> = Vec::new();
    let mut joins: Vec<&str> = Vec::new();
    for c in &repo.configs {
        match &c.config {
            Config::GroupBy(gb) if gb.metadata.online => group_bys.push(c.name()),
            Config::Join(j) if j.metadata.online => joins.push(c.name()),
            _ => {}
        }
    }

    // The served batch: its version is the upload's `ds` (`ds#2` when a day was reloaded).
    let kv = match &ctx.kv {
        Some(kv) => Some(kv.get().await?),
        None => None,
    };
    let batch_days = futures::future::try_join_all(group_bys.iter().map(|name| {
        let kv = kv.clone();
        async move {
            let Some(kv) = kv else {
                return Ok::<_, WebError>(None);
            };
            let version = kv.active_version(&batch_dataset(name)).await?;
            Ok(version.map(|v| v.split('#').next().unwrap_or(&v).to_owned()))
        }
    }))
    .await?;

    // Streamed rows: a stored count per streaming dataset. A store that does not answer leaves
    // them unknown rather than failing the page.
    let streamed_rows = futures::future::join_all(group_bys.iter().map(|name| {
        let kv = kv.clone();
        async move {
            let kv = kv?;
            let dataset = streaming_dataset(name);
            match kv.appended_count(&dataset).await {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(dataset = %dataset, error = %e, "counting streamed rows");
                    None
                }
            }
        }
    }))
    .await;

    // The last upload-to-kv that succeeded under the scheduler (uploads run by hand with
    // `chronoflow run` are not recorded anywhere, so they stay unknown).
    let mut upload_tasks: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for dag in &plan.dags {
        for task in &dag.tasks {
            if let TaskKind::Job {
                config,
                mode: Mode::UploadToKv,
                ..
            } = &task.kind
            {
                upload_tasks.insert((&dag.dag_id, &task.task_id), config);
            }
        }
    }
    let mut last_upload: BTreeMap<&str, i64> = BTreeMap::new();
    if !upload_tasks.is_empty() {
        let since = ctx.clock.now_ms() - UPLOAD_LOOKBACK_MS;
        for t in ctx.store.try_usage(since, UPLOAD_TRIES).await? {
            if t.state != "success" {
                continue;
            }
            if let Some(config) = upload_tasks.get(&(t.dag_id.as_str(), t.task_id.as_str())) {
                let at = last_upload.entry(config).or_insert(t.ended_ms);
                *at = (*at).max(t.ended_ms);
            }
        }
    }

    let served: Vec<ServedGroupBy> = group_bys
        .iter()
        .zip(batch_days)
        .zip(streamed_rows)
        .map(|((name, batch_ds), streamed_rows)| ServedGroupBy {
            name: (*name).to_owned(),
            batch_ds,
            streamed_rows,
            last_upload_ms: last_upload.get(name).copied(),
        })
        .collect();
    Ok(Json(json!({ "group_bys": served, "joins": joins })))
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Join,
    GroupBy,
}

#[derive(Deserialize)]
struct PlaygroundRequest {
    kind: Kind,
    name: String,
    keys: Map<String, Value>,
    at_millis: Option<i64>,
}

async fn playground(
    State(ctx): State<WebState>,
    Json(request): Json<PlaygroundRequest>,
) -> Result<Json<Value>> {
    let Some(fetcher) = &ctx.fetcher else {
        return Err(WebError::BadRequest(NOT_SERVING.to_owned()));
    };
    if request.keys.is_empty() {
        return Err(WebError::BadRequest(
            "keys must name at least one key".to_owned(),
        ));
    }
    let at = request.at_millis.unwrap_or_else(|| ctx.clock.now_ms());
    let keys = std::slice::from_ref(&request.keys);
    let fetched = match request.kind {
        Kind::Join => fetcher.fetch_join(&request.name, keys, at).await?,
        Kind::GroupBy => fetcher.fetch_group_by(&request.name, keys, at).await?,
    };
    let features = fetched.into_iter().next().unwrap_or_default();

    // The backfill's answer for the same keys and time, when the repo knows the config and its
    // table has the partition: a Join's row with these keys and `ts` (partition of `at`'s day);
    // a GroupBy's snapshot of the day before (values as of that day's end).
    let name = normalize_join_name(&request.name);
    let loaded = ctx.repo_cache.get(&ctx.repo_dir).await?;
    let config = loaded.repo.config(&name).filter(|c| {
        matches!(
            (&c.config, request.kind),
            (Config::Join(_), Kind::Join) | (Config::GroupBy(_), Kind::GroupBy)
        )
    });
    let (backfill, backfill_table) = match config {
        None => (None, None),
        Some(c) => {
            let table = c.output_table();
            let day = date_of_ms(at);
            let row = match request.kind {
                Kind::Join => {
                    find_row(&ctx.warehouse, &table, day, &request.keys, Some(at)).await?
                }
                Kind::GroupBy => {
                    find_row(
                        &ctx.warehouse,
                        &table,
                        day.add_days(-1),
                        &request.keys,
                        None,
                    )
                    .await?
                }
            };
            (row, Some(table))
        }
    };
    let differs: Vec<&String> = match &backfill {
        None => Vec::new(),
        Some(row) => features
            .iter()
            .filter(|(f, v)| !row.get(*f).is_some_and(|b| same_value(v, b)))
            .map(|(f, _)| f)
            .collect(),
    };
    Ok(Json(json!({
        "features": features,
        "backfill": backfill,
        "backfill_table": backfill_table,
        "differs": differs,
    })))
}

/// The first row of partition `ds` of `table` whose columns equal `keys` (and whose `ts` equals
/// `ts`, when given), as JSON; `None` when the table, the partition or the row is missing.
async fn find_row(
    warehouse: &Warehouse,
    table: &str,
    ds: PartitionDate,
    keys: &Map<String, Value>,
    ts: Option<i64>,
) -> Result<Option<Map<String, Value>>> {
    let Ok(name) = TableName::parse(table) else {
        return Ok(None);
    };
    let batches = match warehouse.read_partition(&name, ds).await {
        Ok(b) => b,
        Err(EngineError::TableNotFound { .. } | EngineError::PartitionNotFound { .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let ts = ts.map(Value::from);
    let wanted: Vec<(&str, &Value)> = keys
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .chain(ts.as_ref().map(|t| ("ts", t)))
        .collect();
    for batch in &batches {
        let schema = batch.schema();
        // A key the table lacks matches no row.
        let Some(columns) = wanted
            .iter()
            .map(|(k, v)| Some((batch.column(schema.index_of(k).ok()?), *v)))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        for row in 0..batch.num_rows() {
            if columns
                .iter()
                .all(|(column, v)| key_equal(&to_json(column.as_ref(), row), v))
            {
                let out: Map<String, Value> = schema
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .map(|(f, c)| (f.name().clone(), to_json(c.as_ref(), row)))
                    .collect();
                return Ok(Some(out));
            }
        }
    }
    Ok(None)
}

/// A key in a request equals a stored one: the same JSON, or a number sent as its text (as the
/// fetcher accepts `{"user_id": "5"}`).
fn key_equal(stored: &Value, requested: &Value) -> bool {
    match (stored, requested) {
        (Value::Number(n), Value::String(s)) => {
            let s = s.trim();
            n.as_i64().is_some_and(|i| s.parse::<i64>() == Ok(i))
                || n.as_f64().is_some_and(|f| s.parse::<f64>() == Ok(f))
        }
        _ => same_value(stored, requested),
    }
}

/// Equal JSON values, with floats equal within a relative [`FLOAT_TOLERANCE`] (the fetcher and
/// the backfill may sum in different orders).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
                return i == j;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(f), Some(g)) => {
                    f == g || (f - g).abs() <= FLOAT_TOLERANCE * f.abs().max(g.abs())
                }
                _ => x == y,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_with_a_relative_float_tolerance() {
        assert!(same_value(&json!(1.0), &json!(1.0 + 1e-12)));
        assert!(!same_value(&json!(1.0), &json!(1.0 + 1e-6)));
        assert!(same_value(&json!(3), &json!(3.0)));
        assert!(!same_value(&json!(3), &json!(4)));
        assert!(same_value(&json!([1.0, {"a": 2}]), &json!([1.0, {"a": 2}])));
        assert!(!same_value(&json!([1.0]), &json!([1.0, 2.0])));
        assert!(!same_value(&json!(null), &json!(0)));
        assert!(same_value(&json!(null), &json!(null)));
    }

    #[test]
    fn numeric_keys_match_their_text() {
        assert!(key_equal(&json!(5), &json!("5")));
        assert!(key_equal(&json!(5), &json!(5)));
        assert!(!key_equal(&json!(5), &json!("6")));
        assert!(!key_equal(&json!("5"), &json!(5)));
    }
}
