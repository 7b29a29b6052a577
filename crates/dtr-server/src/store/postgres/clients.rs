//! [`ClientStore`] on PostgreSQL: the registered clients and their
//! admin overrides.

use super::*;

const CLIENT_COLUMNS: &str =
    "client_id, secret_hash, auth_method, grant_types, scope, redirect_uris, jwks, \
     notification_endpoint, enabled, admin_disabled, dpop_bound_access_tokens, registration_token_hash, metadata, require_par, jwks_uri, owner, deferred_authorization_endpoint, require_signed_request_object";

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
        deferred_authorization_endpoint: row.try_get(16).map_err(db_err)?,
        require_signed_request_object: row.try_get(17).map_err(db_err)?,
    })
}

#[async_trait]
impl ClientStore for PostgresStore {
    async fn upsert_client(&self, c: &ClientRecord) -> StoreResult<()> {
        // `admin_disabled` is not in the update list: an admin's decision
        // outlives restarts and configuration reloads (DTR-23).
        self.execute(
            "INSERT INTO clients (client_id, secret_hash, auth_method, grant_types, scope, redirect_uris, jwks, \
             notification_endpoint, enabled, dpop_bound_access_tokens, registration_token_hash, metadata, require_par, jwks_uri, owner, deferred_authorization_endpoint, require_signed_request_object) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (client_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash, \
             auth_method = EXCLUDED.auth_method, grant_types = EXCLUDED.grant_types, scope = EXCLUDED.scope, \
             redirect_uris = EXCLUDED.redirect_uris, jwks = EXCLUDED.jwks, \
             notification_endpoint = EXCLUDED.notification_endpoint, enabled = EXCLUDED.enabled, \
             dpop_bound_access_tokens = EXCLUDED.dpop_bound_access_tokens, \
             registration_token_hash = EXCLUDED.registration_token_hash, metadata = EXCLUDED.metadata, \
             require_par = EXCLUDED.require_par, jwks_uri = EXCLUDED.jwks_uri, owner = EXCLUDED.owner, \
             deferred_authorization_endpoint = EXCLUDED.deferred_authorization_endpoint, \
             require_signed_request_object = EXCLUDED.require_signed_request_object",
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
                &c.deferred_authorization_endpoint,
                &c.require_signed_request_object,
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
