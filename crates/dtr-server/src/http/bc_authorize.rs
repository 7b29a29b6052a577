//! `POST /bc-authorize`: the backchannel authentication endpoint of OpenID
//! CIBA Core 1.0 (section 7). The handler authenticates the client,
//! parses the request, checks a DPoP proof when one is sent (the
//! `auth_req_id` is then bound to its key, like a deferral code, DTR-13)
//! and hands over to [`crate::grants::ciba`].

use super::error::json_no_store;
use super::form::Form;
use crate::error::Error;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::ciba::{BackchannelRequest, BackchannelResponse};
use dtr_proto::ErrorCode;

/// The endpoint.
pub async fn bc_authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(params): Form,
) -> Response {
    let mut resp = match handle(&state, &headers, &params).await {
        Ok(r) => json_no_store(StatusCode::OK, &r),
        Err(e) => {
            // Section 13: access_denied is 403 here; the rest as at the
            // token endpoint.
            let denied = matches!(&e, Error::OAuth(o) if o.error == ErrorCode::AccessDenied);
            let mut r = e.into_response();
            if denied {
                *r.status_mut() = StatusCode::FORBIDDEN;
            }
            r
        }
    };
    state.dpop().add_nonce(resp.headers_mut());
    resp
}

fn invalid_request(description: &str) -> Error {
    dtr_proto::OAuthError::invalid_request(description.to_owned()).into()
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    params: &dtr_proto::params::Params,
) -> Result<BackchannelResponse, Error> {
    // Section 7.1: the client authenticates as at the token endpoint.
    let client = state
        .client_auth()
        .authenticate(headers, params, dtr_proto::paths::BC_AUTHORIZE)
        .await?;
    // Section 7.1.1: a signed authentication request is a request object
    // of the client's (RFC 9101): verified with its keys, used once, and
    // only its claims count.
    let signed = match params.get("request") {
        None => None,
        Some(jwt) => {
            match crate::grants::authorize::request_object_params(state, &client, jwt).await? {
                Ok((claims, once)) if once.spend(state).await? => Some(claims),
                Ok(_) => return Err(invalid_request("signed authentication request jti reused")),
                Err(why) => {
                    tracing::info!(client = %client.client_id, reason = %why, "signed authentication request refused");
                    return Err(invalid_request(&format!(
                        "signed authentication request refused: {why}"
                    )));
                }
            }
        }
    };
    let request = BackchannelRequest::parse(signed.as_ref().unwrap_or(params))?;
    let proof = state
        .dpop()
        .check(headers, "POST", dtr_proto::paths::BC_AUTHORIZE, None)
        .await?;
    crate::grants::ciba::backchannel(state, &client, request, proof.map(|p| p.jkt)).await
}
