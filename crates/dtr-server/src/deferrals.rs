//! The deferral service: creating a deferral (DTR-8..12), cancelling
//! (DTR-31..35) and the reviewer's and the user's decisions (DTR-10,
//! DTR-11, DTR-24), each state change applied through
//! [`crate::lifecycle`]. Polling is the deferred grant,
//! `grants::deferred`; this module knows nothing of grants.

use crate::approvers::{self, Actor, Approver, Parties, Venue};
use crate::error::Error;
use crate::lifecycle;
use crate::policy::narrowing::{self, Aligned};
use crate::policy::Action;
use crate::state::AppState;
use crate::store::{
    Approval, DeferralRecord, NewDeferral, StoreError, StoredHandle, TransitionWrite,
};
use dtr_proto::lifecycle::Transition;
use dtr_proto::scope::Scope;
use dtr_proto::secret::{random_token, DeferralCode};
use dtr_proto::token::{DeferralOptIn, DeferredResponse};
use dtr_proto::{ErrorCode, OAuthError};
use tracing::info;

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
    /// Who may decide it (the rule's approvers and approvals required).
    pub routing: crate::policy::Routing,
    /// The client's opt-in (must include `deferred`, DTR-2).
    pub opt_in: DeferralOptIn,
    /// Thumbprint of the DPoP key of the request, which the code is bound to (DTR-13).
    pub dpop_jkt: Option<String>,
    /// The authorization request's PKCE binding, when the deferral is
    /// returned on the authorization redirect rather than by the token
    /// endpoint.
    pub front_channel: Option<crate::store::FrontChannel>,
    /// The deferral's id, when it had to be known before (an ARAP
    /// submission derives its `Idempotency-Key` from it); `None`: a new one.
    pub id: Option<String>,
    /// A shorter life than `[deferral] expires_in` (seconds): an access
    /// request task that ends sooner, CIBA's `requested_expiry`; never
    /// longer.
    pub expires_in: Option<u64>,
}

/// Whether a deferral of a request with `mode` may be answered
/// `interaction_required`: always, unless `[deferral]
/// require_interactive_opt_in` asks clients to say they can surface an
/// `interaction_uri` (`completion_mode=deferred_interactive`).
pub fn interactive(state: &AppState, mode: &dtr_proto::completion_mode::CompletionMode) -> bool {
    mode.interactive || !state.config.deferral.require_interactive_opt_in
}

