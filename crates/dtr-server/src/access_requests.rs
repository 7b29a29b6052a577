//! dtr's review queue as an ARAP access request service (AuthZEN Access
//! Request and Approval Profile): another enforcement point submits an
//! access request after a requestable denial, and it becomes a deferral
//! in the same queue, routed by the same `[[policy]]` rules, decided by
//! the same approvers in the same console and admin API, with the same
//! event log and four-eyes rules. The enforcement point polls the task
//! and may be called back.
//!
//! - Who may submit: a registered confidential client, authenticated
//!   with HTTP Basic (`client_secret_basic`, RFC 6749 section 2.3.1),
//!   sees and cancels only its own tasks (ARAP "Endpoint Protection").
//! - The task id is the deferral's code: 160 random bits, stored only as
//!   a hash (ARAP "Task Handle Leakage"); the deferral's reviewer-facing
//!   id starts with `arq_`.
//! - The denial binding (`binding_token` or `evaluation_id`) and its
//!   `expires_at` are required and recorded for the approvers and the
//!   audit trail; dtr does not verify a binding token's signature (it
//!   trusts the authenticated enforcement point to relay its PDP's
//!   denial), which the README lists as left open.
//! - Routing: the policy sees the grant type [`GRANT_TYPE`], the
//!   submitter as client, a `scope` resource as the scope, and the whole
//!   request as one authorization detail of type [`DETAIL_TYPE`]; a
//!   `deny` rule refuses it (`not_requestable`), `review` and
//!   `interaction` rules route it to their approvers, anything else to
//!   the admins.

use crate::arap::{self, task_json, Problem, GRANT_TYPE, ID_PREFIX};
use crate::deferrals::{self, DeferRequest};
use crate::error::Error;
use crate::lifecycle;
use crate::policy::{Action, PolicyRequest, Routing};
use crate::state::AppState;
use crate::store::{ClientRecord, DeferralRecord, SubmissionKey, TransitionWrite};
use dtr_proto::deferral::DeferralState;
use dtr_proto::lifecycle::Transition;
use dtr_proto::scope::Scope;
use dtr_proto::secret::{random_token, sha256_b64, DeferralCode};
use dtr_proto::token::DeferralOptIn;
use serde_json::{json, Value};

/// Why a call failed: a problem for the caller, or a server fault.
#[derive(Debug)]
pub enum Failure {
    /// Answered as RFC 9457 problem JSON.
    Problem(Problem),
    /// A server fault (store, ...), answered per [`Error`].
    Fault(Error),
}

impl From<Problem> for Failure {
    fn from(p: Problem) -> Self {
        Self::Problem(p)
    }
}
impl<E: Into<Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Fault(e.into())
    }
}

/// Accepts a submission from `client`: the task and whether it is new
/// (201/202: 202 while pending).
pub async fn submit(
    state: &AppState,
    client: &ClientRecord,
    body: &Value,
    idempotency_key: Option<&str>,
) -> Result<Value, Failure> {
    let now = state.clock.now_ms();
    let s = arap::check(body, now)?;
    if let Some(cb) = &s.callback {
        // ARAP "Callback Completion": the endpoint must be authorized for
        // the client: its registered deferred_client_notification_endpoint
        // or a path below it (a PEP's per-task callback URLs).
        let registered = state
            .clients
            .get(&client.client_id)
            .and_then(|c| c.notification_endpoint.clone());
        if !registered
            .as_deref()
            .is_some_and(|r| arap::callback_allowed(r, cb))
        {
            return Err(Problem::bad(
                "callback.endpoint must be the client's registered deferred_client_notification_endpoint or below it",
            )
            .into());
        }
    }
    let body_hash = sha256_b64(&arap::canonical(body).to_string());
    let id = format!("{ID_PREFIX}{}", random_token(12));
    if let Some(key) = idempotency_key {
        if key.is_empty() || key.len() > 255 {
            return Err(Problem::bad("Idempotency-Key: 1 to 255 characters").into());
        }
        // A repeat returns the task it made; another body under the same
        // key is a duplicate_request (ARAP "Access Request Submission").
        if let Some(earlier) = lookup(state, client, key).await? {
            return replay(state, client, &earlier, &body_hash).await;
        }
    }
    let scope = match (s.resource["type"].as_str(), s.resource["id"].as_str()) {
        (Some("scope"), Some(id)) => Scope::parse(id).unwrap_or_default(),
        _ => Scope::default(),
    };
    let detail = json!([{
        "type": arap::DETAIL_TYPE,
        "subject": s.subject,
        "resource": s.resource,
        "action": s.action,
        "context": body.get("context").cloned().unwrap_or(Value::Null),
        "denial": s.denial,
        "requested_access": body.get("requested_access").cloned().unwrap_or(Value::Null),
    }]);
    let (action, routing) = state.policy.decide(&PolicyRequest {
        client_id: &client.client_id,
        grant_type: GRANT_TYPE,
        scope: &scope,
        authorization_details: Some(&detail),
    });
    let routing = match action {
        Action::Deny => {
            return Err(Problem::arap(
                400,
                "not_requestable",
                "policy does not let this access be requested",
            )
            .into())
        }
        Action::Review | Action::Interaction => routing,
        _ => Routing::default(),
    };
    // The submitter asked for an asynchronous decision by submitting.
    let completion_mode = dtr_proto::completion_mode::CompletionMode::parse(Some("deferred"))
        .map_err(|_| Error::internal("completion_mode \"deferred\" does not parse"))?;
    let deferred = deferrals::create(
        state,
        DeferRequest {
            client_id: client.client_id.clone(),
            grant_type: GRANT_TYPE.into(),
            scope,
            authorization_details: Some(detail),
            subject: s.subject["id"].as_str().unwrap_or_default().to_owned(),
            action: Action::Review,
            routing,
            opt_in: DeferralOptIn {
                completion_mode,
                notification_token: None,
            },
            dpop_jkt: None,
            front_channel: None,
            id: Some(id.clone()),
            expires_in: None,
        },
        // The callback URL may carry the PEP's per-task secret: sealed,
        // out of the approvers' sight.
        s.callback.as_ref().map(
            |cb| json!({"callback_sealed": state.seal_key.seal(cb, &arap::callback_context(&id))}),
        ),
    )
    .await?;
    let task_id = deferred.deferral_code;
    if let Some(key) = idempotency_key {
        let k = SubmissionKey {
            client_id: client.client_id.clone(),
            idempotency_key: key.to_owned(),
            body_hash: body_hash.clone(),
            deferral_id: id.clone(),
            task_sealed: state.seal_key.seal(&task_id, &sealing_context(&id)),
            created_at: now,
            // ARAP: kept at least until the task's end and a day after.
            expires_at: now + deferred.expires_in as i64 * 1000 + 24 * 3600 * 1000,
        };
        if let Some(earlier) = state.store.remember_submission(&k).await? {
            // Another node took the same key meanwhile: that one stands,
            // ours is withdrawn.
            let w = TransitionWrite {
                decided_by: Some(format!("client:{}", client.client_id)),
                ..TransitionWrite::new(Transition::Cancel, &id)
            };
            lifecycle::apply(state, &w, now).await?;
            return replay(state, client, &earlier, &body_hash).await;
        }
    }
    let rec = state
        .store
        .deferral_by_id(&id)
        .await?
        .ok_or_else(|| Error::internal("the access request just stored is gone"))?;
    Ok(task_json(&state.issuer, &task_id, &rec, now))
}

