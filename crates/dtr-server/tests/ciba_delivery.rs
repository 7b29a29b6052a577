//! CIBA ping and push end to end (OpenID CIBA Core 1.0 sections 10.2 and
//! 10.3) through the callback outbox: a real server on port 0 on a manual
//! clock, a real receiver on loopback (`dev_mode`). Ping names the
//! `auth_req_id` and the token endpoint answers; push carries the token
//! response, redeemed once and delivered once, the same response on a
//! retry and after a restart; a bridged deferral is pinged by its
//! `auth_req_id`; the user's webhook is told to look.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/server.rs"]
mod server;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use dtr_server::clock::ManualClock;
use dtr_server::store::CallbackStatus;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADMIN: &str = "cb-admin-token-0123456789abcdefghij";
const CIBA: &str = "urn:openid:params:grant-type:ciba";
const TOKEN: &str = "notify-token-0123456789abcdefghijkl";

/// A request received: path, `Authorization`, body.
type Got = (String, Option<String>, Value);

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    fail_first: Arc<AtomicUsize>,
}

async fn start_receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route(
            "/{path}",
            post(
                |State(r): State<Receiver>,
                 axum::extract::Path(path): axum::extract::Path<String>,
                 h: HeaderMap,
                 b: axum::body::Bytes| async move {
                    let auth = h
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let body = serde_json::from_slice(&b).unwrap_or(Value::Null);
                    r.got.lock().unwrap().push((path, auth, body));
                    if r.fail_first.load(Ordering::SeqCst) > 0 {
                        r.fail_first.fetch_sub(1, Ordering::SeqCst);
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                    StatusCode::NO_CONTENT.into_response()
                },
            ),
        )
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (r, format!("http://{addr}"))
}

fn config(base: &str, bridge: bool) -> String {
    format!(
        r#"
dev_mode = true
[deferral]
expires_in = 120
interval = 1
[admin]
token = "{ADMIN}"
[callbacks]
delay_ms = 200
retry_base_ms = 100
timeout_ms = 700
connect_timeout_ms = 500
[ciba]
bridge = {bridge}
[[clients]]
client_id = "pinger"
client_secret = "pinger-secret"
grant_types = ["{CIBA}", "client_credentials"]
scope = "openid payments"
backchannel_token_delivery_mode = "ping"
backchannel_client_notification_endpoint = "{base}/ping"
[[clients]]
client_id = "pusher"
client_secret = "pusher-secret"
grant_types = ["{CIBA}"]
scope = "openid profile"
backchannel_token_delivery_mode = "push"
backchannel_client_notification_endpoint = "{base}/push"
[[users]]
username = "alice"
password = "alice-password"
name = "Alice Example"
[[webhooks]]
approvers = "user:alice"
url = "{base}/device"
secret = "device-webhook-secret-0123456789abcdef"
[[policy]]
grant_type = "client_credentials"
scope_any = ["payments"]
action = "review"
"#
    )
}

struct Server {
    issuer: String,
    clock: Arc<ManualClock>,
    running: server::Running,
    http: reqwest::Client,
}

