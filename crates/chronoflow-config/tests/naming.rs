//! Naming (SPEC §2): every example of the spec, and every output column Zipline's own compiler
//! recorded in `metaData.columnHashes` of the ZL samples.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::BTreeSet;
use std::path::Path;

use chronoflow_config::naming::*;
use chronoflow_config::{Config, Dialect, fs::load_repo};

fn repo(rel: &str) -> chronoflow_config::Repo {
    load_repo(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/chronon")
            .join(rel),
    )
    .unwrap()
}

#[test]
fn spec_examples_from_the_quickstart() {
    let repo = repo("quickstart");
    let Config::GroupBy(purchases) = &repo.config("quickstart.purchases.v1").unwrap().config else {
        panic!()
    };
    let features = group_by_features(purchases);
    for expected in [
        "purchase_price_sum_3d",
        "purchase_price_count_14d",
        "purchase_price_average_30d",
        "purchase_price_last10",
    ] {
        assert!(
            features.contains(&expected.to_owned()),
            "{expected} not in {features:?}"
        );
    }
    let Config::GroupBy(returns) = &repo.config("quickstart.returns.v1").unwrap().config else {
        panic!()
    };
    assert!(group_by_features(returns).contains(&"refund_amt_count_14d".to_owned()));

    let v2 = repo.config("quickstart.training_set.v2").unwrap();
    assert_eq!(v2.output_table(), "default.quickstart_training_set_v2");
    let Config::Join(join) = &v2.config else {
        panic!()
    };
    let features = join_features(join, Dialect::Airbnb);
    assert!(
        features.contains(&"quickstart_purchases_v1_purchase_price_sum_3d".to_owned()),
        "{features:?}"
    );
    assert!(
        features.contains(&"quickstart_returns_v1_refund_amt_last2".to_owned()),
        "{features:?}"
    );

    let Config::Join(v1) = &repo.config("quickstart.training_set.v1").unwrap().config else {
        panic!()
    };
    let features = join_features(v1, Dialect::Airbnb);
    assert!(
        features.contains(&"quickstart_users_v1_email_verified".to_owned()),
        "{features:?}"
    );
    assert!(
        features.contains(&"quickstart_users_v1_account_created_ds".to_owned()),
        "{features:?}"
    );
    assert_eq!(join_left_columns(v1, "ds"), ["user_id", "ts", "ds"]);
}

#[test]
fn spec_examples_of_names() {
    assert_eq!(sanitize("team.file-name.v1 x"), "team_file_name_v1_x");
    assert_eq!(
        output_table("default", "quickstart.purchases.v1"),
        "default.quickstart_purchases_v1"
    );
    assert_eq!(
        upload_table("default.quickstart_purchases_v1", Dialect::Airbnb),
        "default.quickstart_purchases_v1_upload"
    );
    assert_eq!(upload_table("ns.t__0", Dialect::Zipline), "ns.t__0__upload");
    assert_eq!(logged_table("ns.j"), "ns.j_logged");
    assert_eq!(comparison_table("ns.j"), "ns.j_comparison");
    assert_eq!(consistency_table("ns.j"), "ns.j_consistency");
    assert_eq!(daily_stats_table("ns.j"), "ns.j_daily_stats");
    assert_eq!(bootstrap_table("ns.j"), "ns.j_bootstrap");
    assert_eq!(
        batch_dataset("quickstart.purchases.v1"),
        "QUICKSTART_PURCHASES_V1_BATCH"
    );
    assert_eq!(
        streaming_dataset("quickstart.returns.v1"),
        "QUICKSTART_RETURNS_V1_STREAMING"
    );
    assert_eq!(
        join_metadata_key("quickstart", "quickstart.training_set.v2"),
        "joins/quickstart/training_set.v2"
    );
    assert_eq!(
        normalize_join_name("quickstart/training_set.v2"),
        "quickstart.training_set.v2"
    );
    assert_eq!(
        normalize_join_name("quickstart.training_set.v2"),
        "quickstart.training_set.v2"
    );
    assert_eq!(strip_version("team.gb.v1__12"), "team.gb.v1");
    assert_eq!(strip_version("team.gb.v1__x"), "team.gb.v1__x");
}

/// Zipline's compiler writes one hash per output column; our names must be exactly those.
#[test]
fn zipline_output_columns_match_column_hashes() {
    let repo = repo("samples/zipline");
    let mut checked = 0;
    let mut failures = Vec::new();
    for loaded in &repo.configs {
        let meta = loaded.config.metadata();
        if meta.column_hashes.is_empty() {
            continue;
        }
        let expected: BTreeSet<String> = meta.column_hashes.keys().cloned().collect();
        let actual: BTreeSet<String> = match &loaded.config {
            Config::GroupBy(gb) => gb
                .key_columns
                .iter()
                .cloned()
                .chain(group_by_features(gb))
                .collect(),
            Config::Join(join) => {
                let left = join
                    .left
                    .query()
                    .selects
                    .iter()
                    .flat_map(|s| s.keys().cloned());
                let external = join
                    .online_external_parts
                    .iter()
                    .flat_map(external_part_columns);
                left.chain(join_features(join, Dialect::Zipline))
                    .chain(external)
                    .collect()
            }
            Config::StagingQuery(_) => continue,
        };
        checked += 1;
        if actual != expected {
            failures.push(format!(
                "{}:\n  missing {:?}\n  extra   {:?}",
                loaded.name(),
                expected.difference(&actual).collect::<Vec<_>>(),
                actual.difference(&expected).collect::<Vec<_>>()
            ));
        }
    }
    assert!(checked >= 30, "only {checked} configs had column hashes");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
