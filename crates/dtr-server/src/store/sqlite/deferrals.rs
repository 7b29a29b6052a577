//! [`DeferralStore`] on SQLite: deferrals, their polling state and their
//! lifecycle transitions (each one conditional `UPDATE` built by
//! `store::transitions`, its callback effect in the same transaction).

use super::*;
use crate::store::transitions::{self, Dialect, Slot, Target};
use dtr_proto::lifecycle::CallbackEffect;
use rusqlite::params_from_iter;

const DEFERRAL_COLUMNS: &str = "id, client_id, grant_type, scope, granted_scope, authorization_details, subject, \
     state, interaction_handle, progress, deny_reason, created_at, expires_at, interval_ms, auto_approve_at, \
     last_polled_at, slow_down_count, polling_blocked, resolved_at, redeemed_at, dpop_jkt, grant_context, \
     interaction_handle_sealed, decided_by, approvers, approvals_required, approved_until, \
     granted_authorization_details, pkce_challenge, pkce_redirect_uri, pkce_verified_at, interactive, \
     interaction_started_at";

fn deferral_from_row(row: &Row<'_>) -> rusqlite::Result<DeferralRecord> {
    let state: String = row.get(7)?;
    Ok(DeferralRecord {
        id: row.get(0)?,
        client_id: row.get(1)?,
        grant_type: row.get(2)?,
        scope: row.get(3)?,
        granted_scope: row.get(4)?,
        authorization_details: json_opt(row, 5)?,
        subject: row.get(6)?,
        state: state.parse().map_err(|e| corrupt(7, e))?,
        interaction_handle: match (row.get(8)?, row.get(22)?) {
            (Some(hash), Some(sealed)) => Some(StoredHandle { hash, sealed }),
            _ => None,
        },
        progress: row.get(9)?,
        deny_reason: row.get(10)?,
        decided_by: row.get(23)?,
        approvers: row
            .get::<_, String>(24)?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        approvals_required: row.get(25)?,
        approved_until: row.get(26)?,
        granted_authorization_details: json_opt(row, 27)?,
        created_at: row.get(11)?,
        expires_at: row.get(12)?,
        interval_ms: row.get(13)?,
        auto_approve_at: row.get(14)?,
        last_polled_at: row.get(15)?,
        slow_down_count: row.get(16)?,
        polling_blocked: row.get(17)?,
        resolved_at: row.get(18)?,
        redeemed_at: row.get(19)?,
        dpop_jkt: row.get(20)?,
        grant_context: json_opt(row, 21)?,
        front_channel: row
            .get::<_, Option<String>>(28)?
            .map(|pkce_challenge| -> rusqlite::Result<FrontChannel> {
                Ok(FrontChannel {
                    pkce_challenge,
                    redirect_uri: row.get(29)?,
                })
            })
            .transpose()?,
        pkce_verified_at: row.get(30)?,
        interactive: row.get(31)?,
        interaction_started_at: row.get(32)?,
    })
}

/// Approves the deferrals whose `approve_after` time has come (run by the
/// background worker every half second). The unary `+` keeps SQLite's
/// planner off the (state, expires_at) index, which it preferred: that
/// visited every pending deferral and read its row to test
/// `auto_approve_at`, 30 ms at 200,000 pending and most of the poll
/// benchmark's p99 when it ran. The partial index on `auto_approve_at`
/// holds only the deferrals that have one.
/// The values of a transition's placeholders, in order.
pub(super) fn slot_values(
    slots: &[Slot],
    w: &TransitionWrite,
    now: i64,
) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
    slots
        .iter()
        .map(|s| match s {
            Slot::Id => Value::Text(w.id.clone()),
            Slot::Now => Value::Integer(now),
            Slot::DecidedBy => text(&w.decided_by),
            Slot::GrantedScope => text(&w.granted_scope),
            Slot::ApprovedUntil => w.approved_until.map_or(Value::Null, Value::Integer),
            Slot::GrantedDetails => w
                .granted_authorization_details
                .as_ref()
                .map_or(Value::Null, |v| Value::Text(v.to_string())),
            Slot::DenyReason => text(&w.deny_reason),
            Slot::Handle => text(&w.handle_hash),
        })
        .collect()
}

pub(super) fn transitioned_from_row(row: &Row<'_>) -> rusqlite::Result<Transitioned> {
    Ok(Transitioned {
        id: row.get(0)?,
        created_at: row.get(1)?,
        client_id: row.get(2)?,
    })
}

