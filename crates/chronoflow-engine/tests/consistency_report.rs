//! Reading `<join>_consistency` and `<join>_drift` back as typed figures (the source of the
//! `consistency` command, the API route, the gauges and the alerts).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::PartitionDate;
use chronoflow_engine::consistency_report::{Thresholds, read_day, read_report};
use chronoflow_engine::{TableName, Warehouse};

const OUTPUT: &str = "default.team_join_v1";

fn day(s: &str) -> PartitionDate {
    PartitionDate::parse(s).unwrap()
}

/// Rows of `(feature, rows, mismatches, online_null_only, rate)`.
fn consistency_batch(rows: &[(&str, i64, i64, i64, f64)]) -> RecordBatch {
    let ints = |f: fn(&(&str, i64, i64, i64, f64)) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
    };
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("feature", DataType::Utf8, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("both_null", DataType::Int64, false),
            Field::new("online_null_only", DataType::Int64, false),
            Field::new("offline_null_only", DataType::Int64, false),
            Field::new("mismatches", DataType::Int64, false),
            Field::new("smape", DataType::Float64, true),
            Field::new("consistency_rate", DataType::Float64, false),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            ints(|r| r.1),
            ints(|_| 0),
            ints(|r| r.3),
            ints(|_| 0),
            ints(|r| r.2),
            Arc::new(Float64Array::from(vec![None; rows.len()])),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.4))),
        ],
    )
    .unwrap()
}

/// Rows of `(feature, side, psi)`, in the drift table's contract.
fn drift_batch(rows: &[(&str, &str, Option<f64>)]) -> RecordBatch {
    let n = rows.len();
    let floats = || -> ArrayRef { Arc::new(Float64Array::from(vec![Some(0.5); n])) };
    let mut fields = vec![
        Field::new("feature", DataType::Utf8, false),
        Field::new("side", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("null_rate", DataType::Float64, true),
        Field::new("distinct_estimate", DataType::Int64, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(Int64Array::from(vec![100; n])),
        floats(),
        Arc::new(Int64Array::from(vec![7; n])),
    ];
    for q in ["mean", "p05", "p25", "p50", "p75", "p95"] {
        fields.push(Field::new(q, DataType::Float64, true));
        columns.push(floats());
    }
    fields.push(Field::new("psi", DataType::Float64, true));
    columns.push(Arc::new(Float64Array::from(
        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
    )));
    fields.push(Field::new("baseline_days", DataType::Int64, true));
    columns.push(Arc::new(Int64Array::from(vec![7; n])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

async fn write(w: &Warehouse, table: &str, ds: &str, batch: RecordBatch) {
    w.write_partition(&TableName::parse(table).unwrap(), "ds", day(ds), &[batch])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_range_reads_each_days_figures_worst_first_with_thresholds_applied() {
    let w = Warehouse::open("memory://").unwrap();
    let consistency = format!("{OUTPUT}_consistency");
    write(
        &w,
        &consistency,
        "2023-11-29",
        consistency_batch(&[("a", 10, 0, 0, 1.0), ("__overall__", 10, 0, 0, 1.0)]),
    )
    .await;
    write(
        &w,
        &consistency,
        "2023-11-30",
        consistency_batch(&[
            ("a", 10, 1, 0, 0.9),
            ("b", 10, 3, 1, 0.6),
            ("c", 10, 0, 0, 1.0),
            ("__overall__", 10, 4, 0, 0.6),
        ]),
    )
    .await;
    write(
        &w,
        &format!("{OUTPUT}_drift"),
        "2023-11-30",
        drift_batch(&[
            ("a", "online", Some(0.05)),
            ("b", "offline", Some(0.7)),
            ("b", "online", Some(0.3)),
            ("c", "online", None),
        ]),
    )
    .await;
    let t = Thresholds {
        min_rate: 0.95,
        max_psi: 0.2,
    };
    let r = read_report(
        &w,
        "team.join.v1",
        OUTPUT,
        day("2023-11-28"),
        day("2023-11-30"),
        t,
    )
    .await
    .unwrap();
    assert_eq!(r.days_without_figures, vec![day("2023-11-28")]);
    assert_eq!(r.days.len(), 2);
    let (quiet, skewed) = (&r.days[0], &r.days[1]);
    assert!(!quiet.below_min_rate && quiet.features_below_min_rate.is_empty());
    assert_eq!(quiet.drift, None, "no drift partition that day");
    assert_eq!((skewed.rows, skewed.inconsistent_rows), (10, 4));
    assert!(skewed.below_min_rate);
    let order: Vec<&str> = skewed.features.iter().map(|f| f.feature.as_str()).collect();
    assert_eq!(order, ["b", "a", "c"]);
    assert_eq!(skewed.features_below_min_rate, ["b", "a"]);
    let above: Vec<(&str, &str)> = skewed
        .drift_above_max_psi
        .iter()
        .map(|d| (d.feature.as_str(), d.side.as_str()))
        .collect();
    assert_eq!(above, [("b", "offline"), ("b", "online")]);
    assert_eq!(skewed.drift.as_ref().unwrap().len(), 4);

    // The same figures as JSON: what the API returns.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["days"][1]["ds"], "2023-11-30");
    assert_eq!(json["days"][1]["features"][0]["feature"], "b");
    assert_eq!(json["thresholds"]["min_rate"], 0.95);

    let one = read_day(&w, "team.join.v1", OUTPUT, day("2023-11-28"), t)
        .await
        .unwrap();
    assert_eq!(one, None);
}

#[tokio::test]
async fn a_malformed_table_is_an_error_naming_table_partition_and_column() {
    let w = Warehouse::open("memory://").unwrap();
    let consistency = format!("{OUTPUT}_consistency");
    let good = consistency_batch(&[("__overall__", 10, 0, 0, 1.0)]);
    // consistency_rate as text.
    let mut columns = good.columns().to_vec();
    columns[7] = Arc::new(StringArray::from(vec!["1.0"]));
    let mut fields: Vec<Field> = good
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[7] = Field::new("consistency_rate", DataType::Utf8, false);
    let bad = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    write(&w, &consistency, "2023-11-30", bad).await;
    let err = read_day(
        &w,
        "team.join.v1",
        OUTPUT,
        day("2023-11-30"),
        Thresholds::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    for part in [
        consistency.as_str(),
        "ds=2023-11-30",
        "\"consistency_rate\"",
        "Utf8",
    ] {
        assert!(err.contains(part), "{part} not in: {err}");
    }

    // A drift table without `psi`.
    let w = Warehouse::open("memory://").unwrap();
    write(&w, &consistency, "2023-11-30", good).await;
    let drift = drift_batch(&[("a", "online", Some(0.1))]);
    let keep: Vec<usize> = (0..drift.num_columns())
        .filter(|i| drift.schema().field(*i).name() != "psi")
        .collect();
    write(
        &w,
        &format!("{OUTPUT}_drift"),
        "2023-11-30",
        drift.project(&keep).unwrap(),
    )
    .await;
    let err = read_day(
        &w,
        "team.join.v1",
        OUTPUT,
        day("2023-11-30"),
        Thresholds::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("{OUTPUT}_drift")) && err.contains("\"psi\" is missing"),
        "{err}"
    );

    // A range too long or backwards is refused.
    let err = read_report(
        &w,
        "team.join.v1",
        OUTPUT,
        day("2023-11-30"),
        day("2023-11-01"),
        Thresholds::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("1 to 366 days"), "{err}");
}
