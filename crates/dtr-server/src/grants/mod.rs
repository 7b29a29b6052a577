//! The user grants: the authorization code grant with PKCE (OAuth 2.1
//! section 4.1) and the refresh token grant (section 4.3), each deferrable.
//!
//! What a user grant needs beyond the request itself (who the user is, the
//! login session and the consent it rests on, the token family, whether a
//! refresh token follows) travels as a [`GrantContext`]: with the token
//! request when it is answered at once, and stored with the deferral when
//! it is deferred, so that redemption re-checks it (DTR-23) and issues the
//! originating grant's own token response (DTR-20).

pub mod authorization_code;
pub mod authorize;
pub mod ciba;
pub mod ciba_bridge;
pub mod client_credentials;
pub mod deferred;
pub mod device;
pub mod pipeline;
pub mod refresh;
pub mod token_exchange;

use crate::deferrals::{self, DeferRequest};
use crate::error::Error;
use crate::policy::{Action, PolicyRequest, Routing};
use crate::state::AppState;
use crate::store::{ClientRecord, Issuance, Recorded, RefreshTokenRecord, TokenFamilyRecord};
use crate::tokens::{self, Grant};
use dtr_proto::scope::Scope;
use dtr_proto::secret::{random_token, RefreshToken};
use dtr_proto::token::{DeferralOptIn, TokenResponse};
use dtr_proto::{ErrorCode, OAuthError};
use serde::{Deserialize, Serialize};

/// What a user grant carries to token issuance, stored with its deferral.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantContext {
    /// The resource owner.
    pub username: String,
    /// The client the grant is for.
    pub client_id: String,
    /// SHA-256 of the login session the grant was made in; `None` for
    /// refresh grants, which outlive sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id_hash: Option<String>,
    /// The consent the grant rests on (its id changes when revoked).
    pub consent_id: String,
    /// The token family (RFC 9700 section 4.14.2).
    pub family_id: String,
    /// Issue a refresh token with the access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshPlan>,
    /// How the user authenticated, for the ID token of a grant whose
    /// scope has `openid` (OpenID Connect Core 1.0 section 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<crate::oidc::Authentication>,
}

/// The refresh token to issue with an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshPlan {
    /// Its scope; `None` means the access token's (possibly narrowed,
    /// DTR-24) scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 9449 section 5: public clients' refresh tokens are bound to
    /// their DPoP key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// What a stored refresh token stands for (`grant_data`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefreshData {
    /// The resource owner.
    pub username: String,
    /// The consent it rests on.
    pub consent_id: String,
    /// The most a refresh may ask for (RFC 6749 section 6).
    pub scope: String,
    /// RFC 9396 authorization details of the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    /// DPoP key the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// The approval's `approved_until` (seconds): nothing refreshed from
    /// this token outlives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// The original authentication, for the ID token of a refresh
    /// (OpenID Connect Core 1.0 section 12.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<crate::oidc::Authentication>,
}

impl GrantContext {
    /// Why the grant no longer holds, if it does not (DTR-23): the user
    /// disabled or gone, the consent revoked (or revoked and given again:
    /// another id), the login session ended, or the token family revoked.
    pub async fn stale_reason(
        &self,
        state: &AppState,
        now: i64,
    ) -> Result<Option<&'static str>, Error> {
        let store = &state.store;
        if !store
            .get_user(&self.username)
            .await?
            .is_some_and(|u| u.is_active())
        {
            return Ok(Some("user disabled"));
        }
        let consent = store.get_consent(&self.username, &self.client_id).await?;
        if consent.is_none_or(|c| c.id != self.consent_id) {
            return Ok(Some("consent revoked"));
        }
        if let Some(h) = &self.session_id_hash {
            if !store
                .session_by_hash(h)
                .await?
                .is_some_and(|s| s.is_live(now))
            {
                return Ok(Some("login session ended"));
            }
        }
        if store
            .get_family(&self.family_id)
            .await?
            .is_some_and(|f| f.revoked_at.is_some())
        {
            return Ok(Some("token family revoked"));
        }
        Ok(None)
    }
}

