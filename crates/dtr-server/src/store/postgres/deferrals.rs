//! [`DeferralStore`] on PostgreSQL: deferrals, their polling state and
//! their lifecycle transitions (each one conditional statement built by
//! `store::transitions`, its callback effect in the same statement).

use super::*;
use crate::store::transitions::{self, Dialect, Slot, Target};

const DEFERRAL_COLUMNS: &str = "id, client_id, grant_type, scope, granted_scope, authorization_details, subject, \
     state, interaction_handle, progress, deny_reason, created_at, expires_at, interval_ms, auto_approve_at, \
     last_polled_at, slow_down_count, polling_blocked, resolved_at, redeemed_at, dpop_jkt, grant_context, \
     interaction_handle_sealed, decided_by, approvers, approvals_required, approved_until, \
     granted_authorization_details, pkce_challenge, pkce_redirect_uri, pkce_verified_at, interactive, \
     interaction_started_at";

fn deferral_from_row(row: &Row) -> StoreResult<DeferralRecord> {
    let state: String = row.try_get(7).map_err(db_err)?;
    let slow_down: i32 = row.try_get(16).map_err(db_err)?;
    Ok(DeferralRecord {
        id: row.try_get(0).map_err(db_err)?,
        client_id: row.try_get(1).map_err(db_err)?,
        grant_type: row.try_get(2).map_err(db_err)?,
        scope: row.try_get(3).map_err(db_err)?,
        granted_scope: row.try_get(4).map_err(db_err)?,
        authorization_details: row.try_get(5).map_err(db_err)?,
        subject: row.try_get(6).map_err(db_err)?,
        state: state
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("deferral state: {e}")))?,
        interaction_handle: match (
            row.try_get(8).map_err(db_err)?,
            row.try_get(22).map_err(db_err)?,
        ) {
            (Some(hash), Some(sealed)) => Some(StoredHandle { hash, sealed }),
            _ => None,
        },
        progress: row.try_get(9).map_err(db_err)?,
        deny_reason: row.try_get(10).map_err(db_err)?,
        decided_by: row.try_get(23).map_err(db_err)?,
        approvers: row
            .try_get::<_, String>(24)
            .map_err(db_err)?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        approvals_required: u32::try_from(row.try_get::<_, i32>(25).map_err(db_err)?)
            .map_err(|e| StoreError::Corrupt(format!("approvals_required: {e}")))?,
        approved_until: row.try_get(26).map_err(db_err)?,
        granted_authorization_details: row.try_get(27).map_err(db_err)?,
        created_at: row.try_get(11).map_err(db_err)?,
        expires_at: row.try_get(12).map_err(db_err)?,
        interval_ms: row.try_get(13).map_err(db_err)?,
        auto_approve_at: row.try_get(14).map_err(db_err)?,
        last_polled_at: row.try_get(15).map_err(db_err)?,
        slow_down_count: u32::try_from(slow_down)
            .map_err(|e| StoreError::Corrupt(format!("slow_down_count: {e}")))?,
        polling_blocked: row.try_get(17).map_err(db_err)?,
        resolved_at: row.try_get(18).map_err(db_err)?,
        redeemed_at: row.try_get(19).map_err(db_err)?,
        dpop_jkt: row.try_get(20).map_err(db_err)?,
        grant_context: row.try_get(21).map_err(db_err)?,
        front_channel: row
            .try_get::<_, Option<String>>(28)
            .map_err(db_err)?
            .map(|pkce_challenge| -> StoreResult<FrontChannel> {
                Ok(FrontChannel {
                    pkce_challenge,
                    redirect_uri: row.try_get(29).map_err(db_err)?,
                })
            })
            .transpose()?,
        pkce_verified_at: row.try_get(30).map_err(db_err)?,
        interactive: row.try_get(31).map_err(db_err)?,
        interaction_started_at: row.try_get(32).map_err(db_err)?,
    })
}

