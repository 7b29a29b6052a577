//! The server's error type: what a request can end in besides success.
//!
//! Two kinds, kept apart from the start so that neither can pass for the
//! other:
//! - a refusal ([`Error::OAuth`]): the client's request is wrong or not
//!   allowed, answered with its OAuth error (RFC 6749 section 5.2, the
//!   draft's codes);
//! - a fault of the server ([`Error::Store`], [`Error::Internal`]): the
//!   database failed or an invariant broke. Nothing the client did, so
//!   never answered as a client error: the HTTP layer logs it once, inside
//!   the request's span (which carries the request id), and answers
//!   `503 temporarily_unavailable` when the database is unreachable and
//!   `500 server_error` otherwise, without detail.
//!
//! Domain code returns `Result<T, Error>` and uses `?` on store calls; it
//! never builds a response and never swallows a store error.

use crate::store::StoreError;
use dtr_proto::{ErrorCode, OAuthError};

/// What a request path fails with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is refused with this OAuth error.
    #[error("{}", .0.error)]
    OAuth(OAuthError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An invariant of the server broke (a value that must encode did not).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Results of request paths.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<OAuthError> for Error {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

impl Error {
    /// A broken invariant, described for the log.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    /// Whether this is a fault of the server rather than a refusal.
    pub fn is_fault(&self) -> bool {
        !matches!(self, Self::OAuth(_))
    }

    /// The OAuth error a client is answered with. A fault becomes
    /// `temporarily_unavailable` (the database is unreachable: retry) or
    /// `server_error`, with a fixed description: database text never
    /// reaches a client. Call [`Error::log`] first for faults; the HTTP
    /// layer does both.
    pub fn to_oauth(&self) -> OAuthError {
        match self {
            Self::OAuth(e) => e.clone(),
            Self::Store(StoreError::Unavailable(_)) => OAuthError::with_description(
                ErrorCode::TemporarilyUnavailable,
                "the service is temporarily unavailable; retry later",
            )
            .with_retry_after(1),
            Self::Store(_) | Self::Internal(_) => {
                OAuthError::with_description(ErrorCode::ServerError, "internal error")
            }
        }
    }

    /// Logs a fault (refusals are not logged here: the access log has
    /// their outcome). Called once, where the error is answered.
    pub fn log(&self) {
        if self.is_fault() {
            tracing::error!(error = %self, "request failed on a server fault");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_pass_through_and_faults_hide_their_detail() {
        let refusal = Error::from(OAuthError::new(ErrorCode::InvalidGrant));
        assert!(!refusal.is_fault());
        assert_eq!(refusal.to_oauth().error, ErrorCode::InvalidGrant);

        let down = Error::from(StoreError::Unavailable("connection refused".into()));
        assert!(down.is_fault());
        let answer = down.to_oauth();
        assert_eq!(answer.error, ErrorCode::TemporarilyUnavailable);
        assert!(!answer
            .error_description
            .unwrap_or_default()
            .contains("refused"));

        let broken = Error::from(StoreError::Database("relation \"x\" does not exist".into()));
        let answer = broken.to_oauth();
        assert_eq!(answer.error, ErrorCode::ServerError);
        assert_eq!(answer.error_description.as_deref(), Some("internal error"));
        assert_eq!(
            Error::internal("x").to_oauth().error,
            ErrorCode::ServerError
        );
    }
}
