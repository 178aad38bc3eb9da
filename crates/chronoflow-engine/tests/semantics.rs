//! Point-in-time rules on small hand-made tables, each expected value computed by hand.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chronoflow_config::{Config, Layout, PartitionDate, RepoFile, RepoFiles, repo};
use chronoflow_engine::export::{ExportFormat, export_table};
use chronoflow_engine::jobs::{backfill_group_by, backfill_join};
use chronoflow_engine::staging::backfill_staging_query;
use chronoflow_engine::{TableName, Warehouse};
use serde_json::{Value, json};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn d(s: &str) -> PartitionDate {
    PartitionDate::parse(s).unwrap()
}

/// An event: (partition, user, ts, value, category).
type Event<'a> = (&'a str, Option<&'a str>, i64, Option<i64>, Option<&'a str>);

async fn events(w: &Warehouse, rows: &[Event<'_>]) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, true),
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Int64, true),
        Field::new("category", DataType::Utf8, true),
    ]));
    let mut days: Vec<&str> = rows.iter().map(|r| r.0).collect();
    days.sort();
    days.dedup();
    for day in days {
        let part: Vec<_> = rows.iter().filter(|r| r.0 == day).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(
                    part.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    part.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    part.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    part.iter().map(|r| r.4).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        w.write_partition(
            &TableName::parse("t.events").unwrap(),
            "ds",
            d(day),
            &[batch],
        )
        .await
        .unwrap();
    }
}

/// Left rows: (partition, user, ts).
async fn left(w: &Warehouse, rows: &[(&str, Option<&str>, i64)]) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, true),
        Field::new("ts", DataType::Int64, false),
    ]));
    let mut days: Vec<&str> = rows.iter().map(|r| r.0).collect();
    days.sort();
    days.dedup();
    for day in days {
        let part: Vec<_> = rows.iter().filter(|r| r.0 == day).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(
                    part.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    part.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        w.write_partition(&TableName::parse("t.left").unwrap(), "ds", d(day), &[batch])
            .await
            .unwrap();
    }
}

fn group_by(name: &str, aggregations: Value, topic: bool) -> Value {
    let mut events = json!({"table": "t.events", "query": {"selects": {"user": "user", "value": "value", "category": "category"}, "timeColumn": "ts"}});
    if topic {
        events["topic"] = json!("events_topic");
    }
    json!({"metaData": {"name": name, "team": "t", "outputNamespace": "out"}, "sources": [{"events": events}], "keyColumns": ["user"], "aggregations": aggregations})
}

fn join(name: &str, gb: Value, zipline: bool) -> Value {
    let mut j = json!({
        "metaData": {"name": name, "team": "t", "outputNamespace": "out"},
        "left": {"events": {"table": "t.left", "query": {"selects": {"user": "user", "ts": "ts"}, "timeColumn": "ts"}}},
        "joinParts": [{"groupBy": gb}],
    });
    if zipline {
        j["useLongNames"] = json!(1);
    }
    j
}

fn load(configs: &[(&str, Value)]) -> chronoflow_config::Repo {
    let files = configs
        .iter()
        .map(|(path, v)| RepoFile {
            path: format!("production/{path}"),
            contents: v.to_string().into_bytes(),
        })
        .collect();
    let r = repo::load(RepoFiles {
        layouts: vec![Layout::Airbnb {
            prefix: String::new(),
        }],
        files,
        unreadable: Vec::new(),
    });
    assert!(!r.has_errors(), "{:#?}", r.diagnostics);
    r
}

