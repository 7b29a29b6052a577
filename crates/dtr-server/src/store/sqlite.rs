//! The embedded SQLite store, used from blocking tasks: one writing
//! connection in WAL mode behind a mutex (SQLite serialises writers
//! anyway) and a few read-only connections for the hot lookups, which WAL
//! lets run beside the writer on other cores. Every state change is still
//! written as a conditional update, so the code reads the same as the
//! PostgreSQL store and stays correct whatever the connection model. The
//! one thing kept in memory rather than written is when each pending
//! deferral was last polled (`poll_ledger`): a SQLite database serves one
//! node, and that write was most of a poll's cost.

use super::*;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Users, sessions, consents, codes and refresh tokens.
mod accounts;
/// ARAP access request tasks.
mod authzen;
/// The callback outbox.
mod callbacks;
/// Registered clients.
mod clients;
/// Review console sessions.
mod console;
/// Deferrals and their lifecycle transitions.
mod deferrals;
/// Device codes of RFC 8628.
mod device;
/// Inserts of concurrent requests committed together.
mod group_commit;
/// The approver notification outbox.
mod hooks;
mod issuance;
/// The last poll of each pending deferral, in memory.
mod poll_ledger;
/// Issued access tokens, single-use identifiers and the signing key.
mod tokens;

use group_commit::GroupCommit;
use poll_ledger::PollLedger;

/// Migrations in order; applied ones never change (migrations/README.md).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_dpop.sql"),
    include_str!("../../migrations/sqlite/0003_callbacks.sql"),
    include_str!("../../migrations/sqlite/0004_registration.sql"),
    include_str!("../../migrations/sqlite/0005_accounts.sql"),
    include_str!("../../migrations/sqlite/0006_device.sql"),
    include_str!("../../migrations/sqlite/0007_jwks_uri.sql"),
    include_str!("../../migrations/sqlite/0008_pending_by_client.sql"),
    include_str!("../../migrations/sqlite/0009_token_exchange.sql"),
    include_str!("../../migrations/sqlite/0010_client_owner.sql"),
    include_str!("../../migrations/sqlite/0011_lifecycle.sql"),
    include_str!("../../migrations/sqlite/0012_approvers.sql"),
    include_str!("../../migrations/sqlite/0013_identities.sql"),
    include_str!("../../migrations/sqlite/0014_approver_webhooks.sql"),
    include_str!("../../migrations/sqlite/0015_front_channel.sql"),
    include_str!("../../migrations/sqlite/0016_authzen_tasks.sql"),
    include_str!("../../migrations/sqlite/0017_access_requests.sql"),
    include_str!("../../migrations/sqlite/0018_id_token_keys.sql"),
    include_str!("../../migrations/sqlite/0019_deferral_handles.sql"),
];

/// SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections (none for an in-memory database, whose
    /// contents only its own connection sees).
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<AtomicUsize>,
    /// Runs WAL checkpoints for a file database (see `maintain`).
    checkpointer: Option<Arc<Mutex<Connection>>>,
    /// When pending deferrals were last polled (see `poll_ledger`).
    polls: Arc<PollLedger>,
    /// Hot inserts waiting to share a commit (see `group_commit`).
    inserts: Arc<GroupCommit>,
}

/// Read-only connections of a file database.
const READERS: usize = 4;

/// Page cache per connection, in KiB (SQLite's negative `cache_size`).
/// Small on purpose: the pages of a large store are served from the
/// operating system's file cache, so the process's memory does not grow
/// with the number of deferrals. Measured with a million pending
/// deferrals, 16 MiB per connection polled no faster than 2 MiB (random
/// lookups miss either way) and held 75 MiB more.
const CACHE_KIB: i64 = 2 * 1024;

fn tune(conn: &Connection) -> StoreResult<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_err)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(db_err)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(db_err)?;
    Ok(())
}

fn db_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        // Still locked after the busy timeout: the database is there but
        // cannot take this write now; retry later.
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

