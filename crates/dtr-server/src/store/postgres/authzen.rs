//! [`AuthzenTaskStore`] on PostgreSQL.

use super::*;

const COLUMNS: &str = "deferral_id, task_id, status_endpoint, cancel_endpoint, callback_hash, \
                       evaluation, state, next_poll_at, polls, expires_at, created_at";

fn task_of(r: &Row) -> StoreResult<AuthzenTask> {
    let evaluation: String = r.try_get(5).map_err(db_err)?;
    let polls: i32 = r.try_get(8).map_err(db_err)?;
    Ok(AuthzenTask {
        deferral_id: r.try_get(0).map_err(db_err)?,
        task_id: r.try_get(1).map_err(db_err)?,
        status_endpoint: r.try_get(2).map_err(db_err)?,
        cancel_endpoint: r.try_get(3).map_err(db_err)?,
        callback_hash: r.try_get(4).map_err(db_err)?,
        evaluation: serde_json::from_str(&evaluation).unwrap_or(serde_json::Value::Null),
        state: r.try_get(6).map_err(db_err)?,
        next_poll_at: r.try_get(7).map_err(db_err)?,
        polls: polls.max(0) as u32,
        expires_at: r.try_get(9).map_err(db_err)?,
        created_at: r.try_get(10).map_err(db_err)?,
    })
}

#[async_trait]
impl AuthzenTaskStore for PostgresStore {
    async fn insert_authzen_task(&self, t: &AuthzenTask) -> StoreResult<()> {
        let polls = i32::try_from(t.polls).unwrap_or(i32::MAX);
        self.execute(
            &format!(
                "INSERT INTO authzen_tasks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            &[
                &t.deferral_id,
                &t.task_id,
                &t.status_endpoint,
                &t.cancel_endpoint,
                &t.callback_hash,
                &t.evaluation.to_string(),
                &t.state,
                &t.next_poll_at,
                &polls,
                &t.expires_at,
                &t.created_at,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn authzen_task(&self, deferral_id: &str) -> StoreResult<Option<AuthzenTask>> {
        self.query_opt(
            &format!("SELECT {COLUMNS} FROM authzen_tasks WHERE deferral_id = $1"),
            &[&deferral_id],
        )
        .await?
        .as_ref()
        .map(task_of)
        .transpose()
    }

    async fn authzen_task_by_callback(&self, hash: &str) -> StoreResult<Option<AuthzenTask>> {
        self.query_opt(
            &format!("SELECT {COLUMNS} FROM authzen_tasks WHERE callback_hash = $1"),
            &[&hash],
        )
        .await?
        .as_ref()
        .map(task_of)
        .transpose()
    }

    async fn claim_authzen_tasks(
        &self,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<AuthzenTask>> {
        // SKIP LOCKED: nodes claiming together take disjoint rows.
        let cols = COLUMNS
            .split(", ")
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = self
            .query(
                &format!(
                    "WITH due AS ( \
                       SELECT deferral_id FROM authzen_tasks WHERE state IN ('pending', 'cancel') \
                         AND next_poll_at <= $1 ORDER BY next_poll_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                     UPDATE authzen_tasks t SET next_poll_at = $1 + $3 \
                     FROM due WHERE t.deferral_id = due.deferral_id RETURNING {cols}"
                ),
                &[&now, &i64::from(limit), &lease_ms],
            )
            .await?;
        rows.iter().map(task_of).collect()
    }

    async fn update_authzen_task(
        &self,
        deferral_id: &str,
        state: &str,
        next_poll_at: i64,
        counted: bool,
    ) -> StoreResult<()> {
        self.execute(
            "UPDATE authzen_tasks SET state = $2, next_poll_at = $3, polls = polls + $4 \
             WHERE deferral_id = $1 AND state <> 'done'",
            &[&deferral_id, &state, &next_poll_at, &i32::from(counted)],
        )
        .await
        .map(|_| ())
    }

    async fn end_deferral_now(&self, deferral_id: &str, now: i64) -> StoreResult<bool> {
        self.execute(
            "UPDATE deferrals SET expires_at = $2 WHERE id = $1 AND state = 'pending' AND expires_at > $2",
            &[&deferral_id, &now],
        )
        .await
        .map(|n| n == 1)
    }

    async fn prune_authzen_tasks(&self, before: i64) -> StoreResult<u64> {
        let n = self
            .execute(
                "DELETE FROM authzen_tasks WHERE expires_at < $1",
                &[&before],
            )
            .await?;
        let m = self
            .execute(
                "DELETE FROM access_requests WHERE expires_at < $1",
                &[&before],
            )
            .await?;
        Ok(n + m)
    }

    async fn submission_by_key(
        &self,
        client_id: &str,
        key: &str,
    ) -> StoreResult<Option<SubmissionKey>> {
        let row = self
            .query_opt(
                "SELECT body_hash, deferral_id, task_sealed, created_at, expires_at \
                 FROM access_requests WHERE client_id = $1 AND idempotency_key = $2",
                &[&client_id, &key],
            )
            .await?;
        row.map(|r| {
            Ok(SubmissionKey {
                client_id: client_id.to_owned(),
                idempotency_key: key.to_owned(),
                body_hash: r.try_get(0).map_err(db_err)?,
                deferral_id: r.try_get(1).map_err(db_err)?,
                task_sealed: r.try_get(2).map_err(db_err)?,
                created_at: r.try_get(3).map_err(db_err)?,
                expires_at: r.try_get(4).map_err(db_err)?,
            })
        })
        .transpose()
    }

    async fn remember_submission(&self, k: &SubmissionKey) -> StoreResult<Option<SubmissionKey>> {
        // The insert wins or the row that won is read back, so two nodes
        // taking the same key agree on one task.
        let inserted = self
            .execute(
                "INSERT INTO access_requests (client_id, idempotency_key, body_hash, deferral_id, \
                 task_sealed, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (client_id, idempotency_key) DO NOTHING",
                &[
                    &k.client_id,
                    &k.idempotency_key,
                    &k.body_hash,
                    &k.deferral_id,
                    &k.task_sealed,
                    &k.created_at,
                    &k.expires_at,
                ],
            )
            .await?;
        if inserted == 1 {
            return Ok(None);
        }
        let row = self
            .query_opt(
                "SELECT body_hash, deferral_id, task_sealed, created_at, expires_at \
                 FROM access_requests WHERE client_id = $1 AND idempotency_key = $2",
                &[&k.client_id, &k.idempotency_key],
            )
            .await?;
        row.map(|r| {
            Ok(SubmissionKey {
                client_id: k.client_id.clone(),
                idempotency_key: k.idempotency_key.clone(),
                body_hash: r.try_get(0).map_err(db_err)?,
                deferral_id: r.try_get(1).map_err(db_err)?,
                task_sealed: r.try_get(2).map_err(db_err)?,
                created_at: r.try_get(3).map_err(db_err)?,
                expires_at: r.try_get(4).map_err(db_err)?,
            })
        })
        .transpose()
    }
}
