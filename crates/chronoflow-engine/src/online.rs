//! What online serving needs of a GroupBy (SPEC §4.6), computed with the backfill's own code so
//! that a fetch and a backfill cannot disagree.
//!
//! [`UploadShards`] prepares, as of the end of day `D`, one value per key (a shard of keys at a
//! time, so an upload holds what its memory limit allows):
//! - SNAPSHOT: the finalized features, exactly the backfill's partition `D`;
//! - TEMPORAL: partial aggregates per feature and tail-hop tile (a tile of a window `W` is
//!   `[t, t + tailHop(W))`; window starts fall on tile starts, so a window takes whole tiles) of
//!   the rows any window ending after the end of `D` can still count, plus as rows what cannot be
//!   tiled exactly: rows whose partition is not their event day (rule 1 of §4.2 then depends on
//!   the fetch day), and every row of a GroupBy with an operation that has no exact partial
//!   ([`partial::has_partial`]) or a bucket. At fetch time, the tiles inside each window are merged,
//!   the kept and streamed rows (partitions after `D`) it counts are added, and the result is
//!   finalized: exactly what the Join backfill computes for a left row at that time.
//!
//! Streamed rows come from [`replay_partition`] (a table's partition) and [`stream_records`] (a
//! topic's records), evaluated through the source's query exactly as the backfill reads it.
//!
//! Stored values are data, not trusted: a batch records the layout of its rows ([`RowSchema`]:
//! input columns with their types, bucket columns), streamed rows are stored with its
//! fingerprint, and [`OnlineGroupBy::features_at`] checks every tile and row against the
//! definition before counting it. Anything that does not fit (another definition, damaged
//! bytes) is an [`EngineError::StoredValue`], never a panic or a silently wrong value; which
//! streamed rows are counted at all is the fetcher's rule (rows of another layout are skipped).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use chronoflow_config::{Accuracy, Aggregation, Dialect, GroupBy, PartitionDate, Source};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Out, OutKind};
use crate::error::{EngineError, Result};
use crate::features::{
    AsOf, Feature, FeatureScratch, KeyedRows, compute_features, count_rows, plan_features,
};
use crate::jobs::{self, Shape};
use crate::partial::{self, Partial, has_partial};
use crate::shard::{MemoryLimit, ShardedRows, SpillDir};
use crate::source::{self, PartitionBounds, TimeMode};
use crate::table_name::TableName;
use crate::value::{ScalarKind, Val};
use crate::warehouse::Warehouse;
use crate::window::{
    DAY, check_time, date_of, date_of_day, end_of_day, oldest_partition, round_down, tail_hop,
    window_start,
};

/// A key's values, in the GroupBy's key column order.
pub type Key = Vec<Option<Val>>;

/// One input row of a TEMPORAL GroupBy, as the aggregations read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineRow {
    pub ts: i64,
    /// The row's partition, in days since 1970-01-01.
    pub day: i64,
    /// Per distinct aggregation input column.
    pub inputs: Vec<Option<Val>>,
    /// Per bucket column.
    pub buckets: Vec<Option<String>>,
}

impl OnlineRow {
    /// Row `r` of `rows`, which has time `ts`.
    fn of(rows: &KeyedRows, r: usize, ts: i64) -> OnlineRow {
        OnlineRow {
            ts,
            day: rows.ds[r].epoch_millis().div_euclid(DAY),
            inputs: rows.inputs.iter().map(|c| c[r].clone()).collect(),
            buckets: rows.buckets.iter().map(|c| c[r].clone()).collect(),
        }
    }

    pub fn partition(&self) -> PartitionDate {
        date_of_day(self.day)
    }
}

/// The layout of [`OnlineRow`]s: what each of `inputs` and `buckets` holds. A batch records the
/// one it was made with; streamed rows carry its [`fingerprint`](RowSchema::fingerprint), so
/// rows made by another definition (a column added, removed, or of another type) are told
/// apart from rows that fit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowSchema {
    /// Per distinct aggregation input column, in [`OnlineRow::inputs`] order: its name and the
    /// kind of its values (of its elements, for a list column).
    pub inputs: Vec<(String, ScalarKind)>,
    /// The bucket columns, in [`OnlineRow::buckets`] order.
    pub buckets: Vec<String>,
}

