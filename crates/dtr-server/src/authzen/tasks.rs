//! ARAP tasks of dtr's deferrals: submission, and resolution from the
//! task's status (its callback, or polls of `status_endpoint` with
//! backoff honouring `Retry-After`), and cancellation when the client
//! revokes its deferral code. Every deferral change goes through
//! [`crate::lifecycle::apply`].

use super::AccessRequest;
use crate::error::Error;
use crate::lifecycle;
use crate::pdp::client::ok_json;
use crate::pdp::wire::{self, Evaluations, Resolution, Verdict};
use crate::pdp::{Pdp, PdpError};
use crate::state::AppState;
use crate::store::{AuthzenTask, TransitionWrite};
use dtr_proto::deferral::DeferralState;
use dtr_proto::lifecycle::Transition;
use dtr_proto::secret::{random_token, sha256_b64};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::watch;

/// Who decided, in the deferral's record and event log.
pub const DECIDED_BY: &str = "authzen";

/// First pause between polls of a task (ARAP "Task Status Endpoint":
/// "a starting interval of several seconds").
const FIRST_POLL_MS: i64 = 2_000;
/// The longest pause ("growing to no more than one minute").
const MAX_POLL_MS: i64 = 60_000;
/// How long a claimed task is left to the node that claimed it.
const LEASE_MS: i64 = 30_000;
/// A task whose deferral never appeared (a crash between the two
/// writes) is dropped after this long.
const ORPHAN_MS: i64 = 60_000;

/// The `Idempotency-Key` of a deferral's submission: derived from its id,
/// so a retried submission carries the same key and a new request (a new
/// deferral) a new one (draft-ietf-httpapi-idempotency-key-header).
pub fn idempotency_key(deferral_id: &str) -> String {
    sha256_b64(&format!("dtr ARAP submission\n{deferral_id}"))
}

/// The pause before poll number `polls` + 1: doubling from
/// [`FIRST_POLL_MS`] to [`MAX_POLL_MS`], with up to 20 % jitter so that
/// many pollers spread out, and never shorter than `Retry-After`
/// (RFC 9110 section 10.2.3; ARAP: "MUST wait at least the indicated
/// duration").
pub fn backoff_ms(polls: u32, retry_after_s: Option<u64>, jitter: f64) -> i64 {
    let base = FIRST_POLL_MS
        .saturating_mul(1i64 << polls.min(10))
        .min(MAX_POLL_MS);
    let jittered = base + (base as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as i64;
    jittered.max(retry_after_s.map_or(0, |s| (s as i64).saturating_mul(1000)))
}

/// A submitted task, ready to store, and its answer.
pub struct Submitted {
    /// The row to store.
    pub record: AuthzenTask,
    /// The task as the service answered.
    pub task: wire::Task,
}

/// The stored form of what re-evaluation needs.
fn evaluation_json(ev: &Evaluations, denied: &[wire::Requestable]) -> Value {
    json!({
        "batch": ev.body,
        "indices": denied.iter().map(|d| d.index).collect::<Vec<_>>(),
    })
}

fn indices_of(rec: &AuthzenTask) -> Vec<usize> {
    rec.evaluation["indices"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i.as_u64().map(|i| i as usize))
                .collect()
        })
        .unwrap_or_default()
}

