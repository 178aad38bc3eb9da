//! The DAG registry: versions from re-planning, pause flags, the last plan's status.

use serde::Serialize;
use sqlx::any::AnyRow;

use super::Store;
use super::row::Stored;
use super::transact;
use crate::error::{Result, SchedulerError};
use crate::spec::DagSpec;
use sqlx::AssertSqlSafe;

#[derive(Debug, Clone, Serialize)]
pub struct DagRow {
    pub dag_id: String,
    pub version: i64,
    pub team: String,
    pub paused: bool,
    pub removed: bool,
    pub last_logical_ms: Option<i64>,
}

/// What a re-planning changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// Specs that were not applied, with why (the previous version, if any, stays).
    pub rejected: Vec<(String, String)>,
    /// Streaming jobs no current spec runs any more: their rows are deleted, so the workers
    /// supervising them stop them.
    pub streams_removed: Vec<String>,
    /// Joins whose consistency figures no current spec computes any more: their gauges are
    /// deleted, so `/metrics` stops showing them.
    pub gauges_removed: Vec<String>,
}

fn dag_row(r: &AnyRow) -> Result<DagRow> {
    let r = Stored::new("dags", r);
    Ok(DagRow {
        dag_id: r.get("dag_id")?,
        version: r.get("version")?,
        team: r.get("team")?,
        paused: r.flag("paused")?,
        removed: r.flag("removed")?,
        last_logical_ms: r.get("last_logical_ms")?,
    })
}