/// Bumped when [`OnlineRow`]'s own encoding changes, so older rows stop matching.
const ROW_FORMAT: u32 = 1;

impl RowSchema {
    fn of(shape: &Shape) -> RowSchema {
        let Shape::Aggregated {
            aggregations,
            input_kinds,
            ..
        } = shape
        else {
            return RowSchema::default();
        };
        // First-use order, as `jobs::input_columns` numbers the inputs.
        let mut inputs: Vec<(String, ScalarKind)> = Vec::new();
        for (agg, kind) in aggregations.iter().zip(input_kinds) {
            if !inputs.iter().any(|(name, _)| *name == agg.input_column) {
                inputs.push((agg.input_column.clone(), *kind));
            }
        }
        RowSchema {
            inputs,
            buckets: jobs::bucket_columns(aggregations),
        }
    }

    /// A stable 64-bit digest (FNV-1a) of the layout and of [`ROW_FORMAT`].
    pub fn fingerprint(&self) -> u64 {
        let text = serde_json::to_vec(&(ROW_FORMAT, self)).expect("names and kinds serialize");
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    /// Why `row` does not have this layout, if it does not.
    pub fn check(&self, row: &OnlineRow) -> std::result::Result<(), String> {
        if row.inputs.len() != self.inputs.len() || row.buckets.len() != self.buckets.len() {
            return Err(format!(
                "a row with {} input and {} bucket values, expected {} and {}",
                row.inputs.len(),
                row.buckets.len(),
                self.inputs.len(),
                self.buckets.len()
            ));
        }
        for ((name, kind), v) in self.inputs.iter().zip(&row.inputs) {
            self.check_value(name, *kind, v.as_ref())?;
        }
        Ok(())
    }

    fn check_value(
        &self,
        column: &str,
        kind: ScalarKind,
        v: Option<&Val>,
    ) -> std::result::Result<(), String> {
        match v {
            Some(v) if v.kind() != kind => Err(format!(
                "column {column:?} holds {kind:?} values, got {:?} {}",
                v.kind(),
                crate::features::val_json(v)
            )),
            _ => Ok(()),
        }
    }
}

/// A key's value in a batch upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BatchValue {
    /// SNAPSHOT: the features as of the end of the batch day, in feature order.
    Finalized(Vec<Option<Out>>),
    /// TEMPORAL: per feature, its tiles `(start, partial)` in start order (unwindowed: one tile
    /// starting at `i64::MIN`); and the rows later windows can still count that are not in tiles,
    /// sorted by time.
    Temporal {
        tiles: Vec<FeatureTiles>,
        rows: Vec<OnlineRow>,
    },
}

/// One feature's tiles: `(start, partial)` in start order.
pub type FeatureTiles = Vec<(i64, Partial)>;

/// What a batch says about itself, so a fetcher can read its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServingInfo {
    pub group_by: String,
    /// The batch day `D`: the values are as of its end.
    pub batch_ds: String,
    pub temporal: bool,
    /// TEMPORAL values carry partial aggregates (else rows only).
    pub tiled: bool,
    pub key_columns: Vec<String>,
    pub key_kinds: Vec<ScalarKind>,
    /// Per aggregation, what it produces (empty without aggregations).
    pub aggregation_kinds: Vec<OutKind>,
    pub features: Vec<String>,
    /// The layout of the rows it keeps, which streamed rows must share to be counted.
    pub row_schema: RowSchema,
}

/// Whether fetches add streamed rows and aggregate windows at request time. Mirrors the Join
/// backfill: a part built only on entity sources is a snapshot whatever its accuracy.
pub fn is_temporal(gb: &GroupBy) -> bool {
    gb.accuracy() == Accuracy::Temporal
        && gb.aggregations.is_some()
        && !gb.sources.iter().all(|s| matches!(s, Source::Entities(_)))
}

fn input_error(gb: &GroupBy, message: impl Into<String>) -> EngineError {
    EngineError::Input {
        file: gb.metadata.name.clone(),
        message: message.into(),
    }
}

