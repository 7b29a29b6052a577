//! The deferred grant (`urn:ietf:params:oauth:grant-type:deferred`):
//! polling a deferral (DTR-15..23). A poll reads the deferral, decides
//! with the pure `dtr_proto::deferral::decide_poll`, and applies what it
//! decided through the lifecycle ([`crate::lifecycle`]): a recorded poll,
//! `slow_down` (DTR-19), a denial when a precondition lapsed (DTR-23), or
//! the redemption (DTR-21) followed by the originating grant's own token
//! response (DTR-20), issued by [`StoredGrant::issue`]. It is a grant like
//! the others; creating a deferral, cancelling it and deciding it are
//! [`crate::deferrals`].

use super::authorize::s256;
use super::StoredGrant;
use crate::deferrals::{check_binding, interaction_uri_of};
use crate::error::Error;
use crate::lifecycle;
use crate::state::AppState;
use crate::store::{DeferralRecord, FrontChannel, PollUpdate, Recorded, TransitionWrite};
use dtr_proto::secret::{ct_eq, CodeVerifier};
use tracing::info;

use crate::tokens::Grant;
use dtr_proto::deferral::{decide_poll, escalates, is_too_fast, PollAnswer, PollDecision};
use dtr_proto::lifecycle::Transition;
use dtr_proto::secret::DeferralCode;
use dtr_proto::token::TokenResponse;
use dtr_proto::{ErrorCode, OAuthError};

/// What a poll presents of the authorization request's PKCE binding: the
/// first poll of a deferral returned on the authorization redirect carries
/// the verifier (and the redirect URI when the request named one).
#[derive(Clone, Copy, Debug, Default)]
pub struct PkceProof<'a> {
    /// `code_verifier` of the poll.
    pub code_verifier: Option<&'a CodeVerifier>,
    /// `redirect_uri` of the poll.
    pub redirect_uri: Option<&'a str>,
}

/// Answers a poll by the authenticated client (DTR-16 order).
/// `client_active` is the client's enabled state as authentication saw it;
/// a disabled client never gets a token and its open deferrals are denied
/// (DTR-23).
/// `proof_jkt` is the thumbprint of the request's valid DPoP proof, if any.
pub async fn poll(
    state: &AppState,
    client_id: &str,
    client_active: bool,
    code: &DeferralCode,
    proof_jkt: Option<&str>,
    pkce: &PkceProof<'_>,
) -> Result<TokenResponse, Error> {
    // A poll that loses a race (another poll or a decision changed the row
    // between our read and our conditional write) reads again; two rounds
    // always suffice because every transition out of `pending` is final
    // for the poll path.
    super::until_settled("deferral is changing; poll again", || async {
        let now = state.clock.now_ms();
        let record = crate::deferrals::by_code(state, code).await?;
        // DTR-17: an unknown code and another client's code take the same
        // path and get the same answer.
        // An access request task (crate::access_requests) is no deferral
        // of a token request: its id is not a code to poll.
        let Some(rec) =
            record.filter(|r| r.client_id == client_id && r.grant_type != crate::arap::GRANT_TYPE)
        else {
            return Err(PollAnswer::Unknown.to_error().into());
        };
        // DTR-13: a bound code is only ever answered to its key; anything
        // else is refused before any state is touched.
        check_binding(&rec, proof_jkt)?;
        // CIBA Core 1.0 section 10.3: a push-mode request is delivered,
        // never collected, by either handle.
        if let Ok(StoredGrant::Ciba(ctx)) =
            StoredGrant::of(&rec.grant_type, rec.grant_context.as_ref())
        {
            if ctx.mode == dtr_proto::ciba::DeliveryMode::Push {
                return Err(OAuthError::with_description(
                    ErrorCode::UnauthorizedClient,
                    "this request is delivered by push to the client's notification endpoint",
                )
                .into());
            }
        }
        // A code that travelled through the browser is redeemable only by
        // whoever holds the authorization request's PKCE verifier.
        if let Some(fc) = &rec.front_channel {
            check_front_channel(state, &rec, fc, pkce, now).await?;
        }
        let decision = decide_poll(&rec.poll_view(), now);
        if !client_active && !matches!(decision, PollDecision::Answer(_)) {
            return Err(deny_lapsed(state, &rec, "client disabled", now)
                .await?
                .into());
        }
        match decision {
            PollDecision::Answer(a) => Err(a.to_error().into()),
            PollDecision::Redeem { auto_approve } => {
                if auto_approve {
                    // `approve_after` came due before the worker saw it.
                    let w = TransitionWrite {
                        decided_by: Some("policy".into()),
                        ..TransitionWrite::new(Transition::AutoApprove, &rec.id)
                    };
                    lifecycle::apply(state, &w, now).await?;
                }
                redeem(state, &rec, now).await
            }
            PollDecision::StillPending => match record_pending_poll(state, &rec, now).await? {
                Some(answer) => Err(answer.into()),
                None => Ok(None),
            },
        }
    })
    .await
}

