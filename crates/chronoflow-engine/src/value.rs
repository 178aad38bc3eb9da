//! Values the aggregation engine works with: a small dynamic type over the Arrow columns a
//! GroupBy reads, with the total order Chronon's tie rules need.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
};

/// One input value. Floats order by `total_cmp` so sorting is total; strings are shared.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Val {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
}

impl Val {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            Val::Bool(b) => Some(f64::from(u8::from(*b))),
            Val::Str(_) => None,
        }
    }

    /// The kind of scalar this is.
    pub fn kind(&self) -> ScalarKind {
        match self {
            Val::Bool(_) => ScalarKind::Bool,
            Val::Int(_) => ScalarKind::Int,
            Val::Float(_) => ScalarKind::Float,
            Val::Str(_) => ScalarKind::Str,
        }
    }

    /// The text of the value, for histogram and bucket keys.
    pub fn key_text(&self) -> String {
        match self {
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => f.to_string(),
            Val::Str(s) => s.to_string(),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Val::Bool(_) => 0,
            Val::Int(_) | Val::Float(_) => 1,
            Val::Str(_) => 2,
        }
    }
}

impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Val {}

impl PartialOrd for Val {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Val {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
            (Val::Int(a), Val::Int(b)) => a.cmp(b),
            (Val::Float(a), Val::Float(b)) => a.total_cmp(b),
            (Val::Int(a), Val::Float(b)) => (*a as f64).total_cmp(b),
            (Val::Float(a), Val::Int(b)) => a.total_cmp(&(*b as f64)),
            (Val::Str(a), Val::Str(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl Hash for Val {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Val::Bool(b) => (0u8, b).hash(state),
            // Ints and integral floats are equal, so they must hash alike.
            Val::Int(i) => (1u8, *i as f64).to_bits_hash(state),
            Val::Float(f) => (1u8, *f).to_bits_hash(state),
            Val::Str(s) => (2u8, s).hash(state),
        }
    }
}

trait ToBitsHash {
    fn to_bits_hash<H: Hasher>(self, state: &mut H);
}

impl ToBitsHash for (u8, f64) {
    fn to_bits_hash<H: Hasher>(self, state: &mut H) {
        self.0.hash(state);
        // -0.0 and 0.0 compare equal under total_cmp? They do not; keep bits as they are.
        self.1.to_bits().hash(state);
    }
}

/// Reads row `row` of a scalar column (null gives `None`; unsupported types are the caller's
/// to reject up front with [`is_supported_scalar`]).
pub fn val_at(array: &dyn Array, row: usize) -> Option<Val> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Boolean => Val::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Val::Int(i64::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => Val::Int(i64::from(array.as_primitive::<Int16Type>().value(row))),
        DataType::Int32 => Val::Int(i64::from(array.as_primitive::<Int32Type>().value(row))),
        DataType::Int64 => Val::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => Val::Float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => Val::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Val::Str(array.as_string::<i32>().value(row).into()),
        DataType::LargeUtf8 => Val::Str(array.as_string::<i64>().value(row).into()),
        DataType::Utf8View => Val::Str(array.as_string_view().value(row).into()),
        _ => return None,
    })
}

/// Reads [`Val`]s from one Arrow column with its type resolved once, not per value: what
/// [`val_at`] gives, for loops over many rows of a column.
pub enum ValReader<'a> {
    Int64(&'a arrow::array::Int64Array),
    Float64(&'a arrow::array::Float64Array),
    Any(&'a dyn Array),
}

impl<'a> ValReader<'a> {
    pub fn new(array: &'a dyn Array) -> ValReader<'a> {
        match array.data_type() {
            DataType::Int64 => ValReader::Int64(array.as_primitive::<Int64Type>()),
            DataType::Float64 => ValReader::Float64(array.as_primitive::<Float64Type>()),
            _ => ValReader::Any(array),
        }
    }

    /// The value at `row`, as [`val_at`] reads it.
    #[inline]
    pub fn get(&self, row: usize) -> Option<Val> {
        match self {
            ValReader::Int64(a) => (!a.is_null(row)).then(|| Val::Int(a.value(row))),
            ValReader::Float64(a) => (!a.is_null(row)).then(|| Val::Float(a.value(row))),
            ValReader::Any(a) => val_at(*a, row),
        }
    }
}

pub fn is_supported_scalar(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
    )
}

/// The kind of scalar a column holds, as the aggregation output types need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ScalarKind {
    Bool,
    Int,
    Float,
    Str,
}

impl ScalarKind {
    pub fn of(t: &DataType) -> Option<ScalarKind> {
        Some(match t {
            DataType::Boolean => ScalarKind::Bool,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ScalarKind::Int,
            DataType::Float32 | DataType::Float64 => ScalarKind::Float,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ScalarKind::Str,
            _ => return None,
        })
    }

    pub fn data_type(self) -> DataType {
        match self {
            ScalarKind::Bool => DataType::Boolean,
            ScalarKind::Int => DataType::Int64,
            ScalarKind::Float => DataType::Float64,
            ScalarKind::Str => DataType::Utf8,
        }
    }
}
