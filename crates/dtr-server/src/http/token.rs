//! `POST /token`: the originating grants, the deferred response and
//! polling. The handler authenticates, parses, hands the request to the
//! token pipeline ([`crate::grants::pipeline`]) and renders its outcome;
//! it makes no protocol decision of its own.

use super::error::json_no_store;
use super::form::Form;
use crate::error::Error;
use crate::grants::GrantOutcome;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::token::TokenRequest;

/// The token endpoint.
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(params): Form,
) -> Response {
    let mut resp = match handle(&state, &headers, &params).await {
        Ok(outcome) => render(&outcome),
        Err(e) => e.into_response(),
    };
    crate::metrics::tag_grant(&mut resp, params.get("grant_type"));
    state.dpop().add_nonce(resp.headers_mut());
    resp
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    params: &dtr_proto::params::Params,
) -> Result<GrantOutcome, Error> {
    // DTR-16 step 1: authenticate the client first.
    let client = state
        .client_auth()
        .authenticate(headers, params, dtr_proto::paths::TOKEN)
        .await?;
    let request = TokenRequest::parse(params)?;
    // RFC 9449 section 5: a proof, when sent, must be valid whatever the grant.
    let proof = state
        .dpop()
        .check(headers, "POST", dtr_proto::paths::TOKEN, None)
        .await?;
    crate::grants::pipeline::answer(state, &client, request, proof.map(|p| p.jkt)).await
}

/// A token (200) or the deferred response (DTR-8: 400), both JSON and
/// `no-store` (DTR-22).
pub fn render(outcome: &GrantOutcome) -> Response {
    match outcome {
        GrantOutcome::Issued(token) => json_no_store(StatusCode::OK, token),
        GrantOutcome::Deferred(deferred) => {
            let mut resp = json_no_store(StatusCode::BAD_REQUEST, deferred);
            crate::metrics::tag_outcome(&mut resp, deferred.error.clone());
            resp
        }
    }
}
