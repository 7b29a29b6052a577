//! The deferral service: creating a deferral (DTR-8..12), answering polls
//! (DTR-15..23), cancelling (DTR-31..35) and the reviewer's decisions
//! (DTR-10, DTR-24). Protocol decisions come from `dtr_proto::deferral`;
//! this module sequences them with the store's conditional updates.

use crate::error::Error;
use crate::grants::StoredGrant;
use crate::lifecycle;
use crate::policy::Action;
use crate::state::AppState;
use crate::store::{
    DeferralRecord, NewDeferral, PollUpdate, StoreError, StoredHandle, TransitionWrite,
};
use crate::tokens::Grant;
use dtr_proto::deferral::{decide_poll, escalates, is_too_fast, PollAnswer, PollDecision};
use dtr_proto::lifecycle::Transition;
use dtr_proto::scope::Scope;
use dtr_proto::secret::{random_token, DeferralCode};
use dtr_proto::token::{DeferralOptIn, DeferredResponse, TokenResponse};
use dtr_proto::{ErrorCode, OAuthError};
use tracing::{error, info, warn};

/// Everything needed to defer an originating request.
#[derive(Clone, Debug)]
pub struct DeferRequest {
    /// The client.
    pub client_id: String,
    /// Originating grant type.
    pub grant_type: String,
    /// Requested scope (validated against the client).
    pub scope: Scope,
    /// RFC 9396 authorization details.
    pub authorization_details: Option<serde_json::Value>,
    /// Subject of the eventual token.
    pub subject: String,
    /// The policy's action (one that defers).
    pub action: Action,
    /// The client's opt-in (must include `deferred`, DTR-2).
    pub opt_in: DeferralOptIn,
    /// Thumbprint of the DPoP key of the request, which the code is bound to (DTR-13).
    pub dpop_jkt: Option<String>,
}

/// Opaque reviewer-facing id: unrelated to the code (DTR-9).
fn new_id() -> String {
    format!("dfr_{}", random_token(12))
}

/// Interaction handles: 128 random bits, single-use (DTR-11). Returns the
/// handle, which leaves the server only inside an `interaction_uri`, and
/// its stored form: the SHA-256 to find it by, and a copy sealed to the
/// deferral `id` so that polls can repeat the URI (DTR-18). Nothing in
/// the database matches a presented handle without hashing it.
fn new_interaction_handle(state: &AppState, id: &str) -> (String, StoredHandle) {
    let handle = random_token(16);
    let stored = StoredHandle {
        hash: interaction_handle_hash(&handle),
        sealed: state.seal_key.seal(&handle, &handle_context(id)),
    };
    (handle, stored)
}

/// The associated data of a sealed handle: its deferral, and a label that
/// keeps it apart from the sealed code of the same deferral.
fn handle_context(id: &str) -> String {
    format!("interaction handle\n{id}")
}

/// The storage and lookup form of a presented interaction handle.
pub fn interaction_handle_hash(handle: &str) -> String {
    dtr_proto::secret::sha256_b64(handle)
}

/// The `interaction_uri` of a handle.
fn interaction_uri(state: &AppState, handle: &str) -> String {
    format!("{}{}/{}", state.issuer, dtr_proto::paths::INTERACT, handle)
}

/// The `interaction_uri` of a deferral waiting at one: the sealed handle,
/// opened (`None` when there is none, or it does not open under this
/// server's key).
pub fn interaction_uri_of(state: &AppState, rec: &DeferralRecord) -> Option<String> {
    let h = rec.interaction_handle.as_ref()?;
    let handle = state.seal_key.open(&h.sealed, &handle_context(&rec.id))?;
    Some(interaction_uri(state, &handle))
}

