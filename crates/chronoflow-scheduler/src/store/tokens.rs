//! API tokens and the web UI's sessions.
//!
//! A token reads `cft_<id>_<secret>`; only the SHA-256 of the secret is stored, so a copy of
//! the state store gives no usable token. A session (the UI's cookie) is a random id, stored
//! hashed too, bound to one token and carrying its CSRF token; revoking the token ends them.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use crate::error::{Result, SchedulerError};

/// What a token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything the API and UI show.
    Viewer,
    /// Also trigger, pause, clear, mark and stop — for DAGs of the token's team.
    Operator,
    /// Also act on every team's DAGs.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Viewer, Role::Operator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// The team scope that means every team.
pub const ALL_TEAMS: &str = "*";

#[derive(Debug, Clone, Serialize)]
pub struct TokenRow {
    pub token_id: String,
    pub name: String,
    /// A team, or `*` for all teams.
    pub team: String,
    pub role: Role,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

impl TokenRow {
    /// Whether this token may change DAGs of `team`.
    pub fn may_operate(&self, team: &str) -> bool {
        match self.role {
            Role::Viewer => false,
            Role::Admin => true,
            Role::Operator => self.team == ALL_TEAMS || self.team == team,
        }
    }
}

fn token_row(r: &AnyRow) -> Result<TokenRow> {
    let role: String = r
        .try_get("role")
        .map_err(SchedulerError::db("reading a token"))?;
    Ok(TokenRow {
        token_id: r
            .try_get("token_id")
            .map_err(SchedulerError::db("reading a token"))?,
        name: r
            .try_get("name")
            .map_err(SchedulerError::db("reading a token"))?,
        team: r
            .try_get("team")
            .map_err(SchedulerError::db("reading a token"))?,
        role: Role::parse(&role).ok_or_else(|| {
            SchedulerError::Schema(format!("a stored token has an unknown role {role:?}"))
        })?,
        created_ms: r
            .try_get("created_ms")
            .map_err(SchedulerError::db("reading a token"))?,
        revoked_ms: r
            .try_get("revoked_ms")
            .map_err(SchedulerError::db("reading a token"))?,
        last_used_ms: r
            .try_get("last_used_ms")
            .map_err(SchedulerError::db("reading a token"))?,
    })
}

const TOKEN_COLUMNS: &str = "token_id, name, team, role, created_ms, revoked_ms, last_used_ms";

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| {
        SchedulerError::Io(std::io::Error::other(format!(
            "no randomness for a token: {e}"
        )))
    })?;
    Ok(hex(&buf))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Compares two equal-length hex digests without an early exit, so timing tells nothing.
fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A session as the UI's guard sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: TokenRow,
    pub csrf: String,
}

