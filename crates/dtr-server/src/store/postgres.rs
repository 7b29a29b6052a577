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

use super::*;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

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
/// The approver notification outbox.
mod hooks;
/// Recording an issuance (a redemption with its token) in one transaction.
mod issuance;
/// Issued access tokens, single-use identifiers and the signing key.
mod tokens;

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
    include_str!("../../migrations/postgres/0012_approvers.sql"),
    include_str!("../../migrations/postgres/0013_identities.sql"),
    include_str!("../../migrations/postgres/0014_approver_webhooks.sql"),
    include_str!("../../migrations/postgres/0015_front_channel.sql"),
    include_str!("../../migrations/postgres/0016_authzen_tasks.sql"),
    include_str!("../../migrations/postgres/0017_access_requests.sql"),
    include_str!("../../migrations/postgres/0018_id_token_keys.sql"),
    include_str!("../../migrations/postgres/0019_deferral_handles.sql"),
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

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        self.query_opt("SELECT 1", &[]).await?;
        Ok(())
    }
}
