//! Callback notifications end to end (DTR-25..30): a real server on port 0
//! and a real receiver on loopback (`dev_mode`), driven by the client crate.
//! The server runs on a manual clock: the sender's schedule (the delay
//! before a callback, retries, expiry) moves only when a test advances it,
//! and a test knows a job is done from the outbox, not from waiting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/server.rs"]
mod server;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use dtr_client::{
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, NotificationToken,
    TokenResult,
};
use dtr_server::clock::ManualClock;
use dtr_server::config::{ConfigFile, Overrides};
use dtr_server::store::CallbackStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
struct Received {
    path: String,
    authorization: Option<String>,
    body: serde_json::Value,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<AtomicUsize>,
    /// Answer with a redirect.
    redirect: Arc<AtomicUsize>,
    /// Hang this many requests.
    hang: Arc<AtomicUsize>,
}

async fn record(path: &str, r: &Receiver, headers: &HeaderMap, body: &[u8]) -> Response {
    r.got.lock().unwrap().push(Received {
        path: path.to_owned(),
        authorization: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
    });
    if r.hang.load(Ordering::SeqCst) > 0 {
        r.hang.fetch_sub(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    if r.redirect.load(Ordering::SeqCst) > 0 {
        return (StatusCode::FOUND, [("location", "/elsewhere")]).into_response();
    }
    if r.fail_first.load(Ordering::SeqCst) > 0 {
        r.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn start_receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route(
            "/cb",
            post(
                |State(r): State<Receiver>, h: HeaderMap, b: axum::body::Bytes| async move {
                    record("/cb", &r, &h, &b).await
                },
            ),
        )
        .route(
            "/elsewhere",
            post(
                |State(r): State<Receiver>, h: HeaderMap, b: axum::body::Bytes| async move {
                    record("/elsewhere", &r, &h, &b).await
                },
            ),
        )
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (r, format!("http://{addr}/cb"))
}

struct Server {
    issuer: String,
    clock: Arc<ManualClock>,
    running: server::Running,
}

impl Server {
    /// The callback job of a deferral, as the outbox has it.
    async fn job(&self, deferral_id: &str) -> Option<CallbackStatus> {
        self.running
            .state
            .store
            .callback_status(deferral_id)
            .await
            .unwrap()
    }

    /// Moves the server's time on in small steps (retries come due) until
    /// the deferral's callback job is finished: delivered, given up or
    /// suppressed. Bounded: at most 50 s of server time, 10 s of real time.
    async fn finish_job(&self, deferral_id: &str) -> CallbackStatus {
        for _ in 0..250 {
            if let Some(j) = self.job(deferral_id).await {
                if j.state != "pending" {
                    return j;
                }
            }
            self.clock.advance_ms(200);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        panic!(
            "the callback job of {deferral_id} did not finish: {:?}",
            self.job(deferral_id).await
        )
    }
}

async fn start_server(endpoint: &str, extra: &str) -> Server {
    start_server_with(endpoint, 60, &format!("delay_ms = 200\n{extra}")).await
}

/// A server whose codes live `expires_in` seconds, with `callbacks`
/// settings added to fast retries and short timeouts.
async fn start_server_with(endpoint: &str, expires_in: u64, callbacks: &str) -> Server {
    let config = format!(
        r#"
dev_mode = true
[deferral]
expires_in = {expires_in}
interval = 1
[admin]
token = "cb-admin-token-0123456789abcdefghij"
[callbacks]
retry_base_ms = 100
timeout_ms = 700
connect_timeout_ms = 500
{callbacks}
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
    let clock = Arc::new(ManualClock::new());
    let running =
        server::start_with_clock(&config, &dir.keep().join("dtr.db"), clock.clone()).await;
    Server {
        issuer: running.issuer.clone(),
        clock,
        running,
    }
}

async fn client(issuer: &str) -> Client {
    Client::discover(
        issuer,
        ClientAuth::SecretBasic {
            client_id: "svc".into(),
            secret: ClientSecret::new("svc-secret"),
        },
    )
    .await
    .unwrap()
}

async fn defer(c: &Client, token: Option<NotificationToken>) -> dtr_client::Deferral {
    let req = ClientCredentialsRequest {
        scope: Some("payments".into()),
        deferred: true,
        notification_token: token,
        ..Default::default()
    };
    match c.client_credentials(&req).await.unwrap() {
        TokenResult::Deferred(d) => d,
        other => panic!("expected a deferral, got {other:?}"),
    }
}

async fn newest_id(admin: &AdminClient) -> String {
    admin.list(Some("pending"), None).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn received(r: &Receiver) -> Vec<Received> {
    r.got.lock().unwrap().clone()
}

#[tokio::test]
async fn one_callback_per_resolution_with_bearer() {
    // DTR-26, DTR-30
    let (r, endpoint) = start_receiver().await;
    let s = start_server(&endpoint, "").await;
    let c = client(&s.issuer).await;
    let admin = AdminClient::new(&s.issuer, "cb-admin-token-0123456789abcdefghij").unwrap();
    let token = NotificationToken::generate();
    let d = defer(&c, Some(token.clone())).await;
    let id = newest_id(&admin).await;
    admin.approve(&id, None).await.unwrap();
    let job = s.finish_job(&id).await;
    assert_eq!((job.state.as_str(), job.attempts), ("delivered", 1));
    let got = received(&r);
    assert_eq!(got.len(), 1, "exactly one callback: {got:?}");
    assert_eq!(
        got[0].body,
        serde_json::json!({"deferral_code": d.code.secret()}),
        "only the code"
    );
    assert_eq!(
        got[0].authorization.as_deref(),
        Some(format!("Bearer {}", token.secret()).as_str())
    );
    // The callback only says "poll now" (DTR-30): the token comes from polling.
    let TokenResult::Token(_) = c.poll_once(&d.code).await.unwrap() else {
        panic!("expected a token")
    };

    // A denial is a resolution too; without a notification token there is
    // no Authorization header.
    let d2 = defer(&c, None).await;
    let id2 = newest_id(&admin).await;
    admin.deny(&id2, None).await.unwrap();
    let job = s.finish_job(&id2).await;
    assert_eq!((job.state.as_str(), job.attempts), ("delivered", 1));
    let got = received(&r);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].body["deferral_code"], d2.code.secret());
    assert_eq!(got[1].authorization, None);
}

#[tokio::test]
async fn cancellation_suppresses_the_callback() {
    // DTR-27, DTR-32: resolved, then cancelled before delivery started.
    let (r, endpoint) = start_receiver().await;
    let s = start_server(&endpoint, "").await;
    let c = client(&s.issuer).await;
    let admin = AdminClient::new(&s.issuer, "cb-admin-token-0123456789abcdefghij").unwrap();
    let d = defer(&c, Some(NotificationToken::generate())).await;
    let id = newest_id(&admin).await;
    // The server's time stands still: the callback (due delay_ms after
    // the approval) cannot have started before the cancellation.
    admin.approve(&id, None).await.unwrap();
    c.cancel(&d.code).await.unwrap();
    let job = s.finish_job(&id).await;
    assert_eq!(job.state, "suppressed");
    assert_eq!(job.attempts, 0);
    let got = received(&r);
    assert!(got.is_empty(), "no callback after cancellation: {got:?}");
}

#[tokio::test]
async fn retries_after_errors_until_success() {
    let (r, endpoint) = start_receiver().await;
    r.fail_first.store(2, Ordering::SeqCst);
    let s = start_server(&endpoint, "").await;
    let c = client(&s.issuer).await;
    let admin = AdminClient::new(&s.issuer, "cb-admin-token-0123456789abcdefghij").unwrap();
    let _d = defer(&c, None).await;
    let id = newest_id(&admin).await;
    admin.approve(&id, None).await.unwrap();
    let job = s.finish_job(&id).await;
    assert_eq!((job.state.as_str(), job.attempts), ("delivered", 3));
    let got = received(&r);
    assert_eq!(
        got.len(),
        3,
        "two failures, then one success, then nothing: {got:?}"
    );
    assert!(got.iter().all(|g| g.body == got[0].body));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (r, endpoint) = start_receiver().await;
    r.redirect.store(1, Ordering::SeqCst);
    let s = start_server(&endpoint, "max_attempts = 2").await;
    let c = client(&s.issuer).await;
    let admin = AdminClient::new(&s.issuer, "cb-admin-token-0123456789abcdefghij").unwrap();
    let _d = defer(&c, None).await;
    let id = newest_id(&admin).await;
    admin.approve(&id, None).await.unwrap();
    let job = s.finish_job(&id).await;
    assert_eq!((job.state.as_str(), job.attempts), ("failed", 2));
    let got = received(&r);
    assert!(
        got.iter().all(|g| g.path == "/cb"),
        "the redirect target is never called: {got:?}"
    );
    assert_eq!(
        got.len(),
        2,
        "a redirect is a failed attempt, retried up to max_attempts"
    );
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_delay_polls() {
    let (r, endpoint) = start_receiver().await;
    r.hang.store(1, Ordering::SeqCst);
    let s = start_server(&endpoint, "").await;
    let c = client(&s.issuer).await;
    let admin = AdminClient::new(&s.issuer, "cb-admin-token-0123456789abcdefghij").unwrap();
    let d = defer(&c, None).await;
    // Newest first: one millisecond apart, so the order is not a tie.
    s.clock.advance_ms(1);
    let d2 = defer(&c, None).await;
    let ids = admin.list(Some("pending"), None).await.unwrap();
    let id = ids[1]["id"].as_str().unwrap().to_owned();
    admin.approve(&id, None).await.unwrap();
    // The delivery starts and hangs. Time moves in small steps, as the
    // sender may be between two waits when it is advanced.
    for _ in 0..200 {
        if !received(&r).is_empty() {
            break;
        }
        s.clock.advance_ms(50);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(received(&r).len(), 1, "the delivery is in progress");
    // While it hangs, the token endpoint answers other polls.
    let pending = c.poll_once(&d2.code).await.unwrap();
    assert!(matches!(pending, TokenResult::Error(_)));
    // The hung attempt times out and is retried; polling still yields the token.
    let job = s.finish_job(&id).await;
    assert_eq!(job.state, "delivered");
    assert!(job.attempts >= 2, "retried after the timeout: {job:?}");
    let TokenResult::Token(_) = c.poll_once(&d.code).await.unwrap() else {
        panic!("expected a token")
    };
}

#[tokio::test]
async fn never_for_an_expired_code() {
    // DTR-27: codes live 2 s, callbacks wait 3 s, so the callback would
    // only be due after the code expired.
    let (r, endpoint) = start_receiver().await;
    let s = start_server_with(&endpoint, 2, "delay_ms = 3000").await;
    let c = client(&s.issuer).await;
    let admin = AdminClient::new(&s.issuer, "cb-admin-token-0123456789abcdefghij").unwrap();
    let _d = defer(&c, None).await;
    let id = newest_id(&admin).await;
    admin.approve(&id, None).await.unwrap();
    let job = s.finish_job(&id).await;
    assert_ne!(job.state, "delivered", "{job:?}");
    assert_eq!(job.last_status, None, "nothing was sent: {job:?}");
    let got = received(&r);
    assert!(got.is_empty(), "no callback for an expired code: {got:?}");
}

#[tokio::test]
async fn private_endpoints_are_refused_at_start_up() {
    // DTR-28: static clients get the registration checks.
    for ep in [
        "https://10.0.0.1/cb",
        "https://169.254.169.254/cb",
        "https://[::1]/cb",
        "http://127.0.0.1:1/cb",
    ] {
        let config = format!(
            "[[clients]]\nclient_id = \"svc\"\nclient_secret = \"svc-secret\"\ndeferred_client_notification_endpoint = \"{ep}\"\n"
        );
        let r = ConfigFile::parse(&config)
            .unwrap()
            .validate(&Overrides::default());
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            e.contains("deferred_client_notification_endpoint"),
            "{ep}: {e}"
        );
    }
}
