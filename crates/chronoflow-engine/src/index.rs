//! The index of a GroupBy's source rows ([`KeyedRows`]): each key's rows contiguous and in
//! time order, with the columns the features read laid out in that order.
//!
//! Built in three steps, the large ones on two threads:
//! 1. key ids: each source row's key, numbered in first-seen order ([`key_ids`]);
//! 2. located rows: each keyed row's time, place and partition in key order, then by time
//!    ([`locate`], a counting sort);
//! 3. columns: times, partitions and input values read in that order ([`gather_values`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt32Type};
use chronoflow_config::{GroupBy, PartitionDate};

use crate::error::{Result, joined};
use crate::features::{KeyedRows, Numbers};
use crate::jobs::{IndexedColumns, Shape, source_column};
use crate::source::{self, DS, PartitionTexts, TS};
use crate::value::{Val, ValReader, val_at};

type Key = Vec<Option<Val>>;

/// One index row per source row (a list input adds one per extra element), grouped by key;
/// a selecting GroupBy's values go into its `shape`. An input marked in `numeric` whose
/// columns are all `Int64` or all `Float64` goes into [`KeyedRows::numbers`] instead.
///
/// The steps of the module's documentation: key ids, located rows, then the columns copied
/// straight into their final layout, so no column is grown by reallocation or permuted
/// afterwards.
pub(crate) fn index_rows(
    gb: &GroupBy,
    loaded: &[(RecordBatch, bool)],
    shape: &mut Shape,
    columns: &IndexedColumns,
    numeric: &[bool],
) -> Result<KeyedRows> {
    let name = gb.metadata.name.as_str();
    let read = |batch: &RecordBatch, names: &[String]| -> Result<Vec<ArrayRef>> {
        names
            .iter()
            .map(|c| source_column(name, batch, c))
            .collect()
    };
    let input_names = match &*shape {
        Shape::Aggregated { .. } => columns.inputs.clone(),
        Shape::Selected { columns, .. } => columns.clone(),
    };
    let mut inputs: Vec<Vec<ArrayRef>> = Vec::with_capacity(loaded.len());
    let mut buckets: Vec<Vec<ArrayRef>> = Vec::with_capacity(loaded.len());
    let mut origins: Vec<Option<arrow::array::UInt32Array>> = Vec::with_capacity(loaded.len());
    for (batch, _) in loaded {
        inputs.push(read(batch, &input_names)?);
        buckets.push(read(batch, &columns.buckets)?);
        origins.push(
            batch
                .column_by_name(source::ORIGIN)
                .and_then(|c| c.as_primitive_opt::<UInt32Type>())
                .cloned(),
        );
    }
    let readers: Vec<Vec<ValReader>> = inputs
        .iter()
        .map(|columns| columns.iter().map(|c| ValReader::new(c.as_ref())).collect())
        .collect();
    let lists = inputs
        .iter()
        .flatten()
        .any(|c| matches!(c.data_type(), DataType::List(_) | DataType::LargeList(_)));

    // Each keyed row's key id, then where each key's rows start (its count of rows before it).
    let keys = loaded
        .iter()
        .map(|(batch, _)| read(batch, &gb.key_columns))
        .collect::<Result<Vec<_>>>()?;
    let batch_rows: Vec<usize> = loaded.iter().map(|(b, _)| b.num_rows()).collect();
    let interner = KeyInterner::for_batches(loaded.iter().map(|(b, _)| b), &gb.key_columns);
    let (interner, key_of) = key_ids(interner, &keys, &batch_rows);
    drop(keys);
    let key_count = interner.len();
    let mut key_start: Vec<usize> = vec![0; key_count + 1];
    for &k in key_of.iter().filter(|&&k| k != NO_KEY) {
        key_start[k as usize + 1] += 1;
    }
    for k in 0..key_count {
        key_start[k + 1] += key_start[k];
    }
    let sorted = locate(name, loaded, &key_of, &key_start)?;
    drop(key_of);

    // The columns in that order (grown row by row only with list inputs).
    let capacity = if lists { sorted.len() } else { 0 };
    let mut rows = KeyedRows {
        ts: Vec::with_capacity(capacity),
        ds: Vec::with_capacity(capacity),
        is_entity: Vec::with_capacity(capacity),
        all_events: loaded.iter().all(|(_, entity)| !entity),
        ..KeyedRows::default()
    };
    let target = match shape {
        Shape::Aggregated { .. } => &mut rows.inputs,
        Shape::Selected { values, .. } => values,
    };
    *target = (0..input_names.len())
        .map(|_| Vec::with_capacity(capacity))
        .collect();
    rows.buckets = (0..columns.buckets.len())
        .map(|_| Vec::with_capacity(capacity))
        .collect();
    let with_origin = origins.iter().any(Option::is_some);
    let mut key_rows: Vec<std::ops::Range<u32>> = Vec::with_capacity(key_count);
    if !lists {
        // The common case: scalar inputs, one index row per source row, so each key's rows are
        // its run of `sorted`. The times, partitions and row ids on one thread, the values
        // (read across the source rows) on another.
        let sorted = &sorted;
        let inputs = &inputs;
        let readers = &readers;
        let buckets = &buckets;
        let origins = &origins;
        let (placed, values) = std::thread::scope(|scope| {
            let placed = scope.spawn(move || {
                let ts: Vec<Option<i64>> =
                    sorted.iter().map(|l| l.has_ts.then_some(l.ts)).collect();
                let ds: Vec<PartitionDate> = sorted.iter().map(|l| l.ds).collect();
                let is_entity: Vec<bool> = if loaded.iter().all(|(_, entity)| !entity) {
                    vec![false; sorted.len()]
                } else {
                    sorted.iter().map(|l| loaded[l.b as usize].1).collect()
                };
                let origin: Vec<u32> = if with_origin {
                    // A batch without the column (not streamed) is never mixed with streamed
                    // ones; 0 keeps the columns aligned if it were.
                    sorted
                        .iter()
                        .map(|l| {
                            origins[l.b as usize]
                                .as_ref()
                                .map_or(0, |o| o.value(l.r as usize))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let row_ids: Vec<u32> = (0..sorted.len() as u32).collect();
                (ts, ds, is_entity, origin, row_ids)
            });
            let values = gather_values(sorted, inputs, readers, buckets, numeric);
            (joined(placed), values)
        });
        (rows.ts, rows.ds, rows.is_entity, rows.origin, rows.row_ids) = placed;
        let (vals, numbers, bucket_values) = values;
        *target = vals;
        rows.numbers = numbers;
        rows.buckets = bucket_values;
        key_rows.extend((0..key_count).map(|k| key_start[k] as u32..key_start[k + 1] as u32));
    }
    for k in (0..key_count).filter(|_| lists) {
        let first = rows.ts.len() as u32;
        for l in &sorted[key_start[k]..key_start[k + 1]] {
            let (b, r) = (l.b as usize, l.r as usize);
            // A list input adds an index row per extra element.
            let per_row = values_per_row(&inputs[b], r);
            for values_of_row in &per_row {
                for (c, v) in values_of_row.iter().enumerate() {
                    target[c].push(v.clone());
                }
            }
            let added = per_row.len();
            for _ in 0..added {
                rows.ts.push(l.has_ts.then_some(l.ts));
                rows.ds.push(l.ds);
                rows.is_entity.push(loaded[b].1);
                for (c, bucket) in buckets[b].iter().enumerate() {
                    rows.buckets[c].push(val_at(bucket.as_ref(), r).map(|v| v.key_text()));
                }
                if with_origin {
                    // A batch without the column (not streamed) is never mixed with streamed
                    // ones; 0 keeps the columns aligned if it were.
                    rows.origin
                        .push(origins[b].as_ref().map_or(0, |o| o.value(r)));
                }
            }
        }
        key_rows.push(first..rows.ts.len() as u32);
    }
    if lists {
        rows.row_ids = (0..rows.ts.len() as u32).collect();
    }
    (rows.by_key, rows.by_int_key) = interner.into_maps(key_rows);
    rows.add_running_sums();
    Ok(rows)
}

/// No key: a source row whose key columns are all null.
const NO_KEY: u32 = u32::MAX;

/// A keyed source row as the index orders it: its time, where it is (batch `b`, row `r`), and
/// its partition. 24 bytes, so ordering moves little.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Located {
    has_ts: bool,
    ts: i64,
    b: u32,
    r: u32,
    ds: PartitionDate,
}

impl Default for Located {
    fn default() -> Self {
        Located {
            has_ts: false,
            ts: 0,
            b: 0,
            r: 0,
            ds: PartitionDate::from_ymd(1970, 1, 1).expect("1970-01-01 is a valid date"),
        }
    }
}

/// Below this many source rows, a step runs on one thread: a thread costs more than it saves.
const MIN_ROWS_IN_PARALLEL: usize = 100_000;

/// Each source row's key id ([`NO_KEY`] when every key column is null), numbered by `interner`
/// in first-seen order; `keys` and `batch_rows` are each batch's key columns and rows.
///
/// Over many rows the batches are split in two halves of about equal rows, interned on two
/// threads; the second half's keys are then numbered after the first's, in their own first-seen
/// order: the very ids one pass over all the rows gives.
fn key_ids(
    mut interner: KeyInterner,
    keys: &[Vec<ArrayRef>],
    batch_rows: &[usize],
) -> (KeyInterner, Vec<u32>) {
    fn intern(
        interner: &mut KeyInterner,
        keys: &[Vec<ArrayRef>],
        rows: &[usize],
        ids: &mut Vec<u32>,
    ) {
        for (keys, &rows) in keys.iter().zip(rows) {
            ids.extend((0..rows).map(|r| interner.id(keys, r).unwrap_or(NO_KEY)));
        }
    }
    let total: usize = batch_rows.iter().sum();
    let mut ids = Vec::with_capacity(total);
    // The first batch at or past half the rows starts the second half.
    let mut seen = 0;
    let half = batch_rows
        .iter()
        .position(|&n| {
            seen += n;
            seen > total / 2
        })
        .map_or(batch_rows.len(), |b| b + 1);
    if total < MIN_ROWS_IN_PARALLEL || half >= batch_rows.len() {
        intern(&mut interner, keys, batch_rows, &mut ids);
        return (interner, ids);
    }
    let mut second = interner.empty_like();
    let second_ids = std::thread::scope(|scope| {
        let second_ids = scope.spawn(|| {
            let mut ids = Vec::with_capacity(total - seen);
            intern(&mut second, &keys[half..], &batch_rows[half..], &mut ids);
            ids
        });
        intern(&mut interner, &keys[..half], &batch_rows[..half], &mut ids);
        joined(second_ids)
    });
    let renumbered = interner.absorb(second);
    ids.extend(second_ids.into_iter().map(|k| {
        if k == NO_KEY {
            NO_KEY
        } else {
            renumbered[k as usize]
        }
    }));
    (interner, ids)
}

/// Each keyed row's time, place and partition, in key order (`key_start[k]..key_start[k + 1]`
/// holds key `k`'s rows): a counting sort, so rows of one key keep their load order, then each
/// key's run sorted by time (rows without time first; ties in load order, the sort being
/// stable).
///
/// Over many rows the keys are split in two ranges of about equal rows, each placed and sorted
/// by its own thread, which reads every row's key id and writes only its own half.
fn locate(
    name: &str,
    loaded: &[(RecordBatch, bool)],
    key_of: &[u32],
    key_start: &[usize],
) -> Result<Vec<Located>> {
    let key_count = key_start.len() - 1;
    let total = key_start[key_count];
    let mut sorted = vec![Located::default(); total];
    if total < MIN_ROWS_IN_PARALLEL || key_count < 2 {
        place(name, loaded, key_of, (0..key_count, key_start), &mut sorted)?;
        return Ok(sorted);
    }
    // The first key starting at or past half the rows.
    let mid = key_start.partition_point(|&s| s < total / 2).min(key_count);
    let (front, back) = sorted.split_at_mut(key_start[mid]);
    std::thread::scope(|scope| {
        let back = scope.spawn(|| place(name, loaded, key_of, (mid..key_count, key_start), back));
        let front = place(name, loaded, key_of, (0..mid, key_start), front);
        front.and(joined(back))
    })?;
    Ok(sorted)
}

/// [`locate`] of the rows of keys `keys` into `out`, which starts at the first of them.
fn place(
    name: &str,
    loaded: &[(RecordBatch, bool)],
    key_of: &[u32],
    (keys, key_start): (std::ops::Range<usize>, &[usize]),
    out: &mut [Located],
) -> Result<()> {
    let offset = key_start[keys.start];
    let mut next: Vec<usize> = key_start[keys.clone()].iter().map(|s| s - offset).collect();
    // `NO_KEY` is past every key id, so out of every range.
    let (first, end) = (keys.start as u32, keys.end as u32);
    let mut i = 0;
    for (b, (batch, _)) in loaded.iter().enumerate() {
        let ts = batch
            .column_by_name(TS)
            .expect("loaded sources have __ts")
            .as_primitive::<Int64Type>();
        let ds = batch
            .column_by_name(DS)
            .expect("loaded sources have __ds")
            .as_string::<i32>();
        let mut partitions = PartitionTexts::default();
        for r in 0..batch.num_rows() {
            let k = key_of[i];
            i += 1;
            if !(first..end).contains(&k) {
                continue;
            }
            let row_ds = partitions.date(ds.value(r), name)?;
            let at = &mut next[(k - first) as usize];
            let has_ts = !ts.is_null(r);
            out[*at] = Located {
                has_ts,
                // A null's slot may hold any value: 0 keeps rows without time in load order.
                ts: if has_ts { ts.value(r) } else { 0 },
                b: b as u32,
                r: r as u32,
                ds: row_ds,
            };
            *at += 1;
        }
    }
    for run in key_start[keys.start..=keys.end].windows(2) {
        out[run[0] - offset..run[1] - offset].sort_by_key(|l| (l.has_ts, l.ts));
    }
    Ok(())
}

/// Input `c`'s values in `sorted` order with their validity, every batch's column being a `T`.
fn gather_primitive<T: arrow::datatypes::ArrowPrimitiveType>(
    sorted: &[Located],
    inputs: &[Vec<ArrayRef>],
    c: usize,
) -> (Vec<T::Native>, Vec<bool>) {
    let typed: Vec<&arrow::array::PrimitiveArray<T>> =
        inputs.iter().map(|cs| cs[c].as_primitive::<T>()).collect();
    sorted
        .iter()
        .map(|l| {
            let a = typed[l.b as usize];
            (a.value(l.r as usize), a.is_valid(l.r as usize))
        })
        .unzip()
}

/// Per input, its values in `sorted` order: as `Option<Val>`s, or as plain numbers
/// ([`KeyedRows::numbers`]) where `numeric` allows and every batch's column is `Int64` or
/// every one `Float64`; and per bucket column, each row's bucket.
#[allow(clippy::type_complexity)]
fn gather_values(
    sorted: &[Located],
    inputs: &[Vec<ArrayRef>],
    readers: &[Vec<ValReader>],
    buckets: &[Vec<ArrayRef>],
    numeric: &[bool],
) -> (
    Vec<Vec<Option<Val>>>,
    Vec<Option<Numbers>>,
    Vec<Vec<Option<String>>>,
) {
    let columns = readers.first().map_or(0, Vec::len);
    let mut vals: Vec<Vec<Option<Val>>> = (0..columns).map(|_| Vec::new()).collect();
    let mut numbers: Vec<Option<Numbers>> = (0..numeric.len()).map(|_| None).collect();
    for (c, column) in vals.iter_mut().enumerate() {
        let all = |t: DataType| inputs.iter().all(|cs| cs[c].data_type() == &t);
        if numeric.get(c).copied().unwrap_or(false) {
            if all(DataType::Int64) {
                let (values, valid) = gather_primitive::<Int64Type>(sorted, inputs, c);
                numbers[c] = Some(Numbers::Int {
                    values,
                    valid,
                    sums: None,
                });
                continue;
            }
            if all(DataType::Float64) {
                let (values, valid) = gather_primitive::<Float64Type>(sorted, inputs, c);
                numbers[c] = Some(Numbers::Float { values, valid });
                continue;
            }
        }
        *column = sorted
            .iter()
            .map(|l| readers[l.b as usize][c].get(l.r as usize))
            .collect();
    }
    let bucket_columns = buckets.first().map_or(0, Vec::len);
    let bucket_values = (0..bucket_columns)
        .map(|c| {
            sorted
                .iter()
                .map(|l| {
                    val_at(buckets[l.b as usize][c].as_ref(), l.r as usize).map(|v| v.key_text())
                })
                .collect()
        })
        .collect();
    (vals, numbers, bucket_values)
}

/// Dense ids for the keys of a GroupBy's rows, in first-seen order. A single 64-bit integer
/// or string key column (the common case) is looked up and kept by its raw value, without
/// building a [`Key`] per row or per key.
enum KeyInterner {
    Int(HashMap<i64, u32, foldhash::fast::RandomState>, Vec<i64>),
    Str(
        HashMap<Box<str>, u32, foldhash::fast::RandomState>,
        Vec<Arc<str>>,
    ),
    Any(HashMap<Key, u32, foldhash::fast::RandomState>, Vec<Key>),
}

/// The id `ids` gives `key`, numbering it next (pushed onto `all`) if it is new.
fn intern<K: std::hash::Hash + Eq, V>(
    ids: &mut HashMap<K, u32, foldhash::fast::RandomState>,
    all: &mut Vec<V>,
    key: K,
    value: impl FnOnce() -> V,
) -> u32 {
    *ids.entry(key).or_insert_with(|| {
        all.push(value());
        all.len() as u32 - 1
    })
}

impl KeyInterner {
    /// The fastest interner that reads every batch's key columns alike.
    fn for_batches<'a>(
        mut batches: impl Iterator<Item = &'a RecordBatch>,
        key_columns: &[String],
    ) -> KeyInterner {
        let type_of = |b: &RecordBatch| -> Option<DataType> {
            match key_columns {
                [only] => b.column_by_name(only).map(|c| c.data_type().clone()),
                _ => None,
            }
        };
        let first = batches.next();
        let t = first.and_then(type_of);
        let same = t.is_some() && batches.all(|b| type_of(b) == t);
        match t {
            Some(DataType::Int64) if same => KeyInterner::Int(HashMap::default(), Vec::new()),
            Some(DataType::Utf8) if same => KeyInterner::Str(HashMap::default(), Vec::new()),
            _ => KeyInterner::Any(HashMap::default(), Vec::new()),
        }
    }

    /// An empty interner of the same kind.
    fn empty_like(&self) -> KeyInterner {
        match self {
            KeyInterner::Int(..) => KeyInterner::Int(HashMap::default(), Vec::new()),
            KeyInterner::Str(..) => KeyInterner::Str(HashMap::default(), Vec::new()),
            KeyInterner::Any(..) => KeyInterner::Any(HashMap::default(), Vec::new()),
        }
    }

    /// The id of row `r`'s key; `None` when every key column is null.
    fn id(&mut self, keys: &[ArrayRef], r: usize) -> Option<u32> {
        match self {
            KeyInterner::Int(ids, all) => {
                let column = keys[0].as_primitive::<Int64Type>();
                if column.is_null(r) {
                    return None;
                }
                let v = column.value(r);
                Some(intern(ids, all, v, || v))
            }
            KeyInterner::Str(ids, all) => {
                let column = keys[0].as_string::<i32>();
                if column.is_null(r) {
                    return None;
                }
                let v = column.value(r);
                if let Some(id) = ids.get(v) {
                    return Some(*id);
                }
                Some(intern(ids, all, v.into(), || v.into()))
            }
            KeyInterner::Any(ids, all) => {
                let key: Key = keys.iter().map(|k| val_at(k.as_ref(), r)).collect();
                if key.iter().all(Option::is_none) {
                    return None;
                }
                if let Some(id) = ids.get(&key) {
                    return Some(*id);
                }
                Some(intern(ids, all, key.clone(), || key))
            }
        }
    }

    /// Numbers `other`'s keys (an interner made by [`Self::empty_like`]), in its order, as if
    /// they had come after every key seen here: per id in `other`, the key's id here.
    fn absorb(&mut self, other: KeyInterner) -> Vec<u32> {
        match (self, other) {
            (KeyInterner::Int(ids, all), KeyInterner::Int(_, keys)) => keys
                .into_iter()
                .map(|v| intern(ids, all, v, || v))
                .collect(),
            (KeyInterner::Str(ids, all), KeyInterner::Str(_, keys)) => keys
                .into_iter()
                .map(|v| match ids.get(v.as_ref()) {
                    Some(id) => *id,
                    None => intern(ids, all, v.as_ref().into(), || v),
                })
                .collect(),
            (KeyInterner::Any(ids, all), KeyInterner::Any(_, keys)) => keys
                .into_iter()
                .map(|key| match ids.get(&key) {
                    Some(id) => *id,
                    None => intern(ids, all, key.clone(), || key),
                })
                .collect(),
            _ => unreachable!("an interner absorbs only one of its own kind (empty_like)"),
        }
    }

    /// How many distinct keys have been seen.
    fn len(&self) -> usize {
        match self {
            KeyInterner::Int(_, all) => all.len(),
            KeyInterner::Str(_, all) => all.len(),
            KeyInterner::Any(_, all) => all.len(),
        }
    }

    /// The keys with their rows (`rows[id]`), and the same by integer value for a single
    /// 64-bit integer key column.
    #[allow(clippy::type_complexity)]
    fn into_maps(
        self,
        rows: Vec<std::ops::Range<u32>>,
    ) -> (
        HashMap<Key, std::ops::Range<u32>, foldhash::fast::RandomState>,
        Option<HashMap<i64, std::ops::Range<u32>, foldhash::fast::RandomState>>,
    ) {
        match self {
            KeyInterner::Int(ids, all) => {
                let by_int = ids
                    .into_iter()
                    .map(|(v, id)| (v, rows[id as usize].clone()))
                    .collect();
                let keys = all.into_iter().map(|v| vec![Some(Val::Int(v))]);
                (keys.zip(rows).collect(), Some(by_int))
            }
            KeyInterner::Str(_, all) => {
                let keys = all.into_iter().map(|v| vec![Some(Val::Str(v))]);
                (keys.zip(rows).collect(), None)
            }
            KeyInterner::Any(_, all) => (all.into_iter().zip(rows).collect(), None),
        }
    }
}

/// The index rows of source row `r`: one, plus one more per extra element of a list input,
/// carrying only that aggregation's value (SPEC §4.4: list elements are aggregated).
fn values_per_row(inputs: &[ArrayRef], r: usize) -> Vec<Vec<Option<Val>>> {
    let mut out: Vec<Vec<Option<Val>>> = vec![Vec::with_capacity(inputs.len())];
    for (i, input) in inputs.iter().enumerate() {
        for (e, v) in elements_at(input.as_ref(), r).into_iter().enumerate() {
            if out.len() <= e {
                out.push(vec![None; inputs.len()]);
            }
            if e == 0 {
                out[0].push(v);
            } else {
                out[e][i] = v;
            }
        }
    }
    out
}

/// The values of row `r`: one for a scalar column, each element (nulls dropped) for a list; at
/// least one entry so every source row keeps its place.
fn elements_at(array: &dyn Array, r: usize) -> Vec<Option<Val>> {
    let list = match array.data_type() {
        DataType::List(_) if !array.is_null(r) => array.as_list::<i32>().value(r),
        DataType::LargeList(_) if !array.is_null(r) => array.as_list::<i64>().value(r),
        DataType::List(_) | DataType::LargeList(_) => return vec![None],
        _ => return vec![val_at(array, r)],
    };
    let values: Vec<Option<Val>> = (0..list.len())
        .filter_map(|i| val_at(list.as_ref(), i))
        .map(Some)
        .collect();
    if values.is_empty() {
        vec![None]
    } else {
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    /// Enough rows, in several batches, for the two-thread paths; keys repeat across batches
    /// and some are null (in both key columns on every seventh row).
    fn batches() -> Vec<(RecordBatch, bool)> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new(TS, DataType::Int64, true),
            Field::new(DS, DataType::Utf8, false),
        ]));
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        (0..5)
            .map(|b| {
                let rows = 30_000 + 7_000 * b;
                let mut ids = Vec::with_capacity(rows);
                let mut names = Vec::with_capacity(rows);
                let mut ts = Vec::with_capacity(rows);
                for r in 0..rows {
                    let k = next() % 40_000;
                    let null = r % 7 == 0;
                    ids.push((!null).then_some(k as i64));
                    names.push((!null).then(|| format!("k{}", k % 9_000)));
                    // Few distinct times, so runs have ties; some rows have none.
                    ts.push((r % 11 != 0).then(|| (next() % 50) as i64 * 1_000));
                }
                let ds = StringArray::from(vec![format!("2024-01-{:02}", 10 + b); rows]);
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(ids)),
                        Arc::new(StringArray::from(names)),
                        Arc::new(Int64Array::from(ts)),
                        Arc::new(ds),
                    ],
                )
                .expect("columns match the schema");
                (batch, false)
            })
            .collect()
    }

    fn key_columns(loaded: &[(RecordBatch, bool)], names: &[&str]) -> Vec<Vec<ArrayRef>> {
        loaded
            .iter()
            .map(|(b, _)| {
                names
                    .iter()
                    .map(|n| b.column_by_name(n).unwrap().clone())
                    .collect()
            })
            .collect()
    }

    fn interner(loaded: &[(RecordBatch, bool)], names: &[&str]) -> KeyInterner {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        KeyInterner::for_batches(loaded.iter().map(|(b, _)| b), &names)
    }

    #[test]
    fn keys_numbered_on_two_threads_get_the_ids_of_one_pass() {
        let loaded = batches();
        let rows: Vec<usize> = loaded.iter().map(|(b, _)| b.num_rows()).collect();
        assert!(rows.iter().sum::<usize>() >= MIN_ROWS_IN_PARALLEL);
        for names in [&["id"][..], &["name"], &["id", "name"]] {
            let keys = key_columns(&loaded, names);
            let (two, ids) = key_ids(interner(&loaded, names), &keys, &rows);
            let mut one = interner(&loaded, names);
            let one_ids: Vec<u32> = keys
                .iter()
                .zip(&rows)
                .flat_map(|(k, &n)| {
                    (0..n)
                        .map(|r| one.id(k, r).unwrap_or(NO_KEY))
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(ids, one_ids, "key ids of {names:?}");
            assert!(ids.contains(&NO_KEY));
            let ranges: Vec<std::ops::Range<u32>> =
                (0..one.len() as u32).map(|k| k..k + 1).collect();
            assert_eq!(two.len(), one.len());
            let (two_keys, two_ints) = two.into_maps(ranges.clone());
            let (one_keys, one_ints) = one.into_maps(ranges);
            assert_eq!(two_keys, one_keys, "keys of {names:?}");
            assert_eq!(two_ints, one_ints, "integer keys of {names:?}");
        }
    }

    #[test]
    fn rows_located_on_two_threads_are_where_one_thread_puts_them() {
        let loaded = batches();
        let rows: Vec<usize> = loaded.iter().map(|(b, _)| b.num_rows()).collect();
        let keys = key_columns(&loaded, &["id"]);
        let (interner, key_of) = key_ids(interner(&loaded, &["id"]), &keys, &rows);
        let mut key_start = vec![0; interner.len() + 1];
        for &k in key_of.iter().filter(|&&k| k != NO_KEY) {
            key_start[k as usize + 1] += 1;
        }
        for k in 0..interner.len() {
            key_start[k + 1] += key_start[k];
        }
        let two = locate("test", &loaded, &key_of, &key_start).expect("partitions parse");
        let mut one = vec![Located::default(); two.len()];
        place(
            "test",
            &loaded,
            &key_of,
            (0..interner.len(), &key_start),
            &mut one,
        )
        .expect("partitions parse");
        assert!(two.len() >= MIN_ROWS_IN_PARALLEL);
        assert!(two == one, "the located rows differ");
        // And each key's run is in time order, rows without time first, ties in load order.
        for run in key_start.windows(2) {
            let order = |l: &Located| (l.has_ts, l.ts, l.b, l.r);
            let run = &one[run[0]..run[1]];
            assert!(run.windows(2).all(|w| order(&w[0]) < order(&w[1])));
        }
    }
}
