//! Online/offline consistency measured as users run it (SPEC §4.6): the quickstart served with
//! fetch logging at 100%, every left row of the fetch day fetched through `serve`, then
//! `log-flattener`, `build-comparison-table` and `consistency-metrics-compute` through the CLI.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::collections::BTreeMap;

use common::copy_dir;
use common::late_data::{late_rows_changes, uploaded_then_late_rows};
use common::ooc::{
    JOIN, OUTPUT, served_and_logged_with, standalone, trigger_ooc, wait_for_ooc_run,
};
use common::quickstart::*;
use serde_json::{Map, Value, json};

/// The quickstart with training_set.v2 logging every fetch and checking consistency, uploaded
/// for the batch day and replayed; then every left row of the fetch day fetched (and logged).
/// Returns the setup and the number of fetches.
fn served_and_logged() -> (Setup, usize) {
    let (s, fetched) = served_and_logged_with(upload_quickstart);
    (s, fetched.len())
}

/// Runs the three jobs for the fetch day; the stdout of each.
fn measure(s: &Setup) -> Vec<String> {
    let conf = format!("{JOINS}/training_set.v2");
    [
        "log-flattener",
        "build-comparison-table",
        "consistency-metrics-compute",
    ]
    .iter()
    .map(|mode| {
        let out = s.job(mode, &conf, &["--ds", FETCH_DAY]);
        String::from_utf8(out.stdout).unwrap()
    })
    .collect()
}

/// The consistency table's rows by feature.
fn metrics(s: &Setup) -> BTreeMap<String, Map<String, Value>> {
    s.export(&format!("{OUTPUT}_consistency"), FETCH_DAY)
        .into_iter()
        .map(|r| (r["feature"].as_str().unwrap().to_owned(), r))
        .collect()
}

/// Writes rows (JSON objects) as a CSV with a `ds` column and imports them over `table`'s
/// partition of the fetch day.
fn replace_partition(s: &Setup, table: &str, rows: &[Map<String, Value>]) {
    let columns = [
        "event",
        "join_name",
        "ts_millis",
        "schema_hash",
        "key_json",
        "value_json",
    ];
    let quote = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(t) => format!("\"{}\"", t.replace('"', "\"\"")),
        other => other.to_string(),
    };
    let mut text = format!("ds,{}\n", columns.join(","));
    for r in rows {
        let fields: Vec<String> = columns.iter().map(|c| quote(&r[*c])).collect();
        text.push_str(&format!("{FETCH_DAY},{}\n", fields.join(",")));
    }
    let csv = s.dir.path().join("log.csv");
    std::fs::write(&csv, text).unwrap();
    s.import(table, &csv);
}

