//! `[admin]`: the bearer token of the admin API and the review console.

use super::{err, ConfigError};
use serde::Deserialize;

/// Fewest characters of `[admin] token`: the token is compared as a
/// whole, so its length is all that stands between an attacker and the
/// admin API (at least 32 random characters is ~190 bits).
pub const ADMIN_TOKEN_MIN_LEN: usize = 32;

/// `[admin]`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token of the admin API and the review console, at least
    /// [`ADMIN_TOKEN_MIN_LEN`] characters; without one the admin API is off.
    /// Failed attempts are throttled like client secrets (`[throttle]`).
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl AdminConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = &self.token {
            if t.chars().count() < ADMIN_TOKEN_MIN_LEN {
                return Err(err(
                    "admin.token",
                    format!("must be at least {ADMIN_TOKEN_MIN_LEN} characters"),
                ));
            }
        }
        Ok(())
    }
}
