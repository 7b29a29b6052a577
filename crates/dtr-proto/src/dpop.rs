//! DPoP proof validation (RFC 9449 section 4.3) and the JWK thumbprint
//! (RFC 7638) that binds deferral codes and access tokens to a key
//! (DTR-13, DTR-14, DTR-20).
//!
//! Signatures are checked with `jsonwebtoken`; this module only decides
//! which rules a proof must satisfy. Replay detection (`jti`) and server
//! nonces need storage and a secret, so the caller applies them to the
//! [`VerifiedProof`] this module returns.

use crate::error::{ErrorCode, OAuthError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `typ` of a DPoP proof (RFC 9449 section 4.2).
pub const PROOF_TYP: &str = "dpop+jwt";

/// Asymmetric algorithms accepted for proofs; `none` and HMAC never are
/// (RFC 9449 section 4.3, check 5).
pub const SUPPORTED_ALGS: &[&str] = &["ES256", "ES384", "EdDSA", "RS256", "PS256"];

/// JWK members that only a private key has (RFC 7518 section 6).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A proof that passed every stateless check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 thumbprint of the proof's public key.
    pub jkt: String,
    /// The proof's `jti`, for the replay cache.
    pub jti: String,
    /// The proof's `iat` (seconds).
    pub iat: i64,
    /// The proof's `nonce`, if any.
    pub nonce: Option<String>,
}

/// Why a proof was refused: one variant per rule of RFC 9449 section 4.3.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// More than one `DPoP` header (check 1).
    #[error("more than one DPoP header")]
    MultipleHeaders,
    /// Not a well-formed JWS compact serialization (check 2).
    #[error("DPoP proof is not a well-formed JWT")]
    Malformed,
    /// `typ` is not `dpop+jwt` (check 4).
    #[error("DPoP proof typ must be dpop+jwt")]
    WrongType,
    /// `alg` is `none`, symmetric or unsupported (check 5).
    #[error("DPoP proof alg is not an accepted asymmetric algorithm")]
    UnsupportedAlgorithm,
    /// No usable public `jwk` in the header, or it does not fit `alg` (check 7).
    #[error("DPoP proof header must carry a public jwk matching alg")]
    BadKey,
    /// The `jwk` contains private key members (check 7).
    #[error("DPoP proof jwk must not contain a private key")]
    PrivateKey,
    /// The signature does not verify (check 6).
    #[error("DPoP proof signature is invalid")]
    BadSignature,
    /// Required claims missing or of the wrong type (check 3).
    #[error("DPoP proof lacks a required claim ({0})")]
    MissingClaim(&'static str),
    /// `htm` differs from the request method (check 8).
    #[error("DPoP proof htm does not match the request method")]
    WrongMethod,
    /// `htu` differs from the request URI (check 9).
    #[error("DPoP proof htu does not match the request URI")]
    WrongUri,
    /// `iat` outside the accepted window (check 11).
    #[error("DPoP proof iat is outside the accepted window")]
    StaleOrFuture,
    /// `ath` missing or not the hash of the presented access token (check 12).
    #[error("DPoP proof ath does not match the access token")]
    WrongAth,
    /// The `jti` was used before (check 12 of section 11.1).
    #[error("DPoP proof jti was already used")]
    Replayed,
    /// A server nonce is required or the one given is not current (check 10).
    #[error("a fresh DPoP nonce is required")]
    NonceRequired,
    /// The key is not the one the deferral code or token is bound to.
    #[error("DPoP proof key does not match the bound key")]
    WrongKey,
}

impl DpopError {
    /// The OAuth error at the token and revocation endpoints (RFC 9449
    /// sections 5 and 8): `use_dpop_nonce` for nonce problems,
    /// `invalid_dpop_proof` otherwise.
    pub fn to_oauth(&self) -> OAuthError {
        let code = if *self == Self::NonceRequired {
            ErrorCode::UseDpopNonce
        } else {
            ErrorCode::InvalidDpopProof
        };
        OAuthError::with_description(code, self.to_string())
    }
}

