//! Alerts: a task's final failure and a sensor's timeout go to the log and to a webhook.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::SchedulerConfig;
use crate::store::Claimed;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Alert {
    /// `task_failed` or `sensor_timeout`.
    pub event: &'static str,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub team: String,
    pub ds: String,
    pub try_number: i64,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_path: Option<String>,
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
