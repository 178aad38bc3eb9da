//! Checks no single field can fail: configs that decode cleanly but would compute the wrong
//! thing. Two features with one output column name (a table cannot hold both), a key or input
//! its source does not select, sources of mixed kinds, a `keyMapping` the engine would ignore, a
//! Join without features, an online Join whose GroupBys nothing uploads.
//!
//! The decoders run the per-config checks on a config (or an inlined GroupBy or Join) only when
//! it decoded without errors, so the names compared are the ones the engine would write;
//! [`online_join_parts`] runs once the whole repo is loaded.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::decode::{DecodeContext, JsonPath};
use crate::diagnostic::{DiagnosticCode, Severity};
use crate::model::{Config, Derivation, GroupBy, Join, Source};
use crate::naming;
use crate::repo::LoadedConfig;

/// The output columns of one table so far, each with the JSON path of what produces it.
#[derive(Default)]
struct Columns(BTreeMap<String, JsonPath>);

impl Columns {
    /// Claims `names` for `path`. Names another path already produces are reported in one
    /// error at `path`; names `path` itself repeats were reported at a finer path by the caller.
    fn claim(
        &mut self,
        cx: &mut DecodeContext<'_>,
        path: &JsonPath,
        names: impl IntoIterator<Item = String>,
        hint: &str,
    ) {
        let mut clashes: Vec<String> = Vec::new();
        let mut firsts: Vec<String> = Vec::new();
        for name in names {
            match self.0.get(&name) {
                Some(first) if first != path => {
                    if !clashes.contains(&name) {
                        clashes.push(name);
                    }
                    if !firsts.iter().any(|f| f == first.as_str()) {
                        firsts.push(first.as_str().to_owned());
                    }
                }
                Some(_) => {}
                None => {
                    self.0.insert(name, path.clone());
                }
            }
        }
        let Some(first_clash) = clashes.first().cloned() else {
            return;
        };
        let message = if clashes.len() == 1 {
            format!(
                "output column {first_clash:?} is also produced by {}: the table cannot hold two columns of one name{hint}",
                firsts.join(", ")
            )
        } else {
            format!(
                "output columns {} are also produced by {}: the table cannot hold two columns of one name{hint}",
                quoted_list(&clashes),
                firsts.join(", ")
            )
        };
        cx.error(DiagnosticCode::DuplicateColumn, path, message)
            .found = Some(first_clash);
    }
}

