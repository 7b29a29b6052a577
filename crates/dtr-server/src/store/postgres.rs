//! The PostgreSQL store, for several server nodes sharing one database.
//!
//! Nodes keep no state of their own: deferrals with their polling state,
//! the single-use identifier cache, the signing key and the clients' admin
//! overrides all live here. Every state change is one conditional
//! statement whose `WHERE` clause carries the precondition, so PostgreSQL's
//! row locking decides which of two racing nodes wins (DTR-21 exactly-once
//! redemption, DTR-19 polling state, DTR-32 cancellation); there is no
//! read followed by a write anywhere. Hot statements are prepared once per
//! pooled connection, so a poll costs one round trip per statement.

use super::transitions::{self, Dialect, Slot, Target};
use super::*;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// Users, sessions, consents, codes and refresh tokens.
mod accounts;
/// Review console sessions.
mod console;
/// Device codes of RFC 8628.
mod device;
mod issuance;

/// Migrations in order, in step with `migrations/sqlite/` (same numbers,
/// same meaning); applied ones never change (migrations/README.md).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_dpop.sql"),
    include_str!("../../migrations/postgres/0003_callbacks.sql"),
    include_str!("../../migrations/postgres/0004_registration.sql"),
    include_str!("../../migrations/postgres/0005_accounts.sql"),
    include_str!("../../migrations/postgres/0006_device.sql"),
    include_str!("../../migrations/postgres/0007_jwks_uri.sql"),
    include_str!("../../migrations/postgres/0008_pending_by_client.sql"),
    include_str!("../../migrations/postgres/0009_token_exchange.sql"),
    include_str!("../../migrations/postgres/0010_client_owner.sql"),
    include_str!("../../migrations/postgres/0011_lifecycle.sql"),
];

/// Key of the advisory lock that serialises migrations across nodes
/// starting together: any constant shared by every dtr binary (the ASCII
/// of `dtr-migr`).
const MIGRATION_LOCK_KEY: i64 = 0x6474_722d_6d69_6772;

/// Connections per node when the configuration does not say
/// (`database_pool_size`).
pub const DEFAULT_POOL_SIZE: usize = 10;

/// Rows deleted per statement while pruning, so that no prune holds row
/// locks or bloats one transaction for long while nodes keep serving.
const PRUNE_BATCH: i64 = 1000;

/// How long a node waits for a new connection or a free one from its pool
/// before a request fails with `server_error` instead of hanging.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// PostgreSQL implementation of [`Store`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Connections with `synchronous_commit = off`, for the writes of a
    /// plain poll (its time only): see [`PostgresStore::open`]. `None`
    /// with a pool of one connection.
    pacing: Option<Pool>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .field("pacing", &self.pacing.as_ref().map(Pool::status))
            .finish()
    }
}

fn db_err(e: tokio_postgres::Error) -> StoreError {
    // The Display of a server error is only "db error": keep the server's
    // message and code so logs say what went wrong.
    match e.as_db_error() {
        // SQLSTATE class 08 (connection exception) and 57P01..57P03
        // (admin or crash shutdown, cannot connect now): the database is
        // going away or not there yet.
        Some(db) if is_unavailable_state(db.code().code()) => {
            StoreError::Unavailable(format!("{} ({})", db.message(), db.code().code()))
        }
        Some(db) => StoreError::Database(format!("{} ({})", db.message(), db.code().code())),
        // No answer from the server at all: the connection closed or the
        // socket failed.
        None => StoreError::Unavailable(e.to_string()),
    }
}

/// SQLSTATE codes that mean "the database is not available" rather than
/// "this statement failed" (PostgreSQL Appendix A).
fn is_unavailable_state(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {e}"))
}

/// Where a connection string points, without its password, for error
/// messages at start-up.
fn describe(c: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = c.get_ports().iter().map(u16::to_string).collect();
    format!(
        "{}@{}:{}/{}",
        c.get_user().unwrap_or("(default user)"),
        if hosts.is_empty() {
            "localhost".into()
        } else {
            hosts.join(",")
        },
        if ports.is_empty() {
            "5432".into()
        } else {
            ports.join(",")
        },
        c.get_dbname().unwrap_or("(default database)")
    )
}

