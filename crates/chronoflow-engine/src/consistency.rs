//! Online/offline consistency (SPEC §3.1, §4.6): the three jobs of `chronon_join_ooc_{team}`.
//!
//! - `log-flattener`: the fetch log `<join>_log` of a day into `<join>_logged`, one column per
//!   key and feature, each row read with the schema event of its own Join version.
//! - `build-comparison-table`: the logged keys and request times as the left side of the Join's
//!   backfill (`jobs::backfill_join_for_left`), offline beside online into `<join>_comparison`.
//! - `consistency-metrics-compute`: per feature counts, mismatches and SMAPE into
//!   `<join>_consistency`, plus an `__overall__` row.
//!
//! Nothing is silently wrong: rows that cannot be read are counted and named in the report's
//! warnings, never guessed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Array, Int64Builder,
    RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::naming::{
    comparison_table, consistency_table, fetch_log_table, logged_table,
};
use chronoflow_config::{Config, Join, LoadedConfig, PartitionDate};
use serde_json::{Map, Value};

use crate::error::{EngineError, Result};
use crate::jobs::backfill_join_for_left;
use crate::source::{DS, TS};
use crate::table_name::TableName;
use crate::values::to_json;
use crate::warehouse::Warehouse;
use crate::window::date_of;

/// The column of `_logged` and `_comparison` holding the request time (epoch millis).
pub const TS_COLUMN: &str = "ts";
/// The column of `_logged` naming the Join version a row was served by.
pub const VERSION_COLUMN: &str = "schema_hash";
/// The suffix of a comparison table's online (logged) column.
pub const ONLINE_SUFFIX: &str = "_online";
/// The `feature` of the consistency table's row for the whole Join.
pub const OVERALL: &str = "__overall__";
/// Floats are equal within this relative tolerance.
pub const FLOAT_TOLERANCE: f64 = 1e-9;
/// Warnings kept in a report (the counts are always complete).
const MAX_WARNINGS: usize = 20;

/// One of the three consistency jobs, by its `--mode` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsistencyJob {
    LogFlattener,
    BuildComparisonTable,
    ConsistencyMetricsCompute,
}

impl ConsistencyJob {
    pub fn from_mode(mode: &str) -> Option<ConsistencyJob> {
        match mode {
            "log-flattener" => Some(ConsistencyJob::LogFlattener),
            "build-comparison-table" => Some(ConsistencyJob::BuildComparisonTable),
            "consistency-metrics-compute" => Some(ConsistencyJob::ConsistencyMetricsCompute),
            _ => None,
        }
    }

    /// Runs the job for day `ds`; lines of a summary for the log or terminal.
    pub async fn run(
        self,
        warehouse: &Warehouse,
        loaded: &LoadedConfig,
        ds: PartitionDate,
    ) -> Result<Vec<String>> {
        let Config::Join(join) = &loaded.config else {
            return Err(EngineError::Input {
                file: loaded.path.clone(),
                message: "the consistency jobs run on Joins only".to_owned(),
            });
        };
        let name = loaded.name();
        Ok(match self {
            ConsistencyJob::LogFlattener => {
                let r = flatten_log(warehouse, loaded, join, ds).await?;
                let mut lines = vec![format!(
                    "log-flattener {name} ds={ds}: {} rows into {} (versions {}); {} without a schema event skipped, {} corrupt skipped",
                    r.rows,
                    r.table,
                    r.versions.join(", "),
                    r.no_schema,
                    r.corrupt
                )];
                lines.extend(r.warnings.iter().map(|w| format!("warning: {w}")));
                lines
            }
            ConsistencyJob::BuildComparisonTable => {
                let r = build_comparison(warehouse, loaded, join, ds).await?;
                let mut lines = vec![format!(
                    "build-comparison-table {name} ds={ds}: {} rows, {} features into {}; {} logged features the current Join no longer has, not compared",
                    r.rows,
                    r.features,
                    r.table,
                    r.not_compared.len()
                )];
                lines.extend(r.not_compared.iter().map(|(f, values)| {
                    format!("warning: {f}: {values} logged values of a feature the current Join no longer has, not compared")
                }));
                lines
            }
            ConsistencyJob::ConsistencyMetricsCompute => {
                let comparison = read_comparison(warehouse, loaded, ds).await?;
                let metrics = write_metrics(warehouse, loaded, ds, &comparison).await?;
                let drift = crate::drift::compute_drift(warehouse, loaded, ds, &comparison).await?;
                let mut lines = summary(name, ds, &metrics);
                lines.extend(crate::drift::summary(name, ds, &drift));
                lines
            }
        })
    }
}

