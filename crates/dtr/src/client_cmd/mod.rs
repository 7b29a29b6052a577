//! `dtr token`, `dtr poll` and `dtr cancel`: the client side of the
//! Deferred Token Response from the shell.
//!
//! Output contract: results (token responses, deferrals, error JSON of
//! `--once`) go to stdout as JSON, so scripts can pipe them; progress and
//! diagnostics go to stderr. Exit codes: 0 success (including a pending
//! answer to `poll --once` and a deferral printed by `--no-wait`), 1
//! denied, expired, cancelled or any other OAuth failure, 2 usage or
//! configuration error (naming the flag), 3 network error.
//!
//! Sender constraint (RFC 9449, DTR-13): with `--dpop-key FILE` or
//! `--dpop` every request carries a DPoP proof; a deferral obtained that
//! way is bound to the key, so `--no-wait` prints its `dpop_jkt` and
//! `poll`/`cancel` need the same key file (`--dpop-jkt` lets them check
//! that before sending anything). `--private-key FILE` authenticates with
//! `private_key_jwt` (RFC 7523 section 2.2).
//!
//! Callbacks (DTR-25..30): `dtr token --callback-listen ADDR` serves the
//! library's [`CallbackReceiver`] on ADDR and sends a fresh 160-bit
//! `client_notification_token`; a valid callback wakes the poller, which
//! still polls on its schedule (DTR-30: the callback only says "poll now").
//!
//! Saved state: `--state FILE` holds the [`Deferral`] as JSON (mode 0600:
//! it holds the code, DTR-29). `dtr token` writes it as soon as the request
//! is deferred, so an interrupted or killed run can be resumed with
//! `dtr poll --state FILE` or cancelled with `dtr cancel --state FILE`; the
//! file is removed once the deferral is finished (token, denial,
//! cancellation, expiry).
//!
//! Authorization code grant: `dtr token --grant authorization_code` opens
//! the system browser (or prints the URL with `--no-browser`) at the
//! authorization endpoint and receives the response on a loopback redirect
//! URI `http://127.0.0.1:{port}/callback` (RFC 8252 section 7.3; register
//! `http://127.0.0.1/callback`). The progress display says whether the
//! redirect brought a `code` or a `deferral_code`; the latter is polled
//! with the PKCE verifier on its first poll; a `--state` file holds the
//! verifier until that poll has been sent.
//!
//! Progress: on a terminal (stderr) a spinner line with the elapsed time,
//! the current step and the time to the next poll, the interaction URI on
//! lines of its own; otherwise one plain line per poll.
//!
//! Layout: this file holds the flags and the exit codes; `token`, `poll`
//! and `cancel` run the three commands; `connection` and `dpop_key` turn
//! the flags into a discovered client; `state` keeps `--state` files;
//! `wait` polls to the end with the `progress` display; `output` prints
//! results and reports errors.
//!
//! [`CallbackReceiver`]: dtr_client::CallbackReceiver
//! [`Deferral`]: dtr_client::Deferral

mod cancel;
mod code_grant;
mod connection;
mod dpop_key;
mod output;
mod poll;
mod progress;
mod state;
mod token;
mod wait;

pub use cancel::cancel;
pub use poll::poll;
pub use token::token;

use clap::{Args, ValueEnum};
use dtr_client::DeferralCode;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Exit code of success.
const OK: u8 = 0;
/// Exit code of denied, expired, cancelled and other OAuth failures.
const FAILED: u8 = 1;
/// Exit code of usage and configuration errors.
const USAGE: u8 = 2;
/// Exit code of network errors.
const NETWORK: u8 = 3;

/// Client authentication methods selectable on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    /// HTTP Basic (RFC 6749 section 2.3.1).
    #[value(name = "client_secret_basic")]
    ClientSecretBasic,
    /// Credentials in the request body.
    #[value(name = "client_secret_post")]
    ClientSecretPost,
    /// Public client: `client_id` only.
    #[value(name = "none")]
    None,
    /// A JWT signed with the client's private key (RFC 7523 section 2.2).
    #[value(name = "private_key_jwt")]
    PrivateKeyJwt,
}

