//! With the engine: a Join's figures read from the warehouse (`engine::consistency_report`),
//! for the API and the `consistency` command, and published after each metrics job.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chronoflow_config::naming::normalize_join_name;
use chronoflow_config::{Config, LoadedConfig, PartitionDate, Repo};
use chronoflow_engine::consistency_report::{
    self as figures, ConsistencyReport, DayFigures, Thresholds,
};
use chronoflow_engine::{EngineError, Warehouse};
use futures::future::BoxFuture;

use super::ConsistencySource;
use crate::alert::{Alert, AlertFeature, Alerter, FigureAlert};
use crate::clock::Clock;
use crate::config::SchedulerConfig;
use crate::error::{Result, SchedulerError};
use crate::executor::TaskRun;
use crate::store::{ConsistencyGauges, FeatureGauge, PsiGauge, Store};

/// Features an alert names at most.
const ALERT_FEATURES: usize = 10;

/// The thresholds in force for a Join (`[consistency]`: Join over team over default).
pub fn thresholds_of(config: &SchedulerConfig, loaded: &LoadedConfig) -> Thresholds {
    let t = config.consistency.thresholds(&loaded.team, loaded.name());
    Thresholds {
        min_rate: t.min_rate,
        max_psi: t.max_psi,
    }
}

fn engine_error(e: EngineError) -> SchedulerError {
    match e {
        EngineError::Input { message, .. } => SchedulerError::InvalidParameter {
            name: "start_ds..end_ds".to_owned(),
            message,
        },
        other => SchedulerError::Warehouse(other.to_string()),
    }
}

/// The figures of `join` (`team.name.v1` or `team/name.v1`) from `start_ds` to `end_ds`, with
/// its thresholds: by default the newest day with figures (else today) and the 6 days before.
/// The one reader behind the `consistency` command and the API route.
pub async fn join_report(
    warehouse: &Warehouse,
    repo: &Repo,
    config: &SchedulerConfig,
    join: &str,
    start_ds: Option<&str>,
    end_ds: Option<&str>,
) -> Result<ConsistencyReport> {
    let name = normalize_join_name(join);
    let loaded = repo
        .config(&name)
        .ok_or_else(|| SchedulerError::UnknownJoin(name.clone()))?;
    if !matches!(loaded.config, Config::Join(_)) {
        return Err(SchedulerError::InvalidParameter {
            name: "join".to_owned(),
            message: format!("{name} is a {:?}, not a Join", loaded.kind()),
        });
    }
    let date = |param: &str, text: Option<&str>| -> Result<Option<PartitionDate>> {
        text.filter(|t| !t.is_empty())
            .map(|t| {
                PartitionDate::parse(t).map_err(|e| SchedulerError::InvalidParameter {
                    name: param.to_owned(),
                    message: e.to_string(),
                })
            })
            .transpose()
    };
    let (start, end) = (date("start_ds", start_ds)?, date("end_ds", end_ds)?);
    let output = loaded.output_table();
    let end = match end {
        Some(end) => end,
        None => match figures::newest_day(warehouse, &output)
            .await
            .map_err(engine_error)?
        {
            Some(newest) => start.map_or(newest, |s| newest.max(s)),
            None => today(),
        },
    };
    let start = start.unwrap_or_else(|| end.add_days(-6));
    figures::read_report(
        warehouse,
        loaded.name(),
        &output,
        start,
        end,
        thresholds_of(config, loaded),
    )
    .await
    .map_err(engine_error)
}

fn today() -> PartitionDate {
    let now = chrono::Utc::now().date_naive();
    PartitionDate::parse(&now.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| PartitionDate::from_ymd(1970, 1, 1).expect("a valid date"))
}

/// How long the API reuses a loaded repo: a request does not reload every config, and a
/// Join added to the repo shows up within this time.
const REPO_TTL: Duration = Duration::from_secs(10);

/// The API's figures: the warehouse and the repo the process serves.
pub struct WarehouseConsistency {
    warehouse: Arc<Warehouse>,
    repo_dir: PathBuf,
    config: Arc<SchedulerConfig>,
    repo: Mutex<Option<(Instant, Arc<Repo>)>>,
}

impl WarehouseConsistency {
    pub fn new(warehouse: Arc<Warehouse>, repo_dir: PathBuf, config: Arc<SchedulerConfig>) -> Self {
        WarehouseConsistency {
            warehouse,
            repo_dir,
            config,
            repo: Mutex::new(None),
        }
    }

    /// The repo, loaded at most every [`REPO_TTL`].
    async fn repo(&self) -> Result<Arc<Repo>> {
        if let Some((loaded, repo)) = &*self.repo.lock().unwrap_or_else(PoisonError::into_inner)
            && loaded.elapsed() < REPO_TTL
        {
            return Ok(repo.clone());
        }
        let dir = self.repo_dir.clone();
        let repo = tokio::task::spawn_blocking(move || chronoflow_config::fs::load_repo(&dir))
            .await
            .map_err(|e| SchedulerError::Warehouse(format!("loading the repo: {e}")))?
            .map_err(|e| {
                SchedulerError::Warehouse(format!("loading repo {}: {e}", self.repo_dir.display()))
            })?;
        let repo = Arc::new(repo);
        *self.repo.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), repo.clone()));
        Ok(repo)
    }
}