/// Submits the access request of deferral `deferral_id` (not yet
/// created) to the service (ARAP "Access Request Submission"): 201 or
/// 202 with a task whose status and cancel endpoints share the
/// endpoint's origin. Nothing is stored yet.
pub async fn submit(
    state: &AppState,
    ar: &AccessRequest,
    deferral_id: &str,
    client_id: &str,
) -> Result<Submitted, Error> {
    let pdp = pdp(state)?;
    let secret = random_token(32);
    let callback = format!(
        "{}{}/{}",
        state.issuer,
        dtr_proto::paths::AUTHZEN_CALLBACK,
        secret
    );
    let body = wire::submission(&ar.evaluations, &ar.denied, &callback, client_id);
    let key = idempotency_key(deferral_id);
    let answer = pdp
        .call_service(
            Method::POST,
            &ar.endpoint,
            Some(&body),
            &[("Idempotency-Key", key)],
        )
        .await
        .map_err(|e| super::unavailable(&e))?;
    let task = match ok_json(&answer, &[201, 202])
        .and_then(|b| wire::task(&b).map_err(|e| PdpError::Nonsense(e.0)))
    {
        Ok(t) => t,
        // The service refused this request (ARAP "Error Responses":
        // not_requestable, expired_denial, invalid_denial_binding, ...):
        // a refusal, not an outage.
        Err(e @ PdpError::Refused { .. }) => {
            tracing::warn!(error = %e, "access request refused by its service");
            return Err(dtr_proto::OAuthError::with_description(
                dtr_proto::ErrorCode::AccessDenied,
                "the access request was refused",
            )
            .into());
        }
        Err(e) => return Err(super::unavailable(&e).into()),
    };
    let origin = crate::pdp::client::origin(&ar.endpoint);
    let status_endpoint = task
        .status_endpoint
        .clone()
        .filter(|s| crate::pdp::client::origin(s) == origin)
        .ok_or_else(|| {
            super::unavailable(&PdpError::Nonsense(
                "task without a status_endpoint on the service's origin".into(),
            ))
        })?;
    let cancel_endpoint = task
        .cancel
        .clone()
        .filter(|c| crate::pdp::client::origin(c) == origin);
    let now = state.clock.now_ms();
    let expires_at = task
        .expires_at
        .unwrap_or(now + state.config.deferral.expires_in as i64 * 1000);
    Ok(Submitted {
        record: AuthzenTask {
            deferral_id: deferral_id.to_owned(),
            task_id: task.id.clone(),
            status_endpoint,
            cancel_endpoint,
            callback_hash: sha256_b64(&secret),
            evaluation: evaluation_json(&ar.evaluations, &ar.denied),
            state: "pending".into(),
            next_poll_at: now + backoff_ms(0, None, 0.0),
            polls: 0,
            expires_at,
            created_at: now,
        },
        task,
    })
}

fn pdp(state: &AppState) -> Result<&Pdp, Error> {
    state
        .pdp
        .as_deref()
        .ok_or_else(|| Error::internal("policy action authzen without an [authzen] PDP"))
}

/// What settling a task answer did.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// The task is still pending.
    Pending,
    /// Approved, but the PDP asked to re-evaluate later (`next_action:
    /// "retry"`), after this many seconds when it said.
    RetryAfter(Option<u64>),
    /// The deferral was decided (or was no longer pending): the task is done.
    Done,
}

/// Applies a task answer to its deferral (ARAP statuses onto the DTR
/// lifecycle, see [`wire::resolution`]).
pub async fn settle(state: &AppState, rec: &AuthzenTask, t: &wire::Task) -> Result<Settled, Error> {
    let now = state.clock.now_ms();
    let indices = indices_of(rec);
    let id = rec.deferral_id.as_str();
    match wire::resolution(t, &indices) {
        Resolution::Pending(step) => {
            if let Some(d) = state.store.deferral_by_id(id).await? {
                if d.progress != step && step.is_some() {
                    state.store.set_progress(id, step.as_deref(), now).await?;
                    lifecycle::record_event(
                        state,
                        id,
                        "progress",
                        Some(DECIDED_BY),
                        Some(json!({"step": step})),
                        now,
                    )
                    .await;
                }
            }
            return Ok(Settled::Pending);
        }
        Resolution::Reevaluate(approvals) => {
            let body = wire::reevaluation(
                &Evaluations {
                    body: rec.evaluation["batch"].clone(),
                    targets: Vec::new(),
                },
                &approvals,
            );
            // A PDP failure here leaves the task to the next poll: the
            // approval stands at the service, only our re-check is due.
            let decisions = pdp(state)?
                .evaluate(&body)
                .await
                .map_err(|e| Error::from(super::unavailable(&e)))?;
            let targets = vec![wire::Target::Gate; decisions.len()];
            let until = wire::approved_until(&approvals);
            match wire::verdict(&targets, &decisions, now) {
                Verdict::Allow { approved_until } => {
                    let bound = match (until, approved_until) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    if bound.is_some_and(|b| b <= now) {
                        deny(state, id, "approval already expired", now).await?
                    } else {
                        let w = TransitionWrite {
                            decided_by: Some(DECIDED_BY.into()),
                            approved_until: bound,
                            ..TransitionWrite::new(Transition::Approve, id)
                        };
                        lifecycle::apply(state, &w, now).await?;
                    }
                }
                _ => match wire::after_denial(&decisions) {
                    // Provisioning not done yet: the approval stands, ask
                    // again (never past the task's end, see `work`).
                    wire::AfterDenial::Retry(after) => return Ok(Settled::RetryAfter(after)),
                    wire::AfterDenial::Stop => {
                        deny(state, id, "re-evaluation after approval denied", now).await?
                    }
                },
            }
        }
        Resolution::Deny(reason) => deny(state, id, &reason, now).await?,
        Resolution::Expire => {
            if state.store.end_deferral_now(id, now).await? {
                let w = TransitionWrite {
                    decided_by: Some(DECIDED_BY.into()),
                    ..TransitionWrite::new(Transition::Expire, id)
                };
                lifecycle::apply(state, &w, now).await?;
            }
        }
    }
    state
        .store
        .update_authzen_task(id, "done", now, false)
        .await?;
    Ok(Settled::Done)
}