/// A poll's write (see `record_poll`), without an escalation.
const POLL: &str =
    "UPDATE deferrals SET last_polled_at = $2, slow_down_count = $3, polling_blocked = $4 \
     WHERE id = $1 AND state = 'pending' AND expires_at > $7 \
     AND last_polled_at IS NOT DISTINCT FROM $5 AND slow_down_count = $6";

/// A poll's write with an escalation: the deferral is denied and its
/// callback queued ([`transitions::PG_ENQUEUE`]) in one statement.
const POLL_BLOCK: &str =     "WITH t AS (UPDATE deferrals SET last_polled_at = $2, slow_down_count = $3, polling_blocked = $4, \
     state = 'denied', deny_reason = 'polling faster than interval', resolved_at = $2, decided_by = 'policy', \
     interaction_handle = NULL, interaction_handle_sealed = NULL \
     WHERE id = $1 AND state = 'pending' AND expires_at > $7 \
     AND last_polled_at IS NOT DISTINCT FROM $5 AND slow_down_count = $6 \
     RETURNING id, client_id, resolved_at, callback_not_before, code_sealed), \
     cb AS (INSERT INTO callbacks (deferral_id, endpoint, state, created_at, next_attempt_at) \
     SELECT t.id, c.notification_endpoint, 'pending', t.resolved_at, \
     GREATEST(t.resolved_at, COALESCE(t.callback_not_before, 0)) \
     FROM t JOIN clients c ON c.client_id = t.client_id \
     WHERE t.code_sealed IS NOT NULL AND c.notification_endpoint IS NOT NULL \
     ON CONFLICT (deferral_id) DO NOTHING) \
     SELECT 1 FROM t";

/// The values a transition's placeholders are bound to.
struct SlotValues {
    id: String,
    now: i64,
    decided_by: Option<String>,
    granted_scope: Option<String>,
    deny_reason: Option<String>,
    handle: Option<String>,
}

impl SlotValues {
    fn of(w: &TransitionWrite, now: i64) -> Self {
        Self {
            id: w.id.clone(),
            now,
            decided_by: w.decided_by.clone(),
            granted_scope: w.granted_scope.clone(),
            deny_reason: w.deny_reason.clone(),
            handle: w.handle_hash.clone(),
        }
    }

    /// The parameters in the order of `slots`.
    fn params(&self, slots: &[Slot]) -> Vec<&(dyn ToSql + Sync)> {
        slots
            .iter()
            .map(|s| -> &(dyn ToSql + Sync) {
                match s {
                    Slot::Id => &self.id,
                    Slot::Now => &self.now,
                    Slot::DecidedBy => &self.decided_by,
                    Slot::GrantedScope => &self.granted_scope,
                    Slot::DenyReason => &self.deny_reason,
                    Slot::Handle => &self.handle,
                }
            })
            .collect()
    }
}

fn transitioned_from_row(row: &Row) -> StoreResult<Transitioned> {
    Ok(Transitioned {
        id: row.try_get(0).map_err(db_err)?,
        created_at: row.try_get(1).map_err(db_err)?,
        client_id: row.try_get(2).map_err(db_err)?,
    })
}

/// Runs one prepared statement on a connection of `pool` and returns the
/// number of rows it changed.
async fn execute_on(pool: &Pool, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
    let c = pool.get().await.map_err(pool_err)?;
    let st = c.prepare_cached(sql).await.map_err(db_err)?;
    c.execute(&st, params).await.map_err(db_err)
}

/// A pool of at most `size` connections to `pg`.
fn build_pool(pg: tokio_postgres::Config, size: usize) -> StoreResult<Pool> {
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            // Fast: a broken connection shows up as an error on the next
            // statement; a test query per checkout would double the
            // round trips of a poll.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Database(format!("cannot build the connection pool: {e}")))
}

