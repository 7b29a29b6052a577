//! `[deferral]`: the lifetime and polling interval of deferral codes.

use super::{err, ConfigError};
use serde::Deserialize;

/// `[deferral]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeferralConfig {
    /// Seconds a deferral code lives (`expires_in`, DTR-8).
    pub expires_in: u64,
    /// Minimum seconds between polls (`interval`, DTR-8, DTR-19).
    pub interval: u64,
    /// `slow_down` answers before escalating to `invalid_request` (DTR-19).
    pub slow_down_limit: u32,
    /// `interaction_required` only for clients that sent
    /// `completion_mode=deferred_interactive` (they can send a user to an
    /// `interaction_uri`). Off by default: today's clients opted in with
    /// `deferred` and expect interaction.
    pub require_interactive_opt_in: bool,
}

impl Default for DeferralConfig {
    fn default() -> Self {
        Self {
            expires_in: 600,
            interval: 5,
            slow_down_limit: 3,
            require_interactive_opt_in: false,
        }
    }
}

impl DeferralConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.expires_in == 0 {
            return Err(err("deferral.expires_in", "must be at least 1 second"));
        }
        if self.interval == 0 {
            return Err(err("deferral.interval", "must be at least 1 second"));
        }
        if self.interval >= self.expires_in {
            return Err(err(
                "deferral.interval",
                "must be shorter than deferral.expires_in",
            ));
        }
        Ok(())
    }
}
