//! `POST /token`: the originating grants, the deferred response and
//! polling. The handler authenticates, parses, and hands over to the grant
//! and deferral logic; it makes no protocol decision of its own.

use super::error::{json_no_store, OAuthResponse};
use super::form::Form;
use crate::client_auth;
use crate::deferrals::{self, DeferRequest};
use crate::policy::{Action, PolicyRequest};
use crate::state::AppState;
use crate::store::ClientRecord;
use crate::tokens::{self, Grant};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::scope::Scope;
use dtr_proto::token::{DeferralOptIn, TokenRequest};
use dtr_proto::{ErrorCode, OAuthError};

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
        } => client_credentials(state, &client, scope, authorization_details, opt_in, jkt).await,
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

/// OAuth 2.1 section 4.2, deferrable.
async fn client_credentials(
    state: &AppState,
    client: &ClientRecord,
    scope: Option<Scope>,
    authorization_details: Option<serde_json::Value>,
    opt_in: DeferralOptIn,
    dpop_jkt: Option<String>,
) -> Result<Response, OAuthError> {
    if !client.is_active() {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidClient,
            "client is disabled",
        ));
    }
    // A public client cannot keep a secret, so it cannot act on its own
    // behalf (OAuth 2.1 section 4.2).
    if client.auth_method == "none"
        || !client
            .grant_types
            .iter()
            .any(|g| g == dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS)
    {
        return Err(OAuthError::with_description(
            ErrorCode::UnauthorizedClient,
            "client is not allowed to use the client_credentials grant",
        ));
    }
    // RFC 9449 section 5.2: such a client's tokens are always DPoP-bound.
    if client.dpop_bound_access_tokens && dpop_jkt.is_none() {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidDpopProof,
            "this client must send a DPoP proof",
        ));
    }
    let allowed = Scope::parse(&client.scope).unwrap_or_default();
    let scope = scope.unwrap_or_else(|| allowed.clone());
    if !scope.is_subset(&allowed) {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidScope,
            "requested scope exceeds what the client may ask for",
        ));
    }
    let action = state.policy.evaluate(&PolicyRequest {
        client_id: &client.client_id,
        grant_type: dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS,
        scope: &scope,
        authorization_details: authorization_details.as_ref(),
    });
    match action {
        Action::Allow => {
            let grant = Grant {
                client_id: client.client_id.clone(),
                subject: client.client_id.clone(),
                scope: scope.to_string(),
                authorization_details,
                deferral_id: None,
                dpop_jkt,
            };
            let token = tokens::issue(state, &grant).await?;
            Ok(json_no_store(StatusCode::OK, &token))
        }
        Action::Deny => Err(OAuthError::with_description(
            ErrorCode::AccessDenied,
            "request denied by policy",
        )),
        _ => {
            deferrals::may_defer(state, client, &opt_in, dpop_jkt.is_some())?;
            let deferred = deferrals::create(
                state,
                DeferRequest {
                    client_id: client.client_id.clone(),
                    grant_type: dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS.into(),
                    scope,
                    authorization_details,
                    subject: client.client_id.clone(),
                    action,
                    opt_in,
                    dpop_jkt,
                },
            )
            .await?;
            // DTR-8: HTTP 400, JSON, no-store.
            let mut resp = json_no_store(StatusCode::BAD_REQUEST, &deferred);
            crate::metrics::tag_outcome(&mut resp, deferred.error.clone());
            Ok(resp)
        }
    }
}