fn stored_error(group_by: &str, message: impl Into<String>) -> EngineError {
    EngineError::StoredValue {
        group_by: group_by.to_owned(),
        message: message.into(),
    }
}

/// The rows an upload of `gb` as of the end of `ds` reads, split by key into as many shards as
/// `limit` requires, so that its values are computed (and handed on) one shard at a time.
pub struct UploadShards<'g> {
    gb: &'g GroupBy,
    ds: PartitionDate,
    temporal: bool,
    rows: ShardedRows<'g>,
}

impl<'g> UploadShards<'g> {
    /// Reads `gb`'s rows for the upload of `ds`; the caller's output costs about
    /// `output_row_bytes` per row while a shard is computed.
    pub async fn load(
        warehouse: &Warehouse,
        gb: &'g GroupBy,
        ds: PartitionDate,
        limit: MemoryLimit,
        output_row_bytes: u64,
        spill: &mut SpillDir,
    ) -> Result<UploadShards<'g>> {
        let temporal = is_temporal(gb);
        if temporal && gb.sources.iter().any(|s| matches!(s, Source::Entities(_))) {
            return Err(input_error(
                gb,
                "a TEMPORAL GroupBy mixing entity and event sources cannot be served yet",
            ));
        }
        // TEMPORAL: read what windows as of `a = D+1` reach, but only partitions up to D.
        let range = if temporal {
            (ds.add_days(1), ds)
        } else {
            (ds, ds)
        };
        let rows =
            ShardedRows::load(warehouse, gb, range, limit, (0, output_row_bytes), spill).await?;
        Ok(UploadShards {
            gb,
            ds,
            temporal,
            rows,
        })
    }

    /// How many shards there are.
    pub fn count(&self) -> usize {
        self.rows.count()
    }

    /// Computes shard `s` (each is computed once): hands `each` every key of it that has a
    /// value, in key order, with its value. Returns the upload's description, the same for
    /// every shard.
    pub fn compute<E: From<EngineError>>(
        &mut self,
        s: usize,
        mut each: impl FnMut(&Key, BatchValue) -> std::result::Result<(), E>,
    ) -> std::result::Result<ServingInfo, E> {
        let (gb, ds) = (self.gb, self.ds);
        let data = self.rows.index_with_inputs(s)?;
        let mut keys: Vec<&Key> = data.rows.by_key.keys().collect();
        keys.sort();
        let tiled = match &data.shape {
            Shape::Aggregated {
                aggregations,
                input_kinds,
                ..
            } if self.temporal => aggregations
                .iter()
                .zip(input_kinds)
                .all(|(a, k)| has_partial(a, *k) && a.buckets.is_empty()),
            _ => false,
        };
        if self.temporal {
            for key in keys {
                if let Some(value) = temporal_value(gb, ds, &data, key, tiled)? {
                    each(key, value)?;
                }
            }
        } else {
            let mut scratch = FeatureScratch::default();
            for key in keys {
                let features = data.features(key, AsOf::end_of(ds), &mut scratch)?;
                if features.iter().any(Option::is_some) {
                    each(key, BatchValue::Finalized(features))?;
                }
            }
        }
        let key_kinds = data
            .key_types
            .iter()
            // `index_group_by` only records key types it made from a `ScalarKind`.
            .map(|t| ScalarKind::of(t).expect("keys were checked when loading"))
            .collect();
        let aggregation_kinds = match &data.shape {
            Shape::Aggregated { kinds, .. } => kinds.clone(),
            Shape::Selected { .. } => Vec::new(),
        };
        Ok(ServingInfo {
            group_by: gb.metadata.name.clone(),
            batch_ds: ds.to_string(),
            temporal: self.temporal,
            tiled,
            key_columns: data.keys.clone(),
            key_kinds,
            aggregation_kinds,
            features: data.feature_names(),
            row_schema: RowSchema::of(&data.shape),
        })
    }
}