/// The left columns a Join's requests carry: every part's keys, as left columns (the fetcher
/// logs exactly these).
pub fn key_columns(join: &Join) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in &join.join_parts {
        for key in &part.group_by.key_columns {
            let left = part.left_column(key);
            if !out.iter().any(|c| c == left) {
                out.push(left.to_owned());
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct FlattenReport {
    pub table: String,
    pub rows: usize,
    pub versions: Vec<String>,
    /// Fetch rows of a version with no schema event that day.
    pub no_schema: usize,
    /// Records whose JSON does not parse or lacks a key.
    pub corrupt: usize,
    pub warnings: Vec<String>,
}

/// What a version's schema event says.
struct VersionSchema {
    keys: Vec<String>,
    features: Vec<String>,
}

fn input(loaded: &LoadedConfig, message: String) -> EngineError {
    EngineError::Input {
        file: loaded.name().to_owned(),
        message,
    }
}

/// Reads partition `ds` of `table`, or a clear error naming both (and what produces it).
async fn read_day(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    table: &str,
    ds: PartitionDate,
    produced_by: &str,
) -> Result<RecordBatch> {
    let name = TableName::parse(table)?;
    let present = warehouse.table_meta(&name).await?.is_some()
        && warehouse.partitions(&name).await?.contains(&ds);
    if !present {
        return Err(input(
            loaded,
            format!("table {table} has no partition ds={ds} ({produced_by})"),
        ));
    }
    let batches = warehouse.read_partition(&name, ds).await?;
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    arrow::compute::concat_batches(&schema, &batches).map_err(|e| EngineError::Arrow {
        context: format!("reading {table} ds={ds}"),
        source: e,
    })
}

fn string_column<'a>(batch: &'a RecordBatch, column: &str, table: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| EngineError::Corrupt {
            table: table.to_owned(),
            reason: format!("no text column {column:?}"),
        })
}

/// `log-flattener`: partition `ds` of `<join>_log` into `<join>_logged` (replaced).
pub async fn flatten_log(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    join: &Join,
    ds: PartitionDate,
) -> Result<FlattenReport> {
    let output = loaded.output_table();
    let log = fetch_log_table(&output);
    let batch = read_day(
        warehouse,
        loaded,
        &log,
        ds,
        "the fetch log: is samplePercent > 0 and did a fetcher serve and flush that day?",
    )
    .await?;
    let event = string_column(&batch, "event", &log)?;
    let version = string_column(&batch, "schema_hash", &log)?;
    let key_json = string_column(&batch, "key_json", &log)?;
    let value_json = string_column(&batch, "value_json", &log)?;
    let ts = batch
        .column_by_name("ts_millis")
        .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>())
        .ok_or_else(|| EngineError::Corrupt {
            table: log.clone(),
            reason: "no Int64 column \"ts_millis\"".to_owned(),
        })?;

    let mut warnings: Vec<String> = Vec::new();
    let mut warn = |w: String| {
        if warnings.len() < MAX_WARNINGS {
            warnings.push(w);
        }
    };
    let mut corrupt = 0;
    let mut schemas: BTreeMap<String, VersionSchema> = BTreeMap::new();
    for r in 0..batch.num_rows() {
        if event.is_null(r) || event.value(r) != "schema" {
            continue;
        }
        let parsed: Option<VersionSchema> = serde_json::from_str::<Value>(value_json.value(r))
            .ok()
            .and_then(|v| {
                let names = |field: &str| -> Option<Vec<String>> {
                    v.get(field)?
                        .as_array()?
                        .iter()
                        .map(|s| s.as_str().map(str::to_owned))
                        .collect()
                };
                Some(VersionSchema {
                    keys: names("key_columns")?,
                    features: names("features")?,
                })
            });
        match parsed {
            Some(s) => {
                schemas.insert(version.value(r).to_owned(), s);
            }
            None => {
                corrupt += 1;
                warn(format!(
                    "{log} ds={ds}: the schema event of version {} does not parse",
                    version.value(r)
                ));
            }
        }
    }

    // Columns: the union of every version's keys, then of their features, in first-seen order.
    let current_keys = key_columns(join);
    let mut keys: Vec<String> = current_keys.clone();
    let mut features: Vec<String> = Vec::new();
    for s in schemas.values() {
        for k in &s.keys {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    for s in schemas.values() {
        for f in &s.features {
            if !features.contains(f) && !keys.contains(f) {
                features.push(f.clone());
            }
        }
    }
    let mut values: HashMap<&str, Vec<Value>> = keys
        .iter()
        .chain(&features)
        .map(|c| (c.as_str(), Vec::new()))
        .collect();
    let mut row_ts: Vec<i64> = Vec::new();
    let mut row_version: Vec<String> = Vec::new();
    let mut no_schema = 0;
    let mut used_versions: Vec<String> = Vec::new();
    for r in 0..batch.num_rows() {
        if event.is_null(r) || event.value(r) != "fetch" {
            continue;
        }
        let v = version.value(r);
        let Some(schema) = schemas.get(v) else {
            no_schema += 1;
            warn(format!(
                "{log} ds={ds}: a fetch of version {v} has no schema event that day: skipped"
            ));
            continue;
        };
        let parse = |text: Option<&str>| -> Option<Map<String, Value>> {
            match serde_json::from_str::<Value>(text?) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            }
        };
        let key_text = (!key_json.is_null(r)).then(|| key_json.value(r));
        let (Some(k), Some(f)) = (parse(key_text), parse(Some(value_json.value(r)))) else {
            corrupt += 1;
            warn(format!(
                "{log} ds={ds}: a fetch at {} has key_json or value_json that is no JSON object: skipped",
                ts.value(r)
            ));
            continue;
        };
        if let Some(missing) = schema.keys.iter().find(|c| !k.contains_key(*c)) {
            corrupt += 1;
            warn(format!(
                "{log} ds={ds}: a fetch at {} lacks key {missing:?}: skipped",
                ts.value(r)
            ));
            continue;
        }
        for c in &keys {
            let value = if schema.keys.contains(c) {
                k.get(c).cloned().unwrap_or(Value::Null)
            } else {
                Value::Null
            };
            values.get_mut(c.as_str()).expect("a column").push(value);
        }
        for c in &features {
            // A feature of another version, or one the response lacks, is null here.
            let value = if schema.features.contains(c) {
                f.get(c).cloned().unwrap_or(Value::Null)
            } else {
                Value::Null
            };
            values.get_mut(c.as_str()).expect("a column").push(value);
        }
        row_ts.push(ts.value(r));
        row_version.push(v.to_owned());
        if !used_versions.iter().any(|u| u == v) {
            used_versions.push(v.to_owned());
        }
    }

    // Types: what the table already has for a column (so days agree), else what the values are.
    let table = logged_table(&output);
    let name = TableName::parse(&table)?;
    let existing = match warehouse.table_meta(&name).await? {
        Some(_) => warehouse.schema(&name).await?,
        None => None,
    };
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let typed = |column: &str, vals: &[Value]| -> Result<(Field, ArrayRef)> {
        let known = existing
            .as_ref()
            .and_then(|s| s.field_with_name(column).ok())
            .map(|f| f.data_type().clone())
            .filter(|t| {
                matches!(
                    t,
                    DataType::Boolean | DataType::Int64 | DataType::Float64 | DataType::Utf8
                )
            });
        let t = known.unwrap_or_else(|| infer_type(vals));
        let array = json_column(vals, &t)
            .map_err(|m| input(loaded, format!("{table} ds={ds}: column {column:?}: {m}")))?;
        Ok((Field::new(column, t, true), array))
    };
    for c in &keys {
        let (f, a) = typed(c, &values[c.as_str()])?;
        fields.push(f);
        columns.push(a);
    }
    fields.push(Field::new(TS_COLUMN, DataType::Int64, true));
    columns.push(Arc::new(Int64Array::from(row_ts.clone())));
    fields.push(Field::new(VERSION_COLUMN, DataType::Utf8, true));
    columns.push(Arc::new(StringArray::from(row_version)));
    for c in &features {
        let (f, a) = typed(c, &values[c.as_str()])?;
        fields.push(f);
        columns.push(a);
    }
    let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| {
        EngineError::Arrow {
            context: format!("building {table}"),
            source: e,
        }
    })?;
    warehouse.write_partition(&name, "ds", ds, &[out]).await?;
    Ok(FlattenReport {
        table,
        rows: row_ts.len(),
        versions: used_versions,
        no_schema,
        corrupt,
        warnings,
    })
}

