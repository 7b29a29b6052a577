//! The device authorization grant (RFC 8628): user codes, the device
//! authorization request and response, and the decision of a device-code
//! token request. Pure logic; the server stores and sequences it.
//!
//! The device grant has a pending state of its own ("the user has not
//! acted yet", RFC 8628 section 3.5) that must never be confused with a
//! deferral's: a device-code request answers RFC 8628's
//! `authorization_pending`/`slow_down` *without* a `deferral_code`, and
//! only once the user has approved can the token request be deferred by
//! policy (DTR-3), after which the device code is spent.

use crate::completion_mode::CompletionMode;
use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::scope::Scope;
use crate::secret::sha256_b64;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// RFC 8628 section 6.1: consonants only (no vowels, so no words), upper
/// case, nothing easily confused; 20 characters.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Characters of a user code: 20^8, about 34.5 bits, which RFC 8628
/// section 5.1 considers enough together with rate limiting of entries.
pub const USER_CODE_LEN: usize = 8;

/// Added to a device code's polling interval on every `slow_down`
/// (RFC 8628 section 3.5).
pub const SLOW_DOWN_INCREMENT_MS: i64 = 5_000;

/// A user code in canonical form (eight characters of the alphabet, no
/// dash). Short-lived and low in entropy, it is still a credential:
/// `Debug` hides it and the server stores only its hash.
#[derive(Clone, PartialEq, Eq)]
pub struct UserCode(String);

impl UserCode {
    /// A fresh code from the OS CSPRNG, uniform over the alphabet
    /// (rejection sampling: 240 is the largest multiple of 20 below 256).
    pub fn generate() -> Self {
        let mut out = String::with_capacity(USER_CODE_LEN);
        let mut buf = [0u8; 32];
        while out.len() < USER_CODE_LEN {
            OsRng.fill_bytes(&mut buf);
            for b in buf {
                if out.len() == USER_CODE_LEN {
                    break;
                }
                if b < 240 {
                    out.push(char::from(USER_CODE_ALPHABET[usize::from(b % 20)]));
                }
            }
        }
        Self(out)
    }

    /// Reads what a user typed: case, dashes and spaces do not matter
    /// (RFC 8628 section 6.1). `None` unless exactly eight characters of
    /// the alphabet remain, so nothing else reaches the database.
    pub fn parse(input: &str) -> Option<Self> {
        if input.len() > 64 {
            return None;
        }
        let code: String = input
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '\t'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
            .then_some(Self(code))
    }

    /// As shown to the user: `XXXX-XXXX`.
    pub fn display(&self) -> String {
        let (a, b) = self.0.split_at(USER_CODE_LEN / 2);
        format!("{a}-{b}")
    }

    /// The storage form: SHA-256 of the canonical code.
    pub fn hash(&self) -> String {
        sha256_b64(&self.0)
    }
}

impl std::fmt::Debug for UserCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserCode([redacted])")
    }
}

/// A device authorization request (RFC 8628 section 3.1), client
/// authentication aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAuthorizationRequest {
    /// Requested scope; `None` means the client's registered scope.
    pub scope: Option<Scope>,
    /// The pre-token hint (DTR-4): remembered for the hint-consistency
    /// rule (DTR-5), never visible in the response.
    pub completion_mode: CompletionMode,
}

impl DeviceAuthorizationRequest {
    /// Parses the form body.
    pub fn parse(p: &Params) -> Result<Self, OAuthError> {
        Ok(Self {
            scope: p.get("scope").map(Scope::parse).transpose()?,
            completion_mode: CompletionMode::parse(p.get("completion_mode"))?,
        })
    }
}

/// The device authorization response (RFC 8628 section 3.2); its shape
/// never depends on the hint (DTR-4).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAuthorizationResponse {
    /// The device verification code.
    pub device_code: String,
    /// The code the user enters, as `XXXX-XXXX`.
    pub user_code: String,
    /// Where the user enters it.
    pub verification_uri: String,
    /// The same with the code filled in (RFC 8628 section 3.3.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    /// Lifetime of both codes in seconds.
    pub expires_in: u64,
    /// Minimum seconds between token requests.
    #[serde(default = "default_interval")]
    pub interval: u64,
}

