//! The late-data skew scenario (issue 13): source rows that land in a partition the served batch
//! was computed from, after its upload, and are never streamed. The offline backfill counts
//! them, serving does not: every fetch whose value they change is a skew the consistency jobs
//! must count.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::quickstart::*;

/// The partition the late rows land in: the batch day, uploaded before they arrive. The
/// streaming replay starts after it, so they are never streamed.
pub const LATE_DAY: &str = BATCH_DAY;
/// Users given late rows: this many of the first users fetched on the fetch day.
pub const LATE_USERS: usize = 8;

/// The sources that receive late rows: a SNAPSHOT GroupBy's and a TEMPORAL one's.
const LATE_SOURCES: [&str; 2] = ["purchases", "returns"];

/// An upload function for `served_and_logged_with`: the quickstart imported, uploaded for the
/// batch day and replayed (as usual), then late rows land in `LATE_DAY` of `data.purchases` and
/// `data.returns`.
pub fn uploaded_then_late_rows(s: Setup) -> Setup {
    let s = upload_quickstart(s);
    land_late_rows(&s, true);
    s
}

/// The users that get late rows: the first `LATE_USERS` distinct users of the fetch day's
/// checkouts, in file order.
pub fn late_users() -> Vec<i64> {
    let text = std::fs::read_to_string(quickstart().join("data/checkouts.csv")).unwrap();
    let mut users: Vec<i64> = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields[0] != FETCH_DAY {
            continue;
        }
        let user: i64 = fields[3].parse().unwrap();
        if !users.contains(&user) {
            users.push(user);
        }
        if users.len() == LATE_USERS {
            break;
        }
    }
    users
}

/// Replaces partition `LATE_DAY` of each late source with its quickstart rows, plus (`late`)
/// one row per late user at noon of that day.
pub fn land_late_rows(s: &Setup, late: bool) {
    let noon = epoch_day(LATE_DAY) + DAY_MS / 2;
    for source in LATE_SOURCES {
        let text =
            std::fs::read_to_string(quickstart().join(format!("data/{source}.csv"))).unwrap();
        let mut lines = text.lines();
        let mut out = format!("{}\n", lines.next().unwrap());
        for line in lines.filter(|l| l.starts_with(LATE_DAY)) {
            out.push_str(&format!("{line}\n"));
        }
        if late {
            // Returns for half the users only: the two parts' features change different rows.
            let users = late_users();
            let users = match source {
                "returns" => &users[..LATE_USERS / 2],
                _ => &users[..],
            };
            for (i, user) in users.iter().enumerate() {
                // ds,ts,<id>,user_id,product_id,<amount>
                out.push_str(&format!(
                    "{LATE_DAY},{},LATE-{source}-{i},{user},1,{}\n",
                    noon + i as i64,
                    300 + 10 * i
                ));
            }
        }
        let csv = s.dir.path().join(format!("{source}-{LATE_DAY}.csv"));
        std::fs::write(&csv, out).unwrap();
        s.import(&format!("data.{source}"), &csv);
    }
}

/// What the late rows change, computed from the offline side alone: the Join backfill of the
/// fetch day with the late rows, then again without them (the partitions re-imported without
/// them, and put back after), compared at each request (user, ts).
pub struct LateChanges {
    /// Per feature, the requests whose value differs.
    pub per_feature: BTreeMap<String, usize>,
    /// Requests with any differing feature.
    pub rows: usize,
    /// The backfill without the late rows, per request: what serving should have answered.
    pub without: BTreeMap<(String, i64), Map<String, Value>>,
}

/// `fetched`: each request's user, time and served features (the features compared).
pub fn late_rows_changes(
    s: &Setup,
    join_conf: &str,
    output: &str,
    fetched: &[(Value, i64, Map<String, Value>)],
) -> LateChanges {
    let backfill = |s: &Setup| -> BTreeMap<(String, i64), Map<String, Value>> {
        s.job("backfill", join_conf, &["--ds", FETCH_DAY, "--force"]);
        s.export(output, FETCH_DAY)
            .into_iter()
            .map(|r| ((r["user_id"].to_string(), r["ts"].as_i64().unwrap()), r))
            .collect()
    };
    let with = backfill(s);
    land_late_rows(s, false);
    let without = backfill(s);
    land_late_rows(s, true);
    let mut per_feature: BTreeMap<String, usize> = BTreeMap::new();
    let mut rows = 0;
    for (user, ts, features) in fetched {
        let key = (user.to_string(), *ts);
        let (a, b) = (&with[&key], &without[&key]);
        let mut changed = false;
        for feature in features.keys() {
            let differs = a[feature] != b[feature];
            *per_feature.entry(feature.clone()).or_default() += usize::from(differs);
            changed |= differs;
        }
        rows += usize::from(changed);
    }
    LateChanges {
        per_feature,
        rows,
        without,
    }
}
