//! Resource profiles: the machine a job asks for (CPU, memory, a free-form cluster spec, an
//! Airflow pool and queue), chosen per mode, per team and per config, the same way for every
//! executor (the command executor's placeholders, the in-process executor's log, the Airflow
//! export). Pure: [`Profiles::resolve`] reads nothing but its arguments.
//!
//! `chronoflow.toml`:
//!
//! ```toml
//! [profiles]
//! default = "small"            # optional: when nothing else selects one
//! tag_prefix = "machine:"      # optional: the config tag that picks a profile
//! [profiles.modes]
//! backfill = "large"           # keys are modes: backfill, upload, upload-to-kv, streaming, ...
//! [profiles.teams.risk]
//! default = "medium"           # every job of team `risk` ...
//! upload = "small"             # ... but its uploads
//! [profiles.large]
//! cpu = 8
//! memory = "32g"
//! cluster = { workers = 10, instance = "n2-highmem-8" }   # or a string; passed on as is
//! pool = "backfills"
//! queue = "large"
//! ```
//!
//! Precedence, first match wins: the config's tag (`machine:large`) > the team's entry for the
//! mode > the team's `default` > the mode's entry > `default` > no profile. `default`,
//! `tag_prefix`, `modes` and `teams` are reserved and cannot name a profile.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::job::{Job, Mode};

/// The tag prefix that picks a profile unless `tag_prefix` says otherwise.
pub const DEFAULT_TAG_PREFIX: &str = "machine:";

/// Every mode, for validating `[profiles.modes]` keys.
const MODES: [Mode; 8] = [
    Mode::Backfill,
    Mode::Upload,
    Mode::UploadToKv,
    Mode::Streaming,
    Mode::MetadataUpload,
    Mode::LogFlattener,
    Mode::BuildComparisonTable,
    Mode::ConsistencyMetricsCompute,
];

/// The mode of a `--mode` name (`upload-to-kv`), if it is one.
pub fn mode_named(name: &str) -> Option<Mode> {
    MODES.into_iter().find(|m| m.as_str() == name)
}

/// What a profile or its selection got wrong; each names where in `chronoflow.toml` (or which
/// config tag) the bad value came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("{at} names profile {name:?}, which is not defined (defined: {defined})")]
    Unknown {
        at: String,
        name: String,
        defined: String,
    },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error("config {config} has two profile tags, {first:?} and {second:?}; keep one")]
    TwoTags {
        config: String,
        first: String,
        second: String,
    },
}

/// One named profile (`[profiles.<name>]`). Every field is optional: a profile may only set a
/// queue.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Cores (may be fractional: `0.5`).
    pub cpu: Option<f64>,
    /// Memory as Spark and Kubernetes write it: `32g`, `512m`, `4Gi`.
    pub memory: Option<String>,
    /// Free-form: a string, or a table passed on as JSON.
    pub cluster: Option<serde_json::Value>,
    /// Airflow pool.
    pub pool: Option<String>,
    /// Airflow / Celery queue.
    pub queue: Option<String>,
}

/// A team's selectors (`[profiles.teams.<team>]`): `default` and per-mode entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeamSelectors {
    pub default: Option<String>,
    pub modes: BTreeMap<String, String>,
}

/// The `[profiles]` section: named profiles and what selects them.
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    pub default: Option<String>,
    pub tag_prefix: String,
    /// Keyed by mode (`backfill`, `upload-to-kv`, ...).
    pub modes: BTreeMap<String, String>,
    pub teams: BTreeMap<String, TeamSelectors>,
    pub named: BTreeMap<String, Profile>,
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles {
            default: None,
            tag_prefix: DEFAULT_TAG_PREFIX.to_owned(),
            modes: BTreeMap::new(),
            teams: BTreeMap::new(),
            named: BTreeMap::new(),
        }
    }
}

/// The profile a job runs with, and why. `cluster` is rendered: a string as written, a table
/// as compact JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedProfile {
    pub name: String,
    /// What selected it: `tag machine:large`, `profiles.teams.risk.upload`,
    /// `profiles.teams.risk.default`, `profiles.modes.backfill` or `profiles.default`.
    pub selected_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

