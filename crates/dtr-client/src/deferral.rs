//! The outcome of a token request and the saved state of a deferral.

use dtr_proto::secret::DeferralCode;
use dtr_proto::token::{DeferredResponse, TokenResponse};
use dtr_proto::{ErrorCode, OAuthError};
use serde::{Deserialize, Serialize};

/// What the token endpoint answered.
///
/// The HTTP status and headers are not kept here; call
/// [`crate::Client::token_request_reply`] (or the other `*_reply` methods)
/// to get them in a [`crate::TokenReply`].
#[derive(Clone, Debug, PartialEq)]
pub enum TokenResult {
    /// HTTP 200: the token response (on a poll, the originating grant's
    /// response, DTR-20).
    Token(TokenResponse),
    /// A deferred response (DTR-8, DTR-11): a 400 whose JSON carries a
    /// `deferral_code`.
    Deferred(Deferral),
    /// Any other OAuth error response, including `authorization_pending`,
    /// `interaction_required` and `slow_down` answers to polls, which carry
    /// no code (DTR-18).
    Error(OAuthError),
}

impl TokenResult {
    /// The error code of an error or deferred answer.
    pub fn error_code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Token(_) => None,
            Self::Deferred(d) => Some(&d.error),
            Self::Error(e) => Some(&e.error),
        }
    }
}

/// A deferral the client holds: everything needed to resume polling or to
/// cancel after a restart. It serialises with serde, including the code's
/// value, so store it like any other credential (DTR-29). `Debug` redacts
/// the code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferral {
    /// The deferral code (DTR-9); opaque to the client.
    pub code: DeferralCode,
    /// Lifetime of the code in seconds, counted from `received_at_unix_ms`.
    pub expires_in: u64,
    /// Minimum seconds between polls (DTR-19).
    pub interval: u64,
    /// Where interaction takes place, with `interaction_required` (DTR-11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction_uri: Option<String>,
    /// Progress information of the deferred response (DTR-10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the deferred response was received, in milliseconds since the
    /// Unix epoch.
    pub received_at_unix_ms: i64,
    /// The issuer that deferred the request.
    pub issuer: String,
    /// The client the code belongs to.
    pub client_id: String,
    /// `authorization_pending` or `interaction_required`.
    #[serde(default = "pending")]
    pub error: ErrorCode,
    /// RFC 7638 thumbprint of the DPoP key the code is bound to, when the
    /// initial request carried a proof (DTR-13): polls and cancellation
    /// must prove that key. Saved state from before DPoP has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

fn pending() -> ErrorCode {
    ErrorCode::AuthorizationPending
}

impl Deferral {
    /// Builds a deferral from the wire response.
    pub fn from_response(
        r: DeferredResponse,
        received_at_unix_ms: i64,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        Self {
            code: DeferralCode::new(r.deferral_code),
            expires_in: r.expires_in,
            interval: r.interval,
            interaction_uri: r.interaction_uri,
            description: r.error_description,
            received_at_unix_ms,
            issuer: issuer.into(),
            client_id: client_id.into(),
            error: r.error,
            dpop_jkt: None,
        }
    }

    /// The same deferral, recorded as bound to the DPoP key `jkt`.
    pub fn bound_to(mut self, jkt: Option<String>) -> Self {
        self.dpop_jkt = jkt;
        self
    }

    /// When the code stops being valid, in milliseconds since the Unix
    /// epoch.
    pub fn expires_at_unix_ms(&self) -> i64 {
        let ms = i64::try_from(self.expires_in.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.received_at_unix_ms.saturating_add(ms)
    }

    /// The deferred response this deferral came from, as it appeared on the
    /// wire (what `dtr token --no-wait` prints).
    pub fn to_response(&self) -> DeferredResponse {
        DeferredResponse {
            error: self.error.clone(),
            deferral_code: self.code.secret().to_owned(),
            expires_in: self.expires_in,
            interval: self.interval,
            interaction_uri: self.interaction_uri.clone(),
            error_description: self.description.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Deferral {
        Deferral::from_response(
            DeferredResponse {
                error: ErrorCode::InteractionRequired,
                deferral_code: "CODEVALUE".into(),
                expires_in: 600,
                interval: 5,
                interaction_uri: Some("https://as/interact/h".into()),
                error_description: Some("step=document_review".into()),
            },
            1_000,
            "https://as",
            "svc",
        )
    }

    #[test]
    fn round_trips_through_json_with_the_code() {
        // Saved and resumed after a restart: the value must survive.
        let d = sample();
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("CODEVALUE"));
        let back: Deferral = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.expires_at_unix_ms(), 601_000);
    }

    #[test]
    fn debug_redacts_the_code() {
        // DTR-36
        assert!(!format!("{:?}", sample()).contains("CODEVALUE"));
    }

    #[test]
    fn older_saved_state_without_error_defaults_to_pending() {
        let json = r#"{"code":"c","expires_in":1,"interval":1,"received_at_unix_ms":0,"issuer":"i","client_id":"c"}"#;
        let d: Deferral = serde_json::from_str(json).unwrap();
        assert_eq!(d.error, ErrorCode::AuthorizationPending);
    }

    #[test]
    fn binding_survives_saving_and_old_state_is_unbound() {
        let d = sample().bound_to(Some("JKT".into()));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["dpop_jkt"], "JKT");
        let back: Deferral = serde_json::from_value(json).unwrap();
        assert_eq!(back.dpop_jkt.as_deref(), Some("JKT"));
        let unbound = serde_json::to_value(sample()).unwrap();
        assert!(unbound.get("dpop_jkt").is_none());
    }

    #[test]
    fn to_response_restores_the_wire_shape() {
        let r = sample().to_response();
        assert_eq!(r.deferral_code, "CODEVALUE");
        assert_eq!(r.error, ErrorCode::InteractionRequired);
        assert_eq!(r.interval, 5);
    }
}
