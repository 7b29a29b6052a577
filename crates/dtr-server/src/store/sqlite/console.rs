//! [`ConsoleStore`] on SQLite.

use super::*;
use crate::store::console::{ConsoleSession, ConsoleStore};

#[async_trait]
impl ConsoleStore for SqliteStore {
    async fn insert_console_session(&self, s: &ConsoleSession) -> StoreResult<()> {
        let s = s.clone();
        self.with(move |db| {
            db.execute(
                "INSERT INTO console_sessions (id_hash, admin_fingerprint, created_at, expires_at, username) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.id_hash, s.admin_fingerprint, s.created_at, s.expires_at, s.username],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn console_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> StoreResult<Option<ConsoleSession>> {
        let h = id_hash.to_owned();
        self.with_read(move |db| {
            db.query_row(
                "SELECT id_hash, admin_fingerprint, created_at, expires_at, username FROM console_sessions \
                 WHERE id_hash = ?1 AND expires_at > ?2",
                params![h, now],
                |r| {
                    Ok(ConsoleSession {
                        id_hash: r.get(0)?,
                        admin_fingerprint: r.get(1)?,
                        created_at: r.get(2)?,
                        expires_at: r.get(3)?,
                        username: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn delete_console_session(&self, id_hash: &str) -> StoreResult<bool> {
        let h = id_hash.to_owned();
        self.with(move |db| {
            let n = db
                .execute("DELETE FROM console_sessions WHERE id_hash = ?1", [h])
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn delete_user_console_sessions(&self, username: &str) -> StoreResult<u64> {
        let name = username.to_owned();
        self.with(move |db| {
            let n = db
                .execute("DELETE FROM console_sessions WHERE username = ?1", [name])
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }

    async fn prune_console_sessions(&self, before: i64) -> StoreResult<u64> {
        self.with(move |db| {
            let n = db
                .execute(
                    "DELETE FROM console_sessions WHERE expires_at < ?1",
                    [before],
                )
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }
}
