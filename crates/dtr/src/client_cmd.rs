//! `dtr token`, `dtr poll` and `dtr cancel`: the client side of the
//! Deferred Token Response from the shell.
//!
//! Output contract: results (token responses, deferrals, error JSON of
//! `--once`) go to stdout as JSON, so scripts can pipe them; progress and
//! diagnostics go to stderr. Exit codes: 0 success (including a pending
//! answer to `poll --once` and a deferral printed by `--no-wait`), 1
//! denied, expired, cancelled or any other OAuth failure, 2 usage or
//! configuration error (naming the flag), 3 network error.

use clap::{Args, ValueEnum};
use dtr_client::{
    Client, ClientAuth, ClientCredentialsRequest, ClientSecret, Deferral, DeferralCode, Error,
    ErrorCode, NotificationToken, OAuthError, PollOutcome, PollProgress, Poller, SystemClock,
    TokenResponse, TokenResult,
};
use dtr_proto::secret::MIN_NOTIFICATION_TOKEN_LEN;

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
}

/// Grants `dtr token` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Grant {
    /// OAuth 2.1 section 4.2.
    #[value(name = "client_credentials")]
    ClientCredentials,
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
    /// Client authentication method [default: client_secret_basic with a
    /// secret, none without].
    #[arg(long, value_enum)]
    pub auth_method: Option<AuthMethod>,
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
    let client = match discover(&args.conn, auth).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Grant::ClientCredentials = args.grant;
    let req = ClientCredentialsRequest {
        scope: args.scope,
        deferred: args.deferred,
        notification_token,
        authorization_details,
    };
    match client.client_credentials(&req).await {
        Ok(TokenResult::Token(t)) => print_token(&t),
        Ok(TokenResult::Error(e)) => report_failure(&e),
        Ok(TokenResult::Deferred(d)) if args.no_wait => {
            print_json(&serde_json::to_value(d.to_response()).unwrap_or_default());
            OK
        }
        Ok(TokenResult::Deferred(d)) => {
            announce(&d);
            let poller = Poller::new(&client, SystemClock, &d);
            wait(poller, &d).await
        }
        Err(e) => report_error(&e, &args.conn.issuer),
    }
}

/// Runs `dtr poll`.
pub async fn poll(args: PollArgs) -> u8 {
    let Some(code) = deferral_code(args.code, args.deferral_code) else {
        return USAGE;
    };
    let auth = match client_auth(&args.conn) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = match discover(&args.conn, auth).await {
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
    );
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
    };
    wait(poller, &d).await
}

/// Runs `dtr cancel`.
pub async fn cancel(args: CancelArgs) -> u8 {
    let Some(code) = deferral_code(args.code, args.deferral_code) else {
        return USAGE;
    };
    let auth = match client_auth(&args.conn) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = match discover(&args.conn, auth).await {
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

/// Builds the client authentication from the flags, or prints a usage
/// error naming the flag.
fn client_auth(conn: &ConnectionArgs) -> Result<ClientAuth, u8> {
    let client_id = conn.client_id.clone();
    if client_id.is_empty() {
        eprintln!("error: --client-id must not be empty");
        return Err(USAGE);
    }
    let secret = conn.client_secret.clone().filter(|s| !s.is_empty());
    let method = conn.auth_method.unwrap_or(if secret.is_some() {
        AuthMethod::ClientSecretBasic
    } else {
        AuthMethod::None
    });
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
    }
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

async fn discover(conn: &ConnectionArgs, auth: ClientAuth) -> Result<Client, u8> {
    Client::discover(&conn.issuer, auth)
        .await
        .map_err(|e| report_error(&e, &conn.issuer))
}

/// Polls until the end, printing progress on stderr; Ctrl-C leaves the
/// deferral pending and prints it on stdout so it can be resumed.
async fn wait(mut poller: Poller<&Client, SystemClock>, d: &Deferral) -> u8 {
    let mut shown_uri = d.interaction_uri.clone();
    let mut failures = 0;
    let outcome = loop {
        let run = poller.run(|p| progress(p, &mut shown_uri));
        let r = tokio::select! {
            r = run => r,
            _ = tokio::signal::ctrl_c() => {
                if d.expires_in > 0 {
                    print_json(&serde_json::to_value(d.to_response()).unwrap_or_default());
                }
                eprintln!("interrupted: the deferral is still pending; resume with `dtr poll DEFERRAL_CODE` or cancel with `dtr cancel DEFERRAL_CODE`");
                return FAILED;
            }
        };
        match r {
            Err(Error::Http(e)) if failures < NETWORK_RETRIES => {
                failures += 1;
                eprintln!("network error ({e}); retrying at the next poll");
            }
            other => break other,
        }
    };
    match outcome {
        Ok(PollOutcome::Token(t)) => print_token(&t),
        Ok(PollOutcome::Failed(e)) => report_failure(&e),
        Ok(PollOutcome::Expired) => {
            eprintln!("expired: the deferral code expired before the request was decided");
            FAILED
        }
        Err(e) => report_error(&e, &d.issuer),
    }
}

/// The first lines shown for a deferred response.
fn announce(d: &Deferral) {
    let mut line = format!(
        "deferred: {} (code valid {}s, polling every {}s)",
        d.error, d.expires_in, d.interval
    );
    if let Some(desc) = &d.description {
        line.push(' ');
        line.push_str(&safe(desc));
    }
    eprintln!("{line}");
    if let Some(uri) = &d.interaction_uri {
        show_interaction(uri);
    }
}

/// One progress line per poll; the interaction URI whenever it changes.
fn progress(p: &PollProgress, shown_uri: &mut Option<String>) {
    if p.interaction_uri.is_some() && p.interaction_uri != *shown_uri {
        if let Some(uri) = &p.interaction_uri {
            show_interaction(uri);
        }
    }
    shown_uri.clone_from(&p.interaction_uri);
    let mut line = format!("waiting: {}", p.error);
    if p.error == ErrorCode::SlowDown {
        // DTR-19: the poller added 5 s.
        line.push_str(&format!(" (interval raised to {}s)", p.interval));
    }
    if let Some(desc) = &p.error_description {
        line.push(' ');
        line.push_str(&safe(desc));
    }
    match p.next_poll_in {
        Some(d) => line.push_str(&format!(" next poll in {}s", d.as_secs_f64().ceil() as u64)),
        None => line.push_str(" (the code expires before the next poll)"),
    }
    eprintln!("{line}");
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
        }
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
