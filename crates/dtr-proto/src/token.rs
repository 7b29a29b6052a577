//! Token endpoint requests and responses: the originating grants, the
//! polling request (draft, "Token Endpoint — Polling"), the deferred
//! response (DTR-8) and the token response (OAuth 2.1 section 3.2.3).

use crate::completion_mode::CompletionMode;
use crate::error::{ErrorCode, OAuthError};
use crate::params::{printable, Params};
use crate::scope::Scope;
use crate::secret::{DeferralCode, NotificationToken, MIN_NOTIFICATION_TOKEN_LEN};
use serde::{Deserialize, Serialize};

/// The DTR extension parameters of an initial (originating) token request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeferralOptIn {
    /// The parsed `completion_mode` (DTR-1).
    pub completion_mode: CompletionMode,
    /// The client's callback bearer credential (DTR-12).
    pub notification_token: Option<NotificationToken>,
}

impl DeferralOptIn {
    /// Parses `completion_mode` and `client_notification_token` (DTR-1,
    /// DTR-12), wherever the request carries them.
    pub fn parse(p: &Params) -> Result<Self, OAuthError> {
        let completion_mode = CompletionMode::parse(p.get("completion_mode"))?;
        let notification_token = match p.get("client_notification_token") {
            None => None,
            Some(t) => {
                // DTR-12: at least 128 bits; a bearer credential per RFC 6750
                // section 2.1 (b64token characters).
                let ok_chars = t.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
                });
                if t.len() < MIN_NOTIFICATION_TOKEN_LEN || t.len() > 512 || !ok_chars {
                    return Err(OAuthError::invalid_request(
                        "client_notification_token must be a bearer token of at least 128 bits (22 base64url characters)",
                    ));
                }
                Some(NotificationToken::new(t))
            }
        };
        Ok(Self {
            completion_mode,
            notification_token,
        })
    }
}

/// A token request, tagged on `grant_type`, so that impossible parameter
/// combinations cannot be represented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenRequest {
    /// OAuth 2.1 section 4.2: the client acting on its own behalf.
    ClientCredentials {
        /// Requested scope; `None` means the client's registered scope.
        scope: Option<Scope>,
        /// RFC 9396 `authorization_details`, validated as a JSON array of
        /// objects with a `type` string.
        authorization_details: Option<serde_json::Value>,
        /// DTR opt-in.
        opt_in: DeferralOptIn,
    },
    /// RFC 8693 token exchange, deferrable like any grant.
    TokenExchange {
        /// The exchange itself.
        exchange: crate::token_exchange::TokenExchangeRequest,
        /// DTR opt-in.
        opt_in: DeferralOptIn,
    },
    /// RFC 8628 section 3.4: collecting a device authorization. Not a
    /// deferral poll: its pending answers are RFC 8628's own.
    DeviceCode {
        /// The `device_code` of the device authorization response.
        device_code: crate::secret::DeviceCode,
        /// DTR opt-in; must include `deferred` when the device
        /// authorization request did (DTR-5).
        opt_in: DeferralOptIn,
    },
    /// OAuth 2.1 section 4.1.3: exchanging an authorization code.
    AuthorizationCode {
        /// The code from the authorization response.
        code: crate::secret::AuthorizationCode,
        /// Required when the authorization request carried one.
        redirect_uri: Option<String>,
        /// The PKCE verifier (RFC 7636 section 4.5; required by OAuth 2.1).
        code_verifier: crate::secret::CodeVerifier,
        /// DTR opt-in; must include `deferred` when the authorization
        /// request did (DTR-5).
        opt_in: DeferralOptIn,
    },
    /// OAuth 2.1 section 4.3: a refresh token for a new access token.
    RefreshToken {
        /// The refresh token.
        refresh_token: crate::secret::RefreshToken,
        /// A narrower scope, if wanted.
        scope: Option<Scope>,
        /// DTR opt-in.
        opt_in: DeferralOptIn,
    },
    /// CIBA Core 1.0 section 10.1: collecting a backchannel
    /// authentication by its `auth_req_id`.
    Ciba {
        /// The `auth_req_id`: a handle of a deferral, like a deferral code.
        auth_req_id: DeferralCode,
        /// DTR opt-in: with `deferred`, an approval that still needs a
        /// reviewer under policy is deferred rather than refused.
        opt_in: DeferralOptIn,
    },
    /// `urn:ietf:params:oauth:grant-type:deferred`: a poll (DTR-15).
    Poll {
        /// The code from the deferred response.
        deferral_code: DeferralCode,
        /// The PKCE verifier, which the first poll of a deferral that began
        /// at the authorization endpoint must carry (and any later poll may).
        code_verifier: Option<crate::secret::CodeVerifier>,
        /// The redirect URI, which that first poll must carry when the
        /// authorization request named one (OAuth 2.1 section 4.1.3).
        redirect_uri: Option<String>,
    },
}

