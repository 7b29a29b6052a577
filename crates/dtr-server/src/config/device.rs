//! `[device]`: the device authorization grant (RFC 8628): code lifetimes,
//! polling interval and the budget of wrong user-code entries.

use super::ConfigError;
use serde::Deserialize;

/// `[device]` of the configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    /// Seconds a device code and its user code live (`expires_in`).
    pub expires_in: u64,
    /// Minimum seconds between device-code token requests (`interval`).
    pub interval: u64,
    /// Wrong user-code entries allowed per login session, and per user,
    /// within `failure_window` seconds (RFC 8628 section 5.1).
    pub max_user_code_failures: u32,
    /// Window of `max_user_code_failures`, seconds.
    pub failure_window: u64,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            expires_in: 600,
            interval: 5,
            max_user_code_failures: 5,
            failure_window: 900,
        }
    }
}

impl DeviceConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = |k: &str, m: &str| Err(ConfigError(format!("config key `device.{k}`: {m}")));
        if self.expires_in == 0 || self.expires_in > 86_400 {
            return e("expires_in", "must be between 1 and 86400 seconds");
        }
        if self.interval == 0 || self.interval >= self.expires_in {
            return e(
                "interval",
                "must be at least 1 second and shorter than device.expires_in",
            );
        }
        if self.max_user_code_failures == 0 {
            return e("max_user_code_failures", "must be at least 1");
        }
        if self.failure_window == 0 || self.failure_window > 3_600 {
            return e("failure_window", "must be between 1 and 3600 seconds");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        assert!(DeviceConfig::default().validate().is_ok());
        let bad = DeviceConfig {
            interval: 600,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().0.contains("device.interval"));
        let bad = DeviceConfig {
            expires_in: 0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().0.contains("device.expires_in"));
        let bad = DeviceConfig {
            max_user_code_failures: 0,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .0
            .contains("device.max_user_code_failures"));
    }
}
