//! The one place where a deferral changes state.
//!
//! What may change and how is the table of [`dtr_proto::lifecycle`]
//! (pure, tested on its own); the store applies a row as one conditional
//! update with its callback effect ([`crate::store::transitions`]). This
//! module is where every entry point (the poll, the client's revocation,
//! a reviewer through the admin API or the console, the user at the
//! interaction page, the background worker, and every future one) has a
//! transition applied, and where its side effects happen, once each:
//! - the decision and `decided_by` are written by the same update;
//! - one log line;
//! - the resolution counter and the resolution-time histogram;
//! - the callback sender woken when a callback was queued (DTR-26).
//!
//! Store errors are returned, never swallowed: the caller answers them as
//! server faults.

use crate::metrics::Resolution;
use crate::state::AppState;
use crate::store::{DeferralEvent, Issuance, Recorded, StoreError, TransitionWrite, Transitioned};
use dtr_proto::lifecycle::{CallbackEffect, Transition};
use tracing::info;

/// The resolution a transition counts as in the metrics, if any.
pub fn resolution(t: Transition) -> Option<Resolution> {
    match t {
        Transition::Approve | Transition::AutoApprove => Some(Resolution::Approved),
        Transition::Deny | Transition::Block | Transition::Lapse => Some(Resolution::Denied),
        Transition::Redeem => Some(Resolution::Redeemed),
        Transition::Cancel => Some(Resolution::Cancelled),
        Transition::Expire => Some(Resolution::Expired),
    }
}

/// Applies `w` at `now` (every transition but a redemption, which writes
/// its token with it: [`redeem`]); `Some` when it applied (this request won), with
/// its side effects done. `None` when the deferral's state or time does
/// not allow it (another transition came first): nothing happened.
pub async fn apply(
    state: &AppState,
    w: &TransitionWrite,
    now: i64,
) -> Result<Option<Transitioned>, StoreError> {
    let done = state.store.transition(w, now).await?;
    if let Some(d) = &done {
        effects(state, w.transition, d, w, now).await;
    }
    Ok(done)
}

/// Redeems deferral `id` (DTR-21) and records the token it issues in the
/// same transaction ([`crate::store::IssuanceStore`]); the redemption's
/// side effects when it was written.
pub async fn redeem(
    state: &AppState,
    id: &str,
    issuance: &Issuance,
    now: i64,
) -> Result<Recorded, StoreError> {
    let w = TransitionWrite::new(Transition::Redeem, id);
    let recorded = state.store.record_issuance(Some(&w), issuance, now).await?;
    if let Recorded::Written(Some(d)) = &recorded {
        effects(state, Transition::Redeem, d, &w, now).await;
    }
    Ok(recorded)
}

/// Applies `auto_approve` or `expire` to every deferral due at `now` (the
/// background worker); returns how many changed.
pub async fn apply_due(state: &AppState, t: Transition, now: i64) -> Result<usize, StoreError> {
    let done = state.store.transition_due(t, now).await?;
    let w = TransitionWrite {
        decided_by: Some("policy".into()),
        ..TransitionWrite::new(t, "")
    };
    for d in &done {
        effects(state, t, d, &w, now).await;
    }
    Ok(done.len())
}

/// The side effects of a transition the store applied as part of a
/// compound write of its own (the poll's compare-and-set that escalates to
/// `block`, DTR-19).
pub async fn applied(
    state: &AppState,
    w: &TransitionWrite,
    created_at: i64,
    client_id: &str,
    now: i64,
) {
    let d = Transitioned {
        id: w.id.clone(),
        created_at,
        client_id: client_id.to_owned(),
    };
    effects(state, w.transition, &d, w, now).await;
}

/// The name of a transition in the event log: what happened to the
/// deferral.
pub fn event_kind(t: Transition) -> &'static str {
    match t {
        Transition::Approve | Transition::AutoApprove => "approved",
        Transition::Deny => "denied",
        Transition::Block => "polling_blocked",
        Transition::Lapse => "lapsed",
        Transition::Redeem => "redeemed",
        Transition::Cancel => "cancelled",
        Transition::Expire => "expired",
    }
}

/// Appends an event to a deferral's log (the audit trail). The log must
/// not undo what it records: a failure is logged as the fault it is and
/// the caller's transition stands.
pub async fn record_event(
    state: &AppState,
    id: &str,
    kind: &str,
    by: Option<&str>,
    detail: Option<serde_json::Value>,
    now: i64,
) {
    let e = DeferralEvent {
        deferral_id: id.to_owned(),
        kind: kind.to_owned(),
        by: by.map(str::to_owned),
        at: now,
        detail,
    };
    if let Err(err) = state.store.append_event(&e).await {
        tracing::error!(deferral = %id, kind, error = %err, "appending to the deferral's event log failed");
    }
}

/// The side effects of an applied transition, in one place.
async fn effects(state: &AppState, t: Transition, d: &Transitioned, w: &TransitionWrite, now: i64) {
    let by = w.decided_by.as_deref().unwrap_or("-");
    match t {
        // Every poll that succeeds redeems: debug would drown the log, but
        // a redemption is the token going out, worth its line.
        Transition::Expire => {
            tracing::debug!(deferral = %d.id, client = %d.client_id, "deferral expired")
        }
        _ => info!(
            deferral = %d.id,
            client = %d.client_id,
            transition = t.as_str(),
            by,
            scope = w.granted_scope.as_deref().unwrap_or("-"),
            reason = w.deny_reason.as_deref().unwrap_or("-"),
            "deferral transition"
        ),
    }
    if let Some(r) = resolution(t) {
        state.metrics.deferral_resolved(r, d.created_at, now);
    }
    if t.rule().callback == CallbackEffect::Enqueue {
        state.callback_wake.notify_one();
    }
    let mut detail = serde_json::Map::new();
    if let Some(scope) = &w.granted_scope {
        detail.insert("scope".into(), scope.clone().into());
    }
    if let Some(reason) = &w.deny_reason {
        detail.insert("reason".into(), reason.clone().into());
    }
    let by = match t {
        Transition::Cancel | Transition::Redeem => Some(d.client_id.as_str()),
        _ => w.decided_by.as_deref(),
    };
    record_event(
        state,
        &d.id,
        event_kind(t),
        by,
        (!detail.is_empty()).then_some(serde_json::Value::Object(detail)),
        now,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition_is_counted() {
        for t in Transition::ALL {
            assert!(resolution(t).is_some(), "{t:?}");
        }
    }
}