impl Profiles {
    /// Whether the section defines nothing (then nothing resolves and tags are ignored).
    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
            && self.default.is_none()
            && self.modes.is_empty()
            && self.teams.is_empty()
    }

    /// The profile of a job in `mode` of team `team` whose config carries `tags` (as
    /// `MetaData::tags` gives them), or `None` when nothing selects one (always without a
    /// `[profiles]` section: tags alone select nothing). `config` names the config in errors.
    /// Precedence: the tag > team + mode > team default > mode > default.
    pub fn resolve(
        &self,
        config: &str,
        mode: Mode,
        team: &str,
        tags: &[String],
    ) -> Result<Option<ResolvedProfile>, ProfileError> {
        if self.is_empty() {
            return Ok(None);
        }
        let Some((name, selected_by)) = self.select(config, mode, team, tags)? else {
            return Ok(None);
        };
        let profile = self.named.get(&name).ok_or_else(|| ProfileError::Unknown {
            at: selected_by.clone(),
            name: name.clone(),
            defined: self.defined(),
        })?;
        Ok(Some(ResolvedProfile {
            cpu: profile.cpu.map(|c| c.to_string()),
            memory: profile.memory.clone(),
            cluster: profile.cluster.as_ref().map(render_cluster),
            pool: profile.pool.clone(),
            queue: profile.queue.clone(),
            name,
            selected_by,
        }))
    }

    /// [`Profiles::resolve`] for a planned job (its config, mode, team and tags).
    pub fn resolve_job(&self, job: &Job) -> Result<Option<ResolvedProfile>, ProfileError> {
        self.resolve(&job.config, job.mode, &job.team, &job.tags)
    }

    /// Sets every job's `profile`; the jobs that cannot resolve one keep `None` and their
    /// errors are returned, one per problem (a config's bad tag is reported once, not per mode).
    pub fn apply(&self, plan: &mut crate::Plan) -> Vec<ProfileError> {
        let mut errors: Vec<ProfileError> = Vec::new();
        for job in &mut plan.jobs {
            match self.resolve_job(job) {
                Ok(profile) => job.profile = profile,
                Err(e) if !errors.contains(&e) => errors.push(e),
                Err(_) => {}
            }
        }
        errors
    }

    /// The selected profile's name and what selected it.
    fn select(
        &self,
        config: &str,
        mode: Mode,
        team: &str,
        tags: &[String],
    ) -> Result<Option<(String, String)>, ProfileError> {
        if let Some(tag) = self.profile_tag(config, tags)? {
            let name = tag[self.tag_prefix.len()..].to_owned();
            return Ok(Some((name, format!("tag {tag} of config {config}"))));
        }
        let team_selectors = self.teams.get(team);
        let candidates = [
            team_selectors
                .and_then(|t| t.modes.get(mode.as_str()))
                .map(|n| (n, format!("profiles.teams.{team}.{mode}"))),
            team_selectors
                .and_then(|t| t.default.as_ref())
                .map(|n| (n, format!("profiles.teams.{team}.default"))),
            self.modes
                .get(mode.as_str())
                .map(|n| (n, format!("profiles.modes.{mode}"))),
            self.default
                .as_ref()
                .map(|n| (n, "profiles.default".to_owned())),
        ];
        Ok(candidates
            .into_iter()
            .flatten()
            .next()
            .map(|(name, at)| (name.clone(), at)))
    }

    /// The config's one tag with the profile prefix, if any.
    fn profile_tag<'t>(
        &self,
        config: &str,
        tags: &'t [String],
    ) -> Result<Option<&'t String>, ProfileError> {
        let mut found = tags.iter().filter(|t| t.starts_with(&self.tag_prefix));
        let Some(first) = found.next() else {
            return Ok(None);
        };
        if let Some(second) = found.find(|t| *t != first) {
            return Err(ProfileError::TwoTags {
                config: config.to_owned(),
                first: first.clone(),
                second: second.clone(),
            });
        }
        Ok(Some(first))
    }

    fn defined(&self) -> String {
        if self.named.is_empty() {
            return "none".to_owned();
        }
        self.named.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Checks what can be checked without the repo: every selector names a defined profile,
    /// mode keys are modes, values are well-formed. Tags are checked by [`Profiles::resolve`].
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.tag_prefix.is_empty() {
            return Err(invalid("profiles.tag_prefix", "must not be empty"));
        }
        for (name, p) in &self.named {
            p.validate(&format!("profiles.{name}"))?;
        }
        let mut selectors: Vec<(String, &String)> = Vec::new();
        selectors.extend(
            self.default
                .iter()
                .map(|n| ("profiles.default".to_owned(), n)),
        );
        for (mode, name) in &self.modes {
            check_mode(&format!("profiles.modes.{mode}"), mode)?;
            selectors.push((format!("profiles.modes.{mode}"), name));
        }
        for (team, t) in &self.teams {
            let at = format!("profiles.teams.{team}");
            selectors.extend(t.default.iter().map(|n| (format!("{at}.default"), n)));
            for (mode, name) in &t.modes {
                check_mode(&format!("{at}.{mode}"), mode)?;
                selectors.push((format!("{at}.{mode}"), name));
            }
        }
        for (at, name) in selectors {
            if !self.named.contains_key(name) {
                return Err(ProfileError::Unknown {
                    at,
                    name: name.clone(),
                    defined: self.defined(),
                });
            }
        }
        Ok(())
    }
}

