//! Iceberg catalogs: where a table's current metadata is. The SQL catalog (pyiceberg's
//! `SqlCatalog`, Java's `JdbcCatalog`) keeps a pointer to the metadata file in a row of
//! `iceberg_tables`; a REST catalog answers `loadTable` with the metadata itself.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use crate::warehouse::formats::{CatalogSpec, CatalogType};

/// One `[warehouse.catalogs.<key>]` entry, connected on first use and shared by its tables.
pub(crate) struct Catalog {
    key: String,
    spec: CatalogSpec,
    pool: Mutex<Option<AnyPool>>,
    rest: Mutex<Option<Arc<RestConfig>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Where a table's current metadata is.
pub(crate) enum Pointer {
    /// A metadata file to read (SQL catalogs).
    File(String),
    /// The metadata itself (REST catalogs), and its location when the catalog gives one.
    Inline {
        location: Option<String>,
        metadata: serde_json::Value,
    },
}

/// What a REST catalog's `GET /v1/config` says about building URLs.
struct RestConfig {
    /// `<uri>/v1/` or `<uri>/v1/<prefix>/`.
    base: String,
    /// Between namespace levels in a URL (percent-encoded).
    separator: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Catalog {
    pub(crate) fn new(key: &str, spec: &CatalogSpec) -> Catalog {
        Catalog {
            key: key.to_owned(),
            spec: spec.clone(),
            pool: Mutex::default(),
            rest: Mutex::default(),
        }
    }

    /// The catalog's config section, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("[warehouse.catalogs.{}]", self.key)
    }

    /// The table's current metadata pointer, `None` when the catalog has no such table.
    pub(crate) async fn load(
        &self,
        namespace: &[String],
        table: &str,
    ) -> Result<Option<Pointer>, String> {
        match self.spec.kind {
            CatalogType::Sql => self.load_sql(namespace, table).await,
            CatalogType::Rest => self.load_rest(namespace, table).await,
        }
    }

    async fn pool(&self) -> Result<AnyPool, String> {
        if let Some(pool) = &*self.pool.lock().unwrap_or_else(PoisonError::into_inner) {
            return Ok(pool.clone());
        }
        sqlx::any::install_default_drivers();
        let url = sql_url(&self.spec.uri)?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&url)
            .await
            .map_err(|e| format!("cannot open {}: {e}", redacted(&self.spec.uri)))?;
        *self.pool.lock().unwrap_or_else(PoisonError::into_inner) = Some(pool.clone());
        Ok(pool)
    }

    async fn load_sql(&self, namespace: &[String], table: &str) -> Result<Option<Pointer>, String> {
        let pool = self.pool().await?;
        let name = self.spec.catalog_name.as_deref().unwrap_or(&self.key);
        // No filter on iceberg_type: catalogs created before it existed lack the column (a
        // view's metadata is refused when parsed).
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT metadata_location FROM iceberg_tables \
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
        )
        .bind(name)
        .bind(namespace.join("."))
        .bind(table)
        .fetch_optional(&pool)
        .await
        .map_err(|e| format!("{}: reading iceberg_tables: {e}", redacted(&self.spec.uri)))?;
        match row {
            None => Ok(None),
            Some((Some(location),)) => Ok(Some(Pointer::File(location))),
            Some((None,)) => Err(format!(
                "{}.{table} has no metadata_location in catalog {name:?} (never committed)",
                namespace.join(".")
            )),
        }
    }

    async fn rest_config(&self) -> Result<Arc<RestConfig>, String> {
        if let Some(config) = &*self.rest.lock().unwrap_or_else(PoisonError::into_inner) {
            return Ok(config.clone());
        }
        let token =
            match &self.spec.token_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    format!("`token_env`: the environment variable {var} is not set")
                })?),
                None => None,
            };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let uri = self.spec.uri.trim_end_matches('/');
        let mut url = url::Url::parse(&format!("{uri}/v1/config"))
            .map_err(|e| format!("`uri` {uri:?} is not a URL: {e}"))?;
        if let Some(w) = &self.spec.warehouse {
            url.query_pairs_mut().append_pair("warehouse", w);
        }
        let body = get_json(&http, token.as_deref(), url.as_str())
            .await?
            .ok_or_else(|| format!("GET {url}: 404: is {uri} an Iceberg REST catalog?"))?;
        let mut props = std::collections::HashMap::new();
        for key in ["defaults", "overrides"] {
            if let Some(map) = body.get(key).and_then(serde_json::Value::as_object) {
                for (k, v) in map {
                    if let Some(v) = v.as_str() {
                        props.insert(k.clone(), v.to_owned());
                    }
                }
            }
        }
        let config = Arc::new(RestConfig {
            base: rest_base(
                props.get("uri").map_or(uri, String::as_str),
                props.get("prefix").map(String::as_str),
            ),
            separator: props
                .get("namespace-separator")
                .map_or_else(|| "%1F".to_owned(), |s| encoded_separator(s)),
            http,
            token,
        });
        *self.rest.lock().unwrap_or_else(PoisonError::into_inner) = Some(config.clone());
        Ok(config)
    }

    async fn load_rest(
        &self,
        namespace: &[String],
        table: &str,
    ) -> Result<Option<Pointer>, String> {
        let config = self.rest_config().await?;
        // snapshots=refs: only the snapshots branches and tags point at (the current one among
        // them), a smaller answer for tables with a long history.
        let url = format!(
            "{}?snapshots=refs",
            table_url(&config.base, &config.separator, namespace, table)
        );
        let Some(mut body) = get_json(&config.http, config.token.as_deref(), &url).await? else {
            return Ok(None);
        };
        let location = body
            .get("metadata-location")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let metadata = body
            .get_mut("metadata")
            .map(serde_json::Value::take)
            .ok_or_else(|| format!("GET {url}: the answer has no \"metadata\""))?;
        Ok(Some(Pointer::Inline { location, metadata }))
    }
}

