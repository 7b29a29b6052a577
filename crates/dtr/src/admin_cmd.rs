//! `dtr admin ...`: the admin API from the shell (DESIGN.md "Admin API").
//!
//! Prints the server's JSON, pretty, on stdout (`list` prints a table
//! instead when stdout is a terminal, unless `--json`). Exit codes: 0
//! success, 1 refused by the API (404 unknown id, 409 not pending, 400 bad
//! input such as a widening scope, 403 not allowed for this token), 2
//! local usage or configuration error and a rejected token (401), 3
//! network error.

use clap::{Args, Subcommand};
use dtr_client::{AdminClient, AdminError};
use serde_json::Value;
use std::io::IsTerminal;
use std::path::Path;

const OK: u8 = 0;
const FAILED: u8 = 1;
const USAGE: u8 = 2;
const NETWORK: u8 = 3;

/// Where `dtr serve` in demo mode writes its admin token.
const DEMO_TOKEN_FILE: &str = "dtr-data/admin-token";

/// `dtr admin`: list, show and decide deferrals, manage clients and
/// personal tokens. (No
/// `Debug`: it holds the admin token.)
#[derive(Args)]
pub struct AdminArgs {
    /// Base URL of the server.
    #[arg(long, env = "DTR_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token: the admin token or a user's personal API token
    /// [default: the contents of ./dtr-data/admin-token, written by the
    /// demo server].
    #[arg(long, env = "DTR_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// List deferrals, newest first.
    List {
        /// Only this state: pending, approved, denied, cancelled, expired, redeemed.
        #[arg(long)]
        state: Option<String>,
        /// Only this client's deferrals.
        #[arg(long)]
        client_id: Option<String>,
        /// Print JSON even on a terminal.
        #[arg(long)]
        json: bool,
    },
    /// Show one deferral.
    Show {
        /// The deferral's id (not its code).
        id: String,
    },
    /// Approve a pending deferral, optionally narrowing its scope.
    Approve {
        /// The deferral's id.
        id: String,
        /// Grant only this scope, a subset of the requested one (DTR-24).
        #[arg(long)]
        scope: Option<String>,
    },
    /// Deny a pending deferral.
    Deny {
        /// The deferral's id.
        id: String,
        /// Why (kept for audit).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Report a progress step; polls then say `step=<STEP>` (DTR-10).
    Progress {
        /// The deferral's id.
        id: String,
        /// A step identifier such as document_review (no personal data).
        step: String,
    },
    /// Switch a deferral to interaction_required with a fresh interaction_uri.
    Interaction {
        /// The deferral's id.
        id: String,
    },
    /// Export the audit trail as JSON lines, oldest first: one deferral's
    /// events, or every deferral's since a time.
    Events {
        /// Only this deferral's events.
        id: Option<String>,
        /// From this time on (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
    },
    /// Disable a client: its pending deferrals can no longer be redeemed (DTR-23).
    ClientDisable {
        /// The client identifier.
        client_id: String,
    },
    /// Enable a client again.
    ClientEnable {
        /// The client identifier.
        client_id: String,
    },
    /// Personal API tokens of users (needs the admin token or an admin's token).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a personal API token for a user; prints {"id", "token"}, the
    /// token this once only.
    Create {
        /// The user's username.
        username: String,
    },
    /// List a user's tokens (ids and times, never the tokens).
    List {
        /// The user's username.
        username: String,
    },
    /// Revoke a user's token; refused at once on every node.
    Revoke {
        /// The user's username.
        username: String,
        /// The token's id (from `create` or `list`).
        id: String,
    },
}

/// Runs `dtr admin`.
pub async fn run(args: AdminArgs) -> u8 {
    let token = match resolve_token(args.token, Path::new(DEMO_TOKEN_FILE)) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("error: {msg}");
            return USAGE;
        }
    };
    let admin = match AdminClient::new(&args.url, token) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: --url: {e}");
            return USAGE;
        }
    };
    if let AdminCommand::Events { id, since } = &args.command {
        let events = match id {
            Some(id) => admin.events(id).await,
            None => admin.events_since(since.as_deref()).await,
        };
        return match events {
            Ok(items) => {
                // JSON lines: one event per line, for log pipelines.
                for e in items {
                    println!("{e}");
                }
                OK
            }
            Err(e) => report(&e, &args.command),
        };
    }
    let (result, table) = match &args.command {
        AdminCommand::Events { .. } => unreachable!("answered above"),
        AdminCommand::List {
            state,
            client_id,
            json,
        } => (
            admin
                .list(state.as_deref(), client_id.as_deref())
                .await
                .map(Value::Array),
            !json && std::io::stdout().is_terminal(),
        ),
        AdminCommand::Show { id } => (admin.show(id).await, false),
        AdminCommand::Approve { id, scope } => (admin.approve(id, scope.as_deref()).await, false),
        AdminCommand::Deny { id, reason } => (admin.deny(id, reason.as_deref()).await, false),
        AdminCommand::Progress { id, step } => (admin.progress(id, step).await, false),
        AdminCommand::Interaction { id } => (admin.interaction(id).await, false),
        AdminCommand::ClientDisable { client_id } => (admin.disable_client(client_id).await, false),
        AdminCommand::ClientEnable { client_id } => (admin.enable_client(client_id).await, false),
        AdminCommand::Token(TokenCommand::Create { username }) => {
            (admin.create_token(username).await, false)
        }
        AdminCommand::Token(TokenCommand::List { username }) => {
            (admin.list_tokens(username).await.map(Value::Array), false)
        }
        AdminCommand::Token(TokenCommand::Revoke { username, id }) => (
            admin.revoke_token(username, id).await.map(|()| Value::Null),
            false,
        ),
    };
    match result {
        Ok(Value::Array(items)) if table => {
            print!("{}", render_table(&items));
            OK
        }
        Ok(Value::Null) => OK,
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            OK
        }
        Err(e) => report(&e, &args.command),
    }
}