/// The first poll of a deferral returned on the authorization redirect
/// proves the PKCE verifier (RFC 7636 section 4.6) and repeats the
/// redirect URI when the authorization request named one (OAuth 2.1
/// section 4.1.3); later polls must not present the verifier again, so
/// that one seen in transit or in a log is worth nothing. A missing,
/// wrong or re-presented verifier is `invalid_grant` and ends the
/// deferral: whoever sent it holds the code without the verifier, or
/// replays one, and the code must not stay alive for a second guess.
async fn check_front_channel(
    state: &AppState,
    rec: &DeferralRecord,
    fc: &FrontChannel,
    pkce: &PkceProof<'_>,
    now: i64,
) -> Result<(), Error> {
    let refusal = if rec.pkce_verified_at.is_some() {
        pkce.code_verifier
            .map(|_| "code_verifier is accepted on the first poll only")
    } else {
        match pkce.code_verifier {
            None => Some("the first poll must carry the code_verifier"),
            Some(v) if !ct_eq(s256(v.secret()).as_bytes(), fc.pkce_challenge.as_bytes()) => {
                Some("code_verifier does not match the code_challenge")
            }
            Some(_)
                if fc.redirect_uri.as_deref() != pkce.redirect_uri && fc.redirect_uri.is_some() =>
            {
                Some("redirect_uri does not match the authorization request")
            }
            Some(_) => None,
        }
    };
    let Some(why) = refusal else {
        if rec.pkce_verified_at.is_none() {
            // Concurrent first polls both pass here; recording it once is
            // all that matters (later polls then must not repeat it).
            state.store.mark_pkce_verified(&rec.id, now).await?;
        }
        return Ok(());
    };
    // The lifecycle's `cancel` ends a live deferral (pending, or approved
    // and not yet collected); a finished one is left as it is.
    let w = TransitionWrite {
        decided_by: Some("policy".into()),
        deny_reason: Some(why.to_owned()),
        ..TransitionWrite::new(Transition::Cancel, &rec.id)
    };
    if lifecycle::apply(state, &w, now).await?.is_some() {
        info!(deferral = %rec.id, client = %rec.client_id, reason = why, "front-channel deferral ended");
    }
    Err(OAuthError::with_description(ErrorCode::InvalidGrant, why).into())
}

/// Denies a deferral whose preconditions lapsed before it was collected
/// (DTR-23: client disabled, user, consent, session or subject token gone)
/// and returns the poll's answer, `access_denied`.
async fn deny_lapsed(
    state: &AppState,
    rec: &DeferralRecord,
    reason: &str,
    now: i64,
) -> Result<OAuthError, Error> {
    let w = TransitionWrite {
        decided_by: Some("policy".into()),
        deny_reason: Some(reason.to_owned()),
        ..TransitionWrite::new(Transition::Lapse, &rec.id)
    };
    lifecycle::apply(state, &w, now).await?;
    Ok(PollAnswer::Denied.to_error())
}