impl ConsistencySource for WarehouseConsistency {
    fn report<'a>(
        &'a self,
        join: &'a str,
        start_ds: Option<&'a str>,
        end_ds: Option<&'a str>,
    ) -> BoxFuture<'a, Result<serde_json::Value>> {
        Box::pin(async move {
            let repo = self.repo().await?;
            let report =
                join_report(&self.warehouse, &repo, &self.config, join, start_ds, end_ds).await?;
            serde_json::to_value(&report)
                .map_err(|e| SchedulerError::Warehouse(format!("encoding the figures: {e}")))
        })
    }
}

/// Publishes a Join's figures after `consistency-metrics-compute`: gauges into the store,
/// alerts through the team's webhook.
pub struct ConsistencyPublisher {
    store: Arc<Store>,
    alerter: Alerter,
    config: Arc<SchedulerConfig>,
    clock: Arc<dyn Clock>,
}

impl ConsistencyPublisher {
    pub fn new(store: Arc<Store>, config: Arc<SchedulerConfig>, clock: Arc<dyn Clock>) -> Self {
        ConsistencyPublisher {
            store,
            alerter: Alerter::new(config.clone()),
            config,
            clock,
        }
    }

    /// Reads day `ds`'s figures of the Join back, records them as its gauges and sends the
    /// alerts they call for; lines for the task's log.
    pub async fn publish(
        &self,
        warehouse: &Warehouse,
        loaded: &LoadedConfig,
        task: &TaskRun,
        ds: PartitionDate,
    ) -> Result<Vec<String>> {
        let join = loaded.name();
        let t = thresholds_of(&self.config, loaded);
        let day = figures::read_day(warehouse, join, &loaded.output_table(), ds, t)
            .await
            .map_err(engine_error)?;
        let Some(day) = day else {
            return Ok(vec![format!(
                "publish {join} ds={ds}: no consistency figures for the day"
            )]);
        };
        let recorded = self
            .store
            .record_consistency_gauges(&gauges_of(loaded, &day), self.clock.now_ms())
            .await?;
        let mut lines = vec![if recorded {
            format!("publish {join} ds={ds}: gauges recorded")
        } else {
            format!("publish {join} ds={ds}: gauges keep the figures of a later day")
        }];
        for alert in figure_alerts(join, &day, t) {
            lines.push(format!("alert {}: {}", alert.event, alert.message));
            self.alerter.send(Alert::for_figures(task, alert));
        }
        Ok(lines)
    }
}

/// A day's figures as the Join's gauges.
fn gauges_of(loaded: &LoadedConfig, day: &DayFigures) -> ConsistencyGauges {
    let overall = FeatureGauge {
        feature: chronoflow_engine::consistency::OVERALL.to_owned(),
        rate: day.consistency_rate,
        mismatches: day.inconsistent_rows,
    };
    ConsistencyGauges {
        join: loaded.name().to_owned(),
        team: loaded.team.clone(),
        ds: day.ds.to_string(),
        rows: day.rows,
        features: std::iter::once(overall)
            .chain(day.features.iter().map(|f| FeatureGauge {
                feature: f.feature.clone(),
                rate: f.consistency_rate,
                mismatches: f.mismatches,
            }))
            .collect(),
        psi: day
            .drift
            .iter()
            .flatten()
            .filter_map(|d| {
                d.psi.map(|psi| PsiGauge {
                    feature: d.feature.clone(),
                    side: d.side.clone(),
                    psi,
                })
            })
            .collect(),
    }
}