/// The admin token: the flag or `DTR_ADMIN_TOKEN`, else the demo server's
/// token file.
fn resolve_token(flag: Option<String>, file: &Path) -> Result<String, String> {
    if let Some(t) = flag {
        let t = t.trim().to_owned();
        if t.is_empty() {
            return Err("--token (or DTR_ADMIN_TOKEN) is empty".into());
        }
        return Ok(t);
    }
    match std::fs::read_to_string(file) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        Ok(_) => Err(format!("{} is empty; pass --token or set DTR_ADMIN_TOKEN", file.display())),
        Err(_) => Err(format!(
            "no admin token: pass --token, set DTR_ADMIN_TOKEN, or run from the directory where the demo server keeps ./{}",
            file.display()
        )),
    }
}

/// What went wrong, and its exit code.
fn report(e: &AdminError, command: &AdminCommand) -> u8 {
    let detail = e
        .description()
        .map(|d| format!(": {}", safe(&d)))
        .unwrap_or_default();
    match e {
        AdminError::Status { status: 401, .. } => {
            eprintln!("error: admin token rejected (HTTP 401); check --token or DTR_ADMIN_TOKEN");
            USAGE
        }
        AdminError::Status { status: 403, .. } => {
            eprintln!("error: forbidden (HTTP 403): this token may not do that; nothing changed");
            FAILED
        }
        AdminError::Status { status: 404, .. } => {
            let what = match command {
                AdminCommand::ClientDisable { client_id }
                | AdminCommand::ClientEnable { client_id } => {
                    format!("no client '{}'", safe(client_id))
                }
                AdminCommand::Show { id }
                | AdminCommand::Approve { id, .. }
                | AdminCommand::Deny { id, .. }
                | AdminCommand::Progress { id, .. }
                | AdminCommand::Interaction { id }
                | AdminCommand::Events { id: Some(id), .. } => {
                    format!("no deferral '{}'", safe(id))
                }
                AdminCommand::List { .. } | AdminCommand::Events { id: None, .. } => {
                    "the admin API is not available at --url".into()
                }
                AdminCommand::Token(
                    TokenCommand::Create { username } | TokenCommand::List { username },
                ) => format!("no user '{}'", safe(username)),
                AdminCommand::Token(TokenCommand::Revoke { username, id }) => {
                    format!("no token '{}' of user '{}'", safe(id), safe(username))
                }
            };
            eprintln!("error: not found (HTTP 404): {what}");
            FAILED
        }
        AdminError::Status { status: 409, .. } => {
            eprintln!("error: not pending (HTTP 409){detail}; nothing changed");
            FAILED
        }
        AdminError::Status { status: 400, body } => {
            let detail = if detail.is_empty() {
                format!(": {}", safe(body))
            } else {
                detail
            };
            eprintln!("error: refused (HTTP 400){detail}; nothing changed");
            FAILED
        }
        AdminError::Status { status, body } => {
            eprintln!("error: HTTP {status}: {}", safe(body));
            FAILED
        }
        AdminError::Http(err) => {
            eprintln!("error: cannot reach the admin API: {err}");
            NETWORK
        }
        AdminError::InvalidUrl { .. } => {
            eprintln!("error: --url: {e}");
            USAGE
        }
        AdminError::UnexpectedBody(_) => {
            eprintln!("error: {}", safe(&e.to_string()));
            FAILED
        }
    }
}

/// Columns of the `list` table: header and JSON member.
const COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("STATE", "state"),
    ("CLIENT", "client_id"),
    ("GRANT", "grant_type"),
    ("SCOPE", "scope"),
    ("PROGRESS", "progress"),
    ("CREATED", "created_at"),
    ("EXPIRES", "expires_at"),
];

/// A compact, aligned table of deferrals for humans.
fn render_table(items: &[Value]) -> String {
    if items.is_empty() {
        return "no deferrals\n".into();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            COLUMNS
                .iter()
                .map(|(_, key)| {
                    let mut cell = cell(item.get(*key));
                    // A pending deferral that waits at its interaction_uri.
                    if *key == "state"
                        && item.get("interaction_required") == Some(&Value::Bool(true))
                    {
                        cell.push_str(" (interaction)");
                    }
                    cell
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain(std::iter::once(h.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(COLUMNS.iter().map(|(h, _)| *h).collect());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) if s.is_empty() => "-".into(),
        Some(Value::String(s)) => safe(s),
        Some(other) => safe(&other.to_string()),
    }
}

/// Server-supplied text with control characters replaced.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_from_flag_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin-token");
        assert_eq!(resolve_token(Some(" t ".into()), &file), Ok("t".into()));
        assert!(resolve_token(Some("  ".into()), &file).is_err());
        assert!(resolve_token(None, &file).is_err());
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(resolve_token(None, &file), Ok("from-file".into()));
    }

    #[test]
    fn table_aligns_and_marks_interaction() {
        let t = render_table(&[
            json!({"id": "d1", "state": "pending", "client_id": "svc", "grant_type": "client_credentials",
                   "scope": "payments", "progress": null, "created_at": 1, "expires_at": 2,
                   "interaction_required": true}),
            json!({"id": "longer-id", "state": "denied", "client_id": "svc"}),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID         STATE"));
        assert!(lines[1].contains("pending (interaction)"));
        assert!(lines[2].starts_with("longer-id  denied"));
        assert_eq!(render_table(&[]), "no deferrals\n");
    }
}