/// Grants `dtr token` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Grant {
    /// OAuth 2.1 section 4.2.
    #[value(name = "client_credentials")]
    ClientCredentials,
    /// RFC 8628: shows a code for the user to enter at the server's
    /// /device page, then continues like any grant (a deferral included).
    #[value(name = "device")]
    Device,
    /// OAuth 2.1 section 4.1 through the system browser and a loopback
    /// redirect receiver (RFC 8252 section 7.3). The redirect brings a code
    /// or, when the server deferred at the authorization endpoint, a
    /// deferral_code polled with the PKCE verifier on the first poll.
    #[value(name = "authorization_code")]
    AuthorizationCode,
    /// OpenID CIBA: asks the server to authenticate the user named by
    /// --login-hint on their own device (the /ciba page), then collects
    /// the result in the client's delivery mode (--mode).
    #[value(name = "ciba")]
    Ciba,
}

/// How the authorization response comes back (`--response-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ResponseModeArg {
    /// In the query of a redirect (the default).
    #[value(name = "query")]
    Query,
    /// As a form POST (OAuth 2.0 Form Post Response Mode).
    #[value(name = "form_post")]
    FormPost,
}

/// CIBA token delivery modes (OpenID CIBA Core 1.0 section 5): how the
/// client is registered (`backchannel_token_delivery_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CibaMode {
    /// Poll the token endpoint.
    Poll,
    /// Poll when the server's ping arrives (needs --callback-listen).
    Ping,
    /// Receive the token response itself (needs --callback-listen).
    Push,
}

/// Where the server is and who the client is. (No `Debug`: it holds the
/// client secret.)
#[derive(Args)]
pub struct ConnectionArgs {
    /// Issuer URL; the metadata is discovered from it (RFC 8414).
    #[arg(long, env = "DTR_ISSUER", default_value = "http://127.0.0.1:8080")]
    pub issuer: String,
    /// Client identifier.
    #[arg(long, env = "DTR_CLIENT_ID")]
    pub client_id: String,
    /// Client secret of a confidential client.
    #[arg(long, env = "DTR_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Client authentication method [default: private_key_jwt with
    /// --private-key, client_secret_basic with a secret, none without].
    #[arg(long, value_enum)]
    pub auth_method: Option<AuthMethod>,
    /// private_key_jwt: the client's P-256 private key (PKCS#8 PEM) whose
    /// public key is in the client's registered jwks.
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    /// private_key_jwt: the kid header of the assertions.
    #[arg(long, value_name = "KID", requires = "private_key")]
    pub key_id: Option<String>,
    /// DPoP (RFC 9449) with the P-256 key in FILE (PKCS#8 PEM); when FILE
    /// does not exist a new key is generated and saved there (mode 0600).
    #[arg(long, value_name = "FILE", conflicts_with = "dpop")]
    pub dpop_key: Option<PathBuf>,
    /// DPoP with a key generated for this run only.
    #[arg(long)]
    pub dpop: bool,
}

/// `dtr token`: run a grant, optionally deferred, and wait for the result.
#[derive(Args)]
pub struct TokenArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// The grant to run.
    #[arg(long, value_enum, default_value = "client_credentials")]
    grant: Grant,
    /// Requested scope (space-separated).
    #[arg(long)]
    scope: Option<String>,
    /// Send completion_mode=deferred: accept a deferred response.
    #[arg(long)]
    deferred: bool,
    /// Send completion_mode="deferred deferred_interactive": accept a
    /// deferred response and say that this client can show a user the
    /// interaction_uri (implies --deferred; authorization_code and
    /// client_credentials).
    #[arg(long)]
    interactive: bool,
    /// authorization_code: how the authorization response comes back to
    /// the loopback redirect URI [default: query].
    #[arg(long, value_enum)]
    response_mode: Option<ResponseModeArg>,
    /// authorization_code: push the request to the pushed authorization
    /// request endpoint (RFC 9126); the browser then only carries client_id
    /// and request_uri.
    #[arg(long)]
    par: bool,
    /// authorization_code: print the authorization URL instead of opening
    /// the system browser.
    #[arg(long)]
    no_browser: bool,
    /// authorization_code: seconds to wait for the user to sign in and
    /// consent.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    login_timeout: u64,
    /// On a deferred response, print the deferral as JSON and exit instead
    /// of polling.
    #[arg(long)]
    no_wait: bool,
    /// client_notification_token for callback authentication (at least 22
    /// characters, i.e. 128 bits).
    #[arg(long)]
    notification_token: Option<String>,
    /// RFC 9396 authorization_details as a JSON array.
    #[arg(long)]
    authorization_details: Option<String>,
    /// Receive callback notifications (DTR-26) on ADDR (e.g.
    /// 127.0.0.1:8765): sends a fresh client_notification_token and polls
    /// at once when a valid callback arrives. The client's registered
    /// deferred_client_notification_endpoint must be http(s)://ADDR/callback.
    #[arg(long, value_name = "ADDR")]
    callback_listen: Option<SocketAddr>,
    /// Save the deferral to FILE (JSON, mode 0600, holds the code) as soon
    /// as the request is deferred; resume with `dtr poll --state FILE`.
    /// Removed when the deferral is finished.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// --grant ciba: the user to authenticate (a username on dtr).
    #[arg(long)]
    login_hint: Option<String>,
    /// --grant ciba: text shown to the user on both devices.
    #[arg(long)]
    binding_message: Option<String>,
    /// --grant ciba or --bridge: the client's registered delivery mode.
    #[arg(long, value_enum, default_value = "poll")]
    mode: CibaMode,
    /// On a deferred response, continue the deferral as a CIBA request
    /// (login_hint_token=urn:dtr:deferral:<code>) and collect it through
    /// its auth_req_id in the --mode the client is registered with.
    #[arg(long, conflicts_with = "no_wait")]
    bridge: bool,
}

