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
    /// A key could not be loaded, saved or used for signing.
    #[error("key error: {0}")]
    Key(String),
    /// The deferral code (or token) is DPoP-bound (DTR-13) but this client
    /// has no DPoP key. Nothing was sent: the server would refuse an
    /// unbound request anyway.
    #[error("this deferral is DPoP-bound to key {jkt}: the client needs that DPoP key to poll or cancel it")]
    DpopKeyRequired {
        /// Thumbprint of the key the deferral is bound to.
        jkt: String,
    },
    /// The deferral is bound to another key than the client's. Nothing was
    /// sent.
    #[error(
        "this deferral is DPoP-bound to key {expected}, but the client's DPoP key is {actual}"
    )]
    DpopKeyMismatch {
        /// Thumbprint of the key the deferral is bound to.
        expected: String,
        /// Thumbprint of the client's key.
        actual: String,
    },
}