#[test]
fn consistency_of_the_quickstart_is_one_then_skew_is_counted_exactly() {
    let (s, fetches) = served_and_logged();
    let out = measure(&s);
    println!("{}", out.concat());
    assert!(out[0].contains(&format!("{fetches} rows")), "{}", out[0]);
    let logged = s.export(&format!("{OUTPUT}_logged"), FETCH_DAY);
    assert_eq!(logged.len(), fetches);
    assert!(logged[0].contains_key("user_id") && logged[0].contains_key("ts"));
    let comparison = s.export(&format!("{OUTPUT}_comparison"), FETCH_DAY);
    assert_eq!(comparison.len(), fetches);

    let m = metrics(&s);
    let features: Vec<&String> = m.keys().filter(|f| *f != "__overall__").collect();
    assert!(features.len() >= 5, "{features:?}");
    for (feature, row) in &m {
        assert_eq!(row["rows"], json!(fetches), "{feature}");
        assert_eq!(row["mismatches"], json!(0), "{feature}: {row:?}");
        assert_eq!(row["online_null_only"], json!(0), "{feature}: {row:?}");
        assert_eq!(row["offline_null_only"], json!(0), "{feature}: {row:?}");
        assert_eq!(row["consistency_rate"], json!(1.0), "{feature}: {row:?}");
    }
    assert!(out[2].contains("1.000000"), "{}", out[2]);

    // Skew: change a numeric feature in 3 logged fetches where it has a value, add a corrupt
    // record and a fetch of a version without a schema event.
    let log = format!("{OUTPUT}_log");
    let mut rows = s.export(&log, FETCH_DAY);
    let feature = "quickstart_purchases_v1_purchase_price_sum_14d";
    let mut changed = 0;
    for r in rows.iter_mut().filter(|r| r["event"] == "fetch") {
        let mut values: Map<String, Value> =
            serde_json::from_str(r["value_json"].as_str().unwrap()).unwrap();
        let Some(n) = values.get(feature).and_then(Value::as_i64) else {
            continue;
        };
        values.insert(feature.to_owned(), json!(n + 1));
        r["value_json"] = Value::String(Value::Object(values).to_string());
        changed += 1;
        if changed == 3 {
            break;
        }
    }
    assert_eq!(changed, 3, "{feature} has fewer than 3 values");
    let template = rows.iter().find(|r| r["event"] == "fetch").unwrap().clone();
    let mut corrupt = template.clone();
    corrupt["value_json"] = json!("{not json");
    let mut unknown = template.clone();
    unknown["schema_hash"] = json!("a-version-never-described");
    rows.push(corrupt);
    rows.push(unknown);
    replace_partition(&s, &log, &rows);

    let out = measure(&s);
    println!("{}", out.concat());
    assert!(
        out[0].contains("1 without a schema event skipped, 1 corrupt skipped"),
        "{}",
        out[0]
    );
    let m = metrics(&s);
    for (f, row) in &m {
        let expected = if f == feature || f == "__overall__" {
            3
        } else {
            0
        };
        assert_eq!(row["rows"], json!(fetches), "{f}");
        assert_eq!(row["mismatches"], json!(expected), "{f}: {row:?}");
    }
    let smape = m[feature]["smape"].as_f64().unwrap();
    assert!(smape > 0.0, "{smape}");
    assert!(out[2].contains(feature), "{}", out[2]);
}

