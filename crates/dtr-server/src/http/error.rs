//! All mapping of errors to HTTP responses, in one place.
//!
//! OAuth errors carry the status of OAuth 2.1 section 3.2.4 (401 with
//! `WWW-Authenticate` for `invalid_client`) and `Cache-Control: no-store`
//! (DTR-22). Internal errors are logged and answered `server_error`
//! without detail.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::{ErrorCode, OAuthError};
use serde::Serialize;

/// A JSON response with `Cache-Control: no-store` and `Pragma: no-cache`.
pub fn json_no_store<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    no_store(&mut resp);
    resp
}

/// Adds the no-store headers (RFC 6749 section 5.1, DTR-22).
pub fn no_store(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// An OAuth error as an HTTP response.
#[derive(Debug)]
pub struct OAuthResponse(pub OAuthError);

impl From<OAuthError> for OAuthResponse {
    fn from(e: OAuthError) -> Self {
        Self(e)
    }
}

impl IntoResponse for OAuthResponse {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.error.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = json_no_store(status, &self.0);
        // The `outcome` label of the request metrics.
        crate::metrics::tag_outcome(&mut resp, self.0.error.clone());
        if let Some(secs) = self.0.retry_after {
            // With a throttled `invalid_client` (401) or
            // `temporarily_unavailable` (503).
            resp = with_retry_after(resp, secs);
        }
        if self.0.error == ErrorCode::InvalidClient {
            // RFC 6749 section 5.2: 401 with the scheme the client may use.
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="dtr", charset="UTF-8""#),
            );
        }
        resp
    }
}

/// Adds `Retry-After: secs` (RFC 9110 section 10.2.3), at least 1.
pub fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    resp
}

/// 429 (RFC 6585 section 4) JSON `slow_down` with `Retry-After`: a caller
/// over a throttle budget at an endpoint without an OAuth error of its own
/// for it (registration, the admin API).
pub fn too_many_requests(refused: crate::throttle::Refused) -> Response {
    let resp = json_no_store(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({
            "error": "slow_down",
            "error_description": "too many requests; retry later",
        }),
    );
    with_retry_after(resp, refused.answered())
}

/// A request's error as its response: a refusal as its OAuth error, a
/// server fault logged here, once, in the request's span (with its request
/// id), and answered `503 temporarily_unavailable` or `500 server_error`
/// without detail (see [`crate::error`]).
impl IntoResponse for crate::error::Error {
    fn into_response(self) -> Response {
        self.log();
        OAuthResponse(self.to_oauth()).into_response()
    }
}

/// The status of an HTML page answering a server fault, which it logs
/// (once, here): 503 when the database is unreachable, else 500.
pub fn fault_status(e: impl Into<crate::error::Error>) -> StatusCode {
    let e = e.into();
    e.log();
    match e.to_oauth().error {
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Errors of the admin API: JSON `{"error", "error_description"}`.
#[derive(Debug)]
pub enum AdminError {
    /// 400 `invalid_request`.
    BadRequest(String),
    /// 401: missing or wrong admin token.
    Unauthorized(&'static str),
    /// 403: authenticated, but not allowed this (a reviewer at an
    /// admin-only endpoint, or not an approver of the deferral).
    Forbidden,
    /// 404.
    NotFound,
    /// 409: the deferral is not pending.
    Conflict(String),
    /// 429: too many wrong admin tokens from this source; retry after
    /// this many seconds (RFC 6585 section 4).
    Throttled(u64),
    /// A server fault: logged where answered, 503 when the database is
    /// unreachable, else 500, never with detail (see [`crate::error`]).
    Fault(crate::error::Error),
}

impl From<crate::store::StoreError> for AdminError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Fault(e.into())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if let Self::Fault(e) = self {
            // The OAuth error JSON of a fault is the admin API's shape too.
            return e.into_response();
        }
        let retry_after = match &self {
            Self::Throttled(secs) => Some(*secs),
            _ => None,
        };
        let (status, error, desc) = match self {
            Self::BadRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
            Self::Unauthorized(d) => (StatusCode::UNAUTHORIZED, "invalid_token", d.to_owned()),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource".to_owned(),
            ),
            Self::Conflict(d) => (StatusCode::CONFLICT, "conflict", d),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "not allowed for this identity".to_owned(),
            ),
            Self::Throttled(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "too many failed authentication attempts; retry later".to_owned(),
            ),
            Self::Fault(_) => unreachable!("answered above"),
        };
        let mut resp = json_no_store(
            status,
            &serde_json::json!({"error": error, "error_description": desc}),
        );
        if let Some(secs) = retry_after {
            resp = with_retry_after(resp, secs);
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="dtr-admin""#),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(r: &Response, h: header::HeaderName) -> Option<&str> {
        r.headers().get(h).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn invalid_client_is_401_with_www_authenticate() {
        let r = OAuthResponse(OAuthError::new(ErrorCode::InvalidClient)).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&r, header::WWW_AUTHENTICATE).is_some_and(|v| v.starts_with("Basic")));
        assert_eq!(header(&r, header::CACHE_CONTROL), Some("no-store"));
    }

    #[test]
    fn pending_family_is_400_no_store() {
        // DTR-8, DTR-22
        for code in [
            ErrorCode::AuthorizationPending,
            ErrorCode::SlowDown,
            ErrorCode::ExpiredToken,
            ErrorCode::AccessDenied,
        ] {
            let r = OAuthResponse(OAuthError::new(code)).into_response();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
            assert_eq!(header(&r, header::CACHE_CONTROL), Some("no-store"));
            assert!(header(&r, header::WWW_AUTHENTICATE).is_none());
        }
    }

    #[test]
    fn server_faults_are_500_or_503_without_detail() {
        use crate::error::Error;
        use crate::store::StoreError;
        let r = Error::internal("secret detail").into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = Error::from(StoreError::Database("secret database detail".into())).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = Error::from(StoreError::Unavailable("connection refused".into())).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&r, header::RETRY_AFTER), Some("1"));
        assert_eq!(header(&r, header::CACHE_CONTROL), Some("no-store"));
    }

    #[test]
    fn retry_after_goes_in_the_header_only() {
        // A throttled client: still `invalid_client`, told when to retry.
        let e = OAuthError::new(ErrorCode::InvalidClient).with_retry_after(7);
        let r = OAuthResponse(e).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&r, header::RETRY_AFTER), Some("7"));
        // A full hashing queue.
        let e = OAuthError::new(ErrorCode::TemporarilyUnavailable).with_retry_after(0);
        let r = OAuthResponse(e).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&r, header::RETRY_AFTER), Some("1"));
        let r = OAuthResponse(OAuthError::new(ErrorCode::InvalidGrant)).into_response();
        assert!(header(&r, header::RETRY_AFTER).is_none());
    }

    #[test]
    fn throttled_is_429_slow_down_with_retry_after() {
        let r = AdminError::Throttled(30).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&r, header::RETRY_AFTER), Some("30"));
        assert!(header(&r, header::WWW_AUTHENTICATE).is_none());
        let refused = crate::throttle::Refused {
            retry_after: std::time::Duration::from_millis(2500),
        };
        let r = too_many_requests(refused);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&r, header::RETRY_AFTER), Some("3"));
        assert_eq!(header(&r, header::CACHE_CONTROL), Some("no-store"));
    }

    #[test]
    fn admin_errors() {
        assert_eq!(
            AdminError::Conflict("x".into()).into_response().status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            AdminError::NotFound.into_response().status(),
            StatusCode::NOT_FOUND
        );
        let r = AdminError::Unauthorized("no").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&r, header::WWW_AUTHENTICATE).is_some());
    }
}
