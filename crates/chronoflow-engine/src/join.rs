//! Join backfills (SPEC §4.3): every left row once, with its selected columns, `ts`, then each
//! part's point-in-time features.
//!
//! Each part's GroupBy is split by key into as many shards as the memory limit needs
//! ([`crate::shard`]); a shard's features are computed for the left rows with its keys, per
//! output group (a left partition), and put back in left order when the group is written. With
//! one shard nothing is spilled; with more, results are the same, in bounded memory.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use chronoflow_config::naming::{join_part_prefix, prefixed_feature};
use chronoflow_config::{
    Accuracy, Dialect, GroupBy, Join, JoinPart, LoadedConfig, PartitionDate, Source,
};

use crate::error::{EngineError, Result, joined};
use crate::feature_columns::FeatureColumn;
use crate::features::{AsOf, ColumnsSink, FeatureScratch};
use crate::jobs::{LoadedGroupBy, arrow_err, derive, same_index, source_table};
use crate::shard::{IndexedBatches, MemoryLimit, ShardedRows, SpillDir, shard_of};
use crate::source::{self, DS, PartitionBounds, PartitionTexts, TS, TimeMode};
use crate::table_name::TableName;
use crate::value::{Val, ValReader, val_at};
use crate::warehouse::{PartitionInfo, Warehouse};
use crate::window::date_of;

type Key = Vec<Option<Val>>;

/// What one computed feature of a left row costs in memory until its group is written.
const OUTPUT_BYTES_PER_FEATURE: u64 = 48;

/// Backfills Join `loaded` for the given left partitions, within the machine's default memory
/// limit.
pub async fn backfill_join(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    join: &Join,
    days: &[PartitionDate],
) -> Result<Vec<PartitionInfo>> {
    backfill_join_within(
        warehouse,
        loaded,
        join,
        days,
        MemoryLimit::default_for_machine(),
    )
    .await
}

/// Backfills Join `loaded` for the given left partitions, one output partition per left one,
/// holding about `limit` in memory.
pub async fn backfill_join_within(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    join: &Join,
    days: &[PartitionDate],
    limit: MemoryLimit,
) -> Result<Vec<PartitionInfo>> {
    let (Some(first), Some(last)) = (days.iter().min().copied(), days.iter().max().copied()) else {
        return Ok(Vec::new());
    };
    let name = loaded.name().to_owned();
    let event_left = matches!(join.left, Source::Events(_));
    let left_table = source_table(&join.left, &name)?;
    let time = if event_left {
        TimeMode::EventTime
    } else {
        TimeMode::Optional
    };
    let left = source::load(
        warehouse,
        &left_table,
        join.left.query(),
        PartitionBounds {
            start: Some(first),
            end: last,
        },
        time,
        &name,
    )
    .await?;
    let left = LeftRows::of(&left, days, event_left, &left_table.to_string(), &name)?;
    let mut days_sorted = days.to_vec();
    days_sorted.sort();
    days_sorted.dedup();
    let group_of: Vec<u32> = left
        .ds
        .iter()
        .map(|d| days_sorted.binary_search(d).expect("live rows are in days") as u32)
        .collect();
    let rows = JoinRows::compute(
        warehouse,
        loaded,
        join,
        &left,
        Groups::new(group_of, days_sorted.len()),
        limit,
    )
    .await?;
    let output = TableName::parse(&loaded.output_table())?;
    let mut written = Vec::new();
    for (g, d) in days_sorted.iter().enumerate() {
        if rows.groups.positions[g].is_empty() {
            continue;
        }
        let batch = rows.assemble(g)?;
        let batch = derive(&batch, &join.derivations, &rows.left_columns, &name).await?;
        written.push(
            warehouse
                .write_partition(&output, "ds", *d, &[batch])
                .await?,
        );
    }
    Ok(written)
}

