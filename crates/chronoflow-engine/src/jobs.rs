//! Chronon jobs on the local engine: GroupBy backfill (daily snapshots) and Join backfill
//! (point-in-time features for every left row), per SPEC §4.3.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::{
    Accuracy, Aggregation, GroupBy, LoadedConfig, Operation, PartitionDate, Source,
};
use datafusion::datasource::MemTable;

use crate::aggregate::{Out, OutKind, out_kind};
use crate::error::{EngineError, Result};
use crate::features::{
    AsOf, Feature, FeatureScratch, FeatureSink, KeyedRows, build_column, compute_features_into,
    feature_type, plan_features,
};
use crate::index::index_rows;
use crate::shard::{IndexedBatches, MemoryLimit, ShardedRows, SpillDir};
use crate::source::{self, DS, PartitionBounds, TS, TimeMode};
use crate::table_name::TableName;
use crate::value::{ScalarKind, Val, val_at};
use crate::warehouse::{PartitionInfo, Warehouse};

pub use crate::join::{backfill_join, backfill_join_for_left, backfill_join_within};

type Key = Vec<Option<Val>>;

/// A GroupBy's rows, loaded and indexed, ready to answer "features of key K as of T".
pub(crate) struct LoadedGroupBy {
    name: String,
    pub(crate) keys: Vec<String>,
    pub(crate) key_types: Vec<DataType>,
    pub(crate) shape: Shape,
    /// Shared by the GroupBys of a Join whose parts index the same rows ([`same_index`]).
    pub(crate) rows: Arc<KeyedRows>,
}

pub(crate) enum Shape {
    Aggregated {
        aggregations: Vec<Aggregation>,
        /// Per aggregation, the kind of its input values, and what it produces.
        input_kinds: Vec<ScalarKind>,
        kinds: Vec<OutKind>,
        features: Vec<Feature>,
        types: Vec<DataType>,
    },
    /// No aggregations: the selected columns other than the keys are the features.
    Selected {
        columns: Vec<String>,
        types: Vec<DataType>,
        values: Vec<Vec<Option<Val>>>,
    },
}

impl LoadedGroupBy {
    pub(crate) fn feature_names(&self) -> Vec<String> {
        match &self.shape {
            Shape::Aggregated { features, .. } => features.iter().map(|f| f.name.clone()).collect(),
            Shape::Selected { columns, .. } => columns.clone(),
        }
    }

    pub(crate) fn feature_types(&self) -> Vec<DataType> {
        match &self.shape {
            Shape::Aggregated { types, .. } => types.clone(),
            Shape::Selected { types, .. } => types.clone(),
        }
    }

