//! Chronon's topic strings: `name`, optionally `kafka://name`, then `/key=value` arguments
//! (`events.returns/fields=ts,user_id/host=kafka/port=9092`).

use std::collections::BTreeMap;

/// How a topic's record values are encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// A JSON object per record (the default).
    Json,
    /// Comma-separated values in the order of the `fields` argument (Chronon's quickstart).
    Csv { fields: Vec<String> },
    /// An Avro datum of the schema in the file `schema` names (or `--avro-schema`); with
    /// `framing=confluent`, after the 5-byte Confluent header (magic byte, schema id).
    Avro { confluent: bool },
}

/// A parsed topic string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    /// `host:port` from the `host`/`port` arguments, if given (`--kafka-brokers` wins).
    pub broker: Option<String>,
    pub format: Format,
    /// Every argument, as written.
    pub args: BTreeMap<String, String>,
}

impl Topic {
    pub fn parse(text: &str) -> Result<Topic, String> {
        let rest = text.trim();
        let rest = rest.strip_prefix("kafka://").unwrap_or(rest);
        let mut parts = rest.split('/');
        let name = parts.next().unwrap_or_default().trim();
        if name.is_empty() {
            return Err(format!("topic {text:?} has no name"));
        }
        let mut args = BTreeMap::new();
        for part in parts.filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!(
                    "topic {text:?}: argument {part:?} is not key=value"
                ));
            };
            args.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        let broker = match (args.get("host"), args.get("port")) {
            (Some(host), Some(port)) => Some(format!("{host}:{port}")),
            (Some(host), None) => Some(format!("{host}:9092")),
            _ => None,
        };
        let serde = args
            .get("serde")
            .or_else(|| args.get("format"))
            .map(|s| s.to_ascii_lowercase());
        let format = match serde.as_deref() {
            None | Some("json") => Format::Json,
            Some("csv") => {
                let fields: Vec<String> = args
                    .get("fields")
                    .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect())
                    .unwrap_or_default();
                if fields.is_empty() || fields.iter().any(String::is_empty) {
                    return Err(format!(
                        "topic {text:?}: serde=csv needs fields=<comma-separated names>"
                    ));
                }
                Format::Csv { fields }
            }
            Some("avro") => Format::Avro {
                confluent: args.get("framing").is_some_and(|f| f == "confluent"),
            },
            Some(other) => {
                return Err(format!(
                    "topic {text:?}: serde={other} is not one of json, csv, avro"
                ));
            }
        };
        Ok(Topic {
            name: name.to_owned(),
            broker,
            format,
            args,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quickstart_topic() {
        let t = Topic::parse(
            "events.returns/fields=ts,return_id,user_id,product_id,refund_amt/host=kafka/port=9092",
        )
        .unwrap();
        assert_eq!(t.name, "events.returns");
        assert_eq!(t.broker.as_deref(), Some("kafka:9092"));
        assert_eq!(t.format, Format::Json);
        assert_eq!(
            t.args["fields"],
            "ts,return_id,user_id,product_id,refund_amt"
        );
    }

    #[test]
    fn formats_and_errors() {
        let t = Topic::parse("kafka://clicks/serde=csv/fields=a,b").unwrap();
        assert_eq!(t.name, "clicks");
        assert_eq!(
            t.format,
            Format::Csv {
                fields: vec!["a".into(), "b".into()]
            }
        );
        let t = Topic::parse("clicks/serde=avro/framing=confluent/schema=c.avsc").unwrap();
        assert_eq!(t.format, Format::Avro { confluent: true });
        assert!(Topic::parse("/host=x").unwrap_err().contains("no name"));
        assert!(Topic::parse("t/oops").unwrap_err().contains("key=value"));
        assert!(
            Topic::parse("t/serde=xml")
                .unwrap_err()
                .contains("serde=xml")
        );
        assert!(Topic::parse("t/serde=csv").unwrap_err().contains("fields"));
    }
}
