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
pub mod client_credentials;
pub mod device;
pub mod refresh;
pub mod token_exchange;

use crate::deferrals::{self, DeferRequest};
use crate::http::error::{internal, json_no_store};
use crate::policy::{Action, PolicyRequest};
use crate::state::AppState;
use crate::store::{ClientRecord, RefreshTokenRecord, TokenFamilyRecord};
use crate::tokens::{self, Grant};
use axum::http::StatusCode;
use axum::response::Response;
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
}

impl GrantContext {
    /// Why the grant no longer holds, if it does not (DTR-23): the user
    /// disabled or gone, the consent revoked (or revoked and given again:
    /// another id), the login session ended, or the token family revoked.
    pub async fn stale_reason(
        &self,
        state: &AppState,
        now: i64,
    ) -> Result<Option<&'static str>, OAuthError> {
        let store = &state.store;
        if !store
            .get_user(&self.username)
            .await
            .map_err(internal)?
            .is_some_and(|u| u.is_active())
        {
            return Ok(Some("user disabled"));
        }
        let consent = store
            .get_consent(&self.username, &self.client_id)
            .await
            .map_err(internal)?;
        if consent.is_none_or(|c| c.id != self.consent_id) {
            return Ok(Some("consent revoked"));
        }
        if let Some(h) = &self.session_id_hash {
            if !store
                .session_by_hash(h)
                .await
                .map_err(internal)?
                .is_some_and(|s| s.is_live(now))
            {
                return Ok(Some("login session ended"));
            }
        }
        if store
            .get_family(&self.family_id)
            .await
            .map_err(internal)?
            .is_some_and(|f| f.revoked_at.is_some())
        {
            return Ok(Some("token family revoked"));
        }
        Ok(None)
    }
}

/// What a deferral stands for, read from its stored context by its grant
/// type (not by the shape of the JSON): a context that is missing or does
/// not decode fails closed, so no token is issued without the DTR-23
/// re-checks its grant needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredGrant {
    /// Client credentials: the client is the subject; nothing stored.
    Client,
    /// A user grant (authorization code, refresh, device): its context.
    User(GrantContext),
    /// Token exchange: its context is read by
    /// [`token_exchange::recheck`], which fails closed on its own.
    Exchange,
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
            dtr_proto::GRANT_TYPE_TOKEN_EXCHANGE => Ok(Self::Exchange),
            _ => Err("unknown grant type"),
        }
    }
}

/// A new consent id.
pub fn new_consent_id() -> String {
    format!("cns_{}", random_token(12))
}

/// Issues the access token of a user grant, links it to its family and,
/// when planned, a rotated refresh token of the same family.
pub async fn issue(
    state: &AppState,
    grant: &Grant,
    ctx: &GrantContext,
) -> Result<TokenResponse, OAuthError> {
    let now = state.clock.now_ms();
    let store = &state.store;
    store
        .insert_family(&TokenFamilyRecord {
            family_id: ctx.family_id.clone(),
            client_id: grant.client_id.clone(),
            username: ctx.username.clone(),
            created_at: now,
            revoked_at: None,
        })
        .await
        .map_err(internal)?;
    // A family revoked meanwhile (a replayed code) gets nothing more.
    if store
        .get_family(&ctx.family_id)
        .await
        .map_err(internal)?
        .is_some_and(|f| f.revoked_at.is_some())
    {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidGrant,
            "the grant was revoked",
        ));
    }
    let (mut response, jti) = tokens::issue_with_jti(state, grant).await?;
    store
        .set_token_family(&jti, &ctx.family_id)
        .await
        .map_err(internal)?;
    if let Some(plan) = &ctx.refresh {
        let token = RefreshToken::new(random_token(32));
        let data = RefreshData {
            username: ctx.username.clone(),
            consent_id: ctx.consent_id.clone(),
            scope: plan.scope.clone().unwrap_or_else(|| grant.scope.clone()),
            authorization_details: grant.authorization_details.clone(),
            dpop_jkt: plan.dpop_jkt.clone(),
        };
        store
            .insert_refresh_token(&RefreshTokenRecord {
                token_hash: token.hash(),
                family_id: ctx.family_id.clone(),
                client_id: grant.client_id.clone(),
                grant_data: serde_json::to_value(&data).map_err(internal)?,
                issued_at: now,
                expires_at: now + state.config.tokens.refresh_token_ttl as i64 * 1000,
                used_at: None,
            })
            .await
            .map_err(internal)?;
        response.refresh_token = Some(token.secret().to_owned());
    }
    Ok(response)
}

/// A user grant's token request after its grant-specific checks.
pub struct UserGrantRequest<'a> {
    /// The authenticated client.
    pub client: &'a ClientRecord,
    /// `authorization_code` or `refresh_token`.
    pub grant_type: &'static str,
    /// The scope to grant.
    pub scope: Scope,
    /// RFC 9396 authorization details.
    pub authorization_details: Option<serde_json::Value>,
    /// DTR opt-in.
    pub opt_in: DeferralOptIn,
    /// Thumbprint of the request's DPoP key.
    pub dpop_jkt: Option<String>,
    /// What issuance needs.
    pub context: GrantContext,
}