/// The narrowest of Boolean, Int64, Float64 and Utf8 that holds every value; nested or mixed
/// values are JSON text.
fn infer_type(values: &[Value]) -> DataType {
    let mut t: Option<DataType> = None;
    for v in values {
        let this = match v {
            Value::Null => continue,
            Value::Bool(_) => DataType::Boolean,
            Value::Number(n) if n.is_i64() => DataType::Int64,
            Value::Number(_) => DataType::Float64,
            _ => DataType::Utf8,
        };
        t = Some(match (t, this) {
            (None, x) => x,
            (Some(a), b) if a == b => a,
            (Some(DataType::Int64), DataType::Float64)
            | (Some(DataType::Float64), DataType::Int64) => DataType::Float64,
            _ => DataType::Utf8,
        });
    }
    // A column that is null all day: text, the type any later value fits when re-typed.
    t.unwrap_or(DataType::Utf8)
}

/// JSON values as a column of `t` (Boolean, Int64, Float64 or Utf8, where anything but a
/// string is its JSON text); the reason when a value does not fit.
fn json_column(values: &[Value], t: &DataType) -> std::result::Result<ArrayRef, String> {
    let misfit = |v: &Value| format!("value {v} is not {t}");
    Ok(match t {
        DataType::Boolean => {
            let mut b = BooleanBuilder::new();
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    Value::Bool(x) => b.append_value(*x),
                    _ => return Err(misfit(v)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Int64 => {
            let mut b = Int64Builder::new();
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    _ => b.append_value(v.as_i64().ok_or_else(|| misfit(v))?),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::new();
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    _ => b.append_value(v.as_f64().ok_or_else(|| misfit(v))?),
                }
            }
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::new();
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    Value::String(s) => b.append_value(s),
                    other => b.append_value(other.to_string()),
                }
            }
            Arc::new(b.finish())
        }
    })
}

