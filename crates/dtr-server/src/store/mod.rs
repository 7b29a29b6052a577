//! Storage: one trait per aggregate, implemented once per database.
//!
//! Every state transition of a deferral is one conditional update
//! (`UPDATE ... WHERE state = 'pending'`), so the guarantees of the draft
//! (exactly-once redemption, DTR-21; atomic cancellation, DTR-32) hold
//! whatever the number of server nodes: the database decides who wins,
//! never a read followed by a write.

pub mod accounts;
pub mod authzen;
pub mod console;
pub mod device;
pub mod hooks;
pub mod issuance;
pub mod postgres;
pub mod sqlite;
pub mod transitions;

pub use accounts::*;
pub use authzen::{AuthzenTask, AuthzenTaskStore, SubmissionKey};
pub use console::{ConsoleSession, ConsoleStore};
pub use device::{DeviceCodeRecord, DeviceStore, NewDeviceCode};
pub use hooks::{ApproverHookStore, HookJob, HookStatus, NewHookJob};
pub use issuance::{Issuance, IssuanceStore, Recorded};

use async_trait::async_trait;
use dtr_proto::deferral::{DeferralState, PollView};
use dtr_proto::lifecycle::Transition;

/// A storage failure. Never shown to clients (logged, answered `server_error`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (connection refused or lost, no
    /// pooled connection in time, the database busy past its timeout):
    /// answered `503 temporarily_unavailable`, retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The schema in the database is newer than this binary.
    #[error("database schema version {found} is newer than this binary supports ({supported})")]
    SchemaTooNew {
        /// Version found.
        found: i64,
        /// Newest version known.
        supported: i64,
    },
}

/// Result of storage calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A client as stored. Secrets only as password hashes.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// Identifier.
    pub client_id: String,
    /// PHC string of the secret's Argon2id hash; `None` for public clients.
    pub secret_hash: Option<String>,
    /// `token_endpoint_auth_method`.
    pub auth_method: String,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// Allowed scope (space-separated).
    pub scope: String,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// JWKS document.
    pub jwks: Option<serde_json::Value>,
    /// Callback endpoint (DTR-25).
    pub notification_endpoint: Option<String>,
    /// Enabled by configuration.
    pub enabled: bool,
    /// Disabled through the admin API (kept across restarts and config reloads).
    pub admin_disabled: bool,
    /// RFC 9449 section 5.2 `dpop_bound_access_tokens`: every token, and
    /// every deferral, of this client must be DPoP-bound (DTR-14).
    pub dpop_bound_access_tokens: bool,
    /// SHA-256 of the RFC 7592 registration access token (registered clients).
    pub registration_token_hash: Option<String>,
    /// Where the client publishes its keys (RFC 7591 `jwks_uri`), instead of `jwks`.
    pub jwks_uri: Option<String>,
    /// The client metadata as registered (RFC 7591 section 3.2.1).
    pub metadata: Option<serde_json::Value>,
    /// RFC 9126 section 6: authorization requests must be pushed.
    pub require_par: bool,
    /// Opted in to deferral at the authorization endpoint: the redirect
    /// may carry `deferral_code` instead of `code`.
    pub deferred_authorization_endpoint: bool,
    /// RFC 9101 section 10.5: authorization requests must be signed
    /// request objects.
    pub require_signed_request_object: bool,
    /// The user this client acts for (`[[clients]] owner`, an agent's
    /// principal): who decides its own deferrals at an interaction page.
    pub owner: Option<String>,
}

impl ClientRecord {
    /// Whether the client may currently obtain tokens (DTR-23).
    pub fn is_active(&self) -> bool {
        self.enabled && !self.admin_disabled
    }
}

impl std::fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRecord")
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .field("enabled", &self.enabled)
            .field("admin_disabled", &self.admin_disabled)
            .finish_non_exhaustive()
    }
}

