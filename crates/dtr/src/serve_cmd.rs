//! `dtr serve`: loads the configuration (or the demo), opens the database,
//! binds, prints what a newcomer needs, and serves until SIGTERM or Ctrl-C,
//! draining in-flight requests before exiting 0.

use dtr_server::config::{ConfigFile, DatabaseUrl, Overrides, RegistrationConfig};
use dtr_server::{clock::SystemClock, AppState};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Flags of `dtr serve`; each overrides the config key of the same name.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file; without one, a self-contained demo runs.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (config key `listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// `sqlite://PATH` or `postgres://...` (config key `database`).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Issuer identifier (config key `issuer`).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// Log format on stderr: `text` for people, `json` for one JSON object
    /// per line (log shippers). Every line inside a request carries its
    /// `request_id`.
    #[arg(long, value_enum, env = "DTR_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// Formats of `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    Text,
    /// JSON lines, with the fields of the enclosing spans.
    Json,
}

/// Logs on stderr through `dtr_server::logging`, which escapes control
/// characters of every logged value in both formats.
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = match format {
        LogFormat::Text => dtr_server::logging::Format::Text {
            ansi: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        },
        LogFormat::Json => dtr_server::logging::Format::Json,
    };
    let subscriber = dtr_server::logging::subscriber(format, filter, std::io::stderr);
    // Also routes the `log` records of dependencies into it.
    let _ = tracing_subscriber::util::SubscriberInitExt::try_init(subscriber);
}

/// Runs the server; returns the process exit code.
pub async fn run(args: ServeArgs) -> u8 {
    init_tracing(args.log_format);
    let demo = args.config.is_none();
    let file = match &args.config {
        None => ConfigFile::demo(),
        Some(path) => match ConfigFile::load(path) {
            Ok(f) => f,
            Err(e) => return fail(&e.to_string()),
        },
    };
    let overrides = Overrides {
        listen: args.listen,
        database: args.database,
        issuer: args.issuer,
    };
    let mut config = match file.validate(&overrides) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    if demo && config.admin_token.is_none() {
        match demo_admin_token(&config.database) {
            Ok(t) => config.admin_token = Some(t),
            Err(e) => return fail(&format!("cannot keep the demo admin token: {e}")),
        }
    }
    let store = match dtr_server::open_database(&config).await {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            return fail(&format!(
                "config key `listen`: cannot listen on {}: {e}",
                config.listen
            ))
        }
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(&format!("cannot read the bound address: {e}")),
    };
    let issuer = config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let admin_token = config.admin_token.clone();
    let database = config.database.clone();
    let registration = config.registration.clone();
    let state = match AppState::build(config, issuer.clone(), store, Arc::new(SystemClock)).await {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    if demo {
        print_walkthrough(&issuer, &database, admin_token.as_deref(), &registration);
    } else {
        println!("dtr listening on {local}, issuer {issuer}");
    }
    let _ = std::io::stdout().flush();
    tracing::info!(%local, %issuer, "serving");
    match dtr_server::serve(listener, state, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            0
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            1
        }
    }
}

fn fail(msg: &str) -> u8 {
    eprintln!("error: {msg}");
    2
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}

/// The demo's admin token: random on first start, kept beside the database
/// (mode 0600) so that `dtr admin` finds it and restarts keep it.
fn demo_admin_token(db: &DatabaseUrl) -> std::io::Result<String> {
    let dir = match db {
        DatabaseUrl::Sqlite(p) => p
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
        DatabaseUrl::Postgres(_) => PathBuf::from("dtr-data"),
    };
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        // A token kept from before the minimum was raised is replaced.
        if t.chars().count() >= dtr_server::config::ADMIN_TOKEN_MIN_LEN {
            return Ok(t);
        }
    }
    // 32 random bytes: 43 base64url characters.
    let token = dtr_proto::secret::random_token(32);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path)?;
    writeln!(f, "{token}")?;
    Ok(token)
}

fn print_walkthrough(
    issuer: &str,
    db: &DatabaseUrl,
    admin_token: Option<&str>,
    registration: &RegistrationConfig,
) {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "dtr".into());
    let db = match db {
        DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
        DatabaseUrl::Postgres(_) => "postgres".into(),
    };
    let token = admin_token.unwrap_or("(none)");
    // Registration is closed by default; the demo opens it, and says so.
    let registration = if registration.enabled && registration.open {
        format!(
            "OPEN to anyone, no initial access token: POST {issuer}/register\n               \
             registered clients get at most scope '{}', grant types {}",
            registration.scope,
            registration
                .allowed_grant_types()
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if registration.enabled {
        format!("POST {issuer}/register with the initial access token")
    } else {
        "closed".to_owned()
    };
    println!(
        r#"dtr demo authorization server
  issuer       {issuer}
  metadata     {issuer}/.well-known/oauth-authorization-server
  database     {db}
  admin token  {token}   (kept in dtr-data/admin-token; `dtr admin` reads it)
  clients      svc / svc-secret            (client_secret_basic)
               svc-post / svc-post-secret  (client_secret_post)
  user         alice / alice-password
  registration {registration}
  policy       scope payments -> review by an admin
               scope identity -> alice, the clients' owner, decides at the interaction_uri
               scope reports  -> approves itself after 10 s
               anything else  -> issued at once

A deferral end to end; paste into another terminal:

  DTR={exe}
  # 1. The client asks for `payments` and accepts a deferred answer (400 authorization_pending + deferral_code):
  CODE=$(curl -s -u svc:svc-secret -d grant_type=client_credentials -d scope=payments \
      -d completion_mode=deferred {issuer}/token | tee /dev/stderr | sed -E 's/.*"deferral_code":"([^"]+)".*/\1/'); echo
  # 2. Polling now says it is still pending:
  curl -s -u svc:svc-secret -d grant_type=urn:ietf:params:oauth:grant-type:deferred -d deferral_code=$CODE {issuer}/token; echo
  # 3. A reviewer lists pending deferrals (by id, never by code) and approves the newest:
  $DTR admin list --state pending
  ID=$($DTR admin list --state pending | grep -o 'dfr_[A-Za-z0-9_-]*' | head -n1); $DTR admin approve $ID
  # 4. The next poll returns the access token, exactly once; a second poll is invalid_grant:
  curl -s -u svc:svc-secret -d grant_type=urn:ietf:params:oauth:grant-type:deferred -d deferral_code=$CODE {issuer}/token; echo

OpenID CIBA (alice approves at {issuer}/ciba):  $DTR token --client-id svc --client-secret svc-secret --grant ciba --login-hint alice
Or let the client side wait for you:  $DTR token --client-id svc --client-secret svc-secret --scope payments --deferred
"#
    );
}
