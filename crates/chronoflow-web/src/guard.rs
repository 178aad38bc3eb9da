//! The guard in front of every route on the API port, and sign-in.
//!
//! In order, for each request:
//! 1. **Host.** The `Host` header must be an IP literal, `localhost`, or a name given with
//!    `--allowed-host`: a page on a rebinding domain (`evil.example` resolving to 127.0.0.1)
//!    reaches the socket but not the API.
//! 2. **Cross-site.** A request that changes something (any method but GET/HEAD/OPTIONS) is
//!    refused when the browser says it comes from another site (`Sec-Fetch-Site`) or its
//!    `Origin` is not this host. A cross-site `<form method=post>` carries both.
//! 3. **Who.** A bearer token (`Authorization: Bearer cft_…`), or the UI's session cookie; a
//!    cookie-authenticated change must also carry the session's `X-CSRF-Token`. Without any
//!    live token in the store, everyone is the local admin (the listener is loopback, see
//!    [`check_listener`]).
//! 4. **May it.** Reading needs any token; changing a DAG (its routes under `/api/v1/dags/`)
//!    needs an operator of the DAG's team or an admin.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chronoflow_scheduler::store::TokenRow;
use serde::Deserialize;
use serde_json::json;

use crate::WebState;
use crate::error::{Result, WebError};

/// The UI's session cookie.
const SESSION_COOKIE: &str = "chronoflow_session";
/// How long a UI session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long "are there tokens?" is cached: revoking the last token or creating the first one
/// takes effect within this.
const TOKENS_CACHE: Duration = Duration::from_secs(2);

/// How the guard is configured (from the command line).
#[derive(Debug, Clone, Default)]
pub struct GuardOptions {
    /// Host names accepted besides IP literals and `localhost`.
    pub allowed_hosts: Vec<String>,
}

pub struct Guard {
    allowed_hosts: Vec<String>,
    /// The CSRF token of the local (no tokens) mode, fresh per process.
    local_csrf: String,
    tokens_live: Mutex<Option<(Instant, bool)>>,
}

impl Guard {
    pub fn new(options: GuardOptions) -> Result<Guard> {
        let mut buf = [0u8; 16];
        getrandom(&mut buf)?;
        Ok(Guard {
            allowed_hosts: options
                .allowed_hosts
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            local_csrf: buf.iter().map(|b| format!("{b:02x}")).collect(),
            tokens_live: Mutex::new(None),
        })
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        name == "localhost" || name.parse::<IpAddr>().is_ok() || self.allowed_hosts.contains(&name)
    }

    async fn auth_required(&self, ctx: &crate::WebContext) -> Result<bool> {
        if let Ok(cached) = self.tokens_live.lock()
            && let Some((at, live)) = *cached
            && at.elapsed() < TOKENS_CACHE
        {
            return Ok(live);
        }
        let live = ctx.store.has_live_tokens().await?;
        if let Ok(mut cached) = self.tokens_live.lock() {
            *cached = Some((Instant::now(), live));
        }
        Ok(live)
    }
}

fn getrandom(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf)
        .map_err(|e| WebError::Randomness(format!("no randomness for the CSRF token: {e}")))
}

/// `host[:port]` or `[v6]:port` → the host part.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// Refuses a listener that would serve the API to the network without authentication.
pub fn check_listener(addr: SocketAddr, tokens_live: bool, insecure_no_auth: bool) -> Result<()> {
    if addr.ip().is_loopback() || tokens_live || insecure_no_auth {
        return Ok(());
    }
    Err(WebError::Unsafe(format!(
        "refusing to listen on {addr} without authentication: create a token (chronoflow tokens create --name NAME --team TEAM --role admin), listen on 127.0.0.1, or pass --insecure-no-auth"
    )))
}

/// Who made a request, as the routes see it (a request extension).
#[derive(Debug, Clone)]
pub struct Principal {
    /// `None` in local mode (no tokens configured).
    pub token: Option<TokenRow>,
    pub csrf: String,
}

