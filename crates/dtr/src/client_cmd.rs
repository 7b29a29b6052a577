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
//! Progress: on a terminal (stderr) a spinner line with the elapsed time,
//! the current step and the time to the next poll, the interaction URI on
//! lines of its own; otherwise one plain line per poll.

use clap::{Args, ValueEnum};
use dtr_client::{
    CallbackReceiver, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, Deferral,
    DeferralCode, DpopKey, Error, ErrorCode, Es256Key, NotificationToken, OAuthError, PollOutcome,
    PollProgress, Poller, SystemClock, TokenResponse, TokenResult, CALLBACK_PATH,
};
use dtr_proto::secret::MIN_NOTIFICATION_TOKEN_LEN;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Exit code of success.
const OK: u8 = 0;
/// Exit code of denied, expired, cancelled and other OAuth failures.
const FAILED: u8 = 1;
/// Exit code of usage and configuration errors.
const USAGE: u8 = 2;
/// Exit code of network errors.
const NETWORK: u8 = 3;

/// How many consecutive network errors a waiting `dtr token` / `dtr poll`
/// tolerates before giving up; polls continue on the normal schedule in
/// between, so a short outage does not lose a long-running deferral.
const NETWORK_RETRIES: u32 = 3;

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

/// Runs `dtr token`.
pub async fn token(args: TokenArgs) -> u8 {
    let auth = match client_auth(&args.conn) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let notification_token = match args.notification_token {
        // DTR-12: refuse locally what the server would refuse anyway, with
        // a message naming the flag.
        Some(t) if t.len() < MIN_NOTIFICATION_TOKEN_LEN => {
            eprintln!(
                "error: --notification-token must be at least {MIN_NOTIFICATION_TOKEN_LEN} characters (128 bits)"
            );
            return USAGE;
        }
        t => t.map(NotificationToken::new),
    };
    let authorization_details = match args.authorization_details.as_deref() {
        None => None,
        Some(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(v @ serde_json::Value::Array(_)) => Some(v),
            _ => {
                eprintln!("error: --authorization-details must be a JSON array (RFC 9396)");
                return USAGE;
            }
        },
    };
    if args.no_wait && args.conn.dpop {
        // The deferral would be bound to a key that dies with this process.
        eprintln!("error: --no-wait with --dpop would lose the key the deferral is bound to; use --dpop-key FILE");
        return USAGE;
    }
    if args.no_wait && args.callback_listen.is_some() {
        eprintln!(
            "error: --callback-listen with --no-wait: the receiver would stop with this process"
        );
        return USAGE;
    }
    if let Some(path) = &args.state {
        // Never overwrite a saved deferral that may still be pending.
        if path.exists() {
            eprintln!(
                "error: --state {}: the file exists (it may hold a pending deferral); resume it with `dtr poll --state`, or remove it",
                path.display()
            );
            return USAGE;
        }
    }
    let callbacks = match args.callback_listen {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let bound = listener.local_addr().unwrap_or(addr);
                eprintln!(
                    "callback receiver listening on http://{bound}{CALLBACK_PATH} (the client's deferred_client_notification_endpoint must point here)"
                );
                Some((listener, CallbackReceiver::new()))
            }
            Err(e) => {
                eprintln!("error: --callback-listen {addr}: cannot listen: {e}");
                return USAGE;
            }
        },
    };
    // DTR-12: one fresh 160-bit token per request authenticates the
    // callbacks of this deferral only.
    let notification_token = match (&callbacks, notification_token) {
        (Some(_), None) => Some(NotificationToken::generate()),
        (_, t) => t,
    };
    let client = match discover(&args.conn, auth).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = match args.grant {
        Grant::ClientCredentials => {
            let req = ClientCredentialsRequest {
                scope: args.scope,
                deferred: args.deferred,
                notification_token: notification_token.clone(),
                authorization_details,
            };
            client.client_credentials(&req).await
        }
        Grant::Device => crate::device_cmd::run(&client, args.scope, args.deferred).await,
    };
    match result {
        Ok(TokenResult::Token(t)) => print_token(&t),
        Ok(TokenResult::Error(e)) => report_failure(&e),
        Ok(TokenResult::Deferred(d)) => {
            if let Some(path) = &args.state {
                match save_state(path, &d) {
                    Ok(()) => eprintln!(
                        "saved the deferral to {} (resume with `dtr poll --state`)",
                        path.display()
                    ),
                    Err(e) => {
                        // The code is printed below either way, so the
                        // deferral is not lost.
                        eprintln!("error: --state {}: cannot write: {e}", path.display());
                        print_json(&resumable(&d));
                        return USAGE;
                    }
                }
            }
            if args.no_wait {
                print_json(&resumable(&d));
                if let Some(jkt) = &d.dpop_jkt {
                    eprintln!("the deferral is DPoP-bound: poll or cancel it with the same --dpop-key (and --dpop-jkt {jkt})");
                }
                return OK;
            }
            let mut poller = Poller::new(&client, SystemClock, &d);
            let mut serving = None;
            if let (Some((listener, receiver)), Some(token)) = (callbacks, notification_token) {
                poller = poller.with_waker(receiver.register(&d, token));
                serving = Some(tokio::spawn(async move {
                    receiver.serve(listener, std::future::pending()).await
                }));
            }
            let code = wait(poller, &d, args.state.as_deref(), true).await;
            if let Some(task) = serving {
                task.abort();
            }
            code
        }
        Err(e) => report_error(&e, &args.conn.issuer),
    }
}

