//! Every name chronoflow derives from a config (SPEC §2): tables, feature columns, KV datasets.
//!
//! One module so that the engine, the planner and the fetcher can never disagree on a name.

use crate::model::{
    Aggregation, Dialect, ExternalPart, GroupBy, Join, JoinPart, Query, Source, Window,
};

/// Replaces every character outside `[A-Za-z0-9_]` with `_`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The output table of a GroupBy backfill, Join or StagingQuery: `<namespace>.<sanitize(name)>`.
pub fn output_table(namespace: &str, config_name: &str) -> String {
    format!("{namespace}.{}", sanitize(config_name))
}

/// The table a GroupBy `upload` writes: `<output>_upload` (ZL: `<output>__upload`).
pub fn upload_table(output_table: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Airbnb => format!("{output_table}_upload"),
        Dialect::Zipline => format!("{output_table}__upload"),
    }
}

/// Tables derived from a Join's output table.
pub fn logged_table(output_table: &str) -> String {
    format!("{output_table}_logged")
}

pub fn comparison_table(output_table: &str) -> String {
    format!("{output_table}_comparison")
}

pub fn consistency_table(output_table: &str) -> String {
    format!("{output_table}_consistency")
}

/// Per feature and side (online, offline), the day's distribution summary and its population
/// stability index against the trailing week: `<output>_drift`.
pub fn drift_table(output_table: &str) -> String {
    format!("{output_table}_drift")
}

pub fn daily_stats_table(output_table: &str) -> String {
    format!("{output_table}_daily_stats")
}

pub fn bootstrap_table(output_table: &str) -> String {
    format!("{output_table}_bootstrap")
}

/// The intermediate table a Join backfill writes per part: `<join output>_<sanitize(groupBy name)>`.
pub fn join_part_table(join_output_table: &str, group_by_name: &str) -> String {
    format!("{join_output_table}_{}", sanitize(group_by_name))
}

/// The operation part of a feature name: the lower-case operation, or `last<k>`-style for the
/// operations whose name carries `k`.
pub fn operation_suffix(aggregation: &Aggregation) -> String {
    use crate::model::Operation::*;
    let k = aggregation.k.unwrap_or(0);
    match aggregation.operation {
        LastK => format!("last{k}"),
        FirstK => format!("first{k}"),
        TopK => format!("top{k}"),
        BottomK => format!("bottom{k}"),
        UniqueTopK => format!("unique_top{k}"),
        other => other.lower_name().to_owned(),
    }
}

/// `<inputColumn>_<op>[_<length><unit>][_by_<bucket>]`.
pub fn feature_column(
    aggregation: &Aggregation,
    window: Option<Window>,
    bucket: Option<&str>,
) -> String {
    let mut name = format!(
        "{}_{}",
        aggregation.input_column,
        operation_suffix(aggregation)
    );
    if let Some(w) = window {
        name.push_str(&format!("_{}{}", w.length, w.unit.suffix()));
    }
    if let Some(b) = bucket {
        name.push_str("_by_");
        name.push_str(b);
    }
    name
}

/// The feature columns one aggregation produces: buckets outer, windows inner.
pub fn aggregation_columns(aggregation: &Aggregation) -> Vec<String> {
    let windows: Vec<Option<Window>> = if aggregation.windows.is_empty() {
        vec![None]
    } else {
        aggregation.windows.iter().copied().map(Some).collect()
    };
    let buckets: Vec<Option<&str>> = if aggregation.buckets.is_empty() {
        vec![None]
    } else {
        aggregation
            .buckets
            .iter()
            .map(|b| Some(b.as_str()))
            .collect()
    };
    buckets
        .iter()
        .flat_map(|b| {
            windows
                .iter()
                .map(move |w| feature_column(aggregation, *w, *b))
        })
        .collect()
}