async fn output(w: &Warehouse, table: &str) -> Vec<Value> {
    let mut out = Vec::new();
    export_table(
        w,
        &TableName::parse(table).unwrap(),
        None,
        ExportFormat::Json,
        &mut out,
    )
    .await
    .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn temporal_windows_head_tail_and_null_keys() {
    let w = Warehouse::open("memory://").unwrap();
    let day = d("2024-03-10");
    let q = day.epoch_millis() + 10 * HOUR + 7 * MIN; // 10:07
    events(
        &w,
        &[
            // 1h window ending at 10:07 starts at round(09:07, 5 min) = 09:05.
            (
                "2024-03-10",
                Some("a"),
                day.epoch_millis() + 9 * HOUR + 5 * MIN,
                Some(1),
                None,
            ), // exactly at the start: counts
            (
                "2024-03-10",
                Some("a"),
                day.epoch_millis() + 9 * HOUR + 5 * MIN - 1,
                Some(10),
                None,
            ), // 1 ms before: does not
            ("2024-03-10", Some("a"), q, Some(100), None), // exactly at q: AB no, ZL yes
            ("2024-03-10", Some("a"), q - 1, Some(1000), None),
            ("2024-03-10", Some("a"), q - 1, None, None), // a null input never counts
        ],
    )
    .await;
    left(
        &w,
        &[
            ("2024-03-10", Some("a"), q),
            ("2024-03-10", None, q),
            ("2024-03-10", Some("nobody"), q),
        ],
    )
    .await;
    let aggs = json!([
        {"inputColumn": "value", "operation": 7, "windows": [{"length": 1, "timeUnit": 0}]},
        {"inputColumn": "value", "operation": 6, "windows": [{"length": 1, "timeUnit": 0}]},
    ]);
    for (zipline, name) in [(false, "t.j_ab.v1"), (true, "t.j_zl.v1")] {
        let gb = group_by("t.gb.v1", aggs.clone(), true);
        let repo = load(&[(&format!("joins/t/{}", &name[2..]), join(name, gb, zipline))]);
        let loaded = repo.config(name).unwrap();
        let Config::Join(j) = &loaded.config else {
            panic!()
        };
        backfill_join(&w, loaded, j, &[day]).await.unwrap();
        let table = format!("out.{}", chronoflow_config::naming::sanitize(name));
        let rows = output(&w, &table).await;
        assert_eq!(rows.len(), 3);
        let sum = |user: Value| {
            rows.iter().find(|r| r["user"] == user).unwrap()["t_gb_v1_value_sum_1h"].clone()
        };
        let count = |user: Value| {
            rows.iter().find(|r| r["user"] == user).unwrap()["t_gb_v1_value_count_1h"].clone()
        };
        if zipline {
            assert_eq!(sum(json!("a")), json!(1101), "ZL: the head is inclusive");
            assert_eq!(count(json!("a")), json!(3));
        } else {
            assert_eq!(sum(json!("a")), json!(1001), "AB: the head is exclusive");
            assert_eq!(count(json!("a")), json!(2));
        }
        assert_eq!(
            sum(Value::Null),
            Value::Null,
            "a null key gets null features"
        );
        assert_eq!(
            (sum(json!("nobody")), count(json!("nobody"))),
            (Value::Null, Value::Null),
            "nothing counted is null"
        );
    }
}

#[tokio::test]
async fn group_by_backfill_hour_windows_buckets_and_partition_visibility() {
    let w = Warehouse::open("memory://").unwrap();
    let day = d("2024-03-10");
    let end = day.add_days(1).epoch_millis();
    events(
        &w,
        &[
            ("2024-03-10", Some("a"), end - 30 * MIN, Some(5), Some("x")), // in the last hour
            ("2024-03-10", Some("a"), end - 2 * HOUR, Some(7), Some("y")), // outside 1h, inside 1d
            ("2024-03-10", Some("a"), end - 3 * HOUR, Some(2), None), // no bucket: ignored by the bucketed feature
            ("2024-03-11", Some("a"), end - 10 * MIN, Some(50), Some("x")), // landed the next day: not visible as of 03-10
            ("2024-03-10", Some("b"), end - 20 * MIN, Some(3), Some("x")),
        ],
    )
    .await;
    let aggs = json!([
        {"inputColumn": "value", "operation": 7, "windows": [{"length": 1, "timeUnit": 0}, {"length": 1, "timeUnit": 1}]},
        {"inputColumn": "value", "operation": 7, "buckets": ["category"]},
        {"inputColumn": "value", "operation": 3},
    ]);
    let repo = load(&[("group_bys/t/gb.v1", group_by("t.gb.v1", aggs, false))]);
    let loaded = repo.config("t.gb.v1").unwrap();
    let Config::GroupBy(gb) = &loaded.config else {
        panic!()
    };
    backfill_group_by(&w, loaded, gb, &[day]).await.unwrap();
    let rows = output(&w, "out.t_gb_v1").await;
    assert_eq!(
        rows[0],
        json!({"user": "a", "value_sum_1h": 5, "value_sum_1d": 14, "value_sum_by_category": {"x": 5, "y": 7}, "value_last": 5, "ds": "2024-03-10"})
    );
    assert_eq!(rows[1]["value_sum_by_category"], json!({"x": 3}));
    assert_eq!(rows.len(), 2);
}

#[tokio::test]
async fn aggregation_over_the_wrong_type_names_config_aggregation_column_and_type() {
    let w = Warehouse::open("memory://").unwrap();
    events(&w, &[("2024-03-10", Some("a"), 0, Some(1), Some("x"))]).await;
    let aggs = json!([{"inputColumn": "category", "operation": 7}]);
    let repo = load(&[("group_bys/t/gb.v1", group_by("t.gb.v1", aggs, false))]);
    let loaded = repo.config("t.gb.v1").unwrap();
    let Config::GroupBy(gb) = &loaded.config else {
        panic!()
    };
    let err = backfill_group_by(&w, loaded, gb, &[d("2024-03-10")])
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "t.gb.v1: aggregation sum over column \"category\" of type Utf8: it needs a numeric column"
    );

    // `check` rejects an input the source does not select; the engine names it too, for a
    // config it is handed directly.
    let aggs = json!([{"inputColumn": "value", "operation": 6}]);
    let repo = load(&[("group_bys/t/gb.v1", group_by("t.gb.v1", aggs, false))]);
    let loaded = repo.config("t.gb.v1").unwrap();
    let Config::GroupBy(gb) = &loaded.config else {
        panic!()
    };
    let mut gb = gb.clone();
    gb.aggregations.as_mut().unwrap()[0].input_column = "nope".to_owned();
    let err = backfill_group_by(&w, loaded, &gb, &[d("2024-03-10")])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("column \"nope\" is not among the source's columns (user, value, category)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_source_table_is_named() {
    let w = Warehouse::open("memory://").unwrap();
    let aggs = json!([{"inputColumn": "value", "operation": 6}]);
    let repo = load(&[("group_bys/t/gb.v1", group_by("t.gb.v1", aggs, false))]);
    let loaded = repo.config("t.gb.v1").unwrap();
    let Config::GroupBy(gb) = &loaded.config else {
        panic!()
    };
    let err = backfill_group_by(&w, loaded, gb, &[d("2024-03-10")])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("table t.events does not exist in warehouse"),
        "{err}"
    );
}