#[derive(Debug, Clone)]
pub struct ComparisonReport {
    pub table: String,
    pub rows: usize,
    pub features: usize,
    /// Logged features the current Join no longer computes (served by an older version), with
    /// their logged values: not compared, as no backfill value exists to compare them with.
    pub not_compared: Vec<(String, usize)>,
}

/// `build-comparison-table`: `<join>_logged` of `ds` through the Join's backfill into
/// `<join>_comparison`: keys, `ts`, then per logged feature `<f>` (offline) and `<f>_online`.
pub async fn build_comparison(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    join: &Join,
    ds: PartitionDate,
) -> Result<ComparisonReport> {
    let output = loaded.output_table();
    let logged_name = logged_table(&output);
    let logged = read_day(
        warehouse,
        loaded,
        &logged_name,
        ds,
        "run log-flattener for that day first",
    )
    .await?;
    let keys = key_columns(join);
    let ts = logged
        .column_by_name(TS_COLUMN)
        .filter(|c| c.data_type() == &DataType::Int64)
        .cloned()
        .ok_or_else(|| EngineError::Corrupt {
            table: logged_name.clone(),
            reason: format!("no Int64 column {TS_COLUMN:?}"),
        })?;
    let mut left_fields = Vec::new();
    let mut left_columns: Vec<ArrayRef> = Vec::new();
    for k in &keys {
        let c = logged
            .column_by_name(k)
            .ok_or_else(|| input(loaded, format!("{logged_name} has no key column {k:?}")))?;
        left_fields.push(Field::new(k, c.data_type().clone(), true));
        left_columns.push(c.clone());
    }
    left_fields.push(Field::new(TS_COLUMN, DataType::Int64, true));
    left_columns.push(ts.clone());
    left_fields.push(Field::new(TS, DataType::Int64, true));
    left_columns.push(ts.clone());
    let ts_values = ts.as_primitive::<arrow::datatypes::Int64Type>();
    let days: StringArray = ts_values
        .iter()
        .map(|t| Some(t.map_or(ds, date_of).to_string()))
        .collect();
    left_fields.push(Field::new(DS, DataType::Utf8, true));
    left_columns.push(Arc::new(days));
    let left =
        RecordBatch::try_new(Arc::new(Schema::new(left_fields)), left_columns).map_err(|e| {
            EngineError::Arrow {
                context: format!("the left side from {logged_name}"),
                source: e,
            }
        })?;
    let offline = if left.num_rows() == 0 {
        None
    } else {
        Some(backfill_join_for_left(warehouse, loaded, join, &left).await?)
    };
    if let Some(o) = &offline
        && o.num_rows() != left.num_rows()
    {
        return Err(input(
            loaded,
            format!(
                "the backfill of {} logged rows returned {} rows",
                left.num_rows(),
                o.num_rows()
            ),
        ));
    }

    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for k in keys.iter().map(String::as_str).chain([TS_COLUMN]) {
        let c = left.column_by_name(k).expect("built above");
        fields.push(Field::new(k, c.data_type().clone(), true));
        columns.push(c.clone());
    }
    let mut features = 0;
    let mut not_compared = Vec::new();
    for f in logged.schema().fields() {
        let name = f.name();
        if keys.contains(name) || name == TS_COLUMN || name == VERSION_COLUMN {
            continue;
        }
        let online = logged.column_by_name(name).expect("own field").clone();
        let offline_column = offline
            .as_ref()
            .and_then(|o| o.column_by_name(name))
            .cloned();
        if offline.is_some() && offline_column.is_none() {
            // Not the current Join's: comparing it with nothing would count every served
            // value as skew. Reported instead (a column all null that day holds nothing).
            let values = online.len() - online.null_count();
            if values > 0 {
                not_compared.push((name.clone(), values));
            }
            continue;
        }
        let (offline_column, online) = side_by_side(offline_column, online, name)?;
        fields.push(Field::new(name, offline_column.data_type().clone(), true));
        columns.push(offline_column);
        fields.push(Field::new(
            format!("{name}{ONLINE_SUFFIX}"),
            online.data_type().clone(),
            true,
        ));
        columns.push(online);
        features += 1;
    }
    let table = comparison_table(&output);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| {
        EngineError::Arrow {
            context: format!("building {table}"),
            source: e,
        }
    })?;
    let rows = batch.num_rows();
    warehouse
        .write_partition(&TableName::parse(&table)?, "ds", ds, &[batch])
        .await?;
    Ok(ComparisonReport {
        table,
        rows,
        features,
        not_compared,
    })
}

