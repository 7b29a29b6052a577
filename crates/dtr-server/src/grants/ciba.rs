//! OpenID CIBA Core 1.0 on the deferral engine. A backchannel
//! authentication request (section 7) IS a deferral: its `auth_req_id` is
//! a handle of the deferral like a deferral code (stored as a hash, bound
//! to the request's DPoP key like a code, DTR-13), its `expires_in` and
//! `interval` are the deferral's, the user's decision on the `/ciba` page
//! (or an admin's or routed reviewer's in the admin API, standing for the
//! user) is the deferral's decision, and the token request of the CIBA
//! grant (section 10.1) is a poll: `authorization_pending`, `slow_down`,
//! `expired_token`, `access_denied` and `invalid_grant` (section 11) are
//! the poll's answers, cancellation is revocation, and redemption is
//! exactly once ([`crate::lifecycle`]).

use super::{invalid_grant, GrantOutcome, StoredGrant};
use crate::deferrals::{self, DeferRequest};
use crate::error::Error;
use crate::oidc::Authentication;
use crate::policy::{Action, PolicyRequest, Routing};
use crate::state::AppState;
use crate::store::ClientRecord;
use dtr_proto::ciba::{BackchannelRequest, BackchannelResponse, DeliveryMode, Hint};
use dtr_proto::completion_mode::CompletionMode;
use dtr_proto::secret::{random_token, DeferralCode};
use dtr_proto::token::DeferralOptIn;
use dtr_proto::{ErrorCode, OAuthError, GRANT_TYPE_CIBA};
use serde::{Deserialize, Serialize};

/// What a CIBA request carries to its token, stored with its deferral.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CibaContext {
    /// The user asked to authenticate (`sub` of the ID token).
    pub username: String,
    /// The client.
    pub client_id: String,
    /// The token family of what it issues.
    pub family_id: String,
    /// Shown to the user with the request (section 7.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_message: Option<String>,
    /// `acr_values` as the client sent them; shown, never claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr_values: Option<String>,
    /// The delivery mode the client was registered with when it asked.
    pub mode: DeliveryMode,
    /// The client may use refresh tokens.
    #[serde(default)]
    pub refresh: bool,
    /// When the user approved (ms), once the request continued as a
    /// deferral for a reviewer: the ID token's `auth_time` then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_approved_at: Option<i64>,
}

impl CibaContext {
    /// Why the request no longer holds at redemption (DTR-23): the user
    /// disabled or gone, or the token family revoked.
    pub async fn stale_reason(
        &self,
        state: &AppState,
        _now: i64,
    ) -> Result<Option<&'static str>, Error> {
        if !state
            .store
            .get_user(&self.username)
            .await?
            .is_some_and(|u| u.is_active())
        {
            return Ok(Some("user disabled"));
        }
        if state
            .store
            .get_family(&self.family_id)
            .await?
            .is_some_and(|f| f.revoked_at.is_some())
        {
            return Ok(Some("token family revoked"));
        }
        Ok(None)
    }

    /// What the ID token says: the user authenticated when the request
    /// was decided (section 10.1.1; no `nonce` in CIBA).
    pub fn authentication(&self, decided_at_ms: Option<i64>) -> Authentication {
        Authentication {
            auth_time: self.user_approved_at.or(decided_at_ms).map(|ms| ms / 1000),
            nonce: None,
            acr: None,
        }
    }
}

/// The registered delivery mode of a client (section 4; `poll` when
/// none).
pub fn delivery_mode(client: &ClientRecord) -> DeliveryMode {
    client
        .metadata
        .as_ref()
        .and_then(|m| m.get("backchannel_token_delivery_mode"))
        .and_then(|v| v.as_str())
        .and_then(DeliveryMode::parse)
        .unwrap_or(DeliveryMode::Poll)
}