/// The base features of a GroupBy, before derivations: every aggregation's columns, or, with no
/// aggregations, the selected columns that are not keys (from the first source that selects).
pub fn group_by_base_features(group_by: &GroupBy) -> Vec<String> {
    match &group_by.aggregations {
        Some(aggs) => aggs.iter().flat_map(aggregation_columns).collect(),
        None => group_by
            .sources
            .iter()
            .find_map(|s| s.query().selects.as_ref())
            .map(|selects| {
                selects
                    .keys()
                    .filter(|c| !group_by.key_columns.contains(c) && !is_time_column(c))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn is_time_column(column: &str) -> bool {
    column == "ts"
}

/// The features of a GroupBy after its derivations (SPEC §4.3): with no derivations, the base
/// features; otherwise the derivation names, where `*` stands for every base feature except
/// those used verbatim as another derivation's expression.
pub fn group_by_features(group_by: &GroupBy) -> Vec<String> {
    apply_derivations(group_by_base_features(group_by), &group_by.derivations, &[])
}

/// Applies derivations to a list of columns. `always_kept` columns (keys, left columns) are not
/// features: they are never removed and never duplicated.
pub fn apply_derivations(
    base: Vec<String>,
    derivations: &[crate::model::Derivation],
    always_kept: &[String],
) -> Vec<String> {
    if derivations.is_empty() {
        return base;
    }
    let renamed: Vec<&str> = derivations
        .iter()
        .filter(|d| d.name != "*")
        .map(|d| d.expression.trim())
        .collect();
    let mut out: Vec<String> = Vec::new();
    for d in derivations {
        if d.name == "*" {
            for col in &base {
                if !renamed.contains(&col.as_str()) && !out.contains(col) {
                    out.push(col.clone());
                }
            }
        } else if !out.contains(&d.name) && !always_kept.contains(&d.name) {
            out.push(d.name.clone());
        }
    }
    out
}

/// The column prefix of a join part (without the trailing `_`): `[prefix_]<sanitized GroupBy name>`,
/// except for ZL parts with `useLongNames = 0`, where the GroupBy's keys joined by `_` replace the name.
pub fn join_part_prefix(join: &Join, part: &JoinPart, dialect: Dialect) -> String {
    let name = &part.group_by.metadata.name;
    let base = match dialect {
        Dialect::Airbnb => sanitize(name),
        Dialect::Zipline => {
            let long = part.use_long_names.or(join.use_long_names).unwrap_or(true);
            if long {
                sanitize(name)
            } else {
                part.group_by.key_columns.join("_")
            }
        }
    };
    match part.prefix.as_deref().filter(|p| !p.is_empty()) {
        Some(prefix) if !base.is_empty() => format!("{prefix}_{base}"),
        Some(prefix) => prefix.to_owned(),
        None => base,
    }
}

/// A ZL name without its `__<digits>` version suffix.
pub fn strip_version(name: &str) -> &str {
    match name.rsplit_once("__") {
        Some((head, v))
            if !head.is_empty() && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) =>
        {
            head
        }
        _ => name,
    }
}

/// The feature columns a join part contributes, in order: `<part prefix>_<feature>`.
pub fn join_part_columns(join: &Join, part: &JoinPart, dialect: Dialect) -> Vec<String> {
    let prefix = join_part_prefix(join, part, dialect);
    group_by_features(&part.group_by)
        .into_iter()
        .map(|f| prefixed_feature(&prefix, &f))
        .collect()
}

/// The columns an online external part contributes: `ext_[prefix_]<source name>_<value field>`.
pub fn external_part_columns(part: &ExternalPart) -> Vec<String> {
    let mut full = String::from("ext_");
    if let Some(prefix) = part.prefix.as_deref().filter(|p| !p.is_empty()) {
        full.push_str(prefix);
        full.push('_');
    }
    full.push_str(&sanitize(&part.source.name));
    part.source
        .value_schema
        .iter()
        .flat_map(|schema| schema.params.iter())
        .map(|(field, _)| format!("{full}_{field}"))
        .collect()
}

/// The left columns of a Join's output, before the features: the left selects in order, then
/// `ts` (event left, if not selected), then the partition column.
pub fn join_left_columns(join: &Join, partition_column: &str) -> Vec<String> {
    let mut cols = selected_columns(join.left.query());
    if matches!(join.left, Source::Events(_)) && !cols.iter().any(|c| c == "ts") {
        cols.push("ts".to_owned());
    }
    if !cols.iter().any(|c| c == partition_column) {
        cols.push(partition_column.to_owned());
    }
    cols
}

/// The feature columns of a Join, in part order, after the Join's derivations.
pub fn join_features(join: &Join, dialect: Dialect) -> Vec<String> {
    let base: Vec<String> = join
        .join_parts
        .iter()
        .flat_map(|p| join_part_columns(join, p, dialect))
        .collect();
    apply_derivations(
        base,
        &join.derivations,
        &selected_columns(join.left.query()),
    )
}

/// The output columns a query names, in order (none when it selects everything).
pub fn selected_columns(query: &Query) -> Vec<String> {
    query
        .selects
        .as_ref()
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default()
}

/// The KV dataset of a GroupBy's batch upload: `<SANITIZED_NAME_UPPER>_BATCH`.
pub fn batch_dataset(group_by_name: &str) -> String {
    format!("{}_BATCH", sanitize(group_by_name).to_uppercase())
}

/// The KV dataset of a GroupBy's streaming updates: `<SANITIZED_NAME_UPPER>_STREAMING`.
pub fn streaming_dataset(group_by_name: &str) -> String {
    format!("{}_STREAMING", sanitize(group_by_name).to_uppercase())
}

/// The KV key of a Join's metadata: `joins/<team>/<name without "team.">`.
pub fn join_metadata_key(team: &str, join_name: &str) -> String {
    let rest = join_name
        .strip_prefix(team)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or(join_name);
    format!("joins/{team}/{rest}")
}

/// A Join part's feature column: `<prefix>_<feature>`, or the feature alone without a prefix.
pub fn prefixed_feature(prefix: &str, feature: &str) -> String {
    if prefix.is_empty() {
        feature.to_owned()
    } else {
        format!("{prefix}_{feature}")
    }
}

/// The KV key of a GroupBy's definition for the fetcher: `group_bys/<team>/<name without "team.">`.
pub fn group_by_metadata_key(team: &str, group_by_name: &str) -> String {
    let joins = join_metadata_key(team, group_by_name);
    format!("group_bys/{}", joins.trim_start_matches("joins/"))
}

/// The table sampled fetches of a Join are logged to (partitioned by `ds`): `<output>_log`.
pub fn fetch_log_table(join_output_table: &str) -> String {
    format!("{join_output_table}_log")
}

/// A Join name as users type it, `team/file.var` or `team.file.var`, in the dotted form.
pub fn normalize_join_name(name: &str) -> String {
    match name.split_once('/') {
        Some((team, rest)) => format!("{team}.{rest}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Operation, TimeUnit};

    fn agg(
        input: &str,
        operation: Operation,
        k: Option<u32>,
        windows: &[(u32, TimeUnit)],
        buckets: &[&str],
    ) -> Aggregation {
        Aggregation {
            input_column: input.to_owned(),
            operation,
            arg_map: Default::default(),
            windows: windows
                .iter()
                .map(|&(length, unit)| Window { length, unit })
                .collect(),
            buckets: buckets.iter().map(|b| (*b).to_owned()).collect(),
            k,
            percentiles: Vec::new(),
        }
    }

    #[test]
    fn feature_columns_of_the_spec() {
        let days = TimeUnit::Days;
        assert_eq!(
            aggregation_columns(&agg(
                "purchase_price",
                Operation::Sum,
                None,
                &[(3, days)],
                &[]
            )),
            ["purchase_price_sum_3d"]
        );
        assert_eq!(
            aggregation_columns(&agg(
                "refund_amt",
                Operation::Count,
                None,
                &[(14, days)],
                &[]
            )),
            ["refund_amt_count_14d"]
        );
        assert_eq!(
            aggregation_columns(&agg("event", Operation::Sum, None, &[], &[])),
            ["event_sum"]
        );
        assert_eq!(
            aggregation_columns(&agg("purchase_price", Operation::LastK, Some(10), &[], &[])),
            ["purchase_price_last10"]
        );
    }

    #[test]
    fn k_operations_units_and_buckets() {
        let a = |op, k| aggregation_columns(&agg("x", op, k, &[], &[]))[0].clone();
        assert_eq!(a(Operation::FirstK, Some(3)), "x_first3");
        assert_eq!(a(Operation::TopK, Some(5)), "x_top5");
        assert_eq!(a(Operation::BottomK, Some(2)), "x_bottom2");
        assert_eq!(a(Operation::UniqueTopK, Some(4)), "x_unique_top4");
        assert_eq!(
            a(Operation::ApproxPercentile, Some(128)),
            "x_approx_percentile"
        );
        assert_eq!(a(Operation::ApproxHistogramK, None), "x_approx_histogram_k");
        assert_eq!(
            a(Operation::BoundedUniqueCount, None),
            "x_bounded_unique_count"
        );
        let cols = aggregation_columns(&agg(
            "amt",
            Operation::Average,
            None,
            &[(1, TimeUnit::Hours), (30, TimeUnit::Minutes)],
            &["merchant", "country"],
        ));
        // Buckets outer, windows inner.
        assert_eq!(
            cols,
            [
                "amt_average_1h_by_merchant",
                "amt_average_30m_by_merchant",
                "amt_average_1h_by_country",
                "amt_average_30m_by_country"
            ]
        );
    }

    #[test]
    fn derivations_star_keeps_base_features_not_renamed() {
        let base = vec!["a_sum".to_owned(), "b_sum".to_owned()];
        let d = |name: &str, expression: &str| crate::model::Derivation {
            name: name.to_owned(),
            expression: expression.to_owned(),
        };
        assert_eq!(apply_derivations(base.clone(), &[], &[]), base);
        assert_eq!(
            apply_derivations(base.clone(), &[d("*", "*"), d("a", "a_sum")], &[]),
            ["b_sum", "a"]
        );
        assert_eq!(
            apply_derivations(base.clone(), &[d("ratio", "a_sum / b_sum")], &[]),
            ["ratio"]
        );
    }
}