/// RFC 8628 section 3.2: five seconds when the server sends none.
fn default_interval() -> u64 {
    5
}

impl std::fmt::Debug for DeviceAuthorizationResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorizationResponse")
            .field("device_code", &"[redacted]")
            .field("user_code", &"[redacted]")
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// Stored states of a device code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// Waiting for the user.
    Pending,
    /// The user approved; the next token request collects it.
    Approved,
    /// The user denied.
    Denied,
    /// Spent: a token was issued or the request was deferred.
    Redeemed,
}

impl DeviceState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Redeemed => "redeemed",
        }
    }
}

impl std::str::FromStr for DeviceState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "redeemed" => Self::Redeemed,
            other => return Err(format!("unknown device code state '{other}'")),
        })
    }
}

/// What a device-code token request needs to know. Times in ms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceView {
    /// Stored state.
    pub state: DeviceState,
    /// Expiry of the device code.
    pub expires_at: i64,
    /// Previous token request.
    pub last_polled_at: Option<i64>,
    /// Current polling interval (grows by 5 s per `slow_down`).
    pub interval_ms: i64,
}

/// How to answer a device-code token request (RFC 8628 section 3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceDecision {
    /// `authorization_pending`: the user has not acted yet. Never carries
    /// a `deferral_code`.
    Pending,
    /// `slow_down`: too fast; the interval grows by 5 s from now on.
    SlowDown,
    /// `access_denied`: the user denied.
    Denied,
    /// `expired_token`: the code expired before it was collected.
    Expired,
    /// `invalid_grant`: already used (a token was issued or deferred).
    Spent,
    /// Approved: issue (or defer, by policy) now.
    Collect,
}

/// Decides a device-code token request at `now`.
pub fn decide_device(v: &DeviceView, now: i64) -> DeviceDecision {
    match v.state {
        DeviceState::Redeemed => DeviceDecision::Spent,
        _ if now >= v.expires_at => DeviceDecision::Expired,
        DeviceState::Denied => DeviceDecision::Denied,
        DeviceState::Approved => DeviceDecision::Collect,
        DeviceState::Pending => {
            if v.last_polled_at.is_some_and(|t| now - t < v.interval_ms) {
                DeviceDecision::SlowDown
            } else {
                DeviceDecision::Pending
            }
        }
    }
}

