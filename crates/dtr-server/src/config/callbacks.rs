//! `[callbacks]`: delivery of callback notifications (DTR-25..30) and the
//! key sealing their secrets at rest.

use super::{err, ConfigError};
use serde::Deserialize;

/// `[callbacks]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    /// Milliseconds after the deferred response before a callback may go
    /// out, so the client has recorded the code (DTR-27).
    pub delay_ms: u64,
    /// Attempts before a callback is given up.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter, capped at 5 min.
    pub retry_base_ms: u64,
    /// Connect timeout of a delivery.
    pub connect_timeout_ms: u64,
    /// Whole-delivery timeout (read included).
    pub timeout_ms: u64,
    /// Deliveries in flight at once, all endpoints together.
    pub concurrency: usize,
    /// Deliveries in flight at once to one host.
    pub per_endpoint_concurrency: usize,
    /// PEM file of an extra trusted root certificate (private CAs, tests).
    pub extra_root_ca: Option<String>,
    /// 32 bytes, base64url, sealing codes and notification tokens at rest
    /// until their callback is done. Without it a key is derived from the
    /// signing key in the database, which protects nothing against a
    /// database leak: set it in production.
    pub encryption_key: Option<String>,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            delay_ms: 500,
            max_attempts: 8,
            retry_base_ms: 1000,
            connect_timeout_ms: 3000,
            timeout_ms: 5000,
            concurrency: 32,
            per_endpoint_concurrency: 4,
            extra_root_ca: None,
            encryption_key: None,
        }
    }
}

impl std::fmt::Debug for CallbacksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbacksConfig")
            .field("delay_ms", &self.delay_ms)
            .field("max_attempts", &self.max_attempts)
            .field(
                "encryption_key",
                &self.encryption_key.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

impl CallbacksConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(err("callbacks.max_attempts", "must be at least 1"));
        }
        if self.concurrency == 0 || self.per_endpoint_concurrency == 0 {
            return Err(err(
                "callbacks.concurrency",
                "concurrency limits must be at least 1",
            ));
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 || self.retry_base_ms == 0 {
            return Err(err(
                "callbacks.timeout_ms",
                "timeouts and retry_base_ms must be at least 1 ms",
            ));
        }
        if let Some(p) = &self.extra_root_ca {
            let pem = std::fs::read(p)
                .map_err(|e| err("callbacks.extra_root_ca", format!("cannot read {p}: {e}")))?;
            reqwest::Certificate::from_pem(&pem).map_err(|e| err("callbacks.extra_root_ca", e))?;
        }
        if let Some(k) = &self.encryption_key {
            if self.key_bytes().is_none() {
                return Err(err(
                    "callbacks.encryption_key",
                    format!(
                        "must be 32 bytes in base64url ({} characters)",
                        43 + usize::from(k.ends_with('='))
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The configured sealing key.
    pub fn key_bytes(&self) -> Option<[u8; 32]> {
        use base64::Engine;
        let k = self.encryption_key.as_ref()?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(k.trim_end_matches('='))
            .ok()?;
        raw.try_into().ok()
    }
}
