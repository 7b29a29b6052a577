//! [`ConsoleStore`] on PostgreSQL.

use super::*;
use crate::store::console::{ConsoleSession, ConsoleStore};

#[async_trait]
impl ConsoleStore for PostgresStore {
    async fn insert_console_session(&self, s: &ConsoleSession) -> StoreResult<()> {
        self.execute(
            "INSERT INTO console_sessions (id_hash, admin_fingerprint, created_at, expires_at, username) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &s.id_hash,
                &s.admin_fingerprint,
                &s.created_at,
                &s.expires_at,
                &s.username,
            ],
        )
        .await?;
        Ok(())
    }

    async fn console_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> StoreResult<Option<ConsoleSession>> {
        let g = |e: tokio_postgres::Error| db_err(e);
        self.query_opt(
            "SELECT id_hash, admin_fingerprint, created_at, expires_at, username FROM console_sessions \
             WHERE id_hash = $1 AND expires_at > $2",
            &[&id_hash, &now],
        )
        .await?
        .map(|r| {
            Ok(ConsoleSession {
                id_hash: r.try_get(0).map_err(g)?,
                admin_fingerprint: r.try_get(1).map_err(g)?,
                created_at: r.try_get(2).map_err(g)?,
                expires_at: r.try_get(3).map_err(g)?,
                username: r.try_get(4).map_err(g)?,
            })
        })
        .transpose()
    }

    async fn delete_console_session(&self, id_hash: &str) -> StoreResult<bool> {
        Ok(self
            .execute(
                "DELETE FROM console_sessions WHERE id_hash = $1",
                &[&id_hash],
            )
            .await?
            == 1)
    }

    async fn delete_user_console_sessions(&self, username: &str) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM console_sessions WHERE username = $1",
            &[&username],
        )
        .await
    }

    async fn prune_console_sessions(&self, before: i64) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM console_sessions WHERE expires_at < $1",
            &[&before],
        )
        .await
    }
}
