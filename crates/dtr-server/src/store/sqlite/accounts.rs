//! [`AccountStore`] on SQLite. Single-use secrets are consumed with one
//! conditional `UPDATE ... WHERE used_at IS NULL`; only when it changed no
//! row is the row read back, to tell a replay from an unknown secret.

use super::*;

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        username: r.get(0)?,
        password_hash: r.get(1)?,
        enabled: r.get(2)?,
        admin_disabled: r.get(3)?,
        roles: split_list(&r.get::<_, String>(4)?),
        groups: split_list(&r.get::<_, String>(5)?),
        name: r.get(6)?,
        email: r.get(7)?,
    })
}

const USER_COLUMNS: &str =
    "username, password_hash, enabled, admin_disabled, roles, user_groups, display_name, email";

fn user_token_from_row(r: &Row<'_>) -> rusqlite::Result<UserTokenRecord> {
    Ok(UserTokenRecord {
        id: r.get(0)?,
        username: r.get(1)?,
        token_hash: r.get(2)?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

const USER_TOKEN_COLUMNS: &str = "id, username, token_hash, created_at, revoked_at";

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id_hash: r.get(0)?,
        username: r.get(1)?,
        created_at: r.get(2)?,
        expires_at: r.get(3)?,
        ended_at: r.get(4)?,
    })
}

fn consent_from_row(r: &Row<'_>) -> rusqlite::Result<ConsentRecord> {
    Ok(ConsentRecord {
        username: r.get(0)?,
        client_id: r.get(1)?,
        id: r.get(2)?,
        scope: r.get(3)?,
        granted_at: r.get(4)?,
    })
}

fn json(r: &Row<'_>, col: usize) -> rusqlite::Result<serde_json::Value> {
    json_opt(r, col)?.ok_or_else(|| corrupt(col, "missing JSON"))
}

fn request_from_row(r: &Row<'_>) -> rusqlite::Result<AuthorizationRequestRecord> {
    Ok(AuthorizationRequestRecord {
        id_hash: r.get(0)?,
        client_id: r.get(1)?,
        request: json(r, 2)?,
        pushed: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        used_at: r.get(6)?,
    })
}

