//! Password hashing of client secrets and user passwords (Argon2id, OWASP
//! parameters), run on blocking threads so a slow hash never stalls the
//! async workers.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::OnceLock;

/// Hashes a secret into a PHC string.
pub fn hash(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Verifies a secret against a PHC string (constant time inside argon2).
pub fn verify(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the client or user is unknown, so the
/// answer takes as long as for a known one.
fn dummy_phc() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("dummy-secret-for-timing").unwrap_or_default())
}

/// [`verify`] on a blocking thread; `phc = None` burns the same time and fails.
pub async fn verify_async(secret: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(p) => verify(&secret, &p),
        None => {
            let _ = verify(&secret, dummy_phc());
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// [`hash`] on a blocking thread.
pub async fn hash_async(secret: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash(&secret))
        .await
        .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_is_salted() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse", &a));
        assert!(!verify("wrong", &a));
        assert!(!verify("x", "not a phc string"));
    }
}
