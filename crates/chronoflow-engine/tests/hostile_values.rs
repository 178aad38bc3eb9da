//! Online values from users and from storage are data, not trusted: times anywhere in `i64`,
//! rows and tiles of another definition or damaged. Each gets an error or a correct result,
//! never a panic (regression tests for issue 11, then properties over random values).
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use chronoflow_config::{
    Aggregation, Config, ConfigKind, Dialect, Operation, PartitionDate, TimeUnit, Window,
};
use chronoflow_engine::EngineError;
use chronoflow_engine::aggregate::{Out, OutKind, compute};
use chronoflow_engine::online::{BatchValue, OnlineGroupBy, OnlineRow, RowSchema, ServingInfo};
use chronoflow_engine::partial::Partial;
use chronoflow_engine::value::{ScalarKind, Val};
use chronoflow_engine::window::{
    DAY, MAX_TIME, MINUTE, check_time, date_of, round_down, window_start,
};
use proptest::prelude::*;

const RETURNS: &str = include_str!(
    "../../../fixtures/chronon/quickstart/compiled/production/group_bys/quickstart/returns.v1"
);

/// quickstart.returns.v1 (SUM, COUNT, AVERAGE over 3d/14d/30d and LAST_K(2) of the integer
/// `refund_amt`), served from a batch of 2023-11-29, tiled or from rows.
fn returns(tiled: bool) -> OnlineGroupBy {
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
        tiled,
        key_columns: vec!["user_id".to_owned()],
        key_kinds: vec![ScalarKind::Int],
        aggregation_kinds: vec![
            OutKind::Int,
            OutKind::Int,
            OutKind::Float,
            OutKind::List(ScalarKind::Int),
        ],
        features: (0..10).map(|i| format!("f{i}")).collect(),
        row_schema: RowSchema {
            inputs: vec![("refund_amt".to_owned(), ScalarKind::Int)],
            buckets: Vec::new(),
        },
    };
    OnlineGroupBy::new(&gb, dialect, info).unwrap()
}

fn day(ds: &str) -> i64 {
    PartitionDate::parse(ds).unwrap().epoch_millis()
}

fn row(ts: i64, amount: Val) -> OnlineRow {
    OnlineRow {
        ts,
        day: ts.div_euclid(DAY),
        inputs: vec![Some(amount)],
        buckets: Vec::new(),
    }
}

/// 2023-11-30 12:00, the day after the batch.
fn noon_after() -> i64 {
    day("2023-11-30") + 12 * 3_600_000
}

fn stored_error(result: chronoflow_engine::Result<Vec<Option<Out>>>) -> String {
    match result {
        Err(e @ EngineError::StoredValue { .. }) => e.to_string(),
        other => panic!("expected a stored value error, got {other:?}"),
    }
}

#[test]
fn window_start_at_min_i64_saturates_instead_of_overflowing() {
    // `t.div_euclid(h) * h` overflowed here: the panic of a fetch at i64::MIN.
    let hour = Window {
        length: 1,
        unit: TimeUnit::Hours,
    };
    assert_eq!(window_start(i64::MIN, hour), i64::MIN);
    assert_eq!(round_down(i64::MIN, 5 * MINUTE), i64::MIN);
    // The CLI's `--at-millis=-9223372036000000000`: a 30-day window starts before i64::MIN.
    let month = Window {
        length: 30,
        unit: TimeUnit::Days,
    };
    assert_eq!(window_start(-9_223_372_036_000_000_000, month), i64::MIN);
    assert_eq!(
        round_down(-9_223_372_036_000_000_000, DAY),
        -9_223_372_036_051_200_000
    );
    assert_eq!(round_down(i64::MAX, DAY), i64::MAX - i64::MAX % DAY);
    // Partition dates saturate too.
    assert!(date_of(i64::MIN) < date_of(0));
    assert!(date_of(i64::MAX) > date_of(MAX_TIME));
}

#[test]
fn fetch_at_min_i64_is_an_error_not_a_panic() {
    for tiled in [false, true] {
        let gb = returns(tiled);
        let streamed = [row(noon_after() - 3_600_000, Val::Int(7))];
        for at in [
            i64::MIN,
            -9_223_372_036_000_000_000,
            -1,
            MAX_TIME + 1,
            i64::MAX,
        ] {
            let err = gb.features_at(None, &streamed, at).unwrap_err();
            assert!(
                matches!(err, EngineError::TimeOutOfRange { millis, .. } if millis == at),
                "{err}"
            );
            assert!(err.to_string().contains(&at.to_string()), "{err}");
        }
        // The end of the range works (its start is before the batch).
        gb.features_at(None, &streamed, MAX_TIME).unwrap();
        assert_eq!(
            gb.features_at(None, &streamed, noon_after()).unwrap()[0],
            Some(Out::Int(7))
        );
    }
    assert!(check_time("at_millis", -1).is_err());
}

