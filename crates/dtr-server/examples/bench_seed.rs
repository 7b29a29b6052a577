//! Bulk seeding of pending deferrals for `bench/run`: a million deferrals
//! through HTTP would take longer than the benchmark itself, so this writes
//! them straight into the database: a SQLite file in one transaction, or a
//! PostgreSQL database (`postgres://` URL) in batches of arrays.
//!
//! The schema comes from the store itself (`SqliteStore::open` and
//! `PostgresStore::open` apply the migrations), and codes are stored exactly as the server stores them: the
//! SHA-256 of the code, base64url (`dtr_proto::secret::sha256_b64`, DTR-9).
//! Only benchmark data: the codes are predictable (`PREFIX` + a zero-padded
//! index) so that the load generator can compute them without a code file.
//!
//! Usage: `bench_seed DB_PATH_OR_POSTGRES_URL CLIENT_ID COUNT [PREFIX] [INTERVAL_SECS]`

use anyhow::{bail, Context, Result};
use dtr_proto::secret::sha256_b64;
use dtr_server::store::postgres::PostgresStore;
use dtr_server::store::sqlite::SqliteStore;
use rusqlite::{params, Connection};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The code of seeded deferral `i`; bench/lua/poll_dtr.lua builds the same.
fn code(prefix: &str, i: u64) -> String {
    format!("{prefix}{i:010}")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: bench_seed DB_PATH CLIENT_ID COUNT [PREFIX] [INTERVAL_SECS]");
    }
    let target = &args[0];
    let client_id = &args[1];
    let count: u64 = args[2].parse().context("COUNT must be a number")?;
    let prefix = args.get(3).map_or("benchcode-", String::as_str);
    let interval_ms: i64 = args
        .get(4)
        .map(|s| s.parse::<i64>())
        .transpose()
        .context("INTERVAL_SECS must be a number")?
        .unwrap_or(1)
        * 1000;

    let started = Instant::now();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("clock before 1970")?
        .as_millis() as i64;
    // A day: longer than any benchmark run, so nothing expires mid-run.
    let rows = Rows {
        client_id,
        prefix,
        count,
        created_at: now,
        expires_at: now + 24 * 3600 * 1000,
        interval_ms,
    };
    if target.starts_with("postgres://") || target.starts_with("postgresql://") {
        seed_postgres(target, &rows)?;
    } else {
        seed_sqlite(Path::new(target), &rows)?;
    }
    println!(
        "seeded {count} pending deferrals for {client_id} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What to seed: `count` pending deferrals of one client.
struct Rows<'a> {
    client_id: &'a str,
    prefix: &'a str,
    count: u64,
    created_at: i64,
    expires_at: i64,
    interval_ms: i64,
}

fn seed_sqlite(path: &Path, r: &Rows<'_>) -> Result<()> {
    // Creates the file and applies every migration, as the server would.
    drop(SqliteStore::open(path).map_err(|e| anyhow::anyhow!("{e}"))?);
    let mut conn = Connection::open(path)?;
    // Seeding is reproducible from scratch, so durability is not needed here.
    conn.pragma_update(None, "synchronous", "OFF")?;
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare(
            "INSERT INTO deferrals (id, code_hash, client_id, grant_type, scope, subject, state, \
             created_at, expires_at, interval_ms) \
             VALUES (?1, ?2, ?3, 'client_credentials', 'payments', ?3, 'pending', ?4, ?5, ?6)",
        )?;
        for i in 0..r.count {
            st.execute(params![
                format!("dfr_bench{i:010}"),
                sha256_b64(&code(r.prefix, i)),
                r.client_id,
                r.created_at,
                r.expires_at,
                r.interval_ms
            ])?;
        }
    }
    tx.commit()?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

fn seed_postgres(url: &str, r: &Rows<'_>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Applies every migration, as the server would.
        drop(
            PostgresStore::open(url, 1)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        // Seeding is reproducible from scratch, so durability is not needed here.
        client.batch_execute("SET synchronous_commit = off").await?;
        let insert = client
            .prepare(
                "INSERT INTO deferrals (id, code_hash, client_id, grant_type, scope, subject, state, \
                 created_at, expires_at, interval_ms) \
                 SELECT id, code_hash, $3, 'client_credentials', 'payments', $3, 'pending', $4, $5, $6 \
                 FROM unnest($1::text[], $2::text[]) AS t(id, code_hash)",
            )
            .await?;
        const BATCH: u64 = 20_000;
        let mut first = 0;
        while first < r.count {
            let last = (first + BATCH).min(r.count);
            let ids: Vec<String> = (first..last).map(|i| format!("dfr_bench{i:010}")).collect();
            let hashes: Vec<String> = (first..last).map(|i| sha256_b64(&code(r.prefix, i))).collect();
            client
                .execute(
                    &insert,
                    &[&ids, &hashes, &r.client_id, &r.created_at, &r.expires_at, &r.interval_ms],
                )
                .await?;
            first = last;
        }
        client.batch_execute("ANALYZE deferrals").await?;
        Ok(())
    })
}