async fn deny(state: &AppState, id: &str, reason: &str, now: i64) -> Result<(), Error> {
    let w = TransitionWrite {
        decided_by: Some(DECIDED_BY.into()),
        deny_reason: Some(reason.to_owned()),
        ..TransitionWrite::new(Transition::Deny, id)
    };
    lifecycle::apply(state, &w, now).await?;
    Ok(())
}

/// The client revoked the deferral code: cancel the task at the service
/// (done by the poller, [`run`]), unless it is already settled.
pub async fn cancelled(state: &AppState, deferral_id: &str) -> Result<(), Error> {
    if state
        .store
        .authzen_task(deferral_id)
        .await?
        .is_some_and(|t| t.state == "pending")
    {
        let now = state.clock.now_ms();
        state
            .store
            .update_authzen_task(deferral_id, "cancel", now, false)
            .await?;
        state.authzen_wake.notify_one();
    }
    Ok(())
}

/// A callback from the service (ARAP "Callback Completion"),
/// authenticated by the task's secret path segment: polling stays
/// authoritative, so it only makes the task due now. False when no task
/// has that secret.
pub async fn callback(state: &AppState, secret: &str) -> Result<bool, Error> {
    let Some(t) = state
        .store
        .authzen_task_by_callback(&sha256_b64(secret))
        .await?
    else {
        return Ok(false);
    };
    if t.state == "pending" {
        let now = state.clock.now_ms();
        state
            .store
            .update_authzen_task(&t.deferral_id, "pending", now, false)
            .await?;
        state.authzen_wake.notify_one();
    }
    Ok(true)
}

