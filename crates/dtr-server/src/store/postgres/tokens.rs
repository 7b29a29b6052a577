//! [`TokenStore`] on PostgreSQL: issued access tokens (the
//! revocation list), the single-use cache and the signing key.

use super::*;

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

    async fn id_token_key(
        &self,
        alg: &str,
        candidate: Option<Vec<u8>>,
        now: i64,
    ) -> StoreResult<Option<Vec<u8>>> {
        if let Some(der) = candidate {
            self.execute(
                "INSERT INTO id_token_keys (alg, private_der, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (alg) DO NOTHING",
                &[&alg, &der, &now],
            )
            .await?;
        }
        self.query_opt(
            "SELECT private_der FROM id_token_keys WHERE alg = $1",
            &[&alg],
        )
        .await?
        .map(|row| row.try_get(0).map_err(db_err))
        .transpose()
    }
}
