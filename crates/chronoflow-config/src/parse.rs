//! Decoding compiled Chronon JSON (either dialect) into the typed model.
//!
//! Every decoder takes the value and its JSON path, pushes diagnostics for what is wrong, and
//! returns what it could read. A config whose file produced any error is kept out of the plan
//! by the caller; decoders only need to be total (no panics, on any input).

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde_json::Value;

use crate::decode::{
    DecodeContext, Fields, JsonPath, decode_i64, decode_string_list, decode_string_map, describe,
};
use crate::dependency::{PartitionDependency, parse_spec};
use crate::diagnostic::{DiagnosticCode, Severity};
use crate::model::*;
use crate::validate;

/// Dialect markers of SPEC §1: ZL metadata carries `executionInfo`/`version`/`sourceFile`/
/// `columnHashes`, names end in `__<n>`, joins carry `useLongNames`; AB carries
/// `dependencies`/`offlineSchedule`/`modeToEnvMap`. Without markers, the layout decides.
pub fn detect_dialect(value: &Value, layout_default: Dialect) -> Dialect {
    let Some(obj) = value.as_object() else {
        return layout_default;
    };
    if obj.contains_key("useLongNames") {
        return Dialect::Zipline;
    }
    let Some(meta) = obj.get("metaData").and_then(Value::as_object) else {
        return layout_default;
    };
    let zl = ["executionInfo", "version", "sourceFile", "columnHashes"]
        .iter()
        .any(|k| meta.contains_key(*k))
        || meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(has_version_suffix);
    let ab = ["dependencies", "offlineSchedule", "modeToEnvMap"]
        .iter()
        .any(|k| meta.contains_key(*k));
    match (zl, ab) {
        (true, false) => Dialect::Zipline,
        (false, true) => Dialect::Airbnb,
        _ => layout_default,
    }
}

