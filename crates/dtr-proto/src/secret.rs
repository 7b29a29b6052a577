//! Secret values: random generation from the OS CSPRNG, hashing for storage
//! at rest, constant-time comparison, and newtypes whose `Debug` never
//! prints the value (DTR-9, DTR-29, DTR-36).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes of entropy in a deferral code: 160 bits, the draft's recommendation
/// (DTR-9).
pub const DEFERRAL_CODE_BYTES: usize = 20;

/// Minimum length of a `client_notification_token`: 22 base64url characters
/// carry 128 bits, the draft's minimum (DTR-12). We cannot measure entropy,
/// only refuse values too short to hold it.
pub const MIN_NOTIFICATION_TOKEN_LEN: usize = 22;

/// `n` random bytes from the OS CSPRNG, base64url without padding, never
/// beginning with `-`: one value in 64 would otherwise, and a code pasted
/// on a command line (`dtr poll CODE`) would be taken for an option. The
/// first character is drawn from 63 values instead of 64, a loss of 0.02
/// bits.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    loop {
        OsRng.fill_bytes(&mut buf);
        let token = URL_SAFE_NO_PAD.encode(&buf);
        if !token.starts_with('-') {
            return token;
        }
    }
}

/// SHA-256 of a secret, base64url: how deferral codes, notification tokens
/// and interaction handles are stored. A high-entropy secret needs no salt
/// or slow hash; the digest is also the lookup key.
pub fn sha256_b64(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two byte strings (length may leak).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

macro_rules! secret_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value.
            pub fn new(v: impl Into<String>) -> Self {
                Self(v.into())
            }
            /// The secret value itself; call only where it must leave the process.
            pub fn secret(&self) -> &str {
                &self.0
            }
            /// The storage form: SHA-256, base64url.
            pub fn hash(&self) -> String {
                sha256_b64(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_type!(
    /// A deferral code (DTR-9): 160 random bits, base64url. Stored only as
    /// its SHA-256.
    DeferralCode
);
secret_type!(
    /// A `client_notification_token` chosen by the client (DTR-12, DTR-29).
    NotificationToken
);
secret_type!(
    /// A client secret (RFC 6749 section 2.3.1).
    ClientSecret
);
secret_type!(
    /// An access token.
    AccessToken
);
secret_type!(
    /// A refresh token.
    RefreshToken
);
secret_type!(
    /// An authorization code (OAuth 2.1 section 4.1.2). Stored only as its
    /// SHA-256.
    AuthorizationCode
);
secret_type!(
    /// A PKCE `code_verifier` (RFC 7636 section 4.1).
    CodeVerifier
);

secret_type!(
    /// An RFC 8628 `device_code`: 160 random bits, stored only as its SHA-256.
    DeviceCode
);

secret_type!(
    /// A user's personal API token of the admin API: [`PERSONAL_TOKEN_PREFIX`]
    /// and 256 random bits, base64url. Shown once; stored only as its
    /// SHA-256.
    PersonalToken
);

/// The prefix of every [`PersonalToken`], so that a leaked one is
/// recognisable (secret scanners, logs under review).
pub const PERSONAL_TOKEN_PREFIX: &str = "dtrp_";

impl PersonalToken {
    /// A fresh token from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(format!("{PERSONAL_TOKEN_PREFIX}{}", random_token(32)))
    }
}

impl DeviceCode {
    /// A fresh device code from the OS CSPRNG (RFC 8628 section 5.2).
    pub fn generate() -> Self {
        Self(random_token(DEFERRAL_CODE_BYTES))
    }
}

impl DeferralCode {
    /// A fresh deferral code from the OS CSPRNG (DTR-9).
    pub fn generate() -> Self {
        Self(random_token(DEFERRAL_CODE_BYTES))
    }
}

impl NotificationToken {
    /// A fresh 160-bit notification token (what a client should send).
    pub fn generate() -> Self {
        Self(random_token(DEFERRAL_CODE_BYTES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferral_codes_are_160_bit_base64url() {
        // DTR-9: 160 bits, base64url without padding, not a UUID.
        let c = DeferralCode::generate();
        assert_eq!(c.secret().len(), 27);
        assert!(c
            .secret()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(c, DeferralCode::generate());
    }

    #[test]
    fn tokens_never_begin_with_a_hyphen() {
        // One in 64 would without the redraw: 2,000 draws all passing by
        // chance is about 2e-14.
        for _ in 0..2000 {
            assert!(!random_token(20).starts_with('-'));
        }
    }

    #[test]
    fn debug_is_redacted() {
        let c = DeferralCode::new("abc-secret");
        assert_eq!(format!("{c:?}"), "DeferralCode([redacted])");
        assert!(!format!("{:?}", ClientSecret::new("pw")).contains("pw"));
    }

    #[test]
    fn personal_tokens_are_prefixed_256_bit_and_redacted() {
        let t = PersonalToken::generate();
        let body = t.secret().strip_prefix(PERSONAL_TOKEN_PREFIX).unwrap_or("");
        assert_eq!(body.len(), 43, "256 bits, base64url");
        assert_ne!(t, PersonalToken::generate());
        assert_eq!(format!("{t:?}"), "PersonalToken([redacted])");
    }

    #[test]
    fn hash_is_stable_and_hides_value() {
        let c = DeferralCode::new("x");
        assert_eq!(c.hash(), sha256_b64("x"));
        assert_ne!(c.hash(), "x");
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