/// The alerts a day's figures call for: `consistency_below_threshold` when the overall rate
/// (or a feature's) is below `min_rate`, `drift_above_threshold` when a feature's PSI is above
/// `max_psi`; none when everything is within.
pub fn figure_alerts(join: &str, day: &DayFigures, t: Thresholds) -> Vec<FigureAlert> {
    let mut out = Vec::new();
    if day.below_min_rate || !day.features_below_min_rate.is_empty() {
        let features: Vec<AlertFeature> = day
            .worst_features(ALERT_FEATURES)
            .map(|f| AlertFeature {
                feature: f.feature.clone(),
                side: None,
                value: f.consistency_rate,
                mismatches: Some(f.mismatches),
                one_sided_nulls: Some(f.online_null_only.saturating_add(f.offline_null_only)),
            })
            .collect();
        let named: Vec<String> = features
            .iter()
            .take(5)
            .map(|f| format!("{} {:.4}", f.feature, f.value))
            .collect();
        out.push(FigureAlert {
            event: "consistency_below_threshold",
            join: join.to_owned(),
            ds: day.ds.to_string(),
            figure: "consistency_rate",
            value: day.consistency_rate,
            threshold: t.min_rate,
            message: format!(
                "consistency of {join} on {} is {:.4} ({} of {} logged fetches inconsistent), below min_rate {}; worst features: {}",
                day.ds,
                day.consistency_rate,
                day.inconsistent_rows,
                day.rows,
                t.min_rate,
                named.join(", ")
            ),
            features,
        });
    }
    if let Some(worst) = day.drift_above_max_psi.first() {
        let features: Vec<AlertFeature> = day
            .drift_above_max_psi
            .iter()
            .take(ALERT_FEATURES)
            .map(|d| AlertFeature {
                feature: d.feature.clone(),
                side: Some(d.side.clone()),
                value: d.psi.unwrap_or(0.0),
                mismatches: None,
                one_sided_nulls: None,
            })
            .collect();
        let psi = worst.psi.unwrap_or(0.0);
        out.push(FigureAlert {
            event: "drift_above_threshold",
            join: join.to_owned(),
            ds: day.ds.to_string(),
            figure: "psi",
            value: psi,
            threshold: t.max_psi,
            message: format!(
                "drift of {join} on {}: PSI {psi:.4} of {} ({}) is above max_psi {}; {} feature side(s) above",
                day.ds,
                worst.feature,
                worst.side,
                t.max_psi,
                day.drift_above_max_psi.len()
            ),
            features,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use chronoflow_engine::consistency_report::{DriftFigures, FeatureFigures};

    use super::*;

    fn feature(name: &str, rate: f64, mismatches: i64) -> FeatureFigures {
        FeatureFigures {
            feature: name.to_owned(),
            rows: 100,
            both_null: 0,
            online_null_only: 1,
            offline_null_only: 0,
            mismatches,
            smape: None,
            consistency_rate: rate,
        }
    }

    fn drift(name: &str, side: &str, psi: Option<f64>) -> DriftFigures {
        DriftFigures {
            feature: name.to_owned(),
            side: side.to_owned(),
            rows: 100,
            null_rate: Some(0.0),
            distinct_estimate: Some(10),
            mean: None,
            p05: None,
            p25: None,
            p50: None,
            p75: None,
            p95: None,
            psi,
            baseline_days: Some(7),
        }
    }

    fn day(rate: f64, features: Vec<FeatureFigures>, drift: Vec<DriftFigures>) -> DayFigures {
        let t = Thresholds::default();
        let above: Vec<DriftFigures> = drift
            .iter()
            .filter(|d| d.psi.is_some_and(|p| p > t.max_psi))
            .cloned()
            .collect();
        DayFigures {
            ds: PartitionDate::parse("2023-11-30").expect("a date"),
            rows: 100,
            inconsistent_rows: ((1.0 - rate) * 100.0).round() as i64,
            consistency_rate: rate,
            below_min_rate: rate < t.min_rate,
            features_below_min_rate: features
                .iter()
                .filter(|f| f.consistency_rate < t.min_rate)
                .map(|f| f.feature.clone())
                .collect(),
            features,
            drift: Some(drift),
            drift_above_max_psi: above,
        }
    }

    #[test]
    fn figures_within_thresholds_raise_no_alert() {
        let d = day(
            1.0,
            vec![feature("a", 1.0, 0)],
            vec![drift("a", "online", Some(0.1)), drift("a", "offline", None)],
        );
        assert_eq!(figure_alerts("t.j.v1", &d, Thresholds::default()), vec![]);
    }

    #[test]
    fn low_consistency_and_high_psi_raise_one_alert_each_naming_the_worst_features() {
        let d = day(
            0.9,
            vec![
                feature("b", 0.9, 9),
                feature("a", 0.995, 0),
                feature("c", 1.0, 0),
            ],
            vec![
                drift("a", "online", Some(0.25)),
                drift("b", "offline", Some(0.7)),
            ],
        );
        let mut d = d;
        d.drift_above_max_psi
            .sort_by(|x, y| y.psi.unwrap_or(0.0).total_cmp(&x.psi.unwrap_or(0.0)));
        let alerts = figure_alerts("t.j.v1", &d, Thresholds::default());
        assert_eq!(alerts.len(), 2);
        let c = &alerts[0];
        assert_eq!(
            (c.event, c.figure, c.value, c.threshold, c.ds.as_str()),
            (
                "consistency_below_threshold",
                "consistency_rate",
                0.9,
                0.99,
                "2023-11-30"
            )
        );
        let named: Vec<(&str, f64, Option<i64>)> = c
            .features
            .iter()
            .map(|f| (f.feature.as_str(), f.value, f.mismatches))
            .collect();
        // Every inconsistent feature, worst first; `c` is fully consistent.
        assert_eq!(named, [("b", 0.9, Some(9)), ("a", 0.995, Some(0))]);
        assert!(
            c.message.contains("t.j.v1") && c.message.contains("0.99"),
            "{}",
            c.message
        );
        let p = &alerts[1];
        assert_eq!(
            (p.event, p.figure, p.value, p.threshold),
            ("drift_above_threshold", "psi", 0.7, 0.2)
        );
        let sides: Vec<(&str, Option<&str>)> = p
            .features
            .iter()
            .map(|f| (f.feature.as_str(), f.side.as_deref()))
            .collect();
        assert_eq!(sides, [("b", Some("offline")), ("a", Some("online"))]);
    }
}