/// What a deferral stands for: the grant's own context, typed. Stored as
/// JSON with the deferral and read back by the deferral's grant type (not
/// by the shape of the JSON): a context that is missing or does not decode
/// fails closed ([`StoredGrant::of`]), so no token is issued without the
/// DTR-23 re-checks its grant needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredGrant {
    /// Client credentials: the client is the subject; nothing stored.
    Client,
    /// A user grant (authorization code, refresh, device): its context.
    User(GrantContext),
    /// Token exchange: its subject and actor tokens and claims.
    Exchange(Box<token_exchange::ExchangeContext>),
    /// A CIBA request (OpenID CIBA Core 1.0): its user and binding message.
    Ciba(ciba::CibaContext),
}

impl StoredGrant {
    /// Reads the stored context of a deferral of `grant_type`; `Err` says
    /// why it cannot be trusted.
    pub fn of(grant_type: &str, context: Option<&serde_json::Value>) -> Result<Self, &'static str> {
        match grant_type {
            dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS if context.is_none() => Ok(Self::Client),
            dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS => Err("unexpected grant context"),
            dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE
            | dtr_proto::GRANT_TYPE_REFRESH_TOKEN
            | dtr_proto::GRANT_TYPE_DEVICE_CODE => context
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .map(Self::User)
                .ok_or("grant context missing or unreadable"),
            dtr_proto::GRANT_TYPE_CIBA => context
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .map(Self::Ciba)
                .ok_or("CIBA context missing or unreadable"),
            dtr_proto::GRANT_TYPE_TOKEN_EXCHANGE => {
                token_exchange::ExchangeContext::from_grant_context(context)
                    .map(|c| Self::Exchange(Box::new(c)))
                    .ok_or("token exchange context missing or unreadable")
            }
            _ => Err("unknown grant type"),
        }
    }

    /// The stored form, read back by [`StoredGrant::of`].
    pub fn to_stored(&self) -> Result<Option<serde_json::Value>, Error> {
        match self {
            Self::Client => Ok(None),
            Self::User(ctx) => serde_json::to_value(ctx).map(Some).map_err(Error::internal),
            Self::Ciba(ctx) => serde_json::to_value(ctx).map(Some).map_err(Error::internal),
            Self::Exchange(ctx) => ctx
                .to_grant_context()
                .map(Some)
                .ok_or_else(|| Error::internal("token exchange context does not encode")),
        }
    }

    /// Why the grant no longer holds at redemption, if it does not
    /// (DTR-23): for a user grant its user, consent, session and family;
    /// for a token exchange its subject and actor tokens and the exchange
    /// policy. A store failure is an error, never a reason: an outage must
    /// not deny an approval.
    pub async fn stale_reason(
        &self,
        state: &AppState,
        now: i64,
    ) -> Result<Option<&'static str>, Error> {
        match self {
            Self::Client => Ok(None),
            Self::User(ctx) => ctx.stale_reason(state, now).await,
            Self::Ciba(ctx) => ctx.stale_reason(state, now).await,
            Self::Exchange(ctx) => token_exchange::recheck(state, ctx, now).await,
        }
    }

    /// Signs the token this grant stands for and builds everything its
    /// issuance writes, writing nothing: a user grant's response carries
    /// its refresh token (of the grant's family), an exchange's its `act`,
    /// audience and `issued_token_type` (DTR-20 for redemptions: the
    /// originating grant's own response); a user grant with `openid` in
    /// its scope also its ID token (OpenID Connect Core 1.0 section
    /// 3.1.3.3), whichever grant it came through, deferred or not.
    pub async fn mint(
        &self,
        state: &AppState,
        grant: &Grant,
    ) -> Result<(TokenResponse, Issuance), Error> {
        let extras = match self {
            Self::Exchange(ctx) => ctx.extras(),
            _ => tokens::TokenExtras::default(),
        };
        let minted = tokens::mint(state, grant, &extras);
        let mut response = minted.response;
        let mut issuance = Issuance {
            token: minted.record,
            family: None,
            refresh: None,
        };
        // A user grant's family, refresh token and ID token; a CIBA
        // request's, whose refresh token rests on the user's standing
        // consent (given when they approved on /ciba) and whose ID token
        // says when they decided.
        let user = match self {
            Self::User(ctx) => Some(UserIssuance {
                username: ctx.username.clone(),
                family_id: ctx.family_id.clone(),
                refresh: ctx
                    .refresh
                    .clone()
                    .map(|plan| (plan, ctx.consent_id.clone())),
                auth: ctx.oidc.clone().unwrap_or_default(),
            }),
            Self::Ciba(ctx) => {
                let consent = if ctx.refresh {
                    state
                        .store
                        .get_consent(&ctx.username, &grant.client_id)
                        .await?
                        .filter(|c| {
                            Scope::parse(&grant.scope)
                                .unwrap_or_default()
                                .is_subset(&Scope::parse(&c.scope).unwrap_or_default())
                        })
                } else {
                    None
                };
                let decided_at = match &grant.deferral_id {
                    Some(id) => state
                        .store
                        .deferral_by_id(id)
                        .await?
                        .and_then(|r| r.resolved_at),
                    None => None,
                };
                Some(UserIssuance {
                    username: ctx.username.clone(),
                    family_id: ctx.family_id.clone(),
                    refresh: consent.map(|c| {
                        (
                            RefreshPlan {
                                scope: None,
                                dpop_jkt: None,
                            },
                            c.id,
                        )
                    }),
                    auth: ctx.authentication(decided_at),
                })
            }
            _ => None,
        };
        if let Some(u) = user {
            let now = state.clock.now_ms();
            issuance.family = Some(TokenFamilyRecord {
                family_id: u.family_id.clone(),
                client_id: grant.client_id.clone(),
                username: u.username.clone(),
                created_at: now,
                revoked_at: None,
            });
            if let Some((plan, consent_id)) = &u.refresh {
                let token = RefreshToken::new(random_token(32));
                let data = RefreshData {
                    username: u.username.clone(),
                    consent_id: consent_id.clone(),
                    scope: plan.scope.clone().unwrap_or_else(|| grant.scope.clone()),
                    authorization_details: grant.authorization_details.clone(),
                    dpop_jkt: plan.dpop_jkt.clone(),
                    not_after: grant.not_after,
                    oidc: Some(u.auth.for_refresh()),
                };
                let ttl_end = now + state.config.tokens.refresh_token_ttl as i64 * 1000;
                issuance.refresh = Some(RefreshTokenRecord {
                    token_hash: token.hash(),
                    family_id: u.family_id.clone(),
                    client_id: grant.client_id.clone(),
                    grant_data: serde_json::to_value(&data).map_err(Error::internal)?,
                    issued_at: now,
                    expires_at: grant
                        .not_after
                        .map_or(ttl_end, |t| ttl_end.min(t.saturating_mul(1000))),
                    used_at: None,
                });
                response.refresh_token = Some(token.secret().to_owned());
            }
            if crate::oidc::is_openid(&grant.scope) {
                let client = state.store.get_client(&grant.client_id).await?;
                let alg = client.as_ref().map_or(
                    dtr_proto::oidc::DEFAULT_ID_TOKEN_ALG,
                    crate::oidc::client_alg,
                );
                let id_token = crate::oidc::id_token(
                    state,
                    alg,
                    &crate::oidc::IdTokenFor {
                        username: &u.username,
                        client_id: &grant.client_id,
                        auth: &u.auth,
                        access_token: Some(&response.access_token),
                    },
                )
                .await?;
                response.id_token = Some(id_token);
            }
        }
        Ok((response, issuance))
    }

    /// Issues the token this grant stands for now (no deferral): mints it
    /// and records it with its family and refresh token in one
    /// transaction.
    pub async fn issue(&self, state: &AppState, grant: &Grant) -> Result<TokenResponse, Error> {
        let (response, issuance) = self.mint(state, grant).await?;
        if issuance.family.is_none() && issuance.refresh.is_none() {
            // A lone token (client credentials, an exchange): one insert,
            // which the store may batch with other nodes' (SQLite's
            // group commit).
            state.store.record_token(&issuance.token).await?;
            return Ok(response);
        }
        match state
            .store
            .record_issuance(None, &issuance, state.clock.now_ms())
            .await?
        {
            Recorded::Written(_) => Ok(response),
            // A family revoked meanwhile (a replayed code) gets nothing more.
            Recorded::FamilyRevoked | Recorded::NotRedeemed => Err(OAuthError::with_description(
                ErrorCode::InvalidGrant,
                "the grant was revoked",
            )
            .into()),
        }
    }
}

