//! The newest consistency figures of each Join: what `/metrics` shows as gauges.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::Store;
use super::row::Stored;
use crate::error::{Result, SchedulerError};
use crate::spec::{Action, DagSpec};

/// One Join's gauges: the figures of day `ds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyGauges {
    pub join: String,
    pub team: String,
    /// `yyyy-MM-dd`.
    pub ds: String,
    /// Logged fetches of the day.
    pub rows: i64,
    /// Every feature, `__overall__` included.
    pub features: Vec<FeatureGauge>,
    /// Per feature and side, where the drift table has a PSI.
    pub psi: Vec<PsiGauge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureGauge {
    pub feature: String,
    pub rate: f64,
    pub mismatches: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PsiGauge {
    pub feature: String,
    pub side: String,
    pub psi: f64,
}

/// What a row stores besides its key columns.
#[derive(Serialize, Deserialize)]
struct Figures {
    rows: i64,
    features: Vec<FeatureGauge>,
    psi: Vec<PsiGauge>,
}

fn gauges_row(r: &AnyRow) -> Result<ConsistencyGauges> {
    let r = Stored::new("consistency_gauges", r);
    let text: String = r.get("figures_json")?;
    let figures: Figures = serde_json::from_str(&text)
        .map_err(|e| r.corrupt("figures_json", format!("not the gauges' JSON: {e}")))?;
    Ok(ConsistencyGauges {
        join: r.get("join_name")?,
        team: r.get("team")?,
        ds: r.get("ds")?,
        rows: figures.rows,
        features: figures.features,
        psi: figures.psi,
    })
}

impl Store {
    /// Records `gauges` as the Join's newest figures, unless figures of a later day are
    /// recorded already (a rerun of an older day); whether they were recorded.
    pub async fn record_consistency_gauges(
        &self,
        gauges: &ConsistencyGauges,
        now: i64,
    ) -> Result<bool> {
        let figures = serde_json::to_string(&Figures {
            rows: gauges.rows,
            features: gauges.features.clone(),
            psi: gauges.psi.clone(),
        })
        .map_err(|e| SchedulerError::Schema(format!("encoding consistency gauges: {e}")))?;
        let done = sqlx::query(
            "INSERT INTO consistency_gauges (join_name, team, ds, figures_json, updated_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (join_name) DO UPDATE SET team = excluded.team, ds = excluded.ds, \
             figures_json = excluded.figures_json, updated_ms = excluded.updated_ms \
             WHERE consistency_gauges.ds <= excluded.ds",
        )
        .bind(&gauges.join)
        .bind(&gauges.team)
        .bind(&gauges.ds)
        .bind(figures)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(SchedulerError::db("recording consistency gauges"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Every Join's newest figures, by Join name.
    pub async fn consistency_gauges(&self) -> Result<Vec<ConsistencyGauges>> {
        let rows = sqlx::query("SELECT * FROM consistency_gauges ORDER BY join_name")
            .fetch_all(&self.pool)
            .await
            .map_err(SchedulerError::db("listing consistency gauges"))?;
        rows.iter().map(gauges_row).collect()
    }
}

/// The Joins whose figures `spec` computes: the configs of its `consistency-metrics-compute`
/// tasks.
pub(crate) fn consistency_joins_of(spec: &DagSpec) -> impl Iterator<Item = &str> {
    spec.tasks.iter().filter_map(|t| match &t.action {
        Action::Job(job) if job.mode == "consistency-metrics-compute" => Some(job.config.as_str()),
        _ => None,
    })
}

/// Deletes the gauges of Joins not in `keep` (the Join left the repo, or stopped checking
/// consistency): `/metrics` would show their last figures forever. Returns the Joins.
pub(crate) async fn prune_gauges(
    c: &mut AnyConnection,
    keep: &BTreeSet<&str>,
) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT join_name FROM consistency_gauges")
        .fetch_all(&mut *c)
        .await
        .map_err(SchedulerError::db("reading consistency gauges"))?;
    let mut gone = Vec::new();
    for r in &rows {
        let join: String = Stored::new("consistency_gauges", r).get("join_name")?;
        if !keep.contains(join.as_str()) {
            gone.push(join);
        }
    }
    for join in &gone {
        sqlx::query("DELETE FROM consistency_gauges WHERE join_name = $1")
            .bind(join)
            .execute(&mut *c)
            .await
            .map_err(SchedulerError::db("removing consistency gauges"))?;
    }
    Ok(gone)
}
