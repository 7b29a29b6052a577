//! DPoP proofs (RFC 9449): the client's key and the proof JWT it sends in
//! the `DPoP` header of every token, poll and revocation request, and with
//! a DPoP-bound access token at a resource server.
//!
//! A deferral code obtained with a proof is bound to the key's thumbprint
//! (DTR-13): every poll and the cancellation must prove the same key, and
//! the token the deferral resolves to is bound to it as well (DTR-20).

use crate::error::Error;
use crate::keys::{now_unix_s, random_jti, Es256Key};
use jsonwebtoken::Header;
use serde_json::{json, Value};
use std::path::Path;

/// The `typ` of a proof (RFC 9449 section 4.2).
pub const PROOF_TYP: &str = dtr_proto::dpop::PROOF_TYP;

/// The request header that carries a proof (RFC 9449 section 4.1).
pub const DPOP_HEADER: &str = "DPoP";

/// The response header that carries a server nonce (RFC 9449 section 8).
pub const DPOP_NONCE_HEADER: &str = "DPoP-Nonce";

/// A DPoP key pair (ES256). `Debug` shows the thumbprint, never the
/// private key.
#[derive(Clone, Debug)]
pub struct DpopKey {
    key: Es256Key,
}

impl From<Es256Key> for DpopKey {
    fn from(key: Es256Key) -> Self {
        Self { key }
    }
}

impl DpopKey {
    /// A fresh key (e.g. for one run of a command, `dtr token --dpop`).
    pub fn generate() -> DpopKey {
        Es256Key::generate().into()
    }

    /// Loads a P-256 key from unencrypted PKCS#8 PEM.
    pub fn from_pkcs8_pem(pem: &str) -> Result<DpopKey, Error> {
        Es256Key::from_pkcs8_pem(pem).map(Into::into)
    }

    /// Loads a P-256 key from a PKCS#8 PEM file.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<DpopKey, Error> {
        Es256Key::from_pem_file(path).map(Into::into)
    }

    /// The private key as PKCS#8 PEM, so that a deferral that outlives the
    /// process can still be polled with the same key after a restart.
    pub fn to_pkcs8_pem(&self) -> Result<String, Error> {
        self.key.to_pkcs8_pem()
    }

    /// The public JWK sent in every proof's header.
    pub fn public_jwk(&self) -> Value {
        self.key.public_jwk()
    }

    /// The RFC 7638 thumbprint (`jkt`) that codes and tokens are bound to.
    pub fn thumbprint(&self) -> &str {
        self.key.thumbprint()
    }

    /// The underlying key.
    pub fn key(&self) -> &Es256Key {
        &self.key
    }

    /// A fresh proof for one request (RFC 9449 section 4.2): `typ`
    /// `dpop+jwt`, the public `jwk` in the header, a random `jti`, `iat`
    /// now, `htm` and `htu` (the URL without query and fragment), the
    /// server's `nonce` when one was given (section 8), and `ath`, the
    /// hash of `access_token`, when a token is presented (section 7.1).
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<String, Error> {
        self.proof_at(htm, htu, nonce, access_token, now_unix_s())
    }

    /// [`DpopKey::proof`] with an explicit `iat` (seconds since the epoch),
    /// for callers with their own clock.
    pub fn proof_at(
        &self,
        htm: &str,
        htu: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
        iat: i64,
    ) -> Result<String, Error> {
        let htu = htu_of(htu)?;
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some(PROOF_TYP.to_owned());
        header.jwk = Some(self.key.header_jwk()?);
        let mut claims = json!({
            "jti": random_jti(),
            "htm": htm,
            "htu": htu,
            "iat": iat,
        });
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        if let Some(t) = access_token {
            claims["ath"] = dtr_proto::dpop::access_token_hash(t).into();
        }
        self.key.sign(header, &claims)
    }
}