/// `dtr poll`: resume polling a deferral code.
#[derive(Args)]
pub struct PollArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// The deferral code (alternatively --deferral-code or DTR_DEFERRAL_CODE).
    #[arg(value_name = "DEFERRAL_CODE")]
    code: Option<String>,
    /// The deferral code.
    #[arg(
        long = "deferral-code",
        env = "DTR_DEFERRAL_CODE",
        hide_env_values = true
    )]
    deferral_code: Option<String>,
    /// Poll once and print the answer as JSON. Exit 0 on a token and on a
    /// pending answer (authorization_pending, interaction_required,
    /// slow_down), 1 on a terminal error.
    #[arg(long)]
    once: bool,
    /// Seconds between polls (the deferred response's interval).
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// Seconds the code still lives; without it polling stops when the
    /// server answers expired_token.
    #[arg(long)]
    expires_in: Option<u64>,
    /// The dpop_jkt printed by `dtr token --no-wait`: the code is
    /// DPoP-bound, and --dpop-key must hold that key (checked before
    /// anything is sent).
    #[arg(long, value_name = "JKT")]
    dpop_jkt: Option<String>,
    /// Resume the deferral saved by `dtr token --state FILE` (code,
    /// interval, expiry and DPoP binding come from the file); the file is
    /// removed when the deferral is finished.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

/// `dtr cancel`: cancel a deferral through revocation (DTR-31).
#[derive(Args)]
pub struct CancelArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// The deferral code (alternatively --deferral-code or DTR_DEFERRAL_CODE).
    #[arg(value_name = "DEFERRAL_CODE")]
    code: Option<String>,
    /// The deferral code.
    #[arg(
        long = "deferral-code",
        env = "DTR_DEFERRAL_CODE",
        hide_env_values = true
    )]
    deferral_code: Option<String>,
    /// The dpop_jkt printed by `dtr token --no-wait` (see `dtr poll`).
    #[arg(long, value_name = "JKT")]
    dpop_jkt: Option<String>,
    /// Cancel the deferral saved by `dtr token --state FILE`; the file is
    /// removed afterwards.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

/// The deferral code from the positional argument, `--deferral-code` or
/// `DTR_DEFERRAL_CODE`, in that order of precedence.
fn deferral_code(positional: Option<String>, flag: Option<String>) -> Option<DeferralCode> {
    match positional.or(flag).filter(|c| !c.is_empty()) {
        Some(c) => Some(DeferralCode::new(c)),
        None => {
            eprintln!("error: missing the deferral code: pass DEFERRAL_CODE, --deferral-code or set DTR_DEFERRAL_CODE");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection flags of client `svc` at the default issuer.
    pub(super) fn conn(secret: Option<&str>, method: Option<AuthMethod>) -> ConnectionArgs {
        ConnectionArgs {
            issuer: "http://127.0.0.1:8080".into(),
            client_id: "svc".into(),
            client_secret: secret.map(str::to_owned),
            auth_method: method,
            private_key: None,
            key_id: None,
            dpop_key: None,
            dpop: false,
        }
    }

    #[test]
    fn positional_code_wins() {
        let c = deferral_code(Some("a".into()), Some("b".into()));
        assert_eq!(c.map(|c| c.secret().to_owned()), Some("a".into()));
        assert!(deferral_code(None, None).is_none());
        assert!(deferral_code(Some(String::new()), None).is_none());
    }
}
