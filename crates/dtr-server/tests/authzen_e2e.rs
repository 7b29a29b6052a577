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
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, PollOutcome, Poller,
    SystemClock, TokenResult,
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

/// Two dtr servers: A decides token requests with the PDP fixture, whose
/// requestable denials send A to B's own access request endpoint; B's
/// admin approves in B's review queue; B's callbacks outbox calls A back
/// at A's per-task URL; A polls B's task, re-evaluates with B's approval,
/// and A's client collects the token.
#[tokio::test]
async fn one_dtr_submits_to_anothers_review_queue() {
    let f = arap::start(
        &format_time(now_ms() + 60_000),
        &format_time(now_ms() + 60_000),
    )
    .await;
    let port_a = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let b_config = format!(
        r#"
dev_mode = true
[admin]
token = "b-admin-token-0123456789abcdefghijklmn"
[callbacks]
delay_ms = 0
[[clients]]
client_id = "pep"
client_secret = "pep-secret"
grant_types = ["client_credentials"]
scope = ""
deferred_client_notification_endpoint = "http://127.0.0.1:{port_a}/authzen/callback"
"#
    );
    let b = server::start(&b_config, &dir.path().join("b.db")).await;
    // A's credential at B: B's access token for the client pep.
    let pep_at_b = Client::discover(
        &b.issuer,
        ClientAuth::SecretBasic {
            client_id: "pep".into(),
            secret: ClientSecret::new("pep-secret"),
        },
    )
    .await
    .unwrap();
    let TokenResult::Token(t) = pep_at_b
        .client_credentials(&ClientCredentialsRequest::default())
        .await
        .unwrap()
    else {
        panic!("a token for pep at B")
    };
    {
        let mut g = f.lock();
        g.access_request_endpoint = Some(format!("{}/access/v1/requests", b.issuer));
        g.accept_any_approval = true;
    }
    let a_config = format!(
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
pdp = "{}"
token = "{}"
access_request_origins = ["{}"]
"#,
        f.base, t.access_token, b.issuer
    );
    let a = server::start_listening(
        &a_config,
        &format!("sqlite://{}", dir.path().join("a.db").display()),
        std::sync::Arc::new(dtr_server::clock::SystemClock),
        &format!("127.0.0.1:{port_a}"),
    )
    .await;
    let c = client(&a.issuer).await;
    let TokenResult::Deferred(d) = c.client_credentials(&deferred("payments")).await.unwrap()
    else {
        panic!("expected a deferral")
    };
    // The request waits in B's queue, as an access request of pep.
    let b_admin = AdminClient::new(&b.issuer, "b-admin-token-0123456789abcdefghijklmn").unwrap();
    let list = b_admin.list(Some("pending"), Some("pep")).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["grant_type"], "urn:openid:authzen:access-request");
    assert_eq!(
        list[0]["authorization_details"][0]["resource"]["id"],
        "payments"
    );
    let id = list[0]["id"].as_str().unwrap().to_owned();

    let poller = {
        let c = c.clone();
        let d = d.clone();
        tokio::spawn(async move { Poller::new(&c, SystemClock, &d).run(|_| {}).await })
    };
    b_admin.approve(&id, None).await.unwrap();
    let started = std::time::Instant::now();
    match poller.await.unwrap().unwrap() {
        PollOutcome::Token(t) => assert_eq!(t.scope.as_deref(), Some("payments")),
        other => panic!("unexpected {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    // B's outbox called A back at A's per-task URL, which answered 204.
    let mut delivered = None;
    for _ in 0..100 {
        delivered = b.state.store.callback_status(&id).await.unwrap();
        if delivered.as_ref().is_some_and(|c| c.state == "delivered") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let delivered = delivered.expect("a callback was queued");
    assert_eq!(
        (delivered.state.as_str(), delivered.last_status),
        ("delivered", Some(204))
    );
    let events = b_admin.events(&id).await.unwrap();
    assert!(events.iter().any(|e| e["type"] == "approved"));
    a.stop().await;
    b.stop().await;
}