/// The Join's rows for an explicit left side instead of its left source (the consistency
/// check's logged requests): `left` holds the left columns (keys, `ts`) plus the engine's
/// `__ts` (epoch millis) and `__ds` (`yyyy-MM-dd`); every row is computed as an event-left row
/// at its `__ts`, as the fetcher answers a request. Key columns are cast to each GroupBy's key
/// types (logged keys are typed from JSON). Rows come back in `left`'s order.
pub async fn backfill_join_for_left(
    warehouse: &Warehouse,
    loaded: &LoadedConfig,
    join: &Join,
    left: &RecordBatch,
) -> Result<RecordBatch> {
    let name = loaded.name().to_owned();
    if left
        .column_by_name(TS)
        .is_none_or(|c| c.data_type() != &DataType::Int64)
    {
        return Err(EngineError::Input {
            file: name,
            message: format!("the explicit left side has no Int64 {TS} column"),
        });
    }
    let ds = left.column_by_name(DS).ok_or_else(|| EngineError::Input {
        file: name.clone(),
        message: format!("the explicit left side has no {DS} column"),
    })?;
    let mut days: Vec<PartitionDate> = Vec::new();
    let ds = ds
        .as_string_opt::<i32>()
        .ok_or_else(|| EngineError::Input {
            file: name.clone(),
            message: format!("the explicit left side's {DS} column is not text"),
        })?;
    for d in ds.iter().flatten() {
        let d = PartitionDate::parse(d).map_err(|e| EngineError::Input {
            file: name.clone(),
            message: e.to_string(),
        })?;
        if !days.contains(&d) {
            days.push(d);
        }
    }
    if days.is_empty() {
        return Ok(RecordBatch::new_empty(Arc::new(Schema::empty())));
    }
    let mut left = LeftRows::of(left, &days, true, "the logged requests", &name)?;
    left.cast_keys = true;
    let n = left.live.len();
    let rows = JoinRows::compute(
        warehouse,
        loaded,
        join,
        &left,
        Groups::new(vec![0; n], 1),
        MemoryLimit::default_for_machine(),
    )
    .await?;
    let batch = rows.assemble(0)?;
    derive(&batch, &join.derivations, &rows.left_columns, &name).await
}

/// The left rows a Join computes: those in the requested partitions ("live"), with the date
/// each is computed as of.
struct LeftRows<'a> {
    batch: &'a RecordBatch,
    ts: arrow::array::Int64Array,
    /// Source row of each live row, in left order.
    live: Vec<usize>,
    /// Per live row: its partition, and the date its features are as of (its time's day for
    /// an event left, else its partition).
    ds: Vec<PartitionDate>,
    a: Vec<PartitionDate>,
    event_left: bool,
    /// Cast left keys to the GroupBys' key types (logged keys are typed from JSON).
    cast_keys: bool,
}