impl Principal {
    pub fn may_operate(&self, team: &str) -> bool {
        self.token.as_ref().is_none_or(|t| t.may_operate(team))
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Routes anyone may reach: the UI's shell and assets (they hold no data), sign-in, health.
fn is_public(path: &str) -> bool {
    path == "/"
        || path == "/ui"
        || (path.starts_with("/ui/") && !path.starts_with("/ui/logout"))
        || path == "/api/v1/health"
        || path == "/api/v1/openapi.json"
}

/// The middleware: see the module documentation.
pub async fn check(State(ctx): State<WebState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match admit(&ctx, request.headers(), &method, &path).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            as_json_error(next.run(request).await).await
        }
        Err(e) => e.into_response(),
    }
}

/// Rejections of axum's extractors (a query string or body that does not parse) answer plain
/// text; every error on this port answers `{"error": ...}`, so pages and clients read one shape.
async fn as_json_error(response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !response.status().is_client_error() || !plain {
        return response;
    }
    let status = response.status();
    // Rejection texts are short; a bigger body is not a rejection and is passed on whole.
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            // 422 (a body of the wrong shape) reads as the 400 it is for our clients.
            let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
                StatusCode::BAD_REQUEST
            } else {
                status
            };
            (status, Json(json!({ "error": text }))).into_response()
        }
        Err(_) => Response::from_parts(parts, axum::body::Body::empty()),
    }
}

/// Takes the request's parts, not the request: its body is not `Sync`, and the future must be
/// `Send`.
async fn admit(
    ctx: &WebState,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
) -> Result<Principal> {
    let host = header_str(headers, header::HOST).unwrap_or("");
    if !ctx.guard.host_allowed(host) {
        return Err(WebError::Forbidden(format!(
            "Host {host:?} is not served here (pass --allowed-host {} to allow it)",
            host_name(host)
        )));
    }
    if !is_safe(method) {
        if let Some(site) = header_str(headers, "sec-fetch-site")
            && site != "same-origin"
            && site != "none"
        {
            return Err(WebError::Forbidden(format!(
                "cross-site request refused ({site})"
            )));
        }
        if let Some(origin) = header_str(headers, header::ORIGIN) {
            let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
            if !origin_host.eq_ignore_ascii_case(host) {
                return Err(WebError::Forbidden(format!(
                    "cross-origin request refused (Origin {origin})"
                )));
            }
        }
    }
    let now = ctx.clock.now_ms();
    let principal = if let Some(auth) = header_str(headers, header::AUTHORIZATION) {
        let Some(text) = auth.strip_prefix("Bearer ") else {
            return Err(WebError::Unauthorized(
                "the Authorization header must be `Bearer <token>`".into(),
            ));
        };
        let token = ctx.store.verify_token(text).await?.ok_or_else(|| {
            WebError::Unauthorized("the token is not valid or was revoked".into())
        })?;
        let _ = ctx.store.touch_token(&token.token_id, now).await;
        Some(Principal {
            token: Some(token),
            csrf: String::new(),
        })
    } else if let Some(value) = cookie(headers, SESSION_COOKIE) {
        match ctx.store.session(value, now).await? {
            Some(session) => {
                if !is_safe(method) && path != "/ui/login" {
                    let sent = header_str(headers, "x-csrf-token").unwrap_or("");
                    if sent != session.csrf {
                        return Err(WebError::Forbidden(
                            "missing or wrong X-CSRF-Token for this session".into(),
                        ));
                    }
                }
                Some(Principal {
                    token: Some(session.token),
                    csrf: session.csrf,
                })
            }
            None => None,
        }
    } else {
        None
    };
    let principal = match principal {
        Some(p) => p,
        None if !ctx.guard.auth_required(ctx).await? => Principal {
            token: None,
            csrf: ctx.guard.local_csrf.clone(),
        },
        None if is_public(path) => Principal {
            token: None,
            csrf: String::new(),
        },
        None => {
            return Err(WebError::Unauthorized(
                "sign in: this API needs a token (Authorization: Bearer cft_…)".into(),
            ));
        }
    };
    if !is_safe(method)
        && let Some(dag_id) = dag_of_change(path)
    {
        let team = match ctx.store.dag(dag_id).await {
            Ok(dag) => dag.team,
            // Unknown DAG: the route answers 404.
            Err(_) => return Ok(principal),
        };
        if !principal.may_operate(&team) {
            let who = principal
                .token
                .as_ref()
                .map(|t| format!("token {:?} ({} of {})", t.name, t.role.as_str(), t.team))
                .unwrap_or_default();
            return Err(WebError::Forbidden(format!(
                "{who} may not change DAG {dag_id:?} of team {team:?}: that needs an operator token of the team or an admin token"
            )));
        }
    }
    Ok(principal)
}

