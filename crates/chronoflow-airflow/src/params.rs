//! Parameters: built-in defaults, then a params file's `__default__`, `teams.<team>` and
//! `dags.<dag_id>` sections, then `--param key=value` (nested keys `a.b`), merged in that order.
//!
//! The params file is TOML, like `chronoflow.toml`: one format for chronoflow's configuration,
//! comments allowed, and nested tables map onto `a.b` keys without indentation rules.
//! Every key must exist in the built-in defaults (so a typo is an error, not a silently ignored
//! value), except under the free-form tables `vars` and `command.env`.

use std::collections::BTreeSet;

use toml::{Table, Value};

use crate::AirflowError;

const DEFAULTS: &str = include_str!("defaults.toml");

/// Tables whose keys are the user's (environment variables, values for user templates).
const FREE_FORM: [&str; 2] = ["command.env", "vars"];

/// The parameters of every DAG, before merging: defaults and each layer the user gave.
#[derive(Debug, Clone)]
pub struct Params {
    defaults: Table,
    file: Option<ParamsFile>,
    overrides: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct ParamsFile {
    name: String,
    default: Table,
    teams: Table,
    dags: Table,
}

/// The built-in defaults (`src/defaults.toml`).
pub fn defaults() -> Table {
    // The file is part of the crate and tested to parse; an empty table is never reached.
    DEFAULTS.parse::<Table>().unwrap_or_default()
}

impl Params {
    /// `file` is `(name for messages, TOML text)`; `overrides` are `key=value` strings.
    pub fn new(file: Option<(&str, &str)>, overrides: &[String]) -> Result<Params, AirflowError> {
        let defaults = defaults();
        let file = file
            .map(|(name, text)| parse_file(name, text))
            .transpose()?;
        if let Some(f) = &file {
            check_layer(
                &defaults,
                &f.default,
                &format!("params file {} [__default__]", f.name),
            )?;
            for (section, value) in f.teams.iter().chain(f.dags.iter()) {
                let Value::Table(t) = value else {
                    return Err(file_error(&f.name, format!("[{section}] must be a table")));
                };
                check_layer(&defaults, t, &format!("params file {} [{section}]", f.name))?;
            }
        }
        let mut parsed = Vec::new();
        for o in overrides {
            let Some((key, value)) = o.split_once('=') else {
                return Err(AirflowError::BadParam {
                    origin: "--param".to_owned(),
                    key: o.clone(),
                    value: String::new(),
                    reason: "expected key=value".to_owned(),
                });
            };
            let (key, value) = (key.trim().to_owned(), value.to_owned());
            // Checked (and typed) now, so a bad --param fails before anything else.
            coerce(&defaults, &key, &value)?;
            parsed.push((key, value));
        }
        Ok(Params {
            defaults,
            file,
            overrides: parsed,
        })
    }

    /// Sections naming DAGs or teams the plan does not have are errors (likely typos).
    pub fn check_sections(
        &self,
        dag_ids: &BTreeSet<&str>,
        teams: &BTreeSet<&str>,
    ) -> Result<(), AirflowError> {
        let Some(f) = &self.file else { return Ok(()) };
        for (table, known, what) in [(&f.dags, dag_ids, "DAG"), (&f.teams, teams, "team")] {
            for name in table.keys() {
                if !known.contains(name.as_str()) {
                    let prefix = if what == "DAG" { "dags" } else { "teams" };
                    return Err(AirflowError::UnknownSection {
                        file: f.name.clone(),
                        section: format!("{prefix}.{name}"),
                        what,
                        known: known.iter().copied().collect::<Vec<_>>().join(", "),
                    });
                }
            }
        }
        Ok(())
    }