/// `"a", "b", "c"` (at most five, then how many more).
fn quoted_list(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// A GroupBy's column names, sources and selects.
pub(crate) fn group_by(cx: &mut DecodeContext<'_>, gb: &GroupBy, path: &JsonPath) {
    sources_of_one_kind(cx, gb, path);
    selected_inputs(cx, gb, path);

    let mut columns = Columns::default();
    let keys_path = path.field("keyColumns");
    for (i, key) in gb.key_columns.iter().enumerate() {
        columns.claim(cx, &keys_path.index(i), [key.clone()], "");
    }
    let features = match &gb.aggregations {
        Some(aggregations) => {
            let mut features = Vec::new();
            for (i, agg) in aggregations.iter().enumerate() {
                let agg_path = path.field("aggregations").index(i);
                let windows: Vec<String> = agg
                    .windows
                    .iter()
                    .map(|w| format!("{}{}", w.length, w.unit.suffix()))
                    .collect();
                repeated(cx, &agg_path.field("windows"), "window", &windows, |k| {
                    naming::feature_column(
                        agg,
                        Some(agg.windows[k]),
                        agg.buckets.first().map(String::as_str),
                    )
                });
                repeated(
                    cx,
                    &agg_path.field("buckets"),
                    "bucket",
                    &agg.buckets,
                    |k| {
                        naming::feature_column(
                            agg,
                            agg.windows.first().copied(),
                            Some(&agg.buckets[k]),
                        )
                    },
                );
                let names = naming::aggregation_columns(agg);
                columns.claim(cx, &agg_path, names.iter().cloned(), "");
                features.extend(names);
            }
            features
        }
        None => naming::group_by_base_features(gb),
    };
    derivations(cx, &features, &gb.derivations, &gb.key_columns, path);
}

/// Reports the items of a list that repeat an earlier one, each with the column it would
/// write twice (`column(k)` for item `k`).
fn repeated(
    cx: &mut DecodeContext<'_>,
    list: &JsonPath,
    what: &str,
    items: &[String],
    column: impl Fn(usize) -> String,
) {
    for (k, item) in items.iter().enumerate() {
        if let Some(first) = items[..k].iter().position(|x| x == item) {
            let message = format!(
                "{what} {item} is listed twice (also at {}): column {:?} would be written twice",
                list.index(first).as_str(),
                column(k)
            );
            cx.error(DiagnosticCode::DuplicateColumn, &list.index(k), message)
                .found = Some(item.clone());
        }
    }
}

/// Chronon requires a GroupBy's sources to be all events or all entities (a `joinSource` is
/// what its parent's left is): one aggregation cannot mix the two time models.
fn sources_of_one_kind(cx: &mut DecodeContext<'_>, gb: &GroupBy, path: &JsonPath) {
    fn kind(source: &Source) -> &'static str {
        match source {
            Source::Events(_) => "events",
            Source::Entities(_) => "entities",
            Source::JoinSource(js) => kind(&js.join.left),
        }
    }
    let Some(first) = gb.sources.first().map(kind) else {
        return;
    };
    if let Some(i) = gb.sources.iter().position(|s| kind(s) != first) {
        let message = format!(
            "this source reads {}, $.sources[0] reads {first}: a GroupBy's sources must all be events or all entities",
            kind(&gb.sources[i])
        );
        let d = cx.error(
            DiagnosticCode::InvalidValue,
            &path.field("sources").index(i),
            message,
        );
        d.expected = Some(format!("{first} (as $.sources[0])"));
        d.found = Some(kind(&gb.sources[i]).to_owned());
    }
}

/// The JSON field a source's kind is written under.
fn source_field(source: &Source) -> &'static str {
    match source {
        Source::Events(_) => "events",
        Source::Entities(_) => "entities",
        Source::JoinSource(_) => "joinSource",
    }
}

/// Every source that selects columns must select the keys, each aggregation's input and its
/// buckets (Chronon's own compiler checks the same); `ts` is always there.
fn selected_inputs(cx: &mut DecodeContext<'_>, gb: &GroupBy, path: &JsonPath) {
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for (i, source) in gb.sources.iter().enumerate() {
        let Some(selects) = &source.query().selects else {
            continue;
        };
        let source_path = path.field("sources").index(i);
        let selected = |c: &str| c == "ts" || selects.contains_key(c);
        let keys: Vec<String> = gb
            .key_columns
            .iter()
            .filter(|k| !selected(k))
            .cloned()
            .collect();
        if !keys.is_empty() {
            let selects_path = source_path
                .field(source_field(source))
                .field("query")
                .field("selects");
            let message = format!(
                "key column{} {} not selected by this source: its rows would have no key",
                if keys.len() == 1 { "" } else { "s" },
                quoted_list(&keys)
            );
            let d = cx.error(DiagnosticCode::MissingColumn, &selects_path, message);
            d.expected = Some(format!("a select for {}", quoted_list(&keys)));
            d.found = Some(crate::decode::describe(&Value::from(
                selects.keys().cloned().collect::<Vec<_>>(),
            )));
        }
        for (j, agg) in gb.aggregations.iter().flatten().enumerate() {
            let agg_path = path.field("aggregations").index(j);
            let mut read = vec![(agg_path.field("inputColumn"), agg.input_column.as_str())];
            read.extend(
                agg.buckets
                    .iter()
                    .enumerate()
                    .map(|(b, bucket)| (agg_path.field("buckets").index(b), bucket.as_str())),
            );
            for (p, column) in read {
                // One report per field, however many sources miss it.
                if selected(column) || !reported.insert(p.as_str().to_owned()) {
                    continue;
                }
                let message = format!(
                    "column {column:?} is not selected by {}",
                    source_path.as_str()
                );
                let d = cx.error(DiagnosticCode::MissingColumn, &p, message);
                d.expected = Some("a column the source selects".to_owned());
                d.found = Some(column.to_owned());
            }
        }
    }
}