fn code_from_row(r: &Row<'_>) -> rusqlite::Result<AuthorizationCodeRecord> {
    Ok(AuthorizationCodeRecord {
        code_hash: r.get(0)?,
        client_id: r.get(1)?,
        family_id: r.get(2)?,
        grant_data: json(r, 3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        used_at: r.get(6)?,
    })
}

fn refresh_from_row(r: &Row<'_>) -> rusqlite::Result<RefreshTokenRecord> {
    Ok(RefreshTokenRecord {
        token_hash: r.get(0)?,
        family_id: r.get(1)?,
        client_id: r.get(2)?,
        grant_data: json(r, 3)?,
        issued_at: r.get(4)?,
        expires_at: r.get(5)?,
        used_at: r.get(6)?,
    })
}

const REQUEST_COLUMNS: &str =
    "id_hash, client_id, request, pushed, created_at, expires_at, used_at";
const CODE_COLUMNS: &str =
    "code_hash, client_id, family_id, grant_data, created_at, expires_at, used_at";
const REFRESH_COLUMNS: &str =
    "token_hash, family_id, client_id, grant_data, issued_at, expires_at, used_at";

#[async_trait]
impl AccountStore for SqliteStore {
    async fn upsert_user(&self, u: &UserRecord) -> StoreResult<()> {
        let u = u.clone();
        self.with(move |db| {
            // `admin_disabled` is not updated: an administrator's decision
            // outlives restarts (DTR-23).
            db.execute(
                "INSERT INTO users (username, password_hash, enabled, roles, user_groups, display_name, email) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, \
                 enabled = excluded.enabled, roles = excluded.roles, user_groups = excluded.user_groups, \
                 display_name = excluded.display_name, email = excluded.email",
                params![
                    u.username,
                    u.password_hash,
                    u.enabled,
                    join_list(&u.roles),
                    join_list(&u.groups),
                    u.name,
                    u.email
                ],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let name = username.to_owned();
        self.with(move |db| {
            db.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
            ))
            .and_then(|mut st| st.query_row([name], user_from_row).optional())
            .map_err(db_err)
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.with(|db| {
            let mut st = db
                .prepare(&format!(
                    "SELECT {USER_COLUMNS} FROM users ORDER BY username"
                ))
                .map_err(db_err)?;
            let rows = st.query_map([], user_from_row).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn set_user_admin_disabled(&self, username: &str, disabled: bool) -> StoreResult<bool> {
        let name = username.to_owned();
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE users SET admin_disabled = ?2 WHERE username = ?1",
                    params![name, disabled],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn insert_user_token(&self, t: &UserTokenRecord) -> StoreResult<()> {
        let t = t.clone();
        self.with(move |db| {
            db.execute(
                &format!(
                    "INSERT INTO user_tokens ({USER_TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
                ),
                params![t.id, t.username, t.token_hash, t.created_at, t.revoked_at],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn user_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<UserTokenRecord>> {
        let h = token_hash.to_owned();
        self.with_read(move |db| {
            db.prepare_cached(&format!(
                "SELECT {USER_TOKEN_COLUMNS} FROM user_tokens WHERE token_hash = ?1"
            ))
            .and_then(|mut st| st.query_row([h], user_token_from_row).optional())
            .map_err(db_err)
        })
        .await
    }

    async fn list_user_tokens(&self, username: &str) -> StoreResult<Vec<UserTokenRecord>> {
        let name = username.to_owned();
        self.with_read(move |db| {
            let mut st = db
                .prepare(&format!(
                    "SELECT {USER_TOKEN_COLUMNS} FROM user_tokens WHERE username = ?1 ORDER BY created_at, id"
                ))
                .map_err(db_err)?;
            let rows = st.query_map([name], user_token_from_row).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn revoke_user_token(&self, username: &str, id: &str, now: i64) -> StoreResult<bool> {
        let (name, id) = (username.to_owned(), id.to_owned());
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE user_tokens SET revoked_at = COALESCE(revoked_at, ?3) WHERE id = ?1 AND username = ?2",
                    params![id, name, now],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn insert_session(&self, s: &SessionRecord) -> StoreResult<()> {
        let s = s.clone();
        self.with(move |db| {
            db.execute(
                "INSERT INTO sessions (id_hash, username, created_at, expires_at, ended_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.id_hash, s.username, s.created_at, s.expires_at, s.ended_at],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn session_by_hash(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let h = id_hash.to_owned();
        self.with(move |db| {
            db.prepare_cached("SELECT id_hash, username, created_at, expires_at, ended_at FROM sessions WHERE id_hash = ?1")
                .and_then(|mut st| st.query_row([h], session_from_row).optional())
                .map_err(db_err)
        })
        .await
    }

    async fn end_session(&self, id_hash: &str, now: i64) -> StoreResult<bool> {
        let h = id_hash.to_owned();
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE sessions SET ended_at = ?2 WHERE id_hash = ?1 AND ended_at IS NULL",
                    params![h, now],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn end_user_sessions(&self, username: &str, now: i64) -> StoreResult<u64> {
        let name = username.to_owned();
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE sessions SET ended_at = ?2 WHERE username = ?1 AND ended_at IS NULL",
                    params![name, now],
                )
                .map_err(db_err)?;
            Ok(n as u64)
        })
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
        let (u, c, s, id) = (
            username.to_owned(),
            client_id.to_owned(),
            scope.to_owned(),
            new_id.to_owned(),
        );
        self.with(move |db| {
            db.execute(
                "INSERT INTO consents (username, client_id, id, scope, granted_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (username, client_id) DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at",
                params![u, c, id, s, now],
            )
            .map_err(db_err)?;
            db.query_row(
                "SELECT username, client_id, id, scope, granted_at FROM consents WHERE username = ?1 AND client_id = ?2",
                params![u, c],
                consent_from_row,
            )
            .map_err(db_err)
        })
        .await
    }

    async fn get_consent(
        &self,
        username: &str,
        client_id: &str,
    ) -> StoreResult<Option<ConsentRecord>> {
        let (u, c) = (username.to_owned(), client_id.to_owned());
        self.with(move |db| {
            db.prepare_cached(
                "SELECT username, client_id, id, scope, granted_at FROM consents WHERE username = ?1 AND client_id = ?2",
            )
            .and_then(|mut st| st.query_row(params![u, c], consent_from_row).optional())
            .map_err(db_err)
        })
        .await
    }

    async fn list_consents(&self, username: &str) -> StoreResult<Vec<ConsentRecord>> {
        let u = username.to_owned();
        self.with(move |db| {
            let mut st = db
                .prepare(
                    "SELECT username, client_id, id, scope, granted_at FROM consents WHERE username = ?1 ORDER BY client_id",
                )
                .map_err(db_err)?;
            let rows = st.query_map([u], consent_from_row).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn revoke_consent(&self, username: &str, client_id: &str) -> StoreResult<bool> {
        let (u, c) = (username.to_owned(), client_id.to_owned());
        self.with(move |db| {
            let n = db
                .execute(
                    "DELETE FROM consents WHERE username = ?1 AND client_id = ?2",
                    params![u, c],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn insert_authorization_request(
        &self,
        r: &AuthorizationRequestRecord,
    ) -> StoreResult<()> {
        let r = r.clone();
        let request = to_json(&r.request)?;
        self.with(move |db| {
            db.execute(
                "INSERT INTO authorization_requests (id_hash, client_id, request, pushed, created_at, expires_at, used_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![r.id_hash, r.client_id, request, r.pushed, r.created_at, r.expires_at, r.used_at],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn authorization_request(
        &self,
        id_hash: &str,
        now: i64,
    ) -> StoreResult<Option<AuthorizationRequestRecord>> {
        let h = id_hash.to_owned();
        self.with(move |db| {
            db.prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM authorization_requests WHERE id_hash = ?1 AND used_at IS NULL AND expires_at > ?2"
            ))
            .and_then(|mut st| st.query_row(params![h, now], request_from_row).optional())
            .map_err(db_err)
        })
        .await
    }

    async fn consume_authorization_request(&self, id_hash: &str, now: i64) -> StoreResult<bool> {
        let h = id_hash.to_owned();
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE authorization_requests SET used_at = ?2 WHERE id_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
                    params![h, now],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn insert_authorization_code(&self, c: &AuthorizationCodeRecord) -> StoreResult<()> {
        let c = c.clone();
        let data = to_json(&c.grant_data)?;
        self.with(move |db| {
            db.execute(
                "INSERT INTO authorization_codes (code_hash, client_id, family_id, grant_data, created_at, expires_at, used_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![c.code_hash, c.client_id, c.family_id, data, c.created_at, c.expires_at, c.used_at],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn authorization_code(
        &self,
        code_hash: &str,
    ) -> StoreResult<Option<AuthorizationCodeRecord>> {
        let h = code_hash.to_owned();
        self.with(move |db| {
            db.prepare_cached(&format!(
                "SELECT {CODE_COLUMNS} FROM authorization_codes WHERE code_hash = ?1"
            ))
            .and_then(|mut st| st.query_row([h], code_from_row).optional())
            .map_err(db_err)
        })
        .await
    }

    async fn use_authorization_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> StoreResult<Consumed<AuthorizationCodeRecord>> {
        let h = code_hash.to_owned();
        self.with(move |db| {
            let fresh = db
                .prepare_cached(&format!(
                    "UPDATE authorization_codes SET used_at = ?2 WHERE code_hash = ?1 AND used_at IS NULL AND expires_at > ?2 \
                     RETURNING {CODE_COLUMNS}"
                ))
                .and_then(|mut st| st.query_row(params![h, now], code_from_row).optional())
                .map_err(db_err)?;
            if let Some(c) = fresh {
                return Ok(Consumed::Fresh(c));
            }
            let row = db
                .prepare_cached(&format!("SELECT {CODE_COLUMNS} FROM authorization_codes WHERE code_hash = ?1"))
                .and_then(|mut st| st.query_row([h], code_from_row).optional())
                .map_err(db_err)?;
            Ok(match row {
                Some(c) if c.used_at.is_some() => Consumed::Replayed(c),
                _ => Consumed::Invalid,
            })
        })
        .await
    }

    async fn insert_family(&self, f: &TokenFamilyRecord) -> StoreResult<()> {
        let f = f.clone();
        self.with(move |db| {
            db.execute(
                "INSERT INTO token_families (family_id, client_id, username, created_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (family_id) DO NOTHING",
                params![f.family_id, f.client_id, f.username, f.created_at, f.revoked_at],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn get_family(&self, family_id: &str) -> StoreResult<Option<TokenFamilyRecord>> {
        let id = family_id.to_owned();
        self.with(move |db| {
            db.prepare_cached(
                "SELECT family_id, client_id, username, created_at, revoked_at FROM token_families WHERE family_id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([id], |r| {
                    Ok(TokenFamilyRecord {
                        family_id: r.get(0)?,
                        client_id: r.get(1)?,
                        username: r.get(2)?,
                        created_at: r.get(3)?,
                        revoked_at: r.get(4)?,
                    })
                })
                .optional()
            })
            .map_err(db_err)
        })
        .await
    }

    async fn revoke_family(&self, family_id: &str, now: i64) -> StoreResult<bool> {
        let id = family_id.to_owned();
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            // A family that was never written (a code replayed before any
            // token was issued) is recorded revoked, so a later exchange
            // still finds it dead.
            let n = tx
                .execute(
                    "INSERT INTO token_families (family_id, client_id, username, created_at, revoked_at) \
                     VALUES (?1, '', '', ?2, ?2) \
                     ON CONFLICT (family_id) DO UPDATE SET revoked_at = excluded.revoked_at \
                     WHERE token_families.revoked_at IS NULL",
                    params![id, now],
                )
                .map_err(db_err)?;
            tx.execute(
                "UPDATE access_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn set_token_family(&self, jti: &str, family_id: &str) -> StoreResult<()> {
        let (j, f) = (jti.to_owned(), family_id.to_owned());
        self.with(move |db| {
            db.execute(
                "UPDATE access_tokens SET family_id = ?2 WHERE jti = ?1",
                params![j, f],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn insert_refresh_token(&self, t: &RefreshTokenRecord) -> StoreResult<()> {
        let t = t.clone();
        let data = to_json(&t.grant_data)?;
        self.with(move |db| {
            db.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, client_id, grant_data, issued_at, expires_at, used_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![t.token_hash, t.family_id, t.client_id, data, t.issued_at, t.expires_at, t.used_at],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        let h = token_hash.to_owned();
        self.with(move |db| {
            db.prepare_cached(&format!(
                "SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = ?1"
            ))
            .and_then(|mut st| st.query_row([h], refresh_from_row).optional())
            .map_err(db_err)
        })
        .await
    }

    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<Consumed<RefreshTokenRecord>> {
        let h = token_hash.to_owned();
        self.with(move |db| {
            let fresh = db
                .prepare_cached(&format!(
                    "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 \
                     AND family_id IN (SELECT family_id FROM token_families WHERE revoked_at IS NULL) \
                     RETURNING {REFRESH_COLUMNS}"
                ))
                .and_then(|mut st| st.query_row(params![h, now], refresh_from_row).optional())
                .map_err(db_err)?;
            if let Some(t) = fresh {
                return Ok(Consumed::Fresh(t));
            }
            let row = db
                .prepare_cached(&format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = ?1"))
                .and_then(|mut st| st.query_row([h], refresh_from_row).optional())
                .map_err(db_err)?;
            Ok(match row {
                Some(t) if t.used_at.is_some() => Consumed::Replayed(t),
                _ => Consumed::Invalid,
            })
        })
        .await
    }

    async fn prune_accounts(&self, before: i64) -> StoreResult<u64> {
        self.with(move |db| {
            let mut n = 0;
            for sql in [
                "DELETE FROM sessions WHERE expires_at < ?1",
                "DELETE FROM authorization_requests WHERE expires_at < ?1",
                "DELETE FROM authorization_codes WHERE expires_at < ?1",
                "DELETE FROM refresh_tokens WHERE expires_at < ?1",
            ] {
                n += db.execute(sql, [before]).map_err(db_err)? as u64;
            }
            Ok(n)
        })
        .await
    }
}
