//! A repo of compiled configs: classify files by layout, decode them (in parallel), and check
//! what only the whole repo can tell (duplicate names, teams, namespaces, online Joins' GroupBys).
//!
//! Pure: it works on file contents already in memory; `fs::read_repo` is the adapter that reads them.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::decode::{DecodeContext, JsonPath};
use crate::diagnostic::{Diagnostic, DiagnosticCode, Severity};
use crate::model::{Config, ConfigKind, Dialect};
use crate::parse;
use crate::teams::{self, DEFAULT_TEAM, Teams};

/// Where a dialect's files live, relative to the repo directory (`prefix` is `""` or ends in `/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "dialect", rename_all = "lowercase")]
pub enum Layout {
    /// `<prefix>teams.json` and `<prefix>production/<kind>/<team>/<name>`.
    Airbnb { prefix: String },
    /// `<prefix><kind>/<team>/<name>`, `<prefix>teams_metadata/<team>/<file>`, `<prefix>models/...`.
    Zipline { prefix: String },
}

/// One file of the repo, as read from disk.
#[derive(Debug, Clone)]
pub struct RepoFile {
    /// Relative to the repo directory, `/`-separated.
    pub path: String,
    pub contents: Vec<u8>,
}

/// Everything the loader needs: the layouts found and the files under them.
#[derive(Debug, Clone, Default)]
pub struct RepoFiles {
    pub layouts: Vec<Layout>,
    pub files: Vec<RepoFile>,
    /// Entries that could not be read, each an error diagnostic; the other files still load.
    pub unreadable: Vec<UnreadableEntry>,
}

/// A file or directory of the repo that could not be read, and why.
#[derive(Debug, Clone)]
pub struct UnreadableEntry {
    /// Relative to the repo directory, `/`-separated.
    pub path: String,
    pub reason: String,
}

/// A config that decoded without errors.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedConfig {
    /// The compiled file, relative to the repo directory (what `--conf` takes).
    pub path: String,
    pub dialect: Dialect,
    /// The team directory the file lives in.
    pub team: String,
    /// The resolved output namespace (the config's, else its team's, else the default team's).
    pub namespace: String,
    /// A stable hash of the file's bytes (FNV-1a 64, hex): metadata uploads compare it.
    pub content_hash: String,
    pub config: Config,
}

impl LoadedConfig {
    pub fn name(&self) -> &str {
        self.config.name()
    }

    pub fn kind(&self) -> ConfigKind {
        self.config.kind()
    }

    /// `<namespace>.<sanitize(name)>`.
    pub fn output_table(&self) -> String {
        crate::naming::output_table(&self.namespace, self.name())
    }
}

/// The result of loading: the usable configs (sorted by name), the teams, and every diagnostic.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Repo {
    pub layouts: Vec<Layout>,
    /// How many files were read.
    pub file_count: usize,
    pub configs: Vec<LoadedConfig>,
    pub teams: Teams,
    pub diagnostics: Vec<Diagnostic>,
}

