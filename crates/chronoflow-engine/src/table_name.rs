use std::fmt;
use std::str::FromStr;

use crate::error::EngineError;

/// `namespace.table`, both parts `[A-Za-z0-9_]+`: safe as directory names on every store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    pub namespace: String,
    pub table: String,
}

impl TableName {
    pub fn parse(name: &str) -> Result<Self, EngineError> {
        let invalid = || EngineError::InvalidTableName {
            name: name.to_owned(),
        };
        let (namespace, table) = name.split_once('.').ok_or_else(invalid)?;
        let ok =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok(namespace) || !ok(table) {
            return Err(invalid());
        }
        Ok(TableName {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
        })
    }
}

impl FromStr for TableName {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TableName::parse(s)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_dot_table_only() {
        let t = TableName::parse("data.purchases").unwrap();
        assert_eq!(
            (t.namespace.as_str(), t.table.as_str()),
            ("data", "purchases")
        );
        for bad in [
            "purchases",
            "data.",
            ".t",
            "a.b.c",
            "a/b.c",
            "a.b c",
            "../x.y",
        ] {
            let err = TableName::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