#[test]
fn a_missing_log_partition_is_an_error_naming_table_and_day() {
    let mut s = Setup::new(None);
    let repo = s.dir.path().join("repo");
    copy_dir(&quickstart(), &repo);
    s.repo = repo;
    let out = s
        .command(&[
            "run",
            "--mode",
            "log-flattener",
            "--repo",
            s.repo.to_str().unwrap(),
            "--conf",
            &format!("{JOINS}/training_set.v2"),
            "--ds",
            FETCH_DAY,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{OUTPUT}_log")) && err.contains(FETCH_DAY),
        "{err}"
    );
}

/// The `chronon_join_ooc_quickstart` DAG in `standalone`, on the in-process executor: sensor on
/// the fetch log, flatten, compare, metrics; consistency 1.0.
#[test]
fn the_ooc_dag_runs_in_standalone() {
    let (s, fetches) = served_and_logged();
    trigger_ooc(&s);
    let run = standalone(&s);
    let state = wait_for_ooc_run(run.port);
    assert_eq!(state, "success");
    let m = metrics(&s);
    assert_eq!(m["__overall__"]["rows"], json!(fetches));
    assert_eq!(m["__overall__"]["consistency_rate"], json!(1.0));
}

/// A Join that changed version mid-day: each row is flattened by its own version's schema
/// event; the features an older version did not serve are its rows' online nulls, counted.
#[test]
fn rows_of_two_join_versions_are_flattened_by_their_own_schema() {
    let (s, fetches) = served_and_logged();
    let log = format!("{OUTPUT}_log");
    let mut rows = s.export(&log, FETCH_DAY);
    let feature = "quickstart_purchases_v1_purchase_price_sum_14d";
    let schema = rows
        .iter()
        .find(|r| r["event"] == "schema")
        .unwrap()
        .clone();
    let mut older_schema = schema.clone();
    older_schema["schema_hash"] = json!("older");
    older_schema["value_json"] = Value::String(
        json!({"join": JOIN, "key_columns": ["user_id"], "features": [feature]}).to_string(),
    );
    rows.push(older_schema);
    // Two requests served by the older version: only its one feature, the value served now.
    let served: Vec<Map<String, Value>> = rows
        .iter()
        .filter(|r| r["event"] == "fetch")
        .take(2)
        .cloned()
        .collect();
    let mut current: Vec<Map<String, Value>> = Vec::new();
    for mut r in served {
        let values: Map<String, Value> =
            serde_json::from_str(r["value_json"].as_str().unwrap()).unwrap();
        current.push(values.clone());
        r["schema_hash"] = json!("older");
        r["value_json"] = Value::String(json!({feature: values[feature]}).to_string());
        rows.push(r);
    }
    replace_partition(&s, &log, &rows);

    let out = measure(&s);
    assert!(
        out[0].contains(&format!("{} rows", fetches + 2)),
        "{}",
        out[0]
    );
    assert!(out[0].contains("older"), "{}", out[0]);
    let logged = s.export(&format!("{OUTPUT}_logged"), FETCH_DAY);
    let older: Vec<&Map<String, Value>> = logged
        .iter()
        .filter(|r| r["schema_hash"] == "older")
        .collect();
    assert_eq!(older.len(), 2);
    for r in &older {
        for (column, value) in r.iter() {
            let served = ["user_id", "ts", "schema_hash", "ds", feature].contains(&column.as_str());
            assert_eq!(!value.is_null(), served, "{column}: {r:?}");
        }
    }
    let m = metrics(&s);
    for (f, row) in &m {
        assert_eq!(row["rows"], json!(fetches + 2), "{f}");
        if f == "__overall__" {
            // The two older rows lack most features online: inconsistent rows.
            assert_eq!(row["mismatches"], json!(2), "{row:?}");
            continue;
        }
        assert_eq!(row["mismatches"], json!(0), "{f}: {row:?}");
        // The older rows' offline values are the current version's (same key and time): each
        // one with a value is an online-only null.
        let expected = if f == feature {
            0
        } else {
            current.iter().filter(|v| !v[f.as_str()].is_null()).count()
        };
        assert_eq!(row["online_null_only"], json!(expected), "{f}: {row:?}");
    }
}

/// A stale batch: serving keeps the purchases upload of D-2 (2023-11-28) while the Join's
/// backfill reads every day. Each feature's inconsistent rows equal the rows whose served value
/// differs from the Join backfill's, compared here row by row.
#[test]
fn a_stale_batch_is_counted_feature_by_feature() {
    fn stale_purchases(s: Setup) -> Setup {
        for t in ["purchases", "returns", "users", "checkouts"] {
            s.import(
                &format!("data.{t}"),
                &quickstart().join(format!("data/{t}.csv")),
            );
        }
        for (gb, ds) in [
            ("purchases", "2023-11-28"),
            ("returns", BATCH_DAY),
            ("users", BATCH_DAY),
        ] {
            let conf = format!("{GB}/{gb}.v1");
            s.job("upload", &conf, &["--ds", ds]);
            s.job("upload-to-kv", &conf, &["--ds", ds]);
        }
        s.job("metadata-upload", &format!("{JOINS}/training_set.v2"), &[]);
        s.job(
            "streaming",
            &format!("{GB}/returns.v1"),
            &["--replay-table", "data.returns", "--since", BATCH_DAY],
        );
        s
    }
    let (s, fetched) = served_and_logged_with(stale_purchases);
    s.job(
        "backfill",
        &format!("{JOINS}/training_set.v2"),
        &["--ds", FETCH_DAY],
    );
    let backfill: BTreeMap<(String, i64), Map<String, Value>> = s
        .export(OUTPUT, FETCH_DAY)
        .into_iter()
        .map(|r| ((r["user_id"].to_string(), r["ts"].as_i64().unwrap()), r))
        .collect();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    let mut bad_rows = 0;
    for (user, ts, features) in &fetched {
        let row = &backfill[&(user.to_string(), *ts)];
        let mut bad = false;
        for (f, served) in features {
            let differs = served != &row[f.as_str()];
            *expected.entry(f.clone()).or_default() += usize::from(differs);
            bad |= differs;
        }
        bad_rows += usize::from(bad);
    }
    let stale: usize = expected
        .iter()
        .filter(|(f, _)| f.starts_with("quickstart_purchases"))
        .map(|(_, n)| n)
        .sum();
    assert!(stale > 0, "the stale batch changed nothing: {expected:?}");
    println!("stale batch: {stale} feature values in {bad_rows} rows differ: {expected:?}");

    measure(&s);
    let m = metrics(&s);
    for (f, row) in &m {
        let counted = ["mismatches", "online_null_only", "offline_null_only"]
            .iter()
            .map(|c| row[*c].as_u64().unwrap())
            .sum::<u64>();
        let want = if f == "__overall__" {
            bad_rows
        } else {
            expected[f.as_str()]
        };
        assert_eq!(counted as usize, want, "{f}: {row:?}");
    }
}

/// Late data: purchases and returns rows land in the batch day's partitions after the upload and
/// are never streamed. Each feature's inconsistent rows equal the logged rows whose backfilled
/// value the late rows change (the backfill run with and without them, here).
#[test]
fn late_source_rows_are_counted_as_the_rows_they_change() {
    let (s, fetched) = served_and_logged_with(uploaded_then_late_rows);
    measure(&s);
    let m = metrics(&s);
    let conf = format!("{JOINS}/training_set.v2");
    let late = late_rows_changes(&s, &conf, OUTPUT, &fetched);
    // Serving answered as the backfill without the late rows: they are the only skew.
    for (user, ts, features) in &fetched {
        let without = &late.without[&(user.to_string(), *ts)];
        assert_same(features, without, &format!("user {user} at {ts}"));
    }
    let changed = |prefix: &str| -> usize {
        late.per_feature
            .iter()
            .filter(|(f, _)| f.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    };
    assert!(
        changed("quickstart_purchases") > 0,
        "{:?}",
        late.per_feature
    );
    assert!(changed("quickstart_returns") > 0, "{:?}", late.per_feature);
    println!(
        "late data: {} of {} logged rows changed: {:?}",
        late.rows,
        fetched.len(),
        late.per_feature
    );
    for (f, row) in &m {
        let counted = ["mismatches", "online_null_only", "offline_null_only"]
            .iter()
            .map(|c| row[*c].as_u64().unwrap())
            .sum::<u64>();
        let want = if f == "__overall__" {
            late.rows
        } else {
            late.per_feature[f.as_str()]
        };
        assert_eq!(counted as usize, want, "{f}: {row:?}");
    }
    let overall = m["__overall__"]["consistency_rate"].as_f64().unwrap();
    assert!(overall < 0.99, "{overall}");
}

/// Writes `<OUTPUT>_comparison` for `days` days from 2023-11-20: a numeric and a text feature
/// that shift on `shift_day` (both sides), and a numeric and a text feature that never do.
fn synthetic_comparison(s: &Setup, days: i64, shift_day: i64) {
    let mut text = String::from(
        "ds,user_id,ts,score_shift,score_shift_online,plan_shift,plan_shift_online,score_stable,score_stable_online,country,country_online\n",
    );
    // A fixed-seed LCG: the same data on every run.
    let mut state: u64 = 42;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let start = epoch_day("2023-11-20");
    for day in 0..days {
        let ds = civil(start / DAY_MS + day);
        let shifted = day == shift_day;
        for row in 0..1000 {
            let score = next() * 100.0 + if shifted { 30.0 } else { 0.0 };
            let plan_draw = next();
            let plan = match (shifted, plan_draw) {
                (false, p) if p < 0.7 => "basic",
                (false, p) if p < 0.9 => "plus",
                (true, p) if p < 0.2 => "basic",
                (true, p) if p < 0.4 => "plus",
                _ => "pro",
            };
            let stable = next() * 10.0;
            let country = ["us", "fr", "de", "jp", "br"][row % 5];
            let ts = start + day * DAY_MS + row as i64;
            text.push_str(&format!(
                "{ds},{row},{ts},{score:.4},{score:.4},{plan},{plan},{stable:.4},{stable:.4},{country},{country}\n"
            ));
        }
    }
    let csv = s.dir.path().join("comparison.csv");
    std::fs::write(&csv, text).unwrap();
    s.import(&format!("{OUTPUT}_comparison"), &csv);
}

/// Drift: a feature whose distribution shifts on one day of ten has a PSI above 0.2 (the default
/// drift threshold) that day only, on both sides; stable features stay below it. Through the
/// binary's consistency-metrics-compute over real comparison partitions.
#[test]
fn drift_psi_passes_the_threshold_on_the_shifted_day_only() {
    let s = Setup::new(None);
    let (days, shift_day) = (10, 6);
    synthetic_comparison(&s, days, shift_day);
    let first = "2023-11-20";
    let last = civil(epoch_day(first) / DAY_MS + days - 1);
    let out = s.job(
        "consistency-metrics-compute",
        &format!("{JOINS}/training_set.v2"),
        &["--start-ds", first, "--end-ds", &last],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    println!("{stdout}");
    assert!(
        stdout.contains("drift quickstart.training_set.v2 ds=2023-11-26"),
        "{stdout}"
    );

    // The table contract: these columns, in this order.
    let csv = s.run(&[
        "table",
        "export",
        &format!("{OUTPUT}_drift"),
        "--ds",
        first,
        "--format",
        "csv",
    ]);
    let header = String::from_utf8(csv.stdout).unwrap();
    assert_eq!(
        header.lines().next().unwrap(),
        // (`ds` is the partition column the export adds)
        "feature,side,rows,null_rate,distinct_estimate,mean,p05,p25,p50,p75,p95,psi,baseline_days,ds",
    );

    for day in 0..days {
        let ds = civil(epoch_day(first) / DAY_MS + day);
        let rows = s.export(&format!("{OUTPUT}_drift"), &ds);
        assert_eq!(rows.len(), 8, "{ds}: 4 features x 2 sides: {rows:?}");
        for r in &rows {
            let (feature, side) = (r["feature"].as_str().unwrap(), r["side"].as_str().unwrap());
            let context = format!("{ds} {feature} {side}: {r:?}");
            assert_eq!(r["rows"], json!(1000), "{context}");
            assert_eq!(r["null_rate"], json!(0.0), "{context}");
            assert_eq!(r["baseline_days"], json!(day.min(7)), "{context}");
            let numeric = feature.starts_with("score");
            assert_eq!(r["p50"].is_null(), !numeric, "{context}");
            assert_eq!(r["mean"].is_null(), !numeric, "{context}");
            if feature == "country" {
                assert_eq!(r["distinct_estimate"], json!(5), "{context}");
            }
            if day == 0 {
                assert!(r["psi"].is_null(), "no baseline: {context}");
                continue;
            }
            let psi = r["psi"].as_f64().unwrap();
            if feature.ends_with("_shift") && day == shift_day {
                assert!(psi > 0.2, "{context}");
            } else {
                assert!(psi < 0.2, "{context}");
            }
        }
        let median = rows
            .iter()
            .find(|r| r["feature"] == "score_stable" && r["side"] == "online")
            .unwrap()["p50"]
            .as_f64()
            .unwrap();
        assert!((4.0..6.0).contains(&median), "{ds}: median {median}");
    }

    // Deterministic: a rerun writes the same figures.
    let before = s.export(&format!("{OUTPUT}_drift"), "2023-11-29");
    s.job(
        "consistency-metrics-compute",
        &format!("{JOINS}/training_set.v2"),
        &["--ds", "2023-11-29"],
    );
    assert_eq!(s.export(&format!("{OUTPUT}_drift"), "2023-11-29"), before);
}

/// The quickstart repo in a sandbox (nothing imported).
fn sandbox() -> Setup {
    let mut s = Setup::new(None);
    let repo = s.dir.path().join("repo");
    copy_dir(&quickstart(), &repo);
    s.repo = repo;
    s
}

/// A fetch log row of the fetch day: a `schema` event (`value` its JSON text) or a `fetch`.
fn log_row(event: &str, version: &str, ts: i64, key: Value, value: &str) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("event".into(), json!(event));
    r.insert("join_name".into(), json!(JOIN));
    r.insert("ts_millis".into(), json!(ts));
    r.insert("schema_hash".into(), json!(version));
    r.insert("key_json".into(), key);
    r.insert("value_json".into(), json!(value));
    r
}

/// A log of one version serving `F` for users 1 and 2 at noon of the fetch day.
fn small_log(s: &Setup) -> Vec<Map<String, Value>> {
    let noon = epoch_day(FETCH_DAY) + DAY_MS / 2;
    let feature = "quickstart_purchases_v1_purchase_price_sum_14d";
    let schema = json!({"join": JOIN, "key_columns": ["user_id"], "features": [feature]});
    let rows = vec![
        log_row("schema", "v1", noon, Value::Null, &schema.to_string()),
        log_row(
            "fetch",
            "v1",
            noon,
            json!(r#"{"user_id": 1}"#),
            &json!({feature: 10}).to_string(),
        ),
        log_row(
            "fetch",
            "v1",
            noon + 1,
            json!(r#"{"user_id": 2}"#),
            &json!({feature: 20}).to_string(),
        ),
    ];
    replace_partition(s, &format!("{OUTPUT}_log"), &rows);
    rows
}

/// The committed part files of a partition of the fetch log.
fn log_part_files(s: &Setup, ds: &str) -> Vec<std::path::PathBuf> {
    let dir = s
        .warehouse
        .join("default/quickstart_training_set_v2_log")
        .join(format!("ds={ds}"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

fn flatten(s: &Setup, ds: &str) -> std::process::Output {
    s.command(&[
        "run",
        "--mode",
        "log-flattener",
        "--repo",
        s.repo.to_str().unwrap(),
        "--conf",
        &format!("{JOINS}/training_set.v2"),
        "--ds",
        ds,
    ])
    .output()
    .unwrap()
}

/// A partial log partition: a part file cut short (a disk that filled, a copy that stopped) is
/// an error naming that file, never a day read without it.
#[test]
fn a_truncated_log_file_is_an_error_naming_the_file() {
    let s = sandbox();
    small_log(&s);
    let files = log_part_files(&s, FETCH_DAY);
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &bytes[..bytes.len() / 2]).unwrap();
    let out = flatten(&s, FETCH_DAY);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Nothing was written for the day.
    let logged = s
        .command(&["table", "partitions", &format!("{OUTPUT}_logged")])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&logged.stdout).contains(FETCH_DAY),
        "{logged:?}"
    );
}

/// A log write whose writer died before its commit (the part file written, the manifest not):
/// its rows are never read, in a day that has a committed partition (the committed rows only)
/// and in a day that has none (no partition, the missing-partition error).
#[test]
fn a_log_write_that_crashed_before_its_commit_is_never_read() {
    let s = sandbox();
    small_log(&s);
    let committed = log_part_files(&s, FETCH_DAY).remove(0);
    let dir = committed.parent().unwrap();
    // An append that crashed: the same rows again, in a file no manifest lists.
    std::fs::copy(&committed, dir.join("part-crashed-00001.parquet")).unwrap();
    let out = flatten(&s, FETCH_DAY);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(": 2 rows into"), "{stdout}");
    assert_eq!(s.export(&format!("{OUTPUT}_logged"), FETCH_DAY).len(), 2);

    // The first write of the next day crashed: the day has files but no partition.
    let next = "2023-12-01";
    let next_dir = dir.parent().unwrap().join(format!("ds={next}"));
    std::fs::create_dir_all(&next_dir).unwrap();
    std::fs::copy(&committed, next_dir.join("part-crashed-00000.parquet")).unwrap();
    let out = flatten(&s, next);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{OUTPUT}_log has no partition ds={next}")),
        "{err}"
    );
}

/// Corrupt records (JSON that does not parse, a value that is no object, a key missing, a
/// schema event that does not parse) are skipped and counted in the job's output; the good
/// rows are flattened with their values.
#[test]
fn corrupt_log_records_are_counted_and_skipped_in_the_output() {
    let s = sandbox();
    let mut rows = small_log(&s);
    let noon = epoch_day(FETCH_DAY) + DAY_MS / 2;
    let feature = "quickstart_purchases_v1_purchase_price_sum_14d";
    let fetch = |key: Value, value: &str| log_row("fetch", "v1", noon + 5, key, value);
    rows.push(fetch(json!(r#"{"user_id": 3}"#), "{not json"));
    rows.push(fetch(json!(r#"{"user_id": 3}"#), "[1, 2]"));
    rows.push(fetch(json!(r#"{"other": 3}"#), "{}"));
    rows.push(fetch(Value::Null, "{}"));
    rows.push(log_row(
        "schema",
        "broken",
        noon,
        Value::Null,
        "not a schema",
    ));
    rows.push(log_row(
        "fetch",
        "broken",
        noon,
        json!(r#"{"user_id": 4}"#),
        "{}",
    ));
    replace_partition(&s, &format!("{OUTPUT}_log"), &rows);

    let out = flatten(&s, FETCH_DAY);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        stdout.contains("2 rows into")
            && stdout.contains("1 without a schema event skipped, 5 corrupt skipped"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("warning:").count(), 6, "{stdout}");
    let logged = s.export(&format!("{OUTPUT}_logged"), FETCH_DAY);
    let values: Vec<(i64, i64)> = logged
        .iter()
        .map(|r| (r["user_id"].as_i64().unwrap(), r[feature].as_i64().unwrap()))
        .collect();
    assert_eq!(values, vec![(1, 10), (2, 20)]);
}

/// A log written by an older Join version that served a feature the current Join no longer
/// has: that feature is reported (name, logged values) and not compared, so it adds no
/// mismatch and no consistency or drift row; the features both versions have are compared.
#[test]
fn features_the_current_join_no_longer_has_are_reported_not_compared() {
    let s = sandbox();
    for t in ["purchases", "returns", "users", "checkouts"] {
        s.import(
            &format!("data.{t}"),
            &quickstart().join(format!("data/{t}.csv")),
        );
    }
    let conf = format!("{JOINS}/training_set.v2");
    s.job("backfill", &conf, &["--ds", FETCH_DAY]);
    let (start, end) = (epoch_day(FETCH_DAY), epoch_day(FETCH_DAY) + DAY_MS);
    let left: Vec<Map<String, Value>> = s
        .export(OUTPUT, FETCH_DAY)
        .into_iter()
        .filter(|r| (start..end).contains(&r["ts"].as_i64().unwrap()))
        .take(3)
        .collect();
    assert_eq!(left.len(), 3);

    let feature = "quickstart_purchases_v1_purchase_price_sum_14d";
    let gone = "quickstart_purchases_v0_purchase_price_max_7d";
    let schema = json!({"join": JOIN, "key_columns": ["user_id"], "features": [feature, gone]});
    let mut rows = vec![log_row(
        "schema",
        "older",
        start,
        Value::Null,
        &schema.to_string(),
    )];
    for r in &left {
        let key = json!({"user_id": r["user_id"]}).to_string();
        let value = json!({feature: r[feature], gone: 99.5}).to_string();
        rows.push(log_row(
            "fetch",
            "older",
            r["ts"].as_i64().unwrap(),
            json!(key),
            &value,
        ));
    }
    replace_partition(&s, &format!("{OUTPUT}_log"), &rows);

    let out = measure(&s);
    println!("{}", out.concat());
    assert!(
        out[1].contains("1 logged features the current Join no longer has, not compared")
            && out[1].contains(&format!("{gone}: 3 logged values")),
        "{}",
        out[1]
    );
    let comparison = s.export(&format!("{OUTPUT}_comparison"), FETCH_DAY);
    assert_eq!(comparison.len(), 3);
    assert!(comparison[0].contains_key(feature) && !comparison[0].contains_key(gone));
    let m = metrics(&s);
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        vec!["__overall__", feature],
        "{m:?}"
    );
    for row in m.values() {
        assert_eq!(row["rows"], json!(3), "{row:?}");
        assert_eq!(row["consistency_rate"], json!(1.0), "{row:?}");
    }
    let drift = s.export(&format!("{OUTPUT}_drift"), FETCH_DAY);
    assert!(
        drift.iter().all(|r| r["feature"] == json!(feature)),
        "{drift:?}"
    );
}
