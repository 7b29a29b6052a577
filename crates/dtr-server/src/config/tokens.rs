//! `[tokens]`: access and refresh token lifetimes.

use super::{err, ConfigError};
use serde::Deserialize;

/// `[tokens]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Access token lifetime in seconds.
    pub access_token_ttl: u64,
    /// Refresh token lifetime in seconds.
    pub refresh_token_ttl: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: 3600,
            refresh_token_ttl: 86400,
        }
    }
}

impl TokensConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.access_token_ttl == 0 {
            return Err(err("tokens.access_token_ttl", "must be at least 1 second"));
        }
        if self.refresh_token_ttl == 0 {
            return Err(err("tokens.refresh_token_ttl", "must be at least 1 second"));
        }
        Ok(())
    }
}
