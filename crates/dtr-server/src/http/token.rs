//! `POST /token`: the originating grants, the deferred response and
//! polling. The handler authenticates, parses, and hands over to the grant
//! and deferral logic; it makes no protocol decision of its own.

use super::error::{json_no_store, OAuthResponse};
use super::form::Form;
use crate::client_auth;
use crate::deferrals;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::token::TokenRequest;
use dtr_proto::OAuthError;

/// The token endpoint.
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(params): Form,
) -> Response {
    let mut resp = match handle(&state, &headers, &params).await {
        Ok(r) => r,
        Err(e) => OAuthResponse(e).into_response(),
    };
    crate::metrics::tag_grant(&mut resp, params.get("grant_type"));
    crate::dpop::add_nonce(&state, resp.headers_mut());
    resp
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    params: &dtr_proto::params::Params,
) -> Result<Response, OAuthError> {
    // DTR-16 step 1: authenticate the client first.
    let client = client_auth::authenticate(state, headers, params, dtr_proto::paths::TOKEN).await?;
    let request = TokenRequest::parse(params)?;
    // RFC 9449 section 5: a proof, when sent, must be valid whatever the grant.
    let proof = crate::dpop::check(state, headers, "POST", dtr_proto::paths::TOKEN, None).await?;
    let jkt = proof.map(|p| p.jkt);
    // Checks every grant needs, written once.
    crate::grants::check_binding_required(&client, jkt.as_deref())?;
    match request {
        TokenRequest::Poll { deferral_code } => {
            let token = deferrals::poll(
                state,
                &client.client_id,
                client.is_active(),
                &deferral_code,
                jkt.as_deref(),
            )
            .await?;
            Ok(json_no_store(StatusCode::OK, &token))
        }
        TokenRequest::ClientCredentials {
            scope,
            authorization_details,
            opt_in,
        } => {
            crate::grants::client_credentials::token(
                state,
                &client,
                scope,
                authorization_details,
                opt_in,
                jkt,
            )
            .await
        }
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
            opt_in,
        } => {
            let x = crate::grants::authorization_code::CodeExchange {
                code,
                redirect_uri,
                code_verifier,
                opt_in,
                dpop_jkt: jkt,
            };
            crate::grants::authorization_code::exchange(state, &client, x).await
        }
        TokenRequest::RefreshToken {
            refresh_token,
            scope,
            opt_in,
        } => {
            crate::grants::refresh::refresh(state, &client, &refresh_token, scope, opt_in, jkt)
                .await
        }
        TokenRequest::TokenExchange { exchange, opt_in } => {
            crate::grants::token_exchange::exchange(state, &client, exchange, opt_in, jkt).await
        }
        TokenRequest::DeviceCode {
            device_code,
            opt_in,
        } => crate::grants::device::token(state, &client, &device_code, opt_in, jkt).await,
    }
}