/// What issuing for a user adds to an access token: the token family,
/// a refresh token (with the consent it rests on) and the ID token.
struct UserIssuance {
    username: String,
    family_id: String,
    refresh: Option<(RefreshPlan, String)>,
    auth: crate::oidc::Authentication,
}

/// A new consent id.
pub fn new_consent_id() -> String {
    format!("cns_{}", random_token(12))
}

/// A token request after its grant's own checks: what would be issued,
/// to whom, and what issuance needs. Every grant builds one; the policy
/// outcome ([`GrantRequest::plan`]) and its execution ([`execute`]) are
/// the same for all.
pub struct GrantRequest<'a> {
    /// The authenticated client.
    pub client: &'a ClientRecord,
    /// The grant type (`grant_type` of the request).
    pub grant_type: &'static str,
    /// The scope to grant.
    pub scope: Scope,
    /// RFC 9396 authorization details.
    pub authorization_details: Option<serde_json::Value>,
    /// Subject of the token: the resource owner, the exchanged token's
    /// subject, or the client itself.
    pub subject: String,
    /// DTR opt-in.
    pub opt_in: DeferralOptIn,
    /// Thumbprint of the request's DPoP key.
    pub dpop_jkt: Option<String>,
    /// What issuance needs, stored with a deferral (DTR-23).
    pub grant: StoredGrant,
    /// The token never outlives this (seconds): a refresh of a grant
    /// approved until then.
    pub not_after: Option<i64>,
}