/// A count as stored (INTEGER); counts beyond `i32` cannot occur, they are
/// bounded by `slow_down_limit`.
fn count_to_db(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A poll's write (see `record_poll`), without an escalation.
const POLL: &str =
    "UPDATE deferrals SET last_polled_at = $2, slow_down_count = $3, polling_blocked = $4 \
     WHERE id = $1 AND state = 'pending' AND expires_at > $7 \
     AND last_polled_at IS NOT DISTINCT FROM $5 AND slow_down_count = $6";

/// A poll's write with an escalation: the deferral is denied and its
/// callback queued ([`transitions::PG_ENQUEUE`]) in one statement.
const POLL_BLOCK: &str =     "WITH t AS (UPDATE deferrals SET last_polled_at = $2, slow_down_count = $3, polling_blocked = $4, \
     state = 'denied', deny_reason = 'polling faster than interval', resolved_at = $2, decided_by = 'policy', \
     interaction_handle = NULL, interaction_handle_sealed = NULL \
     WHERE id = $1 AND state = 'pending' AND expires_at > $7 \
     AND last_polled_at IS NOT DISTINCT FROM $5 AND slow_down_count = $6 \
     RETURNING id, client_id, resolved_at, callback_not_before, code_sealed), \
     cb AS (INSERT INTO callbacks (deferral_id, endpoint, state, created_at, next_attempt_at) \
     SELECT t.id, c.notification_endpoint, 'pending', t.resolved_at, \
     GREATEST(t.resolved_at, COALESCE(t.callback_not_before, 0)) \
     FROM t JOIN clients c ON c.client_id = t.client_id \
     WHERE t.code_sealed IS NOT NULL AND c.notification_endpoint IS NOT NULL \
     ON CONFLICT (deferral_id) DO NOTHING) \
     SELECT 1 FROM t";

/// The values a transition's placeholders are bound to.
pub(super) struct SlotValues {
    id: String,
    now: i64,
    decided_by: Option<String>,
    granted_scope: Option<String>,
    approved_until: Option<i64>,
    granted_details: Option<serde_json::Value>,
    deny_reason: Option<String>,
    handle: Option<String>,
}

impl SlotValues {
    pub(super) fn of(w: &TransitionWrite, now: i64) -> Self {
        Self {
            id: w.id.clone(),
            now,
            decided_by: w.decided_by.clone(),
            granted_scope: w.granted_scope.clone(),
            approved_until: w.approved_until,
            granted_details: w.granted_authorization_details.clone(),
            deny_reason: w.deny_reason.clone(),
            handle: w.handle_hash.clone(),
        }
    }

    /// The parameters in the order of `slots`.
    pub(super) fn params(&self, slots: &[Slot]) -> Vec<&(dyn ToSql + Sync)> {
        slots
            .iter()
            .map(|s| -> &(dyn ToSql + Sync) {
                match s {
                    Slot::Id => &self.id,
                    Slot::Now => &self.now,
                    Slot::DecidedBy => &self.decided_by,
                    Slot::GrantedScope => &self.granted_scope,
                    Slot::ApprovedUntil => &self.approved_until,
                    Slot::GrantedDetails => &self.granted_details,
                    Slot::DenyReason => &self.deny_reason,
                    Slot::Handle => &self.handle,
                }
            })
            .collect()
    }
}

pub(super) fn transitioned_from_row(row: &Row) -> StoreResult<Transitioned> {
    Ok(Transitioned {
        id: row.try_get(0).map_err(db_err)?,
        created_at: row.try_get(1).map_err(db_err)?,
        client_id: row.try_get(2).map_err(db_err)?,
    })
}

#[async_trait]
impl DeferralStore for PostgresStore {
    async fn insert_deferral(&self, d: &NewDeferral) -> StoreResult<()> {
        self.execute(
            "INSERT INTO deferrals (id, code_hash, client_id, grant_type, scope, authorization_details, subject, \
             state, interaction_handle, created_at, expires_at, interval_ms, auto_approve_at, \
             notification_token_hash, dpop_jkt, code_sealed, notification_token_sealed, callback_not_before, grant_context, \
             interaction_handle_sealed, approvers, approvals_required, pkce_challenge, pkce_redirect_uri, interactive) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
            &[
                &d.id,
                &d.code_hash,
                &d.client_id,
                &d.grant_type,
                &d.scope,
                &d.authorization_details,
                &d.subject,
                &d.interaction_handle.as_ref().map(|h| &h.hash),
                &d.created_at,
                &d.expires_at,
                &d.interval_ms,
                &d.auto_approve_at,
                &d.notification_token_hash,
                &d.dpop_jkt,
                &d.code_sealed,
                &d.notification_token_sealed,
                &d.callback_not_before,
                &d.grant_context,
                &d.interaction_handle.as_ref().map(|h| &h.sealed),
                &d.approvers.join(" "),
                &(d.approvals_required.min(i32::MAX as u32) as i32),
                &d.front_channel.as_ref().map(|f| &f.pkce_challenge),
                &d.front_channel.as_ref().and_then(|f| f.redirect_uri.as_ref()),
                &d.interactive,
            ],
        )
        .await?;
        Ok(())
    }

    async fn deferral_by_code(&self, code_hash: &str) -> StoreResult<Option<DeferralRecord>> {
        self.query_opt(
            &format!("SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE code_hash = $1"),
            &[&code_hash],
        )
        .await?
        .as_ref()
        .map(deferral_from_row)
        .transpose()
    }

    async fn attach_handle(
        &self,
        id: &str,
        client_id: &str,
        handle: &NewHandle,
        now: i64,
    ) -> StoreResult<bool> {
        let n = self
            .execute(
                "INSERT INTO deferral_handles \
                 (handle_hash, deferral_id, client_id, handle_sealed, token_sealed, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &handle.hash,
                    &id,
                    &client_id,
                    &handle.sealed,
                    &handle.token_sealed,
                    &now,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn handle_secrets(&self, id: &str) -> StoreResult<Option<NewHandle>> {
        Ok(self
            .query_opt(
                "SELECT handle_hash, handle_sealed, token_sealed FROM deferral_handles WHERE deferral_id = $1",
                &[&id],
            )
            .await?
            .map(|r| NewHandle {
                hash: r.get(0),
                sealed: r.get(1),
                token_sealed: r.get(2),
            }))
    }

    async fn deferral_by_handle(&self, handle_hash: &str) -> StoreResult<Option<DeferralRecord>> {
        self.query_opt(
            &format!(
                "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE id = \
                 (SELECT deferral_id FROM deferral_handles WHERE handle_hash = $1)"
            ),
            &[&handle_hash],
        )
        .await?
        .as_ref()
        .map(deferral_from_row)
        .transpose()
    }

    async fn deferral_by_id(&self, id: &str) -> StoreResult<Option<DeferralRecord>> {
        self.query_opt(
            &format!("SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(deferral_from_row)
        .transpose()
    }

    async fn deferral_by_interaction(
        &self,
        handle_hash: &str,
    ) -> StoreResult<Option<DeferralRecord>> {
        self.query_opt(
            &format!("SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE interaction_handle = $1"),
            &[&handle_hash],
        )
        .await?
        .as_ref()
        .map(deferral_from_row)
        .transpose()
    }

    async fn list_deferrals(
        &self,
        f: &DeferralFilter,
        now: i64,
    ) -> StoreResult<Vec<DeferralRecord>> {
        // The effective state (DeferralRecord::effective_state) in SQL, so
        // that filtering by `pending` does not list expired rows.
        let eff = "CASE WHEN state IN ('pending','approved') AND expires_at <= $1 THEN 'expired' ELSE state END";
        let sql = format!(
            "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE ($2::TEXT IS NULL OR {eff} = $2::TEXT) \
             AND ($3::TEXT IS NULL OR client_id = $3::TEXT) AND ($5::TEXT IS NULL OR subject = $5::TEXT) \
             AND ($6::TEXT IS NULL OR grant_type = $6::TEXT) ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let state = f.state.map(|s| s.as_str());
        let limit = i64::from(f.limit.max(1));
        self.query(
            &sql,
            &[
                &now,
                &state,
                &f.client_id,
                &limit,
                &f.subject,
                &f.grant_type,
            ],
        )
        .await?
        .iter()
        .map(deferral_from_row)
        .collect()
    }

    async fn record_poll(&self, u: &PollUpdate, now: i64) -> StoreResult<bool> {
        // DTR-19 across nodes: the compare-and-set on the values this node
        // read means two nodes polled at the same moment cannot both count
        // as "the first poll in this interval"; the loser sees `false`.
        // A plain poll goes to the connections that do not wait for the
        // WAL flush (see `open`).
        let pool = match &self.pacing {
            Some(p) if u.is_plain() => p,
            _ => &self.pool,
        };
        // An escalation is the lifecycle's `block` (DTR-19): a decision,
        // so the client's callback is queued in the same statement.
        let n = execute_on(
            pool,
            if u.block { POLL_BLOCK } else { POLL },
            &[
                &u.id,
                &u.polled_at,
                &count_to_db(u.slow_down_count),
                &u.block,
                &u.expected_last_polled_at,
                &count_to_db(u.expected_slow_down_count),
                &now,
            ],
        )
        .await?;
        Ok(n == 1)
    }

    async fn transition(&self, w: &TransitionWrite, now: i64) -> StoreResult<Option<Transitioned>> {
        let stmt = transitions::update(
            w.transition,
            Dialect::Postgres,
            Target::One {
                handle: w.handle_hash.is_some(),
            },
        );
        let values = SlotValues::of(w, now);
        let params = values.params(&stmt.slots);
        // One statement: the update and its callback effect commit together.
        let row = self.query_opt(&stmt.sql, &params).await?;
        row.as_ref().map(transitioned_from_row).transpose()
    }

    async fn set_progress(&self, id: &str, step: Option<&str>, now: i64) -> StoreResult<bool> {
        let n = self
            .execute(
                "UPDATE deferrals SET progress = $2 WHERE id = $1 AND state = 'pending' AND expires_at > $3",
                &[&id, &step, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn mark_pkce_verified(&self, id: &str, now: i64) -> StoreResult<bool> {
        let n = self
            .execute(
                "UPDATE deferrals SET pkce_verified_at = $2 \
                 WHERE id = $1 AND pkce_challenge IS NOT NULL AND pkce_verified_at IS NULL",
                &[&id, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn mark_interaction_started(&self, id: &str, now: i64) -> StoreResult<bool> {
        let n = self
            .execute(
                "UPDATE deferrals SET interaction_started_at = $2 \
                 WHERE id = $1 AND state = 'pending' AND expires_at > $2 \
                 AND interaction_handle IS NOT NULL AND interaction_started_at IS NULL",
                &[&id, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn set_interaction(
        &self,
        id: &str,
        handle: Option<&StoredHandle>,
        now: i64,
    ) -> StoreResult<bool> {
        let (hash, sealed) = handle.map(|h| (&h.hash, &h.sealed)).unzip();
        let n = self
            .execute(
                "UPDATE deferrals SET interaction_handle = $2, interaction_handle_sealed = $3, \
                 interaction_started_at = NULL \
                 WHERE id = $1 AND state = 'pending' AND expires_at > $4",
                &[&id, &hash, &sealed, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn transition_due(&self, t: Transition, now: i64) -> StoreResult<Vec<Transitioned>> {
        // Every node's worker runs this; the table's from-states make the
        // second runner a no-op for rows the first one took.
        let stmt = transitions::update(t, Dialect::Postgres, Target::Due);
        let w = TransitionWrite {
            decided_by: Some("policy".into()),
            ..TransitionWrite::new(t, "")
        };
        let values = SlotValues::of(&w, now);
        let params = values.params(&stmt.slots);
        let c = self.client().await?;
        let st = c.prepare_cached(&stmt.sql).await.map_err(db_err)?;
        let rows = c.query(&st, &params).await.map_err(db_err)?;
        rows.iter().map(transitioned_from_row).collect()
    }

    async fn prune_deferrals(&self, before: i64) -> StoreResult<u64> {
        let n = self
            .prune_batched(
                "DELETE FROM deferrals WHERE id IN (SELECT id FROM deferrals WHERE expires_at < $1 \
                 AND state IN ('expired', 'redeemed', 'denied', 'cancelled') LIMIT $2)",
                before,
            )
            .await?;
        // Their approvals and event log go with them (DTR-37).
        self.execute(
            "DELETE FROM deferral_approvals a WHERE NOT EXISTS (SELECT 1 FROM deferrals d WHERE d.id = a.deferral_id)",
            &[],
        )
        .await?;
        self.prune_batched(
            "DELETE FROM deferral_events WHERE seq IN (SELECT e.seq FROM deferral_events e WHERE e.at < $1 \
             AND NOT EXISTS (SELECT 1 FROM deferrals d WHERE d.id = e.deferral_id) LIMIT $2)",
            before,
        )
        .await?;
        Ok(n)
    }

    async fn add_approval(&self, a: &Approval, now: i64) -> StoreResult<bool> {
        // Only while pending and alive; the key makes it count once.
        let n = self
            .execute(
                "INSERT INTO deferral_approvals (deferral_id, approver, at, scope, approved_until, authorization_details) \
                 SELECT id, $2, $3, $4, $6, $7 FROM deferrals WHERE id = $1 AND state = 'pending' AND expires_at > $5 \
                 ON CONFLICT (deferral_id, approver) DO NOTHING",
                &[
                    &a.deferral_id,
                    &a.by,
                    &a.at,
                    &a.scope,
                    &now,
                    &a.approved_until,
                    &a.authorization_details,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn approvals(&self, id: &str) -> StoreResult<Vec<Approval>> {
        let rows = self
            .query(
                "SELECT deferral_id, approver, at, scope, approved_until, authorization_details FROM deferral_approvals \
                 WHERE deferral_id = $1 ORDER BY at, approver",
                &[&id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Approval {
                    deferral_id: r.try_get(0).map_err(db_err)?,
                    by: r.try_get(1).map_err(db_err)?,
                    at: r.try_get(2).map_err(db_err)?,
                    scope: r.try_get(3).map_err(db_err)?,
                    approved_until: r.try_get(4).map_err(db_err)?,
                    authorization_details: r.try_get(5).map_err(db_err)?,
                })
            })
            .collect()
    }

    async fn append_event(&self, e: &DeferralEvent) -> StoreResult<()> {
        self.execute(
            "INSERT INTO deferral_events (deferral_id, type, actor, at, detail) VALUES ($1, $2, $3, $4, $5)",
            &[&e.deferral_id, &e.kind, &e.by, &e.at, &e.detail],
        )
        .await?;
        Ok(())
    }

    async fn events(&self, id: &str) -> StoreResult<Vec<DeferralEvent>> {
        let rows = self
            .query(
                "SELECT deferral_id, type, actor, at, detail FROM deferral_events \
                 WHERE deferral_id = $1 ORDER BY seq",
                &[&id],
            )
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn events_since(&self, since: i64, limit: u32) -> StoreResult<Vec<DeferralEvent>> {
        let limit = i64::from(limit.max(1));
        let rows = self
            .query(
                "SELECT deferral_id, type, actor, at, detail FROM deferral_events \
                 WHERE at >= $1 ORDER BY seq LIMIT $2",
                &[&since, &limit],
            )
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn count_pending_by_client(&self, now: i64) -> StoreResult<Vec<(String, u64)>> {
        self.query(
            "SELECT client_id, COUNT(*)::BIGINT FROM deferrals \
             WHERE state = 'pending' AND expires_at > $1 GROUP BY client_id ORDER BY client_id",
            &[&now],
        )
        .await?
        .iter()
        .map(|r| {
            let n: i64 = r.try_get(1).map_err(db_err)?;
            Ok((r.try_get(0).map_err(db_err)?, n.max(0) as u64))
        })
        .collect()
    }
}

fn event_from_row(r: &Row) -> StoreResult<DeferralEvent> {
    Ok(DeferralEvent {
        deferral_id: r.try_get(0).map_err(db_err)?,
        kind: r.try_get(1).map_err(db_err)?,
        by: r.try_get(2).map_err(db_err)?,
        at: r.try_get(3).map_err(db_err)?,
        detail: r.try_get(4).map_err(db_err)?,
    })
}