impl SqliteStore {
    /// Opens (creating parent directories and the file) and migrates.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let conn = Connection::open(path).map_err(db_err)?;
        let mut store = Self::init(conn)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(db_err)?;
            tune(&r)?;
            readers.push(Mutex::new(r));
        }
        store.readers = Arc::new(readers);
        // Checkpoints move to the background worker: left automatic, one in
        // every thousand commits copies and fsyncs the WAL inside a request
        // while holding the writer, which showed as tens of milliseconds of
        // p99 under load. A passive checkpoint on its own connection runs
        // beside readers and the writer.
        store
            .writer()?
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(db_err)?;
        let cp = Connection::open(path).map_err(db_err)?;
        tune(&cp)?;
        store.checkpointer = Some(Arc::new(Mutex::new(cp)));
        Ok(store)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory().map_err(db_err)?)
    }

    fn init(mut conn: Connection) -> StoreResult<Self> {
        tune(&conn)?;
        // WAL lets readers of other processes (backups, the CLI) run beside
        // the server; NORMAL sync is durable across process crashes.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        // Under sustained writes the WAL grows until a checkpoint catches
        // up (2 GB after 150,000 new deferrals in the benchmark); once it
        // is reset, the file is cut back to this size instead of keeping
        // its peak on disk for good.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(Vec::new()),
            next_reader: Arc::new(AtomicUsize::new(0)),
            checkpointer: None,
            polls: Arc::default(),
            inserts: Arc::default(),
        })
    }

    /// Runs a read on a read-only connection (the writer when there is
    /// none), on the calling thread. Only for statements that change
    /// nothing, and only for single-row lookups: they take microseconds,
    /// far less than handing the work to a blocking thread and back, which
    /// measurably dominated a poll when every lookup did so.
    async fn with_read<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T>,
    {
        if self.readers.is_empty() {
            return self.with_hot(move |c| f(c)).await;
        }
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        // Take the first idle connection from a rotating start, else wait
        // for the one the rotation picked.
        let idle = (0..n).find_map(|i| self.readers[(start + i) % n].try_lock().ok());
        let guard = match idle {
            Some(g) => g,
            None => self.readers[start % n]
                .lock()
                .map_err(|_| StoreError::Database("connection mutex poisoned".into()))?,
        };
        f(&guard)
    }

    /// Runs a read that may scan (listings, counts) on a read-only
    /// connection on a blocking thread: it must hold neither the writer,
    /// whose every holder delays polls, nor an async worker.
    async fn with_scan<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        if self.readers.is_empty() {
            return self.with(move |c| f(c)).await;
        }
        let readers = self.readers.clone();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let n = readers.len();
            let idle = (0..n).find_map(|i| readers[(start + i) % n].try_lock().ok());
            let guard = match idle {
                Some(g) => g,
                None => readers[start % n]
                    .lock()
                    .map_err(|_| StoreError::Database("connection mutex poisoned".into()))?,
            };
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Database(format!("storage task failed: {e}")))?
    }

    /// Runs a short single-row write on the writer, on the calling thread
    /// (see [`SqliteStore::with_read`] for why). Bulk statements and
    /// anything that may scan keep using [`SqliteStore::with`].
    async fn with_hot<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Connection) -> StoreResult<T>,
    {
        let mut guard = self.writer()?;
        f(&mut guard)
    }

    /// The writing connection, held until the guard drops.
    fn writer(&self) -> StoreResult<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Database("connection mutex poisoned".into()))
    }

    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Database("connection mutex poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Database(format!("storage task failed: {e}")))?
    }
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(db_err)?;
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    let supported = MIGRATIONS.len() as i64;
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute_batch(sql).map_err(db_err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [i as i64 + 1],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
    }
    Ok(())
}

fn corrupt(col: usize, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        e.to_string().into(),
    )
}

fn json_opt(row: &Row<'_>, col: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    match row.get::<_, Option<String>>(col)? {
        None => Ok(None),
        Some(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| corrupt(col, e)),
    }
}

fn to_json(v: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.with(|db| db.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err))
            .await
    }

    async fn maintain(&self, now: i64) -> StoreResult<()> {
        self.polls.sweep(now);
        let Some(cp) = self.checkpointer.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || {
            let conn = cp
                .lock()
                .map_err(|_| StoreError::Database("connection mutex poisoned".into()))?;
            // PASSIVE: copies what no reader still needs, never waits for
            // the writer or readers; the WAL is reused from its start once
            // a checkpoint has caught up.
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .map_err(db_err)
        })
        .await
        .map_err(|e| StoreError::Database(format!("storage task failed: {e}")))?
    }
}