/// Refuses a request on a DPoP-bound deferral without a proof of that key.
fn check_binding(rec: &DeferralRecord, proof_jkt: Option<&str>) -> Result<(), OAuthError> {
    match (&rec.dpop_jkt, proof_jkt) {
        (None, _) => Ok(()),
        (Some(bound), Some(jkt)) if dtr_proto::secret::ct_eq(bound.as_bytes(), jkt.as_bytes()) => {
            Ok(())
        }
        (Some(_), None) => Err(OAuthError::with_description(
            ErrorCode::InvalidDpopProof,
            "this deferral code is DPoP-bound: send a DPoP proof of its key",
        )),
        (Some(_), Some(_)) => Err(dtr_proto::dpop::DpopError::WrongKey.to_oauth()),
    }
}

/// Whether `client` may only be deferred with a DPoP proof (DTR-14):
/// public clients, clients registered with `dpop_bound_access_tokens`, and
/// everyone when the configuration says so.
pub fn binding_required(state: &AppState, client: &crate::store::ClientRecord) -> bool {
    client.auth_method == "none"
        || client.dpop_bound_access_tokens
        || state.config.dpop.require_for_deferral
}

/// The gates every grant passes before its request may be deferred: the
/// client's opt-in (DTR-2: never defer without it, and never issue what
/// policy says must be decided first, so the request is refused) and a
/// DPoP proof for clients that must bind (DTR-14).
pub fn may_defer(
    state: &AppState,
    client: &crate::store::ClientRecord,
    opt_in: &DeferralOptIn,
    has_proof: bool,
) -> Result<(), OAuthError> {
    if !opt_in.completion_mode.deferred {
        return Err(OAuthError::with_description(
            ErrorCode::AccessDenied,
            "this request needs a decision that cannot be made now; retry with completion_mode=deferred",
        ));
    }
    if !has_proof && binding_required(state, client) {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidDpopProof,
            "a DPoP proof is required for this request to be deferred",
        ));
    }
    Ok(())
}

