//! [`DeviceStore`] on PostgreSQL: each transition is one conditional
//! `UPDATE`, so of two nodes deciding or collecting the same code exactly
//! one changes the row.

use super::*;
use crate::store::device::{DeviceCodeRecord, DeviceStore, NewDeviceCode};

const DEVICE_COLUMNS: &str =
    "device_code_hash, user_code_hash, client_id, scope, deferred_hint, state, username, \
     session_id_hash, created_at, expires_at, interval_ms, last_polled_at, decided_at, redeemed_at";

fn device_from_row(r: &Row) -> StoreResult<DeviceCodeRecord> {
    let g = |e: tokio_postgres::Error| db_err(e);
    let state: String = r.try_get(5).map_err(g)?;
    Ok(DeviceCodeRecord {
        device_code_hash: r.try_get(0).map_err(g)?,
        user_code_hash: r.try_get(1).map_err(g)?,
        client_id: r.try_get(2).map_err(g)?,
        scope: r.try_get(3).map_err(g)?,
        deferred_hint: r.try_get(4).map_err(g)?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        username: r.try_get(6).map_err(g)?,
        session_id_hash: r.try_get(7).map_err(g)?,
        created_at: r.try_get(8).map_err(g)?,
        expires_at: r.try_get(9).map_err(g)?,
        interval_ms: r.try_get(10).map_err(g)?,
        last_polled_at: r.try_get(11).map_err(g)?,
        decided_at: r.try_get(12).map_err(g)?,
        redeemed_at: r.try_get(13).map_err(g)?,
    })
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

#[async_trait]
impl DeviceStore for PostgresStore {
    async fn insert_device_code(&self, d: &NewDeviceCode) -> StoreResult<bool> {
        // A taken user code is not an error: the caller draws another.
        Ok(self
            .execute(
                "INSERT INTO device_codes (device_code_hash, user_code_hash, client_id, scope, deferred_hint, state, \
                 created_at, expires_at, interval_ms) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8) \
                 ON CONFLICT DO NOTHING",
                &[
                    &d.device_code_hash,
                    &d.user_code_hash,
                    &d.client_id,
                    &d.scope,
                    &d.deferred_hint,
                    &d.created_at,
                    &d.expires_at,
                    &d.interval_ms,
                ],
            )
            .await?
            == 1)
    }

    async fn device_code_by_hash(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<DeviceCodeRecord>> {
        self.query_opt(
            &format!("SELECT {DEVICE_COLUMNS} FROM device_codes WHERE device_code_hash = $1"),
            &[&device_code_hash],
        )
        .await?
        .as_ref()
        .map(device_from_row)
        .transpose()
    }

    async fn pending_device_code_by_user_code(
        &self,
        user_code_hash: &str,
        now: i64,
    ) -> StoreResult<Option<DeviceCodeRecord>> {
        self.query_opt(
            &format!(
                "SELECT {DEVICE_COLUMNS} FROM device_codes WHERE user_code_hash = $1 AND state = 'pending' AND expires_at > $2"
            ),
            &[&user_code_hash, &now],
        )
        .await?
        .as_ref()
        .map(device_from_row)
        .transpose()
    }

    async fn decide_device_code(
        &self,
        user_code_hash: &str,
        approve: bool,
        username: &str,
        session_id_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        Ok(self
            .execute(
                "UPDATE device_codes SET state = CASE WHEN $2 THEN 'approved' ELSE 'denied' END, \
                 username = $3, session_id_hash = $4, decided_at = $5 \
                 WHERE user_code_hash = $1 AND state = 'pending' AND expires_at > $5",
                &[&user_code_hash, &approve, &username, &session_id_hash, &now],
            )
            .await?
            == 1)
    }

    async fn record_device_poll(
        &self,
        device_code_hash: &str,
        expected_last_polled_at: Option<i64>,
        interval_ms: i64,
        now: i64,
    ) -> StoreResult<bool> {
        Ok(self
            .execute(
                "UPDATE device_codes SET last_polled_at = $3, interval_ms = $4 \
                 WHERE device_code_hash = $1 AND state = 'pending' AND last_polled_at IS NOT DISTINCT FROM $2",
                &[&device_code_hash, &expected_last_polled_at, &now, &interval_ms],
            )
            .await?
            == 1)
    }

    async fn redeem_device_code(&self, device_code_hash: &str, now: i64) -> StoreResult<bool> {
        Ok(self
            .execute(
                "UPDATE device_codes SET state = 'redeemed', redeemed_at = $2 \
                 WHERE device_code_hash = $1 AND state = 'approved' AND expires_at > $2",
                &[&device_code_hash, &now],
            )
            .await?
            == 1)
    }

    async fn count_user_code_failure(
        &self,
        key: &str,
        window_ms: i64,
        now: i64,
    ) -> StoreResult<u32> {
        // Both SET expressions see the old row, so a window that is over
        // restarts at one failure; the row lock serialises racing nodes.
        let row = self
            .query_opt(
                "INSERT INTO device_user_code_failures (key, failures, window_start) VALUES ($1, 1, $2) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN device_user_code_failures.window_start <= $2::BIGINT - $3::BIGINT THEN 1 \
                   ELSE device_user_code_failures.failures + 1 END, \
                 window_start = CASE WHEN device_user_code_failures.window_start <= $2::BIGINT - $3::BIGINT THEN $2 \
                   ELSE device_user_code_failures.window_start END \
                 RETURNING failures",
                &[&key, &now, &window_ms],
            )
            .await?
            .ok_or_else(|| StoreError::Database("failure upsert returned no row".into()))?;
        Ok(count(row.try_get(0).map_err(db_err)?))
    }

    async fn user_code_failures(&self, key: &str, window_ms: i64, now: i64) -> StoreResult<u32> {
        let row = self
            .query_opt(
                "SELECT failures FROM device_user_code_failures WHERE key = $1 AND window_start > $2::BIGINT - $3::BIGINT",
                &[&key, &now, &window_ms],
            )
            .await?;
        match row {
            None => Ok(0),
            Some(r) => Ok(count(r.try_get(0).map_err(db_err)?)),
        }
    }

    async fn prune_device_codes(&self, before: i64) -> StoreResult<u64> {
        let n = self
            .prune_batched(
                "DELETE FROM device_codes WHERE device_code_hash IN \
                 (SELECT device_code_hash FROM device_codes WHERE expires_at < $1 LIMIT $2)",
                before,
            )
            .await?;
        self.prune_batched(
            "DELETE FROM device_user_code_failures WHERE key IN \
             (SELECT key FROM device_user_code_failures WHERE window_start < $1 LIMIT $2)",
            before,
        )
        .await?;
        Ok(n)
    }
}
