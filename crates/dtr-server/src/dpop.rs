//! DPoP at this server's endpoints (RFC 9449): reads the `DPoP` header,
//! applies the stateless checks of `dtr_proto::dpop`, then the checks that
//! need state: server nonces (section 8) and single use of `jti`
//! (section 11.1), the latter in the store so it holds across restarts
//! and nodes.

use crate::clock::Clock;
use crate::config::DpopConfig;
use crate::store::Store;
use axum::http::{HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dtr_proto::dpop::{verify_proof, DpopError, ProofContext, VerifiedProof};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The request header carrying a proof.
pub const DPOP_HEADER: &str = "dpop";
/// The response header carrying a fresh nonce.
pub const DPOP_NONCE_HEADER: &str = "dpop-nonce";

/// Nonces rotate every five minutes; the previous one stays valid so a
/// client that just fetched one is not refused at the boundary.
const NONCE_SLOT_SECS: i64 = 300;

/// The key that makes nonces unforgeable. Derived from the signing key, so
/// every node sharing the database issues and accepts the same nonces.
pub fn nonce_key(signing_key_der: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"dtr dpop nonce v1");
    h.update(signing_key_der);
    h.finalize().into()
}

fn nonce_for_slot(key: &[u8; 32], slot: i64) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(&slot.to_be_bytes());
    let tag = mac.finalize().into_bytes();
    let mut raw = slot.to_be_bytes().to_vec();
    raw.extend_from_slice(&tag[..16]);
    URL_SAFE_NO_PAD.encode(raw)
}

/// What the checks of proofs and nonces at this server's endpoints read:
/// the `[dpop]` configuration, the nonce key, the issuer (proofs name its
/// URLs), the clock and the store (single use of `jti`). The state hands
/// one out ([`crate::state::AppState::dpop`]).
#[derive(Clone, Copy)]
pub struct Verifier<'a> {
    /// The `[dpop]` section of the configuration.
    pub config: &'a DpopConfig,
    /// The key of server nonces ([`nonce_key`]).
    pub nonce_key: &'a [u8; 32],
    /// The issuer identifier, without a trailing slash.
    pub issuer: &'a str,
    /// The clock.
    pub clock: &'a dyn Clock,
    /// The store, where used `jti`s are remembered.
    pub store: &'a dyn Store,
}

impl Verifier<'_> {
    /// The nonce to hand out now.
    pub fn current_nonce(&self) -> String {
        nonce_for_slot(self.nonce_key, self.clock.now_ms() / 1000 / NONCE_SLOT_SECS)
    }

    fn nonce_ok(&self, nonce: &str) -> bool {
        let slot = self.clock.now_ms() / 1000 / NONCE_SLOT_SECS;
        [slot, slot - 1].iter().any(|s| {
            dtr_proto::secret::ct_eq(
                nonce_for_slot(self.nonce_key, *s).as_bytes(),
                nonce.as_bytes(),
            )
        })
    }

    /// Adds a fresh `DPoP-Nonce` to a response when nonces are on.
    pub fn add_nonce(&self, headers: &mut HeaderMap) {
        if self.config.nonce {
            if let Ok(v) = HeaderValue::from_str(&self.current_nonce()) {
                headers.insert(DPOP_NONCE_HEADER, v);
            }
        }
    }

    /// Validates the request's proof, if any, for `method` on `path` of this
    /// issuer. `access_token` is given at resource endpoints (check of `ath`).
    pub async fn check(
        &self,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        access_token: Option<&str>,
    ) -> Result<Option<VerifiedProof>, crate::error::Error> {
        let Some(proof) = proof_header(headers).map_err(|e| e.to_oauth())? else {
            return Ok(None);
        };
        let url = format!("{}{}", self.issuer, path);
        let window = self.config.iat_window as i64;
        let ctx = ProofContext {
            method,
            url: &url,
            now: self.clock.now_ms() / 1000,
            iat_window: window,
            access_token,
        };
        let verified = verify_proof(proof, &ctx).map_err(|e| e.to_oauth())?;
        if self.config.nonce && !verified.nonce.as_deref().is_some_and(|n| self.nonce_ok(n)) {
            return Err(DpopError::NonceRequired.to_oauth().into());
        }
        // Single use: remember the jti for as long as its iat is acceptable.
        let key =
            dtr_proto::secret::sha256_b64(&format!("dpop\n{}\n{}", verified.jkt, verified.jti));
        let until_ms = (verified.iat + window + 1) * 1000;
        let fresh = self
            .store
            .use_once(&key, until_ms, self.clock.now_ms())
            .await?;
        if !fresh {
            return Err(DpopError::Replayed.to_oauth().into());
        }
        Ok(Some(verified))
    }
}

/// The proof of a request, if it has one. Two `DPoP` headers are an
/// error (RFC 9449 section 4.3 check 1).
pub fn proof_header(headers: &HeaderMap) -> Result<Option<&str>, DpopError> {
    let mut values = headers.get_all(DPOP_HEADER).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(DpopError::MultipleHeaders);
    }
    first
        .map(|v| v.to_str().map_err(|_| DpopError::Malformed))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_depend_on_key_and_slot() {
        let a = nonce_key(b"one");
        let b = nonce_key(b"two");
        assert_ne!(nonce_for_slot(&a, 1), nonce_for_slot(&b, 1));
        assert_ne!(nonce_for_slot(&a, 1), nonce_for_slot(&a, 2));
        assert_eq!(nonce_for_slot(&a, 7), nonce_for_slot(&a, 7));
    }
}
