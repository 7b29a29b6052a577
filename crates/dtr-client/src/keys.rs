//! The client's own ES256 (P-256) key pair, used for DPoP proofs
//! (RFC 9449) and for `private_key_jwt` client assertions (RFC 7523
//! section 2.2).
//!
//! Key generation and signing are done by `p256` and `jsonwebtoken`; this
//! module only moves keys between PEM, JWK and those libraries. Keys are
//! stored as unencrypted PKCS#8 PEM (RFC 5958), the format `openssl genpkey
//! -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes, so a key made by
//! either tool works with the other.

use crate::error::Error;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use std::path::Path;

/// An ES256 private key with its public JWK and RFC 7638 thumbprint.
///
/// `Debug` shows the thumbprint only, never the private key.
#[derive(Clone)]
pub struct Es256Key {
    signing: SigningKey,
    encoding: EncodingKey,
    jwk: Value,
    jkt: String,
}

impl std::fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es256Key")
            .field("thumbprint", &self.jkt)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

fn key_error(what: impl std::fmt::Display) -> Error {
    Error::Key(what.to_string())
}

impl Es256Key {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Es256Key {
        let signing = SigningKey::random(&mut rand::rngs::OsRng);
        // Encoding a freshly generated key cannot fail: the only error of
        // `from_signing_key` is a PKCS#8 encoding failure of a valid key.
        match Self::from_signing_key(signing.clone()) {
            Ok(k) => k,
            Err(_) => Self::fallback(signing),
        }
    }

    /// The path `generate` takes if PKCS#8 encoding ever failed: the key is
    /// still usable for the JWK, and signing reports the error then.
    fn fallback(signing: SigningKey) -> Es256Key {
        let jwk = public_jwk_of(&signing);
        let jkt = thumbprint_of(&jwk);
        Es256Key {
            signing,
            encoding: EncodingKey::from_ec_der(&[]),
            jwk,
            jkt,
        }
    }

    fn from_signing_key(signing: SigningKey) -> Result<Es256Key, Error> {
        let der = signing.to_pkcs8_der().map_err(key_error)?;
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let jwk = public_jwk_of(&signing);
        let jkt = thumbprint_of(&jwk);
        Ok(Es256Key {
            signing,
            encoding,
            jwk,
            jkt,
        })
    }

    /// Loads a P-256 private key from unencrypted PKCS#8 PEM
    /// (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Es256Key, Error> {
        let signing = SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| {
            key_error(format!(
                "not an unencrypted PKCS#8 PEM P-256 private key ({e})"
            ))
        })?;
        Self::from_signing_key(signing)
    }

    /// Loads a key with [`Es256Key::from_pkcs8_pem`] from a file.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Es256Key, Error> {
        let path = path.as_ref();
        let pem = std::fs::read_to_string(path)
            .map_err(|e| key_error(format!("cannot read {}: {e}", path.display())))?;
        Self::from_pkcs8_pem(&pem)
            .map_err(|e| key_error(format!("{}: {}", path.display(), error_text(&e))))
    }

    /// The private key as unencrypted PKCS#8 PEM, to be saved (with
    /// restrictive permissions: it is a credential).
    pub fn to_pkcs8_pem(&self) -> Result<String, Error> {
        self.signing
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(key_error)
    }

    /// The public key as a JWK (RFC 7517): `kty`, `crv`, `x`, `y` only.
    pub fn public_jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// The RFC 7638 JWK SHA-256 thumbprint of the public key: the `jkt`
    /// that deferral codes and access tokens are bound to (RFC 9449
    /// section 6).
    pub fn thumbprint(&self) -> &str {
        &self.jkt
    }

    /// Signs `claims` as a compact JWS with ES256 and the given header
    /// members (`alg` is always ES256).
    pub(crate) fn sign(&self, mut header: Header, claims: &Value) -> Result<String, Error> {
        header.alg = Algorithm::ES256;
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| key_error(format!("signing failed: {e}")))
    }

    /// The public JWK in `jsonwebtoken`'s type, for a `jwk` header.
    pub(crate) fn header_jwk(&self) -> Result<jsonwebtoken::jwk::Jwk, Error> {
        serde_json::from_value(self.jwk.clone()).map_err(key_error)
    }
}

fn error_text(e: &Error) -> String {
    match e {
        Error::Key(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The public JWK of a P-256 key: uncompressed point coordinates,
/// base64url without padding (RFC 7518 section 6.2.1).
fn public_jwk_of(signing: &SigningKey) -> Value {
    let point = signing.verifying_key().to_encoded_point(false);
    let coord = |c: Option<&p256::FieldBytes>| c.map(|b| URL_SAFE_NO_PAD.encode(b));
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": coord(point.x()),
        "y": coord(point.y()),
    })
}

fn thumbprint_of(jwk: &Value) -> String {
    jwk.as_object()
        .and_then(dtr_proto::dpop::jwk_thumbprint)
        .unwrap_or_default()
}

/// Seconds since the Unix epoch, for `iat` and `exp`.
pub(crate) fn now_unix_s() -> i64 {
    crate::clock::now_unix_ms() / 1000
}

/// A random identifier for `jti`: 192 bits from the OS CSPRNG, base64url
/// (RFC 9449 section 4.2 asks for at least 96 bits; RFC 7523 for a unique
/// value).
pub(crate) fn random_jti() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let k = Es256Key::generate();
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let back = Es256Key::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.thumbprint(), k.thumbprint());
        assert_eq!(back.public_jwk(), k.public_jwk());
    }

    #[test]
    fn public_jwk_has_no_private_member() {
        let jwk = Es256Key::generate().public_jwk();
        let obj = jwk.as_object().unwrap();
        let mut names: Vec<_> = obj.keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["crv", "kty", "x", "y"]);
        // 32-byte coordinates: 43 base64url characters.
        assert_eq!(obj["x"].as_str().unwrap().len(), 43);
    }

    #[test]
    fn thumbprint_is_rfc7638_of_the_jwk() {
        let k = Es256Key::generate();
        assert_eq!(
            Some(k.thumbprint().to_owned()),
            dtr_proto::dpop::jwk_thumbprint(k.public_jwk().as_object().unwrap())
        );
        assert_ne!(k.thumbprint(), Es256Key::generate().thumbprint());
    }

    #[test]
    fn garbage_pem_is_a_key_error() {
        assert!(matches!(
            Es256Key::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
            ),
            Err(Error::Key(_))
        ));
        let e = Es256Key::from_pem_file("/nonexistent/key.pem").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/key.pem"), "{e}");
    }

    #[test]
    fn debug_redacts_the_private_key() {
        let k = Es256Key::generate();
        let d = format!("{k:?}");
        let pem = k.to_pkcs8_pem().unwrap();
        let body: String = pem.lines().nth(1).unwrap().chars().take(20).collect();
        assert!(!d.contains(&body), "{d}");
        assert!(d.contains("redacted") && d.contains(k.thumbprint()), "{d}");
    }

    #[test]
    fn jtis_are_unique_and_long() {
        let a = random_jti();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_jti());
    }
}