/// The client's notification endpoint for ping and push (section 4).
pub fn notification_endpoint(client: &ClientRecord) -> Option<String> {
    client
        .metadata
        .as_ref()
        .and_then(|m| m.get("backchannel_client_notification_endpoint"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

fn error(code: &str, description: &str) -> OAuthError {
    OAuthError::with_description(ErrorCode::Other(code.to_owned()), description.to_owned())
}

/// The user a request names (section 7.1 hints): `login_hint` is a
/// username, `id_token_hint` an ID token this server issued to the
/// client. Anyone unknown or disabled is `unknown_user_id` (section 13).
async fn user_of(state: &AppState, client: &ClientRecord, hint: &Hint) -> Result<String, Error> {
    let username = match hint {
        Hint::LoginHint(u) => u.clone(),
        Hint::IdTokenHint(t) => {
            match crate::oidc::verify_hint(state, t, &client.client_id).await? {
                Some(sub) => sub,
                None => {
                    return Err(OAuthError::invalid_request(
                        "id_token_hint is not an ID token this server issued to this client",
                    )
                    .into())
                }
            }
        }
        Hint::OtherToken => {
            return Err(OAuthError::invalid_request(
                "login_hint_token is not understood here: use login_hint (a username), id_token_hint, or urn:dtr:deferral:<deferral_code>",
            )
            .into())
        }
        Hint::Deferral(_) => {
            return Err(Error::internal("bridge hints are answered by the bridge"))
        }
    };
    match state.store.get_user(&username).await? {
        Some(u) if u.is_active() => Ok(username),
        _ => Err(error("unknown_user_id", "the hint names no known user").into()),
    }
}

/// Checks `user_code` (section 7.1) against the user's configured
/// `[[users]] user_code`: required when the user has one, compared in
/// constant time; a code sent for a user without one is ignored, as the
/// parameter is only a second factor.
fn check_user_code(state: &AppState, username: &str, sent: Option<&str>) -> Result<(), OAuthError> {
    let expected = state
        .config
        .users
        .iter()
        .find(|u| u.username == username)
        .and_then(|u| u.user_code.as_deref());
    match (expected, sent) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(error("missing_user_code", "this user requires a user_code")),
        (Some(e), Some(s)) if dtr_proto::secret::ct_eq(e.as_bytes(), s.as_bytes()) => Ok(()),
        (Some(_), Some(_)) => Err(error("invalid_user_code", "the user_code is wrong")),
    }
}

/// Answers a backchannel authentication request of an authenticated
/// client (section 7): validates it, and creates the deferral the user
/// will decide; its deferral code is the `auth_req_id`.
pub async fn backchannel(
    state: &AppState,
    client: &ClientRecord,
    req: BackchannelRequest,
    dpop_jkt: Option<String>,
) -> Result<BackchannelResponse, Error> {
    // Section 13: a client not registered for CIBA is unauthorized_client.
    super::pipeline::check_client(client, GRANT_TYPE_CIBA)?;
    super::check_binding_required(client, dpop_jkt.as_deref())?;
    let mode = delivery_mode(client);
    if mode != DeliveryMode::Poll && req.notification_token.is_none() {
        return Err(OAuthError::invalid_request(
            "client_notification_token is required in the ping and push modes (CIBA Core section 7.1)",
        )
        .into());
    }
    let scope = super::scope_within_client(client, Some(req.scope.clone()))?;
    if let Hint::Deferral(code) = &req.hint {
        return crate::grants::ciba_bridge::bridge(state, client, code, &req, dpop_jkt).await;
    }
    let username = user_of(state, client, &req.hint).await?;
    check_user_code(state, &username, req.user_code.as_deref())?;
    // Policy applies as to any grant: a denial refuses at once (section
    // 13 access_denied); a rule that defers routes the request to its
    // approvers, who may decide for the user.
    let (action, routing) = state.policy.decide(&PolicyRequest {
        client_id: &client.client_id,
        grant_type: GRANT_TYPE_CIBA,
        scope: &scope,
        authorization_details: None,
    });
    let routing = match action {
        Action::Deny => {
            return Err(OAuthError::with_description(
                ErrorCode::AccessDenied,
                "request denied by policy",
            )
            .into())
        }
        a if a.defers() => routing,
        _ => Routing::default(),
    };
    // Section 7.1 requested_expiry: shorter, never longer, than ours.
    let lifetime = req
        .requested_expiry
        .map_or(state.config.deferral.expires_in, |r| {
            r.min(state.config.deferral.expires_in)
        });
    let context = CibaContext {
        username: username.clone(),
        client_id: client.client_id.clone(),
        family_id: format!("fam_{}", random_token(12)),
        binding_message: req.binding_message.clone(),
        acr_values: req.acr_values.clone(),
        mode,
        refresh: client
            .grant_types
            .iter()
            .any(|g| g == dtr_proto::GRANT_TYPE_REFRESH_TOKEN),
        user_approved_at: None,
    };
    let deferred = deferrals::create(
        state,
        DeferRequest {
            client_id: client.client_id.clone(),
            grant_type: GRANT_TYPE_CIBA.into(),
            scope,
            authorization_details: None,
            subject: username,
            // The user decides on /ciba (or a reviewer for them): never an
            // interaction_uri, never a timer.
            action: Action::Review,
            routing,
            opt_in: DeferralOptIn {
                completion_mode: CompletionMode {
                    deferred: true,
                    interactive: false,
                },
                notification_token: req.notification_token.clone(),
            },
            dpop_jkt,
            front_channel: None,
            id: None,
            expires_in: Some(lifetime),
        },
        StoredGrant::Ciba(context).to_stored()?,
    )
    .await?;
    Ok(BackchannelResponse {
        auth_req_id: deferred.deferral_code,
        expires_in: deferred.expires_in,
        // Section 7.3: interval is for polling; push clients never poll.
        interval: (mode != DeliveryMode::Push).then_some(deferred.interval),
    })
}

/// The token request of the CIBA grant (section 10.1): a poll of the
/// deferral `auth_req_id` names.
pub async fn token(
    state: &AppState,
    client: &ClientRecord,
    auth_req_id: &DeferralCode,
    opt_in: DeferralOptIn,
    dpop_jkt: Option<String>,
) -> Result<GrantOutcome, Error> {
    // Section 10.3: a push-mode client gets its tokens pushed, and may
    // not collect them here.
    if delivery_mode(client) == DeliveryMode::Push {
        return Err(OAuthError::with_description(
            ErrorCode::UnauthorizedClient,
            "this client is registered for push delivery: its tokens are sent to its notification endpoint",
        )
        .into());
    }
    // A request the user approved that policy still sends to a reviewer
    // continues as a deferral, or is refused without the opt-in (DTR-2).
    if let Some(outcome) = crate::grants::ciba_bridge::continue_deferred(
        state,
        client,
        auth_req_id,
        &opt_in,
        dpop_jkt.as_deref(),
    )
    .await?
    {
        return Ok(outcome);
    }
    match super::deferred::poll(
        state,
        &client.client_id,
        client.is_active(),
        auth_req_id,
        dpop_jkt.as_deref(),
        &super::deferred::PkceProof::default(),
    )
    .await
    {
        Ok(token) => Ok(GrantOutcome::Issued(token)),
        Err(Error::OAuth(e)) if e.error == ErrorCode::InvalidGrant => Err(rename_handle(e).into()),
        Err(e) => Err(e),
    }
}

/// The poll's `invalid_grant` in CIBA's words (the handle is an
/// `auth_req_id` here), with the same indistinguishability.
fn rename_handle(e: OAuthError) -> OAuthError {
    match e.error_description.as_deref() {
        Some("deferral code already redeemed") => {
            OAuthError::with_description(ErrorCode::InvalidGrant, "auth_req_id already redeemed")
        }
        _ => invalid_grant("the auth_req_id"),
    }
}