/// One round of work on a claimed task: a poll of `status_endpoint`, or
/// the cancellation the client's revocation asked for.
pub async fn work(state: &AppState, rec: &AuthzenTask) -> Result<(), Error> {
    let now = state.clock.now_ms();
    let pdp = pdp(state)?;
    let deferral = state.store.deferral_by_id(&rec.deferral_id).await?;
    let pending = deferral
        .as_ref()
        .is_some_and(|d| d.effective_state(now) == DeferralState::Pending);
    let finish = |s: &'static str| async move {
        state
            .store
            .update_authzen_task(&rec.deferral_id, s, now, false)
            .await
    };
    if rec.state == "cancel"
        || deferral
            .as_ref()
            .is_some_and(|d| d.state == DeferralState::Cancelled)
    {
        // ARAP "Cancellation": POST to links.cancel; 200 or a 409 for a
        // task already terminal both end it. Without the link the
        // service does not support cancellation: the task ends by itself.
        if let Some(url) = &rec.cancel_endpoint {
            let body = json!({"reason": "client_revoked"});
            match pdp.call_service(Method::POST, url, Some(&body), &[]).await {
                Ok(a) if a.status == 200 || a.status == 409 || a.status == 404 => {}
                Ok(a) => {
                    tracing::warn!(task = %rec.task_id, status = a.status, "ARAP cancellation refused")
                }
                Err(e) if now < rec.expires_at => {
                    tracing::warn!(task = %rec.task_id, error = %e, "ARAP cancellation failed; retrying");
                    let next = now + backoff_ms(rec.polls, None, rand::random());
                    return Ok(state
                        .store
                        .update_authzen_task(&rec.deferral_id, "cancel", next, true)
                        .await?);
                }
                Err(_) => {}
            }
        }
        return Ok(finish("done").await?);
    }
    if !pending {
        if deferral.is_none() && now - rec.created_at < ORPHAN_MS {
            // Its deferral is being written: look again shortly.
            return Ok(state
                .store
                .update_authzen_task(&rec.deferral_id, "pending", now + FIRST_POLL_MS, false)
                .await?);
        }
        return Ok(finish("done").await?);
    }
    if now >= rec.expires_at {
        // ARAP: stop polling at task.expires_at; the deferral's own life
        // ends no later (its expires_in was capped by it).
        return Ok(finish("done").await?);
    }
    let answer = pdp
        .call_service(Method::GET, &rec.status_endpoint, None, &[])
        .await;
    let retry_after = answer.as_ref().ok().and_then(|a| a.retry_after);
    let outcome = match answer {
        Ok(a) if a.status == 410 => {
            // task_expired: the deferral expires with it.
            let t = wire::Task {
                id: rec.task_id.clone(),
                status: "expired".into(),
                status_endpoint: None,
                expires_at: None,
                cancel: None,
                step: None,
                raw: Value::Null,
            };
            settle(state, rec, &t).await
        }
        Ok(a) if a.status == 404 => {
            deny(state, &rec.deferral_id, "task unknown to the service", now).await?;
            finish("done").await?;
            Ok(Settled::Done)
        }
        Ok(a) => match ok_json(&a, &[200])
            .and_then(|b| wire::task(&b).map_err(|e| PdpError::Nonsense(e.0)))
        {
            Ok(t) => settle(state, rec, &t).await,
            Err(e) => Err(Error::from(super::unavailable(&e))),
        },
        Err(e) => Err(Error::from(super::unavailable(&e))),
    };
    match outcome {
        Ok(Settled::Done) => Ok(()),
        Ok(Settled::Pending | Settled::RetryAfter(_)) | Err(_) => {
            if let Err(e) = &outcome {
                tracing::debug!(task = %rec.task_id, error = %e, "task not settled this round");
            }
            let floor = match outcome {
                Ok(Settled::RetryAfter(Some(s))) => Some(s.max(retry_after.unwrap_or(0))),
                _ => retry_after,
            };
            let next = now + backoff_ms(rec.polls + 1, floor, rand::random());
            state
                .store
                .update_authzen_task(&rec.deferral_id, "pending", next.min(rec.expires_at), true)
                .await?;
            Ok(())
        }
    }
}

/// Claims due tasks and works them, until `shutdown`: every 500 ms, and
/// at once when a callback or a revocation wakes it. Several nodes may
/// run it: a claim leases the rows it takes.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    if state.pdp.is_none() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = state.authzen_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        run_once(&state).await;
    }
}

/// One round of [`run`]: claims what is due now and works it. Public so
/// tests drive the poller on a manual clock.
pub async fn run_once(state: &AppState) {
    let now = state.clock.now_ms();
    let tasks = match state.store.claim_authzen_tasks(now, 32, LEASE_MS).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "claiming ARAP tasks failed");
            return;
        }
    };
    for t in &tasks {
        if let Err(e) = work(state, t).await {
            tracing::warn!(task = %t.task_id, deferral = %t.deferral_id, error = %e, "ARAP task round failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_honours_retry_after() {
        assert_eq!(backoff_ms(0, None, 0.0), 2_000);
        assert_eq!(backoff_ms(1, None, 0.0), 4_000);
        assert_eq!(backoff_ms(4, None, 0.0), 32_000);
        assert_eq!(backoff_ms(5, None, 0.0), 60_000);
        assert_eq!(backoff_ms(40, None, 0.0), 60_000);
        assert_eq!(backoff_ms(0, None, 1.0), 2_400);
        // Retry-After is a floor, never shortened.
        assert_eq!(backoff_ms(0, Some(30), 0.0), 30_000);
        assert_eq!(backoff_ms(5, Some(1), 0.5), 66_000);
    }

    #[test]
    fn idempotency_keys_are_stable_per_deferral() {
        assert_eq!(idempotency_key("dfr_a"), idempotency_key("dfr_a"));
        assert_ne!(idempotency_key("dfr_a"), idempotency_key("dfr_b"));
        assert!(!idempotency_key("dfr_a").contains("dfr_a"));
    }
}