#[tokio::test]
async fn staging_query_renders_macros_and_partitions_by_ds() {
    let w = Warehouse::open("memory://").unwrap();
    events(
        &w,
        &[
            ("2024-03-09", Some("a"), 1, Some(1), Some("x")),
            ("2024-03-10", Some("a"), 2, Some(2), Some("x")),
            ("2024-03-10", Some("b"), 3, Some(3), Some("y")),
            ("2024-03-11", Some("b"), 4, Some(4), Some("y")),
        ],
    )
    .await;
    let sq = json!({
        "metaData": {"name": "t.sq.v1", "team": "t", "outputNamespace": "out"},
        "query": "SELECT user, SUM(value) AS total, '{{ latest_date }}' AS latest, ds FROM t.events WHERE ds BETWEEN '{{ start_date }}' AND '{{ end_date }}' AND ds <= '{{ max_date(table=t.events) }}' GROUP BY user, ds",
        "startPartition": "2024-03-01",
    });
    let repo = load(&[("staging_queries/t/sq.v1", sq)]);
    let loaded = repo.config("t.sq.v1").unwrap();
    let Config::StagingQuery(s) = &loaded.config else {
        panic!()
    };
    let days = [d("2024-03-09"), d("2024-03-10")];
    backfill_staging_query(&w, loaded, s, &days, d("2024-03-12"))
        .await
        .unwrap();
    let mut rows = output(&w, "out.t_sq_v1").await;
    rows.sort_by_key(|r| {
        (
            r["ds"].as_str().unwrap().to_owned(),
            r["user"].as_str().unwrap().to_owned(),
        )
    });
    assert_eq!(
        rows,
        [
            json!({"user": "a", "total": 1, "latest": "2024-03-12", "ds": "2024-03-09"}),
            json!({"user": "a", "total": 2, "latest": "2024-03-12", "ds": "2024-03-10"}),
            json!({"user": "b", "total": 3, "latest": "2024-03-12", "ds": "2024-03-10"}),
        ]
    );

    let mut bad = s.clone();
    bad.query = "SELECT 1 AS x, '{{ yesterday }}' AS ds".to_owned();
    let err = backfill_staging_query(&w, loaded, &bad, &days, d("2024-03-12"))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "t.sq.v1: unknown macro {{ yesterday }}: expected start_date, end_date, latest_date or max_date(table=ns.t)"
    );
}

