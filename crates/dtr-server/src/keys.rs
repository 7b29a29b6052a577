//! The ES256 key that signs JWT access tokens (RFC 9068), its JWKS, and
//! verification of our own tokens for introspection; and the RS256 key of
//! ID tokens (OpenID Connect Core 1.0 section 3.1.3.7: RS256 is the
//! default a client gets without `id_token_signed_response_alg`).
//!
//! The RSA key is made with the `rsa` crate (ring cannot generate RSA
//! keys) and used through ring, like the EC key.
//!
//! Signing and verification run on `ring`, whose P-256 is several times
//! faster than a portable implementation: every synchronous grant and every
//! redemption signs a token, so this is on the hot path. `p256` only makes
//! and reads the PKCS#8 document.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use sha2::{Digest, Sha256};

/// The signing key with its key id (the RFC 7638 thumbprint).
pub struct TokenSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    public: Vec<u8>,
    kid: String,
    x: String,
    y: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A fresh P-256 private key as PKCS#8 DER.
pub fn generate_pkcs8() -> Vec<u8> {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    key.to_pkcs8_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default()
}

impl TokenSigner {
    /// Loads a PKCS#8 key; a key that does not parse is an error, never a
    /// reason to make a new one (tokens already issued would stop verifying).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let parsed = SigningKey::from_pkcs8_der(der)
            .map_err(|e| format!("stored signing key is unreadable: {e}"))?;
        let point = parsed.verifying_key().to_encoded_point(false);
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| format!("stored signing key is unreadable: {e}"))?;
        let public = key.public_key().as_ref().to_vec();
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err("stored signing key has no affine coordinates".into());
        };
        let x = URL_SAFE_NO_PAD.encode(x);
        let y = URL_SAFE_NO_PAD.encode(y);
        // RFC 7638 section 3.2: required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Ok(Self {
            key,
            rng,
            public,
            kid,
            x,
            y,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS document of `/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "EC", "crv": "P-256", "x": self.x, "y": self.y,
                "kid": self.kid, "use": "sig", "alg": "ES256"
            }]
        })
    }

    /// Signs claims as a JWS compact serialization with `typ` `at+jwt`
    /// (RFC 9068 section 2.1).
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        self.sign_typed("at+jwt", claims)
    }

    /// Signs claims with the given `typ` header: `JWT` for ID tokens, so
    /// that an ID token is never taken for an access token (RFC 8725
    /// section 3.11, explicit typing).
    pub fn sign_typed(&self, typ: &str, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "ES256", "typ": typ, "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // FIXED: the JWS form of an ECDSA signature, r || s (RFC 7518
        // section 3.4). Signing fails only if the system RNG does.
        match self.key.sign(&self.rng, input.as_bytes()) {
            Ok(sig) => format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())),
            Err(_) => String::new(),
        }
    }

    /// Verifies one of our tokens and returns its claims; `None` for
    /// anything malformed, signed by another key, or not an access token.
    pub fn verify(&self, token: &str) -> Option<serde_json::Value> {
        self.verify_typed("at+jwt", token)
    }

    /// [`TokenSigner::verify`] for a token of another `typ` (ID tokens).
    pub fn verify_typed(&self, typ: &str, token: &str) -> Option<serde_json::Value> {
        let jws = Jws::split(token)?;
        if jws.header.get("alg")?.as_str()? != "ES256" || jws.header.get("typ")?.as_str()? != typ {
            return None;
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(jws.input.as_bytes(), &jws.signature)
            .ok()?;
        Some(jws.claims)
    }
}

/// A JWS compact serialization taken apart, not yet verified.
struct Jws<'a> {
    header: serde_json::Value,
    claims: serde_json::Value,
    input: &'a str,
    signature: Vec<u8>,
}

impl<'a> Jws<'a> {
    fn split(token: &'a str) -> Option<Self> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(Self {
            header,
            claims,
            input: &token[..h.len() + 1 + c.len()],
            signature,
        })
    }
}

/// The algorithm of a JWS header, read without verifying anything: which
/// key to verify with.
pub fn jws_alg(token: &str) -> Option<String> {
    let h = token.split('.').next()?;
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    header.get("alg")?.as_str().map(str::to_owned)
}

/// Size of the ID token RSA key: RFC 7518 section 3.3 requires 2048 bits
/// or more for RS256.
pub const RSA_BITS: usize = 2048;

/// A fresh RSA private key as PKCS#8 DER. Slow (a prime search): callers
/// run it off the async runtime, once per database.
pub fn generate_rsa_pkcs8() -> Vec<u8> {
    use rsa::pkcs8::EncodePrivateKey;
    rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS)
        .ok()
        .and_then(|k| k.to_pkcs8_der().ok())
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default()
}

/// The RS256 key of ID tokens with its key id (the RFC 7638 thumbprint).
pub struct RsaSigner {
    key: ring::signature::RsaKeyPair,
    rng: SystemRandom,
    n: Vec<u8>,
    e: Vec<u8>,
    kid: String,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl RsaSigner {
    /// Loads a PKCS#8 RSA key; one that does not parse is an error (ID
    /// tokens already issued would stop verifying if it were replaced).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let key = ring::signature::RsaKeyPair::from_pkcs8(der)
            .map_err(|e| format!("stored ID token key is unreadable: {e}"))?;
        let components: ring::rsa::PublicKeyComponents<Vec<u8>> = key.public().into();
        let (n, e) = (components.n, components.e);
        // RFC 7638 section 3.2: e, kty, n in lexicographic order.
        let canonical = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&e),
            URL_SAFE_NO_PAD.encode(&n)
        );
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Ok(Self {
            key,
            rng: SystemRandom::new(),
            n,
            e,
            kid,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (RFC 7517 section 4, RFC 7518 section 6.3).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
            "kid": self.kid, "use": "sig", "alg": "RS256"
        })
    }

    /// Signs claims as an RS256 JWS with `typ` `JWT`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        match self.key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &self.rng,
            input.as_bytes(),
            &mut sig,
        ) {
            Ok(()) => format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)),
            Err(_) => String::new(),
        }
    }

    /// Verifies an RS256 JWS of this key with `typ` `JWT`; its claims.
    pub fn verify(&self, token: &str) -> Option<serde_json::Value> {
        let jws = Jws::split(token)?;
        if jws.header.get("alg")?.as_str()? != "RS256" || jws.header.get("typ")?.as_str()? != "JWT"
        {
            return None;
        }
        ring::signature::RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            jws.input.as_bytes(),
            &jws.signature,
        )
        .ok()?;
        Some(jws.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let s = TokenSigner::from_pkcs8(&generate_pkcs8()).unwrap();
        let t = s.sign(&serde_json::json!({"sub": "svc"}));
        assert_eq!(s.verify(&t).unwrap()["sub"], "svc");
    }

    #[test]
    fn tampering_and_foreign_keys_fail() {
        let s = TokenSigner::from_pkcs8(&generate_pkcs8()).unwrap();
        let other = TokenSigner::from_pkcs8(&generate_pkcs8()).unwrap();
        let t = s.sign(&serde_json::json!({"sub": "svc"}));
        assert!(other.verify(&t).is_none());
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#);
        parts[1] = &forged;
        assert!(s.verify(&parts.join(".")).is_none());
        assert!(s.verify("a.b").is_none());
        assert!(s.verify("not a jwt").is_none());
    }

    #[test]
    fn kid_is_stable_for_a_key() {
        let der = generate_pkcs8();
        let a = TokenSigner::from_pkcs8(&der).unwrap();
        let b = TokenSigner::from_pkcs8(&der).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.jwks()["keys"][0]["kid"], a.kid());
    }

    #[test]
    fn rsa_sign_verify_and_jwk() {
        let der = generate_rsa_pkcs8();
        let s = RsaSigner::from_pkcs8(&der).unwrap();
        let t = s.sign(&serde_json::json!({"sub": "alice"}));
        assert_eq!(jws_alg(&t).as_deref(), Some("RS256"));
        assert_eq!(s.verify(&t).unwrap()["sub"], "alice");
        // Stable key id, published in the JWK.
        assert_eq!(RsaSigner::from_pkcs8(&der).unwrap().kid(), s.kid());
        assert_eq!(s.jwk()["kid"], s.kid());
        assert_eq!(s.jwk()["e"], "AQAB");
        // A forged payload or another key fails.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#);
        parts[1] = &forged;
        assert!(s.verify(&parts.join(".")).is_none());
        // An access token (ES256, at+jwt) is not an RS256 ID token, and an
        // ID token is not an access token.
        let es = TokenSigner::from_pkcs8(&generate_pkcs8()).unwrap();
        assert!(s.verify(&es.sign(&serde_json::json!({}))).is_none());
        let id = es.sign_typed("JWT", &serde_json::json!({"sub": "a"}));
        assert!(es.verify(&id).is_none());
        assert_eq!(es.verify_typed("JWT", &id).unwrap()["sub"], "a");
    }

    #[test]
    fn unreadable_key_is_an_error() {
        assert!(RsaSigner::from_pkcs8(b"garbage").is_err());
        assert!(TokenSigner::from_pkcs8(b"garbage").is_err());
    }
}