/// Runs `dtr poll`.
pub async fn poll(args: PollArgs) -> u8 {
    if let Some(path) = args.state.clone() {
        return poll_state(args, &path).await;
    }
    let Some(code) = deferral_code(args.code, args.deferral_code) else {
        return USAGE;
    };
    let client = match client_for_code(&args.conn, args.dpop_jkt.as_deref()).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.once {
        return match client.poll_once(&code).await {
            Ok(TokenResult::Token(t)) => print_token(&t),
            Ok(TokenResult::Deferred(d)) => {
                print_json(&serde_json::to_value(d.to_response()).unwrap_or_default());
                OK
            }
            Ok(TokenResult::Error(e)) => {
                print_json(&serde_json::to_value(&e).unwrap_or_default());
                if is_pending(&e.error) {
                    if let Some(uri) = &e.interaction_uri {
                        show_interaction(uri);
                    }
                    OK
                } else {
                    report_failure(&e)
                }
            }
            Err(e) => report_error(&e, &args.conn.issuer),
        };
    }
    let now = dtr_client::clock::now_unix_ms();
    let expires_at = args
        .expires_in
        .map(|s| now.saturating_add(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)));
    let poller = Poller::resume(
        &client,
        SystemClock,
        code.clone(),
        args.interval,
        expires_at,
    )
    .with_dpop_jkt(args.dpop_jkt.clone());
    // When resuming we do not know when the code was last polled; one poll
    // at once shows the current state, and the first poll of a poller has
    // no previous poll to keep the interval from.
    poller.waker().notify_one();
    let d = Deferral {
        code,
        expires_in: args.expires_in.unwrap_or(0),
        interval: args.interval,
        interaction_uri: None,
        description: None,
        received_at_unix_ms: now,
        issuer: client.metadata().issuer.clone(),
        client_id: client.auth().client_id().to_owned(),
        error: ErrorCode::AuthorizationPending,
        dpop_jkt: args.dpop_jkt,
    };
    wait(poller, &d, None, false).await
}