/// The columns derivations produce (SPEC §4.3): `*` keeps every base feature not renamed by
/// another derivation; a derivation named like a `kept` column (a key, a left column) leaves
/// that column as it is, as the engine does.
fn derivations(
    cx: &mut DecodeContext<'_>,
    base: &[String],
    derivations: &[Derivation],
    kept: &[String],
    path: &JsonPath,
) {
    let renamed: Vec<&str> = derivations
        .iter()
        .filter(|d| d.name != "*")
        .map(|d| d.expression.trim())
        .collect();
    let mut columns = Columns::default();
    for (i, d) in derivations.iter().enumerate() {
        let p = path.field("derivations").index(i);
        if d.name == "*" {
            let names = base
                .iter()
                .filter(|c| !kept.contains(c) && !renamed.contains(&c.as_str()))
                .cloned();
            columns.claim(cx, &p, names, "");
        } else if !kept.contains(&d.name) {
            columns.claim(cx, &p, [d.name.clone()], "");
        }
    }
}

/// A Join's parts, column names and keys.
pub(crate) fn join(cx: &mut DecodeContext<'_>, join: &Join, path: &JsonPath) {
    if join.join_parts.is_empty() && join.online_external_parts.is_empty() {
        cx.push(
            Severity::Warning,
            DiagnosticCode::InvalidValue,
            &path.field("joinParts"),
            "the Join has no parts, so no features: its table is a copy of its left rows",
        )
        .expected = Some("at least one join part".to_owned());
    }

    key_mappings(cx, join, path);

    let left = naming::selected_columns(join.left.query());
    let mut columns = Columns::default();
    columns.claim(cx, &path.field("left"), left.iter().cloned(), "");
    let mut features = Vec::new();
    for (i, part) in join.join_parts.iter().enumerate() {
        let names = naming::join_part_columns(join, part, cx.dialect);
        let hint = "; give one of the parts a different `prefix`";
        columns.claim(
            cx,
            &path.field("joinParts").index(i),
            names.iter().cloned(),
            hint,
        );
        features.extend(names);
    }
    for (i, part) in join.online_external_parts.iter().enumerate() {
        let names = naming::external_part_columns(part);
        let hint = "; give one of the parts a different `prefix`";
        columns.claim(
            cx,
            &path.field("onlineExternalParts").index(i),
            names.iter().cloned(),
            hint,
        );
        features.extend(names);
    }
    derivations(cx, &features, &join.derivations, &left, path);
}

/// `keyMapping` maps a left column to one of the part's keys. An entry for anything else, or a
/// second one for the same key, would be ignored (the key then read from another column than
/// the author named), where Chronon joins on exactly the mapping.
fn key_mappings(cx: &mut DecodeContext<'_>, join: &Join, path: &JsonPath) {
    for (i, part) in join.join_parts.iter().enumerate() {
        let mapping_path = path.field("joinParts").index(i).field("keyMapping");
        let keys = &part.group_by.key_columns;
        let mut mapped: Vec<&str> = Vec::new();
        for (left, right) in &part.key_mapping {
            let message = if !keys.contains(right) {
                format!(
                    "left column {left:?} is mapped to {right:?}, which is not a key of GroupBy {:?}",
                    part.group_by.metadata.name
                )
            } else if mapped.contains(&right.as_str()) {
                format!("key {right:?} is already mapped from another left column")
            } else {
                mapped.push(right);
                continue;
            };
            let d = cx.error(
                DiagnosticCode::InvalidValue,
                &mapping_path.field(left),
                message,
            );
            d.expected = Some(format!("one unmapped key of {}", quoted_list(keys)));
            d.found = Some(right.clone());
        }
    }
}