/// Opaque reviewer-facing id: unrelated to the code (DTR-9).
pub fn new_id() -> String {
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
pub fn check_binding(rec: &DeferralRecord, proof_jkt: Option<&str>) -> Result<(), OAuthError> {
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
/// `grant_context` is what the originating grant needs at redemption (the
/// stored form of `grants::StoredGrant`); it is stored with the deferral
/// and re-checked before the token is issued (DTR-23).
pub async fn create(
    state: &AppState,
    r: DeferRequest,
    grant_context: Option<serde_json::Value>,
) -> Result<DeferredResponse, Error> {
    debug_assert!(r.opt_in.completion_mode.deferred && r.action.defers());
    let now = state.clock.now_ms();
    let d = &state.config.deferral;
    let code = DeferralCode::generate();
    let auto_approve_at = match r.action {
        Action::ApproveAfter(secs) => Some(now + secs as i64 * 1000),
        _ => None,
    };
    let id = r.id.clone().unwrap_or_else(new_id);
    let expires_in = r
        .expires_in
        .map_or(d.expires_in, |e| e.clamp(1, d.expires_in));
    // A client that cannot surface an interaction is never sent to one:
    // an `interaction` rule then waits on its reviewers (or admins) alone.
    let interactive = interactive(state, &r.opt_in.completion_mode);
    let (handle, stored_handle) = if r.action == Action::Interaction && interactive {
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
        expires_at: now + expires_in as i64 * 1000,
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
        approvers: r.routing.approvers.iter().map(|a| a.to_string()).collect(),
        approvals_required: r.routing.approvals_required,
        front_channel: r.front_channel.clone(),
        interactive,
    };
    // The approvers' notifications are queued first: a crash between the
    // two writes leaves a notification without its deferral, which the
    // sender drops, never a queued deferral nobody is told of.
    crate::approver_hooks::enqueue(state, &new).await?;
    state.store.insert_deferral(&new).await?;
    info!(deferral = %new.id, client = %new.client_id, grant = %new.grant_type, scope = %new.scope, "deferral created");
    state
        .metrics
        .deferral_created(&new.client_id, &new.grant_type);
    let mut detail = serde_json::json!({
        "grant_type": new.grant_type,
        "scope": new.scope,
        "interaction_required": new.interaction_handle.is_some(),
    });
    if !new.approvers.is_empty() {
        detail["approvers"] = serde_json::json!(new.approvers);
        detail["approvals_required"] = new.approvals_required.into();
    }
    lifecycle::record_event(
        state,
        &new.id,
        "created",
        Some(&new.client_id),
        Some(detail),
        now,
    )
    .await;
    let interaction_uri = handle.map(|h| interaction_uri(state, &h));
    Ok(DeferredResponse {
        error: if interaction_uri.is_some() {
            ErrorCode::InteractionRequired
        } else {
            ErrorCode::AuthorizationPending
        },
        deferral_code: code.secret().to_owned(),
        expires_in,
        interval: d.interval,
        interaction_uri,
        error_description: None,
    })
}

/// The deferral a presented code names: by its deferral code, or else by
/// the second handle the CIBA bridge gave it (its `auth_req_id`). Both
/// are looked up by their SHA-256 only; the two name one row, so every
/// rule of the lifecycle (binding, expiry, exactly-once) holds for either.
pub async fn by_code(
    state: &AppState,
    code: &DeferralCode,
) -> Result<Option<DeferralRecord>, StoreError> {
    let hash = code.hash();
    match state.store.deferral_by_code(&hash).await? {
        Some(r) => Ok(Some(r)),
        None => state.store.deferral_by_handle(&hash).await,
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
    let record = by_code(state, code).await?;
    // DTR-33: unknown and foreign codes change nothing, silently.
    let Some(rec) = record.filter(|r| r.client_id == client_id) else {
        return Ok(false);
    };
    check_binding(&rec, proof_jkt)?;
    let w = TransitionWrite {
        decided_by: Some(format!("client:{client_id}")),
        ..TransitionWrite::new(Transition::Cancel, &rec.id)
    };
    let cancelled = lifecycle::apply(state, &w, now).await?.is_some();
    if cancelled && state.pdp.is_some() {
        // The access request behind it is cancelled at its service too
        // (ARAP "Cancellation").
        crate::authzen::tasks::cancelled(state, &rec.id).await?;
    }
    Ok(cancelled)
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
    /// The actor may not decide this deferral (403); nothing changed.
    Forbidden,
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

/// A pending deferral `actor` may decide through the admin API or the
/// console ([`crate::approvers::may_decide`], venue `Review`).
async fn load_decidable(
    state: &AppState,
    id: &str,
    actor: &Actor,
) -> Result<DeferralRecord, DecisionError> {
    let rec = load_pending(state, id).await?;
    if !may_review(state, &rec, actor).await? {
        return Err(DecisionError::Forbidden);
    }
    Ok(rec)
}

/// Whether `actor` may see and decide `rec` through the admin API or the
/// console: admins always, reviewers as one of its approvers.
pub async fn may_review(
    state: &AppState,
    rec: &DeferralRecord,
    actor: &Actor,
) -> Result<bool, StoreError> {
    if actor.is_admin() {
        return Ok(true);
    }
    let approvers = routed_approvers(rec);
    // Listing a reviewer's queue asks this of every row: the parties (up
    // to three store reads) are read only when an entry could name them.
    if !actor.is_reviewer() || !approvers::may_be_named(actor, &approvers) {
        return Ok(false);
    }
    let parties = parties(state, rec).await?;
    Ok(approvers::may_decide(
        actor,
        &approvers,
        &parties,
        Venue::Review,
        None,
    ))
}

/// The approvers a deferral was routed to when it was created (its rule's
/// `approvers`); entries that no longer parse are dropped (closed).
pub fn routed_approvers(rec: &DeferralRecord) -> Vec<Approver> {
    rec.approvers
        .iter()
        .filter_map(|a| Approver::parse(a).ok())
        .collect()
}

/// The users `subject` and `owner` name for `rec`: its subject when that
/// is a user (and not also a client's id: ambiguous, so nobody), and its
/// client's owner, read fresh from the store.
pub async fn parties(state: &AppState, rec: &DeferralRecord) -> Result<Parties, StoreError> {
    let subject = match &rec.subject {
        Some(s) if *s != rec.client_id => {
            let is_user = state.store.get_user(s).await?.is_some();
            let is_client = state.store.get_client(s).await?.is_some();
            (is_user && !is_client).then(|| s.clone())
        }
        _ => None,
    };
    let owner = state
        .store
        .get_client(&rec.client_id)
        .await?
        .and_then(|c| c.owner);
    Ok(Parties { subject, owner })
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
    approved_until: Option<i64>,
    actor: &Actor,
) -> Result<DeferralRecord, DecisionError> {
    let req = ApproveRequest {
        scope: scope.map(str::to_owned),
        approved_until,
        authorization_details: None,
    };
    approve_narrowed(state, id, &req, actor).await
}

/// What an approval allows: all that was asked, or less (DTR-24).
#[derive(Clone, Debug, Default)]
pub struct ApproveRequest {
    /// A subset of the requested scope; `None`: all of it.
    pub scope: Option<String>,
    /// Until when (ms); `None`: for the token's usual lifetime.
    pub approved_until: Option<i64>,
    /// The requested authorization details narrowed per
    /// `[[authorization_details_types]]`, entries left out where allowed;
    /// `None`: as asked.
    pub authorization_details: Option<serde_json::Value>,
}

/// [`approve`] with everything an approval may narrow.
pub async fn approve_narrowed(
    state: &AppState,
    id: &str,
    req: &ApproveRequest,
    actor: &Actor,
) -> Result<DeferralRecord, DecisionError> {
    let scope = req.scope.as_deref();
    let approved_until = req.approved_until;
    let rec = load_decidable(state, id, actor).await?;
    let details = match &req.authorization_details {
        None => None,
        Some(narrowed) => {
            let (Some(serde_json::Value::Array(asked)), serde_json::Value::Array(narrowed)) =
                (&rec.authorization_details, narrowed)
            else {
                return Err(DecisionError::Invalid(
                    "authorization_details: an array narrowing the requested one, which the request must have".into(),
                ));
            };
            Some(
                state
                    .config
                    .narrowing
                    .align(asked, narrowed)
                    .map_err(DecisionError::Invalid)?,
            )
        }
    };
    if approved_until.is_some_and(|t| t <= state.clock.now_ms()) {
        return Err(DecisionError::Invalid(
            "approved_until must be in the future".into(),
        ));
    }
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
    approve_as(state, &rec, &granted, approved_until, details, actor, None).await?;
    reload(state, id).await
}

/// One approval of `rec` by `actor`, allowing `granted` (the requested
/// scope or narrower, DTR-24), through the admin API, the console or the
/// interaction page (`handle`: the handle it was reached by, consumed by
/// the decision, DTR-11). Under `approvals_required` = n > 1 (four eyes)
/// it is recorded, once per approver (a second one is a conflict), and the
/// n-th distinct approval approves with what every approver allowed (the
/// intersection: narrowings compose, a plain approval keeps earlier
/// ones).
async fn approve_as(
    state: &AppState,
    rec: &DeferralRecord,
    granted: &Scope,
    approved_until: Option<i64>,
    details: Option<Aligned>,
    actor: &Actor,
    handle: Option<&str>,
) -> Result<(), DecisionError> {
    let now = state.clock.now_ms();
    let by = actor.by();
    let (final_scope, final_until, final_details) = if rec.approvals_required > 1 {
        let approval = Approval {
            deferral_id: rec.id.clone(),
            by: by.clone(),
            at: now,
            scope: granted.to_string(),
            approved_until,
            authorization_details: details.as_ref().map(|a| {
                serde_json::Value::Array(
                    a.iter()
                        .map(|e| e.clone().unwrap_or(serde_json::Value::Null))
                        .collect(),
                )
            }),
        };
        if !state.store.add_approval(&approval, now).await? {
            let mine = state.store.approvals(&rec.id).await?;
            if mine.iter().any(|a| a.by == by) {
                return Err(DecisionError::NotPending(format!(
                    "{by} already approved this deferral; it needs {} distinct approvers",
                    rec.approvals_required
                )));
            }
            return Err(conflict_after_race(state, &rec.id).await);
        }
        let detail = serde_json::json!({ "scope": approval.scope });
        lifecycle::record_event(state, &rec.id, "approval", Some(&by), Some(detail), now).await;
        let approvals = state.store.approvals(&rec.id).await?;
        if (approvals.len() as u64) < u64::from(rec.approvals_required) {
            return Ok(());
        }
        // The earliest limit any approver set.
        let until = approvals.iter().filter_map(|a| a.approved_until).min();
        (
            composed_scope(&approvals),
            until,
            composed_details(state, rec, &approvals),
        )
    } else {
        (
            granted.clone(),
            approved_until,
            details.as_ref().map(narrowing::granted),
        )
    };
    let w = TransitionWrite {
        decided_by: Some(by),
        granted_scope: Some(final_scope.to_string()),
        approved_until: final_until,
        granted_authorization_details: final_details,
        handle_hash: handle.map(interaction_handle_hash),
        ..TransitionWrite::new(Transition::Approve, &rec.id)
    };
    if lifecycle::apply(state, &w, now).await?.is_none() {
        return Err(conflict_after_race(state, &rec.id).await);
    }
    Ok(())
}

/// What every approver allowed of the authorization details: `None` when
/// nobody narrowed them, else the composition of their narrowings (a
/// plain approval counts as the request itself).
fn composed_details(
    state: &AppState,
    rec: &DeferralRecord,
    approvals: &[Approval],
) -> Option<serde_json::Value> {
    let serde_json::Value::Array(asked) = rec.authorization_details.as_ref()? else {
        return None;
    };
    if approvals.iter().all(|a| a.authorization_details.is_none()) {
        return None;
    }
    let aligned: Vec<Aligned> = approvals
        .iter()
        .map(|a| match &a.authorization_details {
            Some(serde_json::Value::Array(slots)) if slots.len() == asked.len() => slots
                .iter()
                .map(|v| (!v.is_null()).then(|| v.clone()))
                .collect(),
            // Unreadable: the most restrictive reading, nothing.
            Some(_) => vec![None; asked.len()],
            None => narrowing::as_requested(asked),
        })
        .collect();
    Some(narrowing::granted(
        &state.config.narrowing.compose(&aligned),
    ))
}

/// What every approver allowed: the intersection of their scopes.
pub fn composed_scope(approvals: &[Approval]) -> Scope {
    let mut scopes = approvals
        .iter()
        .map(|a| Scope::parse(&a.scope).unwrap_or_default());
    let first = scopes.next().unwrap_or_default();
    scopes.fold(first, |acc, s| {
        Scope::parse(
            &acc.iter()
                .filter(|x| s.contains(x))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .unwrap_or_default()
    })
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
    actor: &Actor,
) -> Result<DeferralRecord, DecisionError> {
    load_decidable(state, id, actor).await?;
    let w = TransitionWrite {
        decided_by: Some(actor.by()),
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
    actor: &Actor,
) -> Result<bool, DecisionError> {
    if approve {
        let requested = Scope::parse(&rec.scope).unwrap_or_default();
        return match approve_as(state, rec, &requested, None, None, actor, Some(handle)).await {
            Ok(()) => Ok(true),
            Err(DecisionError::NotPending(_) | DecisionError::NotFound) => Ok(false),
            Err(e) => Err(e),
        };
    }
    let w = TransitionWrite {
        decided_by: Some(actor.by()),
        deny_reason: Some("denied at interaction".to_owned()),
        handle_hash: Some(interaction_handle_hash(handle)),
        ..TransitionWrite::new(Transition::Deny, &rec.id)
    };
    Ok(lifecycle::apply(state, &w, state.clock.now_ms())
        .await?
        .is_some())
}

/// The user's own decision of a CIBA request about them, on the `/ciba`
/// page (the authentication device of OpenID CIBA Core 1.0 section 2).
/// Anyone else's request, a request that is not CIBA and one no longer
/// pending are all [`DecisionError::NotFound`] / [`DecisionError::NotPending`]
/// and change nothing. Approving is also the user's consent to the
/// client for that scope (a refresh token rests on it).
pub async fn decide_ciba(
    state: &AppState,
    id: &str,
    username: &str,
    approve: bool,
) -> Result<DeferralRecord, DecisionError> {
    let rec = load_pending(state, id).await?;
    if rec.grant_type != dtr_proto::GRANT_TYPE_CIBA || rec.subject.as_deref() != Some(username) {
        return Err(DecisionError::NotFound);
    }
    let actor = user_actor(state, username).await?;
    if !approve {
        let w = TransitionWrite {
            decided_by: Some(actor.by()),
            deny_reason: Some("denied by the user".to_owned()),
            ..TransitionWrite::new(Transition::Deny, id)
        };
        return decide(state, &w).await;
    }
    let requested = Scope::parse(&rec.scope).unwrap_or_default();
    approve_as(state, &rec, &requested, None, None, &actor, None).await?;
    let now = state.clock.now_ms();
    let previous = state.store.get_consent(username, &rec.client_id).await?;
    let merged = match &previous {
        Some(c) => format!("{} {}", c.scope, rec.scope),
        None => rec.scope.clone(),
    };
    let merged = Scope::parse(&merged).unwrap_or_default().to_string();
    let consent_id = format!("cns_{}", random_token(12));
    state
        .store
        .grant_consent(username, &rec.client_id, &merged, &consent_id, now)
        .await?;
    reload(state, id).await
}

/// The signed-in user at an interaction page as an [`Actor`], with the
/// roles and groups routing needs, read fresh from the store.
pub async fn user_actor(state: &AppState, username: &str) -> Result<Actor, StoreError> {
    Ok(match state.store.get_user(username).await? {
        Some(u) => crate::identity::user_actor(&u),
        // Signed in, but gone since: a name with no role and no group.
        None => Actor::User(approvers::UserActor {
            username: username.to_owned(),
            roles: Vec::new(),
            groups: Vec::new(),
        }),
    })
}

/// Whether `actor` may decide `rec` at its interaction page: as one of its
/// approvers, or, when its rule names none, as the user it is about
/// (`page_default`, see `grants::deferred::page_decider`).
pub async fn may_decide_at_page(
    state: &AppState,
    rec: &DeferralRecord,
    actor: &Actor,
    page_default: Option<&str>,
) -> Result<bool, StoreError> {
    let routed = routed_approvers(rec);
    let parties = if routed.is_empty() {
        Parties::default()
    } else {
        parties(state, rec).await?
    };
    Ok(approvers::may_decide(
        actor,
        &routed,
        &parties,
        Venue::InteractionPage,
        page_default,
    ))
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
    actor: &Actor,
) -> Result<DeferralRecord, DecisionError> {
    if !valid_step(step) {
        return Err(DecisionError::Invalid(
            "step must be 1-64 characters of A-Z a-z 0-9 _ - . (an identifier, never personal data)".into(),
        ));
    }
    load_decidable(state, id, actor).await?;
    if !state
        .store
        .set_progress(id, Some(step), state.clock.now_ms())
        .await?
    {
        return Err(conflict_after_race(state, id).await);
    }
    lifecycle::record_event(
        state,
        id,
        "progress",
        Some(&actor.by()),
        Some(serde_json::json!({ "step": step })),
        state.clock.now_ms(),
    )
    .await;
    reload(state, id).await
}

/// Switches a pending deferral to `interaction_required` with a fresh
/// handle (`required = true`), or back to `authorization_pending` (DTR-18:
/// both directions).
pub async fn set_interaction(
    state: &AppState,
    id: &str,
    required: bool,
    actor: &Actor,
) -> Result<DeferralRecord, DecisionError> {
    let rec = load_decidable(state, id, actor).await?;
    if required && !rec.interactive {
        return Err(DecisionError::Invalid(
            "the client did not opt in to interaction (completion_mode=deferred_interactive)"
                .into(),
        ));
    }
    let handle = required.then(|| new_interaction_handle(state, id).1);
    if !state
        .store
        .set_interaction(id, handle.as_ref(), state.clock.now_ms())
        .await?
    {
        return Err(conflict_after_race(state, id).await);
    }
    lifecycle::record_event(
        state,
        id,
        "interaction",
        Some(&actor.by()),
        Some(serde_json::json!({ "required": required })),
        state.clock.now_ms(),
    )
    .await;
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