/// An interaction handle as stored (DTR-11). The handle is a bearer
/// secret: it is looked up by its SHA-256 only; the sealed copy exists so
/// that polls can repeat the `interaction_uri` (DTR-18) and is opened with
/// the server's seal key, never matched against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHandle {
    /// SHA-256 of the handle, base64url: the lookup key.
    pub hash: String,
    /// The handle sealed with the deferral id as associated data.
    pub sealed: String,
}

/// A new deferral, as created by the token endpoint.
#[derive(Clone, Debug)]
pub struct NewDeferral {
    /// Opaque id shown to reviewers (never the code).
    pub id: String,
    /// SHA-256 of the deferral code (DTR-9).
    pub code_hash: String,
    /// Owning client.
    pub client_id: String,
    /// Originating grant type.
    pub grant_type: String,
    /// Requested scope (canonical).
    pub scope: String,
    /// RFC 9396 authorization details (JSON).
    pub authorization_details: Option<serde_json::Value>,
    /// Resource owner, or the client for the client credentials grant.
    pub subject: Option<String>,
    /// Creation time (ms).
    pub created_at: i64,
    /// Expiry (ms).
    pub expires_at: i64,
    /// Polling interval (ms).
    pub interval_ms: i64,
    /// With policy `approve_after`: when it approves itself (ms).
    pub auto_approve_at: Option<i64>,
    /// Interaction handle when the deferral starts in `interaction_required`.
    pub interaction_handle: Option<StoredHandle>,
    /// SHA-256 of the `client_notification_token` (DTR-29).
    pub notification_token_hash: Option<String>,
    /// RFC 7638 thumbprint of the DPoP key of the initial request (DTR-13).
    pub dpop_jkt: Option<String>,
    /// The code, sealed, when the client has a notification endpoint (DTR-26).
    pub code_sealed: Option<String>,
    /// The `client_notification_token`, sealed, for the callback's bearer.
    pub notification_token_sealed: Option<String>,
    /// No callback before this time (DTR-27).
    pub callback_not_before: Option<i64>,
    /// What the originating grant needs at redemption (user, session,
    /// consent, refresh token family), re-checked then (DTR-23).
    pub grant_context: Option<serde_json::Value>,
    /// Who may decide it (the rule's `approvers`).
    pub approvers: Vec<String>,
    /// Distinct approvals needed (the rule's `approvals_required`).
    pub approvals_required: u32,
    /// Set when the deferral began at the authorization endpoint: the
    /// proof its first poll owes.
    pub front_channel: Option<FrontChannel>,
    /// Whether the client may be answered `interaction_required`
    /// (`completion_mode=deferred_interactive`, or interaction not gated).
    pub interactive: bool,
}

/// What a deferral returned on the authorization redirect is bound to
/// besides its client and DPoP key: the authorization request's PKCE
/// challenge (RFC 7636 section 4.2) and, when that request named one, its
/// redirect URI (OAuth 2.1 section 4.1.3). The first poll proves both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontChannel {
    /// The S256 `code_challenge`.
    pub pkce_challenge: String,
    /// The `redirect_uri` the first poll must repeat, if the request named one.
    pub redirect_uri: Option<String>,
}

