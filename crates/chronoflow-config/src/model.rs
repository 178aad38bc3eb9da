//! The typed model of compiled Chronon configs, the same for both dialects.
//!
//! Decoding (in `parse`) resolves what the dialects encode differently: integer enums, booleans,
//! JSON inside strings, where the schedule lives. Values the spec gives defaults for are resolved
//! by the accessor methods here, so the raw field stays visible (`accuracy` vs `explicit_accuracy`).

use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;
use serde::Serialize;

use crate::date::PartitionDate;
use crate::dependency::PartitionDependency;

/// Which Chronon compiler wrote a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// airbnb/chronon: `production/` layout, `teams.json`, `metaData.dependencies`.
    Airbnb,
    /// Zipline (sardine-ai/zipline-chronon): `compiled/` layout, `executionInfo`, names ending `__<n>`.
    Zipline,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Airbnb => "airbnb",
            Dialect::Zipline => "zipline",
        })
    }
}

/// An aggregation operation. The integer codes differ between dialects from 18 on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    Min,
    Max,
    First,
    Last,
    UniqueCount,
    ApproxUniqueCount,
    Count,
    Sum,
    Average,
    Variance,
    Skew,
    Kurtosis,
    ApproxPercentile,
    LastK,
    FirstK,
    TopK,
    BottomK,
    Histogram,
    /// Airbnb only (code 18).
    ApproxHistogramK,
    /// Airbnb only (code 19).
    BoundedUniqueCount,
    /// Zipline only (code 18).
    ApproxFrequentK,
    /// Zipline only (code 19).
    ApproxHeavyHittersK,
    /// Zipline only (code 20).
    UniqueTopK,
}

impl Operation {
    /// Decodes the Thrift enum value, which depends on the dialect (SPEC §1.1).
    pub fn from_code(code: i64, dialect: Dialect) -> Option<Operation> {
        use Operation::*;
        Some(match (code, dialect) {
            (0, _) => Min,
            (1, _) => Max,
            (2, _) => First,
            (3, _) => Last,
            (4, _) => UniqueCount,
            (5, _) => ApproxUniqueCount,
            (6, _) => Count,
            (7, _) => Sum,
            (8, _) => Average,
            (9, _) => Variance,
            (10, _) => Skew,
            (11, _) => Kurtosis,
            (12, _) => ApproxPercentile,
            (13, _) => LastK,
            (14, _) => FirstK,
            (15, _) => TopK,
            (16, _) => BottomK,
            (17, _) => Histogram,
            (18, Dialect::Airbnb) => ApproxHistogramK,
            (19, Dialect::Airbnb) => BoundedUniqueCount,
            (18, Dialect::Zipline) => ApproxFrequentK,
            (19, Dialect::Zipline) => ApproxHeavyHittersK,
            (20, Dialect::Zipline) => UniqueTopK,
            _ => return None,
        })
    }

