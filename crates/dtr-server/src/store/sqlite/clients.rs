//! [`ClientStore`] on SQLite: the registered clients and their admin
//! overrides.

use super::*;

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
        deferred_authorization_endpoint: row.get(16)?,
        require_signed_request_object: row.get(17)?,
    })
}

const CLIENT_COLUMNS: &str =
    "client_id, secret_hash, auth_method, grant_types, scope, redirect_uris, jwks, \
     notification_endpoint, enabled, admin_disabled, dpop_bound_access_tokens, registration_token_hash, metadata, require_par, jwks_uri, owner, deferred_authorization_endpoint, require_signed_request_object";

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
                 notification_endpoint, enabled, dpop_bound_access_tokens, registration_token_hash, metadata, require_par, jwks_uri, owner, deferred_authorization_endpoint, require_signed_request_object) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
                 ON CONFLICT (client_id) DO UPDATE SET secret_hash = excluded.secret_hash, \
                 auth_method = excluded.auth_method, grant_types = excluded.grant_types, scope = excluded.scope, \
                 redirect_uris = excluded.redirect_uris, jwks = excluded.jwks, \
                 notification_endpoint = excluded.notification_endpoint, enabled = excluded.enabled, \
                 dpop_bound_access_tokens = excluded.dpop_bound_access_tokens, \
                 registration_token_hash = excluded.registration_token_hash, metadata = excluded.metadata, \
                 require_par = excluded.require_par, jwks_uri = excluded.jwks_uri, owner = excluded.owner, \
                 deferred_authorization_endpoint = excluded.deferred_authorization_endpoint, \
                 require_signed_request_object = excluded.require_signed_request_object",
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
                    c.owner,
                    c.deferred_authorization_endpoint,
                    c.require_signed_request_object
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