/// Whether a name ends in ZL's `__<digits>` version suffix.
pub fn has_version_suffix(name: &str) -> bool {
    name.rsplit_once("__").is_some_and(|(head, v)| {
        !head.is_empty() && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Decodes one config of the given kind from its top-level JSON value.
pub fn decode_config(cx: &mut DecodeContext<'_>, kind: ConfigKind, value: Value) -> Option<Config> {
    let root = JsonPath::root();
    match kind {
        ConfigKind::GroupBy => group_by(cx, value, root).map(Config::GroupBy),
        ConfigKind::Join => join(cx, value, root).map(Config::Join),
        ConfigKind::StagingQuery => staging_query(cx, value, root).map(Config::StagingQuery),
    }
}

pub fn group_by(cx: &mut DecodeContext<'_>, value: Value, path: JsonPath) -> Option<GroupBy> {
    let errors = cx.error_count();
    let mut f = cx.object(value, &path)?;
    let metadata = required_metadata(cx, &mut f);
    let has_sources = f.has("sources");
    let sources = f.list(cx, "sources", source);
    let has_keys = f.has("keyColumns");
    if f.is_empty_array("keyColumns") {
        cx.invalid_value(
            &f.field_path("keyColumns"),
            "a GroupBy needs at least one key column: without, its backfill writes no rows and nothing can be fetched",
            "non-empty array of key column names",
            &Value::Array(vec![]),
        );
    }
    let key_columns = f.string_list(cx, "keyColumns");
    if f.is_empty_array("aggregations") {
        // Chronon's compilers read `[]` as "no aggregation" (the selected columns are the
        // features) or as zero features, depending on which of them reads it.
        cx.invalid_value(
            &f.field_path("aggregations"),
            "aggregations is empty: the GroupBy would have no features; omit it to make the selected columns the features",
            "non-empty array of aggregations, or no field",
            &Value::Array(vec![]),
        );
    }
    let aggregations = f.list(cx, "aggregations", aggregation);
    let explicit_accuracy = f.integer(cx, "accuracy").and_then(|code| {
        let a = Accuracy::from_code(code);
        if a.is_none() {
            cx.invalid_value(
                &f.field_path("accuracy"),
                "unknown accuracy",
                "0 (TEMPORAL) or 1 (SNAPSHOT)",
                &code.into(),
            );
        }
        a
    });
    let backfill_start_date = f.date(cx, "backfillStartDate");
    let derivations = f.list(cx, "derivations", derivation).unwrap_or_default();
    let sources = match sources {
        Some(s) if !s.is_empty() => s,
        Some(_) => {
            cx.invalid_value(
                &f.field_path("sources"),
                "a GroupBy needs at least one source",
                "non-empty array",
                &Value::Array(vec![]),
            );
            Vec::new()
        }
        None if !has_sources => {
            cx.missing(&f.field_path("sources"), "array of sources");
            Vec::new()
        }
        None => Vec::new(),
    };
    if key_columns.is_empty() && !has_keys {
        cx.missing(&f.field_path("keyColumns"), "array of key column names");
    }
    f.finish(cx);
    let group_by = GroupBy {
        metadata: metadata?,
        sources,
        key_columns,
        aggregations,
        explicit_accuracy,
        backfill_start_date,
        derivations,
    };
    if cx.error_count() == errors {
        validate::group_by(cx, &group_by, &path);
    }
    Some(group_by)
}

pub fn join(cx: &mut DecodeContext<'_>, value: Value, path: JsonPath) -> Option<Join> {
    let errors = cx.error_count();
    let mut f = cx.object(value, &path)?;
    let metadata = required_metadata(cx, &mut f);
    let left = match f.take("left") {
        Some(v) => {
            let left_path = f.field_path("left");
            let s = source(cx, v, left_path.clone());
            if let Some(Source::JoinSource(_)) = s {
                cx.error(
                    DiagnosticCode::InvalidValue,
                    &left_path,
                    "the left side of a Join must be an events or entities source",
                );
                None
            } else {
                s
            }
        }
        None => {
            cx.missing(&f.field_path("left"), "source (events or entities)");
            None
        }
    };
    let join_parts = f.list(cx, "joinParts", join_part).unwrap_or_default();
    let derivations = f.list(cx, "derivations", derivation).unwrap_or_default();
    let bootstrap_parts = f
        .list(cx, "bootstrapParts", bootstrap_part)
        .unwrap_or_default();
    let label_part = f.object(cx, "labelPart", |cx, mut lf| {
        let labels = lf.list(cx, "labels", join_part).unwrap_or_default();
        let left_start_offset = lf.integer(cx, "leftStartOffset");
        let left_end_offset = lf.integer(cx, "leftEndOffset");
        let label_metadata = lf.object(cx, "metaData", |cx, mf| self::metadata(cx, mf, false));
        lf.finish(cx);
        Some(LabelPart {
            labels,
            left_start_offset,
            left_end_offset,
            metadata: label_metadata,
        })
    });
    let online_external_parts = f
        .list(cx, "onlineExternalParts", external_part)
        .unwrap_or_default();
    let skew_keys = match f.take("skewKeys") {
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| {
                let list = decode_string_list(cx, &f.field_path("skewKeys").field(&k), v);
                (k, list)
            })
            .collect(),
        Some(other) => {
            cx.wrong_type(&f.field_path("skewKeys"), "object of string arrays", &other);
            BTreeMap::new()
        }
        None => BTreeMap::new(),
    };
    let row_ids = f.string_list(cx, "rowIds");
    let use_long_names = f.boolean(cx, "useLongNames");
    f.finish(cx);
    let join = Join {
        metadata: metadata?,
        left: left?,
        join_parts,
        derivations,
        bootstrap_parts,
        label_part,
        online_external_parts,
        skew_keys,
        row_ids,
        use_long_names,
    };
    if cx.error_count() == errors {
        validate::join(cx, &join, &path);
    }
    Some(join)
}

pub fn staging_query(
    cx: &mut DecodeContext<'_>,
    value: Value,
    path: JsonPath,
) -> Option<StagingQuery> {
    let mut f = cx.object(value, &path)?;
    let metadata = required_metadata(cx, &mut f);
    let query = f.required_string(cx, "query");
    if let Some(q) = &query
        && q.trim().is_empty()
    {
        cx.invalid_value(
            &f.field_path("query"),
            "the query is empty: the backfill would have nothing to run",
            "a Spark SQL query",
            &Value::String(q.clone()),
        );
    }
    let start_partition = f.date(cx, "startPartition");
    let setups = f.string_list(cx, "setups");
    let table_dependencies = f
        .list(cx, "tableDependencies", table_dependency)
        .unwrap_or_default();
    let recompute_days = f.integer(cx, "recomputeDays");
    f.ignore(&["engineType", "createView"]);
    f.finish(cx);
    Some(StagingQuery {
        metadata: metadata?,
        query: query?,
        start_partition,
        setups,
        table_dependencies,
        recompute_days,
    })
}

fn required_metadata(cx: &mut DecodeContext<'_>, f: &mut Fields) -> Option<MetaData> {
    if !f.has("metaData") {
        f.ignore(&["metaData"]);
        cx.missing(&f.field_path("metaData"), "object with at least `name`");
        return None;
    }
    f.object(cx, "metaData", |cx, mf| metadata(cx, mf, true))
}

/// `MetaData`; `require_name` is false only for label parts, whose metadata carries just
/// dependencies and a schedule.
pub fn metadata(cx: &mut DecodeContext<'_>, mut f: Fields, require_name: bool) -> Option<MetaData> {
    let name = if require_name {
        f.required_string(cx, "name")
    } else {
        f.string(cx, "name")
    };
    if let Some(n) = &name
        && require_name
        && n.trim().is_empty()
    {
        cx.invalid_value(
            &f.field_path("name"),
            "the name is empty",
            "team.file.variable",
            &Value::String(n.clone()),
        );
    }
    let team = f.string(cx, "team");
    let online = f.boolean(cx, "online").unwrap_or(false);
    let production = f.boolean(cx, "production").unwrap_or(false);
    let output_namespace = f.string(cx, "outputNamespace");
    let table_properties = f.string_map(cx, "tableProperties");
    let custom_json = match f.embedded_json(cx, "customJson") {
        Some(v) => custom_json(cx, v, f.field_path("customJson")),
        None => CustomJson::default(),
    };
    let dependencies = match f.take("dependencies") {
        Some(v) => ab_dependencies(cx, v, f.field_path("dependencies")),
        None => Vec::new(),
    };
    let offline_schedule = f.string(cx, "offlineSchedule");
    let sample_percent = percent(cx, &mut f, "samplePercent");
    let consistency_sample_percent = percent(cx, &mut f, "consistencySamplePercent");
    let consistency_check = f.boolean(cx, "consistencyCheck");
    let historical_backfill = f.boolean(cx, "historicalBackfill");
    let deprecation_date = f.date(cx, "deprecationDate");
    let mode_to_env = match f.take("modeToEnvMap") {
        Some(v) => nested_string_maps(cx, v, f.field_path("modeToEnvMap")),
        None => BTreeMap::new(),
    };
    let execution_info = f.object(cx, "executionInfo", execution_info);
    let version = f.string(cx, "version");
    let source_file = f.string(cx, "sourceFile");
    let column_hashes = f.string_map(cx, "columnHashes");
    let tags = match f.take("tags") {
        Some(v) => tags(cx, v, &f.field_path("tags")),
        None => Vec::new(),
    };
    f.ignore(&["owningTeam", "lag", "columnTags"]);
    f.finish(cx);
    let offline_schedule = offline_schedule.or_else(|| {
        execution_info
            .as_ref()
            .and_then(|e: &ExecutionInfo| e.offline_schedule.clone())
    });
    let online_schedule = execution_info
        .as_ref()
        .and_then(|e| e.online_schedule.clone());
    Some(MetaData {
        name: name.unwrap_or_default(),
        team,
        online,
        production,
        output_namespace,
        table_properties,
        custom_json,
        dependencies,
        offline_schedule,
        online_schedule,
        sample_percent,
        consistency_sample_percent,
        consistency_check,
        historical_backfill: historical_backfill
            .or_else(|| execution_info.as_ref().and_then(|e| e.historical_backfill)),
        deprecation_date,
        mode_to_env,
        execution_info,
        version,
        source_file,
        column_hashes,
        tags,
    })
}

fn percent(cx: &mut DecodeContext<'_>, f: &mut Fields, name: &'static str) -> Option<f64> {
    let p = f.number(cx, name)?;
    if !(0.0..=100.0).contains(&p) {
        cx.invalid_value(
            &f.field_path(name),
            "a percentage must be between 0 and 100",
            "0..=100",
            &Value::from(p),
        );
        return None;
    }
    Some(p)
}

fn custom_json(cx: &mut DecodeContext<'_>, value: Value, path: JsonPath) -> CustomJson {
    let map = match value {
        Value::Object(m) => m,
        Value::Null => return CustomJson::default(),
        other => {
            cx.wrong_type(&path, "a JSON object inside the string", &other);
            return CustomJson::default();
        }
    };
    let mut out = CustomJson::default();
    for (key, v) in map {
        let p = path.field(&key);
        match key.as_str() {
            "lag" if !v.is_null() => out.lag = decode_i64(cx, &p, &v),
            "check_consistency" if !v.is_null() => {
                out.check_consistency = crate::decode::decode_bool(cx, &p, &v)
            }
            "additional_args" if !v.is_null() => {
                out.additional_args = match v {
                    Value::Array(_) => Some(AdditionalArgs::List(decode_string_list(cx, &p, v))),
                    _ => Some(AdditionalArgs::Named(scalar_map(cx, v, &p))),
                }
            }
            "airflowDependencies" if !v.is_null() => {
                out.airflow_dependencies = Some(zl_airflow_dependencies(cx, v, p))
            }
            // Chronon's Python API writes a GroupBy's `tags=` as `groupby_tags`, a Join's as `join_tags`.
            "tags" | "groupby_tags" | "join_tags" if !v.is_null() => {
                out.tags.extend(tags(cx, v, &p))
            }
            _ => {
                out.other.insert(key, v);
            }
        }
    }
    out
}

/// Tags as `key:value` strings: a map (ZL's thrift `map<string, string>`, AB's Python dict; scalar
/// values are rendered as strings, an empty value leaves the bare key) or a list of strings
/// already in that form.
fn tags(cx: &mut DecodeContext<'_>, value: Value, path: &JsonPath) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .into_iter()
            .filter_map(|(key, v)| {
                let p = path.field(&key);
                let text = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => String::new(),
                    other => {
                        cx.wrong_type(&p, "tag value: string, number or boolean", &other);
                        return None;
                    }
                };
                if key.trim().is_empty() || key.contains(':') {
                    let reason = "a tag key must be non-empty and without `:`";
                    cx.invalid_value(&p, reason, "key: value", &Value::String(key));
                    return None;
                }
                Some(if text.is_empty() {
                    key
                } else {
                    format!("{key}:{text}")
                })
            })
            .collect(),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(s) if !s.trim().is_empty() && !s.starts_with(':') => Some(s),
                Value::String(s) => {
                    let reason = "a tag must be non-empty and start with its key";
                    cx.invalid_value(&path.index(i), reason, "\"key:value\"", &Value::String(s));
                    None
                }
                other => {
                    cx.wrong_type(&path.index(i), "tag string \"key:value\"", &other);
                    None
                }
            })
            .collect(),
        other => {
            cx.wrong_type(
                path,
                "object of tags (key -> value) or array of \"key:value\" strings",
                &other,
            );
            Vec::new()
        }
    }
}

