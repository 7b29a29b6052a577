//! The embedded SQLite store, used from blocking tasks: one writing
//! connection in WAL mode behind a mutex (SQLite serialises writers
//! anyway) and a few read-only connections for the hot lookups, which WAL
//! lets run beside the writer on other cores. Every state change is still
//! written as a conditional update, so the code reads the same as the
//! PostgreSQL store and stays correct whatever the connection model. The
//! one thing kept in memory rather than written is when each pending
//! deferral was last polled (`poll_ledger`): a SQLite database serves one
//! node, and that write was most of a poll's cost.

use super::transitions::{self, Dialect, Slot, Target};
use super::*;
use dtr_proto::lifecycle::CallbackEffect;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Users, sessions, consents, codes and refresh tokens.
mod accounts;
/// Review console sessions.
mod console;
/// Device codes of RFC 8628.
mod device;
/// Inserts of concurrent requests committed together.
mod group_commit;
mod issuance;
/// The last poll of each pending deferral, in memory.
mod poll_ledger;

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

/// Approves the deferrals whose `approve_after` time has come (run by the
/// background worker every half second). The unary `+` keeps SQLite's
/// planner off the (state, expires_at) index, which it preferred: that
/// visited every pending deferral and read its row to test
/// `auto_approve_at`, 30 ms at 200,000 pending and most of the poll
/// benchmark's p99 when it ran. The partial index on `auto_approve_at`
/// holds only the deferrals that have one.
/// The values of a transition's placeholders, in order.
fn slot_values(slots: &[Slot], w: &TransitionWrite, now: i64) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
    slots
        .iter()
        .map(|s| match s {
            Slot::Id => Value::Text(w.id.clone()),
            Slot::Now => Value::Integer(now),
            Slot::DecidedBy => text(&w.decided_by),
            Slot::GrantedScope => text(&w.granted_scope),
            Slot::DenyReason => text(&w.deny_reason),
            Slot::Handle => text(&w.handle_hash),
        })
        .collect()
}

fn transitioned_from_row(row: &Row<'_>) -> rusqlite::Result<Transitioned> {
    Ok(Transitioned {
        id: row.get(0)?,
        created_at: row.get(1)?,
        client_id: row.get(2)?,
    })
}

