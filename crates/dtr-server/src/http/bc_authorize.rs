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
    let request = BackchannelRequest::parse(params)?;
    let proof = state
        .dpop()
        .check(headers, "POST", dtr_proto::paths::BC_AUTHORIZE, None)
        .await?;
    crate::grants::ciba::backchannel(state, &client, request, proof.map(|p| p.jkt)).await
}
