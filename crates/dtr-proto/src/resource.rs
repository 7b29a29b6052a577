//! The resource-server side of sender-constrained tokens: how an access
//! token is presented (RFC 6750 `Bearer`, RFC 9449 section 7 `DPoP`) and
//! whether the presentation fits the token's binding. Token signature
//! checks are the caller's; this module decides the rest.

use crate::dpop::{verify_proof, DpopError, ProofContext, VerifiedProof};

/// How the request presents its access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presentation<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `Authorization: DPoP <token>` with a `DPoP` proof.
    Dpop(&'a str),
}

impl<'a> Presentation<'a> {
    /// Parses an `Authorization` header value; schemes are case-insensitive.
    pub fn parse(header: &'a str) -> Option<Self> {
        let (scheme, token) = header.split_once(' ')?;
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            Some(Self::Bearer(token))
        } else if scheme.eq_ignore_ascii_case("dpop") {
            Some(Self::Dpop(token))
        } else {
            None
        }
    }

    /// The token itself.
    pub fn token(&self) -> &'a str {
        match self {
            Self::Bearer(t) | Self::Dpop(t) => t,
        }
    }
}

/// Why a presentation is refused; each maps to a `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// No usable `Authorization` header (RFC 6750 section 3.1: no error code).
    #[error("access token required")]
    Missing,
    /// The token is invalid, expired, revoked, or presented with the wrong
    /// scheme (a DPoP-bound token as `Bearer`: RFC 9449 section 7.2).
    #[error("{0}")]
    InvalidToken(&'static str),
    /// The DPoP proof is missing, invalid, or made with another key.
    #[error("{0}")]
    InvalidProof(DpopError),
}

impl ResourceError {
    /// The `WWW-Authenticate` value to send with the 401.
    pub fn challenge(&self) -> String {
        let algs = crate::dpop::SUPPORTED_ALGS.join(" ");
        match self {
            Self::Missing => format!("Bearer, DPoP algs=\"{algs}\""),
            Self::InvalidToken(d) => {
                format!("DPoP error=\"invalid_token\", error_description=\"{d}\", algs=\"{algs}\"")
            }
            Self::InvalidProof(e) => {
                format!(
                    "DPoP error=\"invalid_dpop_proof\", error_description=\"{e}\", algs=\"{algs}\""
                )
            }
        }
    }
}

/// Checks that a presentation fits the token's binding: a token with
/// `cnf.jkt` only as `DPoP` with a valid proof (including `ath`) by that
/// key; an unbound token only as `Bearer`. The proof's `jti` is returned
/// for the caller's replay cache.
pub fn check_binding(
    presentation: Presentation<'_>,
    cnf_jkt: Option<&str>,
    proof: Option<&str>,
    method: &str,
    url: &str,
    now: i64,
    iat_window: i64,
) -> Result<Option<VerifiedProof>, ResourceError> {
    match (presentation, cnf_jkt) {
        (Presentation::Bearer(_), Some(_)) => Err(ResourceError::InvalidToken(
            "DPoP-bound token presented as a bearer token",
        )),
        (Presentation::Dpop(_), None) => {
            Err(ResourceError::InvalidToken("token is not DPoP-bound"))
        }
        (Presentation::Bearer(_), None) => Ok(None),
        (Presentation::Dpop(token), Some(jkt)) => {
            let proof = proof.ok_or(ResourceError::InvalidProof(DpopError::Malformed))?;
            let ctx = ProofContext {
                method,
                url,
                now,
                iat_window,
                access_token: Some(token),
            };
            let verified = verify_proof(proof, &ctx).map_err(ResourceError::InvalidProof)?;
            if !crate::secret::ct_eq(verified.jkt.as_bytes(), jkt.as_bytes()) {
                return Err(ResourceError::InvalidProof(DpopError::WrongKey));
            }
            Ok(Some(verified))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes() {
        assert_eq!(
            Presentation::parse("Bearer abc"),
            Some(Presentation::Bearer("abc"))
        );
        assert_eq!(
            Presentation::parse("dpop abc"),
            Some(Presentation::Dpop("abc"))
        );
        assert_eq!(Presentation::parse("Basic abc"), None);
        assert_eq!(Presentation::parse("Bearer "), None);
    }

    #[test]
    fn bound_token_as_bearer_is_refused() {
        let r = check_binding(
            Presentation::Bearer("t"),
            Some("jkt"),
            None,
            "GET",
            "https://rs/x",
            0,
            60,
        );
        assert!(matches!(r, Err(ResourceError::InvalidToken(_))));
        assert!(r.unwrap_err().challenge().contains("invalid_token"));
    }

    #[test]
    fn unbound_token_as_dpop_is_refused() {
        let r = check_binding(
            Presentation::Dpop("t"),
            None,
            None,
            "GET",
            "https://rs/x",
            0,
            60,
        );
        assert!(matches!(r, Err(ResourceError::InvalidToken(_))));
    }

    #[test]
    fn bound_token_without_proof_is_refused() {
        let r = check_binding(
            Presentation::Dpop("t"),
            Some("jkt"),
            None,
            "GET",
            "https://rs/x",
            0,
            60,
        );
        assert!(matches!(r, Err(ResourceError::InvalidProof(_))));
    }

    #[test]
    fn unbound_bearer_passes() {
        assert_eq!(
            check_binding(
                Presentation::Bearer("t"),
                None,
                None,
                "GET",
                "https://rs/x",
                0,
                60
            ),
            Ok(None)
        );
    }
}
