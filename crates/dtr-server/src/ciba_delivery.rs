//! What a job of the callback outbox sends: the draft's callback
//! (`{"deferral_code"}`, DTR-26), or for a CIBA request its ping or push
//! (OpenID CIBA Core 1.0 sections 10.2 and 10.3), all through the same
//! durable, SSRF-safe outbox ([`crate::callbacks`]), with the client's
//! `client_notification_token` as the bearer.
//!
//! - Ping: `{"auth_req_id"}`; the client then collects at the token
//!   endpoint, which stays the authoritative path (DTR-30).
//! - Push: the token response with `auth_req_id` (section 10.3.1), or
//!   the error (section 10.3.1.2 / 12) when denied. The deferral is
//!   redeemed for it exactly once: the response is minted, sealed and
//!   stored before the redemption that makes its token valid commits, so
//!   a retry after a failed delivery sends the same response, and a crash
//!   before the redemption leaves a response whose token never became
//!   valid, which the retry replaces. Delivered, it is deleted.
//! - A deferral bridged to CIBA: a ping naming its `auth_req_id`, with the
//!   bearer its backchannel request gave.

use crate::grants::ciba::CibaContext;
use crate::grants::StoredGrant;
use crate::lifecycle;
use crate::state::AppState;
use crate::store::{CallbackJob, DeferralRecord, Recorded};
use dtr_proto::ciba::DeliveryMode;
use dtr_proto::deferral::DeferralState;
use serde_json::{json, Value};

/// What one delivery attempt sends.
pub struct Prepared {
    /// The JSON body.
    pub body: Value,
    /// The bearer token, when the client gave one.
    pub bearer: Option<String>,
    /// A CIBA push: its stored response is deleted once delivered.
    pub push: bool,
    /// Where to, when not the job's endpoint: the callback URL an ARAP
    /// submission gave (checked against the client's registered endpoint
    /// when it was accepted).
    pub endpoint: Option<String>,
}

fn push_context(id: &str) -> String {
    format!("ciba push\n{id}")
}

/// Builds what `job` sends; `Err` says why nothing can be.
pub async fn prepare(state: &AppState, job: &CallbackJob) -> Result<Prepared, String> {
    let id = job.deferral_id.as_str();
    let rec = state
        .store
        .deferral_by_id(id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("deferral gone")?;
    let open = |s: Option<&str>, context: &str| s.and_then(|s| state.seal_key.open(s, context));
    let bearer = open(job.token_sealed.as_deref(), id);
    if id.starts_with(crate::arap::ID_PREFIX) {
        // An access request submitted to dtr: ARAP's task notification
        // (the task id is the code), read fresh for its status, to the
        // callback URL the submission gave.
        let task_id = open(job.code_sealed.as_deref(), id).ok_or("task id no longer available")?;
        let endpoint = rec
            .grant_context
            .as_ref()
            .and_then(|g| g["callback_sealed"].as_str())
            .and_then(|s| {
                state
                    .seal_key
                    .open(s, &crate::arap::callback_context(&rec.id))
            });
        return Ok(Prepared {
            body: crate::arap::callback_body(&state.issuer, &task_id, &rec, state.clock.now_ms()),
            bearer,
            push: false,
            endpoint,
        });
    }
    // A deferral bridged to CIBA is announced by its auth_req_id.
    if let Some(h) = state
        .store
        .handle_secrets(id)
        .await
        .map_err(|e| e.to_string())?
    {
        let ctx = crate::grants::ciba_bridge::handle_context(id);
        if let Some(handle) = open(h.sealed.as_deref(), &ctx) {
            return Ok(Prepared {
                body: json!({ "auth_req_id": handle }),
                bearer: open(h.token_sealed.as_deref(), &ctx),
                push: false,
                endpoint: None,
            });
        }
    }
    let ciba = match StoredGrant::of(&rec.grant_type, rec.grant_context.as_ref()) {
        Ok(StoredGrant::Ciba(ctx)) => Some(ctx),
        _ => None,
    };
    let code = open(job.code_sealed.as_deref(), id);
    match ciba {
        None => {
            // DTR-26: the body carries only the code.
            let code = code.ok_or("deferral code no longer available")?;
            Ok(Prepared {
                body: json!({ "deferral_code": code }),
                bearer,
                push: false,
                endpoint: None,
            })
        }
        Some(ctx) if ctx.mode == DeliveryMode::Push => push(state, &rec, &ctx, code, bearer).await,
        Some(_) => {
            let code = code.ok_or("auth_req_id no longer available")?;
            Ok(Prepared {
                body: json!({ "auth_req_id": code }),
                bearer,
                push: false,
                endpoint: None,
            })
        }
    }
}

async fn push(
    state: &AppState,
    rec: &DeferralRecord,
    _ctx: &CibaContext,
    auth_req_id: Option<String>,
    bearer: Option<String>,
) -> Result<Prepared, String> {
    let now = state.clock.now_ms();
    let id = rec.id.as_str();
    let sent = |body: Value| Prepared {
        body,
        bearer: bearer.clone(),
        push: true,
        endpoint: None,
    };
    match rec.effective_state(now) {
        // A retry: the response stored before the redemption committed.
        DeferralState::Redeemed => {
            let sealed = state
                .store
                .push_payload(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("push already delivered")?;
            // The bearer is kept with it: the redemption dropped the
            // deferral's sealed copy (DTR-29).
            let stored: Value = state
                .seal_key
                .open(&sealed, &push_context(id))
                .and_then(|s| serde_json::from_str(&s).ok())
                .ok_or("stored push unreadable")?;
            Ok(Prepared {
                body: stored["body"].clone(),
                bearer: stored["bearer"].as_str().map(str::to_owned),
                push: true,
                endpoint: None,
            })
        }
        DeferralState::Denied => {
            let auth_req_id = auth_req_id.ok_or("auth_req_id no longer available")?;
            Ok(sent(json!({
                "auth_req_id": auth_req_id,
                "error": "access_denied",
                "error_description": "the request was denied",
            })))
        }
        DeferralState::Approved => {
            let auth_req_id = auth_req_id.ok_or("auth_req_id no longer available")?;
            let (token, issuance) = crate::grants::deferred::mint_redemption(state, rec, now)
                .await
                .map_err(|e| e.to_string())?;
            let mut body = serde_json::to_value(&token).map_err(|e| e.to_string())?;
            body["auth_req_id"] = auth_req_id.into();
            let stored = json!({ "body": body, "bearer": bearer });
            let sealed = state.seal_key.seal(&stored.to_string(), &push_context(id));
            state
                .store
                .put_push_payload(id, &sealed, now)
                .await
                .map_err(|e| e.to_string())?;
            match lifecycle::redeem(state, id, &issuance, now)
                .await
                .map_err(|e| e.to_string())?
            {
                Recorded::Written(_) => Ok(sent(body)),
                Recorded::NotRedeemed | Recorded::FamilyRevoked => {
                    let _ = state.store.delete_push_payload(id).await;
                    Err("the request was not redeemable".into())
                }
            }
        }
        s => Err(format!("request is {s}")),
    }
}

/// After the last attempt of a push (delivered or given up): its stored
/// response goes (a secret at rest only as long as needed, DTR-29).
pub async fn finished(state: &AppState, job: &CallbackJob) {
    if let Err(e) = state.store.delete_push_payload(&job.deferral_id).await {
        tracing::warn!(error = %e, deferral = %job.deferral_id, "dropping a CIBA push payload failed");
    }
}