/// A transition's effect on the deferral's callback, in its transaction
/// (the table's `callback` column).
pub(super) fn apply_callback_effect(
    db: &Connection,
    effect: CallbackEffect,
    id: &str,
    now: i64,
) -> StoreResult<()> {
    match effect {
        CallbackEffect::None => Ok(()),
        CallbackEffect::Enqueue => db
            .prepare_cached(transitions::SQLITE_ENQUEUE)
            .and_then(|mut st| st.execute([id]))
            .map(drop)
            .map_err(db_err),
        CallbackEffect::Suppress => db
            .prepare_cached(transitions::SQLITE_SUPPRESS)
            .and_then(|mut st| st.execute(params![id, now]))
            .map(drop)
            .map_err(db_err),
    }
}

impl SqliteStore {
    /// A deferral as read, with its last poll from the ledger when that
    /// is later than the database's.
    fn with_last_poll(&self, mut r: DeferralRecord) -> DeferralRecord {
        r.last_polled_at = self.polls.latest(&r.id, r.last_polled_at);
        r
    }
}

#[async_trait]
impl DeferralStore for SqliteStore {
    async fn insert_deferral(&self, d: &NewDeferral) -> StoreResult<()> {
        let d = d.clone();
        let ad = d.authorization_details.as_ref().map(to_json).transpose()?;
        let ctx = d.grant_context.as_ref().map(to_json).transpose()?;
        let insert = move |db: &Connection| {
            db.prepare_cached(
                "INSERT INTO deferrals (id, code_hash, client_id, grant_type, scope, authorization_details, subject, \
                 state, interaction_handle, created_at, expires_at, interval_ms, auto_approve_at, \
                 notification_token_hash, dpop_jkt, code_sealed, notification_token_sealed, callback_not_before, grant_context, \
                 interaction_handle_sealed, approvers, approvals_required, pkce_challenge, pkce_redirect_uri, interactive) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            )?
            .execute(params![
                d.id,
                d.code_hash,
                d.client_id,
                d.grant_type,
                d.scope,
                ad,
                d.subject,
                d.interaction_handle.as_ref().map(|h| &h.hash),
                d.created_at,
                d.expires_at,
                d.interval_ms,
                d.auto_approve_at,
                d.notification_token_hash,
                d.dpop_jkt,
                d.code_sealed,
                d.notification_token_sealed,
                d.callback_not_before,
                ctx,
                d.interaction_handle.as_ref().map(|h| &h.sealed),
                d.approvers.join(" "),
                d.approvals_required,
                d.front_channel.as_ref().map(|f| &f.pkce_challenge),
                d.front_channel.as_ref().and_then(|f| f.redirect_uri.as_ref()),
                d.interactive
            ])
            .map(|_| ())
        };
        self.inserts.insert(&self.conn, Box::new(insert)).await
    }

    async fn deferral_by_code(&self, code_hash: &str) -> StoreResult<Option<DeferralRecord>> {
        let h = code_hash.to_owned();
        self.with_read(move |db| {
            db.prepare_cached(&format!(
                "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE code_hash = ?1"
            ))
            .and_then(|mut st| st.query_row([h], deferral_from_row).optional())
            .map_err(db_err)
        })
        .await
        .map(|r| r.map(|r| self.with_last_poll(r)))
    }

    async fn deferral_by_id(&self, id: &str) -> StoreResult<Option<DeferralRecord>> {
        let id = id.to_owned();
        self.with_read(move |db| {
            db.prepare_cached(&format!(
                "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE id = ?1"
            ))
            .and_then(|mut st| st.query_row([id], deferral_from_row).optional())
            .map_err(db_err)
        })
        .await
        .map(|r| r.map(|r| self.with_last_poll(r)))
    }

    async fn attach_handle(
        &self,
        id: &str,
        client_id: &str,
        handle: &NewHandle,
        now: i64,
    ) -> StoreResult<bool> {
        let (id, client_id, h) = (id.to_owned(), client_id.to_owned(), handle.clone());
        self.with(move |db| {
            db.execute(
                "INSERT OR IGNORE INTO deferral_handles \
                 (handle_hash, deferral_id, client_id, handle_sealed, token_sealed, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![h.hash, id, client_id, h.sealed, h.token_sealed, now],
            )
            .map(|n| n == 1)
            .map_err(db_err)
        })
        .await
    }

    async fn handle_secrets(&self, id: &str) -> StoreResult<Option<NewHandle>> {
        let id = id.to_owned();
        self.with_read(move |db| {
            db.query_row(
                "SELECT handle_hash, handle_sealed, token_sealed FROM deferral_handles WHERE deferral_id = ?1",
                [id],
                |r| {
                    Ok(NewHandle {
                        hash: r.get(0)?,
                        sealed: r.get(1)?,
                        token_sealed: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn deferral_by_handle(&self, handle_hash: &str) -> StoreResult<Option<DeferralRecord>> {
        let h = handle_hash.to_owned();
        self.with_read(move |db| {
            db.prepare_cached(&format!(
                "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE id = \
                 (SELECT deferral_id FROM deferral_handles WHERE handle_hash = ?1)"
            ))
            .and_then(|mut st| st.query_row([h], deferral_from_row).optional())
            .map_err(db_err)
        })
        .await
        .map(|r| r.map(|r| self.with_last_poll(r)))
    }

    async fn deferral_by_interaction(
        &self,
        handle_hash: &str,
    ) -> StoreResult<Option<DeferralRecord>> {
        let h = handle_hash.to_owned();
        self.with(move |db| {
            db.prepare_cached(&format!(
                "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE interaction_handle = ?1"
            ))
            .and_then(|mut st| st.query_row([h], deferral_from_row).optional())
            .map_err(db_err)
        })
        .await
        .map(|r| r.map(|r| self.with_last_poll(r)))
    }

    async fn list_deferrals(
        &self,
        f: &DeferralFilter,
        now: i64,
    ) -> StoreResult<Vec<DeferralRecord>> {
        let f = f.clone();
        self.with_scan(move |db| {
            // The effective state (DeferralRecord::effective_state) in SQL,
            // so that filtering by `pending` does not list expired rows.
            let eff = "CASE WHEN state IN ('pending','approved') AND expires_at <= ?1 THEN 'expired' ELSE state END";
            let sql = format!(
                "SELECT {DEFERRAL_COLUMNS} FROM deferrals WHERE (?2 IS NULL OR {eff} = ?2) \
                 AND (?3 IS NULL OR client_id = ?3) AND (?5 IS NULL OR subject = ?5) \
                 AND (?6 IS NULL OR grant_type = ?6) ORDER BY created_at DESC, id DESC LIMIT ?4"
            );
            let mut st = db.prepare_cached(&sql).map_err(db_err)?;
            let rows = st
                .query_map(
                    params![
                        now,
                        f.state.map(|s| s.as_str()),
                        f.client_id,
                        f.limit.max(1),
                        f.subject,
                        f.grant_type
                    ],
                    deferral_from_row,
                )
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
        .map(|rs| rs.into_iter().map(|r| self.with_last_poll(r)).collect())
    }

    async fn record_poll(&self, u: &PollUpdate, now: i64) -> StoreResult<bool> {
        if now >= u.expires_at {
            return Ok(false);
        }
        // A plain poll is only remembered in memory (see `poll_ledger`);
        // a `slow_down` or an escalation also goes to the database, under
        // the ledger's lock so no plain poll of the deferral interleaves.
        // The database's last poll may be older than the ledger's, so the
        // compare-and-set there is on the count alone.
        self.polls.record(
            &u.id,
            u.expected_last_polled_at,
            u.polled_at,
            u.interval_ms,
            || {
                if u.is_plain() {
                    return Ok(true);
                }
                let mut db = self.writer()?;
                let tx = db.transaction().map_err(db_err)?;
                let n = tx
                    .prepare_cached(
                        "UPDATE deferrals SET last_polled_at = ?2, slow_down_count = ?3, polling_blocked = ?4, \
                         state = CASE WHEN ?4 THEN 'denied' ELSE state END, \
                         deny_reason = CASE WHEN ?4 THEN 'polling faster than interval' ELSE deny_reason END, \
                         resolved_at = CASE WHEN ?4 THEN ?2 ELSE resolved_at END, \
                         decided_by = CASE WHEN ?4 THEN 'policy' ELSE decided_by END, \
                         interaction_handle = CASE WHEN ?4 THEN NULL ELSE interaction_handle END, \
                         interaction_handle_sealed = CASE WHEN ?4 THEN NULL ELSE interaction_handle_sealed END \
                         WHERE id = ?1 AND state = 'pending' AND expires_at > ?6 AND slow_down_count = ?5",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            u.id,
                            u.polled_at,
                            u.slow_down_count,
                            u.block,
                            u.expected_slow_down_count,
                            now
                        ])
                    })
                    .map_err(db_err)?;
                // An escalation is the lifecycle's `block` (DTR-19): a
                // decision, so the client's callback is queued with it.
                if n == 1 && u.block {
                    apply_callback_effect(&tx, Transition::Block.rule().callback, &u.id, now)?;
                }
                tx.commit().map_err(db_err)?;
                Ok(n == 1)
            },
        )
    }

    async fn transition(&self, w: &TransitionWrite, now: i64) -> StoreResult<Option<Transitioned>> {
        let stmt = transitions::update(
            w.transition,
            Dialect::Sqlite,
            Target::One {
                handle: w.handle_hash.is_some(),
            },
        );
        let values = slot_values(&stmt.slots, w, now);
        let effect = w.transition.rule().callback;
        // Short single-row writes on the writer, on the calling thread
        // (see `with_hot`): the redemption gate is on every successful poll.
        self.with_hot(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let done = tx
                .prepare_cached(&stmt.sql)
                .and_then(|mut st| {
                    st.query_row(params_from_iter(values.iter()), transitioned_from_row)
                        .optional()
                })
                .map_err(db_err)?;
            if let Some(d) = &done {
                apply_callback_effect(&tx, effect, &d.id, now)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(done)
        })
        .await
    }

    async fn set_progress(&self, id: &str, step: Option<&str>, now: i64) -> StoreResult<bool> {
        let (id, step) = (id.to_owned(), step.map(str::to_owned));
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE deferrals SET progress = ?2 WHERE id = ?1 AND state = 'pending' AND expires_at > ?3",
                    params![id, step, now],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn mark_pkce_verified(&self, id: &str, now: i64) -> StoreResult<bool> {
        let id = id.to_owned();
        self.with(move |db| {
            db.execute(
                "UPDATE deferrals SET pkce_verified_at = ?2 \
                 WHERE id = ?1 AND pkce_challenge IS NOT NULL AND pkce_verified_at IS NULL",
                params![id, now],
            )
            .map(|n| n == 1)
            .map_err(db_err)
        })
        .await
    }

    async fn mark_interaction_started(&self, id: &str, now: i64) -> StoreResult<bool> {
        let id = id.to_owned();
        self.with(move |db| {
            db.execute(
                "UPDATE deferrals SET interaction_started_at = ?2 \
                 WHERE id = ?1 AND state = 'pending' AND expires_at > ?2 \
                 AND interaction_handle IS NOT NULL AND interaction_started_at IS NULL",
                params![id, now],
            )
            .map(|n| n == 1)
            .map_err(db_err)
        })
        .await
    }

    async fn set_interaction(
        &self,
        id: &str,
        handle: Option<&StoredHandle>,
        now: i64,
    ) -> StoreResult<bool> {
        let (id, handle) = (id.to_owned(), handle.cloned());
        self.with(move |db| {
            let (hash, sealed) = handle.map(|h| (h.hash, h.sealed)).unzip();
            let n = db
                .execute(
                    "UPDATE deferrals SET interaction_handle = ?2, interaction_handle_sealed = ?3, \
                     interaction_started_at = NULL \
                     WHERE id = ?1 AND state = 'pending' AND expires_at > ?4",
                    params![id, hash, sealed, now],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn transition_due(&self, t: Transition, now: i64) -> StoreResult<Vec<Transitioned>> {
        let stmt = transitions::update(t, Dialect::Sqlite, Target::Due);
        let w = TransitionWrite {
            decided_by: Some("policy".into()),
            ..TransitionWrite::new(t, "")
        };
        let values = slot_values(&stmt.slots, &w, now);
        let effect = t.rule().callback;
        self.with(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let done = tx
                .prepare_cached(&stmt.sql)
                .and_then(|mut st| {
                    st.query_map(params_from_iter(values.iter()), transitioned_from_row)?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db_err)?;
            for d in &done {
                apply_callback_effect(&tx, effect, &d.id, now)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(done)
        })
        .await
    }

    async fn prune_deferrals(&self, before: i64) -> StoreResult<u64> {
        self.with(move |db| {
            let n = db
                .execute(
                    "DELETE FROM deferrals WHERE expires_at < ?1 AND state IN ('expired', 'redeemed', 'denied', 'cancelled')",
                    [before],
                )
                .map_err(db_err)?;
            // Their approvals and event log go with them (DTR-37).
            db.execute(
                "DELETE FROM deferral_approvals WHERE deferral_id NOT IN (SELECT id FROM deferrals)",
                [],
            )
            .map_err(db_err)?;
            db.execute(
                "DELETE FROM deferral_events WHERE at < ?1 AND deferral_id NOT IN (SELECT id FROM deferrals)",
                [before],
            )
            .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }

    async fn add_approval(&self, a: &Approval, now: i64) -> StoreResult<bool> {
        let a = a.clone();
        self.with_hot(move |db| {
            // Only while pending and alive; the key makes it count once.
            let n = db
                .prepare_cached(
                    "INSERT OR IGNORE INTO deferral_approvals (deferral_id, approver, at, scope, approved_until, authorization_details) \
                     SELECT id, ?2, ?3, ?4, ?6, ?7 FROM deferrals WHERE id = ?1 AND state = 'pending' AND expires_at > ?5",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        a.deferral_id,
                        a.by,
                        a.at,
                        a.scope,
                        now,
                        a.approved_until,
                        a.authorization_details.as_ref().map(|v| v.to_string())
                    ])
                })
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn approvals(&self, id: &str) -> StoreResult<Vec<Approval>> {
        let id = id.to_owned();
        self.with_read(move |db| {
            let mut st = db
                .prepare_cached(
                    "SELECT deferral_id, approver, at, scope, approved_until, authorization_details FROM deferral_approvals \
                     WHERE deferral_id = ?1 ORDER BY at, approver",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([id], |r| {
                    Ok(Approval {
                        deferral_id: r.get(0)?,
                        by: r.get(1)?,
                        at: r.get(2)?,
                        scope: r.get(3)?,
                        approved_until: r.get(4)?,
                        authorization_details: json_opt(r, 5)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn append_event(&self, e: &DeferralEvent) -> StoreResult<()> {
        let e = e.clone();
        let detail = e.detail.as_ref().map(to_json).transpose()?;
        self.with_hot(move |db| {
            db.prepare_cached(
                "INSERT INTO deferral_events (deferral_id, type, actor, at, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| st.execute(params![e.deferral_id, e.kind, e.by, e.at, detail]))
            .map(drop)
            .map_err(db_err)
        })
        .await
    }

    async fn events(&self, id: &str) -> StoreResult<Vec<DeferralEvent>> {
        let id = id.to_owned();
        self.with_scan(move |db| {
            let mut st = db
                .prepare_cached(
                    "SELECT deferral_id, type, actor, at, detail FROM deferral_events \
                     WHERE deferral_id = ?1 ORDER BY seq",
                )
                .map_err(db_err)?;
            let rows = st.query_map([id], event_from_row).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn events_since(&self, since: i64, limit: u32) -> StoreResult<Vec<DeferralEvent>> {
        self.with_scan(move |db| {
            let mut st = db
                .prepare_cached(
                    "SELECT deferral_id, type, actor, at, detail FROM deferral_events \
                     WHERE at >= ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map(params![since, limit.max(1)], event_from_row)
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn count_pending_by_client(&self, now: i64) -> StoreResult<Vec<(String, u64)>> {
        self.with_scan(move |db| {
            let mut st = db
                .prepare_cached(
                    "SELECT client_id, COUNT(*) FROM deferrals \
                     WHERE state = 'pending' AND expires_at > ?1 GROUP BY client_id ORDER BY client_id",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }
}

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<DeferralEvent> {
    Ok(DeferralEvent {
        deferral_id: r.get(0)?,
        kind: r.get(1)?,
        by: r.get(2)?,
        at: r.get(3)?,
        detail: json_opt(r, 4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of a worker statement, as SQLite explains it.
    fn plan(db: &Connection, sql: &str, params: usize) -> String {
        let mut st = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = st
            .query_map(params_from_iter(vec![0_i64; params]), |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows.join("; ")
    }

    #[test]
    fn approve_due_walks_only_the_deferrals_with_an_approval_time() {
        let store = SqliteStore::in_memory().unwrap();
        let db = store.conn.lock().unwrap();
        let stmt = transitions::update(Transition::AutoApprove, Dialect::Sqlite, Target::Due);
        let p = plan(&db, &stmt.sql, stmt.slots.len());
        assert!(p.contains("deferrals_auto_approve"), "plan: {p}");
    }
}
