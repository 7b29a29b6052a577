//! [`TokenStore`] on SQLite: issued access tokens (the revocation
//! list), the single-use cache and the signing key.

use super::*;

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

    async fn id_token_key(
        &self,
        alg: &str,
        candidate: Option<Vec<u8>>,
        now: i64,
    ) -> StoreResult<Option<Vec<u8>>> {
        let alg = alg.to_owned();
        self.with(move |db| {
            if let Some(der) = candidate {
                db.execute(
                    "INSERT OR IGNORE INTO id_token_keys (alg, private_der, created_at) VALUES (?1, ?2, ?3)",
                    params![alg, der, now],
                )
                .map_err(db_err)?;
            }
            db.query_row(
                "SELECT private_der FROM id_token_keys WHERE alg = ?1",
                params![alg],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }
}