impl Store {
    /// Creates a token; returns it with the secret text, shown once.
    pub async fn create_token(
        &self,
        name: &str,
        team: &str,
        role: Role,
        now: i64,
    ) -> Result<(TokenRow, String)> {
        if name.trim().is_empty() || team.trim().is_empty() {
            return Err(SchedulerError::InvalidToken(
                "a token needs a name and a team (or '*' for all teams)".into(),
            ));
        }
        let token_id = random_hex(6)?;
        let secret = random_hex(24)?;
        sqlx::query(
            "INSERT INTO api_tokens (token_id, name, team, role, secret_hash, created_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token_id)
        .bind(name)
        .bind(team)
        .bind(role.as_str())
        .bind(sha256_hex(&secret))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(SchedulerError::db("creating a token"))?;
        let row = TokenRow {
            token_id: token_id.clone(),
            name: name.to_owned(),
            team: team.to_owned(),
            role,
            created_ms: now,
            revoked_ms: None,
            last_used_ms: None,
        };
        Ok((row, format!("cft_{token_id}_{secret}")))
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_ms, token_id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(SchedulerError::db("listing tokens"))?;
        rows.iter().map(token_row).collect()
    }

    /// Whether any token is live: with none, the API runs without authentication (loopback
    /// only).
    pub async fn has_live_tokens(&self) -> Result<bool> {
        let row = sqlx::query("SELECT count(*) AS n FROM api_tokens WHERE revoked_ms IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(SchedulerError::db("counting tokens"))?;
        let n: i64 = row
            .try_get("n")
            .map_err(SchedulerError::db("counting tokens"))?;
        Ok(n > 0)
    }

    /// Revokes a token and ends its sessions. Unknown id: an error naming it.
    pub async fn revoke_token(&self, token_id: &str, now: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_ms = $1 WHERE token_id = $2 AND revoked_ms IS NULL",
        )
        .bind(now)
        .bind(token_id)
        .execute(&self.pool)
        .await
        .map_err(SchedulerError::db("revoking a token"))?;
        if done.rows_affected() == 0 {
            return Err(SchedulerError::InvalidToken(format!(
                "no live token has id {token_id:?} (see `chronoflow tokens list`)"
            )));
        }
        sqlx::query("DELETE FROM ui_sessions WHERE token_id = $1")
            .bind(token_id)
            .execute(&self.pool)
            .await
            .map_err(SchedulerError::db("ending a token's sessions"))?;
        Ok(())
    }

    /// The live token `text` names, if its secret matches.
    pub async fn verify_token(&self, text: &str) -> Result<Option<TokenRow>> {
        let Some((token_id, secret)) = text
            .trim()
            .strip_prefix("cft_")
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS}, secret_hash FROM api_tokens WHERE token_id = $1 AND revoked_ms IS NULL"
        )))
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(SchedulerError::db("checking a token"))?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row
            .try_get("secret_hash")
            .map_err(SchedulerError::db("checking a token"))?;
        if !same_digest(&stored, &sha256_hex(secret)) {
            return Ok(None);
        }
        token_row(&row).map(Some)
    }

    /// Notes that a token was used (for `tokens list`); best effort.
    pub async fn touch_token(&self, token_id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_used_ms = $1 WHERE token_id = $2")
            .bind(now)
            .bind(token_id)
            .execute(&self.pool)
            .await
            .map_err(SchedulerError::db("recording a token's use"))?;
        Ok(())
    }

    /// Opens a UI session for a verified token: returns the cookie value and the CSRF token.
    pub async fn create_session(
        &self,
        token_id: &str,
        ttl_ms: i64,
        now: i64,
    ) -> Result<(String, String)> {
        let session = random_hex(24)?;
        let csrf = random_hex(16)?;
        sqlx::query("DELETE FROM ui_sessions WHERE expires_ms < $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(SchedulerError::db("expiring sessions"))?;
        sqlx::query(
            "INSERT INTO ui_sessions (session_hash, token_id, csrf, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sha256_hex(&session))
        .bind(token_id)
        .bind(&csrf)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .execute(&self.pool)
        .await
        .map_err(SchedulerError::db("opening a session"))?;
        Ok((session, csrf))
    }

    /// The live session a cookie value names, with its (live) token.
    pub async fn session(&self, cookie: &str, now: i64) -> Result<Option<Session>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT s.csrf, {} FROM ui_sessions s JOIN api_tokens t ON t.token_id = s.token_id \
             WHERE s.session_hash = $1 AND s.expires_ms > $2 AND t.revoked_ms IS NULL",
            TOKEN_COLUMNS
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(sha256_hex(cookie))
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(SchedulerError::db("reading a session"))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Session {
            token: token_row(&row)?,
            csrf: row
                .try_get("csrf")
                .map_err(SchedulerError::db("reading a session"))?,
        }))
    }

    pub async fn end_session(&self, cookie: &str) -> Result<()> {
        sqlx::query("DELETE FROM ui_sessions WHERE session_hash = $1")
            .bind(sha256_hex(cookie))
            .execute(&self.pool)
            .await
            .map_err(SchedulerError::db("ending a session"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare_whole() {
        assert!(same_digest("abcd", "abcd"));
        assert!(!same_digest("abcd", "abce"));
        assert!(!same_digest("abcd", "abc"));
    }

    #[test]
    fn operators_act_on_their_team_only() {
        let token = |team: &str, role| TokenRow {
            token_id: "x".into(),
            name: "x".into(),
            team: team.into(),
            role,
            created_ms: 0,
            revoked_ms: None,
            last_used_ms: None,
        };
        assert!(token("quickstart", Role::Operator).may_operate("quickstart"));
        assert!(!token("quickstart", Role::Operator).may_operate("risk"));
        assert!(token(ALL_TEAMS, Role::Operator).may_operate("risk"));
        assert!(!token(ALL_TEAMS, Role::Viewer).may_operate("risk"));
        assert!(token("quickstart", Role::Admin).may_operate("risk"));
    }
}