/// RFC 7636 section 4.1: a verifier is 43 to 128 unreserved characters.
fn check_code_verifier(v: &str) -> Result<(), OAuthError> {
    if (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "code_verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)",
        ))
    }
}

impl TokenRequest {
    /// Parses the body of a token request. Client authentication parameters
    /// are left to the caller.
    pub fn parse(p: &Params) -> Result<Self, OAuthError> {
        let grant_type = p.require("grant_type")?;
        match grant_type {
            crate::GRANT_TYPE_DEFERRED => {
                // DTR-6: a poll must not carry completion_mode.
                if p.contains("completion_mode") {
                    return Err(OAuthError::invalid_request(
                        "polling requests must not carry completion_mode",
                    ));
                }
                // DTR-15: a poll is `grant_type` and `deferral_code` (plus
                // client authentication). Everything else is ignored, as
                // RFC 6749 section 3.2 asks of unrecognized parameters:
                // answering `invalid_request` would end the deferral for a
                // client whose library appends its own parameters (a trace
                // id, or the session's `scope`, as many do on every token
                // request). Parameters that would alter the originating
                // request (`scope`, `resource`, `authorization_details`,
                // `audience`) are never read here, so they never apply
                // (the draft's originating-request immutability).
                let code = p.require("deferral_code")?;
                // A deferral that began at the authorization endpoint is
                // bound to the authorization request's PKCE challenge; its
                // first poll proves the verifier (RFC 7636 section 4.5).
                let code_verifier = p
                    .get("code_verifier")
                    .map(|v| check_code_verifier(v).map(|()| crate::secret::CodeVerifier::new(v)))
                    .transpose()?;
                Ok(Self::Poll {
                    deferral_code: DeferralCode::new(code),
                    code_verifier,
                    redirect_uri: p.get("redirect_uri").map(str::to_owned),
                })
            }
            crate::GRANT_TYPE_CLIENT_CREDENTIALS => {
                let scope = p.get("scope").map(Scope::parse).transpose()?;
                let authorization_details = p
                    .get("authorization_details")
                    .map(parse_authorization_details)
                    .transpose()?;
                Ok(Self::ClientCredentials {
                    scope,
                    authorization_details,
                    opt_in: DeferralOptIn::parse(p)?,
                })
            }
            crate::GRANT_TYPE_TOKEN_EXCHANGE => Ok(Self::TokenExchange {
                exchange: crate::token_exchange::TokenExchangeRequest::parse(p)?,
                opt_in: DeferralOptIn::parse(p)?,
            }),
            crate::GRANT_TYPE_DEVICE_CODE => Ok(Self::DeviceCode {
                device_code: crate::secret::DeviceCode::new(p.require("device_code")?),
                opt_in: DeferralOptIn::parse(p)?,
            }),
            crate::GRANT_TYPE_AUTHORIZATION_CODE => {
                let code_verifier = p.require("code_verifier")?;
                check_code_verifier(code_verifier)?;
                Ok(Self::AuthorizationCode {
                    code: crate::secret::AuthorizationCode::new(p.require("code")?),
                    redirect_uri: p.get("redirect_uri").map(str::to_owned),
                    code_verifier: crate::secret::CodeVerifier::new(code_verifier),
                    opt_in: DeferralOptIn::parse(p)?,
                })
            }
            // CIBA Core 1.0 section 10.1: `auth_req_id`; like a poll, any
            // other parameter is ignored (RFC 6749 section 3.2), and the
            // DTR opt-in may continue it as a deferral.
            crate::GRANT_TYPE_CIBA => Ok(Self::Ciba {
                auth_req_id: DeferralCode::new(p.require("auth_req_id")?),
                opt_in: DeferralOptIn::parse(p)?,
            }),
            crate::GRANT_TYPE_REFRESH_TOKEN => Ok(Self::RefreshToken {
                refresh_token: crate::secret::RefreshToken::new(p.require("refresh_token")?),
                scope: p.get("scope").map(Scope::parse).transpose()?,
                opt_in: DeferralOptIn::parse(p)?,
            }),
            other => Err(OAuthError::with_description(
                ErrorCode::UnsupportedGrantType,
                format!("grant type '{}' is not supported", printable(other)),
            )),
        }
    }

