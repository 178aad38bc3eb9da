//! Arrow values as JSON and as CSV text, the way chronoflow exports them: lists as JSON arrays,
//! maps as JSON objects with sorted keys, nulls as JSON `null` (empty CSV fields), NaN and
//! infinities as null.

use arrow::array::*;
use arrow::datatypes::{DataType, TimeUnit};
use serde_json::{Map, Number, Value};

/// `batch` with one more column, `name`, holding `value` in every row (a partition column).
pub fn with_constant_column(
    batch: &arrow::array::RecordBatch,
    name: &str,
    value: &str,
) -> Result<arrow::array::RecordBatch, arrow::error::ArrowError> {
    let mut fields: Vec<arrow::datatypes::Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(arrow::datatypes::Field::new(name, DataType::Utf8, false));
    let mut columns = batch.columns().to_vec();
    // One copy of the value per row, without a String per row.
    columns.push(std::sync::Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n(value, batch.num_rows()),
    )));
    arrow::array::RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )
}

/// Rows `rows` of `batch`, leaving out column `drop` (a partition column, which lives in the
/// directory name rather than in the files).
pub fn take_rows(
    batch: &arrow::array::RecordBatch,
    rows: &[u32],
    drop: Option<usize>,
) -> Result<arrow::array::RecordBatch, arrow::error::ArrowError> {
    let indices = UInt32Array::from(rows.to_vec());
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|i| Some(*i) != drop)
        .collect();
    let columns = keep
        .iter()
        .map(|i| arrow::compute::take(batch.column(*i).as_ref(), &indices, None))
        .collect::<Result<Vec<_>, _>>()?;
    let schema = batch.schema().project(&keep)?;
    arrow::array::RecordBatch::try_new(std::sync::Arc::new(schema), columns)
}

/// The JSON value of row `row` of `array`.
pub fn to_json(array: &dyn Array, row: usize) -> Value {
    // A column of Arrow's Null type has no validity buffer, so `is_null` says false for it.
    if array.is_null(row) || array.data_type() == &DataType::Null {
        return Value::Null;
    }
    macro_rules! num {
        ($t:ty) => {
            Value::from(
                array
                    .as_any()
                    .downcast_ref::<$t>()
                    .expect("type checked")
                    .value(row),
            )
        };
    }
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => num!(Int8Array),
        DataType::Int16 => num!(Int16Array),
        DataType::Int32 => num!(Int32Array),
        DataType::Int64 => num!(Int64Array),
        DataType::UInt8 => num!(UInt8Array),
        DataType::UInt16 => num!(UInt16Array),
        DataType::UInt32 => num!(UInt32Array),
        DataType::UInt64 => num!(UInt64Array),
        DataType::Float32 => float(f64::from(
            array
                .as_primitive::<arrow::datatypes::Float32Type>()
                .value(row),
        )),
        DataType::Float64 => float(
            array
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(row),
        ),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_owned()),
        DataType::Date32 => {
            let days = array
                .as_primitive::<arrow::datatypes::Date32Type>()
                .value(row);
            match chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0) {
                Some(d) => Value::String(d.format("%Y-%m-%d").to_string()),
                None => Value::from(days),
            }
        }
        DataType::Timestamp(unit, _) => {
            use arrow::datatypes::{
                TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
                TimestampSecondType,
            };
            // Epoch millis, rounded down (before 1970 too). Each unit has its own array type:
            // reading one as Int64 panicked on every timestamp column.
            let millis = match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1000),
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row)
                }
                TimeUnit::Microsecond => array
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(row)
                    .div_euclid(1000),
                TimeUnit::Nanosecond => array
                    .as_primitive::<TimestampNanosecondType>()
                    .value(row)
                    .div_euclid(1_000_000),
            };
            Value::from(millis)
        }
        DataType::Float16 => float(
            array
                .as_primitive::<arrow::datatypes::Float16Type>()
                .value(row)
                .to_f64(),
        ),
        DataType::List(_) => list(array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => list(array.as_list::<i64>().value(row).as_ref()),
        DataType::FixedSizeList(_, _) => list(array.as_fixed_size_list().value(row).as_ref()),
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            let mut pairs: Vec<(String, Value)> = (0..entries.len())
                .map(|i| {
                    let key = match to_json(keys.as_ref(), i) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(values.as_ref(), i))
                })
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(pairs.into_iter().collect::<Map<_, _>>())
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            Value::Object(
                fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (f.name().clone(), to_json(s.column(i).as_ref(), row)))
                    .collect(),
            )
        }
        _ => match arrow::util::display::ArrayFormatter::try_new(array, &Default::default()) {
            Ok(f) => Value::String(f.value(row).to_string()),
            Err(_) => Value::Null,
        },
    }
}