impl PostgresStore {
    /// Connects with a pool of at most `pool_size` connections, checks the
    /// database answers, and applies pending migrations.
    ///
    /// A quarter of the connections (at least one, when there are two or
    /// more) form a second pool whose sessions run with
    /// `synchronous_commit = off`, used only to record the time of a plain
    /// poll. That write is pacing state (DTR-19), not a decision: if the
    /// database crashes in the fraction of a second before its WAL is
    /// flushed, the next poll is at worst answered as on time. Waiting for
    /// the flush on every poll cost a quarter of the polls a node answers
    /// (measured: 7,800 against 10,100 polls/s). Every other write, and
    /// every `slow_down` count or escalation, commits durably.
    pub async fn open(url: &str, pool_size: usize) -> StoreResult<Self> {
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        let target = describe(&pg);
        let pool_size = pool_size.max(1);
        let pacing_size = if pool_size >= 2 {
            (pool_size / 4).max(1)
        } else {
            0
        };
        let pacing = if pacing_size > 0 {
            let mut relaxed = pg.clone();
            let options = match pg.get_options() {
                Some(o) if !o.is_empty() => format!("{o} -c synchronous_commit=off"),
                _ => "-c synchronous_commit=off".to_owned(),
            };
            relaxed.options(&options);
            Some(build_pool(relaxed, pacing_size)?)
        } else {
            None
        };
        let store = Self {
            pool: build_pool(pg, pool_size - pacing_size)?,
            pacing,
        };
        let mut client = store.pool.get().await.map_err(|e| {
            StoreError::Database(format!("cannot connect to PostgreSQL at {target}: {e}"))
        })?;
        migrate(&mut client).await?;
        Ok(store)
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.pool.get().await.map_err(pool_err)
    }

    /// Runs one prepared statement and returns the number of rows it changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
        execute_on(&self.pool, sql, params).await
    }

    /// Runs one prepared query returning at most one row.
    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Option<Row>> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await.map_err(db_err)?;
        c.query_opt(&st, params).await.map_err(db_err)
    }

    /// Runs one prepared query.
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await.map_err(db_err)?;
        c.query(&st, params).await.map_err(db_err)
    }

    /// Deletes in batches of [`PRUNE_BATCH`] rows, each its own short
    /// statement, until a batch comes back short.
    async fn prune_batched(&self, sql: &str, before: i64) -> StoreResult<u64> {
        let mut total = 0;
        loop {
            let n = self.execute(sql, &[&before, &PRUNE_BATCH]).await?;
            total += n;
            if n < PRUNE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

/// Applies pending migrations in one transaction holding a transaction-level
/// advisory lock: a second node starting at the same moment waits on the
/// lock, then finds the schema current. DDL is transactional in
/// PostgreSQL, so a failed migration leaves nothing half-applied.
async fn migrate(client: &mut deadpool_postgres::Client) -> StoreResult<()> {
    let tx = client.transaction().await.map_err(db_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(db_err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await
        .map_err(db_err)?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version",
            &[],
        )
        .await
        .map_err(db_err)?
        .try_get(0)
        .map_err(db_err)?;
    let supported = MIGRATIONS.len() as i64;
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        tx.batch_execute(sql).await.map_err(db_err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(i as i64 + 1)],
        )
        .await
        .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)
}

const DEFERRAL_COLUMNS: &str = "id, client_id, grant_type, scope, granted_scope, authorization_details, subject, \
     state, interaction_handle, progress, deny_reason, created_at, expires_at, interval_ms, auto_approve_at, \
     last_polled_at, slow_down_count, polling_blocked, resolved_at, redeemed_at, dpop_jkt, grant_context, \
     interaction_handle_sealed, decided_by";

const CLIENT_COLUMNS: &str =
    "client_id, secret_hash, auth_method, grant_types, scope, redirect_uris, jwks, \
     notification_endpoint, enabled, admin_disabled, dpop_bound_access_tokens, registration_token_hash, metadata, require_par, jwks_uri, owner";

/// A count as stored (INTEGER); counts beyond `i32` cannot occur, they are
/// bounded by `slow_down_limit`.
fn count_to_db(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn deferral_from_row(row: &Row) -> StoreResult<DeferralRecord> {
    let state: String = row.try_get(7).map_err(db_err)?;
    let slow_down: i32 = row.try_get(16).map_err(db_err)?;
    Ok(DeferralRecord {
        id: row.try_get(0).map_err(db_err)?,
        client_id: row.try_get(1).map_err(db_err)?,
        grant_type: row.try_get(2).map_err(db_err)?,
        scope: row.try_get(3).map_err(db_err)?,
        granted_scope: row.try_get(4).map_err(db_err)?,
        authorization_details: row.try_get(5).map_err(db_err)?,
        subject: row.try_get(6).map_err(db_err)?,
        state: state
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("deferral state: {e}")))?,
        interaction_handle: match (
            row.try_get(8).map_err(db_err)?,
            row.try_get(22).map_err(db_err)?,
        ) {
            (Some(hash), Some(sealed)) => Some(StoredHandle { hash, sealed }),
            _ => None,
        },
        progress: row.try_get(9).map_err(db_err)?,
        deny_reason: row.try_get(10).map_err(db_err)?,
        decided_by: row.try_get(23).map_err(db_err)?,
        created_at: row.try_get(11).map_err(db_err)?,
        expires_at: row.try_get(12).map_err(db_err)?,
        interval_ms: row.try_get(13).map_err(db_err)?,
        auto_approve_at: row.try_get(14).map_err(db_err)?,
        last_polled_at: row.try_get(15).map_err(db_err)?,
        slow_down_count: u32::try_from(slow_down)
            .map_err(|e| StoreError::Corrupt(format!("slow_down_count: {e}")))?,
        polling_blocked: row.try_get(17).map_err(db_err)?,
        resolved_at: row.try_get(18).map_err(db_err)?,
        redeemed_at: row.try_get(19).map_err(db_err)?,
        dpop_jkt: row.try_get(20).map_err(db_err)?,
        grant_context: row.try_get(21).map_err(db_err)?,
    })
}