/// A transition's effect on the deferral's callback, in its transaction
/// (the table's `callback` column).
fn apply_callback_effect(
    db: &Connection,
    effect: CallbackEffect,
    id: &str,
    now: i64,
) -> StoreResult<()> {
    match effect {
        CallbackEffect::None => Ok(()),
        CallbackEffect::Enqueue => db
            .prepare_cached(transitions::SQLITE_ENQUEUE)
            .and_then(|mut st| st.execute([id]))
            .map(drop)
            .map_err(db_err),
        CallbackEffect::Suppress => db
            .prepare_cached(transitions::SQLITE_SUPPRESS)
            .and_then(|mut st| st.execute(params![id, now]))
            .map(drop)
            .map_err(db_err),
    }
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

    /// A deferral as read, with its last poll from the ledger when that
    /// is later than the database's.
    fn with_last_poll(&self, mut r: DeferralRecord) -> DeferralRecord {
        r.last_polled_at = self.polls.latest(&r.id, r.last_polled_at);
        r
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

const DEFERRAL_COLUMNS: &str = "id, client_id, grant_type, scope, granted_scope, authorization_details, subject, \
     state, interaction_handle, progress, deny_reason, created_at, expires_at, interval_ms, auto_approve_at, \
     last_polled_at, slow_down_count, polling_blocked, resolved_at, redeemed_at, dpop_jkt, grant_context, \
     interaction_handle_sealed, decided_by";

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

fn deferral_from_row(row: &Row<'_>) -> rusqlite::Result<DeferralRecord> {
    let state: String = row.get(7)?;
    Ok(DeferralRecord {
        id: row.get(0)?,
        client_id: row.get(1)?,
        grant_type: row.get(2)?,
        scope: row.get(3)?,
        granted_scope: row.get(4)?,
        authorization_details: json_opt(row, 5)?,
        subject: row.get(6)?,
        state: state.parse().map_err(|e| corrupt(7, e))?,
        interaction_handle: match (row.get(8)?, row.get(22)?) {
            (Some(hash), Some(sealed)) => Some(StoredHandle { hash, sealed }),
            _ => None,
        },
        progress: row.get(9)?,
        deny_reason: row.get(10)?,
        decided_by: row.get(23)?,
        created_at: row.get(11)?,
        expires_at: row.get(12)?,
        interval_ms: row.get(13)?,
        auto_approve_at: row.get(14)?,
        last_polled_at: row.get(15)?,
        slow_down_count: row.get(16)?,
        polling_blocked: row.get(17)?,
        resolved_at: row.get(18)?,
        redeemed_at: row.get(19)?,
        dpop_jkt: row.get(20)?,
        grant_context: json_opt(row, 21)?,
    })
}

fn json_vec(row: &Row<'_>, col: usize) -> rusqlite::Result<Vec<String>> {
    let s: String = row.get(col)?;
    serde_json::from_str(&s).map_err(|e| corrupt(col, e))
}

fn client_from_row(row: &Row<'_>) -> rusqlite::Result<ClientRecord> {
    Ok(ClientRecord {
        client_id: row.get(0)?,
        secret_hash: row.get(1)?,
        auth_method: row.get(2)?,
        grant_types: json_vec(row, 3)?,
        scope: row.get(4)?,
        redirect_uris: json_vec(row, 5)?,
        jwks: json_opt(row, 6)?,
        notification_endpoint: row.get(7)?,
        enabled: row.get(8)?,
        admin_disabled: row.get(9)?,
        dpop_bound_access_tokens: row.get(10)?,
        registration_token_hash: row.get(11)?,
        metadata: json_opt(row, 12)?,
        require_par: row.get(13)?,
        jwks_uri: row.get(14)?,
        owner: row.get(15)?,
    })
}

const CLIENT_COLUMNS: &str =
    "client_id, secret_hash, auth_method, grant_types, scope, redirect_uris, jwks, \
     notification_endpoint, enabled, admin_disabled, dpop_bound_access_tokens, registration_token_hash, metadata, require_par, jwks_uri, owner";

fn to_json(v: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl ClientStore for SqliteStore {
    async fn upsert_client(&self, c: &ClientRecord) -> StoreResult<()> {
        let c = c.clone();
        let grant_types = to_json(&c.grant_types)?;
        let redirect_uris = to_json(&c.redirect_uris)?;
        let jwks = c.jwks.as_ref().map(to_json).transpose()?;
        let metadata = c.metadata.as_ref().map(to_json).transpose()?;
        self.with(move |db| {
            db.execute(
                "INSERT INTO clients (client_id, secret_hash, auth_method, grant_types, scope, redirect_uris, jwks, \
                 notification_endpoint, enabled, dpop_bound_access_tokens, registration_token_hash, metadata, require_par, jwks_uri, owner) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
                 ON CONFLICT (client_id) DO UPDATE SET secret_hash = excluded.secret_hash, \
                 auth_method = excluded.auth_method, grant_types = excluded.grant_types, scope = excluded.scope, \
                 redirect_uris = excluded.redirect_uris, jwks = excluded.jwks, \
                 notification_endpoint = excluded.notification_endpoint, enabled = excluded.enabled, \
                 dpop_bound_access_tokens = excluded.dpop_bound_access_tokens, \
                 registration_token_hash = excluded.registration_token_hash, metadata = excluded.metadata, \
                 require_par = excluded.require_par, jwks_uri = excluded.jwks_uri, owner = excluded.owner",
                params![
                    c.client_id,
                    c.secret_hash,
                    c.auth_method,
                    grant_types,
                    c.scope,
                    redirect_uris,
                    jwks,
                    c.notification_endpoint,
                    c.enabled,
                    c.dpop_bound_access_tokens,
                    c.registration_token_hash,
                    metadata,
                    c.require_par,
                    c.jwks_uri,
                    c.owner
                ],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        let id = client_id.to_owned();
        self.with_read(move |db| {
            db.query_row(
                &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?1"),
                [id],
                client_from_row,
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.with_scan(|db| {
            let mut st = db
                .prepare(&format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client_id"
                ))
                .map_err(db_err)?;
            let rows = st.query_map([], client_from_row).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn set_client_admin_disabled(
        &self,
        client_id: &str,
        disabled: bool,
    ) -> StoreResult<bool> {
        let id = client_id.to_owned();
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE clients SET admin_disabled = ?2 WHERE client_id = ?1",
                    params![id, disabled],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        let id = client_id.to_owned();
        self.with(move |db| {
            let n = db
                .execute("DELETE FROM clients WHERE client_id = ?1", [id])
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }
}

#[async_trait]
impl DeferralStore for SqliteStore {
    async fn insert_deferral(&self, d: &NewDeferral) -> StoreResult<()> {
        let d = d.clone();
        let ad = d.authorization_details.as_ref().map(to_json).transpose()?;
        let ctx = d.grant_context.as_ref().map(to_json).transpose()?;
        let insert = move |db: &Connection| {
            db.prepare_cached(
                "INSERT INTO deferrals (id, code_hash, client_id, grant_type, scope, authorization_details, subject, \
                 state, interaction_handle, created_at, expires_at, interval_ms, auto_approve_at, \
                 notification_token_hash, dpop_jkt, code_sealed, notification_token_sealed, callback_not_before, grant_context, \
                 interaction_handle_sealed) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?
            .execute(params![
                d.id,
                d.code_hash,
                d.client_id,
                d.grant_type,
                d.scope,
                ad,
                d.subject,
                d.interaction_handle.as_ref().map(|h| &h.hash),
                d.created_at,
                d.expires_at,
                d.interval_ms,
                d.auto_approve_at,
                d.notification_token_hash,
                d.dpop_jkt,
                d.code_sealed,
                d.notification_token_sealed,
                d.callback_not_before,
                ctx,
                d.interaction_handle.as_ref().map(|h| &h.sealed)
            ])
            .map(|_| ())
        };
        self.inserts.insert(&self.conn, Box::new(insert)).await
    }

    async fn deferral_by_code(&self, code_hash: &str) -> StoreResult<Option<DeferralRecord>> {
        let h = code_hash.to_owned();
        self.with_read(move |db| {
            db.prepare_cached(&format!(
                "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE code_hash = ?1"
            ))
            .and_then(|mut st| st.query_row([h], deferral_from_row).optional())
            .map_err(db_err)
        })
        .await
        .map(|r| r.map(|r| self.with_last_poll(r)))
    }

    async fn deferral_by_id(&self, id: &str) -> StoreResult<Option<DeferralRecord>> {
        let id = id.to_owned();
        self.with_read(move |db| {
            db.prepare_cached(&format!(
                "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE id = ?1"
            ))
            .and_then(|mut st| st.query_row([id], deferral_from_row).optional())
            .map_err(db_err)
        })
        .await
        .map(|r| r.map(|r| self.with_last_poll(r)))
    }

    async fn deferral_by_interaction(
        &self,
        handle_hash: &str,
    ) -> StoreResult<Option<DeferralRecord>> {
        let h = handle_hash.to_owned();
        self.with(move |db| {
            db.prepare_cached(&format!(
                "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE interaction_handle = ?1"
            ))
            .and_then(|mut st| st.query_row([h], deferral_from_row).optional())
            .map_err(db_err)
        })
        .await
        .map(|r| r.map(|r| self.with_last_poll(r)))
    }

    async fn list_deferrals(
        &self,
        f: &DeferralFilter,
        now: i64,
    ) -> StoreResult<Vec<DeferralRecord>> {
        let f = f.clone();
        self.with_scan(move |db| {
            // The effective state (DeferralRecord::effective_state) in SQL,
            // so that filtering by `pending` does not list expired rows.
            let eff = "CASE WHEN state IN ('pending','approved') AND expires_at <= ?1 THEN 'expired' ELSE state END";
            let sql = format!(
                "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE (?2 IS NULL OR {eff} = ?2) \
                 AND (?3 IS NULL OR client_id = ?3) ORDER BY created_at DESC, id DESC LIMIT ?4"
            );
            let mut st = db.prepare_cached(&sql).map_err(db_err)?;
            let rows = st
                .query_map(
                    params![now, f.state.map(|s| s.as_str()), f.client_id, f.limit.max(1)],
                    deferral_from_row,
                )
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
        .map(|rs| rs.into_iter().map(|r| self.with_last_poll(r)).collect())
    }

    async fn record_poll(&self, u: &PollUpdate, now: i64) -> StoreResult<bool> {
        if now >= u.expires_at {
            return Ok(false);
        }
        // A plain poll is only remembered in memory (see `poll_ledger`);
        // a `slow_down` or an escalation also goes to the database, under
        // the ledger's lock so no plain poll of the deferral interleaves.
        // The database's last poll may be older than the ledger's, so the
        // compare-and-set there is on the count alone.
        self.polls.record(
            &u.id,
            u.expected_last_polled_at,
            u.polled_at,
            u.interval_ms,
            || {
                if u.is_plain() {
                    return Ok(true);
                }
                let mut db = self.writer()?;
                let tx = db.transaction().map_err(db_err)?;
                let n = tx
                    .prepare_cached(
                        "UPDATE deferrals SET last_polled_at = ?2, slow_down_count = ?3, polling_blocked = ?4, \
                         state = CASE WHEN ?4 THEN 'denied' ELSE state END, \
                         deny_reason = CASE WHEN ?4 THEN 'polling faster than interval' ELSE deny_reason END, \
                         resolved_at = CASE WHEN ?4 THEN ?2 ELSE resolved_at END, \
                         decided_by = CASE WHEN ?4 THEN 'policy' ELSE decided_by END, \
                         interaction_handle = CASE WHEN ?4 THEN NULL ELSE interaction_handle END, \
                         interaction_handle_sealed = CASE WHEN ?4 THEN NULL ELSE interaction_handle_sealed END \
                         WHERE id = ?1 AND state = 'pending' AND expires_at > ?6 AND slow_down_count = ?5",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            u.id,
                            u.polled_at,
                            u.slow_down_count,
                            u.block,
                            u.expected_slow_down_count,
                            now
                        ])
                    })
                    .map_err(db_err)?;
                // An escalation is the lifecycle's `block` (DTR-19): a
                // decision, so the client's callback is queued with it.
                if n == 1 && u.block {
                    apply_callback_effect(&tx, Transition::Block.rule().callback, &u.id, now)?;
                }
                tx.commit().map_err(db_err)?;
                Ok(n == 1)
            },
        )
    }

    async fn transition(&self, w: &TransitionWrite, now: i64) -> StoreResult<Option<Transitioned>> {
        let stmt = transitions::update(
            w.transition,
            Dialect::Sqlite,
            Target::One {
                handle: w.handle_hash.is_some(),
            },
        );
        let values = slot_values(&stmt.slots, w, now);
        let effect = w.transition.rule().callback;
        // Short single-row writes on the writer, on the calling thread
        // (see `with_hot`): the redemption gate is on every successful poll.
        self.with_hot(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let done = tx
                .prepare_cached(&stmt.sql)
                .and_then(|mut st| {
                    st.query_row(params_from_iter(values.iter()), transitioned_from_row)
                        .optional()
                })
                .map_err(db_err)?;
            if let Some(d) = &done {
                apply_callback_effect(&tx, effect, &d.id, now)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(done)
        })
        .await
    }

    async fn set_progress(&self, id: &str, step: Option<&str>, now: i64) -> StoreResult<bool> {
        let (id, step) = (id.to_owned(), step.map(str::to_owned));
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE deferrals SET progress = ?2 WHERE id = ?1 AND state = 'pending' AND expires_at > ?3",
                    params![id, step, now],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn set_interaction(
        &self,
        id: &str,
        handle: Option<&StoredHandle>,
        now: i64,
    ) -> StoreResult<bool> {
        let (id, handle) = (id.to_owned(), handle.cloned());
        self.with(move |db| {
            let (hash, sealed) = handle.map(|h| (h.hash, h.sealed)).unzip();
            let n = db
                .execute(
                    "UPDATE deferrals SET interaction_handle = ?2, interaction_handle_sealed = ?3 \
                     WHERE id = ?1 AND state = 'pending' AND expires_at > ?4",
                    params![id, hash, sealed, now],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn transition_due(&self, t: Transition, now: i64) -> StoreResult<Vec<Transitioned>> {
        let stmt = transitions::update(t, Dialect::Sqlite, Target::Due);
        let w = TransitionWrite {
            decided_by: Some("policy".into()),
            ..TransitionWrite::new(t, "")
        };
        let values = slot_values(&stmt.slots, &w, now);
        let effect = t.rule().callback;
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let done = tx
                .prepare_cached(&stmt.sql)
                .and_then(|mut st| {
                    st.query_map(params_from_iter(values.iter()), transitioned_from_row)?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db_err)?;
            for d in &done {
                apply_callback_effect(&tx, effect, &d.id, now)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(done)
        })
        .await
    }

    async fn prune_deferrals(&self, before: i64) -> StoreResult<u64> {
        self.with(move |db| {
            let n = db
                .execute(
                    "DELETE FROM deferrals WHERE expires_at < ?1 AND state IN ('expired', 'redeemed', 'denied', 'cancelled')",
                    [before],
                )
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }

    async fn count_pending_by_client(&self, now: i64) -> StoreResult<Vec<(String, u64)>> {
        self.with_scan(move |db| {
            let mut st = db
                .prepare_cached(
                    "SELECT client_id, COUNT(*) FROM deferrals \
                     WHERE state = 'pending' AND expires_at > ?1 GROUP BY client_id ORDER BY client_id",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }
}

/// [`TokenStore::token_revoked`]: the token and every token it descends
/// from (the recursive walk up `token_parents`; `UNION` ends it even on a
/// cycle), any of them unknown, revoked, in a missing or revoked family,
/// or of a family whose user is disabled or gone.
const TOKEN_REVOKED: &str = "\
    WITH RECURSIVE chain(jti) AS ( \
        SELECT ?1 \
        UNION \
        SELECT p.parent_jti FROM token_parents p JOIN chain c ON p.jti = c.jti \
    ) \
    SELECT EXISTS ( \
        SELECT 1 FROM chain c \
        LEFT JOIN access_tokens t ON t.jti = c.jti \
        LEFT JOIN token_families f ON f.family_id = t.family_id \
        LEFT JOIN users u ON u.username = f.username \
        WHERE t.jti IS NULL \
           OR t.revoked_at IS NOT NULL \
           OR (t.family_id IS NOT NULL \
               AND (f.family_id IS NULL OR f.revoked_at IS NOT NULL \
                    OR u.username IS NULL OR NOT u.enabled OR u.admin_disabled)) \
    )";

#[async_trait]
impl TokenStore for SqliteStore {
    async fn record_token(&self, t: &IssuedToken) -> StoreResult<()> {
        let t = t.clone();
        let insert = move |db: &Connection| {
            // The links first: if the token's own row then fails, the
            // token is never handed out and the orphan links are pruned
            // with their expiry; the other order could leave, on the
            // one-by-one retry of a failed batch, a token without links.
            for parent in &t.parents {
                db.prepare_cached(
                    "INSERT OR IGNORE INTO token_parents (jti, parent_jti, expires_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![t.jti, parent, t.expires_at])?;
            }
            db.prepare_cached(
                "INSERT INTO access_tokens (jti, client_id, issued_at, expires_at, deferral_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![t.jti, t.client_id, t.issued_at, t.expires_at, t.deferral_id])
            .map(|_| ())
        };
        self.inserts.insert(&self.conn, Box::new(insert)).await
    }

    async fn revoke_token(&self, jti: &str, client_id: &str, now: i64) -> StoreResult<bool> {
        let (j, c) = (jti.to_owned(), client_id.to_owned());
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE access_tokens SET revoked_at = ?3 WHERE jti = ?1 AND client_id = ?2 AND revoked_at IS NULL",
                    params![j, c, now],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn token_revoked(&self, jti: &str) -> StoreResult<bool> {
        let j = jti.to_owned();
        self.with_read(move |db| {
            db.prepare_cached(TOKEN_REVOKED)
                .and_then(|mut st| st.query_row([j], |r| r.get::<_, bool>(0)))
                .map_err(db_err)
        })
        .await
    }

    async fn prune_tokens(&self, before: i64) -> StoreResult<u64> {
        self.with(move |db| {
            let n = db
                .execute("DELETE FROM access_tokens WHERE expires_at < ?1", [before])
                .map_err(db_err)?;
            db.execute("DELETE FROM token_parents WHERE expires_at < ?1", [before])
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }

    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> StoreResult<bool> {
        let key = key.to_owned();
        self.with_hot(move |db| {
            // An entry past its expiry no longer protects anything and may
            // be taken over; otherwise the first writer wins.
            let n = db
                .prepare_cached(
                    "INSERT INTO used_jtis (key, expires_at) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE used_jtis.expires_at <= ?3",
                )
                .and_then(|mut st| st.execute(params![key, expires_at, now]))
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn prune_used(&self, before: i64) -> StoreResult<u64> {
        self.with(move |db| {
            let n = db
                .execute("DELETE FROM used_jtis WHERE expires_at < ?1", [before])
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }

    async fn signing_key(
        &self,
        generate: &(dyn Fn() -> Vec<u8> + Send + Sync),
        now: i64,
    ) -> StoreResult<Vec<u8>> {
        // Generate outside the blocking task (the closure is not 'static);
        // INSERT OR IGNORE keeps an existing key, so it is never replaced.
        let candidate = generate();
        self.with(move |db| {
            db.execute(
                "INSERT OR IGNORE INTO signing_keys (id, private_der, created_at) VALUES (1, ?1, ?2)",
                params![candidate, now],
            )
            .map_err(db_err)?;
            db.query_row("SELECT private_der FROM signing_keys WHERE id = 1", [], |r| r.get(0)).map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl CallbackStore for SqliteStore {
    async fn claim_callbacks(
        &self,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<CallbackJob>> {
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let claimed: Vec<(String, String, u32)> = {
                let mut st = tx
                    .prepare_cached(
                        "UPDATE callbacks SET lease_until = ?1 + ?3, attempts = attempts + 1 \
                         WHERE deferral_id IN (SELECT deferral_id FROM callbacks WHERE state = 'pending' \
                           AND next_attempt_at <= ?1 AND (lease_until IS NULL OR lease_until < ?1) \
                           ORDER BY next_attempt_at LIMIT ?2) \
                         RETURNING deferral_id, endpoint, attempts",
                    )
                    .map_err(db_err)?;
                let rows = st.query_map(params![now, limit, lease_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)?
            };
            let mut jobs = Vec::with_capacity(claimed.len());
            for (deferral_id, endpoint, attempts) in claimed {
                let row = tx
                    .prepare_cached(
                        "SELECT code_sealed, notification_token_sealed, expires_at, COALESCE(resolved_at, 0) \
                         FROM deferrals WHERE id = ?1",
                    )
                    .and_then(|mut st| {
                        st.query_row([&deferral_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).optional()
                    })
                    .map_err(db_err)?;
                let (code_sealed, token_sealed, expires_at, resolved_at) = row.unwrap_or((None, None, 0, 0));
                jobs.push(CallbackJob { deferral_id, endpoint, attempts, code_sealed, token_sealed, expires_at, resolved_at });
            }
            tx.commit().map_err(db_err)?;
            Ok(jobs)
        })
        .await
    }

    async fn finish_callback(
        &self,
        deferral_id: &str,
        outcome: &CallbackOutcome,
        now: i64,
    ) -> StoreResult<()> {
        let id = deferral_id.to_owned();
        let outcome = outcome.clone();
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let (state, next, status, error) = match &outcome {
                CallbackOutcome::Delivered { status } => ("delivered", None, Some(*status), None),
                CallbackOutcome::Retry { at, status, error } => ("pending", Some(*at), *status, Some(error.clone())),
                CallbackOutcome::Failed { status, error } => ("failed", None, *status, Some(error.clone())),
            };
            // A job that was suppressed meanwhile stays suppressed.
            tx.execute(
                "UPDATE callbacks SET state = ?2, next_attempt_at = COALESCE(?3, next_attempt_at), lease_until = NULL, \
                 last_status = ?4, last_error = ?5, finished_at = CASE WHEN ?2 = 'pending' THEN NULL ELSE ?6 END \
                 WHERE deferral_id = ?1 AND state = 'pending'",
                params![id, state, next, status, error, now],
            )
            .map_err(db_err)?;
            if state != "pending" {
                // DTR-29: the secrets are not needed any more.
                tx.execute(
                    "UPDATE deferrals SET code_sealed = NULL, notification_token_sealed = NULL WHERE id = ?1",
                    [&id],
                )
                .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn callback_status(&self, deferral_id: &str) -> StoreResult<Option<CallbackStatus>> {
        let id = deferral_id.to_owned();
        self.with(move |db| {
            db.query_row(
                "SELECT state, attempts, last_status FROM callbacks WHERE deferral_id = ?1",
                [id],
                |r| {
                    Ok(CallbackStatus {
                        state: r.get(0)?,
                        attempts: r.get(1)?,
                        last_status: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of a worker statement, as SQLite explains it.
    fn plan(db: &Connection, sql: &str, params: usize) -> String {
        let mut st = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = st
            .query_map(params_from_iter(vec![0_i64; params]), |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows.join("; ")
    }

    #[test]
    fn approve_due_walks_only_the_deferrals_with_an_approval_time() {
        let store = SqliteStore::in_memory().unwrap();
        let db = store.conn.lock().unwrap();
        let stmt = transitions::update(Transition::AutoApprove, Dialect::Sqlite, Target::Due);
        let p = plan(&db, &stmt.sql, stmt.slots.len());
        assert!(p.contains("deferrals_auto_approve"), "plan: {p}");
    }
}
