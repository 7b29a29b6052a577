//! `POST /introspect` (RFC 7662) for access tokens issued by this server.
//! Deferral codes are not access tokens and introspect as inactive.
//!
//! Who may ask, and about what (RFC 7662 sections 2.1 and 4):
//! - only a client that really authenticates, with a secret or
//!   `private_key_jwt`, may introspect: a public client's `client_id` is
//!   no credential (anyone may send it), so `none` is 401
//!   `invalid_client`. Resource servers introspect with the confidential
//!   client named by their `[[resource_servers]] client_id`;
//! - a caller learns about a token only if it was issued to it or its
//!   `aud` names it (its `client_id`, or the identifier of a resource
//!   server it is the client of, [`crate::token_policy`]). Every other
//!   token is `{"active": false}`, exactly as an invalid one, so
//!   introspection tells nothing about other clients' tokens.

use super::error::json_no_store;
use super::form::Form;
use crate::config::AuthMethod;
use crate::state::AppState;
use crate::token_policy::{audience_of, TokenParties, TokenPolicy};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::{ErrorCode, OAuthError};
use serde_json::{json, Value};

/// The introspection endpoint; callers authenticate as clients.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(params): Form,
) -> Response {
    match handle(&state, &headers, &params).await {
        Ok(v) => json_no_store(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    params: &dtr_proto::params::Params,
) -> Result<Value, crate::error::Error> {
    let client = state
        .client_auth()
        .authenticate(headers, params, dtr_proto::paths::INTROSPECT)
        .await?;
    if AuthMethod::parse(&client.auth_method).is_none_or(|m| m == AuthMethod::None) {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidClient,
            "introspection needs client authentication; public clients may not introspect",
        )
        .into());
    }
    let token = params.require("token")?;
    let inactive = json!({"active": false});
    let Some(claims) = crate::tokens::verify_live(state, token).await? else {
        return Ok(inactive);
    };
    let policy = TokenPolicy::new(&state.config.resource_servers, &state.config.token_exchange);
    let audience = audience_of(&claims);
    let parties = TokenParties {
        client_id: claims.get("client_id").and_then(Value::as_str),
        audience: &audience,
    };
    if !policy.addressed_to(&client.client_id, parties) {
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