/// Creates a deferral and builds the deferred response (DTR-8, DTR-11).
/// `grant` is what the originating grant needs at redemption; it is stored
/// with the deferral and re-checked before the token is issued (DTR-23).
pub async fn create(
    state: &AppState,
    r: DeferRequest,
    grant: &StoredGrant,
) -> Result<DeferredResponse, Error> {
    let grant_context = grant.to_stored()?;
    debug_assert!(r.opt_in.completion_mode.deferred && r.action.defers());
    let now = state.clock.now_ms();
    let d = &state.config.deferral;
    let code = DeferralCode::generate();
    let auto_approve_at = match r.action {
        Action::ApproveAfter(secs) => Some(now + secs as i64 * 1000),
        _ => None,
    };
    let id = new_id();
    let (handle, stored_handle) = if r.action == Action::Interaction {
        let (h, stored) = new_interaction_handle(state, &id);
        (Some(h), Some(stored))
    } else {
        (None, None)
    };
    // A client with a notification endpoint gets its code back in the
    // callback (DTR-26): keep it, and the bearer token, sealed until then.
    let notifies = state
        .clients
        .get(&r.client_id)
        .is_some_and(|c| c.notification_endpoint.is_some());
    let (code_sealed, notification_token_sealed, callback_not_before) = if notifies {
        (
            Some(state.seal_key.seal(code.secret(), &id)),
            r.opt_in
                .notification_token
                .as_ref()
                .map(|t| state.seal_key.seal(t.secret(), &id)),
            Some(now + state.config.callbacks.delay_ms as i64),
        )
    } else {
        (None, None, None)
    };
    let new = NewDeferral {
        id,
        code_hash: code.hash(),
        client_id: r.client_id.clone(),
        grant_type: r.grant_type.clone(),
        scope: r.scope.to_string(),
        authorization_details: r.authorization_details.clone(),
        subject: Some(r.subject.clone()),
        created_at: now,
        expires_at: now + d.expires_in as i64 * 1000,
        interval_ms: d.interval as i64 * 1000,
        auto_approve_at,
        interaction_handle: stored_handle,
        // DTR-29: stored like a refresh token, as a hash.
        notification_token_hash: r.opt_in.notification_token.as_ref().map(|t| t.hash()),
        dpop_jkt: r.dpop_jkt.clone(),
        code_sealed,
        notification_token_sealed,
        callback_not_before,
        grant_context,
    };
    state.store.insert_deferral(&new).await?;
    info!(deferral = %new.id, client = %new.client_id, grant = %new.grant_type, scope = %new.scope, "deferral created");
    state
        .metrics
        .deferral_created(&new.client_id, &new.grant_type);
    let interaction_uri = handle.map(|h| interaction_uri(state, &h));
    Ok(DeferredResponse {
        error: if interaction_uri.is_some() {
            ErrorCode::InteractionRequired
        } else {
            ErrorCode::AuthorizationPending
        },
        deferral_code: code.secret().to_owned(),
        expires_in: d.expires_in,
        interval: d.interval,
        interaction_uri,
        error_description: None,
    })
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
) -> Result<TokenResponse, Error> {
    // A poll that loses a race (another poll or a decision changed the row
    // between our read and our conditional write) reads again; two rounds
    // always suffice because every transition out of `pending` is final
    // for the poll path.
    for _ in 0..3 {
        let now = state.clock.now_ms();
        let record = state.store.deferral_by_code(&code.hash()).await?;
        // DTR-17: an unknown code and another client's code take the same
        // path and get the same answer.
        let Some(rec) = record.filter(|r| r.client_id == client_id) else {
            return Err(PollAnswer::Unknown.to_error().into());
        };
        // DTR-13: a bound code is only ever answered to its key; anything
        // else is refused before any state is touched.
        check_binding(&rec, proof_jkt)?;
        let decision = decide_poll(&rec.poll_view(), now);
        if !client_active && !matches!(decision, PollDecision::Answer(_)) {
            return Err(deny_lapsed(state, &rec, "client disabled", now)
                .await?
                .into());
        }
        match decision {
            PollDecision::Answer(a) => return Err(a.to_error().into()),
            PollDecision::Redeem { auto_approve } => {
                if auto_approve {
                    // `approve_after` came due before the worker saw it.
                    let w = TransitionWrite {
                        decided_by: Some("policy".into()),
                        ..TransitionWrite::new(Transition::AutoApprove, &rec.id)
                    };
                    lifecycle::apply(state, &w, now).await?;
                }
                match redeem(state, &rec, now).await? {
                    Some(token) => return Ok(token),
                    None => continue,
                }
            }
            PollDecision::StillPending => match record_pending_poll(state, &rec, now).await? {
                Some(answer) => return Err(answer.into()),
                None => continue,
            },
        }
    }
    Err(OAuthError::with_description(
        ErrorCode::TemporarilyUnavailable,
        "deferral is changing; poll again",
    )
    .into())
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
    let redeem = TransitionWrite::new(Transition::Redeem, &rec.id);
    if lifecycle::apply(state, &redeem, now).await?.is_none() {
        return Ok(None);
    }
    match issue_redeemed(state, rec, &stored).await {
        Ok(token) => Ok(Some(token)),
        Err(e) => {
            // The gate was passed but no token left: give the redemption
            // back, so the next poll collects the approval (exactly once
            // is about tokens delivered, and none was).
            let release = TransitionWrite::new(Transition::Release, &rec.id);
            match lifecycle::apply(state, &release, state.clock.now_ms()).await {
                Ok(_) => {
                    warn!(deferral = %rec.id, "issuing a redeemed deferral failed: its approval stays collectable")
                }
                Err(re) => {
                    error!(deferral = %rec.id, error = %re, "issuing a redeemed deferral failed and the redemption could not be released")
                }
            }
            Err(e)
        }
    }
}

