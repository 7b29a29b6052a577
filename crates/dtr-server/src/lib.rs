//! dtr-server: an OAuth 2.1 authorization server whose every grant can
//! turn asynchronous through the Deferred Token Response.
//!
//! Layout: [`config`] (the external contract of configuration), [`policy`]
//! (what to defer), [`deferrals`] (the deferral service), [`tokens`] (JWT
//! access tokens), [`client_auth`], [`store`] (storage trait and
//! databases), [`http`] (thin handlers), [`worker`] (background upkeep),
//! [`metrics`] (Prometheus), [`pdp`] and [`authzen`] (decisions from an
//! AuthZEN PDP, ARAP access request tasks), [`access_requests`] (dtr's
//! review queue as an ARAP access request service).
//! Protocol types and pure rules live in `dtr-proto`.

pub mod access_requests;
pub mod approver_hooks;
pub mod approvers;
pub mod arap;
pub mod authzen;
pub mod callbacks;
pub mod ciba_delivery;
pub mod client_assertion;
pub mod client_auth;
pub mod clock;
pub mod config;
pub mod deferrals;
pub mod dpop;
pub mod error;
pub mod generated_secret;
pub mod grants;
pub mod http;
pub mod identity;
pub mod keys;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod oidc;
pub mod outbound;
pub mod outbox;
pub mod password;
pub mod pdp;
pub mod policy;
pub mod registration;
pub mod request_object;
pub mod sealed;
pub mod session;
pub mod state;
pub mod store;
pub mod throttle;
pub mod token_policy;
pub mod tokens;
pub mod worker;

pub use state::{AppState, StartupError};

use config::DatabaseUrl;
use std::future::Future;
use std::sync::Arc;
use store::Store;

/// Opens the configured database (`database`, `database_pool_size`) and
/// applies migrations.
pub async fn open_database(config: &config::Config) -> Result<Arc<dyn Store>, StartupError> {
    open_store_with_pool(&config.database, config.database_pool_size as usize).await
}

/// Opens a database with the default pool size and applies migrations.
pub async fn open_store(db: &DatabaseUrl) -> Result<Arc<dyn Store>, StartupError> {
    open_store_with_pool(db, store::postgres::DEFAULT_POOL_SIZE).await
}

/// Opens a database and applies migrations; `pool_size` is the most
/// connections this node holds to PostgreSQL (SQLite uses one).
pub async fn open_store_with_pool(
    db: &DatabaseUrl,
    pool_size: usize,
) -> Result<Arc<dyn Store>, StartupError> {
    match db {
        DatabaseUrl::Sqlite(path) => {
            let path = path.clone();
            let s = tokio::task::spawn_blocking(move || store::sqlite::SqliteStore::open(&path))
                .await
                .map_err(|e| StartupError(e.to_string()))?
                .map_err(|e| StartupError(format!("database: {e}")))?;
            Ok(Arc::new(s))
        }
        DatabaseUrl::Postgres(url) => {
            let s = store::postgres::PostgresStore::open(url, pool_size)
                .await
                .map_err(|e| StartupError(format!("config key `database`: {e}")))?;
            Ok(Arc::new(s))
        }
    }
}

/// Serves on a bound listener until `shutdown` resolves, then drains
/// in-flight requests and stops the background worker. Tests bind port 0
/// and run many servers in one process. Connections are bounded by
/// `[http]` (see [`http::server`]); each request carries
/// `axum::extract::ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(worker::run(state.clone(), stop_rx.clone()));
    let sender = tokio::spawn(callbacks::run(state.clone(), stop_rx.clone()));
    let hooks = tokio::spawn(approver_hooks::run(state.clone(), stop_rx.clone()));
    let tasks = tokio::spawn(authzen::tasks::run(state.clone(), stop_rx));
    let limits = state.config.http.clone();
    let result = http::server::run(listener, http::app(state), limits, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = sender.await;
    let _ = hooks.await;
    let _ = tasks.await;
    result
}