/// A TEMPORAL GroupBy's value for `key` as of the end of `ds`: its tiles (when `tiled`) and the
/// rows tiles cannot hold; `None` when no window ending after `ds` counts any of its rows.
fn temporal_value(
    gb: &GroupBy,
    ds: PartitionDate,
    data: &jobs::LoadedGroupBy,
    key: &Key,
    tiled: bool,
) -> Result<Option<BatchValue>> {
    let Shape::Aggregated {
        aggregations,
        features,
        ..
    } = &data.shape
    else {
        // `is_temporal` requires aggregations, and a GroupBy with them loads aggregated.
        unreachable!("temporal GroupBys aggregate");
    };
    let reach = Reach::of(aggregations, ds);
    let rows = &data.rows;
    let end = end_of_day(ds);
    let mut kept: Vec<OnlineRow> = Vec::new();
    let mut tiles: Vec<BTreeMap<i64, Option<Partial>>> = vec![BTreeMap::new(); features.len()];
    for r in data.rows.by_key[key].clone() {
        let r = r as usize;
        let (Some(ts), p) = (rows.ts[r], rows.ds[r]) else {
            continue;
        };
        if reach.start.is_some_and(|s| ts < s) || reach.oldest.is_some_and(|o| p < o) {
            continue;
        }
        if !tiled || date_of(ts) != p {
            kept.push(OnlineRow::of(rows, r, ts));
            continue;
        }
        // In its own day's partition: whenever its time is in a window, rule 1 holds.
        for (f, tiles) in features.iter().zip(tiles.iter_mut()) {
            let Some(v) = &rows.inputs[f.input][r] else {
                continue;
            };
            let start = match f.window {
                Some(w) if ts < window_start(end, w) => continue,
                Some(w) => round_down(ts, tail_hop(w.millis())),
                None => i64::MIN,
            };
            let agg = &aggregations[f.aggregation];
            Partial::of(agg, ts, v)
                .and_then(|p| p.add_to(agg, tiles.entry(start).or_default()))
                .map_err(|e| input_error(gb, format!("feature {}: {e}", f.name)))?;
        }
    }
    if kept.is_empty() && tiles.iter().all(BTreeMap::is_empty) {
        return Ok(None);
    }
    let tiles = tiles
        .into_iter()
        .map(|t| t.into_iter().filter_map(|(s, p)| Some((s, p?))).collect())
        .collect();
    Ok(Some(BatchValue::Temporal { tiles, rows: kept }))
}

/// The oldest time and partition any window ending after the end of `ds` can count; `None`
/// when an unwindowed aggregation counts everything.
struct Reach {
    start: Option<i64>,
    oldest: Option<PartitionDate>,
}

impl Reach {
    fn of(aggregations: &[Aggregation], ds: PartitionDate) -> Reach {
        let unwindowed = aggregations.iter().any(|a| a.windows.is_empty());
        let windows = || aggregations.iter().flat_map(|a| a.windows.iter().copied());
        if unwindowed {
            return Reach {
                start: None,
                oldest: None,
            };
        }
        Reach {
            start: windows().map(|w| window_start(end_of_day(ds), w)).min(),
            oldest: windows().map(|w| oldest_partition(ds.add_days(1), w)).min(),
        }
    }
}

/// A GroupBy ready to answer fetches from batch values and streamed rows.
#[derive(Debug)]
pub struct OnlineGroupBy {
    pub info: ServingInfo,
    batch_ds: PartitionDate,
    aggregations: Vec<Aggregation>,
    features: Vec<Feature>,
    inputs: usize,
    buckets: usize,
    /// ZL dialect: a window's head is inclusive.
    inclusive: bool,
    /// The fingerprint of `info.row_schema`, which streamed rows must carry.
    row_layout: u64,
}

