//! A store failure after the exactly-once gate (DTR-21) never loses an
//! approval: the poll that passed the gate but could not record its token
//! gets a server error, the redemption rolls back with the token's
//! records (one transaction), and the next poll collects the token,
//! exactly once. The failure is real: a trigger in the SQLite
//! file refuses the access token's row while it is installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/server.rs"]
mod server;

use dtr_client::{
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, ErrorCode, TokenResult,
};
use dtr_server::clock::ManualClock;
use std::sync::Arc;

const CONFIG: &str = r#"
[deferral]
expires_in = 600
interval = 1
[admin]
token = "faults-admin-token-0123456789abcdef"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments"
[[policy]]
scope_any = ["payments"]
action = "review"
"#;

fn sql(db: &std::path::Path, statement: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c.execute_batch(statement).unwrap();
}

#[tokio::test]
async fn a_failure_after_the_gate_leaves_the_approval_collectable_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dtr.db");
    let clock = Arc::new(ManualClock::new());
    let s = server::start_with_clock(CONFIG, &db, clock.clone()).await;
    let c = Client::discover(
        &s.issuer,
        ClientAuth::SecretBasic {
            client_id: "svc".into(),
            secret: ClientSecret::new("svc-secret"),
        },
    )
    .await
    .unwrap();
    let req = ClientCredentialsRequest {
        scope: Some("payments".into()),
        deferred: true,
        ..Default::default()
    };
    let TokenResult::Deferred(d) = c.client_credentials(&req).await.unwrap() else {
        panic!("expected a deferral")
    };
    let admin = AdminClient::new(&s.issuer, "faults-admin-token-0123456789abcdef").unwrap();
    let id = admin.list(Some("pending"), None).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin.approve(&id, None).await.unwrap();

    // The store refuses the token's row: the poll passes the gate, then fails.
    sql(
        &db,
        "CREATE TRIGGER refuse_tokens BEFORE INSERT ON access_tokens \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    );
    clock.advance_ms(1_000);
    match c.poll_once(&d.code).await {
        Ok(TokenResult::Error(e)) => assert_eq!(e.error, ErrorCode::ServerError, "{e:?}"),
        Err(_) => {} // a 5xx the library reports as an error
        Ok(other) => panic!("expected a server error, got {other:?}"),
    }
    assert_eq!(
        admin.show(&id).await.unwrap()["state"],
        "approved",
        "the approval is still there"
    );

    // The store recovers: the next poll gets the token, and only once.
    sql(&db, "DROP TRIGGER refuse_tokens;");
    clock.advance_ms(1_000);
    let TokenResult::Token(t) = c.poll_once(&d.code).await.unwrap() else {
        panic!("expected the token after the store recovered")
    };
    assert_eq!(t.scope.as_deref(), Some("payments"));
    clock.advance_ms(1_000);
    match c.poll_once(&d.code).await.unwrap() {
        TokenResult::Error(e) => assert_eq!(e.error, ErrorCode::InvalidGrant),
        other => panic!("a second token: {other:?}"),
    }
    assert_eq!(admin.show(&id).await.unwrap()["state"], "redeemed");
}