/// A stored deferral.
#[derive(Clone, Debug, PartialEq)]
pub struct DeferralRecord {
    /// Opaque id.
    pub id: String,
    /// Owning client.
    pub client_id: String,
    /// Originating grant type.
    pub grant_type: String,
    /// Requested scope.
    pub scope: String,
    /// Scope granted on approval (a subset, DTR-24).
    pub granted_scope: Option<String>,
    /// RFC 9396 authorization details.
    pub authorization_details: Option<serde_json::Value>,
    /// Subject.
    pub subject: Option<String>,
    /// Stored state (see [`DeferralRecord::effective_state`]).
    pub state: DeferralState,
    /// Interaction handle while `interaction_required`.
    pub interaction_handle: Option<StoredHandle>,
    /// Current progress step (DTR-10).
    pub progress: Option<String>,
    /// Reviewer's reason for a denial (never sent to the client).
    pub deny_reason: Option<String>,
    /// Who decided (`admin`, `user:alice`, `policy`), written with the
    /// decision.
    pub decided_by: Option<String>,
    /// Who may decide it (its rule's `approvers`, as written there);
    /// empty: admins, and the default decider at its interaction page.
    pub approvers: Vec<String>,
    /// Distinct approvals needed (its rule's `approvals_required`).
    pub approvals_required: u32,
    /// The approval's `approved_until` (ms): the token never outlives it.
    pub approved_until: Option<i64>,
    /// The authorization details granted, when an approval narrowed them
    /// (DTR-24); `None`: as requested.
    pub granted_authorization_details: Option<serde_json::Value>,
    /// Created (ms).
    pub created_at: i64,
    /// Expires (ms).
    pub expires_at: i64,
    /// Polling interval (ms).
    pub interval_ms: i64,
    /// Auto-approval time (ms).
    pub auto_approve_at: Option<i64>,
    /// Last poll (ms).
    pub last_polled_at: Option<i64>,
    /// `slow_down` answers so far.
    pub slow_down_count: u32,
    /// Escalated to `invalid_request` (DTR-19).
    pub polling_blocked: bool,
    /// Decided or cancelled (ms).
    pub resolved_at: Option<i64>,
    /// Redeemed (ms).
    pub redeemed_at: Option<i64>,
    /// DPoP key binding (DTR-13).
    pub dpop_jkt: Option<String>,
    /// What the originating grant needs at redemption (see [`NewDeferral`]).
    pub grant_context: Option<serde_json::Value>,
    /// The authorization request's binding, for a deferral that began at
    /// the authorization endpoint.
    pub front_channel: Option<FrontChannel>,
    /// When its first poll proved the PKCE verifier (ms).
    pub pkce_verified_at: Option<i64>,
    /// Whether the client may be answered `interaction_required`.
    pub interactive: bool,
    /// When the interaction was seen to begin (ms): polls answer
    /// `interaction_pending` from then on.
    pub interaction_started_at: Option<i64>,
}

impl DeferralRecord {
    /// The state as it stands at `now`: an undecided or uncollected
    /// deferral past its lifetime is `expired` even before the sweeper has
    /// written it.
    pub fn effective_state(&self, now: i64) -> DeferralState {
        match self.state {
            DeferralState::Pending | DeferralState::Approved if now >= self.expires_at => {
                DeferralState::Expired
            }
            s => s,
        }
    }

    /// What the pure poll decision needs.
    pub fn poll_view(&self) -> PollView {
        PollView {
            state: self.state,
            expires_at: self.expires_at,
            auto_approve_at: self.auto_approve_at,
            polling_blocked: self.polling_blocked,
        }
    }
}

/// The write of one poll of a pending deferral, applied only if nobody
/// polled in between (compare-and-set on the previous poll's values).
#[derive(Clone, Debug)]
pub struct PollUpdate {
    /// Deferral id.
    pub id: String,
    /// `last_polled_at` as read.
    pub expected_last_polled_at: Option<i64>,
    /// `slow_down_count` as read.
    pub expected_slow_down_count: u32,
    /// New `last_polled_at`.
    pub polled_at: i64,
    /// New `slow_down_count`.
    pub slow_down_count: u32,
    /// Escalate: block polling and deny (DTR-19).
    pub block: bool,
    /// The deferral's interval (ms), as read: how long this poll matters
    /// for pacing.
    pub interval_ms: i64,
    /// The deferral's expiry (ms), as read: no poll is recorded after it.
    pub expires_at: i64,
}

impl PollUpdate {
    /// A poll that changes neither the `slow_down` count nor the state:
    /// only its time is recorded.
    pub fn is_plain(&self) -> bool {
        !self.block && self.slow_down_count == self.expected_slow_down_count
    }
}

