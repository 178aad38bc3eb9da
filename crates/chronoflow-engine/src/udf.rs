//! Spark SQL functions that Chronon configs use and DataFusion lacks, registered as UDFs.
//!
//! Supported on top of DataFusion's own functions (`coalesce`, `nvl`, `concat`, `lower`, `substr`,
//! `round`, `CASE`, `CAST`, ...):
//! - `if(cond, a, b)`: `a` where `cond` is true, else `b` (a null `cond` gives `b`);
//! - `from_unixtime(seconds[, format])`: UTC time as text, format `yyyy-MM-dd HH:mm:ss` by default;
//! - `unix_timestamp(text[, format])`: seconds since the epoch of a UTC time written in `format`;
//! - `date_format(time, format)`: a date, timestamp or `yyyy-MM-dd[ HH:mm:ss]` text, formatted.
//!
//! Formats take Spark's letters `yyyy MM dd HH mm ss SSS`; anything else is literal text.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(If::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(FromUnixtime::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(UnixTimestamp::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(DateFormat::new()));
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct If {
    signature: Signature,
}

impl If {
    fn new() -> Self {
        If {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The type both branches of `if` are cast to.
fn common_type(a: &DataType, b: &DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        (x, y) if x == y => x.clone(),
        (Null, x) | (x, Null) => x.clone(),
        (x, y) if x.is_integer() && y.is_integer() => Int64,
        (x, y) if x.is_numeric() && y.is_numeric() => Float64,
        _ => Utf8,
    }
}

impl ScalarUDFImpl for If {
    fn name(&self) -> &str {
        "if"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 3 {
            return plan_err!("if(cond, a, b) takes 3 arguments, not {}", arg_types.len());
        }
        let t = common_type(&arg_types[1], &arg_types[2]);
        Ok(vec![DataType::Boolean, t.clone(), t])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(common_type(&arg_types[1], &arg_types[2]))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let cond = arrays[0].as_boolean();
        let cond = if cond.null_count() > 0 {
            arrow::compute::prep_null_mask_filter(cond)
        } else {
            cond.clone()
        };
        let out = arrow::compute::kernels::zip::zip(&cond, &arrays[1], &arrays[2])?;
        Ok(ColumnarValue::Array(out))
    }
}

/// Spark's datetime letters to chrono's.
fn chrono_format(spark: &str) -> String {
    let mut out = String::new();
    let mut rest = spark;
    let tokens = [
        ("yyyy", "%Y"),
        ("SSS", "%3f"),
        ("MM", "%m"),
        ("dd", "%d"),
        ("HH", "%H"),
        ("mm", "%M"),
        ("ss", "%S"),
    ];
    'outer: while !rest.is_empty() {
        for (spark_token, chrono_token) in tokens {
            if let Some(r) = rest.strip_prefix(spark_token) {
                out.push_str(chrono_token);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("non-empty");
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

const DEFAULT_FORMAT: &str = "yyyy-MM-dd HH:mm:ss";

/// The format argument (second, optional), as a chrono format per row.
fn formats(arrays: &[ArrayRef], rows: usize) -> Result<Vec<Option<String>>> {
    match arrays.get(1) {
        None => Ok(vec![Some(chrono_format(DEFAULT_FORMAT)); rows]),
        Some(f) => {
            let f = arrow::compute::cast(f, &DataType::Utf8)?;
            let f = f.as_string::<i32>();
            Ok((0..rows)
                .map(|i| (!f.is_null(i)).then(|| chrono_format(f.value(i))))
                .collect())
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FromUnixtime {
    signature: Signature,
}

impl FromUnixtime {
    fn new() -> Self {
        FromUnixtime {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for FromUnixtime {
    fn name(&self) -> &str {
        "from_unixtime"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types.len() {
            1 => Ok(vec![DataType::Int64]),
            2 => Ok(vec![DataType::Int64, DataType::Utf8]),
            n => plan_err!("from_unixtime(seconds[, format]) takes 1 or 2 arguments, not {n}"),
        }
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let secs = arrays[0].as_primitive::<Int64Type>();
        let formats = formats(&arrays, secs.len())?;
        let out: StringArray = (0..secs.len())
            .map(|i| {
                if secs.is_null(i) {
                    return None;
                }
                let t = chrono::DateTime::from_timestamp(secs.value(i), 0)?;
                formats[i].as_ref().map(|f| t.format(f).to_string())
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct UnixTimestamp {
    signature: Signature,
}

impl UnixTimestamp {
    fn new() -> Self {
        UnixTimestamp {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for UnixTimestamp {
    fn name(&self) -> &str {
        "unix_timestamp"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types.len() {
            1 => Ok(vec![DataType::Utf8]),
            2 => Ok(vec![DataType::Utf8, DataType::Utf8]),
            n => plan_err!(
                "unix_timestamp(text[, format]) takes 1 or 2 arguments, not {n} (the current time is not supported: it would make backfills irreproducible)"
            ),
        }
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text = arrays[0].as_string::<i32>();
        let formats = formats(&arrays, text.len())?;
        let out: Int64Array = (0..text.len())
            .map(|i| {
                if text.is_null(i) {
                    return None;
                }
                let f = formats[i].as_ref()?;
                // Spark gives null for text that does not match the format.
                chrono::NaiveDateTime::parse_from_str(text.value(i), f)
                    .ok()
                    .or_else(|| {
                        chrono::NaiveDate::parse_from_str(text.value(i), f)
                            .ok()
                            .and_then(|d| d.and_hms_opt(0, 0, 0))
                    })
                    .map(|t| t.and_utc().timestamp())
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DateFormat {
    signature: Signature,
}

impl DateFormat {
    fn new() -> Self {
        DateFormat {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for DateFormat {
    fn name(&self) -> &str {
        "date_format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!(
                "date_format(time, format) takes 2 arguments, not {}",
                arg_types.len()
            );
        }
        // Dates and timestamps become text first; text is parsed as a date or a date-time.
        Ok(vec![DataType::Utf8, DataType::Utf8])
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text = arrays[0].as_string::<i32>();
        let formats = formats(&arrays, text.len())?;
        let out: StringArray = (0..text.len())
            .map(|i| {
                if text.is_null(i) {
                    return None;
                }
                let raw = text.value(i).trim();
                let t = [
                    "%Y-%m-%d %H:%M:%S%.f",
                    "%Y-%m-%dT%H:%M:%S%.f",
                    "%Y-%m-%d %H:%M:%S",
                ]
                .iter()
                .find_map(|f| chrono::NaiveDateTime::parse_from_str(raw, f).ok())
                .or_else(|| {
                    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })?;
                formats[i].as_ref().map(|f| t.format(f).to_string())
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    async fn eval(sql: &str) -> String {
        let ctx = crate::source::session();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn if_picks_a_branch_and_treats_null_as_false() {
        let out = eval("SELECT if(x > 1, 'big', 'small') AS a, if(NULL, 1, 2.5) AS b FROM (VALUES (1), (2)) t(x)").await;
        assert!(
            out.contains("| small | 2.5 |") && out.contains("| big   | 2.5 |"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn unix_time_round_trips_in_utc() {
        let out = eval("SELECT from_unixtime(1701374234) AS a, unix_timestamp('2023-11-30 19:57:14') AS b, from_unixtime(0, 'yyyy/MM/dd') AS c, unix_timestamp('2023-11-30', 'yyyy-MM-dd') AS d, unix_timestamp('nope') AS e").await;
        assert!(
            out.contains("| 2023-11-30 19:57:14 | 1701374234 | 1970/01/01 | 1701302400 |   |"),
            "{out}"
        );
    }
}
