//! Client secrets the server generates (dynamic registration, RFC 7591
//! section 3.2.1): 256 random bits, stored as a keyed hash and verified in
//! constant time, without the Argon2 pool.
//!
//! Why not Argon2 as for configured clients: a slow, salted hash exists to
//! make guessing a secret a person chose expensive. A generated secret has
//! 256 bits from the OS CSPRNG; no amount of hashing makes it harder to
//! guess, and every verification would cost 19 MiB and tens of
//! milliseconds on a pool of four threads, which lets anyone holding a
//! client id queue work there. HMAC-SHA-256 costs a microsecond.
//!
//! Why keyed, not a bare SHA-256: the hash is then useless without the
//! server's key, so a copy of the clients table alone (a backup, a read-only
//! SQL injection) is not even a verifier to test candidates against, and
//! the client id is part of the MAC input, so a hash copied onto another
//! client's row does not verify there.
//!
//! The key: SHA-256 over a label and the token signing key (PKCS#8, kept in
//! the database), as the DPoP nonce key and the default callback sealing
//! key are derived (`dpop::nonce_key`, `state.rs`). Every node of one
//! database derives the same key, and the label keeps it apart from those
//! two. It is deliberately not derived from `callbacks.encryption_key`:
//! setting or rotating that key would silently invalidate every registered
//! client's secret, whereas the sealed values it protects live minutes.
//!
//! Stored form: `$dtr-hmac-sha256$v1$<base64url MAC>`, in the same
//! `secret_hash` column as Argon2 PHC strings (`$argon2id$...`); the prefix
//! tells them apart, so clients registered before this scheme (Argon2)
//! keep working.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dtr_proto::secret::{random_token, ClientSecret};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Marks a keyed hash in `clients.secret_hash`.
pub const PREFIX: &str = "$dtr-hmac-sha256$v1$";

/// Random bytes in a generated secret: 256 bits.
pub const SECRET_BYTES: usize = 32;

/// A fresh client secret, [`SECRET_BYTES`] from the OS CSPRNG.
pub fn generate() -> ClientSecret {
    ClientSecret::new(random_token(SECRET_BYTES))
}

/// Whether a stored `secret_hash` is one of ours (else an Argon2 PHC
/// string).
pub fn is_keyed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// The key of the keyed hash. `Debug` never shows it.
#[derive(Clone)]
pub struct SecretHashKey([u8; 32]);

impl std::fmt::Debug for SecretHashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHashKey([redacted])")
    }
}

impl SecretHashKey {
    /// The key of a deployment, from its token signing key (module header).
    pub fn derive(signing_key_der: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"dtr generated client secret v1");
        h.update(signing_key_der);
        Self(h.finalize().into())
    }

    fn mac(&self, client_id: &str, secret: &str) -> Hmac<Sha256> {
        // HMAC zero-pads a key shorter than the hash's 64-byte block (RFC
        // 2104 section 2), so this is HMAC under the 32-byte key, through
        // the constructor that cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        mac.update(&(client_id.len() as u64).to_be_bytes());
        mac.update(client_id.as_bytes());
        mac.update(secret.as_bytes());
        mac
    }

    /// The stored form of `secret` for `client_id`.
    pub fn hash(&self, client_id: &str, secret: &ClientSecret) -> String {
        let tag = self.mac(client_id, secret.secret()).finalize().into_bytes();
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Whether `secret` is the one `stored` was made from for `client_id`.
    /// The MAC comparison is constant time (`Mac::verify_slice`); a stored
    /// value that is not ours fails.
    pub fn verify(&self, client_id: &str, secret: &str, stored: &str) -> bool {
        let Some(tag) = stored
            .strip_prefix(PREFIX)
            .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
        else {
            return false;
        };
        self.mac(client_id, secret).verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_carry_256_bits() {
        let s = generate();
        assert_eq!(s.secret().len(), 43, "32 bytes, base64url");
        assert_ne!(s, generate());
        assert!(!format!("{s:?}").contains(s.secret()));
    }

    #[test]
    fn hash_verifies_only_the_secret_for_its_client_under_its_key() {
        let k = SecretHashKey::derive(b"signing key one");
        let s = generate();
        let h = k.hash("dyn_a", &s);
        assert!(is_keyed(&h));
        assert!(!h.contains(s.secret()));
        assert!(k.verify("dyn_a", s.secret(), &h));
        assert!(!k.verify("dyn_a", "wrong", &h));
        assert!(!k.verify("dyn_b", s.secret(), &h), "bound to its client");
        let other = SecretHashKey::derive(b"signing key two");
        assert!(!other.verify("dyn_a", s.secret(), &h), "bound to its key");
        assert!(!k.verify("dyn_a", s.secret(), "$argon2id$v=19$m=19456,t=2,p=1$x$y"));
        assert!(!k.verify("dyn_a", s.secret(), &format!("{PREFIX}!!")));
        assert_eq!(format!("{k:?}"), "SecretHashKey([redacted])");
    }

    #[test]
    fn it_is_hmac_sha256_under_the_derived_key() {
        // Cross-checked against the variable-length constructor, so the
        // zero-padded block really is the 32-byte key.
        let k = SecretHashKey::derive(b"der");
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&k.0).unwrap();
        reference.update(&5u64.to_be_bytes());
        reference.update(b"dyn_a");
        reference.update(b"s3cret");
        let expected = URL_SAFE_NO_PAD.encode(reference.finalize().into_bytes());
        assert_eq!(
            k.hash("dyn_a", &ClientSecret::new("s3cret")),
            format!("{PREFIX}{expected}")
        );
    }

    #[test]
    fn argon2_hashes_are_not_keyed() {
        assert!(!is_keyed(&crate::password::hash("person-chosen").unwrap()));
    }
}