/// Redeems an approved deferral: re-checks consent (DTR-23), then passes
/// the exactly-once gate (DTR-21). `None` when another request won.
async fn redeem(
    state: &AppState,
    rec: &DeferralRecord,
    now: i64,
) -> Result<Option<TokenResponse>, Error> {
    let (token, issuance) = mint_redemption(state, rec, now).await?;
    match lifecycle::redeem(state, &rec.id, &issuance, now).await? {
        Recorded::Written(_) => Ok(Some(token)),
        Recorded::NotRedeemed => Ok(None),
        Recorded::FamilyRevoked => Err(deny_lapsed(state, rec, "token family revoked", now)
            .await?
            .into()),
    }
}

/// The token an approved deferral redeems for, signed, and what its
/// redemption records, written nowhere yet: re-checks the client and what
/// the grant rests on first (DTR-23), denying the deferral when they
/// lapsed. The poll records it with the redemption at once; a CIBA push
/// keeps the response first (`crate::ciba_delivery`).
pub async fn mint_redemption(
    state: &AppState,
    rec: &DeferralRecord,
    now: i64,
) -> Result<(TokenResponse, crate::store::Issuance), Error> {
    // DTR-23: read the client fresh from the store, not from a cache: it
    // may have been disabled on another node since the deferral started.
    let client = state.store.get_client(&rec.client_id).await?;
    if !client.is_some_and(|c| c.is_active()) {
        return Err(deny_lapsed(state, rec, "client disabled", now)
            .await?
            .into());
    }
    // What the deferral stands for, read by its grant type; a context
    // that cannot be trusted denies rather than issuing unchecked.
    let stored = match StoredGrant::of(&rec.grant_type, rec.grant_context.as_ref()) {
        Ok(s) => s,
        Err(reason) => return Err(deny_lapsed(state, rec, reason, now).await?.into()),
    };
    // DTR-23: what the grant rests on (the user, their consent, the login
    // session and the token family; an exchange's subject and actor
    // tokens) must all still hold; otherwise the deferral is denied and no
    // token is issued.
    if let Some(reason) = stored.stale_reason(state, now).await? {
        return Err(deny_lapsed(state, rec, reason, now).await?.into());
    }
    // The granted (possibly narrowed, DTR-24) scope: as read, unless the
    // approval is the `approve_after` this poll just applied, or lost to a
    // reviewer's narrowing meanwhile: then as written.
    let granted = match &rec.granted_scope {
        Some(g) => g.clone(),
        None => state
            .store
            .deferral_by_id(&rec.id)
            .await?
            .and_then(|r| r.granted_scope)
            .unwrap_or_else(|| rec.scope.clone()),
    };
    let grant = Grant {
        client_id: rec.client_id.clone(),
        subject: rec.subject.clone().unwrap_or_else(|| rec.client_id.clone()),
        scope: granted,
        // What the approval granted of them (DTR-24), else as asked.
        authorization_details: rec
            .granted_authorization_details
            .clone()
            .or_else(|| rec.authorization_details.clone()),
        deferral_id: Some(rec.id.clone()),
        // DTR-20: DPoP-bound when the deferral was.
        dpop_jkt: rec.dpop_jkt.clone(),
        // The approval's `approved_until`.
        not_after: rec.approved_until.map(|ms| ms / 1000),
    };
    // The originating grant's own response (DTR-20), signed first and
    // recorded with the redemption in one transaction (DTR-21): a failure
    // anywhere leaves the deferral approved for the next poll, and no
    // token exists that was not handed out with its redemption.
    stored.mint(state, &grant).await
}

