//! Shared HTTP plumbing: bounded body reads and the classification of
//! token-endpoint answers. Classification is a pure function so that it is
//! unit-tested without a socket.

use crate::deferral::{Deferral, TokenResult};
use crate::error::Error;
use dtr_proto::token::{DeferredResponse, TokenResponse};
use dtr_proto::{ErrorCode, OAuthError};

/// Largest response body read. Token responses and metadata are small; a
/// hostile or broken server must not make the client buffer without bound.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// How much of an unexpected body is kept in [`Error::UnexpectedResponse`].
const SNIPPET: usize = 2_000;

/// The default `interval` when a deferred response omits it: the same 5 s
/// as RFC 8628 section 3.2, whose semantics DTR reuses.
const DEFAULT_INTERVAL: u64 = 5;

/// Reads at most [`MAX_BODY`] bytes of a response body.
pub(crate) async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, Error> {
    let status = resp.status().as_u16();
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(Error::UnexpectedResponse {
                status,
                body: format!("response body larger than {MAX_BODY} bytes"),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The start of a body, as text, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(SNIPPET) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.into_owned(),
    }
}

pub(crate) fn unexpected(status: u16, body: &[u8]) -> Error {
    Error::UnexpectedResponse {
        status,
        body: snippet(body),
    }
}

/// Parses an OAuth error body (`{"error": ..}`), if it is one.
pub(crate) fn parse_oauth_error(body: &[u8]) -> Option<OAuthError> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("error")?.as_str()?;
    serde_json::from_value(v).ok()
}

/// Where a token-endpoint answer came from, to build a [`Deferral`].
pub(crate) struct Origin<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub received_at_unix_ms: i64,
    /// Thumbprint of the DPoP key whose proof the request carried.
    pub dpop_jkt: Option<&'a str>,
}

