//! Alerts: a task's final failure, a sensor's timeout, a stream that keeps crashing (and
//! its recovery) and consistency or drift figures past their threshold go to the log and to a
//! webhook.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::SchedulerConfig;
use crate::store::Claimed;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    /// `task_failed`, `sensor_timeout`, `stream_crashing`, `stream_recovered`,
    /// `consistency_below_threshold` or `drift_above_threshold`.
    pub event: &'static str,
    pub dag_id: String,
    /// Empty (and left out) for a stream's alerts: a stream outlives the runs that keep it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    pub task_id: String,
    pub team: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ds: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub try_number: i64,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_path: Option<String>,
    /// The streaming job (stream alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Consecutive crashes (stream alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crashes: Option<u32>,
    /// The Join whose figures crossed a threshold (consistency and drift alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    /// Which figure: `consistency_rate` (the overall rate) or `psi` (the highest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figure: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The worst features, worst first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<AlertFeature>>,
}

/// A feature named by a consistency or drift alert.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertFeature {
    pub feature: String,
    /// `online` or `offline` (drift alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    /// Its consistency rate or PSI.
    pub value: f64,
    /// Rows where both sides have a value and they differ (consistency alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatches: Option<i64>,
    /// Rows where only one side is null (consistency alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_sided_nulls: Option<i64>,
}

/// What a consistency or drift alert says, besides the task that measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureAlert {
    pub event: &'static str,
    pub join: String,
    /// The day the figures are of.
    pub ds: String,
    pub figure: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub features: Vec<AlertFeature>,
    /// One sentence for people (the `error` field).
    pub message: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Alert {
    /// The alert for try `t` of a task instance.
    pub fn for_try(
        event: &'static str,
        t: &Claimed,
        error: String,
        log_path: Option<String>,
    ) -> Alert {
        Alert {
            event,
            dag_id: t.dag_id.clone(),
            run_id: t.run_id.clone(),
            task_id: t.task_id.clone(),
            team: t.team.clone(),
            ds: t.ds.clone(),
            try_number: t.try_number,
            error,
            log_path,
            job: None,
            crashes: None,
            join: None,
            figure: None,
            value: None,
            threshold: None,
            features: None,
        }
    }

    /// A consistency or drift alert about the figures try `t` published.
    pub fn for_figures(t: &crate::executor::TaskRun, figures: FigureAlert) -> Alert {
        Alert {
            event: figures.event,
            dag_id: t.dag_id.clone(),
            run_id: t.run_id.clone(),
            task_id: t.task_id.clone(),
            team: t.job.team.clone(),
            ds: figures.ds,
            try_number: t.try_number,
            error: figures.message,
            log_path: Some(t.log_path.display().to_string()),
            job: None,
            crashes: None,
            join: Some(figures.join),
            figure: Some(figures.figure),
            value: Some(figures.value),
            threshold: Some(figures.threshold),
            features: Some(figures.features),
        }
    }

    /// An alert about the stream of `job` (kept alive by task `task_id` of `dag_id`).
    #[allow(clippy::too_many_arguments)]
    pub fn for_stream(
        event: &'static str,
        dag_id: &str,
        task_id: &str,
        team: &str,
        job: &str,
        crashes: u32,
        error: String,
        log_path: Option<String>,
    ) -> Alert {
        Alert {
            event,
            dag_id: dag_id.to_owned(),
            run_id: String::new(),
            task_id: task_id.to_owned(),
            team: team.to_owned(),
            ds: String::new(),
            try_number: 0,
            error,
            log_path,
            job: Some(job.to_owned()),
            crashes: Some(crashes),
            join: None,
            figure: None,
            value: None,
            threshold: None,
            features: None,
        }
    }
}

#[derive(Clone)]
pub struct Alerter {
    config: Arc<SchedulerConfig>,
    client: reqwest::Client,
}

impl Alerter {
    pub fn new(config: Arc<SchedulerConfig>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Alerter { config, client }
    }

    /// Logs the alert and posts it to the team's webhook in the background (a slow or dead
    /// webhook never holds up scheduling).
    pub fn send(&self, alert: Alert) {
        if alert.event == "stream_recovered" {
            tracing::info!(event = alert.event, job = ?alert.job, "alert");
        } else {
            tracing::error!(
                event = alert.event,
                dag_id = %alert.dag_id,
                run_id = %alert.run_id,
                task_id = %alert.task_id,
                ds = %alert.ds,
                try_number = alert.try_number,
                error = %alert.error,
                "alert"
            );
        }
        let Some(url) = self.config.alert_webhook_of(&alert.team).map(str::to_owned) else {
            return;
        };
        let client = self.client.clone();
        tokio::spawn(async move {
            match client.post(&url).json(&alert).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(%url, status = %r.status(), "alert webhook refused the alert")
                }
                Err(e) => tracing::warn!(%url, error = %e, "alert webhook unreachable"),
            }
        });
    }
}
