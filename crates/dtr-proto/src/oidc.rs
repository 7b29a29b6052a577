//! OpenID Connect Core 1.0, the parts the authorization code flow and
//! CIBA use: the `openid` scope, the authorization request's `prompt` and
//! `max_age` (section 3.1.2.1), the ID token's hash claims (sections
//! 3.1.3.6 and 3.3.2.11) and the standard claims each scope releases
//! (section 5.4). Pure rules; the server signs and serves.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The scope that makes a request an OpenID Connect request (section 3.1.2.1).
pub const SCOPE_OPENID: &str = "openid";
/// JWS algorithms of ID tokens, the OIDC default first (section 3.1.3.7
/// step 7: RS256 when the client registered none).
pub const ID_TOKEN_ALGS: &[&str] = &["RS256", "ES256"];
/// The default ID token algorithm.
pub const DEFAULT_ID_TOKEN_ALG: &str = "RS256";

/// `at_hash` / `c_hash`: the base64url of the left half of the hash of the
/// value's ASCII octets, with the hash of the JWS algorithm (SHA-256 for
/// RS256 and ES256), sections 3.1.3.6 and 3.3.2.11.
pub fn half_hash(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// The `prompt` parameter (section 3.1.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prompt {
    /// `none`: no page may be shown; fail with `login_required` or
    /// `consent_required` instead.
    pub none: bool,
    /// `login`: the user must authenticate again.
    pub login: bool,
    /// `consent`: ask for consent even when it was given before.
    pub consent: bool,
}

impl Prompt {
    /// Parses a space-separated `prompt`; `none` with any other value, or
    /// an unknown value, is `Err` (`invalid_request`). `select_account`
    /// is accepted and means nothing here: one account per session.
    pub fn parse(raw: Option<&str>) -> Result<Self, &'static str> {
        let mut p = Self::default();
        let Some(raw) = raw else { return Ok(p) };
        let mut any = false;
        for v in raw.split(' ').filter(|v| !v.is_empty()) {
            any = true;
            match v {
                "none" => p.none = true,
                "login" => p.login = true,
                "consent" => p.consent = true,
                "select_account" => {}
                _ => return Err("prompt has an unknown value"),
            }
        }
        if p.none && (p.login || p.consent) {
            return Err("prompt=none cannot be combined with other values");
        }
        if !any {
            return Err("prompt is empty");
        }
        Ok(p)
    }
}

/// Parses `max_age` (section 3.1.2.1): non-negative seconds.
pub fn parse_max_age(raw: Option<&str>) -> Result<Option<u64>, &'static str> {
    match raw {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.len() <= 12 && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse().map(Some).map_err(|_| "max_age is not a number")
        }
        Some(_) => Err("max_age must be a non-negative integer"),
    }
}

/// Whether an authentication at `auth_time` (seconds) is too old for
/// `max_age` at `now` (section 3.1.2.1: the user must authenticate again).
pub fn too_old(auth_time: i64, max_age: Option<u64>, now: i64) -> bool {
    max_age.is_some_and(|m| now.saturating_sub(auth_time) > i64::try_from(m).unwrap_or(i64::MAX))
}

/// The standard claims a scope releases (section 5.4).
pub fn claims_of_scope(scope: &str) -> &'static [&'static str] {
    match scope {
        "profile" => &[
            "name",
            "given_name",
            "family_name",
            "preferred_username",
            "locale",
        ],
        "email" => &["email", "email_verified"],
        "phone" => &["phone_number", "phone_number_verified"],
        _ => &[],
    }
}

/// Every claim this server can release, for `claims_supported`.
pub const CLAIMS_SUPPORTED: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "at_hash",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "locale",
    "email",
    "email_verified",
    "phone_number",
    "phone_number_verified",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_of_the_spec_example() {
        // OpenID Connect Core 1.0 Appendix A.3 (RS256): access token
        // "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y" has at_hash
        // "77QmUPtjPfzWtF2AnpK9RQ".
        assert_eq!(
            half_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn prompt_values() {
        assert_eq!(Prompt::parse(None), Ok(Prompt::default()));
        let p = Prompt::parse(Some("login consent")).unwrap_or_default();
        assert!(p.login && p.consent && !p.none);
        assert!(Prompt::parse(Some("none")).is_ok_and(|p| p.none));
        assert!(Prompt::parse(Some("none login")).is_err());
        assert!(Prompt::parse(Some("later")).is_err());
        assert!(Prompt::parse(Some("")).is_err());
    }

    #[test]
    fn max_age_rules() {
        assert_eq!(parse_max_age(Some("0")), Ok(Some(0)));
        assert!(parse_max_age(Some("-1")).is_err());
        assert!(parse_max_age(Some("1e3")).is_err());
        assert!(!too_old(100, Some(10), 110));
        assert!(too_old(100, Some(10), 111));
        assert!(!too_old(0, None, 1_000_000));
    }

    #[test]
    fn scopes_release_their_claims_only() {
        assert!(claims_of_scope("email").contains(&"email"));
        assert!(!claims_of_scope("email").contains(&"name"));
        assert!(claims_of_scope("payments").is_empty());
    }
}
