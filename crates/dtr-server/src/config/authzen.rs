//! `[authzen]`: the OpenID AuthZEN policy decision point that rules with
//! `action = "authzen"` ask (see [`crate::authzen`]), and the Access
//! Request and Approval Profile (ARAP) services its requestable denials
//! send dtr to.

use super::{err, ConfigError};
use serde::Deserialize;

/// `[authzen]`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthzenConfig {
    /// Base URL of the PDP: its metadata is read from
    /// `{pdp}/.well-known/authzen-configuration` (AuthZEN Authorization
    /// API 1.0, PDP metadata), whose `policy_decision_point` must equal it.
    pub pdp: String,
    /// Bearer credential sent to the PDP and to the access request
    /// service (RFC 6750); optional.
    #[serde(default)]
    pub token: Option<String>,
    /// Whole-call timeout of one PDP or access request call (ms).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of a failed call (a network error or a 5xx), each after a
    /// short pause; the request fails closed after the last.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Consecutive failed calls after which the circuit opens: calls then
    /// fail at once (`temporarily_unavailable`) until `breaker_cooldown_ms`
    /// has passed, when one probe call is let through.
    #[serde(default = "default_breaker_threshold")]
    pub breaker_threshold: u32,
    /// How long an open circuit refuses calls before its probe (ms).
    #[serde(default = "default_breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
    /// Origins (`https://host[:port]`) of access request services dtr
    /// may submit to besides the PDP's own origin and that of the
    /// `access_request_endpoint` in its metadata (ARAP "Trusting URLs
    /// from the Requestable Denial": an explicit allowlist).
    #[serde(default)]
    pub access_request_origins: Vec<String>,
}

fn default_timeout_ms() -> u64 {
    3000
}
fn default_retries() -> u32 {
    2
}
fn default_breaker_threshold() -> u32 {
    5
}
fn default_breaker_cooldown_ms() -> u64 {
    10_000
}

impl std::fmt::Debug for AuthzenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzenConfig")
            .field("pdp", &self.pdp)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("timeout_ms", &self.timeout_ms)
            .field("retries", &self.retries)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cooldown_ms", &self.breaker_cooldown_ms)
            .field("access_request_origins", &self.access_request_origins)
            .finish()
    }
}

impl AuthzenConfig {
    /// Checks every key; `pdp` and the origins are https (loopback http
    /// in `dev_mode`), and `pdp` loses a trailing slash.
    pub(super) fn validate(mut self, dev_mode: bool) -> Result<Self, ConfigError> {
        let url = crate::outbound::check_form(&self.pdp, dev_mode).map_err(|e| {
            err(
                "authzen.pdp",
                format!("{e} (https; http only on loopback with dev_mode = true)"),
            )
        })?;
        if url.query().is_some() {
            return Err(err("authzen.pdp", "must not carry a query"));
        }
        self.pdp = self.pdp.trim_end_matches('/').to_owned();
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err(err("authzen.timeout_ms", "between 1 and 60000"));
        }
        if self.retries > 5 {
            return Err(err("authzen.retries", "at most 5"));
        }
        if self.breaker_threshold == 0 {
            return Err(err("authzen.breaker_threshold", "at least 1"));
        }
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err(err("authzen.token", "must not be empty"));
        }
        for (i, o) in self.access_request_origins.iter_mut().enumerate() {
            let u = crate::outbound::check_form(o, dev_mode)
                .map_err(|e| err(&format!("authzen.access_request_origins[{i}]"), e))?;
            if u.path() != "/" || u.query().is_some() {
                return Err(err(
                    &format!("authzen.access_request_origins[{i}]"),
                    "an origin: scheme, host and port only",
                ));
            }
            *o = u.origin().ascii_serialization();
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{msg, validate};

    #[test]
    fn authzen_rules_need_the_section() {
        let rule = "[[policy]]\nscope_any = [\"payments\"]\naction = \"authzen\"\n";
        assert!(msg(rule).contains("policy[0].action"), "{}", msg(rule));
        let ok = format!(
            "dev_mode = true\n{rule}[authzen]\npdp = \"http://127.0.0.1:3592/\"\ntoken = \"t\"\n"
        );
        let c = validate(&ok).unwrap();
        let a = c.authzen.unwrap();
        assert_eq!(a.pdp, "http://127.0.0.1:3592");
        // The credential never reaches a log line.
        assert!(!format!("{a:?}").contains("\"t\""));
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("[authzen]\npdp = \"http://pdp.example\"\n", "authzen.pdp"),
            ("[authzen]\npdp = \"https://pdp.example\"\ntimeout_ms = 0\n", "authzen.timeout_ms"),
            ("[authzen]\npdp = \"https://pdp.example\"\nbreaker_threshold = 0\n", "authzen.breaker_threshold"),
            ("[authzen]\npdp = \"https://pdp.example\"\nretries = 9\n", "authzen.retries"),
            (
                "[authzen]\npdp = \"https://pdp.example\"\naccess_request_origins = [\"https://ars.example/x\"]\n",
                "authzen.access_request_origins[0]",
            ),
            ("[authzen]\npdp = \"https://pdp.example\"\nsurprise = 1\n", "surprise"),
            ("[[policy]]\naction = \"authzen\"\napprove_after_seconds = 1\n", "approve_after_seconds"),
        ] {
            assert!(msg(text).contains(key), "{text}: {}", msg(text));
        }
    }
}