/// One type for a feature's offline and online columns: equal types stay; numbers meet as
/// Float64 (or Int64 when both are integers); anything else meets as JSON text. A feature the
/// backfill does not produce is null offline.
fn side_by_side(
    offline: Option<ArrayRef>,
    online: ArrayRef,
    feature: &str,
) -> Result<(ArrayRef, ArrayRef)> {
    let Some(offline) = offline else {
        let nulls = arrow::array::new_null_array(online.data_type(), online.len());
        return Ok((nulls, online));
    };
    let (a, b) = (offline.data_type(), online.data_type());
    if a == b {
        return Ok((offline, online));
    }
    let cast = |c: &ArrayRef, t: &DataType| {
        arrow::compute::cast(c, t).map_err(|e| EngineError::Arrow {
            context: format!("feature {feature} as {t}"),
            source: e,
        })
    };
    let t = if a.is_integer() && b.is_integer() {
        DataType::Int64
    } else if a.is_numeric() && b.is_numeric() {
        DataType::Float64
    } else {
        return Ok((json_text(&offline), json_text(&online)));
    };
    Ok((cast(&offline, &t)?, cast(&online, &t)?))
}

/// A column as text: strings as they are, other values as JSON. Online values logged as JSON
/// text are re-serialized so both sides have one spelling.
fn json_text(c: &ArrayRef) -> ArrayRef {
    let text: StringArray = (0..c.len())
        .map(|r| match to_json(c.as_ref(), r) {
            Value::Null => None,
            Value::String(s) => Some(match serde_json::from_str::<Value>(&s) {
                Ok(v @ (Value::Array(_) | Value::Object(_))) => v.to_string(),
                _ => s,
            }),
            v => Some(v.to_string()),
        })
        .collect();
    Arc::new(text)
}

