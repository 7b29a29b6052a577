//! The ES256 key that signs JWT access tokens (RFC 9068), its JWKS, and
//! verification of our own tokens for introspection.
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
        let header = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": self.kid});
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
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        if header.get("alg")?.as_str()? != "ES256" || header.get("typ")?.as_str()? != "at+jwt" {
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
        let input_len = h.len() + 1 + c.len();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(&token.as_bytes()[..input_len], &sig)
            .ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()
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
    fn unreadable_key_is_an_error() {
        assert!(TokenSigner::from_pkcs8(b"garbage").is_err());
    }
}
