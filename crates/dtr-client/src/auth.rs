//! Client authentication at the token, revocation and introspection
//! endpoints (RFC 6749 section 2.3.1, OAuth 2.1 section 2.4.1).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use dtr_proto::secret::ClientSecret;

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
}

impl ClientAuth {
    /// The client identifier, whatever the method.
    pub fn client_id(&self) -> &str {
        match self {
            Self::SecretBasic { client_id, .. }
            | Self::SecretPost { client_id, .. }
            | Self::None { client_id } => client_id,
        }
    }

    /// The `token_endpoint_auth_method` name of this method (RFC 7591
    /// section 2).
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::SecretBasic { .. } => "client_secret_basic",
            Self::SecretPost { .. } => "client_secret_post",
            Self::None { .. } => "none",
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

    /// The body parameters this method adds to a request.
    pub fn body_params(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::SecretBasic { .. } => Vec::new(),
            Self::SecretPost { client_id, secret } => vec![
                ("client_id", client_id.clone()),
                ("client_secret", secret.secret().to_owned()),
            ],
            Self::None { client_id } => vec![("client_id", client_id.clone())],
        }
    }
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

    #[test]
    fn debug_hides_the_secret() {
        let d = format!("{:?}", basic("c", "topsecret"));
        assert!(!d.contains("topsecret"), "{d}");
    }
}
