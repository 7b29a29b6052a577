//! OpenID Client-Initiated Backchannel Authentication (CIBA) Core 1.0:
//! the authentication request (section 7.1) as the backchannel
//! authentication endpoint parses it, its response (section 7.3), the
//! delivery modes (section 5) and the bridge from a deferral to CIBA
//! (`login_hint_token=urn:dtr:deferral:<deferral_code>`). Pure; the server
//! turns a request into a deferral.

use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::scope::Scope;
use crate::secret::{DeferralCode, NotificationToken, MIN_NOTIFICATION_TOKEN_LEN};
use serde::{Deserialize, Serialize};

/// Prefix of a `login_hint_token` that names a deferral of the same
/// client: the bridge from the deferral draft to CIBA (DESIGN.md).
pub const DEFERRAL_HINT_PREFIX: &str = "urn:dtr:deferral:";
/// Longest `binding_message` accepted: it is shown on a phone-sized page
/// next to the client's (section 7.1: "relatively short").
pub const MAX_BINDING_MESSAGE: usize = 128;
/// Longest `client_notification_token` (section 7.1: at most 1024
/// characters).
pub const MAX_NOTIFICATION_TOKEN: usize = 1024;

/// Token delivery modes (section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// The client polls the token endpoint.
    Poll,
    /// The server tells the client's notification endpoint to collect.
    Ping,
    /// The server sends the token response to the notification endpoint.
    Push,
}

impl DeliveryMode {
    /// Parses a registered mode.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "poll" => Some(Self::Poll),
            "ping" => Some(Self::Ping),
            "push" => Some(Self::Push),
            _ => None,
        }
    }

    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Ping => "ping",
            Self::Push => "push",
        }
    }
}

/// Who the request is about (section 7.1: exactly one hint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hint {
    /// `login_hint`: here, a username.
    LoginHint(String),
    /// `id_token_hint`: an ID token this server issued to the client.
    IdTokenHint(String),
    /// `login_hint_token` naming one of the client's deferrals (the bridge).
    Deferral(DeferralCode),
    /// Any other `login_hint_token`, which this server does not know how
    /// to read.
    OtherToken,
}

/// A parsed backchannel authentication request (section 7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackchannelRequest {
    /// The scope; always has `openid`.
    pub scope: Scope,
    /// Who is to authenticate.
    pub hint: Hint,
    /// Shown to the user on the authentication device and the client's
    /// consumption device, to tie them together.
    pub binding_message: Option<String>,
    /// The user's secret code, when sent.
    pub user_code: Option<String>,
    /// A shorter lifetime the client asks for (seconds).
    pub requested_expiry: Option<u64>,
    /// `acr_values`, as sent.
    pub acr_values: Option<String>,
    /// The bearer token of ping and push deliveries.
    pub notification_token: Option<NotificationToken>,
}

fn invalid(description: &str) -> OAuthError {
    OAuthError::invalid_request(description.to_owned())
}

fn no_control(v: &str) -> bool {
    !v.chars().any(char::is_control)
}

impl BackchannelRequest {
    /// Parses the form of an authentication request; client
    /// authentication parameters are the caller's. Errors are section
    /// 13's: `invalid_request`, `invalid_scope`, `invalid_binding_message`.
    pub fn parse(p: &Params) -> Result<Self, OAuthError> {
        // Signed authentication requests (section 7.1.1) are verified by
        // the server, which passes their claims here; one is never nested
        // in another.
        if p.contains("request") {
            return Err(invalid(
                "a signed authentication request (request) cannot carry another",
            ));
        }
        let scope = Scope::parse(p.require("scope")?)?;
        if !scope.contains(crate::oidc::SCOPE_OPENID) {
            return Err(OAuthError::with_description(
                ErrorCode::InvalidScope,
                "a CIBA request must have the openid scope (CIBA Core section 7.1)",
            ));
        }
        let hints = [
            p.get("login_hint"),
            p.get("login_hint_token"),
            p.get("id_token_hint"),
        ];
        if hints.iter().filter(|h| h.is_some()).count() != 1 {
            return Err(invalid(
                "send exactly one of login_hint, login_hint_token and id_token_hint",
            ));
        }
        let hint = match hints {
            [Some(u), _, _] if !u.is_empty() && u.len() <= 256 && no_control(u) => {
                Hint::LoginHint(u.to_owned())
            }
            [Some(_), _, _] => return Err(invalid("login_hint is malformed")),
            [_, Some(t), _] => match t.strip_prefix(DEFERRAL_HINT_PREFIX) {
                Some(code) if !code.is_empty() => Hint::Deferral(DeferralCode::new(code)),
                _ => Hint::OtherToken,
            },
            [_, _, Some(t)] => Hint::IdTokenHint(t.to_owned()),
            _ => return Err(invalid("a hint is required")),
        };
        let binding_message = match p.get("binding_message") {
            None => None,
            Some(m)
                if !m.trim().is_empty()
                    && m.chars().count() <= MAX_BINDING_MESSAGE
                    && no_control(m) =>
            {
                Some(m.to_owned())
            }
            Some(_) => {
                return Err(OAuthError::with_description(
                    ErrorCode::Other("invalid_binding_message".into()),
                    format!(
                        "binding_message must be 1-{MAX_BINDING_MESSAGE} characters of plain text"
                    ),
                ))
            }
        };
        let user_code = match p.get("user_code") {
            Some(c) if c.len() > 256 || !no_control(c) => {
                return Err(invalid("user_code is malformed"))
            }
            c => c.map(str::to_owned),
        };
        let requested_expiry = match p.get("requested_expiry") {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 && v.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => return Err(invalid("requested_expiry must be a positive integer")),
            },
        };
        let acr_values = match p.get("acr_values") {
            Some(a) if a.len() > 512 || !no_control(a) => {
                return Err(invalid("acr_values is malformed"))
            }
            a => a.map(str::to_owned),
        };
        let notification_token = match p.get("client_notification_token") {
            None => None,
            Some(t) => {
                // A bearer token (RFC 6750 section 2.1 b64token) of at
                // least 128 bits (section 7.1), as the draft's (DTR-12).
                let ok = t.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
                });
                if !ok || t.len() < MIN_NOTIFICATION_TOKEN_LEN || t.len() > MAX_NOTIFICATION_TOKEN {
                    return Err(invalid(
                        "client_notification_token must be a bearer token of 128 bits or more and at most 1024 characters",
                    ));
                }
                Some(NotificationToken::new(t))
            }
        };
        Ok(Self {
            scope,
            hint,
            binding_message,
            user_code,
            requested_expiry,
            acr_values,
            notification_token,
        })
    }
}