impl Store {
    /// Makes the registry match `specs`: new DAGs are added (unpaused), changed ones get a new
    /// version (runs already started keep theirs), DAGs no longer planned are marked removed
    /// (their history stays). Invalid specs are rejected, keeping their previous version.
    pub async fn sync_dags(&self, specs: &[DagSpec], now: i64) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let mut valid = Vec::with_capacity(specs.len());
        for spec in specs {
            match spec.timetable.validate().and_then(|()| spec.validate()) {
                Ok(()) => valid.push((spec, spec.content_hash())),
                Err(message) => report.rejected.push((spec.dag_id.clone(), message)),
            }
        }
        let rejected: std::collections::BTreeSet<String> =
            report.rejected.iter().map(|(d, _)| d.clone()).collect();
        let report = transact!(self, "syncing DAGs", c, {
            let valid = &valid;
            let rejected = &rejected;
            let mut report = report.clone();

            let current = sqlx::query(
                        "SELECT d.dag_id, d.version, d.removed, v.spec_hash FROM dags d JOIN dag_versions v ON v.dag_id = d.dag_id AND v.version = d.version",
                    )
                    .fetch_all(&mut *c)
                    .await
                    .map_err(SchedulerError::db("reading DAGs"))?;
            let mut known: std::collections::BTreeMap<String, (i64, bool, String)> = current
                .iter()
                .map(|r| {
                    let r = Stored::new("dags", r);
                    Ok((
                        r.get("dag_id")?,
                        (r.get("version")?, r.flag("removed")?, r.get("spec_hash")?),
                    ))
                })
                .collect::<Result<_>>()?;
            for (spec, hash) in valid {
                let team = spec.team.clone().unwrap_or_default();
                match known.remove(&spec.dag_id) {
                    Some((version, removed, old_hash)) => {
                        if &old_hash == hash && !removed {
                            report.unchanged += 1;
                            continue;
                        }
                        let version = if &old_hash == hash {
                            version
                        } else {
                            insert_version(c, spec, version + 1, hash, now).await?;
                            version + 1
                        };
                        sqlx::query(
                                    "UPDATE dags SET version = $1, team = $2, removed = 0, updated_ms = $3 WHERE dag_id = $4",
                                )
                                .bind(version)
                                .bind(&team)
                                .bind(now)
                                .bind(&spec.dag_id)
                                .execute(&mut *c)
                                .await
                                .map_err(SchedulerError::db("updating a DAG"))?;
                        report.changed.push(spec.dag_id.clone());
                    }
                    None => {
                        insert_version(c, spec, 1, hash, now).await?;
                        sqlx::query(
                                    "INSERT INTO dags (dag_id, version, team, paused, removed, last_logical_ms, updated_ms) VALUES ($1, 1, $2, 0, 0, NULL, $3)",
                                )
                                .bind(&spec.dag_id)
                                .bind(&team)
                                .bind(now)
                                .execute(&mut *c)
                                .await
                                .map_err(SchedulerError::db("adding a DAG"))?;
                        report.added.push(spec.dag_id.clone());
                    }
                }
            }
            // A rejected spec leaves its DAG at the previous version, whose streams stay.
            let mut kept_specs = Vec::new();
            for (dag_id, (version, removed, _)) in &known {
                if !removed && rejected.contains(dag_id) {
                    kept_specs.push(self.spec_in(c, dag_id, *version).await?);
                }
            }
            let current = || {
                valid
                    .iter()
                    .map(|(spec, _)| *spec)
                    .chain(kept_specs.iter().map(|s| &**s))
            };
            let keep: std::collections::BTreeSet<&str> = current()
                .flat_map(super::streams::streaming_jobs_of)
                .collect();
            report.streams_removed = super::streams::prune_streams(c, &keep).await?;
            let joins: std::collections::BTreeSet<&str> = current()
                .flat_map(super::consistency::consistency_joins_of)
                .collect();
            report.gauges_removed = super::consistency::prune_gauges(c, &joins).await?;
            for (dag_id, (_, removed, _)) in known {
                if removed || rejected.contains(&dag_id) {
                    continue;
                }
                sqlx::query("UPDATE dags SET removed = 1, updated_ms = $1 WHERE dag_id = $2")
                    .bind(now)
                    .bind(&dag_id)
                    .execute(&mut *c)
                    .await
                    .map_err(SchedulerError::db("removing a DAG"))?;
                report.removed.push(dag_id);
            }
            Ok(report)
        })?;
        Ok(report)
    }

    pub async fn dags(&self) -> Result<Vec<DagRow>> {
        self.dags_each().await?.into_iter().collect()
    }

    /// Every DAG, each read on its own: a row that cannot be read does not hide the others.
    pub(crate) async fn dags_each(&self) -> Result<Vec<Result<DagRow>>> {
        let rows = sqlx::query("SELECT * FROM dags ORDER BY dag_id")
            .fetch_all(&self.pool)
            .await
            .map_err(SchedulerError::db("listing DAGs"))?;
        Ok(rows.iter().map(dag_row).collect())
    }

    pub async fn dag(&self, dag_id: &str) -> Result<DagRow> {
        let row = sqlx::query("SELECT * FROM dags WHERE dag_id = $1")
            .bind(dag_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(SchedulerError::db("reading a DAG"))?
            .ok_or_else(|| SchedulerError::UnknownDag(dag_id.to_owned()))?;
        dag_row(&row)
    }

    /// The current spec of `dag_id`.
    pub async fn current_spec(&self, dag_id: &str) -> Result<std::sync::Arc<DagSpec>> {
        let dag = self.dag(dag_id).await?;
        self.spec(dag_id, dag.version).await
    }

    pub async fn set_paused(&self, dag_id: &str, paused: bool, now: i64) -> Result<()> {
        let done = sqlx::query("UPDATE dags SET paused = $1, updated_ms = $2 WHERE dag_id = $3")
            .bind(i64::from(paused))
            .bind(now)
            .bind(dag_id)
            .execute(&self.pool)
            .await
            .map_err(SchedulerError::db("pausing a DAG"))?;
        if done.rows_affected() == 0 {
            return Err(SchedulerError::UnknownDag(dag_id.to_owned()));
        }
        Ok(())
    }

    /// Records how the last re-planning went (shown by the API and `dags list`).
    pub async fn set_plan_status(
        &self,
        ok: bool,
        message: &str,
        dags: usize,
        now: i64,
    ) -> Result<()> {
        transact!(self, "recording the plan status", c, {
            let message = message.to_owned();

            sqlx::query("DELETE FROM plan_status WHERE id = 1")
                .execute(&mut *c)
                .await
                .map_err(SchedulerError::db("recording the plan status"))?;
            sqlx::query(
                    "INSERT INTO plan_status (id, ok, message, dags, updated_ms) VALUES (1, $1, $2, $3, $4)",
                )
                .bind(i64::from(ok))
                .bind(message)
                .bind(dags as i64)
                .bind(now)
                .execute(&mut *c)
                .await
                .map_err(SchedulerError::db("recording the plan status"))?;
            Ok(())
        })
    }

    /// `(ok, message, updated_ms)` of the last re-planning, if any.
    pub async fn plan_status(&self) -> Result<Option<(bool, String, i64)>> {
        let row = sqlx::query("SELECT ok, message, updated_ms FROM plan_status WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(SchedulerError::db("reading the plan status"))?;
        row.map(|r| {
            let r = Stored::new("plan_status", &r);
            Ok((r.flag("ok")?, r.get("message")?, r.get("updated_ms")?))
        })
        .transpose()
    }

    /// The content hashes of the last successful metadata uploads of `jobs`.
    pub async fn uploaded_hashes(
        &self,
        jobs: &[String],
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let mut out = std::collections::BTreeMap::new();
        for chunk in jobs.chunks(500) {
            let sql = format!(
                "SELECT job_id, content_hash FROM metadata_uploads WHERE job_id IN ({})",
                super::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
            for j in chunk {
                q = q.bind(j);
            }
            for r in q
                .fetch_all(&self.pool)
                .await
                .map_err(SchedulerError::db("reading metadata uploads"))?
            {
                let r = Stored::new("metadata_uploads", &r);
                out.insert(r.get("job_id")?, r.get("content_hash")?);
            }
        }
        Ok(out)
    }

    pub async fn record_upload(&self, job_id: &str, content_hash: &str, now: i64) -> Result<()> {
        transact!(self, "recording a metadata upload", c, {
            let (job_id, content_hash) = (job_id.to_owned(), content_hash.to_owned());

            sqlx::query("DELETE FROM metadata_uploads WHERE job_id = $1")
                .bind(&job_id)
                .execute(&mut *c)
                .await
                .map_err(SchedulerError::db("recording a metadata upload"))?;
            sqlx::query(
                    "INSERT INTO metadata_uploads (job_id, content_hash, uploaded_ms) VALUES ($1, $2, $3)",
                )
                .bind(job_id)
                .bind(content_hash)
                .bind(now)
                .execute(&mut *c)
                .await
                .map_err(SchedulerError::db("recording a metadata upload"))?;
            Ok(())
        })
    }
}

async fn insert_version(
    c: &mut sqlx::AnyConnection,
    spec: &DagSpec,
    version: i64,
    hash: &str,
    now: i64,
) -> Result<()> {
    let json = serde_json::to_string(spec).expect("specs serialize");
    sqlx::query(
        "INSERT INTO dag_versions (dag_id, version, spec_hash, spec, created_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&spec.dag_id)
    .bind(version)
    .bind(hash)
    .bind(json)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(SchedulerError::db("storing a DAG version"))?;
    Ok(())
}
