//! `GET /demo/resource`: a protected resource that accepts this server's
//! access tokens, DPoP-bound ones only with a valid proof of their key
//! (RFC 9449 section 7), so the whole chain from a deferral to an API call
//! can be shown working.

use super::protected;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The demo resource's path.
pub const PATH: &str = "/demo/resource";

/// The handler.
pub async fn resource(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let a = match protected::authorize(&state, &headers, "GET", PATH).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let claims = a.claims;
    axum::Json(json!({
        "message": "access granted",
        "sub": claims.get("sub"),
        "client_id": claims.get("client_id"),
        "scope": claims.get("scope"),
        "token_type": if a.dpop { "DPoP" } else { "Bearer" },
    }))
    .into_response()
}
