//! Authenticated encryption of the few secrets the server must send back
//! in clear later: the deferral code and the `client_notification_token`
//! of a callback (DTR-26), and the interaction handle that polls repeat in
//! their `interaction_uri` (DTR-18; it is looked up by its hash only).
//! Everything else secret is stored as a hash; these cannot be only that,
//! because a later answer carries them (DTR-29 allows encryption where
//! delivery needs the value).
//!
//! AES-256-GCM with a random 96-bit nonce per value; the deferral id is
//! bound as associated data so a sealed value cannot be moved to another
//! row.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// A sealing key.
#[derive(Clone)]
pub struct SealKey(Aes256Gcm);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

impl SealKey {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(bytes.into()))
    }

    /// Encrypts `plain`, bound to `context`.
    pub fn seal(&self, plain: &str, context: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Decrypts a sealed value; `None` if it was tampered with, moved, or
    /// sealed under another key.
    pub fn open(&self, sealed: &str, context: &str) -> Option<String> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < 12 + 16 {
            return None;
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        let plain = self
            .0
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let k = SealKey::from_bytes(&[7; 32]);
        let s = k.seal("secret-code", "dfr_1");
        assert!(!s.contains("secret"));
        assert_eq!(k.open(&s, "dfr_1").as_deref(), Some("secret-code"));
        assert_eq!(k.open(&s, "dfr_2"), None, "bound to its row");
        assert_eq!(
            SealKey::from_bytes(&[8; 32]).open(&s, "dfr_1"),
            None,
            "other key"
        );
        assert_ne!(k.seal("x", "c"), k.seal("x", "c"), "fresh nonce each time");
    }
}
