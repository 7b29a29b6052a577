//! [`ApproverHookStore`] on SQLite: the approver notification outbox.

use super::*;

/// The state, next attempt, status and error an outcome records.
fn outcome_row(o: &CallbackOutcome) -> (&'static str, Option<i64>, Option<u16>, Option<String>) {
    match o {
        CallbackOutcome::Delivered { status } => ("delivered", None, Some(*status), None),
        CallbackOutcome::Retry { at, status, error } => {
            ("pending", Some(*at), *status, Some(error.clone()))
        }
        CallbackOutcome::Failed { status, error } => ("failed", None, *status, Some(error.clone())),
    }
}

#[async_trait]
impl ApproverHookStore for SqliteStore {
    async fn enqueue_hooks(&self, jobs: &[NewHookJob]) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let jobs = jobs.to_vec();
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO approver_notifications \
                         (deferral_id, webhook_id, url, body, state, created_at, expires_at, next_attempt_at) \
                         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?5)",
                    )
                    .map_err(db_err)?;
                for j in &jobs {
                    st.execute(params![j.deferral_id, j.webhook_id, j.url, j.body, j.created_at, j.expires_at])
                        .map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn claim_hooks(&self, now: i64, limit: u32, lease_ms: i64) -> StoreResult<Vec<HookJob>> {
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let jobs = {
                let mut st = tx
                    .prepare_cached(
                        "UPDATE approver_notifications SET lease_until = ?1 + ?3, attempts = attempts + 1 \
                         WHERE rowid IN (SELECT rowid FROM approver_notifications WHERE state = 'pending' \
                           AND next_attempt_at <= ?1 AND (lease_until IS NULL OR lease_until < ?1) \
                           ORDER BY next_attempt_at LIMIT ?2) \
                         RETURNING deferral_id, webhook_id, url, body, attempts, expires_at",
                    )
                    .map_err(db_err)?;
                let rows = st
                    .query_map(params![now, limit, lease_ms], |r| {
                        Ok(HookJob {
                            deferral_id: r.get(0)?,
                            webhook_id: r.get(1)?,
                            url: r.get(2)?,
                            body: r.get(3)?,
                            attempts: r.get(4)?,
                            expires_at: r.get(5)?,
                        })
                    })
                    .map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
            };
            tx.commit().map_err(db_err)?;
            Ok(jobs)
        })
        .await
    }

    async fn finish_hook(
        &self,
        deferral_id: &str,
        webhook_id: &str,
        outcome: &CallbackOutcome,
        now: i64,
    ) -> StoreResult<()> {
        let (state, next, status, error) = outcome_row(outcome);
        let (id, hook) = (deferral_id.to_owned(), webhook_id.to_owned());
        self.with(move |db| {
            db.execute(
                "UPDATE approver_notifications SET state = ?3, next_attempt_at = COALESCE(?4, next_attempt_at), \
                 lease_until = NULL, last_status = ?5, last_error = ?6, \
                 finished_at = CASE WHEN ?3 = 'pending' THEN NULL ELSE ?7 END \
                 WHERE deferral_id = ?1 AND webhook_id = ?2 AND state = 'pending'",
                params![id, hook, state, next, status, error, now],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }

    async fn hook_status(&self, deferral_id: &str) -> StoreResult<Vec<HookStatus>> {
        let id = deferral_id.to_owned();
        self.with(move |db| {
            let mut st = db
                .prepare_cached(
                    "SELECT webhook_id, state, attempts, last_status FROM approver_notifications \
                     WHERE deferral_id = ?1 ORDER BY webhook_id",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([id], |r| {
                    Ok(HookStatus {
                        webhook_id: r.get(0)?,
                        state: r.get(1)?,
                        attempts: r.get(2)?,
                        last_status: r.get(3)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }
}
