//! The bridge between the deferral draft and CIBA, both directions.
//!
//! Deferral to CIBA (opt-in, `[ciba] bridge = true`): a client holding a
//! live deferral code of its own sends a backchannel authentication
//! request with `login_hint_token=urn:dtr:deferral:<deferral_code>` and
//! gets an `auth_req_id` that is a second handle of the SAME deferral. One
//! decision, two handles, one redemption: whichever handle redeems first
//! gets the token (the originating grant's own response, DTR-20), the
//! other then answers `invalid_grant` (DTR-21), because both name one row
//! of the lifecycle. A DPoP-bound code is bridged only with a proof of its
//! key (DTR-13), and the `auth_req_id` is bound like the code (the same
//! row). Another client's code, an unknown one and a dead one are all
//! `invalid_request` with one description (DTR-17).
//!
//! CIBA to deferral: a CIBA request the user approved, whose policy still
//! wants a reviewer (the rule defers `urn:openid:params:grant-type:ciba`),
//! continues as a deferral when the token request opts in with
//! `completion_mode=deferred`: the `auth_req_id` is spent (redeemed, with
//! no token) and the answer is the deferred response of a new deferral
//! routed like any grant's (DTR-8). Without the opt-in the request is
//! refused as any grant's would be (DTR-2), and the `auth_req_id` stays
//! usable for the retry.

use super::ciba::CibaContext;
use super::{GrantOutcome, Outcome, StoredGrant};
use crate::deferrals::{self, DeferRequest};
use crate::error::Error;
use crate::lifecycle;
use crate::state::AppState;
use crate::store::{ClientRecord, NewHandle, TransitionWrite};
use dtr_proto::ciba::{BackchannelRequest, BackchannelResponse, DeliveryMode};
use dtr_proto::deferral::DeferralState;
use dtr_proto::lifecycle::Transition;
use dtr_proto::scope::Scope;
use dtr_proto::secret::DeferralCode;
use dtr_proto::token::DeferralOptIn;
use dtr_proto::{OAuthError, GRANT_TYPE_CIBA};

/// The associated data of a bridged handle's sealed secrets: its deferral,
/// and a label that keeps them apart from the deferral's own.
pub fn handle_context(id: &str) -> String {
    format!("ciba bridge handle\n{id}")
}

/// The one answer for a `login_hint_token` that names no live deferral of
/// this client, whatever the reason (DTR-17).
fn no_such_deferral() -> OAuthError {
    OAuthError::invalid_request("login_hint_token names no live deferral of this client")
}

/// Continues the client's deferral `code` as a CIBA request: a second
/// handle, the `auth_req_id`, for the same deferral.
pub async fn bridge(
    state: &AppState,
    client: &ClientRecord,
    code: &DeferralCode,
    req: &BackchannelRequest,
    dpop_jkt: Option<String>,
) -> Result<BackchannelResponse, Error> {
    if !state.config.ciba.bridge {
        return Err(OAuthError::invalid_request(
            "login_hint_token: the deferral bridge is not enabled on this server",
        )
        .into());
    }
    let now = state.clock.now_ms();
    // By the deferral code only: an auth_req_id is not bridged again.
    let rec = state
        .store
        .deferral_by_code(&code.hash())
        .await?
        .filter(|r| r.client_id == client.client_id)
        .filter(|r| {
            matches!(
                r.effective_state(now),
                DeferralState::Pending | DeferralState::Approved
            )
        })
        .ok_or_else(no_such_deferral)?;
    // DTR-13: only the key holder may continue a bound code.
    deferrals::check_binding(&rec, dpop_jkt.as_deref())?;
    let handle = DeferralCode::generate();
    // Sealed like the deferral's own code and token (DTR-29), for the ping
    // that names this handle; only when the client is notified at all.
    let notifies = client.notification_endpoint.is_some();
    let new = NewHandle {
        hash: handle.hash(),
        sealed: notifies.then(|| {
            state
                .seal_key
                .seal(handle.secret(), &handle_context(&rec.id))
        }),
        token_sealed: req
            .notification_token
            .as_ref()
            .filter(|_| notifies)
            .map(|t| state.seal_key.seal(t.secret(), &handle_context(&rec.id))),
    };
    if !state
        .store
        .attach_handle(&rec.id, &client.client_id, &new, now)
        .await?
    {
        return Err(OAuthError::invalid_request(
            "this deferral was continued as a CIBA request already",
        )
        .into());
    }
    lifecycle::record_event(
        state,
        &rec.id,
        "bridged",
        Some(&client.client_id),
        Some(serde_json::json!({ "to": GRANT_TYPE_CIBA })),
        now,
    )
    .await;
    let mode = super::ciba::delivery_mode(client);
    Ok(BackchannelResponse {
        auth_req_id: handle.secret().to_owned(),
        expires_in: u64::try_from((rec.expires_at - now) / 1000).unwrap_or(0),
        interval: (mode != DeliveryMode::Push)
            .then(|| u64::try_from(rec.interval_ms / 1000).unwrap_or(1)),
    })
}

