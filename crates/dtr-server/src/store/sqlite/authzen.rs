//! [`AuthzenTaskStore`] on SQLite.

use super::*;

const COLUMNS: &str = "deferral_id, task_id, status_endpoint, cancel_endpoint, callback_hash, \
                       evaluation, state, next_poll_at, polls, expires_at, created_at";

fn task_of(r: &Row<'_>) -> rusqlite::Result<AuthzenTask> {
    let evaluation: String = r.get(5)?;
    Ok(AuthzenTask {
        deferral_id: r.get(0)?,
        task_id: r.get(1)?,
        status_endpoint: r.get(2)?,
        cancel_endpoint: r.get(3)?,
        callback_hash: r.get(4)?,
        evaluation: serde_json::from_str(&evaluation).unwrap_or(serde_json::Value::Null),
        state: r.get(6)?,
        next_poll_at: r.get(7)?,
        polls: r.get(8)?,
        expires_at: r.get(9)?,
        created_at: r.get(10)?,
    })
}

#[async_trait]
impl AuthzenTaskStore for SqliteStore {
    async fn insert_authzen_task(&self, t: &AuthzenTask) -> StoreResult<()> {
        let t = t.clone();
        self.with(move |db| {
            db.execute(
                &format!("INSERT INTO authzen_tasks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![
                    t.deferral_id,
                    t.task_id,
                    t.status_endpoint,
                    t.cancel_endpoint,
                    t.callback_hash,
                    t.evaluation.to_string(),
                    t.state,
                    t.next_poll_at,
                    t.polls,
                    t.expires_at,
                    t.created_at
                ],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }

    async fn authzen_task(&self, deferral_id: &str) -> StoreResult<Option<AuthzenTask>> {
        let id = deferral_id.to_owned();
        self.with(move |db| {
            db.query_row(
                &format!("SELECT {COLUMNS} FROM authzen_tasks WHERE deferral_id = ?1"),
                [id],
                task_of,
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn authzen_task_by_callback(&self, hash: &str) -> StoreResult<Option<AuthzenTask>> {
        let h = hash.to_owned();
        self.with(move |db| {
            db.query_row(
                &format!("SELECT {COLUMNS} FROM authzen_tasks WHERE callback_hash = ?1"),
                [h],
                task_of,
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn claim_authzen_tasks(
        &self,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<AuthzenTask>> {
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let tasks = {
                let mut st = tx
                    .prepare_cached(&format!(
                        "UPDATE authzen_tasks SET next_poll_at = ?1 + ?3 \
                         WHERE deferral_id IN (SELECT deferral_id FROM authzen_tasks \
                           WHERE state IN ('pending', 'cancel') AND next_poll_at <= ?1 \
                           ORDER BY next_poll_at LIMIT ?2) \
                         RETURNING {COLUMNS}"
                    ))
                    .map_err(db_err)?;
                let rows = st
                    .query_map(params![now, limit, lease_ms], task_of)
                    .map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
            };
            tx.commit().map_err(db_err)?;
            Ok(tasks)
        })
        .await
    }

    async fn update_authzen_task(
        &self,
        deferral_id: &str,
        state: &str,
        next_poll_at: i64,
        counted: bool,
    ) -> StoreResult<()> {
        let (id, state) = (deferral_id.to_owned(), state.to_owned());
        self.with(move |db| {
            db.execute(
                "UPDATE authzen_tasks SET state = ?2, next_poll_at = ?3, polls = polls + ?4 \
                 WHERE deferral_id = ?1 AND state <> 'done'",
                params![id, state, next_poll_at, i64::from(counted)],
            )
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }

    async fn end_deferral_now(&self, deferral_id: &str, now: i64) -> StoreResult<bool> {
        let id = deferral_id.to_owned();
        self.with(move |db| {
            db.execute(
                "UPDATE deferrals SET expires_at = ?2 WHERE id = ?1 AND state = 'pending' AND expires_at > ?2",
                params![id, now],
            )
            .map(|n| n == 1)
            .map_err(db_err)
        })
        .await
    }

    async fn prune_authzen_tasks(&self, before: i64) -> StoreResult<u64> {
        self.with(move |db| {
            let n = db
                .execute("DELETE FROM authzen_tasks WHERE expires_at < ?1", [before])
                .map_err(db_err)?;
            let m = db
                .execute(
                    "DELETE FROM access_requests WHERE expires_at < ?1",
                    [before],
                )
                .map_err(db_err)?;
            Ok((n + m) as u64)
        })
        .await
    }

    async fn submission_by_key(
        &self,
        client_id: &str,
        key: &str,
    ) -> StoreResult<Option<SubmissionKey>> {
        let (c, k) = (client_id.to_owned(), key.to_owned());
        self.with(move |db| {
            db.query_row(
                "SELECT body_hash, deferral_id, task_sealed, created_at, expires_at \
                 FROM access_requests WHERE client_id = ?1 AND idempotency_key = ?2",
                params![c, k],
                |r| {
                    Ok(SubmissionKey {
                        client_id: c.clone(),
                        idempotency_key: k.clone(),
                        body_hash: r.get(0)?,
                        deferral_id: r.get(1)?,
                        task_sealed: r.get(2)?,
                        created_at: r.get(3)?,
                        expires_at: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn remember_submission(&self, k: &SubmissionKey) -> StoreResult<Option<SubmissionKey>> {
        let k = k.clone();
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let earlier = tx
                .query_row(
                    "SELECT body_hash, deferral_id, task_sealed, created_at, expires_at \
                     FROM access_requests WHERE client_id = ?1 AND idempotency_key = ?2",
                    params![k.client_id, k.idempotency_key],
                    |r| {
                        Ok(SubmissionKey {
                            client_id: k.client_id.clone(),
                            idempotency_key: k.idempotency_key.clone(),
                            body_hash: r.get(0)?,
                            deferral_id: r.get(1)?,
                            task_sealed: r.get(2)?,
                            created_at: r.get(3)?,
                            expires_at: r.get(4)?,
                        })
                    },
                )
                .optional()
                .map_err(db_err)?;
            if earlier.is_none() {
                tx.execute(
                    "INSERT INTO access_requests (client_id, idempotency_key, body_hash, deferral_id, \
                     task_sealed, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        k.client_id,
                        k.idempotency_key,
                        k.body_hash,
                        k.deferral_id,
                        k.task_sealed,
                        k.created_at,
                        k.expires_at
                    ],
                )
                .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(earlier)
        })
        .await
    }
}