impl OnlineGroupBy {
    /// Pairs a GroupBy definition with the batch it uploaded.
    pub fn new(gb: &GroupBy, dialect: Dialect, info: ServingInfo) -> Result<OnlineGroupBy> {
        let batch_ds = PartitionDate::parse(&info.batch_ds)
            .map_err(|e| input_error(gb, format!("serving info: {e}")))?;
        let aggregations = gb.aggregations.clone().unwrap_or_default();
        let input_names = jobs::input_columns(&aggregations);
        let bucket_names = jobs::bucket_columns(&aggregations);
        let features = if aggregations.is_empty() {
            Vec::new()
        } else {
            if info.aggregation_kinds.len() != aggregations.len() {
                return Err(input_error(
                    gb,
                    "the uploaded batch was made from a different definition; upload again",
                ));
            }
            let schema = &info.row_schema;
            let names = |columns: &[(String, ScalarKind)]| -> Vec<String> {
                columns.iter().map(|(n, _)| n.clone()).collect()
            };
            if names(&schema.inputs) != input_names || schema.buckets != bucket_names {
                return Err(input_error(
                    gb,
                    "the uploaded batch's rows do not have the definition's columns; upload again",
                ));
            }
            let index = jobs::input_index(&aggregations, &input_names);
            plan_features(
                &aggregations,
                &info.aggregation_kinds,
                &index,
                &bucket_names,
            )
        };
        Ok(OnlineGroupBy {
            row_layout: info.row_schema.fingerprint(),
            info,
            batch_ds,
            aggregations,
            features,
            inputs: input_names.len(),
            buckets: bucket_names.len(),
            inclusive: dialect == Dialect::Zipline,
        })
    }

    pub fn batch_ds(&self) -> PartitionDate {
        self.batch_ds
    }

    /// The fingerprint of the batch's row layout: streamed rows count only if they carry it.
    pub fn row_layout(&self) -> u64 {
        self.row_layout
    }

    fn stored_error(&self, message: impl Into<String>) -> EngineError {
        stored_error(&self.info.group_by, message)
    }

    /// The features of one key at time `at` (epoch millis), in [`ServingInfo::features`] order.
    /// `batch` is the key's batch value (if the batch has one); `streamed` its streamed rows
    /// (of this batch's [`RowSchema`]), of which only partitions after the batch day count
    /// (earlier ones are in the batch). A time outside [`check_time`]'s range, or a stored
    /// value that does not fit the definition, is an error.
    pub fn features_at(
        &self,
        batch: Option<&BatchValue>,
        streamed: &[OnlineRow],
        at: i64,
    ) -> Result<Vec<Option<Out>>> {
        check_time("at_millis", at)?;
        // The batch of day D is a fetch's state from the end of D on (as the backfill of a left
        // row of day D+1 reads D's snapshot); before that it would count later events (found by
        // bench/probe: a fetch at noon three days before the batch counted the two purchases
        // after it). Chronon refuses such a request too.
        let from = self.batch_ds.epoch_millis().saturating_add(DAY);
        if at < from {
            return Err(EngineError::BeforeBatch {
                group_by: self.info.group_by.clone(),
                at,
                batch_ds: self.batch_ds.to_string(),
                from,
            });
        }
        let (tiles, rows): (&[FeatureTiles], &[OnlineRow]) = match batch {
            Some(BatchValue::Finalized(values)) => {
                if values.len() != self.info.features.len() {
                    return Err(self.stored_error(format!(
                        "{} values for {} features",
                        values.len(),
                        self.info.features.len()
                    )));
                }
                return Ok(values.clone());
            }
            None if !self.info.temporal => return Ok(vec![None; self.info.features.len()]),
            Some(BatchValue::Temporal { tiles, rows }) => (tiles, rows),
            None => (&[], &[]),
        };
        self.check_tiles(tiles)?;
        let batch_day = self.batch_ds.epoch_millis().div_euclid(DAY);
        let mut data = KeyedRows {
            inputs: vec![Vec::new(); self.inputs],
            buckets: vec![Vec::new(); self.buckets],
            all_events: true,
            ..KeyedRows::default()
        };
        for row in rows
            .iter()
            .chain(streamed.iter().filter(|r| r.day > batch_day))
        {
            // Every column gets one value per row, or none: columns stay aligned.
            self.info
                .row_schema
                .check(row)
                .map_err(|e| self.stored_error(e))?;
            data.ts.push(Some(row.ts));
            data.ds.push(row.partition());
            data.is_entity.push(false);
            for (column, v) in data.inputs.iter_mut().zip(&row.inputs) {
                column.push(v.clone());
            }
            for (column, b) in data.buckets.iter_mut().zip(&row.buckets) {
                column.push(b.clone());
            }
        }
        let mut order: Vec<u32> = (0..data.ts.len() as u32).collect();
        order.sort_by_key(|r| data.ts[*r as usize]);
        let as_of = AsOf::Time {
            end: at,
            inclusive: self.inclusive,
            a: date_of(at),
        };
        if !self.info.tiled {
            return Ok(compute_features(
                &self.aggregations,
                &self.features,
                &data,
                &order,
                as_of,
                &mut FeatureScratch::default(),
            ));
        }
        let mut counted = Vec::new();
        let mut by_bucket = BTreeMap::new();
        self.features
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let agg = &self.aggregations[f.aggregation];
                let start = f.window.map(|w| window_start(at, w));
                let mut partial: Option<Partial> = None;
                for (tile, p) in tiles.get(i).map(Vec::as_slice).unwrap_or_default() {
                    if start.is_none_or(|s| *tile >= s) {
                        p.clone().add_to(agg, &mut partial)?;
                    }
                }
                count_rows(f, &data, &order, as_of, &mut counted, &mut by_bucket);
                partial::fold(agg, &mut partial, counted.iter().copied())?;
                Ok(partial.and_then(|p| p.finalize(agg)))
            })
            .collect::<std::result::Result<_, String>>()
            .map_err(|e| self.stored_error(e))
    }

    /// Checks that stored tiles are partials of their feature's operation over values of its
    /// input's type, at most one list per feature.
    fn check_tiles(&self, tiles: &[FeatureTiles]) -> Result<()> {
        if tiles.len() > self.features.len() {
            return Err(self.stored_error(format!(
                "tiles for {} features, it has {}",
                tiles.len(),
                self.features.len()
            )));
        }
        let schema = &self.info.row_schema;
        for (f, tiles) in self.features.iter().zip(tiles) {
            let agg = &self.aggregations[f.aggregation];
            // `new` checked that the schema lists the definition's input columns, which
            // `f.input` numbers.
            let (column, kind) = &schema.inputs[f.input];
            for (_, p) in tiles {
                let fits = p.fits(agg).and_then(|()| {
                    p.values()
                        .try_for_each(|v| schema.check_value(column, *kind, Some(v)))
                });
                fits.map_err(|e| self.stored_error(format!("feature {}: {e}", f.name)))?;
            }
        }
        Ok(())
    }
}

