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
    /// The authorization response that came back to the redirect URI is
    /// unusable: it is an error response (OAuth 2.1 section 4.1.2.1), its
    /// `iss` is not the issuer the request went to (RFC 9207 section 2.4),
    /// or it lacks what it must carry.
    #[error("authorization response: {0}")]
    AuthorizationResponse(crate::redirect::ResponseError),
    /// The loopback redirect receiver could not listen or gave up waiting
    /// (RFC 8252 section 7.3).
    #[error("redirect receiver: {0}")]
    Receiver(String),
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

impl Error {
    /// Whether the request certainly never reached the server: the
    /// connection was refused or could not be made, or the client refused
    /// locally before sending. The [`crate::Poller`] keeps the parameters
    /// of a first poll only then: a `code_verifier` that may have been
    /// received must not be presented again.
    pub fn nothing_sent(&self) -> bool {
        match self {
            Self::Http(e) => e.is_connect() || e.is_builder(),
            Self::CancellationUnsupported
            | Self::MissingEndpoint(_)
            | Self::InvalidUrl { .. }
            | Self::InvalidParameter(_)
            | Self::Key(_)
            | Self::DpopKeyRequired { .. }
            | Self::DpopKeyMismatch { .. } => true,
            Self::UnexpectedResponse { .. }
            | Self::Discovery(_)
            | Self::OAuth { .. }
            | Self::AuthorizationResponse(_)
            | Self::Receiver(_) => false,
        }
    }
}