fn float(x: f64) -> Value {
    Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn list(values: &dyn Array) -> Value {
    Value::Array((0..values.len()).map(|i| to_json(values, i)).collect())
}

/// The CSV field for row `row`: scalars as text, nested values as JSON, null as empty; quoted
/// when it holds a comma, quote or line break.
pub fn to_csv_field(array: &dyn Array, row: usize) -> String {
    let text = match to_json(array, row) {
        Value::Null => return String::new(),
        Value::String(s) => s,
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Found by bench/probe: exporting a Parquet-imported timestamp column (any unit, with or
    /// without a time zone) panicked reading it as Int64; a column of the Null type exported
    /// `""` instead of null.
    #[test]
    fn timestamps_export_as_epoch_millis_and_null_columns_as_null_not_a_panic() {
        let micros = TimestampMicrosecondArray::from(vec![1_500, -1_500]).with_timezone("+05:30");
        assert_eq!(to_json(&micros, 0), Value::from(1));
        assert_eq!(to_json(&micros, 1), Value::from(-2));
        let seconds = TimestampSecondArray::from(vec![i64::MAX]);
        assert_eq!(to_json(&seconds, 0), Value::from(i64::MAX));
        let millis = TimestampMillisecondArray::from(vec![1_701_374_234_059]);
        assert_eq!(to_csv_field(&millis, 0), "1701374234059");
        let nanos = TimestampNanosecondArray::from(vec![1_701_374_234_059_999_999]);
        assert_eq!(to_json(&nanos, 0), Value::from(1_701_374_234_059_i64));
        let nulls = NullArray::new(2);
        assert_eq!(to_json(&nulls, 1), Value::Null);
        assert_eq!(to_csv_field(&nulls, 1), "");
        let halves =
            arrow::compute::cast(&Float32Array::from(vec![1.5]), &DataType::Float16).unwrap();
        assert_eq!(to_json(halves.as_ref(), 0), Value::from(1.5));
    }

    #[test]
    fn scalars_nulls_and_non_finite_floats() {
        let a = Float64Array::from(vec![Some(1.5), None, Some(f64::NAN)]);
        assert_eq!(to_json(&a, 0), Value::from(1.5));
        assert_eq!(to_json(&a, 1), Value::Null);
        assert_eq!(to_json(&a, 2), Value::Null);
        assert_eq!(to_csv_field(&a, 1), "");
        let s = StringArray::from(vec!["a,b \"c\""]);
        assert_eq!(to_csv_field(&s, 0), "\"a,b \"\"c\"\"\"");
    }

    #[test]
    fn lists_are_json_arrays_and_maps_have_sorted_keys() {
        let mut lists = ListBuilder::new(Int64Builder::new());
        lists.values().append_value(3);
        lists.values().append_null();
        lists.append(true);
        let lists = lists.finish();
        assert_eq!(to_csv_field(&lists, 0), "\"[3,null]\"");

        let mut maps = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
        maps.keys().append_value("z");
        maps.values().append_value(1);
        maps.keys().append_value("a");
        maps.values().append_value(2);
        maps.append(true).unwrap();
        let maps: ArrayRef = Arc::new(maps.finish());
        assert_eq!(to_json(maps.as_ref(), 0).to_string(), r#"{"a":2,"z":1}"#);
    }
}