/// `dtr poll --state FILE`: resumes a saved deferral with its own schedule
/// and expiry.
async fn poll_state(args: PollArgs, path: &Path) -> u8 {
    if args.code.is_some() {
        eprintln!(
            "error: DEFERRAL_CODE and --state both given; the code comes from the state file"
        );
        return USAGE;
    }
    let d = match load_state(path, &args.conn) {
        Ok(d) => d,
        Err(code) => return code,
    };
    if args.dpop_jkt.is_some() && args.dpop_jkt != d.dpop_jkt {
        eprintln!(
            "error: --dpop-jkt differs from the dpop_jkt saved in --state {}",
            path.display()
        );
        return USAGE;
    }
    let auth = match client_auth(&args.conn) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = match discover(&args.conn, auth).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    // DTR-13: refuse locally, before the code leaves the process.
    if let Err(e) = client.check_binding(d.dpop_jkt.as_deref()) {
        return report_error(&e, &args.conn.issuer);
    }
    if args.once {
        return match client.poll_deferral(&d).await {
            Ok(TokenResult::Token(t)) => {
                forget_state(Some(path));
                print_token(&t)
            }
            Ok(TokenResult::Deferred(p)) => {
                print_json(&serde_json::to_value(p.to_response()).unwrap_or_default());
                OK
            }
            Ok(TokenResult::Error(e)) => {
                print_json(&serde_json::to_value(&e).unwrap_or_default());
                if is_pending(&e.error) {
                    if let Some(uri) = &e.interaction_uri {
                        show_interaction(uri);
                    }
                    OK
                } else {
                    if finishes_deferral(&e.error) {
                        forget_state(Some(path));
                    }
                    report_failure(&e)
                }
            }
            Err(e) => report_error(&e, &args.conn.issuer),
        };
    }
    let poller = Poller::new(&client, SystemClock, &d);
    wait(poller, &d, Some(path), false).await
}

/// Runs `dtr cancel`.
pub async fn cancel(args: CancelArgs) -> u8 {
    if let Some(path) = args.state.clone() {
        return cancel_state(args, &path).await;
    }
    let Some(code) = deferral_code(args.code, args.deferral_code) else {
        return USAGE;
    };
    let client = match client_for_code(&args.conn, args.dpop_jkt.as_deref()).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.cancel(&code).await {
        Ok(()) => {
            // RFC 7009 section 2.2 (DTR-33): the server answers 200 for
            // unknown, foreign or finished codes too, so "cancelled" only
            // means the server holds no pending deferral for this code now.
            eprintln!("cancelled: the deferral code is revoked; later polls answer access_denied");
            OK
        }
        Err(e) => report_error(&e, &args.conn.issuer),
    }
}

/// `dtr cancel --state FILE`: revokes the saved deferral's code (with the
/// proof of its key when bound, DTR-13, DTR-31) and removes the file.
async fn cancel_state(args: CancelArgs, path: &Path) -> u8 {
    if args.code.is_some() {
        eprintln!(
            "error: DEFERRAL_CODE and --state both given; the code comes from the state file"
        );
        return USAGE;
    }
    let d = match load_state(path, &args.conn) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let auth = match client_auth(&args.conn) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = match discover(&args.conn, auth).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.cancel_deferral(&d).await {
        Ok(()) => {
            eprintln!("cancelled: the deferral code is revoked; later polls answer access_denied");
            forget_state(Some(path));
            OK
        }
        Err(e) => report_error(&e, &args.conn.issuer),
    }
}

/// Writes the deferral to `path` readable by its owner only (it holds the
/// code, DTR-29), never over an existing file.
fn save_state(path: &Path, d: &Deferral) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(d).map_err(std::io::Error::other)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(json.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Reads a saved deferral and checks that it belongs to the issuer and
/// client of the flags: a deferral code is never sent to another server
/// than the one that issued it.
fn load_state(path: &Path, conn: &ConnectionArgs) -> Result<Deferral, u8> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: --state {}: {e}", path.display());
        USAGE
    })?;
    let d: Deferral = serde_json::from_str(&text).map_err(|e| {
        eprintln!(
            "error: --state {}: not a saved deferral: {e}",
            path.display()
        );
        USAGE
    })?;
    if d.issuer.trim_end_matches('/') != conn.issuer.trim_end_matches('/') {
        eprintln!(
            "error: --state {} holds a deferral of issuer {}; pass --issuer {} (now {})",
            path.display(),
            safe(&d.issuer),
            safe(&d.issuer),
            safe(&conn.issuer)
        );
        return Err(USAGE);
    }
    if d.client_id != conn.client_id {
        eprintln!(
            "error: --state {} holds a deferral of client {}; pass --client-id {}",
            path.display(),
            safe(&d.client_id),
            safe(&d.client_id)
        );
        return Err(USAGE);
    }
    Ok(d)
}