/// An object whose values are scalars, rendered as strings (`additional_args` values may be numbers).
fn scalar_map(
    cx: &mut DecodeContext<'_>,
    value: Value,
    path: &JsonPath,
) -> BTreeMap<String, String> {
    let Value::Object(map) = value else {
        cx.wrong_type(
            path,
            "object of arguments or array of argument strings",
            &value,
        );
        return BTreeMap::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            other => {
                cx.wrong_type(&path.field(&k), "string, number or boolean", &other);
                None
            }
        })
        .collect()
}

/// AB `metaData.dependencies`: strings holding JSON `{name, spec, start, end}`, or a bare spec
/// (staging queries write bare specs).
fn ab_dependencies(
    cx: &mut DecodeContext<'_>,
    value: Value,
    path: JsonPath,
) -> Vec<PartitionDependency> {
    let Value::Array(items) = value else {
        cx.wrong_type(&path, "array of dependency strings", &value);
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let p = path.index(i);
        let Value::String(text) = item else {
            cx.wrong_type(&p, "string (a JSON object or a partition spec)", &item);
            continue;
        };
        if text.trim_start().starts_with('{') {
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => out.extend(dependency_object(cx, v, &p)),
                Err(e) => {
                    let d = cx.error(
                        DiagnosticCode::InvalidJson,
                        &p,
                        format!("dependency string does not hold valid JSON: {e}"),
                    );
                    d.found = Some(describe(&Value::String(text)));
                }
            }
        } else {
            out.extend(spec(cx, &text, &p));
        }
    }
    out
}

