//! The command line: every subcommand and flag, each documented where it is declared.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "chronoflow",
    version,
    about = "Runs Chronon feature pipelines end to end: plan, schedule, compute, serve."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load every compiled config of a repo and report every problem found.
    ///
    /// Exits 1 when any diagnostic is an error, 0 otherwise (warnings and notices are printed).
    Check(CheckArgs),
    /// Derive the jobs and DAGs of a repo and print them.
    Plan(PlanArgs),
    /// Work with the tables of the warehouse: import, list, partitions, export.
    #[command(subcommand)]
    Table(TableCommand),
    /// Run one Chronon job on the local engine, as Chronon's `run.py --mode ... --conf ...` does.
    Run(RunArgs),
    /// A Join's online/offline consistency per day: the overall rate, rows, the worst features
    /// and the drift above threshold (read from `<join>_consistency` and `<join>_drift`).
    Consistency(ConsistencyArgs),
    /// Run the scheduler, a worker and the HTTP API in one process (embedded SQLite by default).
    ///
    /// Ctrl-C drains: no new task starts, running ones finish, then the process exits.
    Standalone(StandaloneArgs),
    /// Run the scheduler loop alone (several may share one PostgreSQL).
    Scheduler(SchedulerArgs),
    /// Run a worker alone: claims queued tasks and runs them.
    Worker(WorkerArgs),
    /// DAGs: list, sync, trigger, backfill, pause, unpause.
    #[command(subcommand)]
    Dags(DagsCommand),
    /// DAG runs: list.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Task instances: list, clear, logs.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Fetch online features of a Join or GroupBy for a key set, from the KV store.
    Fetch(FetchArgs),
    /// Run the HTTP fetcher: POST /v1/fetch/join/<name> and /v1/fetch/groupby/<name>.
    Serve(ServeArgs),
    /// API tokens for the HTTP API and the web UI: create, list, revoke.
    ///
    /// With no live token, the API serves loopback listeners without authentication.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Streaming jobs: list what the worker supervising each stream last recorded.
    #[command(subcommand)]
    Streams(StreamsCommand),
    /// Export the plan for another scheduler: `export airflow` writes Airflow 3 DAG files.
    #[command(subcommand)]
    Export(ExportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write one Apache Airflow 3 DAG file per DAG of the plan into --out, rendered by a
    /// minijinja template (built-in, or --template). Nothing is written when any DAG fails:
    /// the files are rendered into a new directory beside --out, then moved into place.
    Airflow(ExportAirflowArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportAirflowArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The directory of DAG files; replaced as a whole (created when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A minijinja template of one DAG file, instead of the built-in one (docs/airflow.md
    /// lists what it sees).
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// A TOML params file: `[__default__]`, `[teams.<team>]` and `[dags.<dag_id>]` sections,
    /// merged in that order.
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// A param, applied last: `command.flavor=zipline`, `dag.tags=["a","b"]` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub param: Vec<String>,
    /// The scheduler configuration whose `[profiles]` give tasks their resources; default
    /// `<repo>/chronoflow.toml` if it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it (once: only its hash is stored).
    Create {
        /// Who or what uses the token (shown in the UI and in `tokens list`).
        #[arg(long)]
        name: String,
        /// The team whose DAGs an operator token may change, or `*` for every team.
        #[arg(long)]
        team: String,
        /// `viewer` reads; `operator` also triggers, pauses, clears, marks and stops its
        /// team's DAGs; `admin` does so for every team.
        #[arg(long, value_enum)]
        role: RoleArg,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        state: StateArgs,
    },
    /// Revoke a token by id; its UI sessions end at once.
    Revoke {
        token_id: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Viewer,
    Operator,
    Admin,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// The state store: `sqlite://<path>` (embedded, the default) or `postgres://...` (several
    /// schedulers and workers sharing the load).
    #[arg(
        long,
        value_name = "URL",
        env = "CHRONOFLOW_DATABASE_URL",
        default_value = "sqlite://./.chronoflow/state.db"
    )]
    pub database_url: String,
    /// Where task logs and uploaded metadata go.
    #[arg(
        long,
        value_name = "DIR",
        env = "CHRONOFLOW_HOME",
        default_value = "./.chronoflow"
    )]
    pub home: PathBuf,
    /// Scheduler configuration (executors, teams, alerts, overrides); default
    /// `<repo>/chronoflow.toml` if it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Take the DAG specs from this JSON file instead of planning the repo (benchmarks and
    /// tests of the scheduler itself).
    #[arg(long, value_name = "FILE")]
    pub specs: Option<PathBuf>,
    /// Re-plan the repo this often (new, changed and removed configs take effect).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub replan_seconds: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    /// Time between two scheduler loops.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub tick_ms: u64,
    /// Serve the HTTP API and the web UI on this address (`standalone`: default 127.0.0.1:8686).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    #[command(flatten)]
    pub web: WebArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// How the API port guards itself and what the UI's quality page flags.
#[derive(Debug, Clone, clap::Args)]
pub struct WebArgs {
    /// A host name the API answers besides IP addresses and `localhost` (repeatable). Any other
    /// `Host` header is refused, so a DNS-rebinding page cannot reach the API.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// Serve a non-loopback address without any API token configured (anyone who can reach
    /// the port can pause, trigger and clear). Without this flag such a listener refuses to start.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// The data-quality page flags a partition whose row count is below this ratio of the
    /// trailing median of earlier partitions, or above the median divided by it (more than 0,
    /// at most 1).
    #[arg(long, value_name = "RATIO", default_value_t = 0.5, value_parser = parse_quality_ratio)]
    pub quality_ratio: f64,
}

/// A ratio in (0, 1]. Checked here: the tables page is the first to use it, and with NaN or 0
/// a server started cleanly and then answered every tables request with an error.
fn parse_quality_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        _ => Err(format!("{text:?} is not a ratio in (0, 1]")),
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    /// Tasks run at once, 1 or more (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub slots: Option<usize>,
    /// This worker's name (default: host and process id).
    #[arg(long, value_name = "NAME")]
    pub id: Option<String>,
    #[command(flatten)]
    pub kv: KvArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StandaloneArgs {
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    /// Tasks run at once, 1 or more (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub slots: Option<usize>,
    /// Exit once no run is queued or running (after triggering backfills, say).
    #[arg(long)]
    pub until_idle: bool,
    /// The online KV store the in-process executor loads uploads into, and the API's
    /// `/v1/fetch/...` routes read.
    #[command(flatten)]
    pub kv: KvArg,
    /// Do not serve the HTTP API (standalone serves it on 127.0.0.1:8686 unless --listen says
    /// otherwise).
    #[arg(long, conflicts_with = "listen")]
    pub no_api: bool,
    #[command(flatten)]
    pub fetch_limits: FetchLimitArgs,
}

#[derive(Debug, Subcommand)]
pub enum DagsCommand {
    /// List the DAGs with their state.
    List {
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Plan the repo and register its DAGs (what the scheduler does every --replan-seconds).
    Sync {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Trigger a run: a backfill DAG over --start-ds..--end-ds, or a scheduled DAG for --end-ds.
    /// A range backfill DAG's range becomes one run per --step-days chunk (default 30), which
    /// workers take in parallel.
    Trigger {
        dag_id: String,
        #[arg(long, value_name = "YYYY-MM-DD")]
        start_ds: String,
        #[arg(long, value_name = "YYYY-MM-DD")]
        end_ds: String,
        /// Days per run of a manual DAG's range (1 or more).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        step_days: Option<u32>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Create one run per logical date of a scheduled DAG in the range.
    Backfill {
        dag_id: String,
        #[arg(long, value_name = "YYYY-MM-DD")]
        start_ds: String,
        #[arg(long, value_name = "YYYY-MM-DD")]
        end_ds: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Pause DAGs: no new runs, no new tasks queued.
    Pause {
        dag_ids: Vec<String>,
        /// Every DAG.
        #[arg(long, conflicts_with = "dag_ids")]
        all: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Unpause DAGs.
    Unpause {
        dag_ids: Vec<String>,
        #[arg(long, conflicts_with = "dag_ids")]
        all: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only this DAG's.
        #[arg(long)]
        dag: Option<String>,
        /// Only runs in this state (queued, running, success, failed).
        #[arg(long)]
        state_filter: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List the task instances of a run.
    List {
        dag_id: String,
        run_id: String,
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Clear a task instance so it runs again (with fresh retries).
    Clear {
        dag_id: String,
        run_id: String,
        task_id: String,
        /// Also clear every task downstream of it.
        #[arg(long)]
        downstream: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Print the log of a try (the last one by default).
    Logs {
        dag_id: String,
        run_id: String,
        task_id: String,
        #[arg(long = "try", value_name = "N")]
        try_number: Option<i64>,
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum StreamsCommand {
    /// List every worker's streams: one line per streaming job with its state (`stale` when
    /// its worker stopped updating it), pid@host, restarts, records read, malformed records,
    /// total lag and freshness (time since its newest event).
    List {
        #[command(flatten)]
        state: StateArgs,
        /// `text`: one line per stream; `json`: the rows as `GET /api/v1/streams` returns them.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job: `backfill` computes the config's output partitions.
    #[arg(long, value_enum, default_value_t = RunMode::Backfill)]
    pub mode: RunMode,
    /// The compiled config (a file of the repo), e.g. `production/joins/team/name.v1`.
    #[arg(long, value_name = "PATH")]
    pub conf: PathBuf,
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    /// Run for this one partition (years 1900 to 2999).
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with_all = ["start_ds", "end_ds"])]
    pub ds: Option<String>,
    /// First partition of a range (with --end-ds).
    #[arg(long, value_name = "YYYY-MM-DD", requires = "end_ds")]
    pub start_ds: Option<String>,
    /// Last partition of a range, inclusive. A range of more than 10,000 days is refused
    /// unless --allow-large-range is given.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "start_ds")]
    pub end_ds: Option<String>,
    /// Run a range of more than 10,000 days (the limit catches mistyped years).
    #[arg(long)]
    pub allow_large_range: bool,
    /// Partitions computed per step (1 or more); results do not depend on it, memory does.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub step_days: u32,
    /// Steps run at once (1 or more).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub parallelism: usize,
    /// Recompute partitions that already exist (by default only missing ones are computed).
    #[arg(long)]
    pub force: bool,
    /// Memory a backfill step or an upload plans to hold (e.g. 2GB, 512MiB, 25%); past it, a
    /// GroupBy's rows are split by key and spilled to the temp directory. Results do not depend
    /// on it.
    /// Default: a sixteenth of the machine's memory.
    #[arg(long, value_name = "SIZE", env = "CHRONOFLOW_MEMORY_LIMIT", value_parser = chronoflow_engine::parse_memory_limit)]
    pub memory_limit: Option<chronoflow_engine::MemoryLimit>,
    #[command(flatten)]
    pub kv: KvArg,
    /// Streaming: replay an event table (one of the GroupBy's event sources, e.g.
    /// `data.returns`) instead of consuming its topic: its partitions after --since become
    /// streamed rows.
    #[arg(long, value_name = "NS.TABLE", requires = "since")]
    pub replay_table: Option<String>,
    /// Streaming: replay the partitions after this day (the batch day of the upload).
    #[arg(long, value_name = "YYYY-MM-DD", requires = "replay_table")]
    pub since: Option<String>,
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// How `run --mode streaming` consumes the GroupBy's topics.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Streaming: Kafka bootstrap brokers, `host:port` (comma-separated for several). They
    /// take precedence over the topic's `host=`/`port=` arguments.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "CHRONOFLOW_KAFKA_BROKERS",
        value_delimiter = ','
    )]
    pub kafka_brokers: Vec<String>,
    /// Streaming: rewrite this JSON file about once a second with the stream's state, counters
    /// and lag per partition (what `chronoflow streams list` shows).
    #[arg(long, value_name = "PATH")]
    pub status_file: Option<PathBuf>,
    /// Streaming: also copy each malformed record to this file (JSON lines with the topic,
    /// partition, offset and reason) or, as `topic:NAME`, produce it to that topic.
    #[arg(long, value_name = "PATH|topic:NAME")]
    pub dead_letter: Option<String>,
    /// Streaming: the Avro writer schema of the records (else the topic's `schema=` argument,
    /// relative to the repo).
    #[arg(long, value_name = "FILE")]
    pub avro_schema: Option<PathBuf>,
    /// Streaming: a record larger than this is malformed (skipped and counted).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_record_bytes: usize,
    /// Streaming: the longest the broker may hold a fetch open waiting for records. Kafka
    /// answers as soon as there are records; some brokers (tansu) always wait this long, so
    /// it bounds how fresh a fetched record can be.
    #[arg(long, value_name = "MS", default_value_t = chronoflow_stream::DEFAULT_FETCH_MAX_WAIT_MS, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub fetch_max_wait_ms: u64,
    /// Streaming: the most bytes fetched from one partition per request (a lagging stream
    /// catches up in batches of this size).
    #[arg(long, value_name = "BYTES", default_value_t = chronoflow_stream::DEFAULT_MAX_FETCH_BYTES, value_parser = clap::value_parser!(i32).range(1024..))]
    pub max_fetch_bytes: i32,
    /// Streaming: where to begin in a partition that has no stored offset yet.
    #[arg(long, value_enum, default_value_t = StartFromArg::Earliest)]
    pub start_from: StartFromArg,
    /// Streaming: return once every partition is read to its end, instead of running until
    /// stopped (SIGTERM or Ctrl-C).
    #[arg(long)]
    pub until_caught_up: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartFromArg {
    /// The oldest record the broker keeps.
    Earliest,
    /// Only records produced from now on.
    Latest,
}

#[derive(Debug, Clone, clap::Args)]
pub struct KvArg {
    /// The online KV store: a path for the embedded store, or `redis://host:port`.
    #[arg(long, value_name = "PATH|URL", env = "CHRONOFLOW_KV", default_value = chronoflow_serve::kv::DEFAULT_KV)]
    pub kv: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FetchType {
    Join,
    #[value(name = "group-by", alias = "groupby")]
    GroupBy,
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// What to fetch.
    #[arg(short = 't', long = "type", value_enum, default_value_t = FetchType::Join)]
    pub kind: FetchType,
    /// The Join or GroupBy, as written in configs (`team.name.v1`) or `team/name.v1`.
    #[arg(short = 'n', long)]
    pub name: String,
    /// The key set as JSON, e.g. '{"user_id": 5}' (or an array of key sets).
    #[arg(short = 'k', long = "keys", value_name = "JSON")]
    pub keys: String,
    /// The time to fetch at, epoch millis (default: now).
    #[arg(long, value_name = "MILLIS")]
    pub at_millis: Option<i64>,
    #[command(flatten)]
    pub kv: KvArg,
}

#[derive(Debug, clap::Args)]
pub struct ConsistencyArgs {
    /// The Join, as written in configs (`team.name.v1`) or `team/name.v1`.
    pub join: String,
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    /// First day (default: 6 days before --end-ds).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub start_ds: Option<String>,
    /// Last day (default: the newest day with figures).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub end_ds: Option<String>,
    /// The thresholds' file (`[consistency]`); default `<repo>/chronoflow.toml` if it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where the HTTP fetcher listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    pub listen: String,
    #[command(flatten)]
    pub kv: KvArg,
    #[command(flatten)]
    pub warehouse: WarehouseArg,
    /// Turn fetch logging off (by default Joins with samplePercent > 0 are logged).
    #[arg(long)]
    pub no_fetch_log: bool,
    #[command(flatten)]
    pub fetch_limits: FetchLimitArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What one fetch request may ask (`serve`, and `standalone`'s `/v1/fetch/...` routes).
#[derive(Debug, Clone, clap::Args)]
pub struct FetchLimitArgs {
    /// Key sets in one fetch request; a request with more is refused (413) and should be split.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_keys_per_request: u64,
    /// Size of a fetch request body, in bytes; a larger body is refused (413).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes: u64,
    /// Fetch requests answered at once; beyond it a request is refused at once with 503 and
    /// `Retry-After: 1` rather than queued.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_concurrent_fetches: u64,
}

impl FetchLimitArgs {
    pub fn limits(&self) -> chronoflow_serve::http::FetchLimits {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        chronoflow_serve::http::FetchLimits {
            max_keys_per_request: size(self.max_keys_per_request),
            max_body_bytes: size(self.max_body_bytes),
            max_concurrent_fetches: size(self.max_concurrent_fetches),
        }
    }
}

/// How an HTTP server bounds its clients (the fetcher, and the API and UI port).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Seconds a client has to send a request's headers (and an idle connection to start its
    /// next request) before it is disconnected.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub header_read_timeout_secs: u64,
    /// Seconds a request has to be answered, reading its body included; then it gets a 408.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub request_timeout_secs: u64,
    /// Connections served at once; further clients wait until one closes.
    #[arg(long, value_name = "N", default_value_t = 1_024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
}

impl ServerArgs {
    pub fn limits(&self) -> chronoflow_serve::server::ServerLimits {
        chronoflow_serve::server::ServerLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunMode {
    /// Compute output partitions (GroupBy daily snapshots, Join training rows).
    Backfill,
    /// GroupBy: compute what serving needs as of the end of --ds into its `_upload` table.
    Upload,
    /// GroupBy: load the `_upload` partition of --ds into the KV store, switched in atomically.
    UploadToKv,
    /// Join or GroupBy: store the definition the fetcher reads (skipped when unchanged).
    MetadataUpload,
    /// GroupBy (TEMPORAL): feed events after the batch into the streaming dataset; today by
    /// replaying a table's partitions after --since (--replay-table).
    Streaming,
    /// Join: the fetch log `<join>_log` of --ds into `<join>_logged`, a column per key and feature.
    LogFlattener,
    /// Join: the logged requests of --ds through the Join backfill, offline beside online, into
    /// `<join>_comparison`.
    BuildComparisonTable,
    /// Join: per feature counts, mismatches and SMAPE of `<join>_comparison` of --ds into
    /// `<join>_consistency`, and a summary.
    ConsistencyMetricsCompute,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WarehouseArg {
    /// Where tables live: a directory, `file://…`, or `s3://bucket/prefix` / `gs://bucket/prefix`
    /// (credentials from the usual environment variables).
    #[arg(long, value_name = "URI", env = "CHRONOFLOW_WAREHOUSE", default_value = chronoflow_engine::warehouse::DEFAULT_WAREHOUSE)]
    pub warehouse: String,
    /// The format of the tables the warehouse creates: `chronoflow` (Parquet with a manifest per
    /// partition) or `delta` (Delta Lake; needs the `delta` build feature). Overrides
    /// `[warehouse] format`. Tables that exist keep theirs.
    #[arg(long, value_name = "FORMAT", env = "CHRONOFLOW_WAREHOUSE_FORMAT")]
    pub warehouse_format: Option<chronoflow_engine::warehouse::TableFormat>,
    /// The TOML file whose `[warehouse]` section sets table formats and locations, default the
    /// repo's `chronoflow.toml` (or the working directory's) when it exists.
    #[arg(long, value_name = "FILE", env = "CHRONOFLOW_WAREHOUSE_CONFIG")]
    pub warehouse_config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Import a CSV (with a header row) or Parquet file as a table, one partition per value of the
    /// partition column; partitions that exist are replaced atomically.
    Import {
        /// The table, `namespace.table`.
        table: String,
        /// The file: `.csv` or `.parquet`.
        file: PathBuf,
        /// The column whose `yyyy-MM-dd` values name the partitions.
        #[arg(long, default_value = "ds")]
        partition_column: String,
        /// Memory the import plans to hold (e.g. 2GB, 512MiB, 25%); past it, rows read are
        /// spilled to the temp directory until the whole file is read. Default: a sixteenth of
        /// the machine's memory.
        #[arg(long, value_name = "SIZE", env = "CHRONOFLOW_MEMORY_LIMIT", value_parser = chronoflow_engine::parse_memory_limit)]
        memory_limit: Option<chronoflow_engine::MemoryLimit>,
        #[command(flatten)]
        warehouse: WarehouseArg,
    },
    /// List the tables with their partition counts and date ranges.
    List {
        #[command(flatten)]
        warehouse: WarehouseArg,
    },
    /// List a table's partitions with their row counts.
    ///
    /// With --require, a cheap check instead (what exported Airflow sensors call): exits 0 when
    /// every partition of the range exists, 1 when some are missing (listed), 2 on errors.
    Partitions {
        /// The table, `namespace.table`.
        table: String,
        /// Check that these partitions exist: `YYYY-MM-DD` or `YYYY-MM-DD..YYYY-MM-DD`.
        #[arg(long, value_name = "DS[..DS]")]
        require: Option<String>,
        #[command(flatten)]
        warehouse: WarehouseArg,
    },
    /// Write a table (or one partition) as CSV, JSON lines or Parquet, the partition column last.
    Export {
        /// The table, `namespace.table`.
        table: String,
        /// Only this partition.
        #[arg(long, value_name = "YYYY-MM-DD")]
        ds: Option<String>,
        #[arg(long, value_enum)]
        format: ExportFormatArg,
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        warehouse: WarehouseArg,
    },
    /// Delete the files no partition lists (left by killed or concurrent writers) once older
    /// than `--older-than`, printing each with its size; every table when none is named.
    Vacuum {
        /// The table, `namespace.table`; every table when omitted.
        table: Option<String>,
        /// Only files older than this: `90s`, `30m`, `1h`, `2d`. Younger ones may belong to a
        /// write in progress, so keep it above the longest write.
        #[arg(long, value_name = "AGE", default_value = "1h", value_parser = chronoflow_engine::warehouse::parse_age)]
        older_than: std::time::Duration,
        /// Print what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        warehouse: WarehouseArg,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormatArg {
    /// Header row; lists as JSON arrays, maps as JSON objects with sorted keys, nulls as empty fields.
    Csv,
    /// One JSON object per line.
    Json,
    /// One Parquet file.
    Parquet,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RepoArg {
    /// The repo of compiled configs: a directory with `production/` and `teams.json` (Airbnb
    /// layout), or with `compiled/` (Zipline layout).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// How to print diagnostics.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// One line per diagnostic, then a summary.
    Text,
    /// A JSON object: `{"files", "configs", "counts", "diagnostics"}`.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Output format. `json` is the stable plan format the scheduler consumes
    /// (docs/plan-format.md).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Only this DAG (e.g. `chronon_gb_batch_quickstart`). With `--format json` the jobs are
    /// limited to those the DAG runs.
    #[arg(long, value_name = "ID")]
    pub dag: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// DAGs and their tasks, upstream first.
    Text,
    /// The full plan: jobs, DAGs, diagnostics.
    Json,
    /// Graphviz dot (`dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}