/// Removes the state file of a finished deferral (nothing to resume).
fn forget_state(path: Option<&Path>) {
    if let Some(path) = path {
        match std::fs::remove_file(path) {
            Ok(()) => eprintln!("removed {} (the deferral is finished)", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("warning: cannot remove {}: {e}", path.display()),
        }
    }
}

/// Whether a poll error means the deferral code is dead for good (DTR-16,
/// DTR-19), so that a saved state is useless. Other failures (e.g.
/// `invalid_client` after a secret rotation) leave it resumable.
fn finishes_deferral(code: &ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::AccessDenied
            | ErrorCode::InvalidGrant
            | ErrorCode::ExpiredToken
            | ErrorCode::InvalidRequest
    )
}

/// Builds the client authentication from the flags, or prints a usage
/// error naming the flag.
fn client_auth(conn: &ConnectionArgs) -> Result<ClientAuth, u8> {
    let client_id = conn.client_id.clone();
    if client_id.is_empty() {
        eprintln!("error: --client-id must not be empty");
        return Err(USAGE);
    }
    let secret = conn.client_secret.clone().filter(|s| !s.is_empty());
    let method = conn.auth_method.unwrap_or(if conn.private_key.is_some() {
        AuthMethod::PrivateKeyJwt
    } else if secret.is_some() {
        AuthMethod::ClientSecretBasic
    } else {
        AuthMethod::None
    });
    match (method, &conn.private_key) {
        (AuthMethod::PrivateKeyJwt, Some(path)) => {
            let key = Es256Key::from_pem_file(path).map_err(|e| {
                eprintln!("error: --private-key: {e}");
                USAGE
            })?;
            return Ok(ClientAuth::PrivateKeyJwt {
                client_id,
                key,
                kid: conn.key_id.clone(),
            });
        }
        (AuthMethod::PrivateKeyJwt, None) => {
            eprintln!("error: --auth-method private_key_jwt needs --private-key FILE");
            return Err(USAGE);
        }
        (_, Some(_)) => {
            eprintln!("error: --private-key is only used with --auth-method private_key_jwt");
            return Err(USAGE);
        }
        (_, None) => {}
    }
    match (method, secret) {
        (AuthMethod::ClientSecretBasic, Some(s)) => Ok(ClientAuth::SecretBasic {
            client_id,
            secret: ClientSecret::new(s),
        }),
        (AuthMethod::ClientSecretPost, Some(s)) => Ok(ClientAuth::SecretPost {
            client_id,
            secret: ClientSecret::new(s),
        }),
        (AuthMethod::None, None) => Ok(ClientAuth::None { client_id }),
        (AuthMethod::None, Some(_)) => {
            eprintln!(
                "error: --client-secret (or DTR_CLIENT_SECRET) given with --auth-method none"
            );
            Err(USAGE)
        }
        (m, None) => {
            let name = m
                .to_possible_value()
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default();
            eprintln!("error: --auth-method {name} needs --client-secret (or DTR_CLIENT_SECRET)");
            Err(USAGE)
        }
        (AuthMethod::PrivateKeyJwt, _) => Err(USAGE),
    }
}