/// One transition to apply (see [`DeferralStore::transition`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionWrite {
    /// The transition.
    pub transition: Transition,
    /// The deferral.
    pub id: String,
    /// Who decided (`admin`, `user:alice`, `policy`), for transitions that
    /// record it.
    pub decided_by: Option<String>,
    /// The scope granted by an approval (`None`: as requested; DTR-24).
    pub granted_scope: Option<String>,
    /// Until when an approval grants (ms): the token never outlives it.
    pub approved_until: Option<i64>,
    /// The authorization details an approval grants (`None`: as asked).
    pub granted_authorization_details: Option<serde_json::Value>,
    /// Why it was denied (never sent to the client).
    pub deny_reason: Option<String>,
    /// Apply only while the deferral holds this interaction handle (by its
    /// SHA-256): a decision at the interaction page consumes the handle
    /// it was made through (DTR-11).
    pub handle_hash: Option<String>,
}

impl TransitionWrite {
    /// `transition` of deferral `id`, with nothing else recorded.
    pub fn new(transition: Transition, id: &str) -> Self {
        Self {
            transition,
            id: id.to_owned(),
            decided_by: None,
            granted_scope: None,
            approved_until: None,
            granted_authorization_details: None,
            deny_reason: None,
            handle_hash: None,
        }
    }
}

/// One approver's approval under `approvals_required` (four eyes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// The deferral.
    pub deferral_id: String,
    /// Who approved: a username, or `admin` for the admin token.
    pub by: String,
    /// When (ms).
    pub at: i64,
    /// The scope this approver allowed (the requested one, or narrower).
    pub scope: String,
    /// Until when this approver allowed it (ms), if they limited it.
    pub approved_until: Option<i64>,
    /// The authorization details this approver allowed, aligned with the
    /// request (`null` where they dropped an entry); `None`: as asked.
    pub authorization_details: Option<serde_json::Value>,
}

/// One entry of a deferral's event log.
#[derive(Clone, Debug, PartialEq)]
pub struct DeferralEvent {
    /// The deferral.
    pub deferral_id: String,
    /// `created`, `approval`, `approved`, `denied`, `cancelled`,
    /// `expired`, `redeemed`, `progress`, `interaction`, ...
    pub kind: String,
    /// Who: a username, `admin`, `policy`, or the client.
    pub by: Option<String>,
    /// When (ms).
    pub at: i64,
    /// What else there is to say (scope granted, reason, step), as a JSON
    /// object; never a secret.
    pub detail: Option<serde_json::Value>,
}

/// A deferral a transition changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transitioned {
    /// Its id.
    pub id: String,
    /// When it was created (ms), for the resolution-time metric.
    pub created_at: i64,
    /// Its client.
    pub client_id: String,
}

/// A second handle of a deferral (the CIBA bridge's `auth_req_id`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NewHandle {
    /// SHA-256 of the handle, what it is found by.
    pub hash: String,
    /// The handle sealed to its deferral, for the ping that names it.
    pub sealed: Option<String>,
    /// The client's notification bearer token, sealed likewise.
    pub token_sealed: Option<String>,
}

impl std::fmt::Debug for NewHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewHandle").finish_non_exhaustive()
    }
}

/// Filter of the admin listing.
#[derive(Clone, Debug, Default)]
pub struct DeferralFilter {
    /// Only this state (evaluated at `now`).
    pub state: Option<DeferralState>,
    /// Only this client.
    pub client_id: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
    /// Only deferrals about this subject (a user's CIBA requests, which
    /// the user's page lists).
    pub subject: Option<String>,
    /// Only this originating grant type.
    pub grant_type: Option<String>,
}