/// What the request looked like, for checks 8, 9, 11 and 12.
#[derive(Clone, Debug)]
pub struct ProofContext<'a> {
    /// HTTP method of the request.
    pub method: &'a str,
    /// The request URI as the server publishes it (e.g. the token endpoint).
    pub url: &'a str,
    /// Now, seconds since the epoch.
    pub now: i64,
    /// Accepted distance of `iat` from now, seconds, either direction.
    pub iat_window: i64,
    /// The access token presented with the proof, at a resource server.
    pub access_token: Option<&'a str>,
}

fn b64json(s: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// RFC 7638 thumbprint of a public JWK: SHA-256 over the required members
/// in lexicographic order, base64url. `None` for unsupported key types.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    let canonical = match s("kty")? {
        "EC" => serde_json::json!({"crv": s("crv")?, "kty": "EC", "x": s("x")?, "y": s("y")?}),
        "RSA" => serde_json::json!({"e": s("e")?, "kty": "RSA", "n": s("n")?}),
        "OKP" => serde_json::json!({"crv": s("crv")?, "kty": "OKP", "x": s("x")?}),
        _ => return None,
    };
    // serde_json (without preserve_order) writes object keys sorted and
    // without whitespace: exactly RFC 7638's canonical form.
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.to_string().as_bytes())))
}

/// The `ath` claim of a proof that presents `access_token` (RFC 9449 section 4.2).
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// The `htu` comparison form (RFC 9449 section 4.3 check 9, RFC 3986
/// section 6.2.2/6.2.3 normalisation): scheme and host lower-cased,
/// default port dropped, empty path as `/`, no query or fragment.
pub fn normalize_htu(u: &str) -> Option<String> {
    let mut url = url::Url::parse(u).ok()?;
    url.set_query(None);
    url.set_fragment(None);
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    Some(url.to_string())
}

fn key_fits(alg: Algorithm, jwk: &Map<String, Value>) -> bool {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    match alg {
        Algorithm::ES256 => s("kty") == Some("EC") && s("crv") == Some("P-256"),
        Algorithm::ES384 => s("kty") == Some("EC") && s("crv") == Some("P-384"),
        Algorithm::EdDSA => s("kty") == Some("OKP") && s("crv") == Some("Ed25519"),
        Algorithm::RS256 | Algorithm::PS256 => s("kty") == Some("RSA"),
        _ => false,
    }
}

