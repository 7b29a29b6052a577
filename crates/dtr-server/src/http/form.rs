//! The form extractor of OAuth endpoints: `application/x-www-form-urlencoded`
//! only, bounded size, strict parsing (no repeats, valid UTF-8). Every
//! failure is an OAuth `invalid_request`, never a 500 or a plain-text 4xx.

use super::error::OAuthResponse;
use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use dtr_proto::params::Params;
use dtr_proto::{ErrorCode, OAuthError};

/// Largest accepted body. OAuth requests are small; an authorization
/// details array is the biggest member we expect.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Parsed form parameters.
#[derive(Debug)]
pub struct Form(pub Params);

/// Whether a Content-Type is form-urlencoded (parameters such as charset allowed).
pub fn is_form_content_type(ct: &str) -> bool {
    ct.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = OAuthResponse;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if req.method() != Method::POST {
            return Err(OAuthError::invalid_request("use POST").into());
        }
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_form_content_type(ct) {
            return Err(OAuthError::invalid_request(
                "Content-Type must be application/x-www-form-urlencoded",
            )
            .into());
        }
        let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                OAuthError::with_description(
                    ErrorCode::InvalidRequest,
                    format!("request body larger than {MAX_FORM_BYTES} bytes"),
                )
            })?;
        Ok(Form(Params::parse_form(&body)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(is_form_content_type("application/x-www-form-urlencoded"));
        assert!(is_form_content_type(
            "application/x-www-form-urlencoded; charset=UTF-8"
        ));
        assert!(is_form_content_type("Application/X-WWW-Form-Urlencoded"));
        assert!(!is_form_content_type("application/json"));
        assert!(!is_form_content_type(""));
    }
}
