//! [`DeviceStore`] on SQLite: each transition is one conditional `UPDATE`
//! whose `WHERE` clause carries the expected state.

use super::*;
use crate::store::device::{DeviceCodeRecord, DeviceStore, NewDeviceCode};

const DEVICE_COLUMNS: &str =
    "device_code_hash, user_code_hash, client_id, scope, deferred_hint, state, username, \
     session_id_hash, created_at, expires_at, interval_ms, last_polled_at, decided_at, redeemed_at";

fn device_from_row(r: &Row<'_>) -> rusqlite::Result<DeviceCodeRecord> {
    let state: String = r.get(5)?;
    Ok(DeviceCodeRecord {
        device_code_hash: r.get(0)?,
        user_code_hash: r.get(1)?,
        client_id: r.get(2)?,
        scope: r.get(3)?,
        deferred_hint: r.get(4)?,
        state: state.parse().map_err(|e| corrupt(5, e))?,
        username: r.get(6)?,
        session_id_hash: r.get(7)?,
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
        interval_ms: r.get(10)?,
        last_polled_at: r.get(11)?,
        decided_at: r.get(12)?,
        redeemed_at: r.get(13)?,
    })
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn insert_device_code(&self, d: &NewDeviceCode) -> StoreResult<bool> {
        let d = d.clone();
        self.with(move |db| {
            // A taken user code is not an error: the caller draws another.
            let n = db
                .execute(
                    "INSERT INTO device_codes (device_code_hash, user_code_hash, client_id, scope, deferred_hint, state, \
                     created_at, expires_at, interval_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8) \
                     ON CONFLICT DO NOTHING",
                    params![
                        d.device_code_hash,
                        d.user_code_hash,
                        d.client_id,
                        d.scope,
                        d.deferred_hint,
                        d.created_at,
                        d.expires_at,
                        d.interval_ms
                    ],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn device_code_by_hash(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<DeviceCodeRecord>> {
        let h = device_code_hash.to_owned();
        self.with(move |db| {
            db.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM device_codes WHERE device_code_hash = ?1"
            ))
            .and_then(|mut st| st.query_row([h], device_from_row).optional())
            .map_err(db_err)
        })
        .await
    }

    async fn pending_device_code_by_user_code(
        &self,
        user_code_hash: &str,
        now: i64,
    ) -> StoreResult<Option<DeviceCodeRecord>> {
        let h = user_code_hash.to_owned();
        self.with(move |db| {
            db.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM device_codes WHERE user_code_hash = ?1 AND state = 'pending' AND expires_at > ?2"
            ))
            .and_then(|mut st| st.query_row(params![h, now], device_from_row).optional())
            .map_err(db_err)
        })
        .await
    }

    async fn decide_device_code(
        &self,
        user_code_hash: &str,
        approve: bool,
        username: &str,
        session_id_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let (h, u, s) = (
            user_code_hash.to_owned(),
            username.to_owned(),
            session_id_hash.to_owned(),
        );
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE device_codes SET state = CASE WHEN ?2 THEN 'approved' ELSE 'denied' END, \
                     username = ?3, session_id_hash = ?4, decided_at = ?5 \
                     WHERE user_code_hash = ?1 AND state = 'pending' AND expires_at > ?5",
                    params![h, approve, u, s, now],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn record_device_poll(
        &self,
        device_code_hash: &str,
        expected_last_polled_at: Option<i64>,
        interval_ms: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let h = device_code_hash.to_owned();
        self.with(move |db| {
            let n = db
                .prepare_cached(
                    "UPDATE device_codes SET last_polled_at = ?3, interval_ms = ?4 \
                     WHERE device_code_hash = ?1 AND state = 'pending' AND last_polled_at IS ?2",
                )
                .and_then(|mut st| {
                    st.execute(params![h, expected_last_polled_at, now, interval_ms])
                })
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn redeem_device_code(&self, device_code_hash: &str, now: i64) -> StoreResult<bool> {
        let h = device_code_hash.to_owned();
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE device_codes SET state = 'redeemed', redeemed_at = ?2 \
                     WHERE device_code_hash = ?1 AND state = 'approved' AND expires_at > ?2",
                    params![h, now],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn count_user_code_failure(
        &self,
        key: &str,
        window_ms: i64,
        now: i64,
    ) -> StoreResult<u32> {
        let k = key.to_owned();
        self.with(move |db| {
            // Both SET expressions see the old row, so a window that is
            // over restarts at one failure.
            db.query_row(
                "INSERT INTO device_user_code_failures (key, failures, window_start) VALUES (?1, 1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN device_user_code_failures.window_start <= ?2 - ?3 THEN 1 \
                   ELSE device_user_code_failures.failures + 1 END, \
                 window_start = CASE WHEN device_user_code_failures.window_start <= ?2 - ?3 THEN ?2 \
                   ELSE device_user_code_failures.window_start END \
                 RETURNING failures",
                params![k, now, window_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .map_err(db_err)
        })
        .await
    }

    async fn user_code_failures(&self, key: &str, window_ms: i64, now: i64) -> StoreResult<u32> {
        let k = key.to_owned();
        self.with(move |db| {
            let n: Option<i64> = db
                .query_row(
                    "SELECT failures FROM device_user_code_failures WHERE key = ?1 AND window_start > ?2 - ?3",
                    params![k, now, window_ms],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            Ok(n.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
        })
        .await
    }

    async fn prune_device_codes(&self, before: i64) -> StoreResult<u64> {
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let n = tx
                .execute("DELETE FROM device_codes WHERE expires_at < ?1", [before])
                .map_err(db_err)?;
            tx.execute(
                "DELETE FROM device_user_code_failures WHERE window_start < ?1",
                [before],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }
}
