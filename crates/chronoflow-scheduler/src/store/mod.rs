//! The durable state store: SQLite (embedded, the default) or PostgreSQL, through `sqlx`.
//!
//! Every state change is one transaction. Task instances are claimed with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serializes writers (`BEGIN IMMEDIATE`), so the
//! same statements are safe there. Within a transaction locks are taken in one order, run then
//! task instances then DAG, so concurrent schedulers and workers cannot deadlock each other.

mod consistency;
mod dags;
mod row;
mod runs;
mod streams;
mod tasks;
mod tokens;
mod views;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Row};

use row::Stored;
use tokio::sync::Notify;

pub use consistency::{ConsistencyGauges, FeatureGauge, PsiGauge};
pub use dags::{DagRow, SyncReport};
pub use runs::{RUN_STATES, RunRow, RunTrigger};
pub use streams::{StreamUpdate, StreamingJob};
pub use tasks::{Claimed, FinishOutcome, TaskInstanceRow, TaskTryRow};
pub use tokens::{ALL_TEAMS, Role, Session, TokenRow};
pub use views::{ActiveTask, RunCells, RunMark, TryUsage};

use crate::error::{Result, SchedulerError};
use crate::spec::DagSpec;

/// Runs `$body` (a block using `$c: &mut AnyConnection`) in one transaction, retrying it on
/// lock conflicts (SQLite busy, PostgreSQL deadlock or serialization failure). A macro rather
/// than a closure so the body borrows freely from the caller.
macro_rules! transact {
    ($store:expr, $context:expr, $c:ident, $body:block) => {{
        let store: &$crate::store::Store = $store;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut conn = store.begin_tx($context).await?;
            let result: $crate::error::Result<_> = {
                let $c: &mut sqlx::AnyConnection = &mut *conn;
                async { $body }.await
            };
            match store.end_tx(conn, result, $context).await {
                Err(e) if attempt < 20 && $crate::store::is_conflict(&e) => {
                    tokio::time::sleep(std::time::Duration::from_millis(2 * u64::from(attempt)))
                        .await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use transact;

/// Which database the store talks to; the few statements that differ ask this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The schema as steps: step `i` takes a store from version `i` to `i + 1`. A step is never
/// edited once released (stores out there are at its version); a change is a new step.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    include_str!("schema.sql"),
    // 2: try resources, UI tokens and sessions, an index for recent failures.
    include_str!("schema_v2.sql"),
    // 3: what the supervisor of each stream last saw.
    include_str!("schema_v3.sql"),
    // 4: the newest consistency figures of each Join (the gauges of /metrics).
    include_str!("schema_v4.sql"),
];
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    url: String,
    specs: Mutex<HashMap<(String, i64), Arc<DagSpec>>>,
    /// Task instances of a team queued or running at once (from the configuration).
    team_limits: RwLock<BTreeMap<String, u32>>,
    /// Woken after a commit that queued tasks, so idle workers in this process claim them at
    /// once instead of at their next poll.
    pub work_available: Notify,
    /// The unreadable stored values already logged (see [`Store::skip_corrupt`]).
    corrupt_logged: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

/// Every SQLite connection's setup. WAL lets readers run beside the one writer; NORMAL syncs at
/// checkpoints (a process crash loses nothing, a power cut at most the last commits).
const SQLITE_PRAGMAS: [&str; 4] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
];

impl Store {
    /// Opens (and creates or migrates) the store at `url`: `sqlite://<path>` or
    /// `postgres://...`.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(SchedulerError::Schema(format!(
                "unsupported database URL {url:?}: use sqlite://<path> or postgres://..."
            )));
        };
        let connect_err = |cause| SchedulerError::Connect {
            url: redact(url),
            cause,
        };
        let mut full_url = url.to_owned();
        if dialect == Dialect::Sqlite && !url.contains("mode=") {
            full_url.push_str(if url.contains('?') { "&" } else { "?" });
            full_url.push_str("mode=rwc");
        }
        let options = AnyConnectOptions::from_str(&full_url).map_err(connect_err)?;
        // SQLite has one writer: a single connection queues this process's transactions fairly
        // instead of having them spin on the file lock. (Other processes still wait on
        // `busy_timeout`.)
        let max = match dialect {
            Dialect::Sqlite => 1,
            Dialect::Postgres => 10,
        };
        if dialect == Dialect::Sqlite {
            // The pool retries a connection whose setup fails until its acquire timeout: a file
            // that is not a SQLite database took 30 s of logged retries and ended in "pool timed
            // out". One connection set up first fails at once, with SQLite's own reason.
            let mut conn = <AnyConnection as sqlx::Connection>::connect_with(&options)
                .await
                .map_err(connect_err)?;
            for pragma in SQLITE_PRAGMAS {
                sqlx::query(pragma)
                    .execute(&mut conn)
                    .await
                    .map_err(connect_err)?;
            }
            let _ = sqlx::Connection::close(conn).await;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        for pragma in SQLITE_PRAGMAS {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        let store = Store {
            pool,
            dialect,
            url: redact(url),
            specs: Mutex::new(HashMap::new()),
            team_limits: RwLock::new(BTreeMap::new()),
            work_available: Notify::new(),
            corrupt_logged: Mutex::new(HashSet::new()),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The embedded default: a SQLite file.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Store> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Store::open(&format!("sqlite://{}", path.display())).await
    }

    pub fn set_team_limits(&self, limits: BTreeMap<String, u32>) {
        *self
            .team_limits
            .write()
            .unwrap_or_else(PoisonError::into_inner) = limits;
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(SchedulerError::db("connecting"))?;
        // Two processes starting at once must not both create the schema.
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_lock(7235001)")
                .execute(&mut *conn)
                .await
                .map_err(SchedulerError::db("locking for migration"))?;
        }
        let result = self.migrate_locked(&mut conn).await;
        if self.dialect == Dialect::Postgres {
            let _ = sqlx::query("SELECT pg_advisory_unlock(7235001)")
                .execute(&mut *conn)
                .await;
        }
        result
    }

    async fn migrate_locked(&self, conn: &mut AnyConnection) -> Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS chronoflow_schema (version BIGINT NOT NULL, applied_ms BIGINT NOT NULL)",
        )
        .execute(&mut *conn)
        .await
        .map_err(SchedulerError::db("creating the schema table"))?;
        let begin = match self.dialect {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        };
        sqlx::query(begin)
            .execute(&mut *conn)
            .await
            .map_err(SchedulerError::db("migrating"))?;
        // Read inside the transaction: on SQLite the write lock it holds is what keeps two
        // processes from applying the same step twice (PostgreSQL has the advisory lock too).
        let applied = apply_migrations(conn).await;
        match applied {
            Ok(()) => sqlx::query("COMMIT")
                .execute(&mut *conn)
                .await
                .map(|_| ())
                .map_err(SchedulerError::db("committing the migration")),
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e)
            }
        }
    }

    /// Starts a transaction (`BEGIN IMMEDIATE` on SQLite: take the write lock up front, so
    /// two writers never deadlock upgrading a read lock).
    pub(crate) async fn begin_tx(&self, context: &'static str) -> Result<PoolConnection<Any>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(SchedulerError::db(context))?;
        let begin = match self.dialect {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        };
        sqlx::query(begin)
            .execute(&mut *conn)
            .await
            .map_err(SchedulerError::db(context))?;
        Ok(conn)
    }

    /// Commits when `result` is `Ok`, else rolls back; returns `result` (or the commit error).
    pub(crate) async fn end_tx<T>(
        &self,
        mut conn: PoolConnection<Any>,
        result: Result<T>,
        context: &'static str,
    ) -> Result<T> {
        match result {
            Ok(value) => {
                sqlx::query("COMMIT")
                    .execute(&mut *conn)
                    .await
                    .map_err(SchedulerError::db(context))?;
                Ok(value)
            }
            Err(e) => {
                // A failed rollback means a broken connection: drop it rather than reuse it.
                if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                    conn.close_on_drop();
                }
                Err(e)
            }
        }
    }

    /// The spec of `dag_id` at `version` (cached: versions never change).
    pub async fn spec(&self, dag_id: &str, version: i64) -> Result<Arc<DagSpec>> {
        if let Some(spec) = self.cached_spec(dag_id, version) {
            return Ok(spec);
        }
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(SchedulerError::db("reading a DAG version"))?;
        self.spec_in(&mut conn, dag_id, version).await
    }

    fn cached_spec(&self, dag_id: &str, version: i64) -> Option<Arc<DagSpec>> {
        self.specs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(dag_id.to_owned(), version))
            .cloned()
    }

    /// [`Store::spec`] on a connection already held (inside a transaction: with SQLite's one
    /// connection, asking the pool there would wait forever).
    pub(crate) async fn spec_in(
        &self,
        c: &mut AnyConnection,
        dag_id: &str,
        version: i64,
    ) -> Result<Arc<DagSpec>> {
        if let Some(spec) = self.cached_spec(dag_id, version) {
            return Ok(spec);
        }
        let key = (dag_id.to_owned(), version);
        let row = sqlx::query(
            "SELECT dag_id, version, spec FROM dag_versions WHERE dag_id = $1 AND version = $2",
        )
        .bind(dag_id)
        .bind(version)
        .fetch_optional(&mut *c)
        .await
        .map_err(SchedulerError::db("reading a DAG version"))?
        .ok_or_else(|| SchedulerError::UnknownDag(dag_id.to_owned()))?;
        let text: String = Stored::new("dag_versions", &row).get("spec")?;
        let spec: DagSpec =
            serde_json::from_str(&text).map_err(|e| SchedulerError::CorruptSpec {
                dag_id: dag_id.to_owned(),
                version,
                message: e.to_string(),
            })?;
        let spec = Arc::new(spec);
        self.specs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, spec.clone());
        Ok(spec)
    }

    /// For the loops that work through every DAG or run: an error of stored data (one DAG's
    /// unreadable spec or row) is logged, once, and the caller skips what it belongs to and goes
    /// on with the others; it meets the same error every loop until someone fixes the row, so
    /// only the first is logged. Any other error is returned.
    pub(crate) fn skip_corrupt(&self, e: SchedulerError) -> Result<()> {
        if !e.is_corrupt_data() {
            return Err(e);
        }
        let message = e.to_string();
        let mut logged = self
            .corrupt_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if logged.len() < 10_000 && logged.insert(message.clone()) {
            tracing::error!(error = %message, "skipped until the stored value is fixed");
        }
        Ok(())
    }

    /// Housekeeping the scheduler runs every few seconds. On PostgreSQL, every state change of a
    /// task instance leaves a dead index entry behind (the state is indexed), and until VACUUM
    /// removes them, finding the few queued tasks means stepping over every task that was ever
    /// queued: tens of milliseconds per claim after a 10,000-task run. Autovacuum wakes once a
    /// minute at best, so the scheduler vacuums the hot tables itself (VACUUM takes no lock
    /// that blocks readers or writers).
    pub async fn maintain(&self) -> Result<()> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("VACUUM (ANALYZE) task_instances, dag_runs, dags")
                .execute(&self.pool)
                .await
                .map_err(SchedulerError::db("vacuuming"))?;
        }
        Ok(())
    }

    /// `SELECT ... FOR UPDATE` on PostgreSQL; SQLite's transaction already excludes writers.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Every row of the main tables as sorted text, times relative to `epoch_ms`: the whole
    /// state, for snapshot tests.
    pub async fn dump(&self, epoch_ms: i64) -> Result<String> {
        let rel = |v: Option<i64>| {
            v.map(|v| format!("{:+}", v.saturating_sub(epoch_ms)))
                .unwrap_or("-".into())
        };
        let mut out = String::new();
        let rows = sqlx::query(
            "SELECT dag_id, version, paused, removed, last_logical_ms FROM dags ORDER BY dag_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("dumping"))?;
        out.push_str("dags:\n");
        for r in rows {
            let r = Stored::new("dags", &r);
            out.push_str(&format!(
                "  {} v{} paused={} removed={} last={}\n",
                r.get::<String>("dag_id")?,
                r.get::<i64>("version")?,
                r.get::<i64>("paused")?,
                r.get::<i64>("removed")?,
                rel(r.get::<Option<i64>>("last_logical_ms")?),
            ));
        }
        let rows = sqlx::query(
            "SELECT dag_id, run_id, run_type, ds, start_ds, end_ds, state, unfinished, failed, started_ms, ended_ms FROM dag_runs ORDER BY dag_id, run_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("dumping"))?;
        out.push_str("runs:\n");
        for r in rows {
            let r = Stored::new("dag_runs", &r);
            out.push_str(&format!(
                "  {}/{} {} ds={} range={}..{} {} unfinished={} failed={} started={} ended={}\n",
                r.get::<String>("dag_id")?,
                r.get::<String>("run_id")?,
                r.get::<String>("run_type")?,
                r.get::<String>("ds")?,
                r.get::<String>("start_ds")?,
                r.get::<String>("end_ds")?,
                r.get::<String>("state")?,
                r.get::<i64>("unfinished")?,
                r.get::<i64>("failed")?,
                rel(r.get("started_ms")?),
                rel(r.get("ended_ms")?),
            ));
        }
        let rows = sqlx::query(
            "SELECT dag_id, run_id, task_id, state, try_number, max_tries, next_ms, worker_id, error FROM task_instances ORDER BY dag_id, run_id, task_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("dumping"))?;
        out.push_str("task instances:\n");
        for r in rows {
            let r = Stored::new("task_instances", &r);
            let error: Option<String> = r.get("error")?;
            out.push_str(&format!(
                "  {}/{}/{} {} try={}/{} next={} worker={}{}\n",
                r.get::<String>("dag_id")?,
                r.get::<String>("run_id")?,
                r.get::<String>("task_id")?,
                r.get::<String>("state")?,
                r.get::<i64>("try_number")?,
                r.get::<i64>("max_tries")?,
                rel(r.get("next_ms")?),
                r.get::<Option<String>>("worker_id")?.unwrap_or("-".into()),
                error.map(|e| format!(" error={e:?}")).unwrap_or_default(),
            ));
        }
        let rows = sqlx::query(
            "SELECT dag_id, run_id, task_id, try_number, worker_id, state, error FROM task_tries ORDER BY dag_id, run_id, task_id, try_number",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("dumping"))?;
        out.push_str("tries:\n");
        for r in rows {
            let r = Stored::new("task_tries", &r);
            let error: Option<String> = r.get("error")?;
            out.push_str(&format!(
                "  {}/{}/{}#{} {} {}{}\n",
                r.get::<String>("dag_id")?,
                r.get::<String>("run_id")?,
                r.get::<String>("task_id")?,
                r.get::<i64>("try_number")?,
                r.get::<String>("worker_id")?,
                r.get::<String>("state")?,
                error.map(|e| format!(" error={e:?}")).unwrap_or_default(),
            ));
        }
        Ok(out)
    }
}

/// Applies every step after the store's version, in order, recording each: a store of any
/// earlier version (or none) ends at [`SCHEMA_VERSION`]. Runs inside the caller's transaction,
/// so a failed step leaves the store at its old version (DDL is transactional on both).
async fn apply_migrations(conn: &mut AnyConnection) -> Result<()> {
    let current: Option<i64> = sqlx::query("SELECT max(version) AS v FROM chronoflow_schema")
        .fetch_one(&mut *conn)
        .await
        .map_err(SchedulerError::db("reading the schema version"))?
        .try_get("v")
        .map_err(SchedulerError::db("reading the schema version"))?;
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(SchedulerError::Schema(format!(
            "the store has schema version {current}, newer than this chronoflow's {SCHEMA_VERSION}; upgrade chronoflow"
        )));
    }
    let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    for (version, step) in (1..).zip(MIGRATIONS) {
        if version <= current {
            continue;
        }
        for sql in statements(step) {
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await
                .map_err(SchedulerError::db("migrating"))?;
        }
        sqlx::query("INSERT INTO chronoflow_schema (version, applied_ms) VALUES ($1, $2)")
            .bind(version)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(SchedulerError::db("recording the schema version"))?;
    }
    Ok(())
}

/// The statements of a migration step: split on `;`, comment lines dropped (the steps hold no
/// `;` inside literals).
fn statements(step: &str) -> impl Iterator<Item = String> + '_ {
    step.split(';').filter_map(|statement| {
        let sql = statement
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        (!sql.trim().is_empty()).then_some(sql)
    })
}

pub(crate) fn is_conflict(e: &SchedulerError) -> bool {
    let SchedulerError::Database { cause, .. } = e else {
        return false;
    };
    match cause {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message();
            // PostgreSQL: serialization failure, deadlock; SQLite: busy, locked.
            code == "40001"
                || code == "40P01"
                || code == "5"
                || code == "6"
                || code == "517"
                || message.contains("database is locked")
        }
        sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Builds `$first, $first+1, ...` placeholders for an IN list.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
