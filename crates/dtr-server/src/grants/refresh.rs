//! The refresh token grant (OAuth 2.1 section 4.3) with rotation: every
//! use consumes the token and the answer carries a new one of the same
//! family; a token used twice means it leaked, and the whole family is
//! revoked (RFC 9700 section 4.14.2). A public client's refresh token is
//! bound to its DPoP key (RFC 9449 section 5). Deferrable by policy like
//! any grant (`grant_type = "refresh_token"` in a rule).

use super::{
    execute, invalid_grant, replayed, settle_consumed, GrantContext, GrantOutcome, GrantRequest,
    RefreshData, RefreshPlan, StoredGrant,
};
use crate::error::Error;
use crate::state::AppState;
use crate::store::ClientRecord;
use dtr_proto::scope::Scope;
use dtr_proto::secret::{ct_eq, RefreshToken};
use dtr_proto::token::DeferralOptIn;
use dtr_proto::{ErrorCode, OAuthError};
use tracing::info;

/// Answers `grant_type=refresh_token`.
pub async fn refresh(
    state: &AppState,
    client: &ClientRecord,
    token: &RefreshToken,
    scope: Option<Scope>,
    opt_in: DeferralOptIn,
    dpop_jkt: Option<String>,
) -> Result<GrantOutcome, Error> {
    let hash = token.hash();
    let Some(stored) = state.store.refresh_token(&hash).await? else {
        return Err(invalid_grant("the refresh token").into());
    };
    if stored.client_id != client.client_id {
        return Err(invalid_grant("the refresh token").into());
    }
    let data: RefreshData =
        serde_json::from_value(stored.grant_data.clone()).map_err(crate::error::Error::internal)?;
    // RFC 9449 section 5: checked before the token is consumed, so a
    // request without the key cannot burn it.
    if let Some(bound) = &data.dpop_jkt {
        match &dpop_jkt {
            Some(j) if ct_eq(j.as_bytes(), bound.as_bytes()) => {}
            Some(_) => return Err(dtr_proto::dpop::DpopError::WrongKey.to_oauth().into()),
            None => {
                return Err(OAuthError::with_description(
                    ErrorCode::InvalidDpopProof,
                    "this refresh token is DPoP-bound: send a DPoP proof of its key",
                )
                .into())
            }
        }
    }
    let now = state.clock.now_ms();
    // A token presented again after its rotation has leaked (RFC 9700
    // section 4.14.2): its family is revoked whatever else the request
    // says, so an attacker cannot dodge detection with a bad scope.
    if stored.used_at.is_some() {
        return Err(replayed(
            state,
            &stored.family_id,
            &stored.client_id,
            "the refresh token",
            now,
        )
        .await);
    }
    let granted = Scope::parse(&data.scope).unwrap_or_default();
    let scope = scope.unwrap_or_else(|| granted.clone());
    if !scope.is_subset(&granted) {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidScope,
            "scope exceeds the original grant",
        )
        .into());
    }
    let context = GrantContext {
        username: data.username.clone(),
        client_id: client.client_id.clone(),
        session_id_hash: None,
        consent_id: data.consent_id.clone(),
        family_id: stored.family_id.clone(),
        // RFC 6749 section 6: the new refresh token keeps the old scope.
        refresh: Some(RefreshPlan {
            scope: Some(data.scope.clone()),
            dpop_jkt: data.dpop_jkt.clone(),
        }),
        oidc: data.oidc.clone(),
    };
    if let Some(reason) = context.stale_reason(state, now).await? {
        info!(client = %client.client_id, reason, "refresh refused");
        return Err(invalid_grant("the refresh token").into());
    }
    let request = GrantRequest {
        client,
        grant_type: dtr_proto::GRANT_TYPE_REFRESH_TOKEN,
        scope,
        authorization_details: data.authorization_details,
        subject: context.username.clone(),
        opt_in,
        dpop_jkt,
        grant: StoredGrant::User(context),
        // An approval's `approved_until` holds for every refresh after it.
        not_after: data.not_after,
    };
    // Every check, the policy's included, is settled before rotation: a
    // refused request (a widened scope, a missing opt-in) leaves the token
    // usable for the corrected retry instead of turning it into a "reuse".
    let outcome = request.plan(state).await?;
    // Rotation is the last step, atomic: of two concurrent uses one wins,
    // the other is a replay.
    let consumed = state.store.use_refresh_token(&hash, now).await?;
    settle_consumed(
        state,
        consumed,
        |r| (&r.family_id, &r.client_id),
        "the refresh token",
        now,
    )
    .await?;
    execute(state, request, outcome).await
}

/// Revokes the family of one of `client_id`'s refresh tokens (RFC 7009
/// section 2.1: revoking a refresh token also revokes the access tokens of
/// its grant). Unknown and foreign tokens change nothing.
pub async fn revoke(
    state: &AppState,
    client_id: &str,
    token: &RefreshToken,
) -> Result<bool, crate::error::Error> {
    let Some(stored) = state.store.refresh_token(&token.hash()).await? else {
        return Ok(false);
    };
    if stored.client_id != client_id {
        return Ok(false);
    }
    state
        .store
        .revoke_family(&stored.family_id, state.clock.now_ms())
        .await
        .map_err(Error::from)
}

/// Whether `token` is one of `client_id`'s refresh tokens (used or not).
pub async fn refresh_token_of(
    state: &AppState,
    client_id: &str,
    token: &RefreshToken,
) -> Result<bool, crate::error::Error> {
    let stored = state.store.refresh_token(&token.hash()).await?;
    Ok(stored.is_some_and(|s| s.client_id == client_id))
}
