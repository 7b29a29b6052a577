//! The error type of the client library.
//!
//! OAuth error *responses* of the token endpoint are not errors here: they
//! are a normal outcome ([`crate::TokenResult::Error`]). This type covers
//! what prevents getting an answer at all, and OAuth errors of endpoints
//! that have no other outcome (revocation, introspection).

use dtr_proto::OAuthError;

/// Why a request produced no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP exchange failed (connection, timeout, TLS, ...).
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered something that is neither a success nor an OAuth
    /// error JSON document (e.g. an HTML error page of a proxy). `body` is
    /// truncated.
    #[error("unexpected response (HTTP {status}): {body}")]
    UnexpectedResponse {
        /// HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The metadata document could not be fetched or does not belong to
    /// the issuer (RFC 8414 section 3.3).
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// The server does not list the deferral-code token type among
    /// `revocation_endpoint_token_type_values_supported`, so a deferral
    /// cannot be cancelled (DTR-7, DTR-31). Nothing was sent.
    #[error(
        "the authorization server does not support cancelling deferral codes through revocation"
    )]
    CancellationUnsupported,
    /// The metadata does not advertise an endpoint this operation needs.
    #[error("the authorization server metadata has no {0}")]
    MissingEndpoint(&'static str),
    /// An endpoint other than the token endpoint answered with an OAuth
    /// error (e.g. `invalid_client` at revocation, RFC 7009 section 2.2.1).
    #[error("HTTP {status}: {error}")]
    OAuth {
        /// HTTP status code.
        status: u16,
        /// The error body.
        error: OAuthError,
    },
    /// A URL (issuer or endpoint) is not valid.
    #[error("invalid URL '{url}': {reason}")]
    InvalidUrl {
        /// The offending URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request parameter could not be encoded.
    #[error("invalid request parameter: {0}")]
    InvalidParameter(String),
}