impl<'a> LeftRows<'a> {
    fn of(
        batch: &'a RecordBatch,
        days: &[PartitionDate],
        event_left: bool,
        table: &str,
        config: &str,
    ) -> Result<LeftRows<'a>> {
        let ts = batch
            .column_by_name(TS)
            .expect("loaded")
            .as_primitive::<Int64Type>()
            .clone();
        let texts = batch
            .column_by_name(DS)
            .expect("loaded")
            .as_string::<i32>()
            .clone();
        let mut left = LeftRows {
            batch,
            ts,
            live: Vec::new(),
            ds: Vec::new(),
            a: Vec::new(),
            event_left,
            cast_keys: false,
        };
        let mut partitions = PartitionTexts::default();
        for r in 0..batch.num_rows() {
            let ds = partitions.date(texts.value(r), config)?;
            if !days.contains(&ds) {
                continue;
            }
            let a = if event_left {
                if left.ts.is_null(r) {
                    return Err(EngineError::Input {
                        file: config.to_owned(),
                        message: format!("a left row of {table} in partition {ds} has a null ts"),
                    });
                }
                date_of(left.ts.value(r))
            } else {
                ds
            };
            left.live.push(r);
            left.ds.push(ds);
            left.a.push(a);
        }
        Ok(left)
    }

    /// The live rows' selected columns, then `ts` for an event left without one.
    fn columns(&self, config: &str) -> Result<(Vec<Field>, Vec<ArrayRef>)> {
        let mut fields: Vec<Field> = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        let indices = UInt32Array::from_iter_values(self.live.iter().map(|r| *r as u32));
        let take = |c: &dyn Array| {
            arrow::compute::take(c, &indices, None)
                .map_err(arrow_err(format!("{config}: left rows")))
        };
        for f in self.batch.schema().fields() {
            if f.name() == TS || f.name() == DS {
                continue;
            }
            fields.push(f.as_ref().clone());
            columns.push(take(
                self.batch
                    .column_by_name(f.name())
                    .expect("own field")
                    .as_ref(),
            )?);
        }
        if self.event_left && self.batch.schema().field_with_name("ts").is_err() {
            fields.push(Field::new("ts", DataType::Int64, true));
            columns.push(take(&self.ts)?);
        }
        Ok((fields, columns))
    }

    /// The left columns holding `part`'s keys, in its GroupBy's key order.
    fn keys(&self, part: &JoinPart, data: &LoadedGroupBy, config: &str) -> Result<Vec<ArrayRef>> {
        part.group_by
            .key_columns
            .iter()
            .zip(&data.key_types)
            .map(|(rk, t)| {
                // keyMapping maps a LEFT column to a RIGHT key; unmapped keys match by name.
                let lk = part.left_column(rk);
                let column = self.batch.column_by_name(lk).cloned().ok_or_else(|| {
                    EngineError::Input {
                        file: config.to_owned(),
                        message: format!(
                            "part {}: left column {lk:?} (for key {rk:?}) is not selected on the left",
                            part.group_by.metadata.name
                        ),
                    }
                })?;
                if self.cast_keys {
                    arrow::compute::cast(&column, t)
                        .map_err(arrow_err(format!("{config}: a logged key as {t}")))
                } else {
                    Ok(column)
                }
            })
            .collect()
    }
}

/// Output groups (one partition each): per group, its live rows in left order.
struct Groups {
    positions: Vec<Vec<u32>>,
}

impl Groups {
    /// Groups from each live row's group.
    fn new(group_of: Vec<u32>, count: usize) -> Groups {
        let mut positions = vec![Vec::new(); count];
        for (p, g) in group_of.iter().enumerate() {
            positions[*g as usize].push(p as u32);
        }
        Groups { positions }
    }
}

/// One part's features, per shard and per group.
struct PartFeatures {
    fields: Vec<Field>,
    /// Per live row, its shard.
    shard_of: Vec<u32>,
    /// Per shard, one batch per group: the features of the shard's rows of that group, in
    /// left order.
    shards: Vec<IndexedBatches>,
}

/// A Join's computed rows, written group by group.
struct JoinRows {
    left_fields: Vec<Field>,
    left: Vec<ArrayRef>,
    left_columns: Vec<String>,
    groups: Groups,
    parts: Vec<PartFeatures>,
    /// Kept until the rows are dropped: the spilled outputs live in it.
    _spill: SpillDir,
}

