//! Request bodies, bounded in size and in time before any handler runs.
//!
//! Every endpoint takes a small body (a form, a registration document, an
//! admin decision), so the whole body is read here, once, for every
//! route: a body over [`MAX_BODY_BYTES`] is answered 413 and one that
//! does not arrive within `[http] body_timeout_ms` is answered 408, both
//! as OAuth JSON errors with `Cache-Control: no-store` (RFC 6749 section
//! 5.2, DTR-22) instead of the framework's plain-text rejections. Handlers
//! then read a body that is already in memory.

use super::error::json_no_store;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use dtr_proto::{ErrorCode, OAuthError};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Largest request body of any endpoint. The biggest legitimate bodies
/// (authorization details, a registration document with a key set) are a
/// few kilobytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An OAuth `invalid_request` error with another status than its usual
/// 400. The connection is closed after it: the rest of the body is never
/// read, so the next request on it could not be found (RFC 9112 section
/// 9.6 lets a server close when it answers before the body is read).
fn refuse(status: StatusCode, description: String) -> Response {
    let mut resp = json_no_store(
        status,
        &OAuthError::with_description(ErrorCode::InvalidRequest, description),
    );
    crate::metrics::tag_outcome(&mut resp, ErrorCode::InvalidRequest);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn too_large() -> Response {
    // RFC 9110 section 15.5.14 (413 Content Too Large).
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// Reads the whole body within the size and time bounds, then runs the
/// handler with it.
pub async fn bounded_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let read = tokio::time::timeout(
        state.config.http.body_timeout(),
        Limited::new(body, MAX_BODY_BYTES).collect(),
    )
    .await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        // The client broke the framing or went away mid-body.
        Ok(Err(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the request body could not be read".into(),
            )
        }
        // RFC 9110 section 15.5.9 (408 Request Timeout): a client that
        // trickles its body holds a connection and a task for free.
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} ms",
                    state.config.http.body_timeout_ms
                ),
            )
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
