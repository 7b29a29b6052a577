//! Client authentication at the token, revocation and introspection
//! endpoints (RFC 6749 section 2.3.1, OAuth 2.1 section 2.4.1), including
//! `private_key_jwt` (RFC 7523 section 2.2, RFC 7521 section 4.2).

use crate::error::Error;
use crate::keys::{now_unix_s, random_jti, Es256Key};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use dtr_proto::secret::ClientSecret;
use serde_json::json;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
pub const CLIENT_ASSERTION_TYPE_JWT: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a client assertion. Each request gets a fresh one, so it
/// only has to survive the trip to the server; a short `exp` limits what a
/// captured assertion is worth (RFC 7523 section 3, item 4).
pub const ASSERTION_LIFETIME_SECS: i64 = 60;

/// How the client authenticates itself. `Debug` never prints the secret.
#[derive(Clone, Debug)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded client id
    /// and secret (RFC 6749 section 2.3.1).
    SecretBasic {
        /// The client identifier.
        client_id: String,
        /// The client secret.
        secret: ClientSecret,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    SecretPost {
        /// The client identifier.
        client_id: String,
        /// The client secret.
        secret: ClientSecret,
    },
    /// `none`: a public client that only identifies itself.
    None {
        /// The client identifier.
        client_id: String,
    },
    /// `private_key_jwt`: a fresh JWT signed with the client's key on every
    /// request (RFC 7523 section 2.2); the server holds the public key in
    /// the client's `jwks`.
    PrivateKeyJwt {
        /// The client identifier (`iss` and `sub` of the assertion).
        client_id: String,
        /// The signing key (ES256). `Debug` redacts it.
        key: Es256Key,
        /// `kid` header of the assertion, to pick the key among several in
        /// the client's `jwks`.
        kid: Option<String>,
    },
}

impl ClientAuth {
    /// The client identifier, whatever the method.
    pub fn client_id(&self) -> &str {
        match self {
            Self::SecretBasic { client_id, .. }
            | Self::SecretPost { client_id, .. }
            | Self::None { client_id }
            | Self::PrivateKeyJwt { client_id, .. } => client_id,
        }
    }

    /// The `token_endpoint_auth_method` name of this method (RFC 7591
    /// section 2).
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::SecretBasic { .. } => "client_secret_basic",
            Self::SecretPost { .. } => "client_secret_post",
            Self::None { .. } => "none",
            Self::PrivateKeyJwt { .. } => "private_key_jwt",
        }
    }

    /// The `Authorization` header value, for `client_secret_basic` only.
    ///
    /// RFC 6749 section 2.3.1: the client id and secret are each encoded
    /// with `application/x-www-form-urlencoded` (Appendix B) *before* being
    /// joined with `:` and base64-encoded, so that a `:` or non-ASCII
    /// character in either survives the trip.
    pub fn authorization_header(&self) -> Option<String> {
        match self {
            Self::SecretBasic { client_id, secret } => {
                let joined = format!(
                    "{}:{}",
                    form_encode(client_id),
                    form_encode(secret.secret())
                );
                Some(format!("Basic {}", STANDARD.encode(joined)))
            }
            _ => None,
        }
    }

    /// The body parameters this method adds to a request, apart from the
    /// assertion of `private_key_jwt`, which needs an audience: see
    /// [`ClientAuth::request_params`].
    pub fn body_params(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::SecretBasic { .. } => Vec::new(),
            // RFC 7521 section 4.2: `client_id` is optional beside an
            // assertion; sending it lets the server find the client's keys
            // before parsing the JWT.
            Self::PrivateKeyJwt { client_id, .. } => vec![("client_id", client_id.clone())],
            Self::SecretPost { client_id, secret } => vec![
                ("client_id", client_id.clone()),
                ("client_secret", secret.secret().to_owned()),
            ],
            Self::None { client_id } => vec![("client_id", client_id.clone())],
        }
    }
}

impl ClientAuth {
    /// Every body parameter of this method for a request whose assertion
    /// audience is `audience` (the token endpoint URL or the issuer, RFC
    /// 7523 section 3 item 3). For `private_key_jwt` a fresh assertion is
    /// made on each call, because the server accepts each `jti` once.
    pub fn request_params(&self, audience: &str) -> Result<Vec<(&'static str, String)>, Error> {
        let mut params = self.body_params();
        if let Some(assertion) = self.assertion(audience)? {
            params.push((
                "client_assertion_type",
                CLIENT_ASSERTION_TYPE_JWT.to_owned(),
            ));
            params.push(("client_assertion", assertion));
        }
        Ok(params)
    }

    /// A fresh client assertion for `audience`, for `private_key_jwt` only:
    /// `iss` = `sub` = the client id, `aud`, `iat`, `exp` 60 s later and a
    /// random `jti` (RFC 7523 section 3).
    pub fn assertion(&self, audience: &str) -> Result<Option<String>, Error> {
        let Self::PrivateKeyJwt {
            client_id,
            key,
            kid,
        } = self
        else {
            return Ok(None);
        };
        assertion_at(client_id, key, kid.as_deref(), audience, now_unix_s()).map(Some)
    }
}