/// An online Join is served by fetching each part's GroupBy from the KV store, which only the
/// GroupBy's own `upload-to-kv` job fills: each part's GroupBy must be in the repo, online, and
/// the version the Join inlines (else fetches serve other features than the backfill computes).
/// GroupBys left out for their own errors (`broken`) are not reported again. Returns the Joins
/// with errors, which the caller leaves out.
pub(crate) fn online_join_parts(
    configs: &[LoadedConfig],
    broken: &BTreeSet<String>,
    diagnostics: &mut Vec<crate::Diagnostic>,
) -> BTreeSet<String> {
    let group_bys: BTreeMap<&str, &GroupBy> = configs
        .iter()
        .filter_map(|c| match &c.config {
            Config::GroupBy(gb) => Some((c.name(), gb)),
            _ => None,
        })
        .collect();
    let mut rejected = BTreeSet::new();
    for loaded in configs {
        let Config::Join(join) = &loaded.config else {
            continue;
        };
        if !join.metadata.online {
            // Offline, the backfill computes each inlined GroupBy itself, as Chronon's does.
            continue;
        }
        let mut cx = DecodeContext {
            file: &loaded.path,
            dialect: loaded.dialect,
            diagnostics,
        };
        let errors = cx.error_count();
        for (i, part) in join.join_parts.iter().enumerate() {
            let part_path = JsonPath::root()
                .field("joinParts")
                .index(i)
                .field("groupBy");
            let name = &part.group_by.metadata.name;
            let name_path = part_path.field("metaData").field("name");
            match group_bys.get(name.as_str()) {
                None if broken.contains(name) => {}
                None => {
                    let message = format!(
                        "GroupBy {name:?} of this online Join is not in the repo: nothing would upload its features, so fetches could never serve them"
                    );
                    cx.error(DiagnosticCode::UnknownConfig, &name_path, message)
                        .found = Some(name.clone());
                }
                Some(gb) if !gb.metadata.online => {
                    let message = format!(
                        "GroupBy {name:?} of this online Join is not online: nothing would upload its features, so fetches could never serve them"
                    );
                    let d = cx.error(DiagnosticCode::Inconsistent, &name_path, message);
                    d.expected = Some("an online GroupBy (metaData.online = 1)".to_owned());
                }
                Some(gb) => same_features(&mut cx, &part_path, &part.group_by, gb),
            }
        }
        if cx.error_count() > errors {
            rejected.insert(loaded.name().to_owned());
        }
    }
    rejected
}

/// The GroupBy a Join inlines against the repo's config of that name: a fetch serves the repo's
/// keys and features, the backfill computes the inlined ones.
fn same_features(cx: &mut DecodeContext<'_>, path: &JsonPath, inlined: &GroupBy, repo: &GroupBy) {
    let inlined_features = naming::group_by_features(inlined);
    let repo_features = naming::group_by_features(repo);
    if inlined.key_columns == repo.key_columns && inlined_features == repo_features {
        return;
    }
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|x| !b.contains(x)).cloned().collect()
    };
    let mut differences = Vec::new();
    if inlined.key_columns != repo.key_columns {
        differences.push(format!(
            "keys {} here, {} in the repo",
            quoted_list(&inlined.key_columns),
            quoted_list(&repo.key_columns)
        ));
    }
    let here = only(&inlined_features, &repo_features);
    let there = only(&repo_features, &inlined_features);
    if !here.is_empty() {
        differences.push(format!("only here: {}", quoted_list(&here)));
    }
    if !there.is_empty() {
        differences.push(format!("only in the repo: {}", quoted_list(&there)));
    }
    if here.is_empty() && there.is_empty() && inlined_features != repo_features {
        differences.push("the same features in another order".to_owned());
    }
    let message = format!(
        "this online Join inlines another version of GroupBy {:?} than the repo's ({}): fetches would serve the repo's features, the backfill computes these; recompile the Join",
        inlined.metadata.name,
        differences.join("; ")
    );
    cx.error(DiagnosticCode::Inconsistent, path, message);
}