/// An issued access token, recorded for revocation and introspection.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// JWT `jti`.
    pub jti: String,
    /// Client it was issued to.
    pub client_id: String,
    /// Expiry (ms).
    pub expires_at: i64,
    /// Issued (ms).
    pub issued_at: i64,
    /// The deferral it was redeemed from, if any.
    pub deferral_id: Option<String>,
    /// The tokens it was made from (a token exchange's subject token and
    /// actor token, RFC 8693 section 1.1): it is valid only while they
    /// are, see [`TokenStore::token_revoked`]. Empty for other grants.
    pub parents: Vec<String>,
}

/// Clients.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Inserts or updates a configured client, keeping `admin_disabled`.
    async fn upsert_client(&self, c: &ClientRecord) -> StoreResult<()>;
    /// One client.
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>>;
    /// All clients.
    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>>;
    /// Sets the admin override; false when the client is unknown.
    async fn set_client_admin_disabled(&self, client_id: &str, disabled: bool)
        -> StoreResult<bool>;
    /// Deletes a client (RFC 7592 section 2.3); false when unknown.
    async fn delete_client(&self, client_id: &str) -> StoreResult<bool>;
}

/// Deferrals: every method that changes state is one conditional update
/// and returns whether it applied.
#[async_trait]
pub trait DeferralStore: Send + Sync {
    /// Stores a new deferral.
    async fn insert_deferral(&self, d: &NewDeferral) -> StoreResult<()>;
    /// Looks a deferral up by the hash of its code (one indexed read).
    async fn deferral_by_code(&self, code_hash: &str) -> StoreResult<Option<DeferralRecord>>;
    /// Looks a deferral up by id.
    async fn deferral_by_id(&self, id: &str) -> StoreResult<Option<DeferralRecord>>;
    /// Gives deferral `id` a second handle (the CIBA bridge's
    /// `auth_req_id`), by its SHA-256; `false` when it has one already
    /// (one per deferral) or the hash is taken.
    async fn attach_handle(
        &self,
        id: &str,
        client_id: &str,
        handle: &NewHandle,
        now: i64,
    ) -> StoreResult<bool>;
    /// The sealed second handle of deferral `id` and the sealed bearer
    /// token of its notification, when it has a second handle.
    async fn handle_secrets(&self, id: &str) -> StoreResult<Option<NewHandle>>;
    /// Looks a deferral up by the SHA-256 of its second handle.
    async fn deferral_by_handle(&self, handle_hash: &str) -> StoreResult<Option<DeferralRecord>>;
    /// Looks a deferral up by the SHA-256 of its interaction handle.
    async fn deferral_by_interaction(
        &self,
        handle_hash: &str,
    ) -> StoreResult<Option<DeferralRecord>>;
    /// Newest first.
    async fn list_deferrals(
        &self,
        f: &DeferralFilter,
        now: i64,
    ) -> StoreResult<Vec<DeferralRecord>>;
    /// Records a poll (compare-and-set on the last poll and the
    /// `slow_down` count as read); `false` when another poll came in
    /// between, when the deferral expired, or when a `slow_down` or an
    /// escalation finds the deferral no longer pending. A store serving
    /// one node may keep a plain poll ([`PollUpdate::is_plain`]) in
    /// memory without looking at the row (SQLite does): it then answers
    /// `true` even if the deferral was just decided, which only means
    /// that poll was answered as pending, as it would have been a
    /// moment earlier.
    async fn record_poll(&self, u: &PollUpdate, now: i64) -> StoreResult<bool>;
    /// Applies one transition of the lifecycle table
    /// ([`dtr_proto::lifecycle::TABLE`]) to one deferral: one conditional
    /// update built from the table's row ([`transitions::update`]), with
    /// the decision and `decided_by` in the same write and the callback
    /// queued or suppressed in the same transaction. `None` when it did
    /// not apply (another transition won, or the state or time forbids).
    async fn transition(&self, w: &TransitionWrite, now: i64) -> StoreResult<Option<Transitioned>>;
    /// Sets the progress step of a pending deferral.
    async fn set_progress(&self, id: &str, step: Option<&str>, now: i64) -> StoreResult<bool>;
    /// Records that the first poll of a front-channel deferral proved its
    /// PKCE verifier; `false` when it was recorded already.
    async fn mark_pkce_verified(&self, id: &str, now: i64) -> StoreResult<bool>;
    /// Records that the interaction of a pending deferral began (its page
    /// was opened); `false` when it had already, or there is none.
    async fn mark_interaction_started(&self, id: &str, now: i64) -> StoreResult<bool>;
    /// Sets (`Some`) or clears (`None`) the interaction handle of a pending
    /// deferral; a new handle starts a new interaction.
    async fn set_interaction(
        &self,
        id: &str,
        handle: Option<&StoredHandle>,
        now: i64,
    ) -> StoreResult<bool>;
    /// Applies `auto_approve` (deferrals whose approval time came) or
    /// `expire` (deferrals whose lifetime ended) to every deferral due at
    /// `now`, as [`DeferralStore::transition`] does for one.
    async fn transition_due(&self, t: Transition, now: i64) -> StoreResult<Vec<Transitioned>>;
    /// Deletes finished deferrals whose lifetime ended before `before` (DTR-37).
    async fn prune_deferrals(&self, before: i64) -> StoreResult<u64>;
    /// Records `approver`'s approval of a pending, unexpired deferral
    /// with the scope they allowed (four eyes); `false` when they already
    /// approved it or it is no longer pending: an approval counts once.
    async fn add_approval(&self, a: &Approval, now: i64) -> StoreResult<bool>;
    /// The approvals of a deferral so far, oldest first.
    async fn approvals(&self, id: &str) -> StoreResult<Vec<Approval>>;
    /// Appends to a deferral's event log (the audit trail, append-only).
    async fn append_event(&self, e: &DeferralEvent) -> StoreResult<()>;
    /// A deferral's events, oldest first.
    async fn events(&self, id: &str) -> StoreResult<Vec<DeferralEvent>>;
    /// Every deferral's events at or after `since` (ms), oldest first, at
    /// most `limit`.
    async fn events_since(&self, since: i64, limit: u32) -> StoreResult<Vec<DeferralEvent>>;
    /// Pending (undecided, unexpired at `now`) deferrals per client, for
    /// the `dtr_deferrals_pending` gauge. Called by the background worker
    /// every few seconds, never on a request path.
    async fn count_pending_by_client(&self, now: i64) -> StoreResult<Vec<(String, u64)>>;
}