impl JoinRows {
    async fn compute(
        warehouse: &Warehouse,
        loaded: &LoadedConfig,
        join: &Join,
        left: &LeftRows<'_>,
        groups: Groups,
        limit: MemoryLimit,
    ) -> Result<JoinRows> {
        let name = loaded.name().to_owned();
        let (left_fields, left_columns) = left.columns(&name)?;
        let mut spill = SpillDir::new()?;
        let (Some(a_min), Some(a_max)) = (left.a.iter().min(), left.a.iter().max()) else {
            return Ok(JoinRows {
                left_columns: left_fields.iter().map(|f| f.name().clone()).collect(),
                left_fields,
                left: left_columns,
                groups,
                parts: Vec::new(),
                _spill: spill,
            });
        };
        let range = (a_min.add_days(-1), *a_max);
        // Parts whose GroupBys index the same rows alike are computed together from one read
        // and one index of those rows, shard by shard.
        let mut parts: Vec<Option<PartFeatures>> = join.join_parts.iter().map(|_| None).collect();
        for (i, part) in join.join_parts.iter().enumerate() {
            if parts[i].is_some() {
                continue;
            }
            let together: Vec<usize> = (i..join.join_parts.len())
                .filter(|&j| {
                    j == i
                        || (parts[j].is_none()
                            && same_index(
                                &part.group_by,
                                &join.join_parts[j].group_by,
                                range.0,
                                range.1,
                            ))
                })
                .collect();
            let features: u64 = together
                .iter()
                .map(|&j| {
                    join.join_parts[j]
                        .group_by
                        .aggregations
                        .as_ref()
                        .map_or(4, |aggs| {
                            aggs.iter()
                                .map(|a| a.windows.len().max(1) * a.buckets.len().max(1))
                                .sum::<usize>()
                        }) as u64
                })
                .sum();
            let other = left.live.len() as u64 * features * OUTPUT_BYTES_PER_FEATURE;
            let mut sharded = ShardedRows::load(
                warehouse,
                &part.group_by,
                range,
                limit,
                (other, 0),
                &mut spill,
            )
            .await?;
            let count = sharded.count();
            let mut runs: Vec<PartRun> = together
                .iter()
                .map(|&j| PartRun::new(loaded, join, &join.join_parts[j], left.live.len()))
                .collect();
            let gbs: Vec<&GroupBy> = runs.iter().map(|r| &r.part.group_by).collect();
            for s in 0..count {
                let indexed = if gbs.len() == 1 {
                    vec![sharded.index(s)?]
                } else {
                    sharded.index_for(s, &gbs)?
                };
                for (run, data) in runs.iter_mut().zip(&indexed) {
                    run.shard(loaded, left, &groups, data, s, count, &mut spill)?;
                }
            }
            for (&j, run) in together.iter().zip(runs) {
                parts[j] = Some(run.finish());
            }
        }
        let parts = parts
            .into_iter()
            .map(|p| p.expect("every part computed"))
            .collect();
        Ok(JoinRows {
            left_columns: left_fields.iter().map(|f| f.name().clone()).collect(),
            left_fields,
            left: left_columns,
            groups,
            parts,
            _spill: spill,
        })
    }