    /// The `grant_type` value of this request.
    pub fn grant_type(&self) -> &'static str {
        match self {
            Self::ClientCredentials { .. } => crate::GRANT_TYPE_CLIENT_CREDENTIALS,
            Self::Poll { .. } => crate::GRANT_TYPE_DEFERRED,
            Self::AuthorizationCode { .. } => crate::GRANT_TYPE_AUTHORIZATION_CODE,
            Self::RefreshToken { .. } => crate::GRANT_TYPE_REFRESH_TOKEN,
            Self::TokenExchange { .. } => crate::GRANT_TYPE_TOKEN_EXCHANGE,
            Self::DeviceCode { .. } => crate::GRANT_TYPE_DEVICE_CODE,
            Self::Ciba { .. } => crate::GRANT_TYPE_CIBA,
        }
    }
}

/// Parses RFC 9396 `authorization_details`: a JSON array of objects, each
/// with a string `type`.
pub fn parse_authorization_details(s: &str) -> Result<serde_json::Value, OAuthError> {
    let bad = || {
        OAuthError::with_description(
            ErrorCode::InvalidRequest,
            "authorization_details must be a JSON array of objects with a 'type' string (RFC 9396)",
        )
    };
    let v: serde_json::Value = serde_json::from_str(s).map_err(|_| bad())?;
    let arr = v.as_array().ok_or_else(bad)?;
    if arr.is_empty()
        || !arr
            .iter()
            .all(|o| o.get("type").and_then(|t| t.as_str()).is_some())
    {
        return Err(bad());
    }
    Ok(v)
}