#[tokio::test]
async fn derivations_keep_keys_and_star_keeps_the_features_not_renamed() {
    let w = Warehouse::open("memory://").unwrap();
    let day = d("2024-03-10");
    events(
        &w,
        &[(
            "2024-03-10",
            Some("a"),
            day.epoch_millis() + HOUR,
            Some(4),
            None,
        )],
    )
    .await;
    let mut gb = group_by(
        "t.gb.v1",
        json!([{"inputColumn": "value", "operation": 7}, {"inputColumn": "value", "operation": 6}]),
        false,
    );
    gb["derivations"] = json!([
        {"name": "*", "expression": "*"},
        {"name": "n", "expression": "value_count"},
        {"name": "double_sum", "expression": "value_sum * 2"},
    ]);
    let repo = load(&[("group_bys/t/gb.v1", gb)]);
    let loaded = repo.config("t.gb.v1").unwrap();
    let Config::GroupBy(g) = &loaded.config else {
        panic!()
    };
    backfill_group_by(&w, loaded, g, &[day]).await.unwrap();
    // value_count is used verbatim by `n`, so `*` leaves it out; value_sum stays.
    assert_eq!(
        output(&w, "out.t_gb_v1").await,
        [json!({"user": "a", "value_sum": 4, "n": 1, "double_sum": 8, "ds": "2024-03-10"})]
    );
}

#[tokio::test]
async fn list_inputs_aggregate_their_elements() {
    use arrow::array::{ListBuilder, StringBuilder};
    let w = Warehouse::open("memory://").unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, true),
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Int64, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]));
    let mut tags = ListBuilder::new(StringBuilder::new());
    for row in [
        vec![Some("a"), Some("b")],
        vec![Some("b"), None, Some("c")],
        vec![],
    ] {
        for t in row {
            tags.values().append_option(t);
        }
        tags.append(true);
    }
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["u", "u", "u"])),
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(Int64Array::from(vec![10, 20, 30])),
            Arc::new(tags.finish()),
        ],
    )
    .unwrap();
    w.write_partition(
        &TableName::parse("t.events").unwrap(),
        "ds",
        d("2024-03-10"),
        &[batch],
    )
    .await
    .unwrap();
    let gb = json!({
        "metaData": {"name": "t.gb.v1", "team": "t", "outputNamespace": "out"},
        "sources": [{"events": {"table": "t.events", "query": {"selects": {"user": "user", "value": "value", "tags": "tags"}, "timeColumn": "ts"}}}],
        "keyColumns": ["user"],
        "aggregations": [
            {"inputColumn": "tags", "operation": 6},
            {"inputColumn": "tags", "operation": 4},
            {"inputColumn": "value", "operation": 7},
            {"inputColumn": "value", "operation": 6},
        ],
    });
    let repo = load(&[("group_bys/t/gb.v1", gb)]);
    let loaded = repo.config("t.gb.v1").unwrap();
    let Config::GroupBy(g) = &loaded.config else {
        panic!()
    };
    backfill_group_by(&w, loaded, g, &[d("2024-03-10")])
        .await
        .unwrap();
    // Four non-null tags (a, b, b, c: a null element never counts), three distinct;
    // the scalar column still counts each source row once.
    assert_eq!(
        output(&w, "out.t_gb_v1").await,
        [
            json!({"user": "u", "tags_count": 4, "tags_unique_count": 3, "value_sum": 60, "value_count": 3, "ds": "2024-03-10"})
        ]
    );
}