impl DeviceDecision {
    /// The error response of the decisions that are errors.
    pub fn to_error(self, interval_ms: i64) -> Option<OAuthError> {
        let e = |code, d: &str| Some(OAuthError::with_description(code, d));
        match self {
            Self::Pending => e(
                ErrorCode::AuthorizationPending,
                "the user has not yet approved this device",
            ),
            Self::SlowDown => Some(OAuthError::with_description(
                ErrorCode::SlowDown,
                format!(
                    "poll at most every {} seconds from now on",
                    (interval_ms + SLOW_DOWN_INCREMENT_MS) / 1000
                ),
            )),
            Self::Denied => e(ErrorCode::AccessDenied, "the user denied the request"),
            Self::Expired => e(ErrorCode::ExpiredToken, "the device code has expired"),
            Self::Spent => e(ErrorCode::InvalidGrant, "invalid device code"),
            Self::Collect => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_the_alphabet() {
        for _ in 0..200 {
            let c = UserCode::generate();
            assert_eq!(c.0.len(), USER_CODE_LEN);
            assert!(c.0.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
            let shown = c.display();
            assert_eq!(shown.len(), 9);
            assert_eq!(&shown[4..5], "-");
            assert_eq!(UserCode::parse(&shown), Some(c));
        }
        assert_ne!(UserCode::generate(), UserCode::generate());
    }

    #[test]
    fn user_code_input_ignores_case_and_dashes() {
        let c = UserCode::parse("WDJB-MJHT").unwrap();
        assert_eq!(UserCode::parse("wdjbmjht"), Some(c.clone()));
        assert_eq!(UserCode::parse(" wdjb - mjht "), Some(c.clone()));
        assert_eq!(c.display(), "WDJB-MJHT");
        assert_eq!(c.hash(), UserCode::parse("wdjb-mjht").unwrap().hash());
        // Vowels, digits, the wrong length, markup: not a code.
        for bad in [
            "WDJB-MJHA",
            "WDJB-MJH1",
            "WDJB-MJH",
            "WDJB-MJHTT",
            "",
            "<script>",
            &"B".repeat(100),
        ] {
            assert!(UserCode::parse(bad).is_none(), "{bad:?}");
        }
        assert!(!format!("{c:?}").contains("WDJB"));
    }

    #[test]
    fn device_request_remembers_the_hint() {
        let p = Params::from_pairs([("scope", "read"), ("completion_mode", "deferred")]);
        let r = DeviceAuthorizationRequest::parse(&p).unwrap();
        assert!(r.completion_mode.deferred);
        assert_eq!(r.scope.map(|s| s.to_string()), Some("read".into()));
        let bad = Params::from_pairs([("completion_mode", "deferred deferred")]);
        assert!(DeviceAuthorizationRequest::parse(&bad).is_err());
    }

    fn view(state: DeviceState, last: Option<i64>) -> DeviceView {
        DeviceView {
            state,
            expires_at: 100_000,
            last_polled_at: last,
            interval_ms: 5_000,
        }
    }

    #[test]
    fn decisions_follow_rfc_8628_section_3_5() {
        use DeviceDecision::*;
        assert_eq!(
            decide_device(&view(DeviceState::Pending, None), 1_000),
            Pending
        );
        assert_eq!(
            decide_device(&view(DeviceState::Pending, Some(1_000)), 5_999),
            SlowDown
        );
        assert_eq!(
            decide_device(&view(DeviceState::Pending, Some(1_000)), 6_000),
            Pending
        );
        assert_eq!(
            decide_device(&view(DeviceState::Denied, None), 1_000),
            Denied
        );
        assert_eq!(
            decide_device(&view(DeviceState::Approved, Some(999)), 1_000),
            Collect
        );
        assert_eq!(
            decide_device(&view(DeviceState::Approved, None), 100_000),
            Expired
        );
        assert_eq!(
            decide_device(&view(DeviceState::Pending, None), 100_000),
            Expired
        );
        assert_eq!(
            decide_device(&view(DeviceState::Redeemed, None), 1_000),
            Spent
        );
        assert_eq!(
            decide_device(&view(DeviceState::Redeemed, None), 200_000),
            Spent
        );
    }

    #[test]
    fn device_pending_is_not_a_deferral() {
        let e = DeviceDecision::Pending.to_error(5_000).unwrap();
        assert_eq!(e.error, ErrorCode::AuthorizationPending);
        let body = serde_json::to_value(&e).unwrap();
        assert!(body.get("deferral_code").is_none());
        assert!(body.get("interaction_uri").is_none());
        let s = DeviceDecision::SlowDown.to_error(5_000).unwrap();
        assert!(s.error_description.unwrap().contains("10 seconds"));
        assert!(DeviceDecision::Collect.to_error(5_000).is_none());
    }

    #[test]
    fn response_debug_hides_codes() {
        let r = DeviceAuthorizationResponse {
            device_code: "DEVSECRET".into(),
            user_code: "BCDF-GHJK".into(),
            verification_uri: "https://as/device".into(),
            verification_uri_complete: None,
            expires_in: 600,
            interval: 5,
        };
        let d = format!("{r:?}");
        assert!(!d.contains("DEVSECRET") && !d.contains("BCDF"));
    }
}