/// ZL `customJson.airflowDependencies`: `[{name, spec}]`.
fn zl_airflow_dependencies(
    cx: &mut DecodeContext<'_>,
    value: Value,
    path: JsonPath,
) -> Vec<PartitionDependency> {
    let Value::Array(items) = value else {
        cx.wrong_type(&path, "array of {name, spec} objects", &value);
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| dependency_object(cx, item, &path.index(i)))
        .collect()
}

/// `{name, spec, start, end}`; `path` points at the dependency (inside a string, for AB).
fn dependency_object(
    cx: &mut DecodeContext<'_>,
    value: Value,
    path: &JsonPath,
) -> Option<PartitionDependency> {
    let mut f = cx.object(value, path)?;
    let _name = f.string(cx, "name");
    let spec_text = f.required_string(cx, "spec");
    let start = f.date(cx, "start");
    let end = f.date(cx, "end");
    f.finish(cx);
    let mut dep = spec(cx, &spec_text?, &path.field("spec"))?;
    dep.start = start;
    dep.end = end;
    Some(dep)
}

fn spec(cx: &mut DecodeContext<'_>, text: &str, path: &JsonPath) -> Option<PartitionDependency> {
    match parse_spec(text) {
        Ok(d) => Some(d),
        Err(reason) => {
            cx.invalid_value(
                path,
                format!("invalid partition spec: {reason}"),
                "table/ds={{ ds }}",
                &Value::String(text.to_owned()),
            );
            None
        }
    }
}

