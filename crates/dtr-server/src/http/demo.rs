//! `GET /demo/resource`: a protected resource that accepts this server's
//! access tokens, DPoP-bound ones only with a valid proof of their key
//! (RFC 9449 section 7), so the whole chain from a deferral to an API call
//! can be shown working.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::resource::{check_binding, Presentation, ResourceError};
use serde_json::{json, Value};

/// The demo resource's path.
pub const PATH: &str = "/demo/resource";

fn refuse(e: ResourceError) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": match &e {
        ResourceError::Missing => "invalid_request",
        ResourceError::InvalidToken(_) => "invalid_token",
        ResourceError::InvalidProof(_) => "invalid_dpop_proof",
    }, "error_description": e.to_string()})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&e.challenge()) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// The handler.
pub async fn resource(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(presentation) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(Presentation::parse)
    else {
        return refuse(ResourceError::Missing);
    };
    let Some(claims) = state.signer.verify(presentation.token()) else {
        return refuse(ResourceError::InvalidToken(
            "unknown or malformed access token",
        ));
    };
    let now_ms = state.clock.now_ms();
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
    if exp * 1000 <= now_ms || state.store.token_revoked(jti).await.unwrap_or(true) {
        return refuse(ResourceError::InvalidToken(
            "access token expired or revoked",
        ));
    }
    let cnf_jkt = claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str);
    let proof = match crate::dpop::proof_header(&headers) {
        Ok(p) => p,
        Err(e) => return refuse(ResourceError::InvalidProof(e)),
    };
    let url = format!("{}{}", state.issuer, PATH);
    let window = state.config.dpop.iat_window as i64;
    match check_binding(
        presentation,
        cnf_jkt,
        proof,
        "GET",
        &url,
        now_ms / 1000,
        window,
    ) {
        Ok(Some(verified)) => {
            let key =
                dtr_proto::secret::sha256_b64(&format!("dpop\n{}\n{}", verified.jkt, verified.jti));
            match state
                .store
                .use_once(&key, (verified.iat + window + 1) * 1000, now_ms)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    return refuse(ResourceError::InvalidProof(
                        dtr_proto::dpop::DpopError::Replayed,
                    ))
                }
                Err(e) => {
                    tracing::error!(error = %e, "replay cache failed");
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
            }
        }
        Ok(None) => {}
        Err(e) => return refuse(e),
    }
    axum::Json(json!({
        "message": "access granted",
        "sub": claims.get("sub"),
        "client_id": claims.get("client_id"),
        "scope": claims.get("scope"),
        "token_type": if cnf_jkt.is_some() { "DPoP" } else { "Bearer" },
    }))
    .into_response()
}
