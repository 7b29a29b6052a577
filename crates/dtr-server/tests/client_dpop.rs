//! End-to-end tests of the client library's DPoP (RFC 9449) and
//! `private_key_jwt` (RFC 7523) support against a real server on port 0:
//! a DPoP-bound deferral (DTR-13) that the client refuses to poll without
//! its key, redeemed with it for a DPoP-bound token (DTR-20) that the demo
//! resource accepts with a proof and refuses as a bearer token; server
//! nonces handled transparently; client assertions at the token and
//! revocation endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/server.rs"]
mod server;

use server::Running;

use dtr_client::{
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, DpopKey, Error,
    ErrorCode, Es256Key, PollOutcome, Poller, SystemClock, TokenResult,
};
use std::path::Path;

const ADMIN_TOKEN: &str = "client-dpop-admin-token-0123456789abcdefghij";

const CONFIG: &str = r#"
[deferral]
expires_in = 30
interval = 1
[admin]
token = "client-dpop-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments reports"
[[policy]]
scope_any = ["payments"]
action = "review"
[[policy]]
scope_any = ["reports"]
action = "approve_after"
approve_after_seconds = 1
"#;

async fn start(db: &Path, config: &str) -> Running {
    server::start(config, db).await
}

fn basic() -> ClientAuth {
    ClientAuth::SecretBasic {
        client_id: "svc".into(),
        secret: ClientSecret::new("svc-secret"),
    }
}

fn deferred(scope: &str) -> ClientCredentialsRequest {
    ClientCredentialsRequest {
        scope: Some(scope.into()),
        deferred: true,
        ..Default::default()
    }
}

async fn newest_pending(issuer: &str, client_id: &str) -> String {
    let admin = AdminClient::new(issuer, ADMIN_TOKEN).unwrap();
    let list = admin.list(Some("pending"), Some(client_id)).await.unwrap();
    list[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn dpop_bound_deferral_from_request_to_resource() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("dtr.db"), CONFIG).await;
    let key = DpopKey::generate();
    let c = Client::discover(&s.issuer, basic())
        .await
        .unwrap()
        .with_dpop(key.clone());
    assert!(c
        .metadata()
        .dpop_signing_alg_values_supported
        .contains(&"ES256".to_owned()));

    let TokenResult::Deferred(d) = c.client_credentials(&deferred("payments")).await.unwrap()
    else {
        panic!("expected a deferral")
    };
    assert_eq!(d.dpop_jkt.as_deref(), Some(key.thumbprint()), "DTR-13");

    // Without the key the library refuses locally; the server agrees.
    let keyless = Client::discover(&s.issuer, basic()).await.unwrap();
    assert!(matches!(
        keyless.poll_deferral(&d).await,
        Err(Error::DpopKeyRequired { .. })
    ));
    let other = keyless.clone().with_dpop(DpopKey::generate());
    assert!(matches!(
        other.poll_deferral(&d).await,
        Err(Error::DpopKeyMismatch { .. })
    ));
    let raw = keyless.poll_once(&d.code).await.unwrap();
    assert_eq!(raw.error_code(), Some(&ErrorCode::InvalidDpopProof));
    let pending = c.poll_deferral(&d).await.unwrap();
    assert_eq!(pending.error_code(), Some(&ErrorCode::AuthorizationPending));

    let id = newest_pending(&s.issuer, "svc").await;
    AdminClient::new(&s.issuer, ADMIN_TOKEN)
        .unwrap()
        .approve(&id, None)
        .await
        .unwrap();

    // Resumed from saved state, as after a restart.
    let saved: dtr_client::Deferral =
        serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    let key_again = DpopKey::from_pkcs8_pem(&key.to_pkcs8_pem().unwrap()).unwrap();
    let resumed = Client::discover(&s.issuer, basic())
        .await
        .unwrap()
        .with_dpop(key_again);
    let outcome = Poller::new(&resumed, SystemClock, &saved)
        .run(|_| {})
        .await
        .unwrap();
    let PollOutcome::Token(t) = outcome else {
        panic!("expected a token, got {outcome:?}")
    };
    assert_eq!(t.token_type, "DPoP", "DTR-20");
    let i = c.introspect(&t.access_token).await.unwrap();
    assert_eq!(i["cnf"]["jkt"], key.thumbprint());

    let resource = format!("{}/demo/resource", s.issuer);
    let ok = c
        .fetch_resource(&resource, &t.access_token, &t.token_type)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json().unwrap()["token_type"], "DPoP");
    let as_bearer = c
        .fetch_resource(&resource, &t.access_token, "Bearer")
        .await
        .unwrap();
    assert_eq!(as_bearer.status, 401, "a bound token is not a bearer token");
    assert!(as_bearer
        .www_authenticate
        .unwrap_or_default()
        .contains("invalid_token"));
    let wrong_key = other
        .fetch_resource(&resource, &t.access_token, "DPoP")
        .await
        .unwrap();
    assert_eq!(wrong_key.status, 401);
    s.stop().await;
}