pub(crate) fn execution_info(cx: &mut DecodeContext<'_>, mut f: Fields) -> Option<ExecutionInfo> {
    let env = f.object(cx, "env", mode_env).unwrap_or_default();
    let conf = f.object(cx, "conf", mode_env).unwrap_or_default();
    let offline_schedule = f.string(cx, "offlineSchedule");
    let online_schedule = f.string(cx, "onlineSchedule");
    let step_days = f.integer(cx, "stepDays");
    let historical_backfill = f.boolean(cx, "historicalBackfill");
    let table_dependencies = f
        .list(cx, "tableDependencies", table_dependency)
        .unwrap_or_default();
    f.ignore(&["clusterConf", "outputTableInfo", "scheduleCron"]);
    f.finish(cx);
    Some(ExecutionInfo {
        env,
        conf,
        offline_schedule,
        online_schedule,
        step_days,
        historical_backfill,
        table_dependencies,
    })
}

/// ZL `EnvironmentVariables` / `ConfigProperties`: `common` plus per-mode maps
/// (`modeEnvironments` or `modeConfigs`).
fn mode_env(cx: &mut DecodeContext<'_>, mut f: Fields) -> Option<ModeEnv> {
    let common = f.string_map(cx, "common");
    let mut modes = BTreeMap::new();
    for name in ["modeEnvironments", "modeConfigs"] {
        if let Some(v) = f.take(name) {
            modes.extend(nested_string_maps(cx, v, f.field_path(name)));
        }
    }
    f.finish(cx);
    Some(ModeEnv { common, modes })
}

fn nested_string_maps(
    cx: &mut DecodeContext<'_>,
    value: Value,
    path: JsonPath,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let Value::Object(map) = value else {
        cx.wrong_type(&path, "object of objects of strings", &value);
        return BTreeMap::new();
    };
    map.into_iter()
        .map(|(k, v)| {
            let vars = decode_string_map(cx, &path.field(&k), v)
                .into_iter()
                .collect();
            (k, vars)
        })
        .collect()
}

fn table_dependency(
    cx: &mut DecodeContext<'_>,
    value: Value,
    path: JsonPath,
) -> Option<TableDependency> {
    let mut f = cx.object(value, &path)?;
    let start_offset = f.object(cx, "startOffset", window_fields);
    let end_offset = f.object(cx, "endOffset", window_fields);
    let info = if f.has("tableInfo") {
        f.object(cx, "tableInfo", |cx, mut tf| {
            let table = tf.required_string(cx, "table");
            let partition_column = tf.string(cx, "partitionColumn");
            tf.ignore(&["partitionInterval", "partitionFormat", "isCumulative"]);
            tf.finish(cx);
            Some((table?, partition_column))
        })
    } else {
        f.ignore(&["tableInfo"]);
        cx.missing(&f.field_path("tableInfo"), "object with `table`");
        None
    };
    f.ignore(&["forceComputeFromPrevious", "onlyLatestPartition"]);
    f.finish(cx);
    let (table_text, partition_column) = info?;
    let table = table_ref(cx, &table_text, &path.field("tableInfo").field("table"))?;
    Some(TableDependency {
        table,
        partition_column,
        start_offset,
        end_offset,
    })
}

fn table_ref(cx: &mut DecodeContext<'_>, text: &str, path: &JsonPath) -> Option<TableRef> {
    match TableRef::parse(text) {
        Ok(t) => Some(t),
        Err(reason) => {
            cx.invalid_value(
                path,
                reason,
                "namespace.table[/key=value...]",
                &Value::String(text.to_owned()),
            );
            None
        }
    }
}