/// The `htu` of a request URL: RFC 9449 section 4.2 says "without query
/// and fragment parts". Only http and https URLs are targets of a proof.
fn htu_of(url: &str) -> Result<String, Error> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let mut u = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(invalid("a DPoP proof targets an http or https URL"));
    }
    u.set_query(None);
    u.set_fragment(None);
    Ok(u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use dtr_proto::dpop::{verify_proof, DpopError, ProofContext};

    const TOKEN_URL: &str = "https://as.example/token";

    fn ctx<'a>(method: &'a str, url: &'a str, at: Option<&'a str>) -> ProofContext<'a> {
        ProofContext {
            method,
            url,
            now: now_unix_s(),
            iat_window: 60,
            access_token: at,
        }
    }

    fn part(jwt: &str, i: usize) -> Value {
        let seg = jwt.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
    }

    #[test]
    fn proof_verifies_with_the_server_rules() {
        let k = DpopKey::generate();
        let p = k.proof("POST", TOKEN_URL, None, None).unwrap();
        let v = verify_proof(&p, &ctx("POST", TOKEN_URL, None)).unwrap();
        assert_eq!(v.jkt, k.thumbprint());
        assert_eq!(v.nonce, None);
        let h = part(&p, 0);
        assert_eq!(h["typ"], "dpop+jwt");
        assert_eq!(h["alg"], "ES256");
        assert_eq!(h["jwk"], k.public_jwk());
        assert!(h["jwk"].get("d").is_none());
    }

    #[test]
    fn every_proof_has_a_fresh_jti() {
        let k = DpopKey::generate();
        let a = part(&k.proof("POST", TOKEN_URL, None, None).unwrap(), 1);
        let b = part(&k.proof("POST", TOKEN_URL, None, None).unwrap(), 1);
        assert_ne!(a["jti"], b["jti"]);
        // At least 128 bits: 22 base64url characters.
        assert!(a["jti"].as_str().unwrap().len() >= 22);
    }

    #[test]
    fn htu_drops_query_and_fragment() {
        let k = DpopKey::generate();
        let p = k
            .proof("GET", "https://rs.example/api/x?a=1&b=2#frag", None, None)
            .unwrap();
        assert_eq!(part(&p, 1)["htu"], "https://rs.example/api/x");
        assert!(verify_proof(&p, &ctx("GET", "https://rs.example/api/x", None)).is_ok());
        assert!(matches!(
            k.proof("POST", "ftp://as/token", None, None),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(k.proof("POST", "not a url", None, None).is_err());
    }

    #[test]
    fn proof_for_one_endpoint_is_refused_at_another() {
        let k = DpopKey::generate();
        let p = k.proof("POST", TOKEN_URL, None, None).unwrap();
        assert_eq!(
            verify_proof(&p, &ctx("POST", "https://as.example/revoke", None)),
            Err(DpopError::WrongUri)
        );
        assert_eq!(
            verify_proof(&p, &ctx("GET", TOKEN_URL, None)),
            Err(DpopError::WrongMethod)
        );
    }

    #[test]
    fn nonce_is_carried() {
        let k = DpopKey::generate();
        let p = k.proof("POST", TOKEN_URL, Some("n-123"), None).unwrap();
        let v = verify_proof(&p, &ctx("POST", TOKEN_URL, None)).unwrap();
        assert_eq!(v.nonce.as_deref(), Some("n-123"));
    }

    #[test]
    fn ath_binds_the_access_token() {
        let k = DpopKey::generate();
        let url = "https://rs.example/resource";
        let p = k.proof("GET", url, None, Some("the-token")).unwrap();
        assert!(verify_proof(&p, &ctx("GET", url, Some("the-token"))).is_ok());
        assert_eq!(
            verify_proof(&p, &ctx("GET", url, Some("another-token"))),
            Err(DpopError::WrongAth)
        );
        let no_ath = k.proof("GET", url, None, None).unwrap();
        assert_eq!(
            verify_proof(&no_ath, &ctx("GET", url, Some("the-token"))),
            Err(DpopError::WrongAth)
        );
        assert!(part(&no_ath, 1).get("ath").is_none());
    }

    #[test]
    fn explicit_iat_is_used() {
        let k = DpopKey::generate();
        let p = k.proof_at("POST", TOKEN_URL, None, None, 1_000).unwrap();
        assert_eq!(part(&p, 1)["iat"], 1_000);
        assert_eq!(
            verify_proof(&p, &ctx("POST", TOKEN_URL, None)),
            Err(DpopError::StaleOrFuture)
        );
    }

    #[test]
    fn pem_round_trip() {
        let k = DpopKey::generate();
        let back = DpopKey::from_pkcs8_pem(&k.to_pkcs8_pem().unwrap()).unwrap();
        assert_eq!(back.thumbprint(), k.thumbprint());
        let p = back.proof("POST", TOKEN_URL, None, None).unwrap();
        assert_eq!(
            verify_proof(&p, &ctx("POST", TOKEN_URL, None)).unwrap().jkt,
            k.thumbprint()
        );
    }

    #[test]
    fn debug_redacts() {
        let k = DpopKey::generate();
        let d = format!("{k:?}");
        assert!(d.contains("redacted"), "{d}");
    }
}