/// The DAG a changing request acts on: `/api/v1/dags/{dag_id}/...`.
fn dag_of_change(path: &str) -> Option<&str> {
    path.strip_prefix("/api/v1/dags/")?.split('/').next()
}

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/ui/me", get(me))
        .route("/ui/login", get(crate::assets::index).post(login))
        .route("/ui/logout", post(logout))
}

async fn me(
    State(ctx): State<WebState>,
    axum::Extension(p): axum::Extension<Principal>,
) -> Result<Json<serde_json::Value>> {
    let auth = ctx.guard.auth_required(&ctx).await?;
    Ok(Json(json!({
        "auth": auth,
        "name": p.token.as_ref().map(|t| t.name.clone()),
        "team": p.token.as_ref().map(|t| t.team.clone()),
        "role": p.token.as_ref().map(|t| t.role.as_str()),
        "csrf": p.csrf,
    })))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// Only paths of the UI itself: a `next` elsewhere would make sign-in an open redirect.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if (n == "/ui" || n.starts_with("/ui/")) && !n.starts_with("//") => n,
        _ => "/ui",
    }
}

async fn login(State(ctx): State<WebState>, Form(form): Form<LoginForm>) -> Result<Response> {
    let next = safe_next(form.next.as_deref()).to_owned();
    let Some(token) = ctx.store.verify_token(&form.token).await? else {
        let to = format!(
            "/ui/login?error={}&next={}",
            encode("that token is not valid or was revoked"),
            encode(&next)
        );
        return Ok(Redirect::to(&to).into_response());
    };
    let now = ctx.clock.now_ms();
    let ttl = SESSION_TTL.as_millis() as i64;
    let (session, _csrf) = ctx.store.create_session(&token.token_id, ttl, now).await?;
    let _ = ctx.store.touch_token(&token.token_id, now).await;
    let cookie = format!(
        "{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    Ok((
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, next)],
    )
        .into_response())
}

async fn logout(State(ctx): State<WebState>, headers: HeaderMap) -> Result<Response> {
    if let Some(value) = cookie(&headers, SESSION_COOKIE) {
        ctx.store.end_session(value).await?;
    }
    let cookie = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    Ok((
        StatusCode::OK,
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "signed_out": true })),
    )
        .into_response())
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_drop_ports() {
        assert_eq!(host_name("127.0.0.1:8686"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8686"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
    }

    #[test]
    fn rebinding_hosts_are_refused() {
        let guard = Guard::new(GuardOptions {
            allowed_hosts: vec!["chronoflow.internal".into()],
        })
        .expect("guard");
        assert!(guard.host_allowed("127.0.0.1:8686"));
        assert!(guard.host_allowed("localhost:8686"));
        assert!(guard.host_allowed("[::1]:8686"));
        assert!(guard.host_allowed("Chronoflow.Internal:80"));
        assert!(!guard.host_allowed("evil.example:8686"));
        assert!(!guard.host_allowed(""));
    }

    #[test]
    fn sign_in_redirects_stay_in_the_ui() {
        assert_eq!(safe_next(Some("/ui/dags/x")), "/ui/dags/x");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui");
        assert_eq!(safe_next(Some("//evil.example")), "/ui");
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn only_dag_routes_are_team_scoped() {
        assert_eq!(dag_of_change("/api/v1/dags/d1/pause"), Some("d1"));
        assert_eq!(dag_of_change("/api/v1/ui/configs/check"), None);
    }

    #[test]
    fn non_loopback_listeners_need_auth() {
        let any: SocketAddr = "0.0.0.0:8686".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:8686".parse().expect("addr");
        assert!(check_listener(any, false, false).is_err());
        assert!(check_listener(any, true, false).is_ok());
        assert!(check_listener(any, false, true).is_ok());
        assert!(check_listener(local, false, false).is_ok());
    }
}
