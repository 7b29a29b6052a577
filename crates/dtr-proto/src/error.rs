//! OAuth error codes and the error response body (OAuth 2.1 section 5.2,
//! RFC 7009, RFC 8628 section 3.5 and the draft's "Token Endpoint — Error
//! Responses").

use serde::{Deserialize, Serialize};
use std::fmt;

/// Exactly the error codes the server puts on the wire. Unknown codes met by
/// the client library are kept verbatim in [`ErrorCode::Other`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is missing a parameter, repeats one, or is otherwise
    /// malformed (OAuth 2.1 section 5.2). Also the escalation of persistent
    /// `slow_down` offenders (DTR-19) and the hint-consistency failure (DTR-5).
    InvalidRequest,
    /// Client authentication failed (OAuth 2.1 section 5.2); HTTP 401.
    InvalidClient,
    /// The grant (here: the deferral code) is invalid, unknown, foreign or
    /// already redeemed (DTR-16, DTR-17, DTR-21).
    InvalidGrant,
    /// The client may not use this grant type.
    UnauthorizedClient,
    /// The grant type is not supported by the server.
    UnsupportedGrantType,
    /// The requested scope is invalid, unknown or exceeds what the client may ask.
    InvalidScope,
    /// RFC 8707 section 2 / RFC 8693 section 2.2.2: the `resource` or
    /// `audience` is malformed or not acceptable.
    InvalidTarget,
    /// RFC 9396 section 5: an `authorization_details` entry is malformed,
    /// unknown, or (through an AuthZEN PDP) denied.
    InvalidAuthorizationDetails,
    /// The request was denied, or the deferral was denied or cancelled (DTR-16).
    AccessDenied,
    /// The deferral is still pending (DTR-8, DTR-18).
    AuthorizationPending,
    /// The deferral waits for external interaction at `interaction_uri` (DTR-11).
    InteractionRequired,
    /// The interaction has begun (the user opened the `interaction_uri`)
    /// and the server waits on them: keep polling (the working group's
    /// approved `interaction_pending` proposal).
    InteractionPending,
    /// The client polls faster than `interval` allows (DTR-19).
    SlowDown,
    /// The deferral code has expired (DTR-16).
    ExpiredToken,
    /// RFC 7009 section 2.2.1: the server cannot revoke this token type.
    UnsupportedTokenType,
    /// RFC 9449 section 5: the DPoP proof is missing or invalid, or does not
    /// match the key a deferral code or token is bound to (DTR-13).
    InvalidDpopProof,
    /// RFC 9449 section 8: a fresh server nonce must be used.
    UseDpopNonce,
    /// An internal failure; details are logged, never sent.
    ServerError,
    /// The server is temporarily unable to handle the request.
    TemporarilyUnavailable,
    /// Any other code (client side only).
    Other(String),
}

impl ErrorCode {
    /// The code as it appears in the `error` member.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidAuthorizationDetails => "invalid_authorization_details",
            Self::AccessDenied => "access_denied",
            Self::AuthorizationPending => "authorization_pending",
            Self::InteractionRequired => "interaction_required",
            Self::InteractionPending => "interaction_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::Other(s) => s,
        }
    }

    /// Parses a code received on the wire.
    pub fn parse(s: &str) -> Self {
        match s {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            "invalid_target" => Self::InvalidTarget,
            "invalid_authorization_details" => Self::InvalidAuthorizationDetails,
            "access_denied" => Self::AccessDenied,
            "authorization_pending" => Self::AuthorizationPending,
            "interaction_required" => Self::InteractionRequired,
            "interaction_pending" => Self::InteractionPending,
            "slow_down" => Self::SlowDown,
            "expired_token" => Self::ExpiredToken,
            "unsupported_token_type" => Self::UnsupportedTokenType,
            "invalid_dpop_proof" => Self::InvalidDpopProof,
            "use_dpop_nonce" => Self::UseDpopNonce,
            "server_error" => Self::ServerError,
            "temporarily_unavailable" => Self::TemporarilyUnavailable,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The HTTP status of a token-endpoint error with this code: 401 for
    /// client authentication failures (OAuth 2.1 section 5.2), 500/503 for
    /// server conditions, 400 otherwise (including the deferred response,
    /// DTR-8).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidClient => 401,
            Self::ServerError => 500,
            Self::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

/// An OAuth error response body: `{"error", "error_description"?}` plus, for
/// the pending family of DTR, `interaction_uri`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    /// The error code.
    pub error: ErrorCode,
    /// Human-readable, data-minimised text (DTR-10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// Present with `interaction_required` (DTR-11, DTR-18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction_uri: Option<String>,
    /// Seconds after which the request may be retried, sent as the HTTP
    /// `Retry-After` header (RFC 9110 section 10.2.3), never in the body:
    /// with a throttled `invalid_client` or a `temporarily_unavailable`.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl OAuthError {
    /// An error with a code only.
    pub fn new(error: ErrorCode) -> Self {
        Self {
            error,
            error_description: None,
            interaction_uri: None,
            retry_after: None,
        }
    }

    /// An error with a description.
    pub fn with_description(error: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            error,
            error_description: Some(description.into()),
            interaction_uri: None,
            retry_after: None,
        }
    }

    /// The same error, to be answered with `Retry-After: secs`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Shorthand for `invalid_request` with a description.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::with_description(ErrorCode::InvalidRequest, description)
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error_description {
            Some(d) => write!(f, "{}: {}", self.error, d),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::InvalidClient,
            ErrorCode::InvalidGrant,
            ErrorCode::UnauthorizedClient,
            ErrorCode::UnsupportedGrantType,
            ErrorCode::InvalidScope,
            ErrorCode::InvalidAuthorizationDetails,
            ErrorCode::AccessDenied,
            ErrorCode::AuthorizationPending,
            ErrorCode::InteractionRequired,
            ErrorCode::InteractionPending,
            ErrorCode::SlowDown,
            ErrorCode::ExpiredToken,
            ErrorCode::UnsupportedTokenType,
            ErrorCode::InvalidDpopProof,
            ErrorCode::UseDpopNonce,
            ErrorCode::ServerError,
            ErrorCode::TemporarilyUnavailable,
        ] {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
        assert_eq!(
            ErrorCode::parse("x_custom"),
            ErrorCode::Other("x_custom".into())
        );
    }

    #[test]
    fn status_codes() {
        assert_eq!(ErrorCode::InvalidClient.http_status(), 401);
        // DTR-8: the deferred response is a 400.
        assert_eq!(ErrorCode::AuthorizationPending.http_status(), 400);
        assert_eq!(ErrorCode::SlowDown.http_status(), 400);
        assert_eq!(ErrorCode::ServerError.http_status(), 500);
    }

    #[test]
    fn serializes_without_absent_members() {
        let e = OAuthError::new(ErrorCode::SlowDown);
        assert_eq!(
            serde_json::to_string(&e).unwrap_or_default(),
            r#"{"error":"slow_down"}"#
        );
    }
}
