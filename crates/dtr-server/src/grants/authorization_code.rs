//! The token request of the authorization code grant (OAuth 2.1 section
//! 4.1.3): the code is read and bound to its client, redirect URI and PKCE
//! verifier; a code used before then means a replay and revokes every
//! token issued from it (OAuth 2.1 section 4.1.2), which only its own
//! client with the right verifier can trigger. Then the DTR hint is checked
//! (DTR-5), the policy decides as for any grant, and the code is consumed
//! last, atomically.

use super::authorize::{s256, CodeData};
use super::{
    execute, invalid_grant, replayed, settle_consumed, GrantContext, GrantOutcome, GrantRequest,
    RefreshPlan, StoredGrant,
};
use crate::error::Error;
use crate::state::AppState;
use crate::store::ClientRecord;
use dtr_proto::scope::Scope;
use dtr_proto::secret::{ct_eq, AuthorizationCode, CodeVerifier};
use dtr_proto::token::DeferralOptIn;
use dtr_proto::{ErrorCode, OAuthError};
use tracing::info;

/// The parameters of the token request.
pub struct CodeExchange {
    /// The code.
    pub code: AuthorizationCode,
    /// `redirect_uri` of the token request.
    pub redirect_uri: Option<String>,
    /// PKCE verifier.
    pub code_verifier: CodeVerifier,
    /// DTR opt-in.
    pub opt_in: DeferralOptIn,
    /// Thumbprint of the request's DPoP key.
    pub dpop_jkt: Option<String>,
}

/// Answers `grant_type=authorization_code`.
pub async fn exchange(
    state: &AppState,
    client: &ClientRecord,
    x: CodeExchange,
) -> Result<GrantOutcome, Error> {
    let now = state.clock.now_ms();
    let hash = x.code.hash();
    // Read, not consumed: who presents the code and how is checked first.
    let Some(rec) = state.store.authorization_code(&hash).await? else {
        return Err(invalid_grant("the authorization code").into());
    };
    // Another client's code is answered like an unknown one, and changes
    // nothing.
    if rec.client_id != client.client_id {
        return Err(invalid_grant("the authorization code").into());
    }
    let data: CodeData =
        serde_json::from_value(rec.grant_data.clone()).map_err(crate::error::Error::internal)?;
    let req = &data.request;
    // OAuth 2.1 section 4.1.3: the redirect URI must be the same when the
    // authorization request named it.
    let redirect_ok = match &x.redirect_uri {
        Some(r) => r == &req.redirect_uri,
        None => !req.redirect_uri_given,
    };
    if !redirect_ok {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidGrant,
            "redirect_uri does not match the authorization request",
        )
        .into());
    }
    // RFC 7636 section 4.6.
    if !ct_eq(
        s256(x.code_verifier.secret()).as_bytes(),
        req.code_challenge.as_bytes(),
    ) {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidGrant,
            "code_verifier does not match the code_challenge",
        )
        .into());
    }
    // RFC 9449 section 10: a code whose authorization request named a
    // DPoP key is redeemed only with a proof of that key.
    if let Some(jkt) = &req.dpop_jkt {
        if x.dpop_jkt.as_deref() != Some(jkt.as_str()) {
            return Err(OAuthError::with_description(
                ErrorCode::InvalidGrant,
                "the authorization request bound this code to another DPoP key (dpop_jkt)",
            )
            .into());
        }
    }
    // OAuth 2.1 section 4.1.2: a code used twice has leaked, and the tokens
    // its first use obtained are revoked. Only the client the code was
    // issued to, proving the PKCE verifier, can say so: anyone else who
    // saw a used code could otherwise revoke the victim's tokens.
    if rec.used_at.is_some() {
        return Err(replayed(
            state,
            &rec.family_id,
            &rec.client_id,
            "the authorization code",
            now,
        )
        .await);
    }
    if rec.expires_at <= now {
        return Err(invalid_grant("the authorization code").into());
    }
    // DTR-5: a hint on the authorization request binds the token request.
    if req.deferred_hint && !x.opt_in.completion_mode.deferred {
        return Err(OAuthError::invalid_request(
            "the authorization request carried completion_mode=deferred: the token request must carry it too",
        ).into());
    }
    let is_public = client.auth_method == "none";
    let context = GrantContext {
        username: data.username.clone(),
        client_id: client.client_id.clone(),
        session_id_hash: Some(data.session_id_hash.clone()),
        consent_id: data.consent_id.clone(),
        family_id: rec.family_id.clone(),
        refresh: client
            .grant_types
            .iter()
            .any(|g| g == dtr_proto::GRANT_TYPE_REFRESH_TOKEN)
            .then(|| RefreshPlan {
                scope: None,
                // RFC 9449 section 5: a public client's refresh token is bound
                // to the key of the request that obtained it.
                dpop_jkt: if is_public { x.dpop_jkt.clone() } else { None },
            }),
        oidc: data.oidc.clone(),
    };
    // The user, consent and session must still hold now, too.
    if let Some(reason) = context.stale_reason(state, now).await? {
        info!(client = %client.client_id, reason, "authorization code refused");
        return Err(invalid_grant("the authorization code").into());
    }
    let request = GrantRequest {
        client,
        grant_type: dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE,
        scope: Scope::parse(&req.scope).unwrap_or_default(),
        authorization_details: req.authorization_details.clone(),
        subject: context.username.clone(),
        opt_in: x.opt_in,
        dpop_jkt: x.dpop_jkt,
        grant: StoredGrant::User(context),
        not_after: None,
    };
    // Refusals the client can correct (no opt-in, no proof) come before
    // the code is spent.
    let outcome = request.plan(state).await?;
    // Consuming the code is the last step, atomic: of two concurrent
    // exchanges one wins, the other is a replay.
    let consumed = state.store.use_authorization_code(&hash, now).await?;
    settle_consumed(
        state,
        consumed,
        |r| (&r.family_id, &r.client_id),
        "the authorization code",
        now,
    )
    .await?;
    execute(state, request, outcome).await
}