/// The CIBA to deferral direction, run before every CIBA token request's
/// poll: `Some` when the request the user approved still needs a
/// reviewer under policy and continues as a deferral; `None` when the
/// poll answers (pending, a reviewer's decision, anything else); an error
/// when policy wants a reviewer and the request did not opt in (DTR-2).
pub async fn continue_deferred(
    state: &AppState,
    client: &ClientRecord,
    auth_req_id: &DeferralCode,
    opt_in: &DeferralOptIn,
    dpop_jkt: Option<&str>,
) -> Result<Option<GrantOutcome>, Error> {
    let now = state.clock.now_ms();
    let Some(rec) = deferrals::by_code(state, auth_req_id)
        .await?
        .filter(|r| r.client_id == client.client_id)
    else {
        return Ok(None);
    };
    if rec.grant_type != GRANT_TYPE_CIBA || rec.effective_state(now) != DeferralState::Approved {
        return Ok(None);
    }
    let Ok(StoredGrant::Ciba(ctx)) = StoredGrant::of(&rec.grant_type, rec.grant_context.as_ref())
    else {
        return Ok(None);
    };
    // Only the user's own approval can still want a reviewer; an admin's
    // or a reviewer's decision stands (DESIGN.md: it stands for the
    // user's) and is collected by the poll.
    if rec.decided_by.as_deref() != Some(ctx.username.as_str()) || ctx.user_approved_at.is_some() {
        return Ok(None);
    }
    deferrals::check_binding(&rec, dpop_jkt)?;
    let scope =
        Scope::parse(rec.granted_scope.as_deref().unwrap_or(&rec.scope)).unwrap_or_default();
    let subject = crate::pdp::wire::Subject::User(ctx.username.clone());
    let outcome = super::plan(
        state,
        super::PlanRequest {
            client,
            grant_type: GRANT_TYPE_CIBA,
            subject: &subject,
            scope: &scope,
            authorization_details: None,
            audience: &[],
            opt_in,
            dpop_jkt,
        },
    )
    .await?;
    let Outcome::Defer(action, routing) = outcome else {
        return Ok(None);
    };
    // The auth_req_id is spent first: of two concurrent continuations one
    // redeems it, the other finds it redeemed and the poll says so.
    let w = TransitionWrite {
        decided_by: Some(format!("client:{}", client.client_id)),
        ..TransitionWrite::new(Transition::Redeem, &rec.id)
    };
    if lifecycle::apply(state, &w, now).await?.is_none() {
        return Ok(None);
    }
    let next = CibaContext {
        user_approved_at: rec.resolved_at,
        ..ctx
    };
    let deferred = deferrals::create(
        state,
        DeferRequest {
            client_id: client.client_id.clone(),
            grant_type: GRANT_TYPE_CIBA.into(),
            scope,
            authorization_details: None,
            subject: next.username.clone(),
            action,
            routing,
            opt_in: opt_in.clone(),
            dpop_jkt: dpop_jkt.map(str::to_owned),
            front_channel: None,
            id: None,
            expires_in: None,
        },
        StoredGrant::Ciba(next).to_stored()?,
    )
    .await?;
    lifecycle::record_event(
        state,
        &rec.id,
        "continued",
        Some(&client.client_id),
        Some(serde_json::json!({ "as": "deferral" })),
        now,
    )
    .await;
    Ok(Some(GrantOutcome::Deferred(deferred)))
}