    /// Group `g`'s rows: left columns, then each part's features, in left order.
    fn assemble(&self, g: usize) -> Result<RecordBatch> {
        let positions = &self.groups.positions[g];
        let indices = UInt32Array::from(positions.clone());
        let mut fields = self.left_fields.clone();
        let mut columns = self
            .left
            .iter()
            .map(|c| arrow::compute::take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(arrow_err("assembling left rows".to_owned()))?;
        for part in &self.parts {
            let batches = part
                .shards
                .iter()
                .map(|s| s.get(g))
                .collect::<Result<Vec<_>>>()?;
            if let [only] = batches.as_slice() {
                columns.extend(only.columns().iter().cloned());
            } else {
                // Each shard holds its rows of the group in left order: deal them back out.
                let mut next = vec![0usize; batches.len()];
                let order: Vec<(usize, usize)> = positions
                    .iter()
                    .map(|p| {
                        let s = part.shard_of[*p as usize] as usize;
                        next[s] += 1;
                        (s, next[s] - 1)
                    })
                    .collect();
                for c in 0..part.fields.len() {
                    let arrays: Vec<&dyn Array> =
                        batches.iter().map(|b| b.column(c).as_ref()).collect();
                    columns.push(
                        arrow::compute::interleave(&arrays, &order)
                            .map_err(arrow_err("assembling features".to_owned()))?,
                    );
                }
            }
            fields.extend(part.fields.iter().cloned());
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(arrow_err("assembling the output".to_owned()))
    }
}

/// One part's features for every live left row, computed shard by shard.
struct PartRun<'j> {
    part: &'j JoinPart,
    prefix: String,
    /// Per live row, its shard (known once the first shard is indexed).
    shard_of_row: Vec<u32>,
    left_keys: Option<Vec<ArrayRef>>,
    out: PartFeatures,
}

impl<'j> PartRun<'j> {
    fn new(loaded: &LoadedConfig, join: &Join, part: &'j JoinPart, live: usize) -> PartRun<'j> {
        PartRun {
            part,
            prefix: join_part_prefix(join, part, loaded.dialect),
            shard_of_row: vec![0; live],
            left_keys: None,
            out: PartFeatures {
                fields: Vec::new(),
                shard_of: Vec::new(),
                shards: Vec::new(),
            },
        }
    }

    /// Computes the features of the left rows whose keys are in shard `s` (of `count`), from
    /// `data`, that shard's indexed rows.
    #[allow(clippy::too_many_arguments)]
    fn shard(
        &mut self,
        loaded: &LoadedConfig,
        left: &LeftRows<'_>,
        groups: &Groups,
        data: &LoadedGroupBy,
        s: usize,
        count: usize,
        spill: &mut SpillDir,
    ) -> Result<()> {
        let name = loaded.name();
        let part = self.part;
        let keys = match &self.left_keys {
            Some(k) => k,
            None => {
                let k = left.keys(part, data, name)?;
                if count > 1 {
                    // Route each live row to the shard its key's rows are in.
                    let mut key: Key = Vec::with_capacity(k.len());
                    for (p, r) in left.live.iter().enumerate() {
                        key.clear();
                        key.extend(k.iter().map(|c| val_at(c.as_ref(), *r)));
                        self.shard_of_row[p] = shard_of(&key, count) as u32;
                    }
                }
                self.left_keys.insert(k)
            }
        };
        let out = &mut self.out;
        if out.fields.is_empty() {
            out.fields = data
                .feature_names()
                .iter()
                .zip(data.feature_types())
                .map(|(f, t)| Field::new(prefixed_feature(&self.prefix, f), t, true))
                .collect();
        }
        // This shard's rows, group by group, each group in left order. Small groups are
        // computed together (so every core gets a share), then cut back into groups; a run
        // stops growing at RUN_ROWS so the values held before they become columns stay few.
        const RUN_ROWS: usize = 100_000;
        let schema = Arc::new(Schema::new(out.fields.clone()));
        let mut batches = Vec::with_capacity(groups.positions.len());
        let mut run: Vec<u32> = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        for (g, positions) in groups.positions.iter().enumerate() {
            run.extend(
                positions
                    .iter()
                    .copied()
                    .filter(|p| self.shard_of_row[*p as usize] as usize == s),
            );
            ends.push(run.len());
            if run.len() < RUN_ROWS && g + 1 < groups.positions.len() {
                continue;
            }
            let pieces = features_in_parallel(loaded, part, left, keys, data, &run, &out.fields)?;
            let mut start = 0;
            for end in ends.drain(..) {
                batches.push(
                    RecordBatch::try_new_with_options(
                        schema.clone(),
                        rows_between(&pieces, start..end)?,
                        &arrow::array::RecordBatchOptions::new().with_row_count(Some(end - start)),
                    )
                    .map_err(arrow_err(format!("{name}: building features")))?,
                );
                start = end;
            }
            run.clear();
        }
        out.shards.push(IndexedBatches::store(
            batches,
            (count > 1).then_some(&mut *spill),
        )?);
        Ok(())
    }

    fn finish(mut self) -> PartFeatures {
        self.out.shard_of = self.shard_of_row;
        self.out
    }
}

/// [`features_of_rows`] over the machine's cores: the rows are cut into one contiguous run per
/// thread, each run's columns put back in left order by its own thread. Returns the runs'
/// columns in order (together, the rows of `positions`), so the result is the same as on one
/// thread without copying the runs into one column.
fn features_in_parallel(
    loaded: &LoadedConfig,
    part: &JoinPart,
    left: &LeftRows<'_>,
    keys: &[ArrayRef],
    data: &LoadedGroupBy,
    positions: &[u32],
    fields: &[Field],
) -> Result<Vec<Vec<ArrayRef>>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below this, a thread costs more than it saves.
    const MIN_ROWS_PER_THREAD: usize = 20_000;
    let threads = threads.min(positions.len() / MIN_ROWS_PER_THREAD).max(1);
    let run =
        |rows| features_of_rows(loaded, part, left, keys, data, rows, fields)?.in_left_order();
    if threads == 1 {
        return Ok(vec![run(positions)?]);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = positions
            .chunks(positions.len().div_ceil(threads))
            .map(|rows| scope.spawn(move || run(rows)))
            .collect();
        handles.into_iter().map(joined).collect()
    })
}

