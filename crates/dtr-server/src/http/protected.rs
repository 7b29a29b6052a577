//! The protected-resource side of this server's own resources (the demo
//! resource and OpenID Connect's UserInfo): an access token of this
//! issuer, live, presented as RFC 6750 `Bearer` or, when bound, RFC 9449
//! `DPoP` with a valid, fresh proof of its key (section 7). Written once,
//! so both resources refuse alike.

use crate::state::AppState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::resource::{check_binding, Presentation, ResourceError};
use serde_json::{json, Value};

/// A refusal: 401 with the challenge of the scheme the client used
/// (RFC 6750 section 3, RFC 9449 section 7.1); 403 `insufficient_scope`.
pub fn refuse(e: &ResourceError, dpop: bool) -> Response {
    let (code, challenge) = match (e, dpop) {
        (ResourceError::InvalidToken(d), false) => (
            "invalid_token",
            format!("Bearer error=\"invalid_token\", error_description=\"{d}\""),
        ),
        (ResourceError::Missing, _) => ("invalid_request", e.challenge()),
        (ResourceError::InvalidToken(_), true) => ("invalid_token", e.challenge()),
        (ResourceError::InvalidProof(_), _) => ("invalid_dpop_proof", e.challenge()),
    };
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": code, "error_description": e.to_string()})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// RFC 6750 section 3.1 `insufficient_scope` (403) naming the scope needed.
pub fn insufficient_scope(scope: &str, dpop: bool) -> Response {
    let scheme = if dpop { "DPoP" } else { "Bearer" };
    let mut r = (
        StatusCode::FORBIDDEN,
        axum::Json(json!({"error": "insufficient_scope",
            "error_description": format!("the access token lacks the {scope} scope")})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{scheme} error=\"insufficient_scope\", scope=\"{scope}\""
    )) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// A verified presentation: the token's claims and whether it was DPoP.
pub struct Authorized {
    /// The access token's claims.
    pub claims: Value,
    /// Presented with `DPoP` (bound to a key).
    pub dpop: bool,
}

/// Verifies the request's access token for `method` on `path` of this
/// issuer; the refusal to send otherwise.
pub async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    method: &str,
    path: &str,
) -> Result<Authorized, Response> {
    let Some(presentation) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(Presentation::parse)
    else {
        return Err(refuse(&ResourceError::Missing, false));
    };
    let dpop = matches!(presentation, Presentation::Dpop(_));
    let claims = match crate::tokens::verify_live(state, presentation.token()).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(refuse(
                &ResourceError::InvalidToken("unknown, expired or revoked access token"),
                dpop,
            ))
        }
        Err(e) => {
            e.log();
            return Err(StatusCode::SERVICE_UNAVAILABLE.into_response());
        }
    };
    let cnf_jkt = claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str);
    let proof = crate::dpop::proof_header(headers)
        .map_err(|e| refuse(&ResourceError::InvalidProof(e), dpop))?;
    let url = format!("{}{}", state.issuer, path);
    let window = state.config.dpop.iat_window as i64;
    let now_ms = state.clock.now_ms();
    match check_binding(
        presentation,
        cnf_jkt,
        proof,
        method,
        &url,
        now_ms / 1000,
        window,
    ) {
        Ok(Some(verified)) => {
            // RFC 9449 section 11.1: a proof is accepted once.
            let key =
                dtr_proto::secret::sha256_b64(&format!("dpop\n{}\n{}", verified.jkt, verified.jti));
            match state
                .store
                .use_once(&key, (verified.iat + window + 1) * 1000, now_ms)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    return Err(refuse(
                        &ResourceError::InvalidProof(dtr_proto::dpop::DpopError::Replayed),
                        dpop,
                    ))
                }
                Err(e) => {
                    tracing::error!(error = %e, "replay cache failed");
                    return Err(StatusCode::SERVICE_UNAVAILABLE.into_response());
                }
            }
        }
        Ok(None) => {}
        Err(e) => return Err(refuse(&e, dpop)),
    }
    Ok(Authorized { claims, dpop })
}