/// One row of `<join>_consistency`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureConsistency {
    pub feature: String,
    pub rows: u64,
    pub both_null: u64,
    pub online_null_only: u64,
    pub offline_null_only: u64,
    /// Rows where both sides have a value and they differ.
    pub mismatches: u64,
    /// Mean SMAPE (`|a-b| / ((|a|+|b|)/2)`, 0 when both are 0) over rows with both values;
    /// numbers only.
    pub smape: Option<f64>,
    /// 1 - (mismatches + one-sided nulls) / rows; for `__overall__`, 1 - rows with any
    /// inconsistent feature / rows.
    pub consistency: f64,
}

/// Whether two JSON values are equal: floats within `FLOAT_TOLERANCE` relative, else exactly.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_f64(), y.as_f64()) {
                (Some(f), Some(g)) => {
                    f == g || (f - g).abs() <= FLOAT_TOLERANCE * f.abs().max(g.abs())
                }
                _ => false,
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        _ => a == b,
    }
}

/// The metrics half of `consistency-metrics-compute` (the job also writes drift, see
/// `ConsistencyJob::run`): `<join>_comparison` of `ds` into `<join>_consistency`.
pub async fn compute_metrics(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    ds: PartitionDate,
) -> Result<Vec<FeatureConsistency>> {
    let comparison = read_comparison(warehouse, loaded, ds).await?;
    write_metrics(warehouse, loaded, ds, &comparison).await
}

async fn read_comparison(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    ds: PartitionDate,
) -> Result<RecordBatch> {
    read_day(
        warehouse,
        loaded,
        &comparison_table(&loaded.output_table()),
        ds,
        "run build-comparison-table for that day first",
    )
    .await
}

