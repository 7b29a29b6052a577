//! From the connection flags to a discovered client: the client
//! authentication, the DPoP key and the issuer's metadata.

use super::dpop_key::dpop_key;
use super::output::report_error;
use super::{AuthMethod, ConnectionArgs, USAGE};
use clap::ValueEnum;
use dtr_client::{Client, ClientAuth, ClientSecret, Es256Key};

/// Builds the client authentication from the flags, or prints a usage
/// error naming the flag.
pub(super) fn client_auth(conn: &ConnectionArgs) -> Result<ClientAuth, u8> {
    let client_id = conn.client_id.clone();
    if client_id.is_empty() {
        eprintln!("error: --client-id must not be empty");
        return Err(USAGE);
    }
    let secret = conn.client_secret.clone().filter(|s| !s.is_empty());
    let method = conn.auth_method.unwrap_or(if conn.private_key.is_some() {
        AuthMethod::PrivateKeyJwt
    } else if secret.is_some() {
        AuthMethod::ClientSecretBasic
    } else {
        AuthMethod::None
    });
    match (method, &conn.private_key) {
        (AuthMethod::PrivateKeyJwt, Some(path)) => {
            let key = Es256Key::from_pem_file(path).map_err(|e| {
                eprintln!("error: --private-key: {e}");
                USAGE
            })?;
            return Ok(ClientAuth::PrivateKeyJwt {
                client_id,
                key,
                kid: conn.key_id.clone(),
            });
        }
        (AuthMethod::PrivateKeyJwt, None) => {
            eprintln!("error: --auth-method private_key_jwt needs --private-key FILE");
            return Err(USAGE);
        }
        (_, Some(_)) => {
            eprintln!("error: --private-key is only used with --auth-method private_key_jwt");
            return Err(USAGE);
        }
        (_, None) => {}
    }
    match (method, secret) {
        (AuthMethod::ClientSecretBasic, Some(s)) => Ok(ClientAuth::SecretBasic {
            client_id,
            secret: ClientSecret::new(s),
        }),
        (AuthMethod::ClientSecretPost, Some(s)) => Ok(ClientAuth::SecretPost {
            client_id,
            secret: ClientSecret::new(s),
        }),
        (AuthMethod::None, None) => Ok(ClientAuth::None { client_id }),
        (AuthMethod::None, Some(_)) => {
            eprintln!(
                "error: --client-secret (or DTR_CLIENT_SECRET) given with --auth-method none"
            );
            Err(USAGE)
        }
        (m, None) => {
            let name = m
                .to_possible_value()
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default();
            eprintln!("error: --auth-method {name} needs --client-secret (or DTR_CLIENT_SECRET)");
            Err(USAGE)
        }
        (AuthMethod::PrivateKeyJwt, _) => Err(USAGE),
    }
}

/// The client for `poll` or `cancel` of a bare code: authentication,
/// discovery, and the local refusal to use a DPoP-bound code without its
/// key (DTR-13), before anything is sent.
pub(super) async fn client_for_code(
    conn: &ConnectionArgs,
    dpop_jkt: Option<&str>,
) -> Result<Client, u8> {
    let client = discover(conn, client_auth(conn)?).await?;
    client
        .check_binding(dpop_jkt)
        .map_err(|e| report_error(&e, &conn.issuer))?;
    Ok(client)
}

/// Discovers the issuer's metadata (RFC 8414) and returns the client with
/// this authentication and the DPoP key of the flags, if any.
pub(super) async fn discover(conn: &ConnectionArgs, auth: ClientAuth) -> Result<Client, u8> {
    let key = dpop_key(conn)?;
    let client = Client::discover(&conn.issuer, auth)
        .await
        .map_err(|e| report_error(&e, &conn.issuer))?;
    Ok(match key {
        Some(k) => client.with_dpop(k),
        None => client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_cmd::tests::conn;

    #[test]
    fn private_key_selects_private_key_jwt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.pem");
        let key = Es256Key::generate();
        std::fs::write(&path, key.to_pkcs8_pem().unwrap()).unwrap();
        let mut c = conn(None, None);
        c.private_key = Some(path.clone());
        c.key_id = Some("k1".into());
        match client_auth(&c) {
            Ok(ClientAuth::PrivateKeyJwt {
                client_id,
                key: k,
                kid,
            }) => {
                assert_eq!(client_id, "svc");
                assert_eq!(k.thumbprint(), key.thumbprint());
                assert_eq!(kid.as_deref(), Some("k1"));
            }
            other => panic!("{other:?}"),
        }
        // Contradictory or incomplete flags are usage errors.
        c.auth_method = Some(AuthMethod::ClientSecretBasic);
        assert_eq!(client_auth(&c).err(), Some(USAGE));
        let c = conn(None, Some(AuthMethod::PrivateKeyJwt));
        assert_eq!(client_auth(&c).err(), Some(USAGE));
        let mut c = conn(None, None);
        c.private_key = Some(dir.path().join("missing.pem"));
        assert_eq!(client_auth(&c).err(), Some(USAGE));
    }

    #[test]
    fn auth_method_defaults_follow_the_secret() {
        assert!(matches!(
            client_auth(&conn(Some("s"), None)),
            Ok(ClientAuth::SecretBasic { .. })
        ));
        assert!(matches!(
            client_auth(&conn(None, None)),
            Ok(ClientAuth::None { .. })
        ));
        assert!(matches!(
            client_auth(&conn(Some("s"), Some(AuthMethod::ClientSecretPost))),
            Ok(ClientAuth::SecretPost { .. })
        ));
    }

    #[test]
    fn inconsistent_auth_flags_are_usage_errors() {
        assert_eq!(
            client_auth(&conn(None, Some(AuthMethod::ClientSecretBasic))).err(),
            Some(USAGE)
        );
        assert_eq!(
            client_auth(&conn(Some("s"), Some(AuthMethod::None))).err(),
            Some(USAGE)
        );
    }
}
