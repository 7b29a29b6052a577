//! End-to-end tests: a real server on port 0 (real sockets, real SQLite
//! file, system clock) driven by our own client crate. Intervals are one
//! second here, so the few tests that wait do so briefly; everything
//! time-dependent is covered with a manual clock in `router.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/server.rs"]
mod server;

use server::Running;

use dtr_client::{
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, ErrorCode,
    PollOutcome, Poller, SystemClock, TokenResult,
};
use std::path::Path;

const CONFIG: &str = r#"
[deferral]
expires_in = 30
interval = 1
slow_down_limit = 3
[admin]
token = "e2e-admin-token-0123456789abcdefghij"
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

async fn start(db: &Path) -> Running {
    server::start(CONFIG, db).await
}

async fn client(issuer: &str) -> Client {
    let auth = ClientAuth::SecretBasic {
        client_id: "svc".into(),
        secret: ClientSecret::new("svc-secret"),
    };
    Client::discover(issuer, auth).await.unwrap()
}

fn admin(issuer: &str) -> AdminClient {
    AdminClient::new(issuer, "e2e-admin-token-0123456789abcdefghij").unwrap()
}

fn deferred(scope: &str) -> ClientCredentialsRequest {
    ClientCredentialsRequest {
        scope: Some(scope.into()),
        deferred: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn discovery_sees_dtr_support() {
    // DTR-7, through the client's discovery.
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("dtr.db")).await;
    let c = client(&s.issuer).await;
    assert!(c.metadata().deferred_token_response_supported);
    assert!(c.metadata().supports_polling());
    assert!(c.metadata().supports_deferral_cancellation());
    s.stop().await;
}

#[tokio::test]
async fn deferral_reviewed_and_redeemed_once() {
    // DTR-8, DTR-16, DTR-21 over real HTTP.
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("dtr.db")).await;
    let c = client(&s.issuer).await;
    let TokenResult::Deferred(d) = c.client_credentials(&deferred("payments")).await.unwrap()
    else {
        panic!("expected a deferral")
    };
    assert_eq!(d.interval, 1);
    assert_eq!(d.expires_in, 30);
    let pending = c.poll_once(&d.code).await.unwrap();
    assert_eq!(pending.error_code(), Some(&ErrorCode::AuthorizationPending));
    let list = admin(&s.issuer)
        .list(Some("pending"), Some("svc"))
        .await
        .unwrap();
    let id = list[0]["id"].as_str().unwrap().to_owned();
    admin(&s.issuer).approve(&id, None).await.unwrap();
    let TokenResult::Token(t) = c.poll_once(&d.code).await.unwrap() else {
        panic!("expected a token")
    };
    assert_eq!(t.scope.as_deref(), Some("payments"));
    let i = c.introspect(&t.access_token).await.unwrap();
    assert_eq!(i["active"], true);
    let again = c.poll_once(&d.code).await.unwrap();
    assert_eq!(again.error_code(), Some(&ErrorCode::InvalidGrant));
    s.stop().await;
}

#[tokio::test]
async fn poller_waits_for_approve_after() {
    // The client library's poller against the real server: honours the
    // interval and ends with the token.
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("dtr.db")).await;
    let c = client(&s.issuer).await;
    let TokenResult::Deferred(d) = c.client_credentials(&deferred("reports")).await.unwrap() else {
        panic!("expected a deferral")
    };
    let mut steps = 0;
    let outcome = Poller::new(&c, SystemClock, &d)
        .run(|_| steps += 1)
        .await
        .unwrap();
    match outcome {
        PollOutcome::Token(t) => assert_eq!(t.scope.as_deref(), Some("reports")),
        other => panic!("unexpected {other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn cancellation_from_the_client() {
    // DTR-31, DTR-32
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("dtr.db")).await;
    let c = client(&s.issuer).await;
    let TokenResult::Deferred(d) = c.client_credentials(&deferred("payments")).await.unwrap()
    else {
        panic!("expected a deferral")
    };
    c.cancel(&d.code).await.unwrap();
    let r = c.poll_once(&d.code).await.unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::AccessDenied));
    s.stop().await;
}

#[tokio::test]
async fn deferrals_and_keys_survive_a_restart() {
    // Everything persists: a deferral created before a restart is approved
    // and redeemed after it, and the signing key is the same.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dtr.db");
    let s = start(&db).await;
    let c = client(&s.issuer).await;
    let TokenResult::Deferred(d) = c.client_credentials(&deferred("payments")).await.unwrap()
    else {
        panic!("expected a deferral")
    };
    let jwks_before: serde_json::Value = reqwest::get(format!("{}/jwks.json", s.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    s.stop().await;

    let s = start(&db).await;
    let c = client(&s.issuer).await;
    let jwks_after: serde_json::Value = reqwest::get(format!("{}/jwks.json", s.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwks_before, jwks_after,
        "the signing key is never regenerated"
    );
    let id = admin(&s.issuer).list(Some("pending"), None).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin(&s.issuer).approve(&id, None).await.unwrap();
    let TokenResult::Token(_) = c.poll_once(&d.code).await.unwrap() else {
        panic!("expected a token")
    };
    s.stop().await;
}