/// What a token request comes to: a token now, or a deferral (DTR-8).
/// Grants return this; the token endpoint renders it.
#[derive(Clone, Debug)]
pub enum GrantOutcome {
    /// The token response (200).
    Issued(TokenResponse),
    /// The deferred response (DTR-8: 400 with the deferral code).
    Deferred(dtr_proto::token::DeferredResponse),
}

/// What the policy makes of a token request, settled before the grant
/// consumes anything (a code, a refresh token), so that a refusal the
/// client can correct (no opt-in, no proof, DTR-2, DTR-14) leaves what it
/// presented usable for the corrected retry.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Issue the token now.
    Issue,
    /// Issue the token now, never valid past this (seconds): an AuthZEN
    /// PDP's `approved_until`.
    IssueUntil(i64),
    /// Defer it; the policy action says who or what decides, the routing
    /// which people may (the rule's `approvers`, `approvals_required`).
    Defer(Action, Routing),
    /// Defer it to an ARAP access request (policy `authzen`, a
    /// requestable denial).
    AccessRequest(Box<crate::authzen::AccessRequest>),
}

/// What the policy is asked about a token request.
#[derive(Clone, Copy, Debug)]
pub struct PlanRequest<'a> {
    /// The authenticated client.
    pub client: &'a ClientRecord,
    /// The grant type.
    pub grant_type: &'a str,
    /// Who the token is for (an AuthZEN subject).
    pub subject: &'a crate::pdp::wire::Subject,
    /// The requested scope.
    pub scope: &'a Scope,
    /// RFC 9396 authorization details.
    pub authorization_details: Option<&'a serde_json::Value>,
    /// The audience the token would carry (token exchange).
    pub audience: &'a [String],
    /// The DTR opt-in.
    pub opt_in: &'a DeferralOptIn,
    /// Thumbprint of the request's DPoP proof key.
    pub dpop_jkt: Option<&'a str>,
}