fn client_from_row(row: &Row) -> StoreResult<ClientRecord> {
    Ok(ClientRecord {
        client_id: row.try_get(0).map_err(db_err)?,
        secret_hash: row.try_get(1).map_err(db_err)?,
        auth_method: row.try_get(2).map_err(db_err)?,
        grant_types: row.try_get(3).map_err(db_err)?,
        scope: row.try_get(4).map_err(db_err)?,
        redirect_uris: row.try_get(5).map_err(db_err)?,
        jwks: row.try_get(6).map_err(db_err)?,
        notification_endpoint: row.try_get(7).map_err(db_err)?,
        enabled: row.try_get(8).map_err(db_err)?,
        admin_disabled: row.try_get(9).map_err(db_err)?,
        dpop_bound_access_tokens: row.try_get(10).map_err(db_err)?,
        registration_token_hash: row.try_get(11).map_err(db_err)?,
        metadata: row.try_get(12).map_err(db_err)?,
        require_par: row.try_get(13).map_err(db_err)?,
        jwks_uri: row.try_get(14).map_err(db_err)?,
        owner: row.try_get(15).map_err(db_err)?,
    })
}

#[async_trait]
impl ClientStore for PostgresStore {
    async fn upsert_client(&self, c: &ClientRecord) -> StoreResult<()> {
        // `admin_disabled` is not in the update list: an admin's decision
        // outlives restarts and configuration reloads (DTR-23).
        self.execute(
            "INSERT INTO clients (client_id, secret_hash, auth_method, grant_types, scope, redirect_uris, jwks, \
             notification_endpoint, enabled, dpop_bound_access_tokens, registration_token_hash, metadata, require_par, jwks_uri, owner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (client_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash, \
             auth_method = EXCLUDED.auth_method, grant_types = EXCLUDED.grant_types, scope = EXCLUDED.scope, \
             redirect_uris = EXCLUDED.redirect_uris, jwks = EXCLUDED.jwks, \
             notification_endpoint = EXCLUDED.notification_endpoint, enabled = EXCLUDED.enabled, \
             dpop_bound_access_tokens = EXCLUDED.dpop_bound_access_tokens, \
             registration_token_hash = EXCLUDED.registration_token_hash, metadata = EXCLUDED.metadata, \
             require_par = EXCLUDED.require_par, jwks_uri = EXCLUDED.jwks_uri, owner = EXCLUDED.owner",
            &[
                &c.client_id,
                &c.secret_hash,
                &c.auth_method,
                &c.grant_types,
                &c.scope,
                &c.redirect_uris,
                &c.jwks,
                &c.notification_endpoint,
                &c.enabled,
                &c.dpop_bound_access_tokens,
                &c.registration_token_hash,
                &c.metadata,
                &c.require_par,
                &c.jwks_uri,
                &c.owner,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        self.query_opt(
            &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1"),
            &[&client_id],
        )
        .await?
        .as_ref()
        .map(client_from_row)
        .transpose()
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.query(
            &format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client_id"),
            &[],
        )
        .await?
        .iter()
        .map(client_from_row)
        .collect()
    }

    async fn set_client_admin_disabled(
        &self,
        client_id: &str,
        disabled: bool,
    ) -> StoreResult<bool> {
        let n = self
            .execute(
                "UPDATE clients SET admin_disabled = $2 WHERE client_id = $1",
                &[&client_id, &disabled],
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        Ok(self
            .execute("DELETE FROM clients WHERE client_id = $1", &[&client_id])
            .await?
            == 1)
    }
}

#[async_trait]
impl DeferralStore for PostgresStore {
    async fn insert_deferral(&self, d: &NewDeferral) -> StoreResult<()> {
        self.execute(
            "INSERT INTO deferrals (id, code_hash, client_id, grant_type, scope, authorization_details, subject, \
             state, interaction_handle, created_at, expires_at, interval_ms, auto_approve_at, \
             notification_token_hash, dpop_jkt, code_sealed, notification_token_sealed, callback_not_before, grant_context, \
             interaction_handle_sealed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
            &[
                &d.id,
                &d.code_hash,
                &d.client_id,
                &d.grant_type,
                &d.scope,
                &d.authorization_details,
                &d.subject,
                &d.interaction_handle.as_ref().map(|h| &h.hash),
                &d.created_at,
                &d.expires_at,
                &d.interval_ms,
                &d.auto_approve_at,
                &d.notification_token_hash,
                &d.dpop_jkt,
                &d.code_sealed,
                &d.notification_token_sealed,
                &d.callback_not_before,
                &d.grant_context,
                &d.interaction_handle.as_ref().map(|h| &h.sealed),
            ],
        )
        .await?;
        Ok(())
    }

    async fn deferral_by_code(&self, code_hash: &str) -> StoreResult<Option<DeferralRecord>> {
        self.query_opt(
            &format!("SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE code_hash = $1"),
            &[&code_hash],
        )
        .await?
        .as_ref()
        .map(deferral_from_row)
        .transpose()
    }

    async fn deferral_by_id(&self, id: &str) -> StoreResult<Option<DeferralRecord>> {
        self.query_opt(
            &format!("SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(deferral_from_row)
        .transpose()
    }

    async fn deferral_by_interaction(
        &self,
        handle_hash: &str,
    ) -> StoreResult<Option<DeferralRecord>> {
        self.query_opt(
            &format!("SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE interaction_handle = $1"),
            &[&handle_hash],
        )
        .await?
        .as_ref()
        .map(deferral_from_row)
        .transpose()
    }

    async fn list_deferrals(
        &self,
        f: &DeferralFilter,
        now: i64,
    ) -> StoreResult<Vec<DeferralRecord>> {
        // The effective state (DeferralRecord::effective_state) in SQL, so
        // that filtering by `pending` does not list expired rows.
        let eff = "CASE WHEN state IN ('pending','approved') AND expires_at <= $1 THEN 'expired' ELSE state END";
        let sql = format!(
            "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE ($2::TEXT IS NULL OR {eff} = $2::TEXT) \
             AND ($3::TEXT IS NULL OR client_id = $3::TEXT) ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let state = f.state.map(|s| s.as_str());
        let limit = i64::from(f.limit.max(1));
        self.query(&sql, &[&now, &state, &f.client_id, &limit])
            .await?
            .iter()
            .map(deferral_from_row)
            .collect()
    }

    async fn record_poll(&self, u: &PollUpdate, now: i64) -> StoreResult<bool> {
        // DTR-19 across nodes: the compare-and-set on the values this node
        // read means two nodes polled at the same moment cannot both count
        // as "the first poll in this interval"; the loser sees `false`.
        // A plain poll goes to the connections that do not wait for the
        // WAL flush (see `open`).
        let pool = match &self.pacing {
            Some(p) if u.is_plain() => p,
            _ => &self.pool,
        };
        // An escalation is the lifecycle's `block` (DTR-19): a decision,
        // so the client's callback is queued in the same statement.
        let n = execute_on(
            pool,
            if u.block { POLL_BLOCK } else { POLL },
            &[
                &u.id,
                &u.polled_at,
                &count_to_db(u.slow_down_count),
                &u.block,
                &u.expected_last_polled_at,
                &count_to_db(u.expected_slow_down_count),
                &now,
            ],
        )
        .await?;
        Ok(n == 1)
    }

    async fn transition(&self, w: &TransitionWrite, now: i64) -> StoreResult<Option<Transitioned>> {
        let stmt = transitions::update(
            w.transition,
            Dialect::Postgres,
            Target::One {
                handle: w.handle_hash.is_some(),
            },
        );
        let values = SlotValues::of(w, now);
        let params = values.params(&stmt.slots);
        // One statement: the update and its callback effect commit together.
        let row = self.query_opt(&stmt.sql, &params).await?;
        row.as_ref().map(transitioned_from_row).transpose()
    }

    async fn set_progress(&self, id: &str, step: Option<&str>, now: i64) -> StoreResult<bool> {
        let n = self
            .execute(
                "UPDATE deferrals SET progress = $2 WHERE id = $1 AND state = 'pending' AND expires_at > $3",
                &[&id, &step, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn set_interaction(
        &self,
        id: &str,
        handle: Option<&StoredHandle>,
        now: i64,
    ) -> StoreResult<bool> {
        let (hash, sealed) = handle.map(|h| (&h.hash, &h.sealed)).unzip();
        let n = self
            .execute(
                "UPDATE deferrals SET interaction_handle = $2, interaction_handle_sealed = $3 \
                 WHERE id = $1 AND state = 'pending' AND expires_at > $4",
                &[&id, &hash, &sealed, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn transition_due(&self, t: Transition, now: i64) -> StoreResult<Vec<Transitioned>> {
        // Every node's worker runs this; the table's from-states make the
        // second runner a no-op for rows the first one took.
        let stmt = transitions::update(t, Dialect::Postgres, Target::Due);
        let w = TransitionWrite {
            decided_by: Some("policy".into()),
            ..TransitionWrite::new(t, "")
        };
        let values = SlotValues::of(&w, now);
        let params = values.params(&stmt.slots);
        let c = self.client().await?;
        let st = c.prepare_cached(&stmt.sql).await.map_err(db_err)?;
        let rows = c.query(&st, &params).await.map_err(db_err)?;
        rows.iter().map(transitioned_from_row).collect()
    }

    async fn prune_deferrals(&self, before: i64) -> StoreResult<u64> {
        self.prune_batched(
            "DELETE FROM deferrals WHERE id IN (SELECT id FROM deferrals WHERE expires_at < $1 \
             AND state IN ('expired', 'redeemed', 'denied', 'cancelled') LIMIT $2)",
            before,
        )
        .await
    }

    async fn count_pending_by_client(&self, now: i64) -> StoreResult<Vec<(String, u64)>> {
        self.query(
            "SELECT client_id, COUNT(*)::BIGINT FROM deferrals \
             WHERE state = 'pending' AND expires_at > $1 GROUP BY client_id ORDER BY client_id",
            &[&now],
        )
        .await?
        .iter()
        .map(|r| {
            let n: i64 = r.try_get(1).map_err(db_err)?;
            Ok((r.try_get(0).map_err(db_err)?, n.max(0) as u64))
        })
        .collect()
    }
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn record_token(&self, t: &IssuedToken) -> StoreResult<()> {
        const INSERT: &str = "INSERT INTO access_tokens (jti, client_id, issued_at, expires_at, deferral_id) VALUES ($1, $2, $3, $4, $5)";
        let row: [&(dyn ToSql + Sync); 5] = [
            &t.jti,
            &t.client_id,
            &t.issued_at,
            &t.expires_at,
            &t.deferral_id,
        ];
        if t.parents.is_empty() {
            self.execute(INSERT, &row).await?;
            return Ok(());
        }
        // An exchanged token and its links in one transaction: never a
        // token without the links that make it die with its parents.
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        for parent in &t.parents {
            tx.execute(
                "INSERT INTO token_parents (jti, parent_jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&t.jti, parent, &t.expires_at],
            )
            .await
            .map_err(db_err)?;
        }
        tx.execute(INSERT, &row).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn revoke_token(&self, jti: &str, client_id: &str, now: i64) -> StoreResult<bool> {
        let n = self
            .execute(
                "UPDATE access_tokens SET revoked_at = $3 WHERE jti = $1 AND client_id = $2 AND revoked_at IS NULL",
                &[&jti, &client_id, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn token_revoked(&self, jti: &str) -> StoreResult<bool> {
        // The token and every token it descends from (the recursive walk
        // up `token_parents`; `UNION` ends it even on a cycle), any of them
        // unknown, revoked, in a missing or revoked family, or of a family
        // whose user is disabled or gone. One statement on one snapshot:
        // a revocation committed by any node is seen by the next check.
        let row = self
            .query_opt(
                "WITH RECURSIVE chain(jti) AS ( \
                     SELECT $1::text \
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
                 )",
                &[&jti],
            )
            .await?;
        match row {
            None => Ok(true),
            Some(r) => r.try_get::<_, bool>(0).map_err(db_err),
        }
    }

    async fn prune_tokens(&self, before: i64) -> StoreResult<u64> {
        let n = self
            .prune_batched(
                "DELETE FROM access_tokens WHERE jti IN (SELECT jti FROM access_tokens WHERE expires_at < $1 LIMIT $2)",
                before,
            )
            .await?;
        self.prune_batched(
            "DELETE FROM token_parents WHERE (jti, parent_jti) IN \
             (SELECT jti, parent_jti FROM token_parents WHERE expires_at < $1 LIMIT $2)",
            before,
        )
        .await?;
        Ok(n)
    }

    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> StoreResult<bool> {
        // One atomic statement: of two nodes inserting the same key, the
        // second waits for the first and then finds a live entry, so the
        // `WHERE` of the update fails and no row is reported (RFC 9449
        // section 11.1). An entry past its expiry may be taken over.
        let n = self
            .execute(
                "INSERT INTO used_jtis (key, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at \
                 WHERE used_jtis.expires_at <= $3",
                &[&key, &expires_at, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn prune_used(&self, before: i64) -> StoreResult<u64> {
        self.prune_batched(
            "DELETE FROM used_jtis WHERE key IN (SELECT key FROM used_jtis WHERE expires_at < $1 LIMIT $2)",
            before,
        )
        .await
    }

    async fn signing_key(
        &self,
        generate: &(dyn Fn() -> Vec<u8> + Send + Sync),
        now: i64,
    ) -> StoreResult<Vec<u8>> {
        // Nodes starting together each offer a key; the primary key lets
        // exactly one insert win and everyone reads the winner back.
        let candidate = generate();
        self.execute(
            "INSERT INTO signing_keys (id, private_der, created_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
            &[&candidate, &now],
        )
        .await?;
        let row = self
            .query_opt("SELECT private_der FROM signing_keys WHERE id = 1", &[])
            .await?
            .ok_or_else(|| StoreError::Corrupt("signing key vanished after insert".into()))?;
        row.try_get(0).map_err(db_err)
    }
}

#[async_trait]
impl CallbackStore for PostgresStore {
    async fn claim_callbacks(
        &self,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<CallbackJob>> {
        // FOR UPDATE SKIP LOCKED: nodes claiming at the same time take
        // disjoint jobs instead of queueing on each other's rows; the lease
        // frees the jobs of a node that dies mid-delivery.
        let rows = self
            .query(
                "WITH due AS ( \
                   SELECT deferral_id FROM callbacks WHERE state = 'pending' AND next_attempt_at <= $1 \
                     AND (lease_until IS NULL OR lease_until < $1) \
                   ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 UPDATE callbacks c SET lease_until = $1 + $3, attempts = c.attempts + 1 \
                 FROM due, deferrals d WHERE c.deferral_id = due.deferral_id AND d.id = c.deferral_id \
                 RETURNING c.deferral_id, c.endpoint, c.attempts, d.code_sealed, d.notification_token_sealed, \
                   d.expires_at, COALESCE(d.resolved_at, 0)",
                &[&now, &i64::from(limit), &lease_ms],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let attempts: i32 = r.try_get(2).map_err(db_err)?;
                Ok(CallbackJob {
                    deferral_id: r.try_get(0).map_err(db_err)?,
                    endpoint: r.try_get(1).map_err(db_err)?,
                    attempts: attempts.max(0) as u32,
                    code_sealed: r.try_get(3).map_err(db_err)?,
                    token_sealed: r.try_get(4).map_err(db_err)?,
                    expires_at: r.try_get(5).map_err(db_err)?,
                    resolved_at: r.try_get(6).map_err(db_err)?,
                })
            })
            .collect()
    }

    async fn finish_callback(
        &self,
        deferral_id: &str,
        outcome: &CallbackOutcome,
        now: i64,
    ) -> StoreResult<()> {
        let (state, next, status, error): (&str, Option<i64>, Option<i32>, Option<String>) =
            match outcome {
                CallbackOutcome::Delivered { status } => {
                    ("delivered", None, Some(i32::from(*status)), None)
                }
                CallbackOutcome::Retry { at, status, error } => (
                    "pending",
                    Some(*at),
                    status.map(i32::from),
                    Some(error.clone()),
                ),
                CallbackOutcome::Failed { status, error } => {
                    ("failed", None, status.map(i32::from), Some(error.clone()))
                }
            };
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        tx.execute(
            "UPDATE callbacks SET state = $2::TEXT, next_attempt_at = COALESCE($3::BIGINT, next_attempt_at), \
             lease_until = NULL, last_status = $4::INTEGER, last_error = $5::TEXT, \
             finished_at = CASE WHEN $2::TEXT = 'pending' THEN NULL ELSE $6::BIGINT END \
             WHERE deferral_id = $1 AND state = 'pending'",
            &[&deferral_id, &state, &next, &status, &error, &now],
        )
        .await
        .map_err(db_err)?;
        if state != "pending" {
            // DTR-29: the secrets are not needed any more.
            tx.execute(
                "UPDATE deferrals SET code_sealed = NULL, notification_token_sealed = NULL WHERE id = $1",
                &[&deferral_id],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn callback_status(&self, deferral_id: &str) -> StoreResult<Option<CallbackStatus>> {
        let row = self
            .query_opt(
                "SELECT state, attempts, last_status FROM callbacks WHERE deferral_id = $1",
                &[&deferral_id],
            )
            .await?;
        row.map(|r| {
            let attempts: i32 = r.try_get(1).map_err(db_err)?;
            let status: Option<i32> = r.try_get(2).map_err(db_err)?;
            Ok(CallbackStatus {
                state: r.try_get(0).map_err(db_err)?,
                attempts: attempts.max(0) as u32,
                last_status: status.and_then(|s| u16::try_from(s).ok()),
            })
        })
        .transpose()
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        self.query_opt("SELECT 1", &[]).await?;
        Ok(())
    }
}