impl Server {
    async fn start(config: &str, db: &std::path::Path, clock: Arc<ManualClock>) -> Self {
        let running = server::start_with_clock(config, db, clock.clone()).await;
        Self {
            issuer: running.issuer.clone(),
            clock,
            running,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, client: (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.issuer))
            .basic_auth(client.0, Some(client.1))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> Value {
        self.http
            .request(method, format!("{}{path}", self.issuer))
            .bearer_auth(ADMIN)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn newest_id(&self) -> String {
        self.admin(reqwest::Method::GET, "/admin/deferrals").await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn job(&self, id: &str) -> Option<CallbackStatus> {
        self.running.state.store.callback_status(id).await.unwrap()
    }

    /// Advances the server's time until the callback job of `id` is done.
    async fn finish_job(&self, id: &str) -> CallbackStatus {
        for _ in 0..250 {
            if let Some(j) = self.job(id).await {
                if j.state != "pending" {
                    return j;
                }
            }
            self.clock.advance_ms(200);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        panic!("job of {id} did not finish: {:?}", self.job(id).await)
    }

    async fn start_ciba(&self, client: (&str, &str), scope: &str) -> String {
        let (status, body) = self
            .post(
                "/bc-authorize",
                client,
                &[
                    ("scope", scope),
                    ("login_hint", "alice"),
                    ("client_notification_token", TOKEN),
                ],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["auth_req_id"].as_str().unwrap().to_owned()
    }
}

const PINGER: (&str, &str) = ("pinger", "pinger-secret");
const PUSHER: (&str, &str) = ("pusher", "pusher-secret");

fn received(r: &Receiver, path: &str) -> Vec<(Option<String>, Value)> {
    r.got
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, _)| p == path)
        .map(|(_, a, b)| (a.clone(), b.clone()))
        .collect()
}

fn db() -> PathBuf {
    tempfile::tempdir().unwrap().keep().join("dtr.db")
}

#[tokio::test]
async fn ping_names_the_auth_req_id_once_then_the_token_endpoint_answers() {
    let (r, base) = start_receiver().await;
    let s = Server::start(&config(&base, false), &db(), Arc::new(ManualClock::new())).await;
    // Without a notification token a ping client is refused.
    let (status, body) = s
        .post(
            "/bc-authorize",
            PINGER,
            &[("scope", "openid"), ("login_hint", "alice")],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let auth_req_id = s.start_ciba(PINGER, "openid").await;
    let id = s.newest_id().await;
    s.admin(
        reqwest::Method::POST,
        &format!("/admin/deferrals/{id}/approve"),
    )
    .await;
    let job = s.finish_job(&id).await;
    assert_eq!((job.state.as_str(), job.attempts), ("delivered", 1));
    let pings = received(&r, "ping");
    assert_eq!(pings.len(), 1, "{pings:?}");
    assert_eq!(
        pings[0].0.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(pings[0].1, json!({"auth_req_id": auth_req_id}));
    let (status, token) = s
        .post(
            "/token",
            PINGER,
            &[("grant_type", CIBA), ("auth_req_id", &auth_req_id)],
        )
        .await;
    assert_eq!(status, 200, "{token}");
    assert!(token["id_token"].is_string());

    // A denial is pinged too; the token endpoint says access_denied.
    let auth_req_id = s.start_ciba(PINGER, "openid").await;
    let id = s.newest_id().await;
    s.admin(
        reqwest::Method::POST,
        &format!("/admin/deferrals/{id}/deny"),
    )
    .await;
    s.finish_job(&id).await;
    assert_eq!(received(&r, "ping").len(), 2);
    let (_, e) = s
        .post(
            "/token",
            PINGER,
            &[("grant_type", CIBA), ("auth_req_id", &auth_req_id)],
        )
        .await;
    assert_eq!(e["error"], "access_denied");
}

#[tokio::test]
async fn push_carries_the_token_response_redeemed_and_delivered_once() {
    let (r, base) = start_receiver().await;
    r.fail_first.store(2, Ordering::SeqCst);
    let s = Server::start(&config(&base, false), &db(), Arc::new(ManualClock::new())).await;
    let auth_req_id = s.start_ciba(PUSHER, "openid profile").await;
    // Push clients never collect, by either grant.
    let (_, e) = s
        .post(
            "/token",
            PUSHER,
            &[("grant_type", CIBA), ("auth_req_id", &auth_req_id)],
        )
        .await;
    assert_eq!(e["error"], "unauthorized_client");
    let id = s.newest_id().await;
    s.admin(
        reqwest::Method::POST,
        &format!("/admin/deferrals/{id}/approve"),
    )
    .await;
    let job = s.finish_job(&id).await;
    assert_eq!((job.state.as_str(), job.attempts), ("delivered", 3));
    let pushes = received(&r, "push");
    assert_eq!(pushes.len(), 3, "two failures, one success");
    // Every attempt carried the same response: one token, minted once.
    assert!(pushes.windows(2).all(|w| w[0].1 == w[1].1));
    let body = &pushes[2].1;
    assert_eq!(body["auth_req_id"], auth_req_id.as_str());
    assert!(body["access_token"].is_string() && body["id_token"].is_string());
    assert_eq!(
        pushes[2].0.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let d = s
        .admin(reqwest::Method::GET, &format!("/admin/deferrals/{id}"))
        .await;
    assert_eq!(d["state"], "redeemed");
    // The pushed token is live.
    let (_, intro) = s
        .post(
            "/introspect",
            PUSHER,
            &[("token", body["access_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(intro["active"], true, "{intro}");

    // A denial is pushed as an error.
    let auth_req_id = s.start_ciba(PUSHER, "openid").await;
    let id = s.newest_id().await;
    s.admin(
        reqwest::Method::POST,
        &format!("/admin/deferrals/{id}/deny"),
    )
    .await;
    s.finish_job(&id).await;
    let pushes = received(&r, "push");
    assert_eq!(
        pushes.last().unwrap().1,
        json!({"auth_req_id": auth_req_id, "error": "access_denied", "error_description": "the request was denied"})
    );
}

#[tokio::test]
async fn push_is_delivered_once_across_a_restart() {
    let (r, base) = start_receiver().await;
    let path = db();
    let clock = Arc::new(ManualClock::new());
    let s = Server::start(&config(&base, false), &path, clock.clone()).await;
    let auth_req_id = s.start_ciba(PUSHER, "openid").await;
    let id = s.newest_id().await;
    // Approved while time stands still: the push is not due yet.
    s.admin(
        reqwest::Method::POST,
        &format!("/admin/deferrals/{id}/approve"),
    )
    .await;
    s.running.stop().await;
    assert!(received(&r, "push").is_empty());
    let s = Server::start(&config(&base, false), &path, clock).await;
    let job = s.finish_job(&id).await;
    assert_eq!(job.state, "delivered");
    let pushes = received(&r, "push");
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0].1["auth_req_id"], auth_req_id.as_str());
    // Later time brings nothing more.
    for _ in 0..10 {
        s.clock.advance_ms(1_000);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(received(&r, "push").len(), 1);
}

#[tokio::test]
async fn a_bridged_deferral_is_pinged_by_its_auth_req_id() {
    let (r, base) = start_receiver().await;
    let s = Server::start(&config(&base, true), &db(), Arc::new(ManualClock::new())).await;
    let (status, d) = s
        .post(
            "/token",
            PINGER,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{d}");
    let code = d["deferral_code"].as_str().unwrap();
    let hint = format!("urn:dtr:deferral:{code}");
    let (status, b) = s
        .post(
            "/bc-authorize",
            PINGER,
            &[
                ("scope", "openid"),
                ("login_hint_token", &hint),
                ("client_notification_token", TOKEN),
            ],
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let auth_req_id = b["auth_req_id"].as_str().unwrap().to_owned();
    let id = s.newest_id().await;
    s.admin(
        reqwest::Method::POST,
        &format!("/admin/deferrals/{id}/approve"),
    )
    .await;
    s.finish_job(&id).await;
    let pings = received(&r, "ping");
    assert_eq!(pings.len(), 1);
    assert_eq!(pings[0].1, json!({"auth_req_id": auth_req_id}));
    assert_eq!(
        pings[0].0.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let (status, t) = s
        .post(
            "/token",
            PINGER,
            &[("grant_type", CIBA), ("auth_req_id", &auth_req_id)],
        )
        .await;
    assert_eq!(status, 200, "{t}");
}

#[tokio::test]
async fn the_users_webhook_is_told_to_look() {
    let (r, base) = start_receiver().await;
    let s = Server::start(&config(&base, false), &db(), Arc::new(ManualClock::new())).await;
    s.start_ciba(PINGER, "openid").await;
    for _ in 0..100 {
        if !received(&r, "device").is_empty() {
            break;
        }
        s.clock.advance_ms(200);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let hooks = received(&r, "device");
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0].1["event"], "ciba.requested");
    assert_eq!(hooks[0].1["user_url"], format!("{}/ciba", s.issuer));
    assert_eq!(hooks[0].1["queue"], "user:alice");
    // Nothing that could redeem or decide it.
    let text = hooks[0].1.to_string();
    assert!(!text.contains("auth_req_id"));
}

#[tokio::test]
async fn cancelled_and_expired_requests_send_nothing() {
    let (r, base) = start_receiver().await;
    let s = Server::start(&config(&base, false), &db(), Arc::new(ManualClock::new())).await;
    // Ping mode, cancelled by the client (revocation of the auth_req_id):
    // no decision can follow and nothing is sent.
    let auth_req_id = s.start_ciba(PINGER, "openid").await;
    let id = s.newest_id().await;
    let (status, _) = s.post("/revoke", PINGER, &[("token", &auth_req_id)]).await;
    assert_eq!(status, 200);
    let late = s
        .admin(
            reqwest::Method::POST,
            &format!("/admin/deferrals/{id}/approve"),
        )
        .await;
    assert_eq!(late["error"], "conflict", "{late}");
    let (_, e) = s
        .post(
            "/token",
            PINGER,
            &[("grant_type", CIBA), ("auth_req_id", &auth_req_id)],
        )
        .await;
    assert_eq!(e["error"], "access_denied");
    // Push mode, expired undecided: nothing is pushed.
    s.clock.advance_ms(1_000);
    s.start_ciba(PUSHER, "openid").await;
    let id2 = s.newest_id().await;
    s.clock.advance_ms(121_000);
    let d = s
        .admin(reqwest::Method::GET, &format!("/admin/deferrals/{id2}"))
        .await;
    assert_eq!(d["state"], "expired");
    for _ in 0..10 {
        s.clock.advance_ms(500);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(received(&r, "ping").is_empty());
    assert!(received(&r, "push").is_empty());
    assert!(s.job(&id).await.is_none() && s.job(&id2).await.is_none());
}
