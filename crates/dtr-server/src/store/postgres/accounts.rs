//! [`AccountStore`] on PostgreSQL. Single-use secrets are consumed with one
//! conditional `UPDATE ... WHERE used_at IS NULL RETURNING`, so of two nodes
//! racing for the same code or refresh token exactly one wins; only when it
//! changed no row is the row read back, to tell a replay from an unknown
//! secret.

use super::*;

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> StoreResult<T> {
    r.try_get(i).map_err(db_err)
}

fn user_from_row(r: &Row) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        username: get(r, 0)?,
        password_hash: get(r, 1)?,
        enabled: get(r, 2)?,
        admin_disabled: get(r, 3)?,
        roles: split_list(get(r, 4)?),
        groups: split_list(get(r, 5)?),
        name: get(r, 6)?,
        email: get(r, 7)?,
    })
}

fn user_token_from_row(r: &Row) -> StoreResult<UserTokenRecord> {
    Ok(UserTokenRecord {
        id: get(r, 0)?,
        username: get(r, 1)?,
        token_hash: get(r, 2)?,
        created_at: get(r, 3)?,
        revoked_at: get(r, 4)?,
    })
}

const USER_TOKEN_COLUMNS: &str = "id, username, token_hash, created_at, revoked_at";

fn session_from_row(r: &Row) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        id_hash: get(r, 0)?,
        username: get(r, 1)?,
        created_at: get(r, 2)?,
        expires_at: get(r, 3)?,
        ended_at: get(r, 4)?,
    })
}

fn consent_from_row(r: &Row) -> StoreResult<ConsentRecord> {
    Ok(ConsentRecord {
        username: get(r, 0)?,
        client_id: get(r, 1)?,
        id: get(r, 2)?,
        scope: get(r, 3)?,
        granted_at: get(r, 4)?,
    })
}

fn request_from_row(r: &Row) -> StoreResult<AuthorizationRequestRecord> {
    Ok(AuthorizationRequestRecord {
        id_hash: get(r, 0)?,
        client_id: get(r, 1)?,
        request: get(r, 2)?,
        pushed: get(r, 3)?,
        created_at: get(r, 4)?,
        expires_at: get(r, 5)?,
        used_at: get(r, 6)?,
    })
}

fn code_from_row(r: &Row) -> StoreResult<AuthorizationCodeRecord> {
    Ok(AuthorizationCodeRecord {
        code_hash: get(r, 0)?,
        client_id: get(r, 1)?,
        family_id: get(r, 2)?,
        grant_data: get(r, 3)?,
        created_at: get(r, 4)?,
        expires_at: get(r, 5)?,
        used_at: get(r, 6)?,
    })
}

fn refresh_from_row(r: &Row) -> StoreResult<RefreshTokenRecord> {
    Ok(RefreshTokenRecord {
        token_hash: get(r, 0)?,
        family_id: get(r, 1)?,
        client_id: get(r, 2)?,
        grant_data: get(r, 3)?,
        issued_at: get(r, 4)?,
        expires_at: get(r, 5)?,
        used_at: get(r, 6)?,
    })
}

const USER_COLUMNS: &str =
    "username, password_hash, enabled, admin_disabled, roles, user_groups, display_name, email";
const CONSENT_COLUMNS: &str = "username, client_id, id, scope, granted_at";
const REQUEST_COLUMNS: &str =
    "id_hash, client_id, request, pushed, created_at, expires_at, used_at";
const CODE_COLUMNS: &str =
    "code_hash, client_id, family_id, grant_data, created_at, expires_at, used_at";
const REFRESH_COLUMNS: &str =
    "token_hash, family_id, client_id, grant_data, issued_at, expires_at, used_at";