    /// The features of `key` as of `as_of`: `None` per feature when nothing counted.
    pub(crate) fn features<'s>(
        &'s self,
        key: &Key,
        as_of: AsOf,
        scratch: &mut FeatureScratch<'s>,
    ) -> Result<Vec<Option<Out>>> {
        self.features_of_rows(key, self.rows_of(key), as_of, scratch)
    }

    /// The rows of `key` (empty for a key without rows). Each key's slice is its own: its
    /// address identifies the key while `self` lives.
    pub(crate) fn rows_of(&self, key: &Key) -> &[u32] {
        self.rows
            .by_key
            .get(key)
            .map_or(&[], |range| self.rows.rows(range))
    }

    /// [`Self::rows_of`] the key `[Some(Val::Int(key))]`, when the rows were indexed by a single
    /// 64-bit integer key column (`None` otherwise: ask [`Self::rows_of`]).
    pub(crate) fn rows_of_int(&self, key: i64) -> Option<&[u32]> {
        let by_int = self.rows.by_int_key.as_ref()?;
        Some(by_int.get(&key).map_or(&[], |range| self.rows.rows(range)))
    }

    /// [`Self::features`] of `key` given its rows.
    pub(crate) fn features_of_rows<'s>(
        &'s self,
        key: &Key,
        rows: &[u32],
        as_of: AsOf,
        scratch: &mut FeatureScratch<'s>,
    ) -> Result<Vec<Option<Out>>> {
        let mut out = Vec::with_capacity(self.feature_count());
        self.features_of_rows_into(key, rows, as_of, scratch, &mut out)?;
        Ok(out)
    }

    /// How many features each key has.
    pub(crate) fn feature_count(&self) -> usize {
        match &self.shape {
            Shape::Aggregated { features, .. } => features.len(),
            Shape::Selected { columns, .. } => columns.len(),
        }
    }

    /// [`Self::features_of_rows`], each value handed to `sink`.
    pub(crate) fn features_of_rows_into<'s>(
        &'s self,
        key: &Key,
        rows: &[u32],
        as_of: AsOf,
        scratch: &mut FeatureScratch<'s>,
        sink: &mut impl FeatureSink,
    ) -> Result<()> {
        match &self.shape {
            Shape::Aggregated {
                aggregations,
                features,
                ..
            } => {
                compute_features_into(
                    aggregations,
                    features,
                    &self.rows,
                    rows,
                    as_of,
                    scratch,
                    sink,
                );
                Ok(())
            }
            Shape::Selected {
                columns, values, ..
            } => {
                let AsOf::Time { a, .. } = as_of;
                let mut found: Option<usize> = None;
                for &r in rows {
                    if self.rows.ds[r as usize] == a {
                        if found.is_some() {
                            return Err(EngineError::Input {
                                file: self.name.clone(),
                                message: format!(
                                    "two rows for key {} in partition {a}",
                                    describe_key(key)
                                ),
                            });
                        }
                        found = Some(r as usize);
                    }
                }
                for column in values.iter().take(columns.len()) {
                    sink.value(found.and_then(|r| column[r].clone()).map(Out::Scalar));
                }
                Ok(())
            }
        }
    }
}

fn describe_key(key: &Key) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|k| k.as_ref().map_or("null".to_owned(), Val::key_text))
        .collect();
    format!("({})", parts.join(", "))
}

pub(crate) fn source_table(source: &Source, config: &str) -> Result<TableName> {
    let table = match source {
        Source::Events(e) => &e.table.table,
        Source::Entities(e) => &e.snapshot_table.table,
        Source::JoinSource(_) => {
            return Err(EngineError::Input {
                file: config.to_owned(),
                message: "joinSource (chaining) GroupBys are not supported by the local engine yet"
                    .to_owned(),
            });
        }
    };
    TableName::parse(table)
}

/// One source of a GroupBy as a computation over `first..=last` reads it.
pub(crate) struct SourceRead<'a> {
    pub(crate) table: TableName,
    pub(crate) query: &'a chronoflow_config::Query,
    pub(crate) bounds: PartitionBounds,
    pub(crate) time: TimeMode,
    pub(crate) entity: bool,
}

/// What each source of `gb` must read to answer as of any date in `first..=last`.
pub(crate) fn source_reads(
    gb: &GroupBy,
    first: PartitionDate,
    last: PartitionDate,
) -> Result<Vec<SourceRead<'_>>> {
    let name = &gb.metadata.name;
    let lookback = gb.lookback_days();
    gb.sources
        .iter()
        .map(|source| {
            let table = source_table(source, name)?;
            let entity = matches!(source, Source::Entities(_));
            if let Source::Entities(e) = source
                && e.mutation_table.is_some()
                && gb.accuracy() == Accuracy::Temporal
            {
                return Err(EngineError::Input {
                    file: name.clone(),
                    message: "TEMPORAL entity sources with mutations are not supported by the local engine yet".to_owned(),
                });
            }
            let bounds = PartitionBounds {
                start: if entity {
                    Some(first)
                } else {
                    lookback.map(|d| first.add_days(-d))
                },
                end: last,
            };
            let time = if entity {
                TimeMode::Optional
            } else {
                TimeMode::EventTime
            };
            Ok(SourceRead {
                table,
                query: source.query(),
                bounds,
                time,
                entity,
            })
        })
        .collect()
}

/// Indexes a GroupBy's evaluated source rows (`(rows, is_entity)` per source, as
/// [`source::load`] returns them) by key.
pub(crate) fn index_group_by(
    gb: &GroupBy,
    loaded: &[(RecordBatch, bool)],
) -> Result<LoadedGroupBy> {
    index_group_by_with(gb, loaded, &[])
}