/// The successful authentication request response (section 7.3).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackchannelResponse {
    /// The handle of the request at the token endpoint.
    pub auth_req_id: String,
    /// Seconds it lives.
    pub expires_in: u64,
    /// Seconds between polls (poll and ping modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
}

impl std::fmt::Debug for BackchannelResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackchannelResponse")
            .field("auth_req_id", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<BackchannelRequest, OAuthError> {
        BackchannelRequest::parse(&Params::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn a_full_request() {
        let r = parse(&[
            ("scope", "openid payments"),
            ("login_hint", "alice"),
            ("binding_message", "W4SCT"),
            ("requested_expiry", "120"),
            ("acr_values", "urn:example:pin"),
            (
                "client_notification_token",
                "8d67dc78-7faa-4d41-aabd-67707b374255",
            ),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(r.hint, Hint::LoginHint("alice".into()));
        assert_eq!(r.binding_message.as_deref(), Some("W4SCT"));
        assert_eq!(r.requested_expiry, Some(120));
        assert!(r.notification_token.is_some());
    }

    #[test]
    fn hints_exactly_one() {
        let e = parse(&[("scope", "openid")]).unwrap_err();
        assert_eq!(e.error, ErrorCode::InvalidRequest);
        let e = parse(&[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("id_token_hint", "x.y.z"),
        ])
        .unwrap_err();
        assert_eq!(e.error, ErrorCode::InvalidRequest);
        let r = parse(&[
            ("scope", "openid"),
            ("login_hint_token", "urn:dtr:deferral:abc"),
        ]);
        assert!(matches!(r.map(|r| r.hint), Ok(Hint::Deferral(_))));
        let r = parse(&[("scope", "openid"), ("login_hint_token", "eyJ.x.y")]);
        assert_eq!(r.map(|r| r.hint), Ok(Hint::OtherToken));
    }

    #[test]
    fn openid_is_required_and_request_objects_refused() {
        let e = parse(&[("scope", "payments"), ("login_hint", "alice")]).unwrap_err();
        assert_eq!(e.error, ErrorCode::InvalidScope);
        let e = parse(&[("scope", "openid"), ("request", "eyJ.x.y")]).unwrap_err();
        assert_eq!(e.error, ErrorCode::InvalidRequest);
        assert!(e.error_description.unwrap_or_default().contains("request"));
    }

    #[test]
    fn bad_values() {
        let base = [("scope", "openid"), ("login_hint", "alice")];
        let with = |k: &'static str, v: &'static str| {
            let mut v2 = base.to_vec();
            v2.push((k, v));
            parse(&v2)
        };
        assert_eq!(
            with("binding_message", "a\nb").unwrap_err().error,
            ErrorCode::Other("invalid_binding_message".into())
        );
        let long = "x".repeat(MAX_BINDING_MESSAGE + 1);
        let mut v2 = base.to_vec();
        v2.push(("binding_message", &long));
        assert!(parse(&v2).is_err());
        assert!(with("requested_expiry", "0").is_err());
        assert!(with("requested_expiry", "-5").is_err());
        assert!(with("client_notification_token", "short").is_err());
    }
}