/// Found by bench/probe: with the batch of 2023-11-29 served, a fetch at noon of 2023-11-26
/// counted the purchases of the 27th to the 29th (quickstart user 5: a 30-day sum of 1253 where
/// the events until then give 1108). A batch answers times from the end of its day on.
#[test]
fn a_fetch_before_the_batch_day_ends_is_an_error_not_a_count_of_later_events() {
    for tiled in [false, true] {
        let gb = returns(tiled);
        for at in [0, day("2023-11-26") + 12 * 3_600_000, day("2023-11-30") - 1] {
            let err = gb.features_at(None, &[], at).unwrap_err();
            assert!(
                matches!(&err, EngineError::BeforeBatch { at: a, batch_ds, from, .. }
                    if *a == at && batch_ds == "2023-11-29" && *from == day("2023-11-30")),
                "{err}"
            );
            assert!(err.to_string().contains("2023-11-29"), "{err}");
        }
        gb.features_at(None, &[], day("2023-11-30")).unwrap();
    }
}

#[test]
fn a_streamed_row_whose_column_changed_type_is_an_error_not_a_panic() {
    // `refund_amt` became a string: integer partials hit `unreachable!` before.
    for tiled in [false, true] {
        let gb = returns(tiled);
        let streamed = [row(noon_after() - 3_600_000, Val::Str("7".into()))];
        let err = stored_error(gb.features_at(None, &streamed, noon_after()));
        assert!(err.contains("refund_amt"), "{err}");
    }
}

#[test]
fn a_streamed_row_with_columns_added_or_removed_is_an_error_not_a_panic() {
    // Columns of different lengths were zipped, then indexed out of bounds.
    let gb = returns(true);
    let mut wider = row(noon_after() - 3_600_000, Val::Int(7));
    wider.inputs.push(Some(Val::Int(1)));
    let mut narrower = wider.clone();
    narrower.inputs.clear();
    let mut bucketed = row(noon_after() - 3_600_000, Val::Int(7));
    bucketed.buckets.push(Some("b".to_owned()));
    for bad in [wider, narrower, bucketed] {
        let err = stored_error(gb.features_at(None, &[bad], noon_after()));
        assert!(err.contains("expected 1 and 0"), "{err}");
    }
}

#[test]
fn a_stored_tile_of_another_operation_is_an_error_not_a_panic() {
    // Feature 0 is SUM over 3 days: a COUNT or MIN tile there hit `unreachable!` when merged.
    let gb = returns(true);
    let tile_start = day("2023-11-29");
    for wrong in [Partial::Count(3), Partial::Min(Val::Int(1))] {
        let batch = BatchValue::Temporal {
            tiles: vec![vec![
                (tile_start, Partial::IntSum(5, 1)),
                (tile_start, wrong),
            ]],
            rows: Vec::new(),
        };
        let err = stored_error(gb.features_at(Some(&batch), &[], noon_after()));
        assert!(err.contains("sum"), "{err}");
    }
    // A tile holding a value of another type (LAST_K of integers holding a string).
    let mut tiles = vec![Vec::new(); 10];
    tiles[9] = vec![(i64::MIN, Partial::Latest(vec![(0, Val::Str("x".into()))]))];
    let batch = BatchValue::Temporal {
        tiles,
        rows: Vec::new(),
    };
    let err = stored_error(gb.features_at(Some(&batch), &[], noon_after()));
    assert!(err.contains("refund_amt"), "{err}");
    // More tile lists than features.
    let batch = BatchValue::Temporal {
        tiles: vec![Vec::new(); 11],
        rows: Vec::new(),
    };
    stored_error(gb.features_at(Some(&batch), &[], noon_after()));
}

#[test]
fn finalized_values_of_another_feature_count_are_an_error_not_silently_cut() {
    let gb = returns(false);
    let batch = BatchValue::Finalized(vec![Some(Out::Int(1))]);
    let err = stored_error(gb.features_at(Some(&batch), &[], noon_after()));
    assert!(err.contains("1 values for 10 features"), "{err}");
}

#[test]
fn a_row_of_a_partition_far_beyond_the_calendar_is_not_a_panic() {
    // `day * DAY` overflowed.
    let mut far = row(noon_after() - 3_600_000, Val::Int(7));
    far.day = i64::MAX;
    assert!(far.partition() > date_of(MAX_TIME));
    far.day = i64::MIN;
    assert!(far.partition() < date_of(0));
    for tiled in [false, true] {
        returns(tiled)
            .features_at(None, std::slice::from_ref(&far), noon_after())
            .unwrap();
    }
}

fn agg(operation: Operation, k: Option<u32>) -> Aggregation {
    Aggregation {
        input_column: "x".to_owned(),
        operation,
        arg_map: Default::default(),
        windows: vec![],
        buckets: vec![],
        k,
        percentiles: vec![0.5],
    }
}