/// [`index_group_by`], holding as plain numbers ([`KeyedRows::numbers`]) the inputs that only
/// `readers` (the GroupBys computed from the index) aggregate, all of them by the in-place
/// paths of [`compute_features_into`]: SUM, COUNT, AVERAGE and LAST_K (k > 0), without
/// buckets, over event rows. Online serving reads the index's `inputs` itself, so it passes none.
fn index_group_by_with(
    gb: &GroupBy,
    loaded: &[(RecordBatch, bool)],
    readers: &[&GroupBy],
) -> Result<LoadedGroupBy> {
    let name = gb.metadata.name.as_str();
    let no_aggregations: &[Aggregation] = &[];
    let aggregations = gb.aggregations.as_deref().unwrap_or(no_aggregations);
    // Aggregations over one column share its values; bucket columns are read once each.
    let columns = IndexedColumns {
        inputs: input_columns(aggregations),
        buckets: bucket_columns(aggregations),
    };
    let first = &loaded[0].0;
    let key_types = key_types(gb, first)?;
    let mut shape = match &gb.aggregations {
        Some(aggs) => aggregated_shape(name, aggs, first, &columns)?,
        None => selected_shape(gb, &first.schema())?,
    };
    let in_place = |input: &String| {
        !readers.is_empty()
            && loaded.iter().all(|(_, entity)| !entity)
            && readers.iter().all(|r| {
                r.aggregations.as_ref().is_some_and(|aggs| {
                    aggs.iter().filter(|a| &a.input_column == input).all(|a| {
                        a.buckets.is_empty()
                            && match a.operation {
                                Operation::Count | Operation::Sum | Operation::Average => true,
                                Operation::LastK => a.k.unwrap_or(0) > 0,
                                _ => false,
                            }
                    })
                })
            })
    };
    let numeric: Vec<bool> = match &shape {
        Shape::Aggregated { .. } => columns.inputs.iter().map(in_place).collect(),
        Shape::Selected { .. } => Vec::new(),
    };
    let rows = index_rows(gb, loaded, &mut shape, &columns, &numeric)?;
    Ok(LoadedGroupBy {
        name: name.to_owned(),
        keys: gb.key_columns.clone(),
        key_types,
        shape,
        rows: Arc::new(rows),
    })
}

/// Indexes rows once for several GroupBys that index them alike ([`same_index`] of the first
/// and each other): one [`LoadedGroupBy`] per GroupBy, in order, sharing the indexed rows.
/// Inputs only the in-place paths read are held as numbers (see [`index_group_by_with`]).
pub(crate) fn index_group_bys(
    gbs: &[&GroupBy],
    loaded: &[(RecordBatch, bool)],
) -> Result<Vec<LoadedGroupBy>> {
    let Some((first_gb, others)) = gbs.split_first() else {
        return Ok(Vec::new());
    };
    let first = index_group_by_with(first_gb, loaded, gbs)?;
    let mut out = Vec::with_capacity(gbs.len());
    for gb in others {
        let name = gb.metadata.name.as_str();
        let aggregations = gb.aggregations.as_deref().unwrap_or_default();
        let columns = IndexedColumns {
            inputs: input_columns(aggregations),
            buckets: bucket_columns(aggregations),
        };
        out.push(LoadedGroupBy {
            name: name.to_owned(),
            keys: gb.key_columns.clone(),
            key_types: key_types(gb, &loaded[0].0)?,
            shape: aggregated_shape(name, aggregations, &loaded[0].0, &columns)?,
            rows: first.rows.clone(),
        });
    }
    out.insert(0, first);
    Ok(out)
}