    /// The Thrift enum name lower-cased, as Chronon's `stringified` gives it.
    pub fn lower_name(self) -> &'static str {
        use Operation::*;
        match self {
            Min => "min",
            Max => "max",
            First => "first",
            Last => "last",
            UniqueCount => "unique_count",
            ApproxUniqueCount => "approx_unique_count",
            Count => "count",
            Sum => "sum",
            Average => "average",
            Variance => "variance",
            Skew => "skew",
            Kurtosis => "kurtosis",
            ApproxPercentile => "approx_percentile",
            LastK => "last_k",
            FirstK => "first_k",
            TopK => "top_k",
            BottomK => "bottom_k",
            Histogram => "histogram",
            ApproxHistogramK => "approx_histogram_k",
            BoundedUniqueCount => "bounded_unique_count",
            ApproxFrequentK => "approx_frequent_k",
            ApproxHeavyHittersK => "approx_heavy_hitters_k",
            UniqueTopK => "unique_top_k",
        }
    }

    /// Operations whose feature name embeds `k` (`last10`, `top5`, `unique_top3`), so `k` is required.
    pub fn names_k(self) -> bool {
        matches!(
            self,
            Operation::LastK
                | Operation::FirstK
                | Operation::TopK
                | Operation::BottomK
                | Operation::UniqueTopK
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Hours,
    Days,
    /// Zipline only.
    Minutes,
}

impl TimeUnit {
    pub fn from_code(code: i64, dialect: Dialect) -> Option<TimeUnit> {
        match (code, dialect) {
            (0, _) => Some(TimeUnit::Hours),
            (1, _) => Some(TimeUnit::Days),
            (2, Dialect::Zipline) => Some(TimeUnit::Minutes),
            _ => None,
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            TimeUnit::Minutes => 60_000,
            TimeUnit::Hours => 3_600_000,
            TimeUnit::Days => 86_400_000,
        }
    }

    /// The suffix letter in feature names (`_3d`, `_1h`, `_30m`).
    pub fn suffix(self) -> &'static str {
        match self {
            TimeUnit::Minutes => "m",
            TimeUnit::Hours => "h",
            TimeUnit::Days => "d",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accuracy {
    Temporal,
    Snapshot,
}

impl Accuracy {
    pub fn from_code(code: i64) -> Option<Accuracy> {
        match code {
            0 => Some(Accuracy::Temporal),
            1 => Some(Accuracy::Snapshot),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    Boolean,
    Byte,
    Short,
    Int,
    Long,
    Float,
    Double,
    String,
    Binary,
    Date,
    Timestamp,
    Map,
    List,
    Struct,
    /// Zipline only.
    Decimal,
}

impl DataKind {
    pub fn from_code(code: i64, dialect: Dialect) -> Option<DataKind> {
        use DataKind::*;
        Some(match (code, dialect) {
            (0, _) => Boolean,
            (1, _) => Byte,
            (2, _) => Short,
            (3, _) => Int,
            (4, _) => Long,
            (5, _) => Float,
            (6, _) => Double,
            (7, _) => String,
            (8, _) => Binary,
            (9, _) => Date,
            (10, _) => Timestamp,
            (11, _) => Map,
            (12, _) => List,
            (13, _) => Struct,
            (14, Dialect::Zipline) => Decimal,
            _ => return None,
        })
    }
}

/// A window length: `length` units. Unwindowed aggregations have no `Window` at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Window {
    pub length: u32,
    pub unit: TimeUnit,
}

impl Window {
    pub fn millis(self) -> i64 {
        i64::from(self.length) * self.unit.millis()
    }

    /// Whole days a window reaches back, rounded up (a 1h window reaches into one earlier day).
    pub fn days_ceil(self) -> i64 {
        let day = TimeUnit::Days.millis();
        (self.millis() + day - 1) / day
    }
}

/// A table name as written in a source, with any `/key=value` sub-partitions split off.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TableRef {
    /// `namespace.table`, the part before the first `/`.
    pub table: String,
    /// Sub-partitions to wait for (`hr=00:00`), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sub_partitions: Vec<(String, String)>,
}

impl TableRef {
    /// Splits `db.t/hr=00:00` into the table and its sub-partitions; segments without `=` are
    /// returned as errors for the caller to report.
    pub fn parse(raw: &str) -> Result<TableRef, String> {
        let mut parts = raw.split('/');
        let table = parts.next().unwrap_or_default().trim().to_owned();
        if table.is_empty() {
            return Err(format!("empty table name in {raw:?}"));
        }
        let mut sub_partitions = Vec::new();
        for seg in parts {
            match seg.split_once('=') {
                Some((k, v)) if !k.is_empty() => sub_partitions.push((k.to_owned(), v.to_owned())),
                _ => return Err(format!("sub-partition {seg:?} in {raw:?} is not key=value")),
            }
        }
        Ok(TableRef {
            table,
            sub_partitions,
        })
    }
}

/// `Query`: how rows are selected from a source table (Spark SQL expressions).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Query {
    /// Output column -> expression, in the config's order; `None` selects all columns.
    pub selects: Option<IndexMap<String, String>>,
    pub wheres: Vec<String>,
    pub start_partition: Option<PartitionDate>,
    pub end_partition: Option<PartitionDate>,
    pub time_column: Option<String>,
    pub setups: Vec<String>,
    pub mutation_time_column: Option<String>,
    pub reversal_column: Option<String>,
    pub partition_column: Option<String>,
    pub partition_format: Option<String>,
    pub sub_partitions_to_wait_for: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventSource {
    pub table: TableRef,
    /// Kafka-style topic, possibly with `/key=value` arguments.
    pub topic: Option<String>,
    pub query: Query,
    pub is_cumulative: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntitySource {
    pub snapshot_table: TableRef,
    pub mutation_table: Option<TableRef>,
    pub mutation_topic: Option<String>,
    pub query: Query,
}

/// A source that is the output of another Join (chaining).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JoinSource {
    pub join: Box<Join>,
    pub query: Query,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Events(EventSource),
    Entities(EntitySource),
    JoinSource(JoinSource),
}

impl Source {
    pub fn query(&self) -> &Query {
        match self {
            Source::Events(s) => &s.query,
            Source::Entities(s) => &s.query,
            Source::JoinSource(s) => &s.query,
        }
    }

    /// Whether the source can be streamed: an event topic, a mutation topic, or a parent Join
    /// whose left side has a topic.
    pub fn has_topic(&self) -> bool {
        match self {
            Source::Events(s) => s.topic.is_some(),
            Source::Entities(s) => s.mutation_topic.is_some(),
            Source::JoinSource(s) => s.join.left.has_topic(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aggregation {
    pub input_column: String,
    pub operation: Operation,
    /// Raw `argMap` (string values, e.g. `k`, `percentiles`).
    pub arg_map: BTreeMap<String, String>,
    /// Empty means unwindowed (absent and `[]` are the same).
    pub windows: Vec<Window>,
    pub buckets: Vec<String>,
    /// `k` from `argMap`, with the operation's default applied (APPROX_PERCENTILE: 128).
    pub k: Option<u32>,
    /// APPROX_PERCENTILE's `percentiles` (default `[0.5]`); empty for other operations.
    pub percentiles: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Derivation {
    pub name: String,
    pub expression: String,
}

/// Fields of `customJson` that chronoflow reads; the rest stays available in `other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CustomJson {
    /// AB: days the sensors look back (already in the AB dependency specs).
    pub lag: Option<i64>,
    /// AB: whether online/offline consistency jobs run.
    pub check_consistency: Option<bool>,
    /// AB: extra arguments passed to the Chronon driver.
    pub additional_args: Option<AdditionalArgs>,
    /// ZL: the dependencies Zipline's compiler derived for Airflow.
    pub airflow_dependencies: Option<Vec<PartitionDependency>>,
    /// AB: `tags` (and the Python API's `groupby_tags` / `join_tags`), normalised to `key:value`.
    pub tags: Vec<String>,
    /// Every other key, untouched.
    pub other: BTreeMap<String, serde_json::Value>,
}

/// AB `customJson.additional_args`: written either as a list of argument strings or as a map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AdditionalArgs {
    List(Vec<String>),
    Named(BTreeMap<String, String>),
}

/// Environment variables: common to all modes, then per mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModeEnv {
    pub common: BTreeMap<String, String>,
    pub modes: BTreeMap<String, BTreeMap<String, String>>,
}

/// ZL `TableDependency`: a table read over a range of partitions relative to `ds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDependency {
    pub table: TableRef,
    pub partition_column: Option<String>,
    /// How far back the range starts (`ds - start_offset`).
    pub start_offset: Option<Window>,
    /// How far back the range ends (`ds - end_offset`); what a sensor waits for.
    pub end_offset: Option<Window>,
}

/// ZL `executionInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExecutionInfo {
    pub env: ModeEnv,
    pub conf: ModeEnv,
    pub offline_schedule: Option<String>,
    pub online_schedule: Option<String>,
    pub step_days: Option<i64>,
    pub historical_backfill: Option<bool>,
    pub table_dependencies: Vec<TableDependency>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetaData {
    /// `team.file.var` (ZL adds `__<version>`). Empty only for label-part metadata, which has no name.
    pub name: String,
    pub team: Option<String>,
    pub online: bool,
    pub production: bool,
    pub output_namespace: Option<String>,
    pub table_properties: BTreeMap<String, String>,
    pub custom_json: CustomJson,
    /// AB `dependencies`, parsed.
    pub dependencies: Vec<PartitionDependency>,
    /// AB `offlineSchedule`, or ZL `executionInfo.offlineSchedule`.
    pub offline_schedule: Option<String>,
    pub online_schedule: Option<String>,
    pub sample_percent: Option<f64>,
    pub consistency_sample_percent: Option<f64>,
    /// ZL `consistencyCheck`.
    pub consistency_check: Option<bool>,
    pub historical_backfill: Option<bool>,
    pub deprecation_date: Option<PartitionDate>,
    /// AB `modeToEnvMap`: mode -> env.
    pub mode_to_env: BTreeMap<String, BTreeMap<String, String>>,
    pub execution_info: Option<ExecutionInfo>,
    pub version: Option<String>,
    pub source_file: Option<String>,
    /// ZL: output column -> hash of its definition.
    pub column_hashes: BTreeMap<String, String>,
    /// ZL `metaData.tags` (thrift `map<string, string>`), normalised to `key:value`; see
    /// [`MetaData::tags`] for every tag of the config.
    pub tags: Vec<String>,
}

impl MetaData {
    /// The schedule of the offline job; Chronon's default is `@daily`.
    pub fn offline_schedule(&self) -> &str {
        self.offline_schedule.as_deref().unwrap_or("@daily")
    }

    /// Whether online/offline consistency jobs run: AB `customJson.check_consistency`, ZL `consistencyCheck`.
    pub fn check_consistency(&self) -> bool {
        self.consistency_check
            .or(self.custom_json.check_consistency)
            .unwrap_or(false)
    }

    /// Every tag of the config, `key:value` (or a bare `key` when its value is empty), sorted and
    /// without repeats: ZL `metaData.tags` and AB `customJson.tags` / `groupby_tags` / `join_tags`.
    /// Tags with a known prefix mean something to chronoflow: `machine:<profile>` picks a
    /// resource profile, `airflow:<group>` groups tasks in the Airflow export.
    pub fn tags(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .tags
            .iter()
            .chain(&self.custom_json.tags)
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The partition column configured for the whole config (ZL `spark.chronon.partition.column`).
    pub fn partition_column(&self) -> Option<&str> {
        self.execution_info
            .as_ref()
            .and_then(|e| e.conf.common.get("spark.chronon.partition.column"))
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupBy {
    pub metadata: MetaData,
    pub sources: Vec<Source>,
    pub key_columns: Vec<String>,
    /// `None`: no aggregation, the selected columns are the features.
    pub aggregations: Option<Vec<Aggregation>>,
    /// As written; see [`GroupBy::accuracy`] for the resolved value.
    pub explicit_accuracy: Option<Accuracy>,
    pub backfill_start_date: Option<PartitionDate>,
    pub derivations: Vec<Derivation>,
}

impl GroupBy {
    /// SPEC §1.2: explicit accuracy wins; else TEMPORAL if any source has a topic, else SNAPSHOT.
    pub fn accuracy(&self) -> Accuracy {
        self.explicit_accuracy.unwrap_or_else(|| {
            if self.sources.iter().any(Source::has_topic) {
                Accuracy::Temporal
            } else {
                Accuracy::Snapshot
            }
        })
    }

    /// How many days before the as-of date `a` the oldest partition this GroupBy reads lies
    /// (SPEC §4.2 rule 1: `1 + W` days for the widest window), or `None` when it reads every
    /// partition up to `a` (an unwindowed aggregation, or no aggregations at all).
    pub fn lookback_days(&self) -> Option<i64> {
        let aggs = self.aggregations.as_ref().filter(|a| !a.is_empty())?;
        let mut max = 0;
        for a in aggs {
            if a.windows.is_empty() {
                return None;
            }
            for w in &a.windows {
                max = max.max(1 + w.days_ceil());
            }
        }
        Some(max)
    }

    /// Whether a streaming job keeps this GroupBy fresh online: online, TEMPORAL, and a topic to read.
    pub fn is_streaming(&self) -> bool {
        self.metadata.online
            && self.accuracy() == Accuracy::Temporal
            && self.sources.iter().any(Source::has_topic)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JoinPart {
    pub group_by: GroupBy,
    /// LEFT column -> RIGHT key, in the config's order.
    pub key_mapping: IndexMap<String, String>,
    pub prefix: Option<String>,
    /// ZL: whether feature columns are prefixed by the GroupBy's name (default) or its keys.
    pub use_long_names: Option<bool>,
}

impl JoinPart {
    /// The left column that feeds GroupBy key `key`: `keyMapping` maps a left column to a key;
    /// unmapped keys match a left column of their own name.
    pub fn left_column<'a>(&'a self, key: &'a str) -> &'a str {
        self.key_mapping
            .iter()
            .find(|(_, right)| *right == key)
            .map_or(key, |(left, _)| left.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootstrapPart {
    pub table: TableRef,
    pub query: Option<Query>,
    pub key_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelPart {
    pub labels: Vec<JoinPart>,
    pub left_start_offset: Option<i64>,
    pub left_end_offset: Option<i64>,
    pub metadata: Option<MetaData>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataType {
    pub kind: DataKind,
    pub name: Option<String>,
    pub params: Vec<(String, DataType)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExternalSource {
    pub name: String,
    pub team: Option<String>,
    pub key_schema: Option<DataType>,
    pub value_schema: Option<DataType>,
    pub offline_group_by: Option<GroupBy>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExternalPart {
    pub source: ExternalSource,
    pub key_mapping: IndexMap<String, String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Join {
    pub metadata: MetaData,
    /// An events or entities source (never a joinSource).
    pub left: Source,
    pub join_parts: Vec<JoinPart>,
    pub derivations: Vec<Derivation>,
    pub bootstrap_parts: Vec<BootstrapPart>,
    pub label_part: Option<LabelPart>,
    pub online_external_parts: Vec<ExternalPart>,
    pub skew_keys: BTreeMap<String, Vec<String>>,
    pub row_ids: Vec<String>,
    /// ZL: the join-level default for its parts.
    pub use_long_names: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagingQuery {
    pub metadata: MetaData,
    /// Spark SQL with `{{ start_date }}`-style macros.
    pub query: String,
    pub start_partition: Option<PartitionDate>,
    pub setups: Vec<String>,
    /// ZL: tables read and over which partitions.
    pub table_dependencies: Vec<TableDependency>,
    pub recompute_days: Option<i64>,
}

/// The three kinds of config chronoflow plans and runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigKind {
    GroupBy,
    Join,
    StagingQuery,
}

impl ConfigKind {
    /// The directory the kind lives in (`group_bys`, `joins`, `staging_queries`).
    pub fn directory(self) -> &'static str {
        match self {
            ConfigKind::GroupBy => "group_bys",
            ConfigKind::Join => "joins",
            ConfigKind::StagingQuery => "staging_queries",
        }
    }

    pub fn from_directory(dir: &str) -> Option<ConfigKind> {
        match dir {
            "group_bys" => Some(ConfigKind::GroupBy),
            "joins" => Some(ConfigKind::Join),
            "staging_queries" => Some(ConfigKind::StagingQuery),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigKind::GroupBy => "group_by",
            ConfigKind::Join => "join",
            ConfigKind::StagingQuery => "staging_query",
        })
    }
}

// Configs are few and long-lived; boxing the variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Config {
    GroupBy(GroupBy),
    Join(Join),
    StagingQuery(StagingQuery),
}

impl Config {
    pub fn kind(&self) -> ConfigKind {
        match self {
            Config::GroupBy(_) => ConfigKind::GroupBy,
            Config::Join(_) => ConfigKind::Join,
            Config::StagingQuery(_) => ConfigKind::StagingQuery,
        }
    }

    pub fn metadata(&self) -> &MetaData {
        match self {
            Config::GroupBy(g) => &g.metadata,
            Config::Join(j) => &j.metadata,
            Config::StagingQuery(s) => &s.metadata,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }
}
