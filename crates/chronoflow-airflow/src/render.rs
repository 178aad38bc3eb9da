//! The minijinja environment: strict undefined (a typo in a template is an error naming its
//! line, not an empty string in a DAG file), and the filters DAG templates need.

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

use crate::{AirflowError, Template};

/// The built-in template: one Airflow 3 DAG file (see docs/airflow.md).
pub const DEFAULT_TEMPLATE: &str = include_str!("../templates/dag.py.j2");
const DEFAULT_NAME: &str = "dag.py.j2";

pub struct Renderer {
    env: Environment<'static>,
    name: String,
}

impl Renderer {
    pub fn new(template: Option<Template<'_>>) -> Result<Renderer, AirflowError> {
        let (name, source) = match template {
            Some(t) => (t.name.to_owned(), t.source.to_owned()),
            None => (DEFAULT_NAME.to_owned(), DEFAULT_TEMPLATE.to_owned()),
        };
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_filter("py", py);
        env.add_filter("shell", shell);
        env.add_template_owned(name.clone(), source)
            .map_err(|e| template_error(&name, &e))?;
        Ok(Renderer { env, name })
    }

    pub fn render(&self, context: &serde_json::Value) -> Result<String, AirflowError> {
        let template = self
            .env
            .get_template(&self.name)
            .map_err(|e| template_error(&self.name, &e))?;
        let mut text = template
            .render(Value::from_serialize(context))
            .map_err(|e| template_error(&self.name, &e))?;
        // A file ends with a newline, whatever the template's last block trimmed.
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }
}

fn template_error(name: &str, e: &Error) -> AirflowError {
    let mut message = e.kind().to_string();
    if let Some(detail) = e.detail() {
        message = format!("{message}: {detail}");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        source = inner.source();
    }
    AirflowError::Template {
        name: e.name().unwrap_or(name).to_owned(),
        line: e.line().unwrap_or(0),
        message,
    }
}

/// A value as a Python literal: `None`, `True`, numbers, strings, lists and dicts (keys in the
/// order the value has them, which is sorted for everything the export builds).
fn py(value: Value) -> Result<String, Error> {
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("py: {e}")))?;
    let mut out = String::new();
    write_py(&json, &mut out);
    Ok(out)
}

fn write_py(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value as J;
    match value {
        J::Null => out.push_str("None"),
        J::Bool(true) => out.push_str("True"),
        J::Bool(false) => out.push_str("False"),
        J::Number(n) => out.push_str(&n.to_string()),
        // A JSON string literal is a Python one (same escapes; the file is UTF-8).
        J::String(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(item, out);
            }
            out.push(']');
        }
        J::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_py(v, out);
            }
            out.push('}');
        }
    }
}

/// A list of arguments as one shell command line (quoted where needed).
fn shell(value: Value) -> Result<String, Error> {
    let argv: Vec<String> = serde_json::to_value(&value)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "shell: expected a list of strings",
            )
        })?;
    Ok(crate::command::shell_join(&argv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_literals() {
        let v = Value::from_serialize(serde_json::json!({"a": [1, true, null, "x\"\n"]}));
        assert_eq!(py(v).unwrap(), "{\"a\": [1, True, None, \"x\\\"\\n\"]}");
    }

    #[test]
    fn an_undefined_variable_names_the_template_line() {
        let r = Renderer::new(Some(Template {
            name: "mine.j2",
            source: "line one\n{{ dag.dag_id }}\n{{ dag.nope }}\n",
        }))
        .unwrap();
        let e = r
            .render(&serde_json::json!({"dag": {"dag_id": "d"}}))
            .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("template mine.j2, line 3:"), "{text}");
        assert!(text.contains("undefined"), "{text}");
    }

    #[test]
    fn a_broken_template_is_an_error_naming_its_line() {
        let e = Renderer::new(Some(Template {
            name: "broken.j2",
            source: "ok\n{% for x in %}\n",
        }))
        .err()
        .unwrap();
        assert!(
            e.to_string().starts_with("template broken.j2, line 2:"),
            "{e}"
        );
    }
}