/// Streamed rows by key, and the layout they were made with.
#[derive(Debug, Default)]
pub struct StreamedRows {
    pub schema: RowSchema,
    pub rows: Vec<(Key, OnlineRow)>,
}

fn rows_by_key(gb: &GroupBy, evaluated: RecordBatch) -> Result<StreamedRows> {
    let data = jobs::index_group_by(gb, &[(evaluated, false)])?;
    let rows = &data.rows;
    let mut keys: Vec<&Key> = rows.by_key.keys().collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        for r in rows.by_key[key].clone() {
            let r = r as usize;
            let Some(ts) = rows.ts[r] else { continue };
            out.push((key.clone(), OnlineRow::of(rows, r, ts)));
        }
    }
    Ok(StreamedRows {
        schema: RowSchema::of(&data.shape),
        rows: out,
    })
}

/// A streamed row and the record (its position in the micro-batch) it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    pub record: u32,
    pub key: Key,
    pub row: OnlineRow,
}

/// What a micro-batch of a topic's records gave: rows, and the records that gave none because
/// they are broken (no time, no key), with why. Records the query's `wheres` drop are in
/// neither: they are valid events the GroupBy does not count.
#[derive(Debug, Default)]
pub struct StreamedRecords {
    pub schema: RowSchema,
    pub rows: Vec<RecordRow>,
    pub rejected: Vec<(u32, String)>,
}