    /// The merged parameters of one DAG.
    pub fn for_dag(&self, dag_id: &str, team: Option<&str>) -> Result<Table, AirflowError> {
        let mut merged = self.defaults.clone();
        if let Some(f) = &self.file {
            merge(&mut merged, &f.default);
            if let Some(Value::Table(t)) = team.and_then(|t| f.teams.get(t)) {
                merge(&mut merged, t);
            }
            if let Some(Value::Table(t)) = f.dags.get(dag_id) {
                merge(&mut merged, t);
            }
        }
        for (key, value) in &self.overrides {
            let value = coerce(&self.defaults, key, value)?;
            set(&mut merged, key, value);
        }
        Ok(merged)
    }
}

fn file_error(name: &str, message: String) -> AirflowError {
    AirflowError::ParamsFile {
        file: name.to_owned(),
        message,
    }
}

fn parse_file(name: &str, text: &str) -> Result<ParamsFile, AirflowError> {
    let mut table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_error(name, e.to_string().trim_end().to_owned()))?;
    let mut take = |key: &str| -> Result<Table, AirflowError> {
        match table.remove(key) {
            None => Ok(Table::new()),
            Some(Value::Table(t)) => Ok(t),
            Some(other) => Err(file_error(
                name,
                format!("{key} must be a table, found {}", other.type_str()),
            )),
        }
    };
    let default = take("__default__")?;
    let teams = take("teams")?;
    let dags = take("dags")?;
    if let Some(key) = table.keys().next() {
        return Err(file_error(
            name,
            format!(
                "unknown section {key:?}: expected [__default__], [teams.<team>] or [dags.<dag_id>]"
            ),
        ));
    }
    Ok(ParamsFile {
        name: name.to_owned(),
        default,
        teams,
        dags,
    })
}

