//! The client library's callback receiver against a real server (DTR-25..30):
//! the client's notification endpoint is the library's
//! [`CallbackReceiver`] on a loopback port (`dev_mode`), and a [`Poller`]
//! whose clock never ends a wait can only poll because a callback woke it.
//! No assertion depends on timing: the poller's polls are counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/server.rs"]
mod server;

use dtr_client::{
    AdminClient, CallbackReceiver, Client, ClientAuth, ClientCredentialsRequest, ClientSecret,
    Clock, NotificationToken, PollOutcome, Poller, TokenResult, CALLBACK_PATH,
};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Wall-clock time whose sleeps never end: the poller's schedule alone
/// never leads to a poll, only a wake-up does.
struct NeverSleeps;

impl Clock for NeverSleeps {
    fn now_unix_ms(&self) -> i64 {
        dtr_client::clock::now_unix_ms()
    }
    fn sleep(&self, _d: Duration) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

struct Server {
    issuer: String,
    _server: server::Running,
    _dir: tempfile::TempDir,
}

async fn start_server(endpoint: &str) -> Server {
    let config = format!(
        r#"
dev_mode = true
[deferral]
expires_in = 60
interval = 1
[admin]
token = "client-cb-admin-0123456789abcdefghij"
[callbacks]
delay_ms = 50
retry_base_ms = 100
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments"
deferred_client_notification_endpoint = "{endpoint}"
[[policy]]
scope_any = ["payments"]
action = "review"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let running = server::start(&config, &dir.path().join("dtr.db")).await;
    Server {
        issuer: running.issuer.clone(),
        _server: running,
        _dir: dir,
    }
}

/// The library's receiver on a free loopback port; returns its endpoint URL.
async fn start_receiver(receiver: &CallbackReceiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = receiver.clone();
    tokio::spawn(async move { r.serve(listener, std::future::pending()).await });
    format!("http://{addr}{CALLBACK_PATH}")
}

#[tokio::test]
async fn callback_wakes_the_poller_and_forged_ones_are_refused() {
    let receiver = CallbackReceiver::new();
    let endpoint = start_receiver(&receiver).await;
    let s = start_server(&endpoint).await;
    let client = Arc::new(
        Client::discover(
            &s.issuer,
            ClientAuth::SecretBasic {
                client_id: "svc".into(),
                secret: ClientSecret::new("svc-secret"),
            },
        )
        .await
        .unwrap(),
    );
    // DTR-12: a fresh token for this request only.
    let token = NotificationToken::generate();
    let req = ClientCredentialsRequest {
        scope: Some("payments".into()),
        deferred: true,
        notification_token: Some(token.clone()),
        ..Default::default()
    };
    let TokenResult::Deferred(d) = client.client_credentials(&req).await.unwrap() else {
        panic!("expected a deferral")
    };
    let wake = receiver.register(&d, token.clone());

    // Relaxed to an hour, on a clock that never ends a wait: without a
    // callback this poller would never poll.
    let pending_answers = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&pending_answers);
    let mut poller = Poller::new(Arc::clone(&client), NeverSleeps, &d)
        .with_relaxed_delay(Duration::from_secs(3600))
        .with_waker(wake);
    let waiting = tokio::spawn(async move {
        let outcome = poller
            .run(|_| {
                seen.fetch_add(1, Ordering::SeqCst);
            })
            .await;
        (outcome, poller.attempts())
    });

    // DTR-26: a callback with a wrong bearer, with none, or with the right
    // bearer for a code it does not belong to, is 401 and wakes nothing.
    let http = reqwest::Client::new();
    let body = serde_json::json!({"deferral_code": d.code.secret()});
    let wrong = http
        .post(&endpoint)
        .bearer_auth("forged-token-0123456789abcdef")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let none = http.post(&endpoint).json(&body).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    let other_code = http
        .post(&endpoint)
        .bearer_auth(token.secret())
        .json(&serde_json::json!({"deferral_code": "some-other-code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other_code.status().as_u16(), 401);
    let malformed = http
        .post(&endpoint)
        .bearer_auth(token.secret())
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        pending_answers.load(Ordering::SeqCst),
        0,
        "a refused callback made the poller poll"
    );
    assert!(!waiting.is_finished());

    // The reviewer approves; the server's callback wakes the poller, whose
    // one poll collects the token (DTR-30: the token comes from polling).
    let admin = AdminClient::new(&s.issuer, "client-cb-admin-0123456789abcdefghij").unwrap();
    let id = admin.list(Some("pending"), None).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin.approve(&id, None).await.unwrap();
    // A generous bound so that a broken wake-up fails instead of hanging.
    let (outcome, attempts) = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the server's callback woke the poller")
        .unwrap();
    match outcome.unwrap() {
        PollOutcome::Token(t) => assert_eq!(t.scope.as_deref(), Some("payments")),
        other => panic!("expected a token, got {other:?}"),
    }
    assert_eq!(attempts, 1, "exactly one poll, the one the callback caused");
    assert_eq!(pending_answers.load(Ordering::SeqCst), 0);
    assert!(receiver.unregister(&d.code));
}
