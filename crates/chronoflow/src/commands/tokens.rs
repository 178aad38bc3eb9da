//! `tokens create|list|revoke`: API tokens, straight on the state store.

use std::process::ExitCode;

use chronoflow_scheduler::clock::{Clock, SystemClock};
use chronoflow_scheduler::store::Role;
use chronoflow_scheduler::timetable::iso;

use super::service::{load_config, open_store, runtime};
use crate::cli::{RoleArg, TokensCommand};

pub fn run(command: TokensCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match command {
            TokensCommand::Create {
                name,
                team,
                role,
                state,
            } => {
                let config = load_config(&state, std::path::Path::new("."))?;
                let store = open_store(&state, &config).await?;
                let role = match role {
                    RoleArg::Viewer => Role::Viewer,
                    RoleArg::Operator => Role::Operator,
                    RoleArg::Admin => Role::Admin,
                };
                let (row, secret) = store
                    .create_token(&name, &team, role, SystemClock.now_ms())
                    .await?;
                eprintln!(
                    "created token {} ({} of {}); it is shown once, keep it:",
                    row.token_id,
                    row.role.as_str(),
                    row.team
                );
                println!("{secret}");
            }
            TokensCommand::List { state } => {
                let config = load_config(&state, std::path::Path::new("."))?;
                let store = open_store(&state, &config).await?;
                println!(
                    "{:<14} {:<20} {:<16} {:<9} {:<21} last used",
                    "id", "name", "team", "role", "created"
                );
                for t in store.tokens().await? {
                    let last = match (t.revoked_ms, t.last_used_ms) {
                        (Some(r), _) => format!("revoked {}", iso(r)),
                        (None, Some(u)) => iso(u),
                        (None, None) => "never".to_owned(),
                    };
                    println!(
                        "{:<14} {:<20} {:<16} {:<9} {:<21} {last}",
                        t.token_id,
                        t.name,
                        t.team,
                        t.role.as_str(),
                        iso(t.created_ms)
                    );
                }
            }
            TokensCommand::Revoke { token_id, state } => {
                let config = load_config(&state, std::path::Path::new("."))?;
                let store = open_store(&state, &config).await?;
                store.revoke_token(&token_id, SystemClock.now_ms()).await?;
                println!("revoked {token_id}");
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