pub fn source(cx: &mut DecodeContext<'_>, value: Value, path: JsonPath) -> Option<Source> {
    let mut f = cx.object(value, &path)?;
    let present: Vec<&'static str> = ["events", "entities", "joinSource"]
        .into_iter()
        .filter(|k| f.has(k))
        .collect();
    if present.len() != 1 {
        f.ignore(&["events", "entities", "joinSource"]);
        f.finish(cx);
        let d = cx.error(
            DiagnosticCode::InvalidValue,
            &path,
            "a source must be exactly one of `events`, `entities`, `joinSource`",
        );
        d.found = Some(if present.is_empty() {
            "none".to_owned()
        } else {
            present.join(", ")
        });
        return None;
    }
    let out = match present[0] {
        "events" => f.object(cx, "events", |cx, mut ef| {
            let table = ef.required_string(cx, "table");
            let table_path = ef.field_path("table");
            let topic = ef.string(cx, "topic");
            let query = query_field(cx, &mut ef);
            let is_cumulative = ef.boolean(cx, "isCumulative").unwrap_or(false);
            ef.finish(cx);
            let table = table_ref(cx, &table?, &table_path)?;
            Some(Source::Events(EventSource {
                table,
                topic,
                query,
                is_cumulative,
            }))
        }),
        "entities" => f.object(cx, "entities", |cx, mut ef| {
            let snapshot = ef.required_string(cx, "snapshotTable");
            let snapshot_path = ef.field_path("snapshotTable");
            let mutation = ef.string(cx, "mutationTable");
            let mutation_path = ef.field_path("mutationTable");
            let mutation_topic = ef.string(cx, "mutationTopic");
            let query = query_field(cx, &mut ef);
            ef.finish(cx);
            let mutation_table = match mutation {
                Some(m) => Some(table_ref(cx, &m, &mutation_path)?),
                None => None,
            };
            let snapshot_table = table_ref(cx, &snapshot?, &snapshot_path)?;
            Some(Source::Entities(EntitySource {
                snapshot_table,
                mutation_table,
                mutation_topic,
                query,
            }))
        }),
        _ => f.object(cx, "joinSource", |cx, mut jf| {
            let parent = match jf.take("join") {
                Some(v) => join(cx, v, jf.field_path("join")),
                None => {
                    cx.missing(&jf.field_path("join"), "the parent Join");
                    None
                }
            };
            let query = query_field(cx, &mut jf);
            jf.finish(cx);
            Some(Source::JoinSource(JoinSource {
                join: Box::new(parent?),
                query,
            }))
        }),
    };
    f.finish(cx);
    out
}

/// The `query` of a source; absent means "all columns, no filter".
fn query_field(cx: &mut DecodeContext<'_>, f: &mut Fields) -> Query {
    f.object(cx, "query", |cx, qf| Some(query(cx, qf)))
        .unwrap_or_default()
}

pub fn query(cx: &mut DecodeContext<'_>, mut f: Fields) -> Query {
    let selects = f.ordered_string_map(cx, "selects");
    let wheres = f.string_list(cx, "wheres");
    let start_partition = f.date(cx, "startPartition");
    let end_partition = f.date(cx, "endPartition");
    if let (Some(s), Some(e)) = (start_partition, end_partition)
        && e < s
    {
        cx.invalid_value(
            &f.field_path("endPartition"),
            format!("endPartition is before startPartition {s}"),
            "a date on or after startPartition",
            &Value::String(e.to_string()),
        );
    }
    let time_column = f.string(cx, "timeColumn");
    let setups = f.string_list(cx, "setups");
    let mutation_time_column = f.string(cx, "mutationTimeColumn");
    let reversal_column = f.string(cx, "reversalColumn");
    let partition_column = f.string(cx, "partitionColumn");
    let partition_format = f.string(cx, "partitionFormat");
    let sub_partitions_to_wait_for = f.string_list(cx, "subPartitionsToWaitFor");
    f.ignore(&["partitionInterval"]);
    f.finish(cx);
    Query {
        selects,
        wheres,
        start_partition,
        end_partition,
        time_column,
        setups,
        mutation_time_column,
        reversal_column,
        partition_column,
        partition_format,
        sub_partitions_to_wait_for,
    }
}

fn aggregation(cx: &mut DecodeContext<'_>, value: Value, path: JsonPath) -> Option<Aggregation> {
    let mut f = cx.object(value, &path)?;
    let input_column = f.required_string(cx, "inputColumn");
    let operation = if f.has("operation") {
        f.integer(cx, "operation").and_then(|code| {
            let op = Operation::from_code(code, cx.dialect);
            if op.is_none() {
                let expected = match cx.dialect {
                    Dialect::Airbnb => "an Airbnb Operation code 0..=19",
                    Dialect::Zipline => "a Zipline Operation code 0..=20",
                };
                cx.invalid_value(
                    &f.field_path("operation"),
                    "unknown operation",
                    expected,
                    &code.into(),
                );
            }
            op
        })
    } else {
        f.ignore(&["operation"]);
        cx.missing(&f.field_path("operation"), "Operation code");
        None
    };
    let arg_map = f.string_map(cx, "argMap");
    // Chronon unpacks an aggregation into one feature per bucket and window: an empty list
    // (unlike an absent one) gives no feature at all.
    for (name, absent_means) in [("windows", "unwindowed"), ("buckets", "unbucketed")] {
        if f.is_empty_array(name) {
            cx.invalid_value(
                &f.field_path(name),
                format!("{name} is empty: Chronon computes no feature from this aggregation; omit it for an {absent_means} one"),
                "non-empty array, or no field",
                &Value::Array(vec![]),
            );
        }
    }
    let windows = f.list(cx, "windows", window).unwrap_or_default();
    let buckets = f.string_list(cx, "buckets");
    let arg_path = f.field_path("argMap");
    f.finish(cx);
    let operation = operation?;
    let k = k_argument(cx, operation, &arg_map, &arg_path)?;
    let percentiles = if operation == Operation::ApproxPercentile {
        percentiles(cx, &arg_map, &arg_path)?
    } else {
        Vec::new()
    };
    Some(Aggregation {
        input_column: input_column?,
        operation,
        arg_map,
        windows,
        buckets,
        k,
        percentiles,
    })
}