/// A client assertion with an explicit `iat` (seconds since the epoch).
pub fn assertion_at(
    client_id: &str,
    key: &Es256Key,
    kid: Option<&str>,
    audience: &str,
    iat: i64,
) -> Result<String, Error> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": iat,
        "exp": iat.saturating_add(ASSERTION_LIFETIME_SECS),
        "jti": random_jti(),
    });
    key.sign(header, &claims)
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> ClientAuth {
        ClientAuth::SecretBasic {
            client_id: id.into(),
            secret: ClientSecret::new(secret),
        }
    }

    #[test]
    fn basic_header_plain_values() {
        // base64("svc:svc-secret")
        assert_eq!(
            basic("svc", "svc-secret").authorization_header().as_deref(),
            Some("Basic c3ZjOnN2Yy1zZWNyZXQ=")
        );
    }

    #[test]
    fn basic_header_urlencodes_both_parts_first() {
        // RFC 6749 section 2.3.1: "a:b" / "p w:é" must be form-encoded
        // before base64, so the server can split on the single ':'.
        let h = basic("a:b", "p w:é").authorization_header().unwrap();
        let raw = STANDARD.decode(h.trim_start_matches("Basic ")).unwrap();
        assert_eq!(String::from_utf8(raw).unwrap(), "a%3Ab:p+w%3A%C3%A9");
    }

    #[test]
    fn post_and_none_put_credentials_in_body() {
        let post = ClientAuth::SecretPost {
            client_id: "c".into(),
            secret: ClientSecret::new("s"),
        };
        assert_eq!(post.authorization_header(), None);
        assert_eq!(
            post.body_params(),
            vec![
                ("client_id", "c".to_owned()),
                ("client_secret", "s".to_owned())
            ]
        );
        let none = ClientAuth::None {
            client_id: "p".into(),
        };
        assert_eq!(none.body_params(), vec![("client_id", "p".to_owned())]);
        assert!(basic("c", "s").body_params().is_empty());
    }

    fn jwt_auth(kid: Option<&str>) -> (ClientAuth, Es256Key) {
        let key = Es256Key::generate();
        let auth = ClientAuth::PrivateKeyJwt {
            client_id: "svc-jwt".into(),
            key: key.clone(),
            kid: kid.map(str::to_owned),
        };
        (auth, key)
    }

    fn decode_verified(jwt: &str, key: &Es256Key, aud: &str) -> serde_json::Value {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk()).unwrap();
        let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&[aud]);
        v.set_issuer(&["svc-jwt"]);
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        jsonwebtoken::decode::<serde_json::Value>(jwt, &dk, &v)
            .unwrap()
            .claims
    }

    #[test]
    fn private_key_jwt_assertion_claims() {
        // RFC 7523 section 3: iss = sub = client_id, aud, exp, jti.
        let aud = "https://as.example/token";
        let (auth, key) = jwt_auth(Some("k1"));
        let params = auth.request_params(aud).unwrap();
        let get = |n: &str| {
            params
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("client_assertion_type"), CLIENT_ASSERTION_TYPE_JWT);
        assert_eq!(get("client_id"), "svc-jwt");
        let jwt = get("client_assertion");
        let c = decode_verified(&jwt, &key, aud);
        assert_eq!(c["sub"], "svc-jwt");
        let iat = c["iat"].as_i64().unwrap();
        assert_eq!(c["exp"].as_i64().unwrap() - iat, ASSERTION_LIFETIME_SECS);
        assert!((iat - now_unix_s()).abs() < 5);
        let h = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(h.alg, jsonwebtoken::Algorithm::ES256);
        assert_eq!(h.kid.as_deref(), Some("k1"));
        assert_eq!(auth.authorization_header(), None);
        assert_eq!(auth.method_name(), "private_key_jwt");
    }

    #[test]
    fn every_assertion_is_fresh() {
        let (auth, key) = jwt_auth(None);
        let a = auth.assertion("https://as").unwrap().unwrap();
        let b = auth.assertion("https://as").unwrap().unwrap();
        let (ca, cb) = (
            decode_verified(&a, &key, "https://as"),
            decode_verified(&b, &key, "https://as"),
        );
        assert_ne!(ca["jti"], cb["jti"]);
        assert!(jsonwebtoken::decode_header(&a).unwrap().kid.is_none());
    }

    #[test]
    fn secret_methods_have_no_assertion() {
        assert_eq!(basic("c", "s").assertion("https://as").unwrap(), None);
        assert!(basic("c", "s")
            .request_params("https://as")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn debug_hides_the_private_key() {
        let (auth, key) = jwt_auth(None);
        let d = format!("{auth:?}");
        let pem = key.to_pkcs8_pem().unwrap();
        let line: String = pem.lines().nth(1).unwrap().chars().take(16).collect();
        assert!(!d.contains(&line), "{d}");
        assert!(d.contains("redacted"), "{d}");
    }

    #[test]
    fn debug_hides_the_secret() {
        let d = format!("{:?}", basic("c", "topsecret"));
        assert!(!d.contains("topsecret"), "{d}");
    }
}