/// Records a poll of a pending deferral and builds the pending answer:
/// `slow_down` (DTR-19), escalation to `invalid_request`, or the pending
/// state with progress (DTR-10, DTR-18). `None` when the row moved on.
async fn record_pending_poll(
    state: &AppState,
    rec: &DeferralRecord,
    now: i64,
) -> Result<Option<OAuthError>, Error> {
    let too_fast = is_too_fast(rec.last_polled_at, now, rec.interval_ms);
    let block = too_fast && escalates(rec.slow_down_count, state.config.deferral.slow_down_limit);
    let update = PollUpdate {
        id: rec.id.clone(),
        expected_last_polled_at: rec.last_polled_at,
        expected_slow_down_count: rec.slow_down_count,
        polled_at: now,
        slow_down_count: rec.slow_down_count + u32::from(too_fast && !block),
        block,
        interval_ms: rec.interval_ms,
        expires_at: rec.expires_at,
    };
    if !state.store.record_poll(&update, now).await? {
        return Ok(None);
    }
    if block {
        // The poll's write applied the lifecycle's `block` (DTR-19).
        let w = TransitionWrite {
            decided_by: Some("policy".into()),
            deny_reason: Some("polling faster than interval".into()),
            ..TransitionWrite::new(Transition::Block, &rec.id)
        };
        lifecycle::applied(state, &w, rec.created_at, &rec.client_id, now).await;
        return Ok(Some(PollAnswer::PollingBlocked.to_error()));
    }
    if too_fast {
        state.metrics.slow_down(&rec.client_id);
        return Ok(Some(OAuthError::with_description(
            ErrorCode::SlowDown,
            format!(
                "poll at most every {} seconds; add 5 seconds to your interval",
                rec.interval_ms / 1000
            ),
        )));
    }
    Ok(Some(pending_answer(state, rec)))
}

/// `interaction_required` with its URI, `interaction_pending` once the
/// user was seen to open it, or `authorization_pending` with the progress
/// step (DTR-10, DTR-18).
fn pending_answer(state: &AppState, rec: &DeferralRecord) -> OAuthError {
    let description = rec.progress.as_ref().map(|s| format!("step={s}"));
    match interaction_uri_of(state, rec) {
        // The server answers `interaction_pending` only when it can
        // observe that the interaction began: its page was opened. The
        // URI stays in the answer, so the client may send the user again.
        Some(uri) if rec.interaction_started_at.is_some() => OAuthError {
            error: ErrorCode::InteractionPending,
            error_description: description,
            interaction_uri: Some(uri),
            retry_after: None,
        },
        Some(uri) => OAuthError {
            error: ErrorCode::InteractionRequired,
            error_description: description,
            interaction_uri: Some(uri),
            retry_after: None,
        },
        None => OAuthError {
            error: ErrorCode::AuthorizationPending,
            error_description: description,
            interaction_uri: None,
            retry_after: None,
        },
    }
}

/// The only user who may decide `rec` at its interaction page, or `None`
/// when nobody may there and only admins decide it (console or admin API).
///
/// An interaction page speaks for the user the request is about, so it is
/// that user who decides:
/// - a user grant (authorization code, refresh, device): its resource
///   owner, the user of the stored grant context;
/// - a token exchange: the subject token's user; when the subject token is
///   a client's own, that client's `owner`;
/// - client credentials: the client's `owner` (the user it acts for).
///
/// A subject that names both a user and a client is ambiguous (a user's
/// `sub` is the username, a client's its `client_id`) and left to admins:
/// closed by default. Clients and users are read fresh from the store, so
/// a changed owner applies at once.
pub async fn page_decider(
    state: &AppState,
    rec: &DeferralRecord,
) -> Result<Option<String>, crate::store::StoreError> {
    let owner_of = |client_id: String| async move {
        Ok::<_, crate::store::StoreError>(
            state
                .store
                .get_client(&client_id)
                .await?
                .and_then(|c| c.owner),
        )
    };
    // Read by grant type (StoredGrant): a user grant whose context does
    // not decode has nobody to decide it here.
    use crate::grants::StoredGrant;
    match StoredGrant::of(&rec.grant_type, rec.grant_context.as_ref()) {
        Ok(StoredGrant::User(ctx)) => Ok(Some(ctx.username)),
        Ok(StoredGrant::Ciba(ctx)) => Ok(Some(ctx.username)),
        Ok(StoredGrant::Client) => owner_of(rec.client_id.clone()).await,
        Ok(StoredGrant::Exchange(_)) => {
            let Some(sub) = rec.subject.clone() else {
                return Ok(None);
            };
            let is_user = state.store.get_user(&sub).await?.is_some();
            let is_client = state.store.get_client(&sub).await?.is_some();
            match (is_user, is_client) {
                (true, false) => Ok(Some(sub)),
                (false, true) => owner_of(sub).await,
                _ => Ok(None),
            }
        }
        Err(_) => Ok(None),
    }
}