#[tokio::test]
async fn server_nonces_are_transparent() {
    // RFC 9449 section 8: every first request gets use_dpop_nonce; the
    // library retries with the nonce and remembers it.
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{CONFIG}\n[dpop]\nnonce = true\n");
    let s = start(&dir.path().join("dtr.db"), &config).await;
    let key = DpopKey::generate();
    let c = Client::discover(&s.issuer, basic())
        .await
        .unwrap()
        .with_dpop(key.clone());
    let token_endpoint = c.metadata().token_endpoint.clone().unwrap();
    assert_eq!(c.dpop_nonce(&token_endpoint), None);

    let TokenResult::Deferred(d) = c.client_credentials(&deferred("reports")).await.unwrap() else {
        panic!("expected a deferral")
    };
    assert!(c.dpop_nonce(&token_endpoint).is_some());
    let outcome = Poller::new(&c, SystemClock, &d).run(|_| {}).await.unwrap();
    let PollOutcome::Token(t) = outcome else {
        panic!("expected a token, got {outcome:?}")
    };
    assert_eq!(t.token_type, "DPoP");
    let r = c
        .fetch_resource(
            &format!("{}/demo/resource", s.issuer),
            &t.access_token,
            "DPoP",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    // Cancellation with a proof and the nonce (DTR-31).
    let TokenResult::Deferred(d2) = c.client_credentials(&deferred("payments")).await.unwrap()
    else {
        panic!("expected a deferral")
    };
    c.cancel_deferral(&d2).await.unwrap();
    let r = c.poll_deferral(&d2).await.unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::AccessDenied));

    // A client that has not seen a nonce yet gets there too.
    let fresh = Client::discover(&s.issuer, basic())
        .await
        .unwrap()
        .with_dpop(DpopKey::generate());
    let r = fresh
        .client_credentials(&ClientCredentialsRequest {
            scope: Some("read".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        matches!(r, TokenResult::Token(ref t) if t.token_type == "DPoP"),
        "{r:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn private_key_jwt_with_and_without_dpop() {
    let dir = tempfile::tempdir().unwrap();
    let client_key = Es256Key::generate();
    let mut jwk = client_key.public_jwk();
    jwk["kid"] = "k1".into();
    let jwk_toml: Vec<String> = jwk
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    let config = format!(
        r#"{CONFIG}
[[clients]]
client_id = "jwt-client"
token_endpoint_auth_method = "private_key_jwt"
scope = "read payments reports"
jwks = {{ keys = [ {{ {} }} ] }}
"#,
        jwk_toml.join(", ")
    );
    let s = start(&dir.path().join("dtr.db"), &config).await;
    let auth = ClientAuth::PrivateKeyJwt {
        client_id: "jwt-client".into(),
        key: client_key.clone(),
        kid: Some("k1".into()),
    };
    let c = Client::discover(&s.issuer, auth.clone()).await.unwrap();
    assert!(c
        .metadata()
        .token_endpoint_auth_methods_supported
        .contains(&"private_key_jwt".to_owned()));

    // Two requests in a row: each carries a fresh single-use assertion.
    for _ in 0..2 {
        let r = c
            .client_credentials(&ClientCredentialsRequest {
                scope: Some("read".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let TokenResult::Token(t) = r else {
            panic!("expected a token, got {r:?}")
        };
        assert_eq!(t.token_type, "Bearer");
        let i = c.introspect(&t.access_token).await.unwrap();
        assert_eq!(i["active"], true);
        assert_eq!(i["client_id"], "jwt-client");
    }

    // Deferred, DPoP-bound, redeemed; another deferral cancelled.
    let dc = c.clone().with_dpop(DpopKey::generate());
    let TokenResult::Deferred(d) = dc.client_credentials(&deferred("reports")).await.unwrap()
    else {
        panic!("expected a deferral")
    };
    let outcome = Poller::new(&dc, SystemClock, &d).run(|_| {}).await.unwrap();
    assert!(
        matches!(outcome, PollOutcome::Token(ref t) if t.token_type == "DPoP"),
        "{outcome:?}"
    );
    let TokenResult::Deferred(d2) = c.client_credentials(&deferred("payments")).await.unwrap()
    else {
        panic!("expected a deferral")
    };
    c.cancel_deferral(&d2).await.unwrap();
    assert_eq!(
        c.poll_deferral(&d2).await.unwrap().error_code(),
        Some(&ErrorCode::AccessDenied)
    );

    // Signed with a key the server does not know: invalid_client.
    let forged = ClientAuth::PrivateKeyJwt {
        client_id: "jwt-client".into(),
        key: Es256Key::generate(),
        kid: Some("k1".into()),
    };
    let f = Client::discover(&s.issuer, forged).await.unwrap();
    let r = f
        .client_credentials(&ClientCredentialsRequest::default())
        .await
        .unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::InvalidClient));
    s.stop().await;
}