/// A GET's JSON body; `None` on 404.
async fn get_json(
    http: &reqwest::Client,
    token: Option<&str>,
    url: &str,
) -> Result<Option<serde_json::Value>, String> {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let text = response
        .text()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        // The REST spec's error model: {"error": {"message", "type", "code"}}.
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| text.chars().take(300).collect());
        return Err(format!("GET {url}: HTTP {status}: {message}"));
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("GET {url}: the answer is not JSON: {e}"))
}

/// `<uri>/v1/` or `<uri>/v1/<prefix>/`.
fn rest_base(uri: &str, prefix: Option<&str>) -> String {
    let uri = uri.trim_end_matches('/');
    match prefix
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
    {
        Some(prefix) => format!("{uri}/v1/{prefix}/"),
        None => format!("{uri}/v1/"),
    }
}

fn table_url(base: &str, separator: &str, namespace: &[String], table: &str) -> String {
    let levels: Vec<String> = namespace.iter().map(|l| encode(l)).collect();
    format!(
        "{base}namespaces/{}/tables/{}",
        levels.join(separator),
        encode(table)
    )
}

/// The configured separator as it goes into a URL (the config gives it URL-encoded, `%1F`).
fn encoded_separator(s: &str) -> String {
    if s.contains('%') {
        s.to_owned()
    } else {
        encode(s)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a path segment).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL sqlx opens: SQLAlchemy's `+driver` dropped (`postgresql+psycopg2://`), and SQLite
/// read-only, so that a wrong path fails instead of creating an empty catalog.
fn sql_url(uri: &str) -> Result<String, String> {
    let (scheme, rest) = uri
        .split_once("://")
        .or_else(|| uri.split_once(':'))
        .ok_or_else(|| format!("`uri` {uri:?} is not sqlite:///path or postgres://host/db"))?;
    let scheme = scheme.split('+').next().unwrap_or(scheme);
    match scheme {
        "sqlite" => {
            let sep = if rest.contains('?') { '&' } else { '?' };
            Ok(format!("sqlite://{rest}{sep}mode=ro"))
        }
        "postgres" | "postgresql" => Ok(format!("postgres://{rest}")),
        other => Err(format!(
            "`uri` {}: the SQL catalog is on sqlite or postgres, not {other}",
            redacted(uri)
        )),
    }
}

/// `uri` without a password, for messages.
fn redacted(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_urls_encode_namespace_levels_and_the_prefix() {
        let ns = vec!["lake".to_owned(), "sub".to_owned()];
        let base = rest_base("http://h:1/", Some("cat1"));
        assert_eq!(
            table_url(&base, "%1F", &ns, "by date"),
            "http://h:1/v1/cat1/namespaces/lake%1Fsub/tables/by%20date"
        );
        let base = rest_base("http://h:1", Some(""));
        assert_eq!(
            table_url(&base, &encoded_separator("%1F"), &ns[..1], "t"),
            "http://h:1/v1/namespaces/lake/tables/t"
        );
        assert_eq!(encoded_separator("."), ".");
    }

    #[test]
    fn sql_urls_as_sqlx_takes_them() {
        assert_eq!(
            sql_url("sqlite:///srv/cat.db").unwrap(),
            "sqlite:///srv/cat.db?mode=ro"
        );
        assert_eq!(
            sql_url("postgresql+psycopg2://u:p@h/db").unwrap(),
            "postgres://u:p@h/db"
        );
        assert!(sql_url("mysql://h/db").unwrap_err().contains("mysql"));
        assert_eq!(
            redacted("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