/// Whether GroupBys `a` and `b`, computed over `first..=last`, read the same rows (same
/// sources, queries and partitions) and index them the same way (same keys, input and bucket
/// columns, both aggregating): then one index serves both. A Join's parts often differ only in
/// accuracy or windows over one source (the engine benchmark's SNAPSHOT and TEMPORAL parts).
pub(crate) fn same_index(
    a: &GroupBy,
    b: &GroupBy,
    first: PartitionDate,
    last: PartitionDate,
) -> bool {
    let (Some(aggs_a), Some(aggs_b)) = (&a.aggregations, &b.aggregations) else {
        return false;
    };
    let (Ok(reads_a), Ok(reads_b)) = (source_reads(a, first, last), source_reads(b, first, last))
    else {
        return false;
    };
    a.key_columns == b.key_columns
        && input_columns(aggs_a) == input_columns(aggs_b)
        && bucket_columns(aggs_a) == bucket_columns(aggs_b)
        && reads_a.len() == reads_b.len()
        && reads_a.iter().zip(&reads_b).all(|(x, y)| {
            x.table == y.table
                && x.query == y.query
                && x.bounds.start == y.bounds.start
                && x.bounds.end == y.bounds.end
                && x.time == y.time
                && x.entity == y.entity
        })
}

/// The source columns a GroupBy's index reads besides keys and time: aggregation inputs (each
/// once) and bucket columns.
pub(crate) struct IndexedColumns {
    pub(crate) inputs: Vec<String>,
    pub(crate) buckets: Vec<String>,
}