/// `k` with its defaults: required where the feature name embeds it; 128 for APPROX_PERCENTILE.
/// The outer `None` means an error was reported.
fn k_argument(
    cx: &mut DecodeContext<'_>,
    operation: Operation,
    arg_map: &BTreeMap<String, String>,
    path: &JsonPath,
) -> Option<Option<u32>> {
    match arg_map.get("k") {
        Some(text) => match text.trim().parse::<u32>() {
            Ok(k) if k > 0 || operation == Operation::Histogram => Some(Some(k)),
            _ => {
                cx.invalid_value(
                    &path.field("k"),
                    "k must be a positive integer",
                    "a positive integer",
                    &Value::String(text.clone()),
                );
                None
            }
        },
        None if operation.names_k() => {
            let d = cx.error(
                DiagnosticCode::MissingField,
                &path.field("k"),
                format!("{} needs argument k", operation.lower_name()),
            );
            d.expected = Some("a positive integer".to_owned());
            None
        }
        None if operation == Operation::ApproxPercentile => Some(Some(128)),
        None => Some(None),
    }
}

fn percentiles(
    cx: &mut DecodeContext<'_>,
    arg_map: &BTreeMap<String, String>,
    path: &JsonPath,
) -> Option<Vec<f64>> {
    let Some(text) = arg_map.get("percentiles") else {
        return Some(vec![0.5]);
    };
    let parsed: Option<Vec<f64>> = serde_json::from_str::<Vec<f64>>(text)
        .ok()
        .filter(|ps| !ps.is_empty() && ps.iter().all(|p| (0.0..=1.0).contains(p)));
    if parsed.is_none() {
        cx.invalid_value(
            &path.field("percentiles"),
            "percentiles must be a JSON list of numbers between 0 and 1",
            "e.g. \"[0.5, 0.99]\"",
            &Value::String(text.clone()),
        );
    }
    parsed
}

fn window(cx: &mut DecodeContext<'_>, value: Value, path: JsonPath) -> Option<Window> {
    let f = cx.object(value, &path)?;
    window_fields(cx, f)
}

fn window_fields(cx: &mut DecodeContext<'_>, mut f: Fields) -> Option<Window> {
    let length = if f.has("length") {
        f.integer(cx, "length")
    } else {
        f.ignore(&["length"]);
        cx.missing(&f.field_path("length"), "positive integer");
        None
    };
    let unit = if f.has("timeUnit") {
        f.integer(cx, "timeUnit").and_then(|code| {
            let u = TimeUnit::from_code(code, cx.dialect);
            if u.is_none() {
                let expected = match cx.dialect {
                    Dialect::Airbnb => "0 (HOURS) or 1 (DAYS)",
                    Dialect::Zipline => "0 (HOURS), 1 (DAYS) or 2 (MINUTES)",
                };
                cx.invalid_value(
                    &f.field_path("timeUnit"),
                    "unknown time unit",
                    expected,
                    &code.into(),
                );
            }
            u
        })
    } else {
        f.ignore(&["timeUnit"]);
        cx.missing(&f.field_path("timeUnit"), "TimeUnit code");
        None
    };
    let length_path = f.field_path("length");
    f.finish(cx);
    let length = length?;
    // Ten years in minutes still fits; anything larger is a typo, and bounding it keeps window
    // arithmetic in milliseconds from overflowing.
    let length = match u32::try_from(length) {
        Ok(l) if l > 0 && l <= 10_000_000 => l,
        _ => {
            cx.invalid_value(
                &length_path,
                "window length out of range",
                "1..=10000000",
                &length.into(),
            );
            return None;
        }
    };
    Some(Window {
        length,
        unit: unit?,
    })
}

fn derivation(cx: &mut DecodeContext<'_>, value: Value, path: JsonPath) -> Option<Derivation> {
    let mut f = cx.object(value, &path)?;
    let name = f.required_string(cx, "name");
    let expression = f.required_string(cx, "expression");
    f.finish(cx);
    Some(Derivation {
        name: name?,
        expression: expression?,
    })
}

