//! Scheduler configuration (`chronoflow.toml`): executors, per-team and per-DAG settings, alerts.
//!
//! Everything has a default, so a repo without the file runs on the in-process executor.

use std::collections::BTreeMap;
use std::path::Path;

use chronoflow_plan::profile::Profiles;
use serde::Deserialize;

use crate::error::{Result, SchedulerError};

/// The executor every team uses unless configured otherwise: the engine, in the worker process.
pub const IN_PROCESS: &str = "in_process";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// How often a worker reports that its running tasks are alive.
    pub heartbeat_interval_seconds: u64,
    /// A running task whose worker has not reported for this long is failed (and retried).
    pub heartbeat_timeout_seconds: u64,
    /// The cap of the exponential retry backoff.
    pub retry_max_delay_seconds: u64,
    /// The environment whose per-mode variables jobs get (`production`, `dev`, ...), as in
    /// Chronon's teams.json.
    pub environment: String,
    /// The executor of teams not listed in `teams`.
    pub default_executor: String,
    /// Named executors besides the built-in `in_process`.
    pub executors: BTreeMap<String, ExecutorConfig>,
    /// Where final failures and sensor timeouts are posted, unless a team sets its own.
    pub alert_webhook: Option<String>,
    pub teams: BTreeMap<String, TeamConfig>,
    pub dags: BTreeMap<String, DagOverride>,
    /// Keyed by `<dag_id>.<task_id>`.
    pub tasks: BTreeMap<String, TaskOverride>,
    /// How workers keep streaming jobs alive (`[streaming]`).
    pub streaming: StreamingConfig,
    /// Resource profiles (`[profiles]`): named CPU/memory/cluster/pool/queue sets chosen per
    /// mode, per team and per config tag; see `chronoflow_plan::profile`.
    pub profiles: Profiles,
    /// When online/offline consistency and drift figures raise an alert (`[consistency]`).
    pub consistency: ConsistencyConfig,
    /// Table formats (`[warehouse]`): Delta Lake or Parquet by others, per table or for every
    /// new table. Kept as written: the warehouse reads it
    /// (`chronoflow_engine::warehouse::TableFormats`), and checks it when it opens.
    pub warehouse: toml::Table,
}

/// `[consistency]`: the thresholds the OOC DAG's figures are checked against, with overrides
/// per team (`[consistency.teams.<team>]`) and per Join (`[consistency.joins."<join name>"]`);
/// a Join's setting wins over its team's, which wins over the default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsistencyConfig {
    /// A consistency rate (overall or a feature's) below this alerts.
    pub min_rate: f64,
    /// A feature's population stability index above this alerts.
    pub max_psi: f64,
    pub teams: BTreeMap<String, ThresholdOverride>,
    /// Keyed by the Join's name as written in configs (`team.name.v1`).
    pub joins: BTreeMap<String, ThresholdOverride>,
}

impl Default for ConsistencyConfig {
    fn default() -> Self {
        ConsistencyConfig {
            min_rate: 0.99,
            max_psi: 0.2,
            teams: BTreeMap::new(),
            joins: BTreeMap::new(),
        }
    }
}

/// A team's or a Join's thresholds; what is unset comes from the level above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdOverride {
    pub min_rate: Option<f64>,
    pub max_psi: Option<f64>,
}

/// The thresholds in force for one Join.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsistencyThresholds {
    pub min_rate: f64,
    pub max_psi: f64,
}

