//! AuthZEN end to end: a real dtr server on a free port, the PDP and
//! ARAP service fixture of `support/arap.rs` calling it back over HTTP,
//! and the dtr-client library's poller collecting the token; the client's
//! revocation cancelling the task at the service.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/arap.rs"]
mod arap;
#[path = "support/server.rs"]
mod server;

use dtr_client::{
    Client, ClientAuth, ClientCredentialsRequest, ClientSecret, PollOutcome, Poller, SystemClock,
    TokenResult,
};
use dtr_server::pdp::wire::format_time;

fn now_ms() -> i64 {
    dtr_server::clock::Clock::now_ms(&dtr_server::clock::SystemClock)
}

fn config(pdp: &str) -> String {
    format!(
        r#"
dev_mode = true
[deferral]
expires_in = 30
interval = 1
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments"
[[policy]]
action = "authzen"
[authzen]
pdp = "{pdp}"
"#
    )
}

async fn client(issuer: &str) -> Client {
    let auth = ClientAuth::SecretBasic {
        client_id: "svc".into(),
        secret: ClientSecret::new("svc-secret"),
    };
    Client::discover(issuer, auth).await.unwrap()
}

fn deferred(scope: &str) -> ClientCredentialsRequest {
    ClientCredentialsRequest {
        scope: Some(scope.into()),
        deferred: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn approval_through_the_access_request_service_reaches_the_poller() {
    let f = arap::start(
        &format_time(now_ms() + 20_000),
        &format_time(now_ms() + 60_000),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let s = server::start(&config(&f.base), &dir.path().join("dtr.db")).await;
    let c = client(&s.issuer).await;

    // Allowed: at once.
    let TokenResult::Token(_) = c
        .client_credentials(&ClientCredentialsRequest {
            scope: Some("read".into()),
            ..Default::default()
        })
        .await
        .unwrap()
    else {
        panic!("read is allowed")
    };

    let TokenResult::Deferred(d) = c.client_credentials(&deferred("payments")).await.unwrap()
    else {
        panic!("expected a deferral")
    };
    // expires_in never exceeds the task's 20 s.
    assert!(d.expires_in <= 20 && d.expires_in >= 15, "{}", d.expires_in);
    let id = f.task_id();
    assert!(f
        .callback_of(&id)
        .starts_with(&format!("{}/authzen/callback/", s.issuer)));

    let poller = {
        let c = c.clone();
        let d = d.clone();
        tokio::spawn(async move { Poller::new(&c, SystemClock, &d).run(|_| {}).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let until = now_ms() + 600_000;
    f.approve(&id, &format_time(until));
    // The service calls dtr back; dtr polls its status endpoint at once.
    assert_eq!(f.call_back(&id).await, 204);
    match poller.await.unwrap().unwrap() {
        PollOutcome::Token(t) => {
            assert_eq!(t.scope.as_deref(), Some("payments"));
            assert!(t.expires_in.unwrap_or(0) as i64 * 1000 <= until - now_ms() + 2_000);
        }
        other => panic!("unexpected {other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn revocation_cancels_the_task_at_the_service() {
    let f = arap::start(
        &format_time(now_ms() + 60_000),
        &format_time(now_ms() + 60_000),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let s = server::start(&config(&f.base), &dir.path().join("dtr.db")).await;
    let c = client(&s.issuer).await;
    let TokenResult::Deferred(d) = c.client_credentials(&deferred("payments")).await.unwrap()
    else {
        panic!("expected a deferral")
    };
    let id = f.task_id();
    c.cancel(&d.code).await.unwrap();
    f.wait_for("the task's cancellation", |g| g.tasks[&id].cancelled_by_pep)
        .await;
    assert_eq!(f.task(&id).status, "cancelled");
    s.stop().await;
}