/// Column `col` of a GroupBy's evaluated source rows, or an error naming the columns there are.
pub(crate) fn source_column(gb_name: &str, batch: &RecordBatch, col: &str) -> Result<ArrayRef> {
    batch
        .column_by_name(col)
        .cloned()
        .ok_or_else(|| EngineError::Input {
            file: gb_name.to_owned(),
            message: format!(
                "column {col:?} is not among the source's columns ({})",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .filter(|n| !n.starts_with("__"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// The types of a GroupBy's key columns; keys must be scalars.
fn key_types(gb: &GroupBy, batch: &RecordBatch) -> Result<Vec<DataType>> {
    let name = gb.metadata.name.as_str();
    gb.key_columns
        .iter()
        .map(|k| {
            let array = source_column(name, batch, k)?;
            let kind = ScalarKind::of(array.data_type()).ok_or_else(|| EngineError::Input {
                file: name.to_owned(),
                message: format!(
                    "key column {k:?} has type {}; keys must be strings, numbers or booleans",
                    array.data_type()
                ),
            })?;
            Ok(kind.data_type())
        })
        .collect()
}

/// The features of an aggregating GroupBy: each aggregation's input and output kinds, checked
/// against its input column's type.
fn aggregated_shape(
    name: &str,
    aggs: &[Aggregation],
    batch: &RecordBatch,
    columns: &IndexedColumns,
) -> Result<Shape> {
    let mut kinds = Vec::new();
    let mut input_kinds = Vec::new();
    for agg in aggs {
        let array = source_column(name, batch, &agg.input_column)?;
        let input = ScalarKind::of(element_type(array.data_type()));
        let kind = input
            .ok_or_else(|| "a string, number or boolean column".to_owned())
            .and_then(|k| out_kind(agg.operation, k).map(|o| (k, o)))
            .map_err(|expected| EngineError::Input {
                file: name.to_owned(),
                message: format!(
                    "aggregation {} over column {:?} of type {}: it needs {expected}",
                    agg.operation.lower_name(),
                    agg.input_column,
                    array.data_type()
                ),
            })?;
        input_kinds.push(kind.0);
        kinds.push(kind.1);
    }
    let input_index = input_index(aggs, &columns.inputs);
    let features = plan_features(aggs, &kinds, &input_index, &columns.buckets);
    let types = features
        .iter()
        .map(|f| feature_type(f.kind, f.bucket.is_some()))
        .collect();
    Ok(Shape::Aggregated {
        aggregations: aggs.to_vec(),
        input_kinds,
        kinds,
        features,
        types,
    })
}

/// The features of a GroupBy without aggregations: every source column but keys and time.
fn selected_shape(gb: &GroupBy, schema: &arrow::datatypes::Schema) -> Result<Shape> {
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !gb.key_columns.contains(n) && n != TS && n != DS && n != "ts")
        .collect();
    let mut types = Vec::new();
    for c in &columns {
        let t = schema
            .field_with_name(c)
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Utf8);
        let kind = ScalarKind::of(&t).ok_or_else(|| EngineError::Input {
            file: gb.metadata.name.clone(),
            message: format!(
                "column {c:?} has type {t}; only scalar columns are supported as features yet"
            ),
        })?;
        types.push(kind.data_type());
    }
    Ok(Shape::Selected {
        values: vec![Vec::new(); columns.len()],
        columns,
        types,
    })
}

/// The distinct input columns of some aggregations, in first-use order.
pub(crate) fn input_columns(aggregations: &[Aggregation]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in aggregations {
        if !out.contains(&a.input_column) {
            out.push(a.input_column.clone());
        }
    }
    out
}

/// Per aggregation, the position of its input column in `input_names` (from [`input_columns`]).
pub(crate) fn input_index(aggregations: &[Aggregation], input_names: &[String]) -> Vec<usize> {
    aggregations
        .iter()
        .map(|a| {
            input_names
                .iter()
                .position(|c| *c == a.input_column)
                .expect("listed")
        })
        .collect()
}

/// The distinct bucket columns of some aggregations, sorted.
pub(crate) fn bucket_columns(aggregations: &[Aggregation]) -> Vec<String> {
    let mut out: Vec<String> = aggregations
        .iter()
        .flat_map(|a| a.buckets.iter().cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The element type of a list column, or the type itself.
fn element_type(t: &DataType) -> &DataType {
    match t {
        DataType::List(f) | DataType::LargeList(f) => f.data_type(),
        other => other,
    }
}

pub(crate) fn arrow_err(context: String) -> impl FnOnce(arrow::error::ArrowError) -> EngineError {
    move |source| EngineError::Arrow { context, source }
}

/// Backfills GroupBy `loaded` for the given days, one snapshot partition per day, within the
/// machine's default memory limit.
pub async fn backfill_group_by(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    gb: &GroupBy,
    days: &[PartitionDate],
) -> Result<Vec<PartitionInfo>> {
    backfill_group_by_within(
        warehouse,
        loaded,
        gb,
        days,
        MemoryLimit::default_for_machine(),
    )
    .await
}

/// Backfills GroupBy `loaded` for the given days: one snapshot partition per day, its rows
/// sorted by key, holding about `limit` in memory (keys are split into shards when the rows
/// would not fit, and each day's shards merged back in key order).
pub async fn backfill_group_by_within(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    gb: &GroupBy,
    days: &[PartitionDate],
    limit: MemoryLimit,
) -> Result<Vec<PartitionInfo>> {
    let (Some(first), Some(last)) = (days.iter().min().copied(), days.iter().max().copied()) else {
        return Ok(Vec::new());
    };
    let mut spill = SpillDir::new()?;
    let mut sharded =
        ShardedRows::load(warehouse, gb, (first, last), limit, (0, 0), &mut spill).await?;
    let count = sharded.count();
    let mut shards = Vec::with_capacity(count);
    let mut key_names = Vec::new();
    for s in 0..count {
        let data = sharded.index(s)?;
        let batches = days
            .iter()
            .map(|d| snapshot_of_day(&data, *d, loaded.config.name()))
            .collect::<Result<Vec<_>>>()?;
        key_names = data.keys.clone();
        shards.push(IndexedBatches::store(
            batches,
            (count > 1).then_some(&mut spill),
        )?);
    }
    let output = TableName::parse(&loaded.output_table())?;
    let mut written = Vec::new();
    for (i, &d) in days.iter().enumerate() {
        let batches = shards
            .iter()
            .map(|s| s.get(i))
            .collect::<Result<Vec<_>>>()?;
        let batch = merge_by_key(&batches, key_names.len())
            .map_err(arrow_err(format!("building {output}")))?;
        let batch = derive(&batch, &gb.derivations, &key_names, loaded.config.name()).await?;
        written.push(
            warehouse
                .write_partition(&output, "ds", d, &[batch])
                .await?,
        );
    }
    Ok(written)
}

/// The snapshot of day `d`: one row per key with any feature, keys ascending, then features.
fn snapshot_of_day(data: &LoadedGroupBy, d: PartitionDate, config: &str) -> Result<RecordBatch> {
    let names = data.feature_names();
    let types = data.feature_types();
    let mut keys: Vec<&Key> = data.rows.by_key.keys().collect();
    keys.sort();
    let mut out_keys: Vec<&Key> = Vec::new();
    let mut out_values: Vec<Vec<Option<Out>>> = vec![Vec::new(); names.len()];
    let mut scratch = FeatureScratch::default();
    for key in &keys {
        let features = data.features(key, AsOf::end_of(d), &mut scratch)?;
        if features.iter().all(Option::is_none) {
            continue;
        }
        out_keys.push(key);
        for (i, f) in features.into_iter().enumerate() {
            out_values[i].push(f);
        }
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, k) in data.keys.iter().enumerate() {
        let values: Vec<Option<Out>> = out_keys
            .iter()
            .map(|key| key[i].clone().map(Out::Scalar))
            .collect();
        columns.push(build_column(k, &data.key_types[i], &values)?);
        fields.push(Field::new(k, data.key_types[i].clone(), true));
    }
    for (i, n) in names.iter().enumerate() {
        columns.push(build_column(n, &types[i], &out_values[i])?);
        fields.push(Field::new(n, types[i].clone(), true));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(arrow_err(format!("{config}: the snapshot of {d}")))
}

/// Batches whose rows are each sorted by their first `keys` columns and whose keys are
/// disjoint, merged into one sorted batch (by the engine's order of keys, as one shard sorts).
fn merge_by_key(
    batches: &[RecordBatch],
    keys: usize,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    if let [only] = batches {
        return Ok(only.clone());
    }
    let mut order: Vec<(Key, usize, usize)> = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        for r in 0..batch.num_rows() {
            let key: Key = (0..keys)
                .map(|k| val_at(batch.column(k).as_ref(), r))
                .collect();
            order.push((key, b, r));
        }
    }
    order.sort();
    let indices: Vec<(usize, usize)> = order.into_iter().map(|(_, b, r)| (b, r)).collect();
    let schema = batches[0].schema();
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            arrow::compute::interleave(&arrays, &indices)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

/// Applies derivations (SPEC §4.3) with DataFusion: `keep` columns always stay; `*` keeps every
/// other column not used verbatim as another derivation's expression.
pub(crate) async fn derive(
    batch: &RecordBatch,
    derivations: &[chronoflow_config::Derivation],
    keep: &[String],
    config: &str,
) -> Result<RecordBatch> {
    if derivations.is_empty() {
        return Ok(batch.clone());
    }
    let quote = |n: &str| format!("\"{}\"", n.replace('"', "\"\""));
    let renamed: Vec<&str> = derivations
        .iter()
        .filter(|d| d.name != "*")
        .map(|d| d.expression.trim())
        .collect();
    let mut select: Vec<String> = keep.iter().map(|k| quote(k)).collect();
    for d in derivations {
        if d.name == "*" {
            for f in batch.schema().fields() {
                if !keep.contains(f.name()) && !renamed.contains(&f.name().as_str()) {
                    select.push(quote(f.name()));
                }
            }
        } else if !keep.contains(&d.name) {
            select.push(format!("{} AS {}", d.expression, quote(&d.name)));
        }
    }
    let ctx = source::session();
    let mem = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]]).map_err(|e| {
        EngineError::Input {
            file: config.to_owned(),
            message: e.to_string(),
        }
    })?;
    ctx.register_table("__out", Arc::new(mem))
        .map_err(|e| EngineError::Input {
            file: config.to_owned(),
            message: e.to_string(),
        })?;
    let sql = format!("SELECT {} FROM __out", select.join(", "));
    let df_err = |e: datafusion::error::DataFusionError| EngineError::Input {
        file: config.to_owned(),
        message: format!(
            "derivations cannot be evaluated: {}",
            e.to_string().lines().next().unwrap_or_default()
        ),
    };
    let (schema, batches) = crate::source::collect_sql(&ctx, &sql)
        .await
        .map_err(df_err)?;
    arrow::compute::concat_batches(&schema, &batches)
        .map_err(arrow_err(format!("derivations of {config}")))
}