#[async_trait]
impl AccountStore for PostgresStore {
    async fn upsert_user(&self, u: &UserRecord) -> StoreResult<()> {
        // `admin_disabled` is not updated: an administrator's decision
        // outlives restarts (DTR-23).
        self.execute(
            "INSERT INTO users (username, password_hash, enabled, roles, user_groups, display_name, email) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, \
             enabled = EXCLUDED.enabled, roles = EXCLUDED.roles, user_groups = EXCLUDED.user_groups, \
             display_name = EXCLUDED.display_name, email = EXCLUDED.email",
            &[
                &u.username,
                &u.password_hash,
                &u.enabled,
                &join_list(&u.roles),
                &join_list(&u.groups),
                &u.name,
                &u.email,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        self.query_opt(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"),
            &[&username],
        )
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.query(
            &format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"),
            &[],
        )
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn set_user_admin_disabled(&self, username: &str, disabled: bool) -> StoreResult<bool> {
        Ok(self
            .execute(
                "UPDATE users SET admin_disabled = $2 WHERE username = $1",
                &[&username, &disabled],
            )
            .await?
            == 1)
    }

    async fn insert_user_token(&self, t: &UserTokenRecord) -> StoreResult<()> {
        self.execute(
            &format!("INSERT INTO user_tokens ({USER_TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
            &[
                &t.id,
                &t.username,
                &t.token_hash,
                &t.created_at,
                &t.revoked_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn user_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<UserTokenRecord>> {
        self.query_opt(
            &format!("SELECT {USER_TOKEN_COLUMNS} FROM user_tokens WHERE token_hash = $1"),
            &[&token_hash],
        )
        .await?
        .as_ref()
        .map(user_token_from_row)
        .transpose()
    }

    async fn list_user_tokens(&self, username: &str) -> StoreResult<Vec<UserTokenRecord>> {
        self.query(
            &format!(
                "SELECT {USER_TOKEN_COLUMNS} FROM user_tokens WHERE username = $1 ORDER BY created_at, id"
            ),
            &[&username],
        )
        .await?
        .iter()
        .map(user_token_from_row)
        .collect()
    }

    async fn revoke_user_token(&self, username: &str, id: &str, now: i64) -> StoreResult<bool> {
        Ok(self
            .execute(
                "UPDATE user_tokens SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND username = $2",
                &[&id, &username, &now],
            )
            .await?
            == 1)
    }

    async fn insert_session(&self, s: &SessionRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO sessions (id_hash, username, created_at, expires_at, ended_at) VALUES ($1, $2, $3, $4, $5)",
            &[&s.id_hash, &s.username, &s.created_at, &s.expires_at, &s.ended_at],
        )
        .await?;
        Ok(())
    }

    async fn session_by_hash(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>> {
        self.query_opt(
            "SELECT id_hash, username, created_at, expires_at, ended_at FROM sessions WHERE id_hash = $1",
            &[&id_hash],
        )
        .await?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    async fn end_session(&self, id_hash: &str, now: i64) -> StoreResult<bool> {
        Ok(self
            .execute(
                "UPDATE sessions SET ended_at = $2 WHERE id_hash = $1 AND ended_at IS NULL",
                &[&id_hash, &now],
            )
            .await?
            == 1)
    }

    async fn end_user_sessions(&self, username: &str, now: i64) -> StoreResult<u64> {
        self.execute(
            "UPDATE sessions SET ended_at = $2 WHERE username = $1 AND ended_at IS NULL",
            &[&username, &now],
        )
        .await
    }

    async fn grant_consent(
        &self,
        username: &str,
        client_id: &str,
        scope: &str,
        new_id: &str,
        now: i64,
    ) -> StoreResult<ConsentRecord> {
        let row = self
            .query_opt(
                &format!(
                    "INSERT INTO consents (username, client_id, id, scope, granted_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (username, client_id) DO UPDATE SET scope = EXCLUDED.scope, granted_at = EXCLUDED.granted_at \
                     RETURNING {CONSENT_COLUMNS}"
                ),
                &[&username, &client_id, &new_id, &scope, &now],
            )
            .await?
            .ok_or_else(|| StoreError::Database("consent upsert returned no row".into()))?;
        consent_from_row(&row)
    }

    async fn get_consent(
        &self,
        username: &str,
        client_id: &str,
    ) -> StoreResult<Option<ConsentRecord>> {
        self.query_opt(
            &format!(
                "SELECT {CONSENT_COLUMNS} FROM consents WHERE username = $1 AND client_id = $2"
            ),
            &[&username, &client_id],
        )
        .await?
        .as_ref()
        .map(consent_from_row)
        .transpose()
    }

    async fn list_consents(&self, username: &str) -> StoreResult<Vec<ConsentRecord>> {
        self.query(
            &format!(
                "SELECT {CONSENT_COLUMNS} FROM consents WHERE username = $1 ORDER BY client_id"
            ),
            &[&username],
        )
        .await?
        .iter()
        .map(consent_from_row)
        .collect()
    }

    async fn revoke_consent(&self, username: &str, client_id: &str) -> StoreResult<bool> {
        Ok(self
            .execute(
                "DELETE FROM consents WHERE username = $1 AND client_id = $2",
                &[&username, &client_id],
            )
            .await?
            == 1)
    }

    async fn insert_authorization_request(
        &self,
        r: &AuthorizationRequestRecord,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO authorization_requests (id_hash, client_id, request, pushed, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&r.id_hash, &r.client_id, &r.request, &r.pushed, &r.created_at, &r.expires_at, &r.used_at],
        )
        .await?;
        Ok(())
    }

    async fn authorization_request(
        &self,
        id_hash: &str,
        now: i64,
    ) -> StoreResult<Option<AuthorizationRequestRecord>> {
        self.query_opt(
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM authorization_requests WHERE id_hash = $1 AND used_at IS NULL AND expires_at > $2"
            ),
            &[&id_hash, &now],
        )
        .await?
        .as_ref()
        .map(request_from_row)
        .transpose()
    }

    async fn consume_authorization_request(&self, id_hash: &str, now: i64) -> StoreResult<bool> {
        Ok(self
            .execute(
                "UPDATE authorization_requests SET used_at = $2 WHERE id_hash = $1 AND used_at IS NULL AND expires_at > $2",
                &[&id_hash, &now],
            )
            .await?
            == 1)
    }

    async fn insert_authorization_code(&self, c: &AuthorizationCodeRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO authorization_codes (code_hash, client_id, family_id, grant_data, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&c.code_hash, &c.client_id, &c.family_id, &c.grant_data, &c.created_at, &c.expires_at, &c.used_at],
        )
        .await?;
        Ok(())
    }

    async fn authorization_code(
        &self,
        code_hash: &str,
    ) -> StoreResult<Option<AuthorizationCodeRecord>> {
        self.query_opt(
            &format!("SELECT {CODE_COLUMNS} FROM authorization_codes WHERE code_hash = $1"),
            &[&code_hash],
        )
        .await?
        .as_ref()
        .map(code_from_row)
        .transpose()
    }

    async fn use_authorization_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> StoreResult<Consumed<AuthorizationCodeRecord>> {
        let fresh = self
            .query_opt(
                &format!(
                    "UPDATE authorization_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 \
                     RETURNING {CODE_COLUMNS}"
                ),
                &[&code_hash, &now],
            )
            .await?;
        if let Some(r) = fresh {
            return Ok(Consumed::Fresh(code_from_row(&r)?));
        }
        let row = self
            .query_opt(
                &format!("SELECT {CODE_COLUMNS} FROM authorization_codes WHERE code_hash = $1"),
                &[&code_hash],
            )
            .await?
            .as_ref()
            .map(code_from_row)
            .transpose()?;
        Ok(match row {
            Some(c) if c.used_at.is_some() => Consumed::Replayed(c),
            _ => Consumed::Invalid,
        })
    }

    async fn insert_family(&self, f: &TokenFamilyRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO token_families (family_id, client_id, username, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (family_id) DO NOTHING",
            &[
                &f.family_id,
                &f.client_id,
                &f.username,
                &f.created_at,
                &f.revoked_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_family(&self, family_id: &str) -> StoreResult<Option<TokenFamilyRecord>> {
        let row = self
            .query_opt(
                "SELECT family_id, client_id, username, created_at, revoked_at FROM token_families WHERE family_id = $1",
                &[&family_id],
            )
            .await?;
        row.map(|r| {
            Ok(TokenFamilyRecord {
                family_id: get(&r, 0)?,
                client_id: get(&r, 1)?,
                username: get(&r, 2)?,
                created_at: get(&r, 3)?,
                revoked_at: get(&r, 4)?,
            })
        })
        .transpose()
    }

    async fn revoke_family(&self, family_id: &str, now: i64) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        // A family never written (a code replayed before any token was
        // issued) is recorded revoked, so a later exchange finds it dead.
        let n = tx
            .execute(
                "INSERT INTO token_families (family_id, client_id, username, created_at, revoked_at) \
                 VALUES ($1, '', '', $2, $2) \
                 ON CONFLICT (family_id) DO UPDATE SET revoked_at = EXCLUDED.revoked_at \
                 WHERE token_families.revoked_at IS NULL",
                &[&family_id, &now],
            )
            .await
            .map_err(db_err)?;
        tx.execute(
            "UPDATE access_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
            &[&family_id, &now],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(n == 1)
    }

    async fn set_token_family(&self, jti: &str, family_id: &str) -> StoreResult<()> {
        self.execute(
            "UPDATE access_tokens SET family_id = $2 WHERE jti = $1",
            &[&jti, &family_id],
        )
        .await?;
        Ok(())
    }

    async fn insert_refresh_token(&self, t: &RefreshTokenRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, client_id, grant_data, issued_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&t.token_hash, &t.family_id, &t.client_id, &t.grant_data, &t.issued_at, &t.expires_at, &t.used_at],
        )
        .await?;
        Ok(())
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        self.query_opt(
            &format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1"),
            &[&token_hash],
        )
        .await?
        .as_ref()
        .map(refresh_from_row)
        .transpose()
    }

    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<Consumed<RefreshTokenRecord>> {
        let fresh = self
            .query_opt(
                &format!(
                    "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
                     AND family_id IN (SELECT family_id FROM token_families WHERE revoked_at IS NULL) \
                     RETURNING {REFRESH_COLUMNS}"
                ),
                &[&token_hash, &now],
            )
            .await?;
        if let Some(r) = fresh {
            return Ok(Consumed::Fresh(refresh_from_row(&r)?));
        }
        let row = self.refresh_token(token_hash).await?;
        Ok(match row {
            Some(t) if t.used_at.is_some() => Consumed::Replayed(t),
            _ => Consumed::Invalid,
        })
    }

    async fn prune_accounts(&self, before: i64) -> StoreResult<u64> {
        let mut n = 0;
        for sql in [
            "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions WHERE expires_at < $1 LIMIT $2)",
            "DELETE FROM authorization_requests WHERE id_hash IN \
             (SELECT id_hash FROM authorization_requests WHERE expires_at < $1 LIMIT $2)",
            "DELETE FROM authorization_codes WHERE code_hash IN \
             (SELECT code_hash FROM authorization_codes WHERE expires_at < $1 LIMIT $2)",
            "DELETE FROM refresh_tokens WHERE token_hash IN \
             (SELECT token_hash FROM refresh_tokens WHERE expires_at < $1 LIMIT $2)",
        ] {
            n += self.prune_batched(sql, before).await?;
        }
        Ok(n)
    }
}
