//! [`ApproverHookStore`] on PostgreSQL: the approver notification outbox.

use super::*;

#[async_trait]
impl ApproverHookStore for PostgresStore {
    async fn enqueue_hooks(&self, jobs: &[NewHookJob]) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        for j in jobs {
            tx.execute(
                "INSERT INTO approver_notifications \
                 (deferral_id, webhook_id, url, body, state, created_at, expires_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $6, $5) \
                 ON CONFLICT (deferral_id, webhook_id) DO NOTHING",
                &[&j.deferral_id, &j.webhook_id, &j.url, &j.body, &j.created_at, &j.expires_at],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn claim_hooks(&self, now: i64, limit: u32, lease_ms: i64) -> StoreResult<Vec<HookJob>> {
        // SKIP LOCKED: nodes claiming together take disjoint rows.
        let rows = self
            .query(
                "WITH due AS ( \
                   SELECT deferral_id, webhook_id FROM approver_notifications WHERE state = 'pending' \
                     AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1) \
                   ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 UPDATE approver_notifications n SET lease_until = $1 + $3, attempts = n.attempts + 1 \
                 FROM due WHERE n.deferral_id = due.deferral_id AND n.webhook_id = due.webhook_id \
                 RETURNING n.deferral_id, n.webhook_id, n.url, n.body, n.attempts, n.expires_at",
                &[&now, &i64::from(limit), &lease_ms],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let attempts: i32 = r.try_get(4).map_err(db_err)?;
                Ok(HookJob {
                    deferral_id: r.try_get(0).map_err(db_err)?,
                    webhook_id: r.try_get(1).map_err(db_err)?,
                    url: r.try_get(2).map_err(db_err)?,
                    body: r.try_get(3).map_err(db_err)?,
                    attempts: attempts.max(0) as u32,
                    expires_at: r.try_get(5).map_err(db_err)?,
                })
            })
            .collect()
    }

    async fn finish_hook(
        &self,
        deferral_id: &str,
        webhook_id: &str,
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
        self.execute(
            "UPDATE approver_notifications SET state = $3::TEXT, \
             next_attempt_at = COALESCE($4::BIGINT, next_attempt_at), lease_until = NULL, \
             last_status = $5::INTEGER, last_error = $6::TEXT, \
             finished_at = CASE WHEN $3::TEXT = 'pending' THEN NULL ELSE $7::BIGINT END \
             WHERE deferral_id = $1 AND webhook_id = $2 AND state = 'pending'",
            &[
                &deferral_id,
                &webhook_id,
                &state,
                &next,
                &status,
                &error,
                &now,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn hook_status(&self, deferral_id: &str) -> StoreResult<Vec<HookStatus>> {
        let rows = self
            .query(
                "SELECT webhook_id, state, attempts, last_status FROM approver_notifications \
                 WHERE deferral_id = $1 ORDER BY webhook_id",
                &[&deferral_id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let attempts: i32 = r.try_get(2).map_err(db_err)?;
                let status: Option<i32> = r.try_get(3).map_err(db_err)?;
                Ok(HookStatus {
                    webhook_id: r.try_get(0).map_err(db_err)?,
                    state: r.try_get(1).map_err(db_err)?,
                    attempts: attempts.max(0) as u32,
                    last_status: status.and_then(|s| u16::try_from(s).ok()),
                })
            })
            .collect()
    }
}