impl Repo {
    pub fn config(&self, name: &str) -> Option<&LoadedConfig> {
        self.configs
            .binary_search_by(|c| c.name().cmp(name))
            .ok()
            .map(|i| &self.configs[i])
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

enum FileRole {
    Config {
        dialect: Dialect,
        kind: ConfigKind,
        team: String,
        file_name: String,
    },
    TeamsJson,
    TeamMetadata {
        team: String,
    },
    Model,
    Unexpected(&'static str),
}

fn classify(layouts: &[Layout], path: &str) -> FileRole {
    for layout in layouts {
        match layout {
            Layout::Airbnb { prefix } => {
                let Some(rest) = path.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if rest == "teams.json" {
                    return FileRole::TeamsJson;
                }
                let Some(rest) = rest.strip_prefix("production/") else {
                    continue;
                };
                let parts: Vec<&str> = rest.split('/').collect();
                return match (
                    parts.as_slice(),
                    parts.first().and_then(|d| ConfigKind::from_directory(d)),
                ) {
                    ([_, team, file], Some(kind)) => FileRole::Config {
                        dialect: Dialect::Airbnb,
                        kind,
                        team: (*team).to_owned(),
                        file_name: (*file).to_owned(),
                    },
                    (_, None) => FileRole::Unexpected(
                        "not under production/{group_bys,joins,staging_queries}/",
                    ),
                    _ => FileRole::Unexpected("expected production/<kind>/<team>/<name>"),
                };
            }
            Layout::Zipline { prefix } => {
                let Some(rest) = path.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                let parts: Vec<&str> = rest.split('/').collect();
                return match parts.as_slice() {
                    ["models", ..] => FileRole::Model,
                    ["teams_metadata", team, _] => FileRole::TeamMetadata {
                        team: (*team).to_owned(),
                    },
                    [dir, team, file] => match ConfigKind::from_directory(dir) {
                        Some(kind) => FileRole::Config {
                            dialect: Dialect::Zipline,
                            kind,
                            team: (*team).to_owned(),
                            file_name: (*file).to_owned(),
                        },
                        None => FileRole::Unexpected(
                            "not under compiled/{group_bys,joins,staging_queries,models,teams_metadata}/",
                        ),
                    },
                    _ => FileRole::Unexpected("expected compiled/<kind>/<team>/<name>"),
                };
            }
        }
    }
    FileRole::Unexpected("outside every layout of the repo")
}

/// What decoding one file produced.
struct Decoded {
    config: Option<(LoadedConfigDraft, Config)>,
    teams_json: Option<Teams>,
    team_metadata: Option<(String, teams::TeamInfo)>,
    diagnostics: Vec<Diagnostic>,
}

struct LoadedConfigDraft {
    path: String,
    dialect: Dialect,
    team_dir: String,
    file_name: String,
    content_hash: String,
}

fn parse_json(file: &RepoFile, diagnostics: &mut Vec<Diagnostic>) -> Option<Value> {
    let parsed = std::str::from_utf8(&file.contents)
        .map_err(|e| {
            format!(
                "file is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            )
        })
        .and_then(|text| {
            // A byte-order mark (some editors write one) is not JSON, but it is not content either.
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            serde_json::from_str::<Value>(text).map_err(|e| {
                format!(
                    "invalid JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                )
            })
        });
    match parsed {
        Ok(v) => Some(v),
        Err(message) => {
            diagnostics.push(Diagnostic::new(
                Severity::Error,
                DiagnosticCode::InvalidJson,
                &file.path,
                "$",
                message,
            ));
            None
        }
    }
}

fn decode_file(layouts: &[Layout], file: &RepoFile) -> Decoded {
    let mut out = Decoded {
        config: None,
        teams_json: None,
        team_metadata: None,
        diagnostics: Vec::new(),
    };
    match classify(layouts, &file.path) {
        FileRole::Unexpected(why) => {
            out.diagnostics.push(Diagnostic::new(
                Severity::Warning,
                DiagnosticCode::UnexpectedFile,
                &file.path,
                "$",
                format!("file ignored: {why}"),
            ));
        }
        FileRole::Model => {
            out.diagnostics.push(Diagnostic::new(
                Severity::Notice,
                DiagnosticCode::Unsupported,
                &file.path,
                "$",
                "models are not supported yet; the file is skipped",
            ));
        }
        FileRole::TeamsJson => {
            if let Some(v) = parse_json(file, &mut out.diagnostics) {
                let mut cx = DecodeContext {
                    file: &file.path,
                    dialect: Dialect::Airbnb,
                    diagnostics: &mut out.diagnostics,
                };
                out.teams_json = Some(teams::decode_teams_json(&mut cx, v));
            }
        }
        FileRole::TeamMetadata { team } => {
            if let Some(v) = parse_json(file, &mut out.diagnostics) {
                let mut cx = DecodeContext {
                    file: &file.path,
                    dialect: Dialect::Zipline,
                    diagnostics: &mut out.diagnostics,
                };
                out.team_metadata = teams::decode_team_metadata(&mut cx, v).map(|t| (team, t));
            }
        }
        FileRole::Config {
            dialect: layout_dialect,
            kind,
            team,
            file_name,
        } => {
            let Some(v) = parse_json(file, &mut out.diagnostics) else {
                return out;
            };
            let dialect = parse::detect_dialect(&v, layout_dialect);
            let mut cx = DecodeContext {
                file: &file.path,
                dialect,
                diagnostics: &mut out.diagnostics,
            };
            let config = parse::decode_config(&mut cx, kind, v);
            let draft = LoadedConfigDraft {
                path: file.path.clone(),
                dialect,
                team_dir: team,
                file_name,
                content_hash: content_hash(&file.contents),
            };
            out.config = config.map(|c| (draft, c));
        }
    }
    out
}

/// Decodes one compiled config from its text, outside a repo: what a fetcher reads back from the
/// KV store. `file` names it in the error, which lists every error diagnostic.
pub fn decode_text(
    file: &str,
    text: &str,
    kind: ConfigKind,
    layout_dialect: Dialect,
) -> Result<(Dialect, Config), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("{file}: invalid JSON: {e}"))?;
    let dialect = parse::detect_dialect(&value, layout_dialect);
    let mut diagnostics = Vec::new();
    let mut cx = DecodeContext {
        file,
        dialect,
        diagnostics: &mut diagnostics,
    };
    let config = parse::decode_config(&mut cx, kind, value);
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    match config {
        Some(c) if errors.is_empty() => Ok((dialect, c)),
        _ => Err(errors.join("; ")),
    }
}

/// FNV-1a, 64 bits, as 16 hex digits: stable across versions and platforms.
pub fn content_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Decodes every file and checks the repo as a whole. Deterministic: the result does not depend
/// on the order of `files`.
pub fn load(files: RepoFiles) -> Repo {
    let RepoFiles {
        layouts,
        mut files,
        unreadable,
    } = files;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let file_count = files.len();
    let decoded: Vec<Decoded> = files.par_iter().map(|f| decode_file(&layouts, f)).collect();

    let mut diagnostics: Vec<Diagnostic> = unreadable
        .into_iter()
        .map(|u| {
            Diagnostic::new(
                Severity::Error,
                DiagnosticCode::UnreadableFile,
                u.path,
                "",
                u.reason,
            )
        })
        .collect();
    let mut teams = Teams::default();
    let mut drafts = Vec::new();
    // Configs left out for their errors: what uses them is not blamed a second time.
    let mut broken: BTreeSet<String> = BTreeSet::new();
    for d in decoded {
        let file_has_error = d.diagnostics.iter().any(Diagnostic::is_error);
        diagnostics.extend(d.diagnostics);
        if let Some(t) = d.teams_json {
            teams.teams.extend(t.teams);
        }
        if let Some((team, info)) = d.team_metadata {
            teams.teams.insert(team, info);
        }
        match d.config {
            Some(c) if !file_has_error => drafts.push(c),
            Some((_, c)) => {
                broken.insert(c.name().to_owned());
            }
            None => {}
        }
    }

    let mut configs: Vec<LoadedConfig> = Vec::new();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for (draft, mut config) in drafts {
        let mut cx = DecodeContext {
            file: &draft.path,
            dialect: draft.dialect,
            diagnostics: &mut diagnostics,
        };
        let name = config.name().to_owned();
        if let Some(first) = by_name.get(&name) {
            let d = cx.error(
                DiagnosticCode::DuplicateName,
                &JsonPath::root().field("metaData").field("name"),
                format!("config name {name:?} is already used by {first}; this file is left out"),
            );
            d.found = Some(name);
            continue;
        }
        let meta_path = JsonPath::root().field("metaData");
        let team = match &config_metadata_mut(&mut config).team {
            Some(t) => {
                if *t != draft.team_dir {
                    cx.push(
                        Severity::Warning,
                        DiagnosticCode::Inconsistent,
                        &meta_path.field("team"),
                        format!(
                            "team {t:?} differs from the directory the file is in ({:?})",
                            draft.team_dir
                        ),
                    );
                }
                t.clone()
            }
            None => {
                config_metadata_mut(&mut config).team = Some(draft.team_dir.clone());
                draft.team_dir.clone()
            }
        };
        check_file_name(&mut cx, draft.dialect, &team, &name, &draft.file_name);
        if !teams.is_empty() && !teams.contains(&team) {
            cx.push(
                Severity::Warning,
                DiagnosticCode::UnknownTeam,
                &meta_path.field("team"),
                format!("team {team:?} is not declared (teams.json or teams_metadata); the {DEFAULT_TEAM:?} team's settings apply"),
            );
        }
        let namespace = config
            .metadata()
            .output_namespace
            .clone()
            .or_else(|| teams.namespace(&team).map(str::to_owned));
        let Some(namespace) = namespace else {
            let d = cx.error(
                DiagnosticCode::MissingField,
                &meta_path.field("outputNamespace"),
                "no output namespace: set metaData.outputNamespace or the team's namespace",
            );
            d.expected = Some("a namespace".to_owned());
            broken.insert(name);
            continue;
        };
        by_name.insert(name, draft.path.clone());
        configs.push(LoadedConfig {
            path: draft.path,
            dialect: draft.dialect,
            team,
            namespace,
            content_hash: draft.content_hash,
            config,
        });
    }
    configs.sort_by(|a, b| a.name().cmp(b.name()));
    // Like a file with an error, an online Join whose GroupBys cannot be served is left out.
    let rejected = crate::validate::online_join_parts(&configs, &broken, &mut diagnostics);
    configs.retain(|c| !rejected.contains(c.name()));
    diagnostics.sort_by(|a, b| (&a.file, a.severity, &a.path).cmp(&(&b.file, b.severity, &b.path)));
    Repo {
        layouts,
        file_count,
        configs,
        teams,
        diagnostics,
    }
}

fn config_metadata_mut(config: &mut Config) -> &mut crate::model::MetaData {
    match config {
        Config::GroupBy(g) => &mut g.metadata,
        Config::Join(j) => &mut j.metadata,
        Config::StagingQuery(s) => &mut s.metadata,
    }
}

/// AB files are named after the config without its `team.` prefix; ZL files likewise, with the
/// `__<version>` suffix kept. A mismatch is only a warning: the name inside the file wins.
fn check_file_name(
    cx: &mut DecodeContext<'_>,
    dialect: Dialect,
    team: &str,
    name: &str,
    file_name: &str,
) {
    let expected = name
        .strip_prefix(team)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or(name);
    let matches = expected == file_name
        || (dialect == Dialect::Zipline && crate::naming::strip_version(expected) == file_name);
    if !matches {
        cx.push(
            Severity::Warning,
            DiagnosticCode::Inconsistent,
            &JsonPath::root().field("metaData").field("name"),
            format!("config name {name:?} does not match its file name {file_name:?}"),
        );
    }
}