fn join_part(cx: &mut DecodeContext<'_>, value: Value, path: JsonPath) -> Option<JoinPart> {
    let mut f = cx.object(value, &path)?;
    let group_by = match f.take("groupBy") {
        Some(v) => group_by(cx, v, f.field_path("groupBy")),
        None => {
            cx.missing(&f.field_path("groupBy"), "the GroupBy of this part");
            None
        }
    };
    let key_mapping = key_mapping(cx, &mut f);
    let prefix = f.string(cx, "prefix");
    let use_long_names = f.boolean(cx, "useLongNames");
    f.finish(cx);
    Some(JoinPart {
        group_by: group_by?,
        key_mapping,
        prefix,
        use_long_names,
    })
}

fn key_mapping(cx: &mut DecodeContext<'_>, f: &mut Fields) -> IndexMap<String, String> {
    match f.take("keyMapping") {
        Some(v) => decode_string_map(cx, &f.field_path("keyMapping"), v),
        None => IndexMap::new(),
    }
}

fn bootstrap_part(
    cx: &mut DecodeContext<'_>,
    value: Value,
    path: JsonPath,
) -> Option<BootstrapPart> {
    let mut f = cx.object(value, &path)?;
    let table = f.required_string(cx, "table");
    let table_path = f.field_path("table");
    let query = f.object(cx, "query", |cx, qf| Some(query(cx, qf)));
    let key_columns = f.string_list(cx, "keyColumns");
    f.finish(cx);
    let table = table_ref(cx, &table?, &table_path)?;
    Some(BootstrapPart {
        table,
        query,
        key_columns,
    })
}

fn external_part(cx: &mut DecodeContext<'_>, value: Value, path: JsonPath) -> Option<ExternalPart> {
    let mut f = cx.object(value, &path)?;
    let source = if f.has("source") {
        f.object(cx, "source", |cx, mut sf| {
            let has_metadata = sf.has("metadata");
            let meta = sf.object(cx, "metadata", |cx, mut mf| {
                let name = mf.required_string(cx, "name");
                let team = mf.string(cx, "team");
                mf.finish(cx);
                Some((name?, team))
            });
            if !has_metadata {
                cx.missing(&sf.field_path("metadata"), "object with `name`");
            }
            let key_schema = sf
                .take("keySchema")
                .and_then(|v| data_type(cx, v, sf.field_path("keySchema")));
            let value_schema = sf
                .take("valueSchema")
                .and_then(|v| data_type(cx, v, sf.field_path("valueSchema")));
            let offline_group_by = sf
                .take("offlineGroupBy")
                .and_then(|v| group_by(cx, v, sf.field_path("offlineGroupBy")));
            sf.finish(cx);
            let (name, team) = meta?;
            Some(ExternalSource {
                name,
                team,
                key_schema,
                value_schema,
                offline_group_by,
            })
        })
    } else {
        f.ignore(&["source"]);
        cx.missing(&f.field_path("source"), "the external source");
        None
    };
    let key_mapping = key_mapping(cx, &mut f);
    let prefix = f.string(cx, "prefix");
    f.finish(cx);
    Some(ExternalPart {
        source: source?,
        key_mapping,
        prefix,
    })
}

fn data_type(cx: &mut DecodeContext<'_>, value: Value, path: JsonPath) -> Option<DataType> {
    let mut f = cx.object(value, &path)?;
    let has_kind = f.has("kind");
    let kind = f.integer(cx, "kind").and_then(|code| {
        let k = DataKind::from_code(code, cx.dialect);
        if k.is_none() {
            cx.invalid_value(
                &f.field_path("kind"),
                "unknown data kind",
                "a DataKind code",
                &code.into(),
            );
        }
        k
    });
    if !has_kind {
        cx.missing(&f.field_path("kind"), "DataKind code");
    }
    let name = f.string(cx, "name");
    let params = f
        .list(cx, "params", |cx, v, p| {
            let mut pf = cx.object(v, &p)?;
            let name = pf.required_string(cx, "name");
            let dt = match pf.take("dataType") {
                Some(d) => data_type(cx, d, pf.field_path("dataType")),
                None => {
                    cx.missing(&pf.field_path("dataType"), "DataType");
                    None
                }
            };
            pf.finish(cx);
            Some((name?, dt?))
        })
        .unwrap_or_default();
    f.finish(cx);
    Some(DataType {
        kind: kind?,
        name,
        params,
    })
}

/// Reports a severity-`Notice` "not supported yet" for a whole file.
pub fn unsupported(cx: &mut DecodeContext<'_>, what: &str) {
    cx.push(
        Severity::Notice,
        DiagnosticCode::Unsupported,
        &JsonPath::root(),
        format!("{what} are not supported yet; the file is skipped"),
    );
}
