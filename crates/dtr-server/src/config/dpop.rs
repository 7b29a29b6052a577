//! `[dpop]`: DPoP (RFC 9449) proof checks.

use super::{err, ConfigError};
use serde::Deserialize;

/// `[dpop]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// Accepted distance of a proof's `iat` from now, seconds (RFC 9449
    /// section 11.1).
    pub iat_window: u64,
    /// Require server-provided nonces (RFC 9449 section 8).
    pub nonce: bool,
    /// Never defer a request without a DPoP proof, whatever the client
    /// (DTR-14 says confidential clients with secrets SHOULD bind).
    pub require_for_deferral: bool,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            iat_window: 60,
            nonce: false,
            require_for_deferral: false,
        }
    }
}

impl DpopConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.iat_window == 0 || self.iat_window > 3600 {
            return Err(err("dpop.iat_window", "must be between 1 and 3600 seconds"));
        }
        Ok(())
    }
}