/// The DPoP key of `--dpop-key FILE` (loaded, or generated and saved when
/// the file does not exist) or `--dpop` (generated for this run).
fn dpop_key(conn: &ConnectionArgs) -> Result<Option<DpopKey>, u8> {
    if conn.dpop {
        return Ok(Some(DpopKey::generate()));
    }
    let Some(path) = &conn.dpop_key else {
        return Ok(None);
    };
    if path.exists() {
        return DpopKey::from_pem_file(path).map(Some).map_err(|e| {
            eprintln!("error: --dpop-key: {e}");
            USAGE
        });
    }
    let key = DpopKey::generate();
    match save_private_key(path, &key) {
        Ok(()) => {
            eprintln!(
                "generated a new DPoP key in {} (thumbprint {})",
                path.display(),
                key.thumbprint()
            );
            Ok(Some(key))
        }
        Err(e) => {
            eprintln!("error: --dpop-key: cannot write {}: {e}", path.display());
            Err(USAGE)
        }
    }
}

/// Writes a new key file readable by its owner only; never overwrites an
/// existing file (another process may have just created it).
fn save_private_key(path: &Path, key: &DpopKey) -> std::io::Result<()> {
    use std::io::Write;
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()
}

/// What `--no-wait` (and an interrupted wait) prints: the deferred
/// response plus, for a DPoP-bound code, the `dpop_jkt` that `dtr poll`
/// and `dtr cancel` need.
fn resumable(d: &Deferral) -> serde_json::Value {
    let mut v = serde_json::to_value(d.to_response()).unwrap_or_default();
    if let (Some(jkt), Some(obj)) = (&d.dpop_jkt, v.as_object_mut()) {
        obj.insert("dpop_jkt".into(), jkt.clone().into());
    }
    v
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

/// The client for `poll` or `cancel` of a bare code: authentication,
/// discovery, and the local refusal to use a DPoP-bound code without its
/// key (DTR-13), before anything is sent.
async fn client_for_code(conn: &ConnectionArgs, dpop_jkt: Option<&str>) -> Result<Client, u8> {
    let client = discover(conn, client_auth(conn)?).await?;
    client
        .check_binding(dpop_jkt)
        .map_err(|e| report_error(&e, &conn.issuer))?;
    Ok(client)
}

async fn discover(conn: &ConnectionArgs, auth: ClientAuth) -> Result<Client, u8> {
    let key = dpop_key(conn)?;
    let client = Client::discover(&conn.issuer, auth)
        .await
        .map_err(|e| report_error(&e, &conn.issuer))?;
    Ok(match key {
        Some(k) => client.with_dpop(k),
        None => client,
    })
}

/// Polls until the end, showing progress on stderr; Ctrl-C leaves the
/// deferral pending and prints it on stdout so it can be resumed. A saved
/// state (`--state`) is removed once the deferral is finished.
/// `announce_first` shows the deferred response itself (for `dtr token`).
async fn wait(
    mut poller: Poller<&Client, SystemClock>,
    d: &Deferral,
    state: Option<&Path>,
    announce_first: bool,
) -> u8 {
    let tty =
        std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let display = Mutex::new(Display::new(tty, d));
    if announce_first {
        lock(&display).announce(d);
    }
    let mut failures = 0;
    let mut ticker = tokio::time::interval(SPINNER_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let outcome = loop {
        let run = poller.run(|p| lock(&display).progress(p));
        tokio::pin!(run);
        let r = loop {
            tokio::select! {
                r = &mut run => break r,
                _ = ticker.tick(), if tty => lock(&display).redraw(),
                _ = tokio::signal::ctrl_c() => {
                    lock(&display).clear();
                    if d.expires_in > 0 {
                        print_json(&resumable(d));
                    }
                    match state {
                        Some(p) => eprintln!("interrupted: the deferral is still pending; resume with `dtr poll --state {0}` or cancel with `dtr cancel --state {0}`", p.display()),
                        None => eprintln!("interrupted: the deferral is still pending; resume with `dtr poll DEFERRAL_CODE` or cancel with `dtr cancel DEFERRAL_CODE`"),
                    }
                    return FAILED;
                }
            }
        };
        match r {
            Err(Error::Http(e)) if failures < NETWORK_RETRIES => {
                failures += 1;
                lock(&display).line(&format!("network error ({e}); retrying at the next poll"));
            }
            other => break other,
        }
    };
    lock(&display).clear();
    match outcome {
        Ok(PollOutcome::Token(t)) => {
            forget_state(state);
            print_token(&t)
        }
        Ok(PollOutcome::Failed(e)) => {
            if finishes_deferral(&e.error) {
                forget_state(state);
            }
            report_failure(&e)
        }
        Ok(PollOutcome::Expired) => {
            forget_state(state);
            eprintln!("expired: the deferral code expired before the request was decided");
            FAILED
        }
        Err(e) => report_error(&e, &d.issuer),
    }
}

/// How often the spinner line is redrawn.
const SPINNER_TICK: Duration = Duration::from_millis(125);

/// Frames of the spinner.
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

fn lock(display: &Mutex<Display>) -> MutexGuard<'_, Display> {
    display.lock().unwrap_or_else(|e| e.into_inner())
}

/// The progress display of a waiting `dtr token` / `dtr poll` on stderr:
/// on a terminal one spinner line redrawn in place (elapsed time, current
/// answer and step, time to the next poll) with lasting lines printed
/// above it; otherwise one plain line per poll.
struct Display {
    tty: bool,
    /// When the deferred response was received (the elapsed time counts
    /// from there, also for a resumed deferral).
    since_unix_ms: i64,
    /// When the next poll is due, in Unix milliseconds.
    next_poll_at: Option<i64>,
    /// The latest answer and step, e.g. `authorization_pending step=review`.
    status: String,
    shown_uri: Option<String>,
    frame: usize,
    drawn: bool,
}

impl Display {
    fn new(tty: bool, d: &Deferral) -> Self {
        let first_poll = d.received_at_unix_ms.saturating_add(
            i64::try_from(d.interval.max(1).saturating_mul(1000)).unwrap_or(i64::MAX),
        );
        let mut status = d.error.to_string();
        if let Some(desc) = &d.description {
            status.push(' ');
            status.push_str(&safe(desc));
        }
        Self {
            tty,
            since_unix_ms: d.received_at_unix_ms,
            next_poll_at: Some(first_poll),
            status,
            shown_uri: None,
            frame: 0,
            drawn: false,
        }
    }

    /// The first lines shown for a deferred response.
    fn announce(&mut self, d: &Deferral) {
        let mut line = format!(
            "deferred: {} (code valid {}s, polling every {}s)",
            d.error, d.expires_in, d.interval
        );
        if let Some(desc) = &d.description {
            line.push(' ');
            line.push_str(&safe(desc));
        }
        self.line(&line);
        if let Some(uri) = &d.interaction_uri {
            self.interaction(uri);
        }
    }

    /// After every poll: the interaction URI whenever it changes, then the
    /// spinner state or one plain line.
    fn progress(&mut self, p: &PollProgress) {
        if p.interaction_uri.is_some() && p.interaction_uri != self.shown_uri {
            if let Some(uri) = &p.interaction_uri {
                self.interaction(uri);
            }
        }
        self.shown_uri.clone_from(&p.interaction_uri);
        let mut status = p.error.to_string();
        if p.error == ErrorCode::SlowDown {
            // DTR-19: the poller added 5 s.
            status.push_str(&format!(" (interval raised to {}s)", p.interval));
        }
        if let Some(desc) = &p.error_description {
            status.push(' ');
            status.push_str(&safe(desc));
        }
        let now = dtr_client::clock::now_unix_ms();
        self.next_poll_at = p
            .next_poll_in
            .map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
        self.status = status;
        if self.tty {
            self.redraw();
            return;
        }
        let mut line = format!("waiting: {}", self.status);
        match p.next_poll_in {
            Some(d) => line.push_str(&format!(" next poll in {}s", secs_ceil(d))),
            None => line.push_str(" (the code expires before the next poll)"),
        }
        eprintln!("{line}");
    }

    /// Redraws the spinner line (terminal only).
    fn redraw(&mut self) {
        if !self.tty {
            return;
        }
        let now = dtr_client::clock::now_unix_ms();
        let elapsed = u64::try_from(now.saturating_sub(self.since_unix_ms)).unwrap_or(0) / 1000;
        let next = match self.next_poll_at {
            Some(at) => {
                let ms = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
                if ms == 0 {
                    "polling now".to_owned()
                } else {
                    format!("next poll in {}s", secs_ceil(Duration::from_millis(ms)))
                }
            }
            None => "the code expires before the next poll".to_owned(),
        };
        let spinner = SPINNER[self.frame % SPINNER.len()];
        self.frame = self.frame.wrapping_add(1);
        let mut err = std::io::stderr().lock();
        // \r and "erase line" redraw in place.
        let _ = write!(
            err,
            "\r\x1b[2K{spinner} {:02}:{:02} waiting: {} | {next}",
            elapsed / 60,
            elapsed % 60,
            self.status
        );
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erases the spinner line, if one is drawn.
    fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }

    /// A lasting line, above the spinner on a terminal.
    fn line(&mut self, text: &str) {
        self.clear();
        eprintln!("{text}");
        self.redraw();
    }

    /// The interaction URI (DTR-11), made prominent.
    fn interaction(&mut self, uri: &str) {
        self.clear();
        if self.tty {
            // Bold on a terminal; the URI alone on its line so it can be
            // selected or clicked.
            eprintln!();
            eprintln!("  \x1b[1m>>> ACTION REQUIRED: open this URL to continue:\x1b[0m");
            eprintln!("  >>>   \x1b[1;4m{}\x1b[0m", safe(uri));
            eprintln!();
        } else {
            show_interaction(uri);
        }
        self.redraw();
    }
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs_f64().ceil() as u64
}

/// Makes the interaction URI stand out (DTR-11): the run cannot continue
/// until someone opens it.
fn show_interaction(uri: &str) {
    eprintln!();
    eprintln!("  >>> ACTION REQUIRED: open this URL to continue:");
    eprintln!("  >>>   {}", safe(uri));
    eprintln!();
}

fn is_pending(code: &ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::AuthorizationPending | ErrorCode::InteractionRequired | ErrorCode::SlowDown
    )
}