/// Partition `ds` of `<join>_consistency` from that day's comparison rows.
async fn write_metrics(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    ds: PartitionDate,
    comparison: &RecordBatch,
) -> Result<Vec<FeatureConsistency>> {
    let output = loaded.output_table();
    let metrics = metrics_of(comparison);
    let table = consistency_table(&output);
    let batch = metrics_batch(&metrics).map_err(|e| EngineError::Arrow {
        context: format!("building {table}"),
        source: e,
    })?;
    warehouse
        .write_partition(&TableName::parse(&table)?, "ds", ds, &[batch])
        .await?;
    Ok(metrics)
}

/// The metrics of a comparison batch: one per feature (a column with a `_online` twin), then
/// `__overall__`.
pub fn metrics_of(comparison: &RecordBatch) -> Vec<FeatureConsistency> {
    let rows = comparison.num_rows();
    let mut inconsistent_row = vec![false; rows];
    let mut out = Vec::new();
    for f in comparison.schema().fields() {
        let Some(online) = comparison.column_by_name(&format!("{}{ONLINE_SUFFIX}", f.name()))
        else {
            continue;
        };
        let offline = comparison.column_by_name(f.name()).expect("own field");
        let numeric = f.data_type().is_numeric() && online.data_type().is_numeric();
        let mut m = FeatureConsistency {
            feature: f.name().clone(),
            rows: rows as u64,
            both_null: 0,
            online_null_only: 0,
            offline_null_only: 0,
            mismatches: 0,
            smape: None,
            consistency: 1.0,
        };
        let (mut smape_sum, mut smape_n) = (0.0, 0u64);
        for (r, bad) in inconsistent_row.iter_mut().enumerate() {
            let (a, b) = (to_json(offline.as_ref(), r), to_json(online.as_ref(), r));
            match (a.is_null(), b.is_null()) {
                (true, true) => m.both_null += 1,
                (false, true) => {
                    m.online_null_only += 1;
                    *bad = true;
                }
                (true, false) => {
                    m.offline_null_only += 1;
                    *bad = true;
                }
                (false, false) => {
                    if !values_equal(&a, &b) {
                        m.mismatches += 1;
                        *bad = true;
                    }
                    if numeric && let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
                        let denominator = (x.abs() + y.abs()) / 2.0;
                        if denominator > 0.0 {
                            smape_sum += (x - y).abs() / denominator;
                        }
                        smape_n += 1;
                    }
                }
            }
        }
        if numeric && smape_n > 0 {
            m.smape = Some(smape_sum / smape_n as f64);
        }
        let inconsistent = m.mismatches + m.online_null_only + m.offline_null_only;
        m.consistency = rate(inconsistent, m.rows);
        out.push(m);
    }
    let bad = inconsistent_row.iter().filter(|b| **b).count() as u64;
    out.push(FeatureConsistency {
        feature: OVERALL.to_owned(),
        rows: rows as u64,
        both_null: 0,
        online_null_only: 0,
        offline_null_only: 0,
        mismatches: bad,
        smape: None,
        consistency: rate(bad, rows as u64),
    });
    out
}

/// 1 - bad / rows; 1.0 for no rows (nothing was inconsistent).
fn rate(bad: u64, rows: u64) -> f64 {
    if rows == 0 {
        1.0
    } else {
        1.0 - bad as f64 / rows as f64
    }
}

fn metrics_batch(
    metrics: &[FeatureConsistency],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let count = |f: fn(&FeatureConsistency) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            metrics
                .iter()
                .map(|m| i64::try_from(f(m)).unwrap_or(i64::MAX)),
        ))
    };
    let schema = Schema::new(vec![
        Field::new("feature", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("both_null", DataType::Int64, false),
        Field::new("online_null_only", DataType::Int64, false),
        Field::new("offline_null_only", DataType::Int64, false),
        Field::new("mismatches", DataType::Int64, false),
        Field::new("smape", DataType::Float64, true),
        Field::new("consistency_rate", DataType::Float64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from_iter_values(
                metrics.iter().map(|m| m.feature.as_str()),
            )),
            count(|m| m.rows),
            count(|m| m.both_null),
            count(|m| m.online_null_only),
            count(|m| m.offline_null_only),
            count(|m| m.mismatches),
            Arc::new(arrow::array::Float64Array::from(
                metrics.iter().map(|m| m.smape).collect::<Vec<_>>(),
            )),
            Arc::new(arrow::array::Float64Array::from_iter_values(
                metrics.iter().map(|m| m.consistency),
            )),
        ],
    )
}