/// The types named in RFC 9396 `authorization_details`.
pub fn authorization_details_types(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.get("type").and_then(|t| t.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

/// A successful token response (OAuth 2.1 section 3.2.3). On a poll it is
/// the originating grant's response (DTR-20).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// `Bearer` or `DPoP`.
    pub token_type: String,
    /// Lifetime of the access token in seconds (not of the deferral code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// A refresh token, when the grant issues one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The granted scope (possibly narrowed, DTR-24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 8693 `issued_token_type` of token exchange (DTR-20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
    /// RFC 9396 granted authorization details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    /// OpenID Connect Core 1.0 section 3.1.3.3: the ID token, when the
    /// grant's scope has `openid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("scope", &self.scope)
            .field("issued_token_type", &self.issued_token_type)
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// The deferred response (DTR-8, DTR-11): an error response that carries
/// the deferral code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferredResponse {
    /// `authorization_pending` or `interaction_required`.
    pub error: ErrorCode,
    /// The deferral code.
    pub deferral_code: String,
    /// Lifetime of the deferral code in seconds.
    pub expires_in: u64,
    /// Minimum seconds between polls.
    pub interval: u64,
    /// Where the external interaction takes place (required with `interaction_required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction_uri: Option<String>,
    /// Progress information (DTR-10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl std::fmt::Debug for DeferredResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredResponse")
            .field("error", &self.error)
            .field("deferral_code", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .field("interaction_uri", &self.interaction_uri)
            .field("error_description", &self.error_description)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<TokenRequest, OAuthError> {
        TokenRequest::parse(&Params::from_pairs(pairs.iter().copied()))
    }

    fn code(r: Result<TokenRequest, OAuthError>) -> Option<ErrorCode> {
        r.err().map(|e| e.error)
    }

    #[test]
    fn poll_is_parsed() {
        let r = parse(&[
            ("grant_type", crate::GRANT_TYPE_DEFERRED),
            ("deferral_code", "abc"),
            ("client_id", "c"),
        ]);
        assert_eq!(
            r.ok(),
            Some(TokenRequest::Poll {
                deferral_code: DeferralCode::new("abc"),
                code_verifier: None,
                redirect_uri: None,
            })
        );
    }

    #[test]
    fn poll_with_completion_mode_is_malformed() {
        // DTR-6
        let r = parse(&[
            ("grant_type", crate::GRANT_TYPE_DEFERRED),
            ("deferral_code", "a"),
            ("completion_mode", "deferred"),
        ]);
        assert_eq!(code(r), Some(ErrorCode::InvalidRequest));
    }

    #[test]
    fn poll_ignores_unknown_and_altering_parameters() {
        // DTR-15, RFC 6749 section 3.2: ignored, never applied.
        for extra in [
            "x_trace_id",
            "scope",
            "resource",
            "authorization_details",
            "audience",
            "client_notification_token",
        ] {
            let r = parse(&[
                ("grant_type", crate::GRANT_TYPE_DEFERRED),
                ("deferral_code", "a"),
                (extra, "x"),
            ]);
            assert_eq!(
                r.ok(),
                Some(TokenRequest::Poll {
                    deferral_code: DeferralCode::new("a"),
                    code_verifier: None,
                    redirect_uri: None,
                }),
                "{extra}"
            );
        }
    }

    #[test]
    fn poll_carries_a_well_formed_verifier_only() {
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        match parse(&[
            ("grant_type", crate::GRANT_TYPE_DEFERRED),
            ("deferral_code", "a"),
            ("code_verifier", v),
            ("redirect_uri", "https://app.example/cb"),
        ]) {
            Ok(TokenRequest::Poll {
                code_verifier: Some(cv),
                redirect_uri: Some(r),
                ..
            }) => {
                assert_eq!(cv.secret(), v);
                assert_eq!(r, "https://app.example/cb");
            }
            other => panic!("unexpected {other:?}"),
        }
        let short = parse(&[
            ("grant_type", crate::GRANT_TYPE_DEFERRED),
            ("deferral_code", "a"),
            ("code_verifier", "short"),
        ]);
        assert_eq!(code(short), Some(ErrorCode::InvalidRequest));
    }

    #[test]
    fn poll_without_code_is_malformed() {
        let r = parse(&[("grant_type", crate::GRANT_TYPE_DEFERRED)]);
        assert_eq!(code(r), Some(ErrorCode::InvalidRequest));
    }

    #[test]
    fn unknown_grant_type() {
        assert_eq!(
            code(parse(&[("grant_type", "password")])),
            Some(ErrorCode::UnsupportedGrantType)
        );
        assert_eq!(
            code(parse(&[("scope", "x")])),
            Some(ErrorCode::InvalidRequest)
        );
    }

    #[test]
    fn client_credentials_with_opt_in() {
        let tok = "a".repeat(27);
        let r = parse(&[
            ("grant_type", "client_credentials"),
            ("scope", "payments read"),
            ("completion_mode", "other deferred"),
            ("client_notification_token", &tok),
        ]);
        match r {
            Ok(TokenRequest::ClientCredentials { scope, opt_in, .. }) => {
                assert_eq!(scope.map(|s| s.to_string()), Some("payments read".into()));
                assert!(opt_in.completion_mode.deferred);
                assert_eq!(opt_in.notification_token, Some(NotificationToken::new(tok)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn token_exchange_and_device_code_are_parsed() {
        let r = parse(&[
            ("grant_type", crate::GRANT_TYPE_TOKEN_EXCHANGE),
            ("subject_token", "s"),
            ("subject_token_type", crate::TOKEN_TYPE_ACCESS_TOKEN),
            ("completion_mode", "deferred"),
        ]);
        match r {
            Ok(TokenRequest::TokenExchange { exchange, opt_in }) => {
                assert_eq!(exchange.subject_token.secret(), "s");
                assert!(opt_in.completion_mode.deferred);
            }
            other => panic!("unexpected {other:?}"),
        }
        let r = parse(&[
            ("grant_type", crate::GRANT_TYPE_DEVICE_CODE),
            ("device_code", "d"),
        ]);
        match r {
            Ok(r @ TokenRequest::DeviceCode { .. }) => {
                assert_eq!(r.grant_type(), crate::GRANT_TYPE_DEVICE_CODE)
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            code(parse(&[("grant_type", crate::GRANT_TYPE_DEVICE_CODE)])),
            Some(ErrorCode::InvalidRequest)
        );
    }

    #[test]
    fn short_notification_token_is_refused() {
        // DTR-12: at least 128 bits.
        let r = parse(&[
            ("grant_type", "client_credentials"),
            ("client_notification_token", "short"),
        ]);
        assert_eq!(code(r), Some(ErrorCode::InvalidRequest));
    }

    #[test]
    fn authorization_details_validation() {
        assert!(parse_authorization_details(r#"[{"type":"payment_initiation"}]"#).is_ok());
        assert!(parse_authorization_details(r#"{"type":"x"}"#).is_err());
        assert!(parse_authorization_details(r#"[{"notype":1}]"#).is_err());
        assert!(parse_authorization_details("not json").is_err());
    }

    #[test]
    fn deferred_response_debug_hides_code() {
        let d = DeferredResponse {
            error: ErrorCode::AuthorizationPending,
            deferral_code: "SECRETCODE".into(),
            expires_in: 1,
            interval: 1,
            interaction_uri: None,
            error_description: None,
        };
        assert!(!format!("{d:?}").contains("SECRETCODE"));
    }
}