fn sealing_context(deferral_id: &str) -> String {
    format!("access request task\n{deferral_id}")
}

async fn lookup(
    state: &AppState,
    client: &ClientRecord,
    key: &str,
) -> Result<Option<SubmissionKey>, Failure> {
    Ok(state
        .store
        .submission_by_key(&client.client_id, key)
        .await?)
}

async fn replay(
    state: &AppState,
    client: &ClientRecord,
    earlier: &SubmissionKey,
    body_hash: &str,
) -> Result<Value, Failure> {
    if earlier.body_hash != body_hash {
        return Err(Problem::arap(
            409,
            "duplicate_request",
            "this Idempotency-Key was used with another submission",
        )
        .into());
    }
    let task_id = state
        .seal_key
        .open(&earlier.task_sealed, &sealing_context(&earlier.deferral_id))
        .ok_or_else(|| Error::internal("a stored task id does not open"))?;
    let rec = own_task(state, client, &task_id).await?;
    Ok(task_json(
        &state.issuer,
        &task_id,
        &rec,
        state.clock.now_ms(),
    ))
}

/// The client's access request task `task_id`; `unknown_task` for an
/// unknown one, another client's, or a deferral that is no access
/// request (indistinguishable, like DTR-17).
async fn own_task(
    state: &AppState,
    client: &ClientRecord,
    task_id: &str,
) -> Result<DeferralRecord, Failure> {
    let unknown = || Problem::arap(404, "unknown_task", "no such task");
    if task_id.len() > 128 {
        return Err(unknown().into());
    }
    let rec = state
        .store
        .deferral_by_code(&DeferralCode::new(task_id).hash())
        .await?
        .filter(|r| r.id.starts_with(ID_PREFIX) && r.grant_type == GRANT_TYPE)
        .filter(|r| dtr_proto::secret::ct_eq(r.client_id.as_bytes(), client.client_id.as_bytes()))
        .ok_or_else(unknown)?;
    Ok(rec)
}

/// Task status (ARAP "Task Status Endpoint").
pub async fn status(
    state: &AppState,
    client: &ClientRecord,
    task_id: &str,
) -> Result<Value, Failure> {
    let rec = own_task(state, client, task_id).await?;
    Ok(task_json(
        &state.issuer,
        task_id,
        &rec,
        state.clock.now_ms(),
    ))
}

/// Cancellation by the submitter (ARAP "Cancellation"): 200 with the
/// cancelled task, or `invalid_task_state` (409) when it is terminal.
pub async fn cancel(
    state: &AppState,
    client: &ClientRecord,
    task_id: &str,
) -> Result<Value, Failure> {
    let rec = own_task(state, client, task_id).await?;
    let now = state.clock.now_ms();
    let w = TransitionWrite {
        decided_by: Some(format!("client:{}", client.client_id)),
        ..TransitionWrite::new(Transition::Cancel, &rec.id)
    };
    if rec.effective_state(now) != DeferralState::Pending
        || lifecycle::apply(state, &w, now).await?.is_none()
    {
        return Err(
            Problem::arap(409, "invalid_task_state", "the task is no longer pending").into(),
        );
    }
    let rec = own_task(state, client, task_id).await?;
    Ok(task_json(&state.issuer, task_id, &rec, now))
}