#[test]
fn stored_counts_saturate_instead_of_overflowing() {
    let count = agg(Operation::Count, None);
    let mut p = Partial::Count(i64::MAX);
    p.merge(&count, Partial::Count(1)).unwrap();
    assert_eq!(p, Partial::Count(i64::MAX));
    let sum = agg(Operation::Sum, None);
    let mut p = Partial::IntSum(i64::MAX, i64::MAX);
    p.merge(&sum, Partial::IntSum(1, 1)).unwrap();
    // The sum wraps as `compute` sums; the row count saturates.
    assert_eq!(p, Partial::IntSum(i64::MIN, i64::MAX));
    let histogram = agg(Operation::Histogram, None);
    let mut p = Partial::Counts([("a".to_owned(), i64::MAX)].into());
    p.merge(&histogram, Partial::Counts([("a".to_owned(), 5)].into()))
        .unwrap();
    assert_eq!(p, Partial::Counts([("a".to_owned(), i64::MAX)].into()));
    // An average over zero rows is no value, not a division by zero.
    let average = agg(Operation::Average, None);
    assert_eq!(Partial::IntMean(3.0, 0).finalize(&average), None);
}

#[test]
fn a_percentile_over_no_numeric_value_is_null_not_a_panic() {
    // `n - 1` underflowed with n = 0 numeric values among the rows.
    let x = Val::Str("x".into());
    assert_eq!(
        compute(&agg(Operation::ApproxPercentile, Some(128)), &[(0, &x)]),
        None
    );
}

#[test]
fn stored_buckets_cannot_nest() {
    // Buckets hold aggregates, never buckets: decoding refuses nesting, so damaged bytes cannot
    // nest them until the decoder overflows the stack.
    let nested = Out::Buckets(vec![(
        "a".to_owned(),
        Out::Buckets(vec![("b".to_owned(), Out::Int(1))]),
    )]);
    let json = serde_json::to_string(&nested).unwrap();
    assert!(serde_json::from_str::<Out>(&json).is_err());
    let flat = Out::Buckets(vec![("a".to_owned(), Out::Int(1))]);
    let json = serde_json::to_string(&flat).unwrap();
    assert_eq!(serde_json::from_str::<Out>(&json).unwrap(), flat);
}

fn any_val() -> impl Strategy<Value = Val> {
    prop_oneof![
        any::<bool>().prop_map(Val::Bool),
        any::<i64>().prop_map(Val::Int),
        any::<f64>().prop_map(Val::Float),
        "[a-c]{0,3}".prop_map(|s| Val::Str(s.into())),
        Just(Val::Int(5)),
    ]
}

fn any_row() -> impl Strategy<Value = OnlineRow> {
    let time = prop_oneof![
        any::<i64>(),
        (day("2023-11-01")..day("2023-12-02")),
        Just(i64::MIN),
        Just(i64::MAX),
    ];
    (
        time,
        prop_oneof![any::<i64>(), 19_600i64..19_700],
        prop::collection::vec(prop::option::of(any_val()), 0..3),
        prop::collection::vec(prop::option::of("[a-c]{0,2}"), 0..2),
    )
        .prop_map(|(ts, day, inputs, buckets)| OnlineRow {
            ts,
            day,
            inputs,
            buckets,
        })
}

fn any_partial() -> impl Strategy<Value = Partial> {
    let vals = || prop::collection::vec(any_val(), 0..3);
    prop_oneof![
        any::<i64>().prop_map(Partial::Count),
        (any::<i64>(), any::<i64>()).prop_map(|(s, n)| Partial::IntSum(s, n)),
        (any::<f64>(), any::<i64>()).prop_map(|(s, n)| Partial::IntMean(s, n)),
        any_val().prop_map(Partial::Min),
        prop::collection::vec((any::<i64>(), any_val()), 0..3).prop_map(Partial::Latest),
        vals().prop_map(Partial::Distinct),
        prop::collection::btree_map("[a-c]", any::<i64>(), 0..3).prop_map(Partial::Counts),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Any time, any rows, any tiles: features or an error, never a panic.
    #[test]
    fn features_at_any_time_and_any_stored_value_never_panics(
        at in prop_oneof![any::<i64>(), day("2023-11-29")..day("2023-12-02")],
        rows in prop::collection::vec(any_row(), 0..6),
        streamed in prop::collection::vec(any_row(), 0..6),
        tiles in prop::collection::vec(
            prop::collection::vec((any::<i64>(), any_partial()), 0..3), 0..12),
        tiled in any::<bool>(),
        finalized in prop::option::of(prop::collection::vec(
            prop::option::of(any::<i64>().prop_map(Out::Int)), 0..12)),
    ) {
        let gb = returns(tiled);
        let batch = match finalized {
            Some(values) => BatchValue::Finalized(values),
            None => BatchValue::Temporal { tiles, rows },
        };
        let _ = gb.features_at(Some(&batch), &streamed, at);
        let _ = gb.features_at(None, &streamed, at);
    }

    /// Merging any two stored partials under any operation: a partial or an error.
    #[test]
    fn merging_any_partials_never_panics(
        a in any_partial(),
        b in any_partial(),
        op in 0usize..6,
        k in prop::option::of(0u32..4),
    ) {
        let ops = [
            Operation::Count,
            Operation::Sum,
            Operation::Average,
            Operation::Min,
            Operation::LastK,
            Operation::Histogram,
        ];
        let agg = agg(ops[op], k);
        let mut acc = Some(a);
        if b.add_to(&agg, &mut acc).is_ok()
            && let Some(p) = acc
        {
            let _ = p.finalize(&agg);
        }
    }
}
