//! Publishing online/offline consistency figures (issue 13): Prometheus gauges from the store,
//! the API's source of a Join's figures, and (with the engine) the publisher that runs after
//! `consistency-metrics-compute`: it reads the day's figures back from the warehouse, records
//! them as the Join's gauges in the store and alerts through the team's webhook when a figure
//! crosses its threshold (`[consistency]` in `chronoflow.toml`).
//!
//! The gauges live in the store, not in a process's memory: every process serving `/metrics`
//! (a `scheduler --listen` beside separate workers, or `standalone`) shows every Join's newest
//! figures, and a restart loses nothing.

use std::fmt::Write;

use futures::future::BoxFuture;

use crate::error::Result;
use crate::store::ConsistencyGauges;

/// Where the API reads a Join's figures (the warehouse, through the engine).
pub trait ConsistencySource: Send + Sync {
    /// The figures of `join` from `start_ds` to `end_ds` (defaults: the newest day with figures
    /// and the 6 days before it), as the `consistency` command's `--format json` prints them.
    fn report<'a>(
        &'a self,
        join: &'a str,
        start_ds: Option<&'a str>,
        end_ds: Option<&'a str>,
    ) -> BoxFuture<'a, Result<serde_json::Value>>;
}

/// Appends the consistency gauges of every Join.
pub fn render_gauges(out: &mut String, gauges: &[ConsistencyGauges]) {
    family(
        out,
        "chronoflow_consistency_day",
        "The day (epoch seconds, midnight UTC) the Join's published consistency figures are of.",
    );
    for g in gauges {
        if let Ok(day) = chronoflow_config::PartitionDate::parse(&g.ds) {
            let _ = writeln!(
                out,
                "chronoflow_consistency_day{{join=\"{}\"}} {}",
                label(&g.join),
                day.epoch_millis() / 1000
            );
        }
    }
    family(
        out,
        "chronoflow_consistency_rows",
        "Logged fetches of the day the Join's consistency figures are of.",
    );
    for g in gauges {
        let _ = writeln!(
            out,
            "chronoflow_consistency_rows{{join=\"{}\"}} {}",
            label(&g.join),
            g.rows
        );
    }
    family(
        out,
        "chronoflow_consistency_rate",
        "Share of the day's logged fetches whose served value equals the backfill's, per feature (__overall__: rows with every feature consistent).",
    );
    for g in gauges {
        for f in &g.features {
            let _ = writeln!(
                out,
                "chronoflow_consistency_rate{{join=\"{}\",feature=\"{}\"}} {}",
                label(&g.join),
                label(&f.feature),
                f.rate
            );
        }
    }
    family(
        out,
        "chronoflow_consistency_mismatches",
        "Logged fetches of the day whose served and backfilled values differ, per feature (__overall__: rows with any inconsistent feature).",
    );
    for g in gauges {
        for f in &g.features {
            let _ = writeln!(
                out,
                "chronoflow_consistency_mismatches{{join=\"{}\",feature=\"{}\"}} {}",
                label(&g.join),
                label(&f.feature),
                f.mismatches
            );
        }
    }
    family(
        out,
        "chronoflow_feature_psi",
        "Population stability index of a feature's day against the trailing week, per side (online, offline).",
    );
    for g in gauges {
        for p in &g.psi {
            let _ = writeln!(
                out,
                "chronoflow_feature_psi{{join=\"{}\",feature=\"{}\",side=\"{}\"}} {}",
                label(&g.join),
                label(&p.feature),
                label(&p.side),
                p.psi
            );
        }
    }
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// A label value as the exposition format wants it: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(feature = "engine")]
mod publish;
#[cfg(feature = "engine")]
pub use publish::{ConsistencyPublisher, WarehouseConsistency, join_report};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FeatureGauge, PsiGauge};

    #[test]
    fn gauges_render_per_join_feature_and_side() {
        let g = ConsistencyGauges {
            join: "team.j\"1".to_owned(),
            team: "team".to_owned(),
            ds: "2023-11-30".to_owned(),
            rows: 10,
            features: vec![
                FeatureGauge {
                    feature: "__overall__".to_owned(),
                    rate: 0.5,
                    mismatches: 5,
                },
                FeatureGauge {
                    feature: "f".to_owned(),
                    rate: 0.9,
                    mismatches: 1,
                },
            ],
            psi: vec![PsiGauge {
                feature: "f".to_owned(),
                side: "online".to_owned(),
                psi: 0.25,
            }],
        };
        let mut out = String::new();
        render_gauges(&mut out, &[g]);
        for line in [
            "chronoflow_consistency_day{join=\"team.j\\\"1\"} 1701302400",
            "chronoflow_consistency_rate{join=\"team.j\\\"1\",feature=\"__overall__\"} 0.5",
            "chronoflow_consistency_mismatches{join=\"team.j\\\"1\",feature=\"f\"} 1",
            "chronoflow_feature_psi{join=\"team.j\\\"1\",feature=\"f\",side=\"online\"} 0.25",
            "chronoflow_consistency_rows{join=\"team.j\\\"1\"} 10",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in:\n{out}");
        }
    }
}
