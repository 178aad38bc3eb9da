//! A Join's feature values written straight into typed columns, one left row at a time.
//!
//! [`crate::features::build_column`] builds a column from a `Vec<Option<Out>>`: an enum of 32
//! bytes per value (and a `Vec` per list), held for every row of a run before it becomes Arrow.
//! Here the common feature types (`Int64`, `Float64`, lists of either: COUNT, SUM, AVERAGE,
//! LAST_K over numbers) are appended as plain values as they are computed; every other type
//! keeps the `Out`s and goes through `build_column` at the end. Both give the same arrays.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, ListArray};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, FieldRef};

use crate::aggregate::Out;
use crate::error::{EngineError, Result};
use crate::features::build_column;
use crate::value::Val;

/// A column's nulls, or none when every value is valid (as Arrow's builders leave it).
fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    Some(NullBuffer::from(valid)).filter(|n| n.null_count() > 0)
}

/// One feature's values, appended row by row.
pub enum FeatureColumn {
    Int {
        values: Vec<i64>,
        valid: Vec<bool>,
    },
    Float {
        values: Vec<f64>,
        valid: Vec<bool>,
    },
    /// A list of `Int64` (`ints`) or `Float64` (`!ints`) items.
    List {
        item: FieldRef,
        ints: bool,
        offsets: Vec<i32>,
        int_items: Vec<i64>,
        float_items: Vec<f64>,
        item_valid: Vec<bool>,
        valid: Vec<bool>,
    },
    /// Any other type: the values as computed, built by [`build_column`].
    Other {
        name: String,
        data_type: DataType,
        values: Vec<Option<Out>>,
    },
}

impl FeatureColumn {
    /// An empty column named `name` (for errors) of type `data_type`, sized for `rows`.
    pub fn new(name: &str, data_type: &DataType, rows: usize) -> FeatureColumn {
        let list = |item: &FieldRef, ints: bool| FeatureColumn::List {
            item: item.clone(),
            ints,
            offsets: {
                let mut o = Vec::with_capacity(rows + 1);
                o.push(0);
                o
            },
            int_items: Vec::new(),
            float_items: Vec::new(),
            item_valid: Vec::new(),
            valid: Vec::with_capacity(rows),
        };
        match data_type {
            DataType::Int64 => FeatureColumn::Int {
                values: Vec::with_capacity(rows),
                valid: Vec::with_capacity(rows),
            },
            DataType::Float64 => FeatureColumn::Float {
                values: Vec::with_capacity(rows),
                valid: Vec::with_capacity(rows),
            },
            DataType::List(item) if item.data_type() == &DataType::Int64 => list(item, true),
            DataType::List(item) if item.data_type() == &DataType::Float64 => list(item, false),
            other => FeatureColumn::Other {
                name: name.to_owned(),
                data_type: other.clone(),
                values: Vec::with_capacity(rows),
            },
        }
    }

    /// Appends a value, converted as [`build_column`] converts it for this column's type.
    pub fn push(&mut self, v: Option<Out>) {
        match self {
            FeatureColumn::Int { values, valid } => {
                let x = match v {
                    Some(Out::Int(i)) | Some(Out::Scalar(Val::Int(i))) => Some(i),
                    _ => None,
                };
                values.push(x.unwrap_or_default());
                valid.push(x.is_some());
            }
            FeatureColumn::Float { values, valid } => {
                let x = match v {
                    Some(Out::Float(f)) | Some(Out::Scalar(Val::Float(f))) => Some(f),
                    Some(Out::Scalar(Val::Int(i))) => Some(i as f64),
                    _ => None,
                };
                values.push(x.unwrap_or_default());
                valid.push(x.is_some());
            }
            FeatureColumn::List { .. } => match v {
                Some(Out::List(items)) => self.push_list(items.into_iter()),
                Some(Out::FloatList(items)) => self.push_list(items.into_iter().map(Val::Float)),
                _ => self.push_null_list(),
            },
            FeatureColumn::Other { values, .. } => values.push(v),
        }
    }

    /// Appends a list of `items` (what `Some(Out::List(items))` appends, without the `Vec`).
    pub fn push_list(&mut self, items: impl Iterator<Item = Val>) {
        match self {
            FeatureColumn::List {
                ints,
                offsets,
                int_items,
                float_items,
                item_valid,
                valid,
                ..
            } => {
                let (len, _) = items.size_hint();
                if item_valid.capacity() == 0 && len > 0 {
                    // Sized for every row from the first list (LAST_K's are mostly full):
                    // grown by doubling, the items were copied again at every step.
                    let expected = valid.capacity().max(1) * len;
                    if *ints {
                        int_items.reserve(expected);
                    } else {
                        float_items.reserve(expected);
                    }
                    item_valid.reserve(expected);
                }
                for v in items {
                    if *ints {
                        let x = match v {
                            Val::Int(i) => Some(i),
                            _ => None,
                        };
                        int_items.push(x.unwrap_or_default());
                        item_valid.push(x.is_some());
                    } else {
                        let x = v.as_f64();
                        float_items.push(x.unwrap_or_default());
                        item_valid.push(x.is_some());
                    }
                }
                offsets.push(item_valid.len() as i32);
                valid.push(true);
            }
            other => other.push(Some(Out::List(items.collect()))),
        }
    }

    fn push_null_list(&mut self) {
        if let FeatureColumn::List { offsets, valid, .. } = self {
            offsets.push(*offsets.last().expect("offsets start with 0"));
            valid.push(false);
        }
    }

    /// Appends a copy of the value at row `i` (a SNAPSHOT row of a key and day already computed).
    pub fn repeat(&mut self, i: usize) {
        match self {
            FeatureColumn::Int { values, valid } => {
                values.push(values[i]);
                valid.push(valid[i]);
            }
            FeatureColumn::Float { values, valid } => {
                values.push(values[i]);
                valid.push(valid[i]);
            }
            FeatureColumn::List {
                ints,
                offsets,
                int_items,
                float_items,
                item_valid,
                valid,
                ..
            } => {
                let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
                if *ints {
                    int_items.extend_from_within(start..end);
                } else {
                    float_items.extend_from_within(start..end);
                }
                item_valid.extend_from_within(start..end);
                offsets.push(item_valid.len() as i32);
                valid.push(valid[i]);
            }
            FeatureColumn::Other { values, .. } => values.push(values[i].clone()),
        }
    }

    /// The column as Arrow.
    pub fn finish(self) -> Result<ArrayRef> {
        Ok(match self {
            FeatureColumn::Int { values, valid } => {
                Arc::new(Int64Array::new(ScalarBuffer::from(values), nulls(valid)))
            }
            FeatureColumn::Float { values, valid } => {
                Arc::new(Float64Array::new(ScalarBuffer::from(values), nulls(valid)))
            }
            FeatureColumn::List {
                item,
                ints,
                offsets,
                int_items,
                float_items,
                item_valid,
                valid,
            } => {
                let items: ArrayRef = if ints {
                    Arc::new(Int64Array::new(
                        ScalarBuffer::from(int_items),
                        nulls(item_valid),
                    ))
                } else {
                    Arc::new(Float64Array::new(
                        ScalarBuffer::from(float_items),
                        nulls(item_valid),
                    ))
                };
                Arc::new(
                    ListArray::try_new(
                        item,
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        items,
                        nulls(valid),
                    )
                    .map_err(|source| EngineError::Arrow {
                        context: "building a list feature".to_owned(),
                        source,
                    })?,
                )
            }
            FeatureColumn::Other {
                name,
                data_type,
                values,
            } => build_column(&name, &data_type, &values)?,
        })
    }
}
