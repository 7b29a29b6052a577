//! `POST /revoke` (RFC 7009): access tokens, and deferral codes, whose
//! revocation cancels the deferral (DTR-31..35).

use super::form::Form;
use crate::deferrals;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::secret::DeferralCode;

/// The revocation endpoint.
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(params): Form,
) -> Response {
    let mut resp = match handle(&state, &headers, &params).await {
        // RFC 7009 section 2.2: 200 whether or not anything was revoked
        // (DTR-33); revocation is idempotent (DTR-35).
        Ok(()) => {
            let mut r = StatusCode::OK.into_response();
            super::error::no_store(&mut r);
            r
        }
        Err(e) => e.into_response(),
    };
    state.dpop().add_nonce(resp.headers_mut());
    resp
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    params: &dtr_proto::params::Params,
) -> Result<(), crate::error::Error> {
    let client = state
        .client_auth()
        .authenticate(headers, params, dtr_proto::paths::REVOKE)
        .await?;
    let token = params.require("token")?;
    // The hint only orders the search (RFC 7009 section 2.1); an unknown
    // hint is no error. Our access tokens are JWTs, deferral codes are not,
    // so the shape of the value decides where to look first.
    let looks_like_jwt = token.split('.').count() == 3;
    // Refresh tokens are opaque like deferral codes: look them up by hash
    // first; revoking one revokes its whole family (RFC 7009 section 2.1).
    if !looks_like_jwt && params.get("token_type_hint") != Some(dtr_proto::TOKEN_TYPE_DEFERRAL_CODE)
    {
        let rt = dtr_proto::secret::RefreshToken::new(token);
        if crate::grants::refresh::refresh_token_of(state, &client.client_id, &rt).await? {
            crate::grants::refresh::revoke(state, &client.client_id, &rt).await?;
            return Ok(());
        }
    }
    if !looks_like_jwt || params.get("token_type_hint") == Some(dtr_proto::TOKEN_TYPE_DEFERRAL_CODE)
    {
        // DTR-32..34: cancel if it is this client's live deferral; anything
        // else changes nothing and is answered the same.
        // DTR-13, DTR-31: a bound code needs a proof of its key.
        let proof = state
            .dpop()
            .check(headers, "POST", dtr_proto::paths::REVOKE, None)
            .await?;
        let jkt = proof.map(|p| p.jkt);
        deferrals::cancel(
            state,
            &client.client_id,
            &DeferralCode::new(token),
            jkt.as_deref(),
        )
        .await?;
        return Ok(());
    }
    if let Some(claims) = state.signer.verify(token) {
        let owner = claims.get("client_id").and_then(|c| c.as_str());
        let jti = claims.get("jti").and_then(|c| c.as_str());
        // A client may only revoke its own tokens (RFC 7009 section 2.1).
        if let (Some(owner), Some(jti)) = (owner, jti) {
            if owner == client.client_id {
                state
                    .store
                    .revoke_token(jti, owner, state.clock.now_ms())
                    .await?;
            }
        }
    }
    Ok(())
}