/// Checks a proof against every stateless rule of RFC 9449 section 4.3.
pub fn verify_proof(proof: &str, ctx: &ProofContext<'_>) -> Result<VerifiedProof, DpopError> {
    let mut parts = proof.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed);
    };
    let header = b64json(h).ok_or(DpopError::Malformed)?;
    let claims = b64json(c).ok_or(DpopError::Malformed)?;
    if header.get("typ").and_then(Value::as_str) != Some(PROOF_TYP) {
        return Err(DpopError::WrongType);
    }
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(DpopError::UnsupportedAlgorithm)?;
    if !SUPPORTED_ALGS.contains(&alg_name) {
        return Err(DpopError::UnsupportedAlgorithm);
    }
    let alg: Algorithm = alg_name
        .parse()
        .map_err(|_| DpopError::UnsupportedAlgorithm)?;
    let jwk = match header.get("jwk") {
        Some(Value::Object(j)) => j,
        _ => return Err(DpopError::BadKey),
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(DpopError::PrivateKey);
    }
    if !key_fits(alg, jwk) {
        return Err(DpopError::BadKey);
    }
    let parsed: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(Value::Object(jwk.clone())).map_err(|_| DpopError::BadKey)?;
    let key = DecodingKey::from_jwk(&parsed).map_err(|_| DpopError::BadKey)?;
    let message = &proof.as_bytes()[..h.len() + 1 + c.len()];
    if !jsonwebtoken::crypto::verify(sig, message, &key, alg).unwrap_or(false) {
        return Err(DpopError::BadSignature);
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 256);
    let jti = jti.ok_or(DpopError::MissingClaim("jti"))?;
    let htm = claims
        .get("htm")
        .and_then(Value::as_str)
        .ok_or(DpopError::MissingClaim("htm"))?;
    let htu = claims
        .get("htu")
        .and_then(Value::as_str)
        .ok_or(DpopError::MissingClaim("htu"))?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(DpopError::MissingClaim("iat"))?;
    if htm != ctx.method {
        return Err(DpopError::WrongMethod);
    }
    match (normalize_htu(htu), normalize_htu(ctx.url)) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err(DpopError::WrongUri),
    }
    if (iat - ctx.now).abs() > ctx.iat_window {
        return Err(DpopError::StaleOrFuture);
    }
    if let Some(at) = ctx.access_token {
        let ath = claims.get("ath").and_then(Value::as_str);
        let expected = access_token_hash(at);
        if !ath.is_some_and(|a| crate::secret::ct_eq(a.as_bytes(), expected.as_bytes())) {
            return Err(DpopError::WrongAth);
        }
    }
    let jkt = jwk_thumbprint(jwk).ok_or(DpopError::BadKey)?;
    let nonce = claims
        .get("nonce")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(VerifiedProof {
        jkt,
        jti: jti.to_owned(),
        iat,
        nonce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::EncodingKey;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePrivateKey;
    use serde_json::json;

    const URL: &str = "https://as.example/token";
    const NOW: i64 = 1_800_000_000;

    struct Key {
        enc: EncodingKey,
        jwk: Value,
        d: String,
    }

    fn key() -> Key {
        let sk = SigningKey::random(&mut rand::rngs::OsRng);
        let point = sk.verifying_key().to_encoded_point(false);
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        });
        let der = sk.to_pkcs8_der().unwrap();
        Key {
            enc: EncodingKey::from_ec_der(der.as_bytes()),
            jwk,
            d: URL_SAFE_NO_PAD.encode(sk.to_bytes()),
        }
    }

    fn sign(k: &Key, header: Value, claims: Value) -> String {
        // Build the header by hand so tests can break any member.
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let msg = format!("{h}.{c}");
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &k.enc, Algorithm::ES256).unwrap();
        format!("{msg}.{sig}")
    }

    fn good_header(k: &Key) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": k.jwk})
    }

    fn good_claims() -> Value {
        json!({"jti": "j-1", "htm": "POST", "htu": URL, "iat": NOW})
    }

    fn ctx() -> ProofContext<'static> {
        ProofContext {
            method: "POST",
            url: URL,
            now: NOW,
            iat_window: 60,
            access_token: None,
        }
    }

    fn check(proof: &str) -> Result<VerifiedProof, DpopError> {
        verify_proof(proof, &ctx())
    }

    #[test]
    fn a_good_proof_passes_with_its_thumbprint() {
        let k = key();
        let p = check(&sign(&k, good_header(&k), good_claims())).unwrap();
        assert_eq!(p.jti, "j-1");
        assert_eq!(Some(p.jkt), jwk_thumbprint(k.jwk.as_object().unwrap()));
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 section 3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"
        });
        assert_eq!(
            jwk_thumbprint(jwk.as_object().unwrap()).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn rule_malformed() {
        assert_eq!(check("a.b"), Err(DpopError::Malformed));
        assert_eq!(check("not-base64.x.y"), Err(DpopError::Malformed));
        assert_eq!(check("a.b.c.d"), Err(DpopError::Malformed));
    }

    #[test]
    fn rule_typ() {
        let k = key();
        let mut h = good_header(&k);
        h["typ"] = "JWT".into();
        assert_eq!(
            check(&sign(&k, h, good_claims())),
            Err(DpopError::WrongType)
        );
    }

    #[test]
    fn rule_alg_none_and_hmac() {
        let k = key();
        for alg in ["none", "HS256", "RS512"] {
            let mut h = good_header(&k);
            h["alg"] = alg.into();
            assert_eq!(
                check(&sign(&k, h, good_claims())),
                Err(DpopError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn rule_jwk_missing_or_mismatched() {
        let k = key();
        let mut h = good_header(&k);
        h.as_object_mut().unwrap().remove("jwk");
        assert_eq!(check(&sign(&k, h, good_claims())), Err(DpopError::BadKey));
        let mut h = good_header(&k);
        h["alg"] = "ES384".into();
        assert_eq!(check(&sign(&k, h, good_claims())), Err(DpopError::BadKey));
    }

    #[test]
    fn rule_private_key_in_header() {
        let k = key();
        let mut h = good_header(&k);
        h["jwk"]["d"] = k.d.clone().into();
        assert_eq!(
            check(&sign(&k, h, good_claims())),
            Err(DpopError::PrivateKey)
        );
    }

    #[test]
    fn rule_signature() {
        let k = key();
        let other = key();
        // Signed by one key, claiming another.
        assert_eq!(
            check(&sign(&k, good_header(&other), good_claims())),
            Err(DpopError::BadSignature)
        );
    }

    #[test]
    fn rule_required_claims() {
        let k = key();
        for claim in ["jti", "htm", "htu", "iat"] {
            let mut c = good_claims();
            c.as_object_mut().unwrap().remove(claim);
            assert!(
                matches!(
                    check(&sign(&k, good_header(&k), c)),
                    Err(DpopError::MissingClaim(_))
                ),
                "{claim}"
            );
        }
    }

    #[test]
    fn rule_htm() {
        let k = key();
        let mut c = good_claims();
        c["htm"] = "GET".into();
        assert_eq!(
            check(&sign(&k, good_header(&k), c)),
            Err(DpopError::WrongMethod)
        );
    }

    #[test]
    fn rule_htu_compared_normalised_without_query() {
        let k = key();
        for ok in [
            "https://AS.example/token",
            "https://as.example:443/token",
            "https://as.example/token?x=1#f",
        ] {
            let mut c = good_claims();
            c["htu"] = ok.into();
            assert!(check(&sign(&k, good_header(&k), c)).is_ok(), "{ok}");
        }
        for bad in [
            "https://as.example/revoke",
            "http://as.example/token",
            "https://evil.example/token",
        ] {
            let mut c = good_claims();
            c["htu"] = bad.into();
            assert_eq!(
                check(&sign(&k, good_header(&k), c)),
                Err(DpopError::WrongUri),
                "{bad}"
            );
        }
    }

    #[test]
    fn rule_iat_window() {
        let k = key();
        for iat in [NOW - 61, NOW + 61] {
            let mut c = good_claims();
            c["iat"] = iat.into();
            assert_eq!(
                check(&sign(&k, good_header(&k), c)),
                Err(DpopError::StaleOrFuture)
            );
        }
    }

    #[test]
    fn rule_ath() {
        let k = key();
        let mut ctx = ctx();
        ctx.access_token = Some("the-token");
        assert_eq!(
            verify_proof(&sign(&k, good_header(&k), good_claims()), &ctx),
            Err(DpopError::WrongAth)
        );
        let mut c = good_claims();
        c["ath"] = access_token_hash("the-token").into();
        assert!(verify_proof(&sign(&k, good_header(&k), c), &ctx).is_ok());
    }

    #[test]
    fn nonce_errors_map_to_use_dpop_nonce() {
        assert_eq!(
            DpopError::NonceRequired.to_oauth().error,
            ErrorCode::UseDpopNonce
        );
        assert_eq!(
            DpopError::Replayed.to_oauth().error,
            ErrorCode::InvalidDpopProof
        );
    }
}
