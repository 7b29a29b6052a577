//! [`CallbackStore`] on PostgreSQL: the callback outbox (DTR-26..29), whose
//! jobs the deferrals' transitions create.

use super::*;

#[async_trait]
impl CallbackStore for PostgresStore {
    async fn claim_callbacks(
        &self,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<CallbackJob>> {
        // FOR UPDATE SKIP LOCKED: nodes claiming at the same time take
        // disjoint jobs instead of queueing on each other's rows; the lease
        // frees the jobs of a node that dies mid-delivery.
        let rows = self
            .query(
                "WITH due AS ( \
                   SELECT deferral_id FROM callbacks WHERE state = 'pending' AND next_attempt_at <= $1 \
                     AND (lease_until IS NULL OR lease_until < $1) \
                   ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 UPDATE callbacks c SET lease_until = $1 + $3, attempts = c.attempts + 1 \
                 FROM due, deferrals d WHERE c.deferral_id = due.deferral_id AND d.id = c.deferral_id \
                 RETURNING c.deferral_id, c.endpoint, c.attempts, d.code_sealed, d.notification_token_sealed, \
                   d.expires_at, COALESCE(d.resolved_at, 0)",
                &[&now, &i64::from(limit), &lease_ms],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let attempts: i32 = r.try_get(2).map_err(db_err)?;
                Ok(CallbackJob {
                    deferral_id: r.try_get(0).map_err(db_err)?,
                    endpoint: r.try_get(1).map_err(db_err)?,
                    attempts: attempts.max(0) as u32,
                    code_sealed: r.try_get(3).map_err(db_err)?,
                    token_sealed: r.try_get(4).map_err(db_err)?,
                    expires_at: r.try_get(5).map_err(db_err)?,
                    resolved_at: r.try_get(6).map_err(db_err)?,
                })
            })
            .collect()
    }

    async fn finish_callback(
        &self,
        deferral_id: &str,
        outcome: &CallbackOutcome,
        now: i64,
    ) -> StoreResult<()> {
        let (state, next, status, error): (&str, Option<i64>, Option<i32>, Option<String>) =
            match outcome {
                CallbackOutcome::Delivered { status } => {
                    ("delivered", None, Some(i32::from(*status)), None)
                }
                CallbackOutcome::Retry { at, status, error } => (
                    "pending",
                    Some(*at),
                    status.map(i32::from),
                    Some(error.clone()),
                ),
                CallbackOutcome::Failed { status, error } => {
                    ("failed", None, status.map(i32::from), Some(error.clone()))
                }
            };
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        tx.execute(
            "UPDATE callbacks SET state = $2::TEXT, next_attempt_at = COALESCE($3::BIGINT, next_attempt_at), \
             lease_until = NULL, last_status = $4::INTEGER, last_error = $5::TEXT, \
             finished_at = CASE WHEN $2::TEXT = 'pending' THEN NULL ELSE $6::BIGINT END \
             WHERE deferral_id = $1 AND state = 'pending'",
            &[&deferral_id, &state, &next, &status, &error, &now],
        )
        .await
        .map_err(db_err)?;
        if state != "pending" {
            // DTR-29: the secrets are not needed any more.
            tx.execute(
                "UPDATE deferrals SET code_sealed = NULL, notification_token_sealed = NULL WHERE id = $1",
                &[&deferral_id],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn callback_status(&self, deferral_id: &str) -> StoreResult<Option<CallbackStatus>> {
        let row = self
            .query_opt(
                "SELECT state, attempts, last_status FROM callbacks WHERE deferral_id = $1",
                &[&deferral_id],
            )
            .await?;
        row.map(|r| {
            let attempts: i32 = r.try_get(1).map_err(db_err)?;
            let status: Option<i32> = r.try_get(2).map_err(db_err)?;
            Ok(CallbackStatus {
                state: r.try_get(0).map_err(db_err)?,
                attempts: attempts.max(0) as u32,
                last_status: status.and_then(|s| u16::try_from(s).ok()),
            })
        })
        .transpose()
    }

    async fn put_push_payload(&self, deferral_id: &str, sealed: &str, now: i64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO ciba_push_payloads (deferral_id, payload_sealed, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (deferral_id) DO UPDATE SET payload_sealed = EXCLUDED.payload_sealed, \
             created_at = EXCLUDED.created_at",
            &[&deferral_id, &sealed, &now],
        )
        .await
        .map(|_| ())
    }

    async fn push_payload(&self, deferral_id: &str) -> StoreResult<Option<String>> {
        Ok(self
            .query_opt(
                "SELECT payload_sealed FROM ciba_push_payloads WHERE deferral_id = $1",
                &[&deferral_id],
            )
            .await?
            .map(|r| r.get(0)))
    }

    async fn delete_push_payload(&self, deferral_id: &str) -> StoreResult<()> {
        self.execute(
            "DELETE FROM ciba_push_payloads WHERE deferral_id = $1",
            &[&deferral_id],
        )
        .await
        .map(|_| ())
    }
}