/// What the policy makes of a token request, settled before the grant
/// consumes anything (a code, a refresh token), so that a refusal the
/// client can correct (no opt-in, no proof, DTR-2, DTR-14) leaves what it
/// presented usable for the corrected retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Issue the token now.
    Issue,
    /// Defer it; the policy action says who or what decides.
    Defer(Action),
}

/// Asks the policy about a request and applies the gates before any
/// deferral (DTR-2 opt-in, DTR-14 binding): a token, a deferral, or a
/// refusal. Every grant's outcome comes from here.
pub fn plan(
    state: &AppState,
    client: &ClientRecord,
    grant_type: &str,
    scope: &Scope,
    authorization_details: Option<&serde_json::Value>,
    opt_in: &DeferralOptIn,
    has_proof: bool,
) -> Result<Outcome, OAuthError> {
    let action = state.policy.evaluate(&PolicyRequest {
        client_id: &client.client_id,
        grant_type,
        scope,
        authorization_details,
    });
    match action {
        Action::Allow => Ok(Outcome::Issue),
        Action::Deny => Err(OAuthError::with_description(
            ErrorCode::AccessDenied,
            "request denied by policy",
        )),
        deferring => {
            deferrals::may_defer(state, client, opt_in, has_proof)?;
            Ok(Outcome::Defer(deferring))
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

impl UserGrantRequest<'_> {
    /// [`plan`] for this request.
    pub fn plan(&self, state: &AppState) -> Result<Outcome, OAuthError> {
        plan(
            state,
            self.client,
            self.grant_type,
            &self.scope,
            self.authorization_details.as_ref(),
            &self.opt_in,
            self.dpop_jkt.is_some(),
        )
    }
}

/// Carries out a planned outcome of a user grant: the token (with its
/// refresh token) or the deferral with its stored context (DTR-20, DTR-23).
pub async fn execute(
    state: &AppState,
    r: UserGrantRequest<'_>,
    outcome: Outcome,
) -> Result<Response, OAuthError> {
    match outcome {
        Outcome::Issue => {
            let grant = Grant {
                client_id: r.client.client_id.clone(),
                subject: r.context.username.clone(),
                scope: r.scope.to_string(),
                authorization_details: r.authorization_details,
                deferral_id: None,
                dpop_jkt: r.dpop_jkt,
            };
            let token = issue(state, &grant, &r.context).await?;
            Ok(json_no_store(StatusCode::OK, &token))
        }
        Outcome::Defer(action) => {
            let context = serde_json::to_value(&r.context).map_err(internal)?;
            let deferred = deferrals::create_with_context(
                state,
                DeferRequest {
                    client_id: r.client.client_id.clone(),
                    grant_type: r.grant_type.into(),
                    scope: r.scope,
                    authorization_details: r.authorization_details,
                    subject: r.context.username.clone(),
                    action,
                    opt_in: r.opt_in,
                    dpop_jkt: r.dpop_jkt,
                },
                Some(context),
            )
            .await?;
            Ok(deferred_response(&deferred))
        }
    }
}

/// DTR-8: the deferred response is HTTP 400, JSON, no-store.
pub fn deferred_response(deferred: &dtr_proto::token::DeferredResponse) -> Response {
    let mut resp = json_no_store(StatusCode::BAD_REQUEST, deferred);
    crate::metrics::tag_outcome(&mut resp, deferred.error.clone());
    resp
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
) -> OAuthError {
    match state.store.revoke_family(family_id, now).await {
        Ok(true) => {
            tracing::warn!(client = %client_id, "{what} presented again: the tokens of its grant revoked");
            invalid_grant(what)
        }
        Ok(false) => invalid_grant(what),
        Err(e) => internal(e),
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
) -> Result<(), OAuthError> {
    match consumed {
        crate::store::Consumed::Fresh(_) => Ok(()),
        crate::store::Consumed::Replayed(r) => {
            let (family_id, client_id) = family(&r);
            Err(replayed(state, family_id, client_id, what, now).await)
        }
        crate::store::Consumed::Invalid => Err(invalid_grant(what)),
    }
}

/// Checks the client may run `grant_type` at all.
pub fn check_client(client: &ClientRecord, grant_type: &str) -> Result<(), OAuthError> {
    if !client.is_active() {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidClient,
            "client is disabled",
        ));
    }
    if !client.grant_types.iter().any(|g| g == grant_type) {
        return Err(OAuthError::with_description(
            ErrorCode::UnauthorizedClient,
            format!("client is not allowed to use the {grant_type} grant"),
        ));
    }
    Ok(())
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