/// Issued access tokens (revocation list) and the signing key.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Records an issued access token.
    async fn record_token(&self, t: &IssuedToken) -> StoreResult<()>;
    /// Revokes a token of this client; false when unknown or foreign.
    async fn revoke_token(&self, jti: &str, client_id: &str, now: i64) -> StoreResult<bool>;
    /// Whether the token is no longer valid: it, or any token it was made
    /// from ([`IssuedToken::parents`], transitively), is revoked, unknown
    /// (unknown tokens count as revoked), in a revoked family, or belongs
    /// through its family to a user who is disabled or gone. One read of
    /// the current rows, so a revocation by any node counts at once and
    /// for a whole chain of exchanges (RFC 8693 section 2.1, RFC 9700
    /// section 2.3: an exchanged token dies with its subject token).
    async fn token_revoked(&self, jti: &str) -> StoreResult<bool>;
    /// Deletes tokens expired before `before` (and their links to parents).
    async fn prune_tokens(&self, before: i64) -> StoreResult<u64>;
    /// Records a single-use identifier (DPoP `jti`, assertion `jti`);
    /// `false` when it was already used and has not expired. One atomic
    /// insert, so two nodes cannot both accept the same proof.
    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> StoreResult<bool>;
    /// Deletes single-use identifiers that expired before `before`.
    async fn prune_used(&self, before: i64) -> StoreResult<u64>;
    /// The signing key (PKCS#8 DER), created with `generate` on first use and
    /// never replaced: two nodes starting together agree on one key.
    async fn signing_key(
        &self,
        generate: &(dyn Fn() -> Vec<u8> + Send + Sync),
        now: i64,
    ) -> StoreResult<Vec<u8>>;
    /// The ID token key of JWS algorithm `alg` (PKCS#8 DER). With
    /// `candidate` it is stored unless a key of `alg` exists, which is
    /// never replaced; either way the stored key is returned, so nodes
    /// that offer keys together agree on one. `None` when there is none
    /// and no candidate was given.
    async fn id_token_key(
        &self,
        alg: &str,
        candidate: Option<Vec<u8>>,
        now: i64,
    ) -> StoreResult<Option<Vec<u8>>>;
}