fn print_token(t: &TokenResponse) -> u8 {
    print_json(&serde_json::to_value(t).unwrap_or_default());
    OK
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Reports a terminal OAuth error (exit 1).
fn report_failure(e: &OAuthError) -> u8 {
    let what = match e.error {
        ErrorCode::AccessDenied => "denied",
        ErrorCode::ExpiredToken => "expired",
        _ => "failed",
    };
    eprintln!("{what}: {}", safe(&e.to_string()));
    FAILED
}

/// Reports a library error with the exit code of its kind.
fn report_error(e: &Error, issuer: &str) -> u8 {
    match e {
        Error::Http(_) => {
            eprintln!(
                "error: cannot reach the authorization server at {}: {e}",
                safe(issuer)
            );
            NETWORK
        }
        Error::Discovery(_) | Error::InvalidUrl { .. } => {
            eprintln!("error: --issuer {}: {}", safe(issuer), safe(&e.to_string()));
            USAGE
        }
        Error::InvalidParameter(_) => {
            eprintln!("error: {e}");
            USAGE
        }
        Error::DpopKeyRequired { .. } | Error::DpopKeyMismatch { .. } => {
            eprintln!("error: {e}; pass the key it was obtained with as --dpop-key FILE; nothing was sent");
            USAGE
        }
        Error::Key(_) => {
            eprintln!("error: {e}");
            USAGE
        }
        Error::CancellationUnsupported => {
            eprintln!("error: {e} (DTR-7); nothing was sent");
            FAILED
        }
        _ => {
            eprintln!("error: {}", safe(&e.to_string()));
            FAILED
        }
    }
}

/// Server-supplied text with control characters replaced, so that a
/// response cannot move the cursor or rewrite earlier terminal output.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(secret: Option<&str>, method: Option<AuthMethod>) -> ConnectionArgs {
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
    fn private_key_selects_private_key_jwt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.pem");
        let key = Es256Key::generate();
        std::fs::write(&path, key.to_pkcs8_pem().unwrap()).unwrap();
        let mut c = conn(None, None);
        c.private_key = Some(path.clone());
        c.key_id = Some("k1".into());
        match client_auth(&c) {
            Ok(ClientAuth::PrivateKeyJwt {
                client_id,
                key: k,
                kid,
            }) => {
                assert_eq!(client_id, "svc");
                assert_eq!(k.thumbprint(), key.thumbprint());
                assert_eq!(kid.as_deref(), Some("k1"));
            }
            other => panic!("{other:?}"),
        }
        // Contradictory or incomplete flags are usage errors.
        c.auth_method = Some(AuthMethod::ClientSecretBasic);
        assert_eq!(client_auth(&c).err(), Some(USAGE));
        let c = conn(None, Some(AuthMethod::PrivateKeyJwt));
        assert_eq!(client_auth(&c).err(), Some(USAGE));
        let mut c = conn(None, None);
        c.private_key = Some(dir.path().join("missing.pem"));
        assert_eq!(client_auth(&c).err(), Some(USAGE));
    }

    #[test]
    fn dpop_key_file_is_created_private_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpop.pem");
        let mut c = conn(None, None);
        c.dpop_key = Some(path.clone());
        let first = dpop_key(&c).unwrap().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = dpop_key(&c).unwrap().unwrap();
        assert_eq!(again.thumbprint(), first.thumbprint());
        std::fs::write(&path, "not a key").unwrap();
        assert_eq!(dpop_key(&c).err(), Some(USAGE));
        let mut c = conn(None, None);
        c.dpop = true;
        assert!(dpop_key(&c).unwrap().is_some());
        assert!(dpop_key(&conn(None, None)).unwrap().is_none());
    }

    #[test]
    fn resumable_output_names_the_bound_key() {
        let d = Deferral::from_response(
            dtr_client::DeferredResponse {
                error: ErrorCode::AuthorizationPending,
                deferral_code: "DC".into(),
                expires_in: 60,
                interval: 5,
                interaction_uri: None,
                error_description: None,
            },
            0,
            "https://as",
            "svc",
        );
        assert!(resumable(&d).get("dpop_jkt").is_none());
        let v = resumable(&d.bound_to(Some("JKT".into())));
        assert_eq!(v["dpop_jkt"], "JKT");
        assert_eq!(v["deferral_code"], "DC");
    }

    #[test]
    fn auth_method_defaults_follow_the_secret() {
        assert!(matches!(
            client_auth(&conn(Some("s"), None)),
            Ok(ClientAuth::SecretBasic { .. })
        ));
        assert!(matches!(
            client_auth(&conn(None, None)),
            Ok(ClientAuth::None { .. })
        ));
        assert!(matches!(
            client_auth(&conn(Some("s"), Some(AuthMethod::ClientSecretPost))),
            Ok(ClientAuth::SecretPost { .. })
        ));
    }

    #[test]
    fn inconsistent_auth_flags_are_usage_errors() {
        assert_eq!(
            client_auth(&conn(None, Some(AuthMethod::ClientSecretBasic))).err(),
            Some(USAGE)
        );
        assert_eq!(
            client_auth(&conn(Some("s"), Some(AuthMethod::None))).err(),
            Some(USAGE)
        );
    }

    #[test]
    fn positional_code_wins() {
        let c = deferral_code(Some("a".into()), Some("b".into()));
        assert_eq!(c.map(|c| c.secret().to_owned()), Some("a".into()));
        assert!(deferral_code(None, None).is_none());
        assert!(deferral_code(Some(String::new()), None).is_none());
    }

    #[test]
    fn control_characters_are_neutralised() {
        assert_eq!(safe("step=a\x1b[2J\n"), "step=a?[2J?");
    }
}