/// Rows `range` of `pieces` (columns of consecutive runs of rows, as [`features_in_parallel`]
/// gives them): a slice of one piece's columns, joined with the next's only where the range
/// spans both.
fn rows_between(pieces: &[Vec<ArrayRef>], range: std::ops::Range<usize>) -> Result<Vec<ArrayRef>> {
    let mut parts: Vec<Vec<ArrayRef>> = Vec::new();
    let mut first = 0;
    for piece in pieces {
        let end = first + piece.first().map_or(0, |c| c.len());
        let (from, to) = (range.start.clamp(first, end), range.end.clamp(first, end));
        if from < to {
            parts.push(
                piece
                    .iter()
                    .map(|c| c.slice(from - first, to - from))
                    .collect(),
            );
        }
        first = end;
    }
    match parts.as_slice() {
        // No rows: any piece's columns, emptied.
        [] => Ok(pieces
            .first()
            .map(|p| p.iter().map(|c| c.slice(0, 0)).collect())
            .unwrap_or_default()),
        [_] => Ok(parts.remove(0)),
        _ => (0..parts[0].len())
            .map(|c| {
                let arrays: Vec<&dyn Array> = parts.iter().map(|p| p[c].as_ref()).collect();
                arrow::compute::concat(&arrays)
                    .map_err(arrow_err("joining feature columns".to_owned()))
            })
            .collect(),
    }
}

/// The feature columns of a run of rows, in the order they were computed.
struct RunFeatures {
    columns: Vec<ArrayRef>,
    /// The run's `i`-th row (in left order) is row `placed[i]` of `columns`.
    placed: Vec<u32>,
}

impl RunFeatures {
    /// The columns with their rows in left order.
    fn in_left_order(self) -> Result<Vec<ArrayRef>> {
        if self.placed.iter().enumerate().all(|(i, &j)| i as u32 == j) {
            return Ok(self.columns);
        }
        let placed = UInt32Array::from(self.placed);
        self.columns
            .iter()
            .map(|c| {
                arrow::compute::take(c.as_ref(), &placed, None)
                    .map_err(arrow_err("putting features back in left order".to_owned()))
            })
            .collect()
    }
}