/// Every key of `layer` must exist in `defaults` with a value of the same type.
fn check_layer(defaults: &Table, layer: &Table, origin: &str) -> Result<(), AirflowError> {
    let mut stack: Vec<(String, &Table)> = vec![(String::new(), layer)];
    while let Some((prefix, table)) = stack.pop() {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if is_free_form(&key) {
                continue;
            }
            match (lookup(defaults, &key), v) {
                (None, _) => return Err(unknown(defaults, origin, &key)),
                (Some(Value::Table(_)), Value::Table(t)) => stack.push((key, t)),
                (Some(d), v) if d.same_type(v) => {}
                (Some(d), v) => {
                    return Err(AirflowError::BadParam {
                        origin: origin.to_owned(),
                        key,
                        value: v.to_string(),
                        reason: format!("expected {}, found {}", d.type_str(), v.type_str()),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Inside a free-form table (not the table itself, which must stay a table).
fn is_free_form(key: &str) -> bool {
    FREE_FORM.iter().any(|f| {
        key.strip_prefix(f)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

fn lookup<'t>(table: &'t Table, key: &str) -> Option<&'t Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

fn unknown(defaults: &Table, origin: &str, key: &str) -> AirflowError {
    AirflowError::UnknownParam {
        origin: origin.to_owned(),
        key: key.to_owned(),
        known: leaf_keys(defaults).join(", "),
    }
}

fn leaf_keys(table: &Table) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in table {
        match v {
            Value::Table(t) if !FREE_FORM.contains(&k.as_str()) && !t.is_empty() => {
                out.extend(leaf_keys(t).into_iter().map(|sub| format!("{k}.{sub}")));
            }
            Value::Table(_) => out.push(format!("{k}.*")),
            _ => out.push(k.clone()),
        }
    }
    out
}

/// A `--param` value typed as its default: strings as given, numbers and booleans parsed,
/// arrays as TOML (`["a", "b"]`); free-form keys take a TOML value, else the text.
fn coerce(defaults: &Table, key: &str, text: &str) -> Result<Value, AirflowError> {
    let bad = |reason: String| AirflowError::BadParam {
        origin: "--param".to_owned(),
        key: key.to_owned(),
        value: text.to_owned(),
        reason,
    };
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(bad("empty key part".to_owned()));
    }
    if is_free_form(key) {
        return Ok(parse_toml_value(text).unwrap_or_else(|| Value::String(text.to_owned())));
    }
    let Some(default) = lookup(defaults, key) else {
        return Err(unknown(defaults, "--param", key));
    };
    match default {
        Value::String(_) => Ok(Value::String(text.to_owned())),
        Value::Table(_) => Err(bad("is a table: set one of its keys".to_owned())),
        other => match parse_toml_value(text) {
            Some(v) if v.same_type(other) => Ok(v),
            _ => Err(bad(format!("expected {}", other.type_str()))),
        },
    }
}

fn parse_toml_value(text: &str) -> Option<Value> {
    format!("v = {text}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
}

fn merge(into: &mut Table, layer: &Table) {
    for (k, v) in layer {
        match (into.get_mut(k), v) {
            (Some(Value::Table(existing)), Value::Table(t)) => merge(existing, t),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

fn set(table: &mut Table, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(next) = entry else { return };
        current = next;
    }
    current.insert(last.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        assert!(DEFAULTS.parse::<Table>().is_ok());
        assert_eq!(
            lookup(&defaults(), "command.flavor").and_then(Value::as_str),
            Some("chronoflow")
        );
    }

    #[test]
    fn layers_merge_in_order_default_team_dag_command_line() {
        let file = r#"
[__default__]
command.flavor = "zipline"
dag.owner = "a"
vars.x = 1
[teams.t]
dag.owner = "b"
[dags.d]
command.enable_debug = true
"#;
        let p = Params::new(
            Some(("p.toml", file)),
            &["dag.tags=[\"x\"]".to_owned(), "command.env.K=v".to_owned()],
        )
        .unwrap();
        let m = p.for_dag("d", Some("t")).unwrap();
        assert_eq!(
            lookup(&m, "command.flavor").unwrap().as_str(),
            Some("zipline")
        );
        assert_eq!(lookup(&m, "dag.owner").unwrap().as_str(), Some("b"));
        assert_eq!(
            lookup(&m, "command.enable_debug").unwrap().as_bool(),
            Some(true)
        );
        assert_eq!(lookup(&m, "vars.x").unwrap().as_integer(), Some(1));
        assert_eq!(lookup(&m, "command.env.K").unwrap().as_str(), Some("v"));
        assert_eq!(lookup(&m, "dag.tags").unwrap().as_array().unwrap().len(), 1);
        let other = p.for_dag("e", Some("u")).unwrap();
        assert_eq!(lookup(&other, "dag.owner").unwrap().as_str(), Some("a"));
        assert_eq!(
            lookup(&other, "command.enable_debug").unwrap().as_bool(),
            Some(false)
        );
    }

    #[test]
    fn unknown_and_mistyped_params_are_errors_naming_them() {
        let e = Params::new(None, &["command.flavour=zipline".to_owned()]).unwrap_err();
        assert!(
            e.to_string().contains("unknown param \"command.flavour\""),
            "{e}"
        );
        let e = Params::new(None, &["command.enable_debug=yes".to_owned()]).unwrap_err();
        assert!(e.to_string().contains("expected boolean"), "{e}");
        let e = Params::new(Some(("p.toml", "[__default__]\nsensor.mod = 1\n")), &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("p.toml [__default__]: unknown param \"sensor.mod\""),
            "{e}"
        );
        let e = Params::new(
            Some(("p.toml", "[dags.d]\ncommand.flink_parallelism = \"8\"\n")),
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("expected integer, found string"),
            "{e}"
        );
        let e = Params::new(Some(("p.toml", "[dag]\nowner = 1\n")), &[]).unwrap_err();
        assert!(e.to_string().contains("unknown section \"dag\""), "{e}");
        let e = Params::new(Some(("p.toml", "x = [")), &[]).unwrap_err();
        assert!(e.to_string().starts_with("params file p.toml:"), "{e}");
    }

    #[test]
    fn sections_must_name_dags_and_teams_of_the_plan() {
        let p = Params::new(
            Some(("p.toml", "[dags.chronon_nope]\ndag.owner = \"x\"\n")),
            &[],
        )
        .unwrap();
        let e = p
            .check_sections(&BTreeSet::from(["chronon_metadata"]), &BTreeSet::new())
            .unwrap_err();
        assert!(
            e.to_string().contains("[dags.chronon_nope] names no DAG"),
            "{e}"
        );
    }
}
