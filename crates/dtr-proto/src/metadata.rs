//! Authorization server metadata (RFC 8414) with the DTR members (DTR-7).

use serde::{Deserialize, Serialize};

/// The metadata document. The server fills it from its configuration and
/// the shared [`crate::paths`]; the client library reads it for discovery.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationServerMetadata {
    /// The issuer identifier (RFC 8414 section 2).
    pub issuer: String,
    /// The token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// Signing keys of access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// RFC 7009 revocation endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// RFC 7662 introspection endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// Scopes the server knows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// RFC 8414: REQUIRED; empty while no authorization endpoint is offered.
    #[serde(default)]
    pub response_types_supported: Vec<String>,
    /// Grant types, including the polling grant (DTR-7).
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// Client authentication methods at the token endpoint.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Client authentication methods at the revocation endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// Client authentication methods at the introspection endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// Token types the revocation endpoint accepts, including deferral
    /// codes (DTR-7).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation_endpoint_token_type_values_supported: Vec<String>,
    /// DTR support (DTR-7).
    #[serde(default)]
    pub deferred_token_response_supported: bool,
    /// RFC 9449 section 5.1: algorithms accepted in DPoP proofs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Members this crate does not model, kept for the client library.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl AuthorizationServerMetadata {
    /// Whether revocation accepts deferral codes, i.e. whether a client can
    /// cancel (DTR-7, DTR-31).
    pub fn supports_deferral_cancellation(&self) -> bool {
        self.revocation_endpoint.is_some()
            && self
                .revocation_endpoint_token_type_values_supported
                .iter()
                .any(|t| t == crate::TOKEN_TYPE_DEFERRAL_CODE)
    }

    /// Whether the polling grant is advertised.
    pub fn supports_polling(&self) -> bool {
        self.deferred_token_response_supported
            && self
                .grant_types_supported
                .iter()
                .any(|g| g == crate::GRANT_TYPE_DEFERRED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtr_members_round_trip() {
        let m = AuthorizationServerMetadata {
            issuer: "https://as".into(),
            revocation_endpoint: Some("https://as/revoke".into()),
            grant_types_supported: vec![crate::GRANT_TYPE_DEFERRED.into()],
            revocation_endpoint_token_type_values_supported: vec![
                crate::TOKEN_TYPE_DEFERRAL_CODE.into()
            ],
            deferred_token_response_supported: true,
            ..Default::default()
        };
        let json = serde_json::to_value(&m).unwrap_or_default();
        assert_eq!(json["deferred_token_response_supported"], true);
        let back: AuthorizationServerMetadata = serde_json::from_value(json).unwrap_or_default();
        assert!(back.supports_deferral_cancellation());
        assert!(back.supports_polling());
    }
}