/// A callback ready for delivery, claimed under a lease.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackJob {
    /// The deferral it notifies.
    pub deferral_id: String,
    /// The client's `deferred_client_notification_endpoint`.
    pub endpoint: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The sealed code (gone if the deferral finished meanwhile).
    pub code_sealed: Option<String>,
    /// The sealed notification token, if the client gave one.
    pub token_sealed: Option<String>,
    /// The deferral's expiry (ms): never notify past it (DTR-27).
    pub expires_at: i64,
    /// When the deferral was resolved (ms).
    pub resolved_at: i64,
}

impl std::fmt::Debug for CallbackJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackJob")
            .field("deferral_id", &self.deferral_id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// How a delivery attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// A 2xx answer: done.
    Delivered {
        /// The status.
        status: u16,
    },
    /// Try again at `at` (ms).
    Retry {
        /// Next attempt.
        at: i64,
        /// The status, when an answer came.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
    /// Give up.
    Failed {
        /// The status, when an answer came.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
}

/// A callback's state, for the admin API and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackStatus {
    /// `pending`, `delivered`, `failed` or `suppressed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Status of the last answer.
    pub last_status: Option<u16>,
}

/// The callback outbox (DTR-26..29). Jobs are created by the store itself
/// in the transaction that resolves a deferral.
#[async_trait]
pub trait CallbackStore: Send + Sync {
    /// Claims up to `limit` due jobs for `lease_ms`; a job whose lease ran
    /// out (its node died mid-delivery) is due again.
    async fn claim_callbacks(
        &self,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<CallbackJob>>;
    /// Records the end of an attempt; finished jobs drop the sealed secrets
    /// of their deferral (DTR-29).
    async fn finish_callback(
        &self,
        deferral_id: &str,
        outcome: &CallbackOutcome,
        now: i64,
    ) -> StoreResult<()>;
    /// The state of a deferral's callback, if it has one.
    async fn callback_status(&self, deferral_id: &str) -> StoreResult<Option<CallbackStatus>>;
    /// Stores (or replaces) the sealed CIBA push payload of a deferral.
    async fn put_push_payload(&self, deferral_id: &str, sealed: &str, now: i64) -> StoreResult<()>;
    /// The sealed CIBA push payload of a deferral, if any.
    async fn push_payload(&self, deferral_id: &str) -> StoreResult<Option<String>>;
    /// Deletes the push payload of a deferral (delivered or given up).
    async fn delete_push_payload(&self, deferral_id: &str) -> StoreResult<()>;
}

/// Everything the server needs from a database.
#[async_trait]
pub trait Store:
    ClientStore
    + DeferralStore
    + TokenStore
    + CallbackStore
    + ApproverHookStore
    + AuthzenTaskStore
    + AccountStore
    + DeviceStore
    + ConsoleStore
    + IssuanceStore
    + 'static
{
    /// Cheap round trip for `/healthz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Periodic housekeeping of the store itself at time `now` (ms),
    /// called by the background worker (SQLite: WAL checkpoints off the
    /// request path, and forgetting polls older than their interval).
    async fn maintain(&self, _now: i64) -> StoreResult<()> {
        Ok(())
    }
}