impl Profile {
    fn validate(&self, at: &str) -> Result<(), ProfileError> {
        if let Some(cpu) = self.cpu
            && !(cpu > 0.0 && cpu.is_finite())
        {
            return Err(invalid(
                &format!("{at}.cpu"),
                &format!("{cpu} is not a positive number of cores"),
            ));
        }
        if let Some(memory) = &self.memory
            && !is_memory(memory)
        {
            return Err(invalid(
                &format!("{at}.memory"),
                &format!("{memory:?} is not an amount of memory like \"32g\", \"512m\" or \"4Gi\""),
            ));
        }
        match &self.cluster {
            None | Some(serde_json::Value::String(_) | serde_json::Value::Object(_)) => Ok(()),
            Some(other) => Err(invalid(
                &format!("{at}.cluster"),
                &format!("must be a string or a table, not {other}"),
            )),
        }
    }
}

fn invalid(at: &str, message: &str) -> ProfileError {
    ProfileError::Invalid {
        at: at.to_owned(),
        message: message.to_owned(),
    }
}

fn check_mode(at: &str, mode: &str) -> Result<(), ProfileError> {
    if MODES.iter().any(|m| m.as_str() == mode) {
        return Ok(());
    }
    let known: Vec<&str> = MODES.iter().map(|m| m.as_str()).collect();
    Err(invalid(
        at,
        &format!("{mode:?} is not a mode (modes: {})", known.join(", ")),
    ))
}

/// Digits (a decimal point allowed), then an optional unit: `k`, `m`, `g`, `t`, `p`, each
/// optionally followed by `i` and/or `b`, in any case.
fn is_memory(text: &str) -> bool {
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number_ok = number.parse::<f64>().is_ok_and(|n| n > 0.0);
    let unit = unit.to_ascii_lowercase();
    let unit_ok = unit.is_empty()
        || ["k", "m", "g", "t", "p"].iter().any(|u| {
            [*u, &format!("{u}i"), &format!("{u}b"), &format!("{u}ib")].contains(&unit.as_str())
        });
    number_ok && unit_ok
}

fn render_cluster(cluster: &serde_json::Value) -> String {
    match cluster {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// `[profiles]` mixes reserved keys with profile names at one level, which derived `Deserialize`
// cannot express together with unknown-field rejection; each key is decoded by what it is.
impl<'de> Deserialize<'de> for Profiles {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ProfilesVisitor)
    }
}

struct ProfilesVisitor;