impl ConsistencyConfig {
    /// The thresholds of Join `join` of team `team`: the Join's, else the team's, else the
    /// default, each value on its own.
    pub fn thresholds(&self, team: &str, join: &str) -> ConsistencyThresholds {
        let join = self.joins.get(join);
        let team = self.teams.get(team);
        let pick = |f: fn(&ThresholdOverride) -> Option<f64>, default: f64| {
            join.and_then(f)
                .or_else(|| team.and_then(f))
                .unwrap_or(default)
        };
        ConsistencyThresholds {
            min_rate: pick(|o| o.min_rate, self.min_rate),
            max_psi: pick(|o| o.max_psi, self.max_psi),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let levels = std::iter::once((
            "consistency".to_owned(),
            Some(self.min_rate),
            Some(self.max_psi),
        ))
        .chain(
            self.teams
                .iter()
                .map(|(t, o)| (format!("consistency.teams.{t}"), o.min_rate, o.max_psi)),
        )
        .chain(
            self.joins
                .iter()
                .map(|(j, o)| (format!("consistency.joins.\"{j}\""), o.min_rate, o.max_psi)),
        );
        for (at, min_rate, max_psi) in levels {
            if let Some(r) = min_rate
                && !(0.0..=1.0).contains(&r)
            {
                return Err(format!("{at}.min_rate {r} must be between 0 and 1"));
            }
            if let Some(p) = max_psi
                && !(p >= 0.0 && p.is_finite())
            {
                return Err(format!("{at}.max_psi {p} must be a number of 0 or more"));
            }
        }
        Ok(())
    }
}

/// `[streaming]`: the long-running consumers a worker supervises for teams on the in-process
/// executor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// The Kafka bootstrap servers (`host:port,...`) given to every consumer; unset, the
    /// consumer uses its own default (the topic's `bootstrap` in the config, if any).
    pub kafka_brokers: Option<String>,
    /// The cap of the restart backoff (1 s, doubling per consecutive crash).
    pub backoff_max_seconds: u64,
    /// Consecutive crashes after which one alert is sent (and one more when it recovers).
    pub alert_after_crashes: u32,
    /// How long a stopped consumer gets after SIGTERM before it is killed.
    pub stop_grace_seconds: u64,
    /// How long the broker may hold a consumer's fetch open (`--fetch-max-wait-ms`); unset, the
    /// consumer's default. Brokers that always wait this long (tansu) add it to freshness.
    pub fetch_max_wait_ms: Option<u64>,
    /// The most bytes a consumer fetches from one partition per request (`--max-fetch-bytes`,
    /// 1024 or more); unset, the consumer's default.
    pub max_fetch_bytes: Option<i32>,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            kafka_brokers: None,
            backoff_max_seconds: 60,
            alert_after_crashes: 5,
            stop_grace_seconds: 10,
            fetch_max_wait_ms: None,
            max_fetch_bytes: None,
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            heartbeat_interval_seconds: 5,
            heartbeat_timeout_seconds: 60,
            retry_max_delay_seconds: 3600,
            environment: "production".to_owned(),
            default_executor: IN_PROCESS.to_owned(),
            executors: BTreeMap::new(),
            alert_webhook: None,
            teams: BTreeMap::new(),
            dags: BTreeMap::new(),
            tasks: BTreeMap::new(),
            streaming: StreamingConfig::default(),
            profiles: Profiles::default(),
            consistency: ConsistencyConfig::default(),
            warehouse: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecutorConfig {
    /// Runs the engine's jobs in the worker process.
    InProcess,
    /// Runs a program per task. Each element of `argv` is one argument; `{mode}`, `{conf}`,
    /// `{ds}`, `{start_ds}`, `{end_ds}`, `{config}`, `{team}`, `{dag_id}`, `{task_id}`,
    /// `{run_id}`, `{try_number}` and the profile's `{profile.name}`, `{profile.cpu}`,
    /// `{profile.memory}`, `{profile.cluster}`, `{profile.pool}`, `{profile.queue}` are replaced
    /// inside elements and `env` values (never through a shell).
    Command {
        argv: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
    /// Does nothing (benchmarks and tests of the scheduler itself).
    Noop {
        #[serde(default)]
        sleep_ms: u64,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeamConfig {
    pub executor: Option<String>,
    /// Task instances of this team running (or queued) at once, over all DAGs.
    pub concurrency: Option<u32>,
    pub alert_webhook: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DagOverride {
    pub retries: Option<u32>,
    pub retry_delay_seconds: Option<u64>,
    pub execution_timeout_seconds: Option<u64>,
    pub concurrency: Option<u32>,
    pub max_active_runs: Option<u32>,
    pub catchup: Option<bool>,
    /// The first logical date catch-up creates runs from (`yyyy-MM-dd`).
    pub start_date: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TaskOverride {
    pub retries: Option<u32>,
    pub retry_delay_seconds: Option<u64>,
    pub execution_timeout_seconds: Option<u64>,
}

impl SchedulerConfig {
    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<SchedulerConfig> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SchedulerConfig::default());
            }
            Err(e) => {
                return Err(SchedulerError::Config {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        SchedulerConfig::parse(&text).map_err(|message| SchedulerError::Config {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<SchedulerConfig, String> {
        let config: SchedulerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let known = |name: &str| name == IN_PROCESS || self.executors.contains_key(name);
        if !known(&self.default_executor) {
            return Err(format!(
                "default_executor {:?} is not a configured executor",
                self.default_executor
            ));
        }
        for (team, t) in &self.teams {
            if let Some(e) = &t.executor
                && !known(e)
            {
                return Err(format!(
                    "teams.{team}.executor {e:?} is not a configured executor"
                ));
            }
        }
        for (name, e) in &self.executors {
            if let ExecutorConfig::Command { argv, .. } = e
                && argv.is_empty()
            {
                return Err(format!("executors.{name}.argv is empty"));
            }
        }
        if self.heartbeat_timeout_seconds <= self.heartbeat_interval_seconds {
            return Err("heartbeat_timeout_seconds must exceed heartbeat_interval_seconds".into());
        }
        if let Some(bytes) = self.streaming.max_fetch_bytes
            && bytes < 1024
        {
            return Err(format!(
                "streaming.max_fetch_bytes must be 1024 or more, not {bytes}"
            ));
        }
        if self.streaming.backoff_max_seconds == 0 {
            return Err("streaming.backoff_max_seconds must be 1 or more".into());
        }
        if self.streaming.alert_after_crashes == 0 {
            return Err("streaming.alert_after_crashes must be 1 or more".into());
        }
        self.profiles.validate().map_err(|e| e.to_string())?;
        self.consistency.validate()?;
        for (dag, o) in &self.dags {
            if let Some(d) = &o.start_date {
                chronoflow_config::PartitionDate::parse(d)
                    .map_err(|e| format!("dags.{dag}.start_date: {e}"))?;
            }
        }
        Ok(())
    }

    /// The executor name of `team`.
    pub fn executor_of(&self, team: &str) -> &str {
        self.teams
            .get(team)
            .and_then(|t| t.executor.as_deref())
            .unwrap_or(&self.default_executor)
    }

    /// Whether `team`'s jobs run in the worker process (so its streaming jobs are supervised
    /// by the worker rather than started as detached commands).
    pub fn runs_in_process(&self, team: &str) -> bool {
        let name = self.executor_of(team);
        name == IN_PROCESS
            || matches!(
                self.executors.get(name),
                Some(ExecutorConfig::InProcess) | None
            )
    }

    pub fn alert_webhook_of(&self, team: &str) -> Option<&str> {
        self.teams
            .get(team)
            .and_then(|t| t.alert_webhook.as_deref())
            .or(self.alert_webhook.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_executors_teams_and_overrides() {
        let c = SchedulerConfig::parse(
            r#"
            default_executor = "cluster"
            [executors.cluster]
            kind = "command"
            argv = ["zipline", "run", "--mode", "{mode}", "--conf", "{conf}", "--ds", "{ds}"]
            [teams.quickstart]
            executor = "in_process"
            concurrency = 4
            [dags.chronon_join_quickstart]
            retries = 3
            [tasks."chronon_join_quickstart.x__backfill"]
            execution_timeout_seconds = 60
            "#,
        )
        .unwrap();
        assert_eq!(c.executor_of("quickstart"), IN_PROCESS);
        assert_eq!(c.executor_of("other"), "cluster");
        assert_eq!(c.dags["chronon_join_quickstart"].retries, Some(3));
    }

    #[test]
    fn streaming_section_has_defaults_and_is_checked() {
        let c = SchedulerConfig::parse("").unwrap();
        assert_eq!(c.streaming, StreamingConfig::default());
        assert!(c.runs_in_process("any"));
        let c = SchedulerConfig::parse(
            "[streaming]\nkafka_brokers = \"k1:9092,k2:9092\"\nbackoff_max_seconds = 30\nalert_after_crashes = 3\nstop_grace_seconds = 2\n",
        )
        .unwrap();
        assert_eq!(
            c.streaming.kafka_brokers.as_deref(),
            Some("k1:9092,k2:9092")
        );
        assert_eq!(
            (
                c.streaming.backoff_max_seconds,
                c.streaming.alert_after_crashes
            ),
            (30, 3)
        );
        let c = SchedulerConfig::parse(
            "[streaming]\nfetch_max_wait_ms = 20\nmax_fetch_bytes = 4194304",
        )
        .unwrap();
        assert_eq!(
            (c.streaming.fetch_max_wait_ms, c.streaming.max_fetch_bytes),
            (Some(20), Some(4 << 20))
        );
        let err = SchedulerConfig::parse("[streaming]\nmax_fetch_bytes = 100").unwrap_err();
        assert!(
            err.contains("max_fetch_bytes") && err.contains("100"),
            "{err}"
        );
        let err = SchedulerConfig::parse("[streaming]\nalert_after_crashes = 0").unwrap_err();
        assert!(err.contains("alert_after_crashes"), "{err}");
        let err = SchedulerConfig::parse("[streaming]\nbrokers = \"x\"").unwrap_err();
        assert!(err.contains("brokers"), "{err}");
        let c = SchedulerConfig::parse(
            "default_executor = \"c\"\n[executors.c]\nkind = \"command\"\nargv = [\"x\"]\n[executors.e]\nkind = \"in_process\"\n[teams.t]\nexecutor = \"e\"\n",
        )
        .unwrap();
        assert!(!c.runs_in_process("other"));
        assert!(c.runs_in_process("t"));
    }

    #[test]
    fn consistency_thresholds_resolve_join_over_team_over_default() {
        let c = SchedulerConfig::parse("").unwrap();
        assert_eq!(
            c.consistency.thresholds("t", "t.j.v1"),
            ConsistencyThresholds {
                min_rate: 0.99,
                max_psi: 0.2
            }
        );
        let c = SchedulerConfig::parse(
            "[consistency]\nmin_rate = 0.95\n[consistency.teams.t]\nmin_rate = 0.9\nmax_psi = 0.3\n[consistency.joins.\"t.j.v1\"]\nmin_rate = 0.5\n",
        )
        .unwrap();
        let t = &c.consistency;
        assert_eq!(
            t.thresholds("t", "t.j.v1"),
            ConsistencyThresholds {
                min_rate: 0.5,
                max_psi: 0.3
            }
        );
        assert_eq!(
            t.thresholds("t", "t.other.v1"),
            ConsistencyThresholds {
                min_rate: 0.9,
                max_psi: 0.3
            }
        );
        assert_eq!(
            t.thresholds("u", "u.j.v1"),
            ConsistencyThresholds {
                min_rate: 0.95,
                max_psi: 0.2
            }
        );
        let err =
            SchedulerConfig::parse("[consistency.joins.\"t.j.v1\"]\nmin_rate = 2.0").unwrap_err();
        assert!(
            err.contains("consistency.joins.\"t.j.v1\".min_rate 2"),
            "{err}"
        );
        let err = SchedulerConfig::parse("[consistency]\nmin_ratio = 0.5").unwrap_err();
        assert!(err.contains("min_ratio"), "{err}");
        let err = SchedulerConfig::parse("[consistency.teams.t]\nmax_psi = -1.0").unwrap_err();
        assert!(err.contains("consistency.teams.t.max_psi"), "{err}");
    }

    #[test]
    fn unknown_executor_is_named() {
        let err = SchedulerConfig::parse("[teams.a]\nexecutor = \"spark\"").unwrap_err();
        assert!(err.contains("teams.a.executor \"spark\""), "{err}");
        let err = SchedulerConfig::parse("retries = 2").unwrap_err();
        assert!(err.contains("retries"), "{err}");
    }
}