/// A topic's records read by event source `source_index` of `gb`, evaluated through that
/// source's query by the backfill's own code. `batch` has the source table's columns, plus
/// [`source::ORIGIN`] (u32: each record's position) and `partition_column` (any date: the
/// query is not given one, since a record's partition is the day of its event time). Each row's
/// partition is its event's day, as if the record had landed in the table's partition of that
/// day.
pub async fn stream_records(
    gb: &GroupBy,
    source_index: usize,
    batch: RecordBatch,
    partition_column: &str,
) -> Result<StreamedRecords> {
    let Some(source @ Source::Events(events)) = gb.sources.get(source_index) else {
        return Err(input_error(
            gb,
            format!("source {source_index} is not one of its event sources: only those stream"),
        ));
    };
    if source.query().time_column.is_none() {
        return Err(input_error(
            gb,
            "a streamed source needs a timeColumn: a record has no partition to take its time from",
        ));
    }
    let table = TableName::parse(&events.table.table)?;
    let evaluated = source::evaluate(
        batch.schema(),
        vec![batch],
        source.query(),
        TimeMode::EventTime,
        partition_column,
        &gb.metadata.name,
        &table,
    )
    .await?;
    let mut rejected = Vec::new();
    let origin_of = |r: usize| -> Option<u32> {
        evaluated
            .column_by_name(source::ORIGIN)
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::UInt32Type>())
            .map(|c| c.value(r))
    };
    // Rows whose keys are all null are no key's events: the backfill skips them too.
    let keys: Vec<&arrow::array::ArrayRef> = gb
        .key_columns
        .iter()
        .filter_map(|k| evaluated.column_by_name(k))
        .collect();
    for r in 0..evaluated.num_rows() {
        if !keys.is_empty()
            && keys.iter().all(|k| k.is_null(r))
            && let Some(o) = origin_of(r)
        {
            rejected.push((
                o,
                format!("no value for key column(s) {}", gb.key_columns.join(", ")),
            ));
        }
    }
    let data = jobs::index_group_by(gb, &[(evaluated, false)])?;
    let rows = &data.rows;
    let mut out = Vec::with_capacity(rows.ts.len());
    for (key, indices) in &rows.by_key {
        for r in indices.clone() {
            let r = r as usize;
            let record = rows.origin.get(r).copied().unwrap_or_default();
            match rows.ts[r] {
                Some(ts) if check_time("event time", ts).is_ok() => {
                    let mut row = OnlineRow::of(rows, r, ts);
                    row.day = ts.div_euclid(DAY);
                    out.push(RecordRow {
                        record,
                        key: key.clone(),
                        row,
                    });
                }
                Some(ts) => {
                    rejected.push((record, format!("event time {ts} is outside 1970..9999")))
                }
                None => {
                    rejected.push((record, "no event time (the timeColumn is null)".to_owned()))
                }
            }
        }
    }
    out.sort_by_key(|r| r.record);
    rejected.sort();
    rejected.dedup_by_key(|(record, _)| *record);
    Ok(StreamedRecords {
        schema: RowSchema::of(&data.shape),
        rows: out,
        rejected,
    })
}

/// The event sources of `gb` reading `table`, or an error naming the tables it does read.
fn sources_reading<'g>(gb: &'g GroupBy, table: &TableName) -> Result<Vec<&'g Source>> {
    let mut tables = Vec::new();
    let mut found = Vec::new();
    for source in &gb.sources {
        if let Source::Events(events) = source {
            let t = TableName::parse(&events.table.table)?;
            if &t == table {
                found.push(source);
            }
            tables.push(t.to_string());
        }
    }
    if found.is_empty() {
        return Err(input_error(
            gb,
            format!(
                "{table} is not one of its event sources ({})",
                tables.join(", ")
            ),
        ));
    }
    Ok(found)
}

/// Replays partition `day` of `table` (an event source of `gb`) as streamed rows.
pub async fn replay_partition(
    warehouse: &Warehouse,
    gb: &GroupBy,
    table: &TableName,
    day: PartitionDate,
) -> Result<StreamedRows> {
    if !is_temporal(gb) {
        return Err(input_error(
            gb,
            "only TEMPORAL GroupBys (a topic, or accuracy TEMPORAL) take streamed rows",
        ));
    }
    let mut out: Option<StreamedRows> = None;
    for source in sources_reading(gb, table)? {
        let evaluated = source::load(
            warehouse,
            table,
            source.query(),
            PartitionBounds {
                start: Some(day),
                end: day,
            },
            TimeMode::EventTime,
            &gb.metadata.name,
        )
        .await?;
        let streamed = rows_by_key(gb, evaluated)?;
        match &mut out {
            None => out = Some(streamed),
            Some(out) if out.schema == streamed.schema => out.rows.extend(streamed.rows),
            Some(_) => {
                return Err(input_error(
                    gb,
                    format!("its sources reading {table} give its columns different types"),
                ));
            }
        }
    }
    Ok(out.unwrap_or_default())
}