/// Asks the policy about a request and applies the gates before any
/// deferral (DTR-2 opt-in, DTR-14 binding): a token, a deferral, or a
/// refusal. Every grant's outcome comes from here; an `authzen` rule asks
/// the PDP ([`crate::authzen::decide`]), whose requestable denials need
/// the same opt-in as any deferral (DESIGN.md: refused at once without
/// `completion_mode=deferred`).
pub async fn plan(state: &AppState, r: PlanRequest<'_>) -> Result<Outcome, OAuthError> {
    let client = r.client;
    let (action, routing) = state.policy.decide(&PolicyRequest {
        client_id: &client.client_id,
        grant_type: r.grant_type,
        scope: r.scope,
        authorization_details: r.authorization_details,
    });
    let has_proof = r.dpop_jkt.is_some();
    match action {
        Action::Allow => Ok(Outcome::Issue),
        Action::Deny => Err(OAuthError::with_description(
            ErrorCode::AccessDenied,
            "request denied by policy",
        )),
        Action::Authzen => {
            let ask = crate::pdp::wire::TokenAsk {
                client_id: &client.client_id,
                grant_type: r.grant_type,
                subject: r.subject.clone(),
                scope: r.scope,
                authorization_details: r.authorization_details,
                dpop_jkt: r.dpop_jkt,
                audience: r.audience,
            };
            match crate::authzen::decide(state, &ask).await? {
                crate::authzen::Decided::Issue { not_after: None } => Ok(Outcome::Issue),
                crate::authzen::Decided::Issue { not_after: Some(t) } => Ok(Outcome::IssueUntil(t)),
                crate::authzen::Decided::Requested(ar) => {
                    deferrals::may_defer(state, client, r.opt_in, has_proof)?;
                    Ok(Outcome::AccessRequest(ar))
                }
            }
        }
        deferring => {
            deferrals::may_defer(state, client, r.opt_in, has_proof)?;
            Ok(Outcome::Defer(deferring, routing))
        }
    }
}

/// The scope of a request: what was asked, by default all the client may
/// ask for, never more (`invalid_scope`, RFC 6749 sections 3.3 and 5.2).
/// Every grant and the authorization endpoint check it here.
pub fn scope_within_client(
    client: &ClientRecord,
    requested: Option<Scope>,
) -> Result<Scope, OAuthError> {
    let allowed = Scope::parse(&client.scope).unwrap_or_default();
    let scope = requested.unwrap_or_else(|| allowed.clone());
    if !scope.is_subset(&allowed) {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidScope,
            "requested scope exceeds what the client may ask for",
        ));
    }
    Ok(scope)
}

/// RFC 9449 section 5.2: a client registered with
/// `dpop_bound_access_tokens` (config `require_dpop`) gets only DPoP-bound
/// tokens, whatever the grant. The token endpoint runs this once for every
/// request, so no grant can forget it.
pub fn check_binding_required(
    client: &ClientRecord,
    dpop_jkt: Option<&str>,
) -> Result<(), OAuthError> {
    if client.dpop_bound_access_tokens && dpop_jkt.is_none() {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidDpopProof,
            "this client must send a DPoP proof",
        ));
    }
    Ok(())
}