/// Per feature (`fields`), the column of its values for the live rows at `positions` (one
/// shard's, in order), with where each row went.
///
/// The rows are computed in the order of their keys' rows in the index, not in left order:
/// rows of one key one after another, and keys in the order the index holds them, so the index
/// is read in sequence instead of at random (at 100,000 keys it is far larger than the caches).
/// The caller puts the columns back in left order.
fn features_of_rows(
    loaded: &LoadedConfig,
    part: &JoinPart,
    left: &LeftRows<'_>,
    keys: &[ArrayRef],
    data: &LoadedGroupBy,
    positions: &[u32],
    fields: &[Field],
) -> Result<RunFeatures> {
    let mut columns: Vec<FeatureColumn> = fields
        .iter()
        .map(|f| FeatureColumn::new(f.name(), f.data_type(), positions.len()))
        .collect();
    let temporal = part.group_by.accuracy() == Accuracy::Temporal;
    let entity_only = part
        .group_by
        .sources
        .iter()
        .all(|s| matches!(s, Source::Entities(_)));
    let inclusive = loaded.dialect == Dialect::Zipline;
    // SNAPSHOT rows of one key and day share their features: per day, the first row's
    // position in `columns`. Rows come key by key (see below), so only the current key's days
    // are kept: `memo_of` is the address of its rows (which names the key).
    let mut memo: Vec<(PartitionDate, usize)> = Vec::new();
    let mut memo_of: usize = 0;
    let mut key: Key = Vec::with_capacity(keys.len());
    let key_readers: Vec<ValReader> = keys.iter().map(|k| ValReader::new(k.as_ref())).collect();
    // A single 64-bit integer key on both sides is looked up by its value.
    let int_key = match keys {
        [only] if only.data_type() == &DataType::Int64 => {
            Some(only.as_primitive::<Int64Type>()).filter(|_| data.rows_of_int(0).is_some())
        }
        _ => None,
    };
    let rows_of = |key: &Key| match (int_key, key.as_slice()) {
        (Some(_), [Some(Val::Int(v))]) => data.rows_of_int(*v).unwrap_or_default(),
        _ => data.rows_of(key),
    };
    // Each row's key's rows, then the order to compute the rows in: by where those rows are
    // (keys without rows first), then left order.
    let mut order: Vec<(usize, u32)> = Vec::with_capacity(positions.len());
    let mut found: Vec<&[u32]> = Vec::with_capacity(positions.len());
    for (i, &p) in positions.iter().enumerate() {
        let r = left.live[p as usize];
        key.clear();
        key.extend(key_readers.iter().map(|k| k.get(r)));
        let rows = rows_of(&key);
        let at = if rows.is_empty() {
            0
        } else {
            rows.as_ptr() as usize
        };
        order.push((at, i as u32));
        found.push(rows);
    }
    order.sort_unstable();
    let mut scratch = FeatureScratch::default();
    // Where each row's values went: the left-order row `i` is row `placed[i]` of `columns`.
    let mut placed: Vec<u32> = vec![0; positions.len()];
    for (j, &(_, i)) in order.iter().enumerate() {
        placed[i as usize] = j as u32;
        let p = positions[i as usize] as usize;
        let r = left.live[p];
        key.clear();
        key.extend(key_readers.iter().map(|k| k.get(r)));
        let rows = found[i as usize];
        let mut sink = ColumnsSink {
            columns: &mut columns,
            next: 0,
        };
        if key.iter().any(Option::is_none) {
            for c in sink.columns.iter_mut() {
                c.push(None);
            }
        } else if !left.event_left {
            data.features_of_rows_into(
                &key,
                rows,
                AsOf::end_of(left.a[p]),
                &mut scratch,
                &mut sink,
            )?;
        } else if temporal && !entity_only {
            data.features_of_rows_into(
                &key,
                rows,
                AsOf::Time {
                    end: left.ts.value(r),
                    inclusive,
                    a: left.a[p],
                },
                &mut scratch,
                &mut sink,
            )?;
        } else {
            // SNAPSHOT: exactly the GroupBy backfill of the day before.
            let d = left.a[p].add_days(-1);
            if !rows.is_empty() {
                if memo_of != rows.as_ptr() as usize {
                    memo_of = rows.as_ptr() as usize;
                    memo.clear();
                }
                if let Some(&(_, first)) = memo.iter().find(|(day, _)| *day == d) {
                    for c in sink.columns.iter_mut() {
                        c.repeat(first);
                    }
                    continue;
                }
                memo.push((d, j));
            }
            data.features_of_rows_into(&key, rows, AsOf::end_of(d), &mut scratch, &mut sink)?;
        }
    }
    let columns = columns
        .into_iter()
        .map(FeatureColumn::finish)
        .collect::<Result<Vec<_>>>()?;
    Ok(RunFeatures { columns, placed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn ints(values: std::ops::Range<i64>) -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(values))
    }

    #[test]
    fn rows_between_pieces_are_the_rows_of_the_pieces_end_to_end() {
        // Three runs of rows: 0..4, 4..4 (empty) and 4..10, in two columns.
        let pieces = vec![
            vec![ints(0..4), ints(100..104)],
            vec![ints(4..4), ints(104..104)],
            vec![ints(4..10), ints(104..110)],
        ];
        for (start, end) in [
            (0, 10),
            (0, 4),
            (1, 3),
            (3, 7),
            (4, 10),
            (4, 4),
            (10, 10),
            (9, 10),
        ] {
            let columns = rows_between(&pieces, start..end).expect("rows exist");
            assert_eq!(columns.len(), 2);
            assert_eq!(columns[0].as_ref(), ints(start as i64..end as i64).as_ref());
            assert_eq!(
                columns[1].as_ref(),
                ints(100 + start as i64..100 + end as i64).as_ref()
            );
        }
    }
}
