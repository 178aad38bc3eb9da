//! The newest consistency figures of each Join: what `/metrics` shows as gauges.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::Store;
use super::row::Stored;
use crate::error::{Result, SchedulerError};

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