impl GrantRequest<'_> {
    /// Who the token is for, as an AuthZEN subject (DESIGN.md): the
    /// client for client credentials (and an exchanged client token), the
    /// user otherwise.
    pub fn authzen_subject(&self) -> crate::pdp::wire::Subject {
        use crate::pdp::wire::Subject;
        match &self.grant {
            StoredGrant::Client => Subject::Client(self.client.client_id.clone()),
            StoredGrant::User(ctx) => Subject::User(ctx.username.clone()),
            StoredGrant::Ciba(ctx) => Subject::User(ctx.username.clone()),
            StoredGrant::Exchange(x)
                if x.subject_client.as_deref() == Some(self.subject.as_str()) =>
            {
                Subject::Client(self.subject.clone())
            }
            StoredGrant::Exchange(_) => Subject::User(self.subject.clone()),
        }
    }

    /// The deferral this request becomes when `action` defers it, routed
    /// by `routing`, with the stored form of its grant (DTR-20, DTR-23).
    /// A new id and the configured lifetime; the caller may say otherwise.
    fn deferral(
        self,
        action: Action,
        routing: Routing,
    ) -> Result<(DeferRequest, Option<serde_json::Value>), Error> {
        let stored = self.grant.to_stored()?;
        let request = DeferRequest {
            client_id: self.client.client_id.clone(),
            grant_type: self.grant_type.into(),
            scope: self.scope,
            authorization_details: self.authorization_details,
            subject: self.subject,
            action,
            routing,
            opt_in: self.opt_in,
            dpop_jkt: self.dpop_jkt,
            front_channel: None,
            id: None,
            expires_in: None,
        };
        Ok((request, stored))
    }

    /// [`plan`] for this request.
    pub async fn plan(&self, state: &AppState) -> Result<Outcome, OAuthError> {
        let subject = self.authzen_subject();
        let audience = match &self.grant {
            StoredGrant::Exchange(x) => x.audience.clone(),
            _ => Vec::new(),
        };
        plan(
            state,
            PlanRequest {
                client: self.client,
                grant_type: self.grant_type,
                subject: &subject,
                scope: &self.scope,
                authorization_details: self.authorization_details.as_ref(),
                audience: &audience,
                opt_in: &self.opt_in,
                dpop_jkt: self.dpop_jkt.as_deref(),
            },
        )
        .await
    }
}

/// Carries out a planned outcome: the token (with what the grant adds to
/// it) or the deferral with its stored context (DTR-20, DTR-23).
pub async fn execute(
    state: &AppState,
    r: GrantRequest<'_>,
    outcome: Outcome,
) -> Result<GrantOutcome, Error> {
    match outcome {
        Outcome::Issue | Outcome::IssueUntil(_) => {
            let not_after = match (&outcome, r.not_after) {
                (Outcome::IssueUntil(t), Some(n)) => Some(n.min(*t)),
                (Outcome::IssueUntil(t), None) => Some(*t),
                (_, n) => n,
            };
            let grant = Grant {
                client_id: r.client.client_id.clone(),
                subject: r.subject,
                scope: r.scope.to_string(),
                authorization_details: r.authorization_details,
                deferral_id: None,
                dpop_jkt: r.dpop_jkt,
                not_after,
            };
            Ok(GrantOutcome::Issued(r.grant.issue(state, &grant).await?))
        }
        Outcome::AccessRequest(ar) => {
            // The id first: the submission's Idempotency-Key derives from
            // it. The task is stored before its deferral (a crash between
            // leaves a task the poller drops, never a deferral waiting for
            // nothing), and the deferral lives no longer than the task
            // (its expires_in never exceeds task.expires_at).
            let id = deferrals::new_id();
            let submitted =
                crate::authzen::tasks::submit(state, &ar, &id, &r.client.client_id).await?;
            let now = state.clock.now_ms();
            let left_s = (submitted.record.expires_at - now) / 1000;
            if left_s < 1 {
                return Err(OAuthError::with_description(
                    ErrorCode::AccessDenied,
                    "the access request expired before it could be deferred",
                )
                .into());
            }
            state.store.insert_authzen_task(&submitted.record).await?;
            let (mut request, stored) = r.deferral(Action::Authzen, Routing::default())?;
            request.id = Some(id);
            request.expires_in = Some(left_s as u64);
            let deferred = deferrals::create(state, request, stored).await?;
            // A service that completed at once (ARAP: 201 with a terminal
            // status) is settled now; the client still collects by polling.
            if submitted.task.status != "pending" {
                if let Err(e) =
                    crate::authzen::tasks::settle(state, &submitted.record, &submitted.task).await
                {
                    tracing::warn!(error = %e, "settling a task completed at submission failed; the poller retries");
                }
            }
            Ok(GrantOutcome::Deferred(deferred))
        }
        Outcome::Defer(action, routing) => {
            let (request, stored) = r.deferral(action, routing)?;
            Ok(GrantOutcome::Deferred(
                deferrals::create(state, request, stored).await?,
            ))
        }
    }
}

