//! The consistency gauges in the store: the newest day wins, and a re-planning deletes the
//! gauges of Joins no DAG computes any more. On SQLite, and on PostgreSQL when `DATABASE_URL`
//! is set (required under `CI=true`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use chronoflow_scheduler::config::SchedulerConfig;
use chronoflow_scheduler::spec::{DagSpec, specs_from_plan};
use chronoflow_scheduler::store::{ConsistencyGauges, FeatureGauge, PsiGauge, Store};
use sqlx::Connection;

const JOIN: &str = "quickstart.training_set.v2";

fn gauges(ds: &str, rate: f64) -> ConsistencyGauges {
    ConsistencyGauges {
        join: JOIN.to_owned(),
        team: "quickstart".to_owned(),
        ds: ds.to_owned(),
        rows: 10,
        features: vec![FeatureGauge {
            feature: "__overall__".to_owned(),
            rate,
            mismatches: 1,
        }],
        psi: vec![PsiGauge {
            feature: "f".to_owned(),
            side: "online".to_owned(),
            psi: 0.3,
        }],
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The quickstart's specs; with `ooc`, training_set.v2 checks consistency (its OOC DAG has a
/// metrics task).
fn specs(dir: &Path, ooc: bool) -> Vec<DagSpec> {
    let quickstart =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chronon/quickstart");
    let repo = dir.join(if ooc { "ooc" } else { "plain" });
    copy_dir(&quickstart, &repo);
    if ooc {
        let conf = repo.join("compiled/production/joins/quickstart/training_set.v2");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&conf).unwrap()).unwrap();
        v["metaData"]["samplePercent"] = serde_json::json!(100.0);
        v["metaData"]["customJson"] = serde_json::json!(r#"{"check_consistency": true, "lag": 0}"#);
        std::fs::write(&conf, v.to_string()).unwrap();
    }
    let repo = chronoflow_config::fs::load_repo(&repo).unwrap();
    specs_from_plan(&chronoflow_plan::plan(&repo), &SchedulerConfig::default())
}

async fn newest_day_wins_and_replanning_prunes(store: &Store, dir: &Path) {
    assert!(store.consistency_gauges().await.unwrap().is_empty());
    assert!(
        store
            .record_consistency_gauges(&gauges("2023-11-30", 0.5), 1)
            .await
            .unwrap()
    );
    // A rerun of an older day does not replace the newer figures; the same day does.
    assert!(
        !store
            .record_consistency_gauges(&gauges("2023-11-29", 0.9), 2)
            .await
            .unwrap()
    );
    assert_eq!(
        store.consistency_gauges().await.unwrap(),
        [gauges("2023-11-30", 0.5)]
    );
    assert!(
        store
            .record_consistency_gauges(&gauges("2023-11-30", 0.7), 3)
            .await
            .unwrap()
    );
    assert_eq!(
        store.consistency_gauges().await.unwrap(),
        [gauges("2023-11-30", 0.7)]
    );

    // The Join's OOC DAG is planned: its gauges stay.
    let report = store.sync_dags(&specs(dir, true), 4).await.unwrap();
    assert!(report.gauges_removed.is_empty(), "{report:?}");
    assert_eq!(store.consistency_gauges().await.unwrap().len(), 1);
    // It stops checking consistency: its gauges go.
    let report = store.sync_dags(&specs(dir, false), 5).await.unwrap();
    assert_eq!(report.gauges_removed, [JOIN]);
    assert!(store.consistency_gauges().await.unwrap().is_empty());
}

#[tokio::test]
async fn gauges_keep_the_newest_day_and_leave_with_their_join_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("state.db"))
        .await
        .unwrap();
    newest_day_wins_and_replanning_prunes(&store, dir.path()).await;
}

#[tokio::test]
async fn gauges_keep_the_newest_day_and_leave_with_their_join_on_postgres() {
    let base = match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but DATABASE_URL is not set: the PostgreSQL run cannot be skipped")
        }
        Err(_) => {
            eprintln!("DATABASE_URL is not set: skipping the PostgreSQL run");
            return;
        }
    };
    let name = format!("chronoflow_gauges_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("{prefix}/{name}")).await.unwrap();
    newest_day_wins_and_replanning_prunes(&store, dir.path()).await;
}
