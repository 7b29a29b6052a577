//! A real server on a free loopback port for end-to-end tests: the
//! configuration as TOML text, SQLite in the given file (or any database
//! URL, `start_on`), the whole HTTP stack and the background tasks.
//! `stop()` drains it like SIGTERM; a dropped handle stops it too.
#![allow(dead_code, clippy::unwrap_used)]

use dtr_server::clock::{Clock, SystemClock};
use dtr_server::config::{ConfigFile, Overrides};
use dtr_server::AppState;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A running server.
pub struct Running {
    pub issuer: String,
    /// The server's state (its store and clock), for assertions.
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts a server with `config` on the system clock.
pub async fn start(config: &str, db: &Path) -> Running {
    start_with_clock(config, db, Arc::new(SystemClock)).await
}

/// Starts a server with `config` on `clock`.
pub async fn start_with_clock(config: &str, db: &Path, clock: Arc<dyn Clock>) -> Running {
    start_on(config, &format!("sqlite://{}", db.display()), clock).await
}

/// Starts a server with `config` on the database at `database` (a
/// `sqlite://` or `postgres://` URL, as the `database` key takes it):
/// several servers on one PostgreSQL database are the nodes of a cluster.
pub async fn start_on(config: &str, database: &str, clock: Arc<dyn Clock>) -> Running {
    start_listening(config, database, clock, "127.0.0.1:0").await
}

/// [`start_on`] listening on `listen` (a port chosen beforehand, when
/// another server's configuration must name this one).
pub async fn start_listening(
    config: &str,
    database: &str,
    clock: Arc<dyn Clock>,
    listen: &str,
) -> Running {
    let overrides = Overrides {
        listen: Some(listen.into()),
        database: Some(database.to_owned()),
        issuer: None,
    };
    let config = ConfigFile::parse(config)
        .unwrap()
        .validate(&overrides)
        .unwrap();
    let store = dtr_server::open_store(&config.database).await.unwrap();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::build(config, issuer.clone(), store, clock)
        .await
        .unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(dtr_server::serve(listener, state.clone(), async {
        let _ = rx.await;
    }));
    Running {
        issuer,
        state,
        stop: Some(tx),
        task: Some(task),
    }
}