/// A short summary: the overall rate, then the features with inconsistencies (worst first).
pub fn summary(join: &str, ds: PartitionDate, metrics: &[FeatureConsistency]) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(o) = metrics.iter().find(|m| m.feature == OVERALL) {
        lines.push(format!(
            "consistency {join} ds={ds}: {:.6} ({} of {} rows with an inconsistent feature, {} features)",
            o.consistency,
            o.mismatches,
            o.rows,
            metrics.len().saturating_sub(1)
        ));
    }
    let mut worst: Vec<&FeatureConsistency> = metrics
        .iter()
        .filter(|m| m.feature != OVERALL && m.consistency < 1.0)
        .collect();
    worst.sort_by(|a, b| a.consistency.total_cmp(&b.consistency));
    for m in worst.iter().take(10) {
        lines.push(format!(
            "  {}: {:.6} (mismatches {}, online-only null {}, offline-only null {}{})",
            m.feature,
            m.consistency,
            m.mismatches,
            m.online_null_only,
            m.offline_null_only,
            m.smape
                .map(|s| format!(", SMAPE {s:.6}"))
                .unwrap_or_default()
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_equal_within_the_tolerance_and_others_exactly() {
        assert!(values_equal(&Value::from(1.0), &Value::from(1.0 + 1e-12)));
        assert!(!values_equal(&Value::from(1.0), &Value::from(1.0001)));
        assert!(values_equal(&Value::from(3), &Value::from(3.0)));
        assert!(!values_equal(&Value::from(3), &Value::from(4)));
        assert!(!values_equal(&Value::from("a"), &Value::from("b")));
    }

    #[test]
    fn types_are_inferred_from_json_values() {
        assert_eq!(infer_type(&[Value::Null, Value::from(1)]), DataType::Int64);
        assert_eq!(
            infer_type(&[Value::from(1), Value::from(1.5)]),
            DataType::Float64
        );
        assert_eq!(
            infer_type(&[Value::from(1), Value::from("x")]),
            DataType::Utf8
        );
        assert_eq!(infer_type(&[Value::Null]), DataType::Utf8);
    }

    #[test]
    fn metrics_count_nulls_mismatches_and_smape() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("f", DataType::Float64, true),
                Field::new("f_online", DataType::Float64, true),
            ])),
            vec![
                Arc::new(arrow::array::Float64Array::from(vec![
                    Some(1.0),
                    None,
                    Some(2.0),
                    None,
                    Some(4.0),
                ])),
                Arc::new(arrow::array::Float64Array::from(vec![
                    Some(1.0),
                    None,
                    None,
                    Some(3.0),
                    Some(2.0),
                ])),
            ],
        )
        .expect("a batch");
        let m = metrics_of(&batch);
        assert_eq!(m.len(), 2);
        let f = &m[0];
        assert_eq!(
            (
                f.rows,
                f.both_null,
                f.online_null_only,
                f.offline_null_only,
                f.mismatches
            ),
            (5, 1, 1, 1, 1)
        );
        // Rows with both: (1,1) -> 0, (4,2) -> 2/3.
        assert!((f.smape.expect("numbers") - 1.0 / 3.0).abs() < 1e-12);
        assert!((f.consistency - 0.4).abs() < 1e-12);
        assert_eq!(m[1].feature, OVERALL);
        assert_eq!(m[1].mismatches, 3);
    }
}
