//! `POST /introspect` (RFC 7662) for access tokens issued by this server.
//! Deferral codes are not access tokens and introspect as inactive.

use super::error::{json_no_store, OAuthResponse};
use super::form::Form;
use crate::client_auth;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::OAuthError;
use serde_json::{json, Value};

/// The introspection endpoint; callers authenticate as clients.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(params): Form,
) -> Response {
    match handle(&state, &headers, &params).await {
        Ok(v) => json_no_store(StatusCode::OK, &v),
        Err(e) => OAuthResponse(e).into_response(),
    }
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    params: &dtr_proto::params::Params,
) -> Result<Value, OAuthError> {
    client_auth::authenticate(state, headers, params, dtr_proto::paths::INTROSPECT).await?;
    let token = params.require("token")?;
    let inactive = json!({"active": false});
    let Some(claims) = state.signer.verify(token) else {
        return Ok(inactive);
    };
    let now_s = state.clock.now_ms() / 1000;
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
    if exp <= now_s
        || jti.is_empty()
        || state
            .store
            .token_revoked(jti)
            .await
            .map_err(super::error::internal)?
    {
        return Ok(inactive);
    }
    let token_type = if claims.get("cnf").is_some() {
        "DPoP"
    } else {
        "Bearer"
    };
    let mut out = json!({"active": true, "token_type": token_type});
    for k in [
        "scope",
        "client_id",
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "jti",
        "authorization_details",
        "cnf",
    ] {
        if let Some(v) = claims.get(k) {
            out[k] = v.clone();
        }
    }
    Ok(out)
}