impl<'de> Visitor<'de> for ProfilesVisitor {
    type Value = Profiles;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [profiles] table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Profiles, A::Error> {
        let mut out = Profiles::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "default" => out.default = Some(map.next_value()?),
                "tag_prefix" => out.tag_prefix = map.next_value()?,
                "modes" => out.modes = map.next_value()?,
                "teams" => out.teams = map.next_value()?,
                _ => {
                    let profile: Profile = map
                        .next_value()
                        .map_err(|e| de::Error::custom(format!("profiles.{key}: {e}")))?;
                    out.named.insert(key, profile);
                }
            }
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for TeamSelectors {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut entries = BTreeMap::<String, String>::deserialize(deserializer)?;
        Ok(TeamSelectors {
            default: entries.remove("default"),
            modes: entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Profiles {
        #[derive(Deserialize)]
        struct File {
            profiles: Profiles,
        }
        let file: File = toml::from_str(text).unwrap();
        file.profiles.validate().unwrap();
        file.profiles
    }

    fn parse_err(text: &str) -> String {
        #[derive(Deserialize)]
        struct File {
            profiles: Profiles,
        }
        match toml::from_str::<File>(text) {
            Err(e) => e.to_string(),
            Ok(f) => f.profiles.validate().unwrap_err().to_string(),
        }
    }

    const EVERY_LEVEL: &str = r#"
        [profiles]
        default = "tiny"
        [profiles.modes]
        backfill = "large"
        upload = "medium"
        [profiles.teams.risk]
        default = "small"
        upload-to-kv = "xl"
        [profiles.teams.ads]
        backfill = "xl"
        [profiles.tiny]
        cpu = 0.5
        [profiles.small]
        cpu = 2
        memory = "4g"
        [profiles.medium]
        cpu = 4
        [profiles.large]
        cpu = 8
        memory = "32g"
        cluster = { workers = 10, instance = "n2-highmem-8" }
        pool = "backfills"
        queue = "large"
        [profiles.xl]
        cpu = 32
        memory = "128Gi"
        cluster = "spark.executor.instances=50"
    "#;

    fn name_and_source(p: &Profiles, mode: Mode, team: &str, tags: &[&str]) -> (String, String) {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        let r = p.resolve("t.c.v1", mode, team, &tags).unwrap().unwrap();
        (r.name, r.selected_by)
    }

    #[test]
    fn precedence_is_tag_then_team_mode_then_team_then_mode_then_default() {
        let p = parse(EVERY_LEVEL);
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            name_and_source(&p, Mode::Backfill, "risk", &["machine:medium", "airflow:x"]),
            pair("medium", "tag machine:medium of config t.c.v1")
        );
        assert_eq!(
            name_and_source(&p, Mode::UploadToKv, "risk", &[]),
            pair("xl", "profiles.teams.risk.upload-to-kv")
        );
        assert_eq!(
            name_and_source(&p, Mode::Backfill, "risk", &[]),
            pair("small", "profiles.teams.risk.default")
        );
        assert_eq!(
            name_and_source(&p, Mode::Backfill, "ads", &[]),
            pair("xl", "profiles.teams.ads.backfill")
        );
        assert_eq!(
            name_and_source(&p, Mode::Upload, "ads", &[]),
            pair("medium", "profiles.modes.upload")
        );
        assert_eq!(
            name_and_source(&p, Mode::Streaming, "other", &[]),
            pair("tiny", "profiles.default")
        );
    }

    #[test]
    fn a_backfill_and_an_upload_of_one_team_resolve_to_different_profiles() {
        let p = parse(EVERY_LEVEL);
        let backfill = p
            .resolve("ads.c.v1", Mode::Backfill, "ads", &[])
            .unwrap()
            .unwrap();
        let upload = p
            .resolve("ads.c.v1", Mode::Upload, "ads", &[])
            .unwrap()
            .unwrap();
        assert_ne!(backfill, upload);
        let large = p.resolve("x", Mode::Backfill, "x", &[]).unwrap().unwrap();
        assert_eq!(
            large,
            ResolvedProfile {
                name: "large".into(),
                selected_by: "profiles.modes.backfill".into(),
                cpu: Some("8".into()),
                memory: Some("32g".into()),
                cluster: Some(r#"{"instance":"n2-highmem-8","workers":10}"#.into()),
                pool: Some("backfills".into()),
                queue: Some("large".into()),
            }
        );
        let tiny = p.resolve("x", Mode::Streaming, "x", &[]).unwrap().unwrap();
        assert_eq!((tiny.cpu.as_deref(), tiny.memory), (Some("0.5"), None));
    }

    #[test]
    fn nothing_configured_resolves_to_no_profile_whatever_the_tags() {
        let p = Profiles::default();
        assert!(p.is_empty());
        let tags = vec!["airflow:nightly".to_owned(), "machine:large".to_owned()];
        assert_eq!(p.resolve("c", Mode::Backfill, "t", &tags).unwrap(), None);
        let p = parse("[profiles.large]\ncpu = 8\n");
        assert_eq!(p.resolve("c", Mode::Backfill, "t", &[]).unwrap(), None);
    }

    #[test]
    fn a_tag_naming_an_unknown_profile_is_an_error_naming_tag_and_config() {
        let p = parse(EVERY_LEVEL);
        let err = p
            .resolve(
                "risk.txn.v1",
                Mode::Backfill,
                "risk",
                &["machine:huge".to_owned()],
            )
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "tag machine:huge of config risk.txn.v1 names profile \"huge\", which is not defined (defined: large, medium, small, tiny, xl)"
        );
        let p = parse("[profiles.modes]\nupload = \"small\"\n[profiles.small]\ncpu = 1\n");
        let err = p
            .resolve("c", Mode::Backfill, "t", &["machine:large".to_owned()])
            .unwrap_err();
        assert!(err.to_string().contains("(defined: small)"), "{err}");
    }

    #[test]
    fn two_different_profile_tags_are_an_error_and_a_repeated_one_is_not() {
        let p = parse(EVERY_LEVEL);
        let tags = vec!["machine:large".to_owned(), "machine:small".to_owned()];
        let err = p.resolve("t.c.v1", Mode::Backfill, "t", &tags).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config t.c.v1 has two profile tags, \"machine:large\" and \"machine:small\"; keep one"
        );
        let tags = vec!["machine:large".to_owned(), "machine:large".to_owned()];
        assert!(p.resolve("t.c.v1", Mode::Backfill, "t", &tags).is_ok());
    }

    #[test]
    fn the_tag_prefix_is_configurable() {
        let p = parse("[profiles]\ntag_prefix = \"resources/\"\n[profiles.big]\ncpu = 16\n");
        let tags = vec!["resources/big".to_owned(), "machine:small".to_owned()];
        let r = p.resolve("c", Mode::Upload, "t", &tags).unwrap().unwrap();
        assert_eq!(r.name, "big");
    }

    #[test]
    fn unknown_selector_targets_are_errors_naming_the_key() {
        let err = parse_err("[profiles.modes]\nbackfill = \"huge\"\n[profiles.large]\ncpu = 1\n");
        assert_eq!(
            err,
            "profiles.modes.backfill names profile \"huge\", which is not defined (defined: large)"
        );
        let err = parse_err("[profiles.teams.risk]\nupload = \"huge\"\n");
        assert!(
            err.starts_with("profiles.teams.risk.upload names profile \"huge\""),
            "{err}"
        );
        let err = parse_err("[profiles]\ndefault = \"huge\"\n");
        assert!(
            err.starts_with("profiles.default names profile \"huge\""),
            "{err}"
        );
        let err = parse_err("[profiles.teams.risk]\ndefault = \"huge\"\n");
        assert!(
            err.starts_with("profiles.teams.risk.default names"),
            "{err}"
        );
    }

    #[test]
    fn bad_modes_values_and_fields_are_errors_naming_the_key() {
        let err = parse_err("[profiles.modes]\nbackfil = \"l\"\n[profiles.l]\ncpu = 1\n");
        assert!(
            err.starts_with("profiles.modes.backfil: \"backfil\" is not a mode"),
            "{err}"
        );
        let err = parse_err("[profiles.teams.t]\nuplod = \"l\"\n[profiles.l]\ncpu = 1\n");
        assert!(err.starts_with("profiles.teams.t.uplod:"), "{err}");
        let err = parse_err("[profiles.l]\nmemory = \"lots\"\n");
        assert!(
            err.starts_with("profiles.l.memory: \"lots\" is not an amount"),
            "{err}"
        );
        let err = parse_err("[profiles.l]\ncpu = 0\n");
        assert!(err.starts_with("profiles.l.cpu:"), "{err}");
        let err = parse_err("[profiles.l]\ncluster = 3\n");
        assert!(
            err.starts_with("profiles.l.cluster: must be a string or a table"),
            "{err}"
        );
        let err = parse_err("[profiles.l]\ncpus = 3\n");
        assert!(err.contains("profiles.l") && err.contains("cpus"), "{err}");
        let err = parse_err("[profiles]\ntag_prefix = \"\"\n");
        assert!(err.contains("profiles.tag_prefix"), "{err}");
    }

    #[test]
    fn memory_amounts() {
        for ok in ["32g", "512m", "4Gi", "1.5G", "1024", "2TB", "8gib"] {
            assert!(is_memory(ok), "{ok}");
        }
        for bad in ["", "g", "lots", "32 g", "-1g", "0", "32x", "1.2.3g"] {
            assert!(!is_memory(bad), "{bad}");
        }
    }
}
