//! Approver webhooks end to end: a real server on port 0 on a manual
//! clock, and a receiver on loopback (`dev_mode`). A deferral routed to a
//! watched group or user is announced once per webhook, signed with that
//! webhook's secret; deferrals of other queues or of rules without
//! approvers are not; a 500 is retried; a restart before delivery neither
//! loses nor duplicates the notification.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/server.rs"]
mod server;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use dtr_client::{
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, TokenResult,
};
use dtr_server::clock::ManualClock;
use dtr_server::store::HookStatus;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADMIN: &str = "hooks-admin-token-0123456789abcdefghij";
const FRAUD_SECRET: &str = "fraud-webhook-secret-0123456789abcdef";
const CAROL_SECRET: &str = "carol-webhook-secret-0123456789abcdef";

#[derive(Clone, Debug)]
struct Received {
    hook: String,
    signature: Option<String>,
    raw: Vec<u8>,
    body: serde_json::Value,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn start_receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route(
            "/hooks/{hook}",
            post(
                |State(r): State<Receiver>,
                 Path(hook): Path<String>,
                 h: HeaderMap,
                 b: axum::body::Bytes| async move {
                    r.got.lock().unwrap().push(Received {
                        hook,
                        signature: h
                            .get("dtr-signature")
                            .map(|v| v.to_str().unwrap().to_owned()),
                        raw: b.to_vec(),
                        body: serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
                    });
                    if r.fail_first.load(Ordering::SeqCst) > 0 {
                        r.fail_first.fetch_sub(1, Ordering::SeqCst);
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (r, format!("http://{addr}/hooks"))
}

/// `payments` goes to the fraud group and carol (both watched), `kyc` to
/// the kyc group (not watched), `wire` to the default routing (no
/// approvers).
fn config(hooks: &str) -> String {
    format!(
        r#"
dev_mode = true
[deferral]
expires_in = 600
interval = 1
[admin]
token = "{ADMIN}"
[callbacks]
retry_base_ms = 100
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments kyc wire"
[[users]]
username = "carol"
password = "carol-password"
roles = ["reviewer"]
groups = ["fraud"]
[[policy]]
scope_any = ["payments"]
action = "review"
approvers = ["group:fraud", "user:carol"]
[[policy]]
scope_any = ["kyc"]
action = "review"
approvers = ["group:kyc"]
[[policy]]
scope_any = ["wire"]
action = "review"
[[webhooks]]
approvers = "group:fraud"
url = "{hooks}/fraud"
secret = "{FRAUD_SECRET}"
[[webhooks]]
approvers = "user:carol"
url = "{hooks}/carol"
secret = "{CAROL_SECRET}"
"#
    )
}

struct Server {
    issuer: String,
    clock: Arc<ManualClock>,
    running: server::Running,
}

async fn start(hooks: &str, db: &std::path::Path) -> Server {
    let clock = Arc::new(ManualClock::new());
    let running = server::start_with_clock(&config(hooks), db, clock.clone()).await;
    Server {
        issuer: running.issuer.clone(),
        clock,
        running,
    }
}

impl Server {
    async fn hooks(&self, deferral_id: &str) -> Vec<HookStatus> {
        self.running
            .state
            .store
            .hook_status(deferral_id)
            .await
            .unwrap()
    }

    /// Moves the server's time on in small steps until every notification
    /// of the deferral is finished. Bounded: 50 s of server time.
    async fn settle(&self, deferral_id: &str) -> Vec<HookStatus> {
        for _ in 0..250 {
            let st = self.hooks(deferral_id).await;
            if st.iter().all(|h| h.state != "pending") {
                return st;
            }
            self.clock.advance_ms(200);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "notifications of {deferral_id} did not finish: {:?}",
            self.hooks(deferral_id).await
        )
    }

    /// Advances time without waiting for anything (lets anything that
    /// would be sent be sent).
    async fn idle(&self, steps: usize) {
        for _ in 0..steps {
            self.clock.advance_ms(200);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Asks for `scope` deferred; returns the deferral code and the id.
async fn defer(s: &Server, scope: &str) -> (String, String) {
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
        scope: Some(scope.into()),
        deferred: true,
        ..Default::default()
    };
    let TokenResult::Deferred(d) = c.client_credentials(&req).await.unwrap() else {
        panic!("expected a deferral")
    };
    let admin = AdminClient::new(&s.issuer, ADMIN).unwrap();
    let pending = admin.list(Some("pending"), None).await.unwrap();
    let mine: Vec<_> = pending.iter().filter(|d| d["scope"] == scope).collect();
    assert_eq!(mine.len(), 1, "one pending deferral per scope: {pending:?}");
    let id = mine[0]["id"].as_str().unwrap().to_owned();
    (d.code.secret().to_owned(), id)
}

/// Checks `DTR-Signature: t=<secs>,v1=<hex HMAC-SHA-256("<t>.<body>")>`
/// as a receiver would: whether it verifies with `secret`.
fn signature_ok(r: &Received, secret: &str) -> bool {
    let sig = r.signature.as_deref().expect("signed");
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .expect("t=...,v1=...");
    let t: i64 = t.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((t - now).abs() < 600, "timestamp is the server's time: {t}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.raw);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    v1 == want
}

fn verify(r: &Received, secret: &str) {
    assert!(
        signature_ok(r, secret),
        "signature of the {} webhook",
        r.hook
    );
}

#[tokio::test]
async fn one_signed_notification_per_watched_queue() {
    let (rx, hooks) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(&hooks, &dir.path().join("dtr.db")).await;

    let (kyc_code, kyc) = defer(&s, "kyc").await;
    let (wire_code, wire) = defer(&s, "wire").await;
    let (code, id) = defer(&s, "payments").await;
    assert!(s.hooks(&kyc).await.is_empty(), "group:kyc is not watched");
    assert!(s.hooks(&wire).await.is_empty(), "no approvers, no webhook");
    let st = s.settle(&id).await;
    assert_eq!(st.len(), 2);
    assert!(st.iter().all(|h| h.state == "delivered" && h.attempts == 1));
    s.idle(20).await;

    let mut got = rx.got();
    got.sort_by(|a, b| a.hook.cmp(&b.hook));
    let hooks_hit: Vec<_> = got.iter().map(|r| r.hook.as_str()).collect();
    assert_eq!(
        hooks_hit,
        ["carol", "fraud"],
        "one per webhook, nothing else"
    );
    verify(&got[0], CAROL_SECRET);
    verify(&got[1], FRAUD_SECRET);
    // The secret of one webhook does not verify the other's.
    assert!(!signature_ok(&got[0], FRAUD_SECRET));

    for r in &got {
        let b = &r.body;
        assert_eq!(b["event"], "deferral.queued");
        assert_eq!(b["deferral_id"], id.as_str());
        assert_eq!(b["client_id"], "svc");
        assert!(b.get("client_name").is_some());
        assert_eq!(b["grant_type"], "client_credentials");
        assert_eq!(b["scope"], "payments");
        assert!(b.get("authorization_details").is_some());
        assert!(b["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(b["expires_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            b["approvers"],
            serde_json::json!(["group:fraud", "user:carol"])
        );
        assert_eq!(b["review_url"], format!("{}/review/{id}", s.issuer));
        let raw = String::from_utf8(r.raw.clone()).unwrap();
        for secret in [&code, &kyc_code, &wire_code] {
            assert!(!raw.contains(secret.as_str()), "no deferral code: {raw}");
        }
        assert!(!raw.contains("deferral_code") && !raw.contains("interaction"));
        assert!(!raw.contains("token"), "{raw}");
    }
    assert_eq!(got[0].body["queue"], "user:carol");
    assert_eq!(got[1].body["queue"], "group:fraud");
}

#[tokio::test]
async fn a_failed_delivery_is_retried() {
    let (rx, hooks) = start_receiver().await;
    rx.fail_first.store(1, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let s = start(&hooks, &dir.path().join("dtr.db")).await;
    let (_, id) = defer(&s, "payments").await;
    let st = s.settle(&id).await;
    let mut attempts: Vec<_> = st
        .iter()
        .map(|h| (h.state.as_str(), h.attempts, h.last_status))
        .collect();
    attempts.sort();
    assert_eq!(
        attempts,
        [("delivered", 1, Some(204)), ("delivered", 2, Some(204))],
        "the webhook answered 500 once got a second attempt"
    );
    s.idle(20).await;
    let got = rx.got();
    assert_eq!(got.len(), 3, "one failed, two delivered: {got:?}");
    let retried = &got[0].hook;
    assert_eq!(got.iter().filter(|r| &r.hook == retried).count(), 2);
    for r in &got {
        verify(
            r,
            if r.hook == "fraud" {
                FRAUD_SECRET
            } else {
                CAROL_SECRET
            },
        );
        assert_eq!(r.body["deferral_id"], id.as_str());
    }
}

#[tokio::test]
async fn a_restart_before_delivery_neither_loses_nor_repeats() {
    let (rx, hooks) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dtr.db");

    // The first server queues and stops before its clock lets anything out.
    let first = start(&hooks, &db).await;
    let (_, id) = defer(&first, "payments").await;
    let st = first.hooks(&id).await;
    assert_eq!(st.len(), 2);
    assert!(st.iter().all(|h| h.state == "pending" && h.attempts == 0));
    first.running.stop().await;
    assert!(rx.got().is_empty());

    // The next one on the same database delivers them, once.
    let second = start(&hooks, &db).await;
    let st = second.settle(&id).await;
    assert!(st.iter().all(|h| h.state == "delivered" && h.attempts == 1));
    second.idle(20).await;
    second.running.stop().await;

    // And a third has nothing left to send.
    let third = start(&hooks, &db).await;
    third.idle(20).await;
    let mut got: Vec<_> = rx.got().into_iter().map(|r| r.hook).collect();
    got.sort();
    assert_eq!(got, ["carol", "fraud"]);
}

#[tokio::test]
async fn a_deferral_decided_before_delivery_is_not_announced() {
    let (rx, hooks) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(&hooks, &dir.path().join("dtr.db")).await;
    let (_, id) = defer(&s, "payments").await;
    // Decided before the sender's clock let anything out.
    AdminClient::new(&s.issuer, ADMIN)
        .unwrap()
        .deny(&id, Some("handled by phone"))
        .await
        .unwrap();
    let st = s.settle(&id).await;
    assert!(st.iter().all(|h| h.state == "failed"), "{st:?}");
    s.idle(20).await;
    assert!(rx.got().is_empty(), "nothing to look at: {:?}", rx.got());
}