/// The partitions of `table` (an event source of `gb`) after `since`, oldest first.
pub async fn partitions_after(
    warehouse: &Warehouse,
    gb: &GroupBy,
    table: &TableName,
    since: PartitionDate,
) -> Result<Vec<PartitionDate>> {
    sources_reading(gb, table)?;
    Ok(warehouse
        .partitions(table)
        .await?
        .into_iter()
        .filter(|d| *d > since)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronoflow_config::{Config, ConfigKind};

    use crate::aggregate::Out;

    const RETURNS: &str = include_str!(
        "../../../fixtures/chronon/quickstart/compiled/production/group_bys/quickstart/returns.v1"
    );

    fn returns() -> OnlineGroupBy {
        let (dialect, config) = chronoflow_config::repo::decode_text(
            "returns.v1",
            RETURNS,
            ConfigKind::GroupBy,
            Dialect::Airbnb,
        )
        .unwrap();
        let Config::GroupBy(gb) = config else {
            panic!("a GroupBy")
        };
        let info = ServingInfo {
            group_by: gb.metadata.name.clone(),
            batch_ds: "2023-11-29".to_owned(),
            temporal: true,
            tiled: false,
            key_columns: vec!["user_id".to_owned()],
            key_kinds: vec![ScalarKind::Int],
            aggregation_kinds: vec![
                OutKind::Int,
                OutKind::Int,
                OutKind::Float,
                OutKind::List(ScalarKind::Int),
            ],
            features: Vec::new(),
            row_schema: RowSchema {
                inputs: vec![("refund_amt".to_owned(), ScalarKind::Int)],
                buckets: Vec::new(),
            },
        };
        OnlineGroupBy::new(&gb, dialect, info).unwrap()
    }

    fn row(day: &str, hour: i64, amount: i64) -> OnlineRow {
        let d = PartitionDate::parse(day).unwrap();
        OnlineRow {
            ts: d.epoch_millis() + hour * 3_600_000,
            day: d.epoch_millis() / DAY,
            inputs: vec![Some(Val::Int(amount))],
            buckets: Vec::new(),
        }
    }

    /// Feature 0 is refund_amt_sum_3d.
    fn sum_3d(features: &[Option<Out>]) -> Option<Out> {
        features[0].clone()
    }

    #[test]
    fn streamed_rows_add_to_the_batch_but_not_twice() {
        let gb = returns();
        let batch = BatchValue::Temporal {
            tiles: Vec::new(),
            rows: vec![row("2023-11-29", 10, 5)],
        };
        let at = PartitionDate::parse("2023-11-30").unwrap().epoch_millis() + 12 * 3_600_000;
        let streamed = vec![
            row("2023-11-30", 1, 7),
            // Already in the batch's partitions: the batch holds it (a replay of an older day).
            row("2023-11-29", 11, 100),
            // After the fetch time: not yet.
            row("2023-11-30", 13, 1000),
        ];
        assert_eq!(
            sum_3d(&gb.features_at(Some(&batch), &streamed, at).unwrap()),
            Some(Out::Int(12))
        );
        // A key with streamed rows only.
        assert_eq!(
            sum_3d(&gb.features_at(None, &streamed, at).unwrap()),
            Some(Out::Int(7))
        );
        assert_eq!(sum_3d(&gb.features_at(None, &[], at).unwrap()), None);
    }

    #[test]
    fn a_late_streamed_row_counts_when_its_time_is_in_the_window() {
        // Partition 2023-11-30 holding an event of 2023-11-28: in the 3-day window, and counted,
        // as the Join backfill counts it (SPEC §4.6: late rows included).
        let gb = returns();
        let at = PartitionDate::parse("2023-11-30").unwrap().epoch_millis() + 3_600_000;
        let mut late = row("2023-11-30", 0, 9);
        late.ts = PartitionDate::parse("2023-11-28").unwrap().epoch_millis() + 5 * 3_600_000;
        assert_eq!(
            sum_3d(&gb.features_at(None, &[late], at).unwrap()),
            Some(Out::Int(9))
        );
    }
}