/// Classifies a token-endpoint answer.
///
/// - 2xx: a token response (OAuth 2.1 section 3.2.3).
/// - 400 whose JSON has `deferral_code`: the deferred response (DTR-8,
///   DTR-11).
/// - any other status with an OAuth error JSON: [`TokenResult::Error`];
///   this includes the pending answers to polls (DTR-18) and `slow_down`.
/// - anything else: [`Error::UnexpectedResponse`].
pub(crate) fn classify_token_answer(
    status: u16,
    body: &[u8],
    origin: &Origin<'_>,
) -> Result<TokenResult, Error> {
    if (200..300).contains(&status) {
        return serde_json::from_slice::<TokenResponse>(body)
            .map(TokenResult::Token)
            .map_err(|_| unexpected(status, body));
    }
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return Err(unexpected(status, body));
    };
    let Some(error) = obj.get("error").and_then(|e| e.as_str()) else {
        return Err(unexpected(status, body));
    };
    if status == 400 {
        if let Some(code) = obj.get("deferral_code") {
            let code = code.as_str().filter(|c| !c.is_empty());
            let expires_in = obj.get("expires_in").and_then(|v| v.as_u64());
            let (Some(code), Some(expires_in)) = (code, expires_in) else {
                // A deferral we cannot poll or time is worse than an error.
                return Err(unexpected(status, body));
            };
            let text = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let r = DeferredResponse {
                error: ErrorCode::parse(error),
                deferral_code: code.to_owned(),
                expires_in,
                interval: obj
                    .get("interval")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(DEFAULT_INTERVAL),
                interaction_uri: text("interaction_uri"),
                error_description: text("error_description"),
            };
            // DTR-13: a code obtained with a proof is bound to its key.
            return Ok(TokenResult::Deferred(
                Deferral::from_response(
                    r,
                    origin.received_at_unix_ms,
                    origin.issuer,
                    origin.client_id,
                )
                .bound_to(origin.dpop_jkt.map(str::to_owned)),
            ));
        }
    }
    serde_json::from_value::<OAuthError>(serde_json::Value::Object(obj))
        .map(TokenResult::Error)
        .map_err(|_| unexpected(status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin<'static> = Origin {
        issuer: "https://as",
        client_id: "svc",
        received_at_unix_ms: 42,
        dpop_jkt: None,
    };

    fn classify(status: u16, body: &str) -> Result<TokenResult, Error> {
        classify_token_answer(status, body.as_bytes(), &ORIGIN)
    }

    #[test]
    fn success_is_token() {
        let r = classify(
            200,
            r#"{"access_token":"at","token_type":"Bearer","expires_in":3600}"#,
        );
        match r {
            Ok(TokenResult::Token(t)) => {
                assert_eq!(t.access_token, "at");
                assert_eq!(t.expires_in, Some(3600));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deferred_response_is_deferred() {
        // DTR-8
        let r = classify(
            400,
            r#"{"error":"authorization_pending","deferral_code":"dc","expires_in":600,"interval":5,"error_description":"step=review"}"#,
        );
        match r {
            Ok(TokenResult::Deferred(d)) => {
                assert_eq!(d.code.secret(), "dc");
                assert_eq!((d.expires_in, d.interval), (600, 5));
                assert_eq!(d.description.as_deref(), Some("step=review"));
                assert_eq!(d.received_at_unix_ms, 42);
                assert_eq!(
                    (d.issuer.as_str(), d.client_id.as_str()),
                    ("https://as", "svc")
                );
                assert_eq!(d.error, ErrorCode::AuthorizationPending);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn interaction_required_carries_the_uri() {
        // DTR-11
        let r = classify(
            400,
            r#"{"error":"interaction_required","deferral_code":"dc","expires_in":60,"interval":2,"interaction_uri":"https://as/interact/x"}"#,
        );
        match r {
            Ok(TokenResult::Deferred(d)) => {
                assert_eq!(d.error, ErrorCode::InteractionRequired);
                assert_eq!(d.interaction_uri.as_deref(), Some("https://as/interact/x"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_interval_defaults_to_five_seconds() {
        let r = classify(
            400,
            r#"{"error":"authorization_pending","deferral_code":"dc","expires_in":60}"#,
        );
        assert!(matches!(r, Ok(TokenResult::Deferred(d)) if d.interval == 5));
    }

    #[test]
    fn deferral_without_lifetime_is_unexpected() {
        let r = classify(
            400,
            r#"{"error":"authorization_pending","deferral_code":"dc"}"#,
        );
        assert!(matches!(
            r,
            Err(Error::UnexpectedResponse { status: 400, .. })
        ));
        let r = classify(
            400,
            r#"{"error":"authorization_pending","deferral_code":"","expires_in":5}"#,
        );
        assert!(matches!(r, Err(Error::UnexpectedResponse { .. })));
    }

    #[test]
    fn pending_poll_answer_is_error() {
        // DTR-18: polls do not repeat the code.
        for code in ["authorization_pending", "slow_down", "interaction_required"] {
            let r = classify(400, &format!(r#"{{"error":"{code}"}}"#));
            assert!(
                matches!(&r, Ok(TokenResult::Error(e)) if e.error.as_str() == code),
                "{r:?}"
            );
        }
    }

    #[test]
    fn client_auth_failure_is_error() {
        let r = classify(
            401,
            r#"{"error":"invalid_client","error_description":"bad secret"}"#,
        );
        assert!(matches!(r, Ok(TokenResult::Error(e)) if e.error == ErrorCode::InvalidClient));
    }

    #[test]
    fn deferral_code_outside_400_is_not_a_deferral() {
        let r = classify(
            401,
            r#"{"error":"invalid_client","deferral_code":"x","expires_in":5}"#,
        );
        assert!(matches!(r, Ok(TokenResult::Error(_))));
    }

    #[test]
    fn non_json_is_unexpected() {
        let r = classify(502, "<html>bad gateway</html>");
        match r {
            Err(Error::UnexpectedResponse { status, body }) => {
                assert_eq!(status, 502);
                assert!(body.contains("bad gateway"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(400, r#"{"no":"error"}"#),
            Err(Error::UnexpectedResponse { .. })
        ));
        assert!(matches!(
            classify(200, "not json"),
            Err(Error::UnexpectedResponse { .. })
        ));
    }

    #[test]
    fn snippet_truncates_on_char_boundary() {
        let long = "é".repeat(3_000);
        let s = snippet(long.as_bytes());
        assert!(s.ends_with("..."));
        assert_eq!(s.chars().count(), SNIPPET + 3);
    }
}
