//! [`CallbackStore`] on SQLite: the callback outbox (DTR-26..29), whose
//! jobs the deferrals' transitions create.

use super::*;

#[async_trait]
impl CallbackStore for SqliteStore {
    async fn claim_callbacks(
        &self,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<CallbackJob>> {
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let claimed: Vec<(String, String, u32)> = {
                let mut st = tx
                    .prepare_cached(
                        "UPDATE callbacks SET lease_until = ?1 + ?3, attempts = attempts + 1 \
                         WHERE deferral_id IN (SELECT deferral_id FROM callbacks WHERE state = 'pending' \
                           AND next_attempt_at <= ?1 AND (lease_until IS NULL OR lease_until < ?1) \
                           ORDER BY next_attempt_at LIMIT ?2) \
                         RETURNING deferral_id, endpoint, attempts",
                    )
                    .map_err(db_err)?;
                let rows = st.query_map(params![now, limit, lease_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)?
            };
            let mut jobs = Vec::with_capacity(claimed.len());
            for (deferral_id, endpoint, attempts) in claimed {
                let row = tx
                    .prepare_cached(
                        "SELECT code_sealed, notification_token_sealed, expires_at, COALESCE(resolved_at, 0) \
                         FROM deferrals WHERE id = ?1",
                    )
                    .and_then(|mut st| {
                        st.query_row([&deferral_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).optional()
                    })
                    .map_err(db_err)?;
                let (code_sealed, token_sealed, expires_at, resolved_at) = row.unwrap_or((None, None, 0, 0));
                jobs.push(CallbackJob { deferral_id, endpoint, attempts, code_sealed, token_sealed, expires_at, resolved_at });
            }
            tx.commit().map_err(db_err)?;
            Ok(jobs)
        })
        .await
    }

    async fn finish_callback(
        &self,
        deferral_id: &str,
        outcome: &CallbackOutcome,
        now: i64,
    ) -> StoreResult<()> {
        let id = deferral_id.to_owned();
        let outcome = outcome.clone();
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let (state, next, status, error) = match &outcome {
                CallbackOutcome::Delivered { status } => ("delivered", None, Some(*status), None),
                CallbackOutcome::Retry { at, status, error } => ("pending", Some(*at), *status, Some(error.clone())),
                CallbackOutcome::Failed { status, error } => ("failed", None, *status, Some(error.clone())),
            };
            // A job that was suppressed meanwhile stays suppressed.
            tx.execute(
                "UPDATE callbacks SET state = ?2, next_attempt_at = COALESCE(?3, next_attempt_at), lease_until = NULL, \
                 last_status = ?4, last_error = ?5, finished_at = CASE WHEN ?2 = 'pending' THEN NULL ELSE ?6 END \
                 WHERE deferral_id = ?1 AND state = 'pending'",
                params![id, state, next, status, error, now],
            )
            .map_err(db_err)?;
            if state != "pending" {
                // DTR-29: the secrets are not needed any more.
                tx.execute(
                    "UPDATE deferrals SET code_sealed = NULL, notification_token_sealed = NULL WHERE id = ?1",
                    [&id],
                )
                .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn callback_status(&self, deferral_id: &str) -> StoreResult<Option<CallbackStatus>> {
        let id = deferral_id.to_owned();
        self.with(move |db| {
            db.query_row(
                "SELECT state, attempts, last_status FROM callbacks WHERE deferral_id = ?1",
                [id],
                |r| {
                    Ok(CallbackStatus {
                        state: r.get(0)?,
                        attempts: r.get(1)?,
                        last_status: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn put_push_payload(&self, deferral_id: &str, sealed: &str, now: i64) -> StoreResult<()> {
        let (id, sealed) = (deferral_id.to_owned(), sealed.to_owned());
        self.with(move |db| {
            db.execute(
                "INSERT INTO ciba_push_payloads (deferral_id, payload_sealed, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (deferral_id) DO UPDATE SET payload_sealed = excluded.payload_sealed, \
                 created_at = excluded.created_at",
                params![id, sealed, now],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }

    async fn push_payload(&self, deferral_id: &str) -> StoreResult<Option<String>> {
        let id = deferral_id.to_owned();
        self.with(move |db| {
            db.query_row(
                "SELECT payload_sealed FROM ciba_push_payloads WHERE deferral_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn delete_push_payload(&self, deferral_id: &str) -> StoreResult<()> {
        let id = deferral_id.to_owned();
        self.with(move |db| {
            db.execute(
                "DELETE FROM ciba_push_payloads WHERE deferral_id = ?1",
                [id],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }
}
