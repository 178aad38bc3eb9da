//! Teams: AB `teams.json` and ZL `teams_metadata/<team>/<team>_team_metadata`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::decode::{DecodeContext, JsonPath, decode_string_map};
use crate::model::{ExecutionInfo, MetaData};
use crate::parse;

/// The team entry every other team falls back to.
pub const DEFAULT_TEAM: &str = "default";

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TeamInfo {
    pub description: Option<String>,
    pub namespace: Option<String>,
    pub user: Option<String>,
    pub table_properties: BTreeMap<String, String>,
    pub common_env: BTreeMap<String, String>,
    /// Environment (`production`, `dev`, ...) -> mode -> variables.
    pub environments: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    /// ZL: the team's execution info (env, conf such as the partition column).
    pub execution_info: Option<ExecutionInfo>,
    /// AB `airflow_queue`: the Airflow queue of the team's tasks (the Airflow export's default
    /// when the job's resource profile names none).
    pub airflow_queue: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Teams {
    pub teams: BTreeMap<String, TeamInfo>,
}

impl Teams {
    pub fn is_empty(&self) -> bool {
        self.teams.is_empty()
    }

    pub fn contains(&self, team: &str) -> bool {
        self.teams.contains_key(team)
    }

    pub fn get(&self, team: &str) -> Option<&TeamInfo> {
        self.teams.get(team)
    }

    /// The team's namespace, else the default team's.
    pub fn namespace(&self, team: &str) -> Option<&str> {
        self.teams
            .get(team)
            .and_then(|t| t.namespace.as_deref())
            .or_else(|| {
                self.teams
                    .get(DEFAULT_TEAM)
                    .and_then(|t| t.namespace.as_deref())
            })
    }

    /// The team's `airflow_queue`, else the default team's.
    pub fn airflow_queue(&self, team: &str) -> Option<&str> {
        self.teams
            .get(team)
            .and_then(|t| t.airflow_queue.as_deref())
            .or_else(|| {
                self.teams
                    .get(DEFAULT_TEAM)
                    .and_then(|t| t.airflow_queue.as_deref())
            })
    }

    /// The partition column a ZL team configures (`spark.chronon.partition.column`), else the default team's.
    pub fn partition_column(&self, team: &str) -> Option<&str> {
        fn of(t: &TeamInfo) -> Option<&str> {
            t.execution_info
                .as_ref()
                .and_then(|e| e.conf.common.get("spark.chronon.partition.column"))
                .map(String::as_str)
        }
        self.teams
            .get(team)
            .and_then(of)
            .or_else(|| self.teams.get(DEFAULT_TEAM).and_then(of))
    }

    /// The environment a job of `mode` runs with, layered as Chronon's `run.py` does: the first
    /// layer that sets a variable wins, in this order: the config's `modeToEnvMap[mode]`, the team's
    /// `<environment>.<mode>`, the team's `production.<mode>`, the default team's `production.<mode>`,
    /// the default team's `common_env`. (ZL configs add their `executionInfo.env`, mode over common.)
    pub fn layered_env(
        &self,
        metadata: &MetaData,
        mode: &str,
        environment: &str,
    ) -> BTreeMap<String, String> {
        let team = metadata.team.as_deref().unwrap_or(DEFAULT_TEAM);
        let mut layers: Vec<&BTreeMap<String, String>> = Vec::new();
        if let Some(env) = metadata.mode_to_env.get(mode) {
            layers.push(env);
        }
        if let Some(info) = &metadata.execution_info {
            if let Some(env) = info.env.modes.get(mode) {
                layers.push(env);
            }
            layers.push(&info.env.common);
        }
        let team_info = self.teams.get(team);
        let default_info = self.teams.get(DEFAULT_TEAM);
        fn mode_env<'t>(
            info: Option<&'t TeamInfo>,
            env: &str,
            mode: &str,
        ) -> Option<&'t BTreeMap<String, String>> {
            info?.environments.get(env)?.get(mode)
        }
        layers.extend(mode_env(team_info, environment, mode));
        layers.extend(mode_env(team_info, "production", mode));
        layers.extend(mode_env(default_info, "production", mode));
        if let Some(d) = default_info {
            layers.push(&d.common_env);
        }
        let mut out = BTreeMap::new();
        for layer in layers {
            for (k, v) in layer {
                out.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        out
    }
}

/// Decodes AB `teams.json`: an object keyed by team. Known keys are read; every other key whose
/// value is an object is an environment (`production`, `dev`) of per-mode env maps.
pub fn decode_teams_json(cx: &mut DecodeContext<'_>, value: Value) -> Teams {
    let root = JsonPath::root();
    let Value::Object(map) = value else {
        cx.wrong_type(&root, "object keyed by team name", &value);
        return Teams::default();
    };
    let mut teams = BTreeMap::new();
    for (team, entry) in map {
        let path = root.field(&team);
        let Value::Object(fields) = entry else {
            cx.wrong_type(&path, "object", &entry);
            continue;
        };
        let mut info = TeamInfo::default();
        for (key, v) in fields {
            let p = path.field(&key);
            let text = |cx: &mut DecodeContext<'_>, v: Value| match v {
                Value::String(s) => Some(s),
                other => {
                    cx.wrong_type(&p, "string", &other);
                    None
                }
            };
            match key.as_str() {
                "description" => info.description = text(cx, v),
                "namespace" => info.namespace = text(cx, v),
                "user" => info.user = text(cx, v),
                "airflow_queue" => info.airflow_queue = text(cx, v),
                "table_properties" => {
                    info.table_properties = decode_string_map(cx, &p, v).into_iter().collect()
                }
                "common_env" => {
                    info.common_env = decode_string_map(cx, &p, v).into_iter().collect()
                }
                _ => match v {
                    Value::Object(modes) => {
                        let env = modes
                            .into_iter()
                            .map(|(mode, vars)| {
                                let vars = decode_string_map(cx, &p.field(&mode), vars)
                                    .into_iter()
                                    .collect();
                                (mode, vars)
                            })
                            .collect();
                        info.environments.insert(key, env);
                    }
                    other => cx.wrong_type(&p, "object of per-mode environment maps", &other),
                },
            }
        }
        teams.insert(team, info);
    }
    Teams { teams }
}

/// Decodes one ZL team metadata file (`{executionInfo, ...}`).
pub fn decode_team_metadata(cx: &mut DecodeContext<'_>, value: Value) -> Option<TeamInfo> {
    let mut f = cx.object(value, &JsonPath::root())?;
    let execution_info = f.object(cx, "executionInfo", parse::execution_info);
    let namespace = f.string(cx, "outputNamespace");
    let description = f.string(cx, "description");
    f.ignore(&["name", "team", "sourceFile", "version"]);
    f.finish(cx);
    Some(TeamInfo {
        namespace,
        description,
        execution_info,
        ..TeamInfo::default()
    })
}