/// Runs a read-decide-write step until it settles: `Ok(None)` means its
/// conditional write lost a race (another request changed the row between
/// the read and the write), so it reads again. Every grant that polls a
/// row (the deferred grant, the device grant) runs its step here. Two
/// rounds suffice when every transition the step races with is final for
/// it; the third is slack, and after it the client is told to retry
/// (`busy`, `temporarily_unavailable`).
pub async fn until_settled<T, F, Fut>(busy: &'static str, mut step: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, Error>>,
{
    for _ in 0..3 {
        if let Some(done) = step().await? {
            return Ok(done);
        }
    }
    Err(OAuthError::with_description(ErrorCode::TemporarilyUnavailable, busy).into())
}

/// `invalid_grant` with one description for every reason a code or refresh
/// token is not accepted, so that the answer tells an attacker nothing.
pub fn invalid_grant(what: &str) -> OAuthError {
    OAuthError::with_description(
        ErrorCode::InvalidGrant,
        format!("{what} is invalid, expired, revoked or was already used"),
    )
}

/// A single-use secret (an authorization code, a refresh token) presented
/// again: it leaked, so the token family it started is revoked (OAuth 2.1
/// section 4.1.2, RFC 9700 section 4.14.2), and the answer is the one any
/// invalid `what` gets. A store failure is a server error, never a silent
/// pass.
pub async fn replayed(
    state: &AppState,
    family_id: &str,
    client_id: &str,
    what: &str,
    now: i64,
) -> Error {
    match state.store.revoke_family(family_id, now).await {
        Ok(true) => {
            tracing::warn!(client = %client_id, "{what} presented again: the tokens of its grant revoked");
            invalid_grant(what).into()
        }
        Ok(false) => invalid_grant(what).into(),
        Err(e) => Error::from(e),
    }
}

/// The last step of a request that succeeds or defers: the atomic
/// consumption of its single-use secret (a code, a refresh token). The
/// first use goes on; a use that lost to a concurrent one is a replay and
/// revokes what the secret's grant issued ([`replayed`]); anything else is
/// `invalid_grant`. `family` names a record's token family and client.
pub async fn settle_consumed<T>(
    state: &AppState,
    consumed: crate::store::Consumed<T>,
    family: impl FnOnce(&T) -> (&str, &str),
    what: &str,
    now: i64,
) -> Result<(), Error> {
    match consumed {
        crate::store::Consumed::Fresh(_) => Ok(()),
        crate::store::Consumed::Replayed(r) => {
            let (family_id, client_id) = family(&r);
            Err(replayed(state, family_id, client_id, what, now).await)
        }
        crate::store::Consumed::Invalid => Err(invalid_grant(what).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> GrantContext {
        GrantContext {
            username: "alice".into(),
            client_id: "web".into(),
            session_id_hash: None,
            consent_id: "cns_1".into(),
            family_id: "fam_1".into(),
            refresh: None,
            oidc: None,
        }
    }

    #[test]
    fn stored_grants_are_read_by_grant_type_and_fail_closed() {
        let good = serde_json::to_value(ctx()).unwrap();
        assert_eq!(
            StoredGrant::of(dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE, Some(&good)),
            Ok(StoredGrant::User(ctx()))
        );
        assert_eq!(
            StoredGrant::of(dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS, None),
            Ok(StoredGrant::Client)
        );
        // A user grant whose context is gone or garbled is never issued as
        // if it were the client's own.
        for bad in [None, Some(json!({"username": 1})), Some(json!("x"))] {
            for gt in [
                dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE,
                dtr_proto::GRANT_TYPE_REFRESH_TOKEN,
                dtr_proto::GRANT_TYPE_DEVICE_CODE,
            ] {
                assert!(StoredGrant::of(gt, bad.as_ref()).is_err(), "{gt} {bad:?}");
            }
        }
        assert!(StoredGrant::of(dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS, Some(&good)).is_err());
        assert!(StoredGrant::of("urn:example:unknown", None).is_err());
    }
}