/// The token of a deferral that passed the exactly-once gate: the
/// originating grant's own response (DTR-20), with the granted (possibly
/// narrowed, DTR-24) scope.
async fn issue_redeemed(
    state: &AppState,
    rec: &DeferralRecord,
    stored: &StoredGrant,
) -> Result<TokenResponse, Error> {
    // Re-read for the granted scope written by the approval we raced with.
    let granted = state
        .store
        .deferral_by_id(&rec.id)
        .await?
        .and_then(|r| r.granted_scope)
        .unwrap_or_else(|| rec.scope.clone());
    let grant = Grant {
        client_id: rec.client_id.clone(),
        subject: rec.subject.clone().unwrap_or_else(|| rec.client_id.clone()),
        scope: granted,
        authorization_details: rec.authorization_details.clone(),
        deferral_id: Some(rec.id.clone()),
        // DTR-20: DPoP-bound when the deferral was.
        dpop_jkt: rec.dpop_jkt.clone(),
    };
    stored.issue(state, &grant).await
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
        lifecycle::applied(state, &w, rec.created_at, &rec.client_id, now);
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

/// `interaction_required` with its URI, or `authorization_pending` with
/// the progress step (DTR-10, DTR-18).
fn pending_answer(state: &AppState, rec: &DeferralRecord) -> OAuthError {
    let description = rec.progress.as_ref().map(|s| format!("step={s}"));
    match interaction_uri_of(state, rec) {
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

/// Cancels the client's deferral (DTR-32); unknown, foreign or finished
/// codes change nothing (DTR-33). Returns whether a deferral was cancelled.
/// A bound code is cancelled only with a proof of its key (DTR-13, DTR-31).
pub async fn cancel(
    state: &AppState,
    client_id: &str,
    code: &DeferralCode,
    proof_jkt: Option<&str>,
) -> Result<bool, Error> {
    let now = state.clock.now_ms();
    let hash = code.hash();
    let record = state.store.deferral_by_code(&hash).await?;
    // DTR-33: unknown and foreign codes change nothing, silently.
    let Some(rec) = record.filter(|r| r.client_id == client_id) else {
        return Ok(false);
    };
    check_binding(&rec, proof_jkt)?;
    let w = TransitionWrite {
        decided_by: Some(format!("client:{client_id}")),
        ..TransitionWrite::new(Transition::Cancel, &rec.id)
    };
    Ok(lifecycle::apply(state, &w, now).await?.is_some())
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

/// Why a reviewer's action did not apply.
#[derive(Debug)]
pub enum DecisionError {
    /// No such deferral.
    NotFound,
    /// Not pending any more (409).
    NotPending(String),
    /// The request is invalid (400).
    Invalid(String),
    /// The store failed: a server fault, never the reviewer's.
    Store(StoreError),
}

impl From<StoreError> for DecisionError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

async fn load_pending(state: &AppState, id: &str) -> Result<DeferralRecord, DecisionError> {
    let rec = state
        .store
        .deferral_by_id(id)
        .await?
        .ok_or(DecisionError::NotFound)?;
    let now = state.clock.now_ms();
    let s = rec.effective_state(now);
    if !s.is_pending() {
        return Err(DecisionError::NotPending(format!(
            "deferral is {s}, not pending"
        )));
    }
    Ok(rec)
}

/// Why a decision that lost a race did not apply: the deferral as it is now.
async fn conflict_after_race(state: &AppState, id: &str) -> DecisionError {
    match state.store.deferral_by_id(id).await {
        Err(e) => DecisionError::Store(e),
        Ok(None) => DecisionError::NotFound,
        Ok(Some(r)) => DecisionError::NotPending(format!(
            "deferral is {}, not pending",
            r.effective_state(state.clock.now_ms())
        )),
    }
}

async fn reload(state: &AppState, id: &str) -> Result<DeferralRecord, DecisionError> {
    state
        .store
        .deferral_by_id(id)
        .await?
        .ok_or(DecisionError::NotFound)
}

/// Approves, optionally narrowing the scope to a subset (DTR-24).
pub async fn approve(
    state: &AppState,
    id: &str,
    scope: Option<&str>,
    by: &str,
) -> Result<DeferralRecord, DecisionError> {
    let rec = load_pending(state, id).await?;
    let requested = Scope::parse(&rec.scope).unwrap_or_default();
    let granted = match scope {
        None => requested,
        Some(s) => {
            let s = Scope::parse(s).map_err(|e| DecisionError::Invalid(e.to_string()))?;
            if !s.is_subset(&requested) {
                return Err(DecisionError::Invalid(format!(
                    "scope '{s}' is not a subset of the requested scope '{requested}' (no expansion, DTR-24)"
                )));
            }
            s
        }
    };
    let w = TransitionWrite {
        decided_by: Some(by.to_owned()),
        granted_scope: Some(granted.to_string()),
        ..TransitionWrite::new(Transition::Approve, id)
    };
    decide(state, &w).await
}

/// Applies a reviewer's decision; the deferral as it stands after, or why
/// it did not apply.
async fn decide(state: &AppState, w: &TransitionWrite) -> Result<DeferralRecord, DecisionError> {
    if lifecycle::apply(state, w, state.clock.now_ms())
        .await?
        .is_none()
    {
        return Err(conflict_after_race(state, &w.id).await);
    }
    reload(state, &w.id).await
}

/// Denies a pending deferral.
pub async fn deny(
    state: &AppState,
    id: &str,
    reason: Option<&str>,
    by: &str,
) -> Result<DeferralRecord, DecisionError> {
    load_pending(state, id).await?;
    let w = TransitionWrite {
        decided_by: Some(by.to_owned()),
        deny_reason: Some(reason.unwrap_or("denied by reviewer").to_owned()),
        ..TransitionWrite::new(Transition::Deny, id)
    };
    decide(state, &w).await
}

/// The user's decision at the interaction page of `rec`, reached through
/// `handle` (DTR-11): the handle is consumed by the same update that
/// records the decision, so it decides once. `false` when the deferral
/// moved on meanwhile (decided, cancelled, expired, or the handle
/// replaced).
pub async fn decide_at_interaction(
    state: &AppState,
    rec: &DeferralRecord,
    handle: &str,
    approve: bool,
    user: &str,
) -> Result<bool, StoreError> {
    let (transition, deny_reason) = if approve {
        (Transition::Approve, None)
    } else {
        (Transition::Deny, Some("denied at interaction".to_owned()))
    };
    let w = TransitionWrite {
        decided_by: Some(format!("user:{user}")),
        deny_reason,
        handle_hash: Some(interaction_handle_hash(handle)),
        ..TransitionWrite::new(transition, &rec.id)
    };
    Ok(lifecycle::apply(state, &w, state.clock.now_ms())
        .await?
        .is_some())
}

/// A progress step: a short identifier, never personal data (DTR-10).
pub fn valid_step(step: &str) -> bool {
    (1..=64).contains(&step.len())
        && step
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Sets the progress step shown on polls.
pub async fn progress(
    state: &AppState,
    id: &str,
    step: &str,
) -> Result<DeferralRecord, DecisionError> {
    if !valid_step(step) {
        return Err(DecisionError::Invalid(
            "step must be 1-64 characters of A-Z a-z 0-9 _ - . (an identifier, never personal data)".into(),
        ));
    }
    load_pending(state, id).await?;
    if !state
        .store
        .set_progress(id, Some(step), state.clock.now_ms())
        .await?
    {
        return Err(conflict_after_race(state, id).await);
    }
    reload(state, id).await
}

/// Switches a pending deferral to `interaction_required` with a fresh
/// handle (`required = true`), or back to `authorization_pending` (DTR-18:
/// both directions).
pub async fn set_interaction(
    state: &AppState,
    id: &str,
    required: bool,
) -> Result<DeferralRecord, DecisionError> {
    load_pending(state, id).await?;
    let handle = required.then(|| new_interaction_handle(state, id).1);
    if !state
        .store
        .set_interaction(id, handle.as_ref(), state.clock.now_ms())
        .await?
    {
        return Err(conflict_after_race(state, id).await);
    }
    reload(state, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_identifiers() {
        assert!(valid_step("document_review"));
        assert!(valid_step("fraud.check-2"));
        assert!(!valid_step(""));
        assert!(!valid_step("John Smith"));
        assert!(!valid_step(&"a".repeat(65)));
    }
}
