//! Several `dtr serve` processes sharing one PostgreSQL database, as behind
//! a load balancer: every guarantee of the draft must hold whichever node
//! answers. A deferral created on one node is polled and redeemed on the
//! other, exactly once even under concurrent polls spread over both
//! (DTR-21); the polling interval is enforced across nodes (DTR-19);
//! cancellation on one node is seen on the other (DTR-32); and a node
//! killed with SIGKILL under load loses nothing.
//!
//! Each test gets a fresh database (`crates/dtr-server/tests/support/pg.rs`):
//! without `DTR_TEST_POSTGRES_URL` they are reported as ignored, and fail in CI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../dtr-server/tests/support/pg.rs"]
mod pg;
#[path = "support/receiver.rs"]
mod receiver;

use dtr_client::{
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, DeferralCode,
    ErrorCode, TokenResult,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DTR: &str = env!("CARGO_BIN_EXE_dtr");
const ADMIN: &str = "multinode-admin-token-0123456789abcdefghij";

/// A long interval so that two polls in a row are always "too fast"; a
/// high escalation limit so that the load test's fast polls are answered
/// `slow_down` without killing the codes (DTR-19).
const CONFIG: &str = r#"
listen = "127.0.0.1:0"
database_pool_size = 4
[deferral]
expires_in = 300
interval = 30
slow_down_limit = 1000000
[admin]
token = "multinode-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments"
[[policy]]
scope_any = ["payments"]
action = "review"
"#;

/// One `dtr serve` process; killed (SIGKILL) when dropped.
struct Node {
    child: Child,
    issuer: String,
    /// The address it listens on (differs from the issuer's host when the
    /// nodes share one issuer, as behind a load balancer).
    addr: String,
}

impl Node {
    fn start(dir: &Path, db_url: &str) -> Node {
        Node::start_with(dir, db_url, CONFIG, &[])
    }

    fn start_with(dir: &Path, db_url: &str, config: &str, extra: &[&str]) -> Node {
        let cfg = dir.join(format!(
            "dtr-{}.toml",
            std::process::id() as u64 * 1000 + rand_suffix()
        ));
        std::fs::write(&cfg, config).unwrap();
        let mut child = Command::new(DTR)
            .current_dir(dir)
            .args(["serve", "--config"])
            .arg(&cfg)
            .args(["--database", db_url])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("the node printed its address").unwrap();
        // "dtr listening on ADDR, issuer URL"
        let rest = first
            .strip_prefix("dtr listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"));
        let addr = rest.split(',').next().unwrap_or_default().trim().to_owned();
        let issuer = rest
            .split("issuer ")
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_owned();
        Node {
            child,
            issuer,
            addr,
        }
    }

    async fn client(&self) -> Client {
        let auth = ClientAuth::SecretBasic {
            client_id: "svc".into(),
            secret: ClientSecret::new("svc-secret"),
        };
        Client::discover(&self.issuer, auth).await.unwrap()
    }

    fn admin(&self) -> AdminClient {
        AdminClient::new(&self.issuer, ADMIN).unwrap()
    }

    /// SIGKILL: no draining, no clean shutdown of the pool.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn defer(c: &Client) -> DeferralCode {
    let req = ClientCredentialsRequest {
        scope: Some("payments".into()),
        deferred: true,
        ..Default::default()
    };
    match c.client_credentials(&req).await.unwrap() {
        TokenResult::Deferred(d) => d.code,
        other => panic!("expected a deferral, got {other:?}"),
    }
}

fn code_of(r: &TokenResult) -> Option<&ErrorCode> {
    r.error_code()
}

async fn newest_pending_id(admin: &AdminClient) -> String {
    let list = admin.list(Some("pending"), Some("svc")).await.unwrap();
    list[0]["id"].as_str().unwrap().to_owned()
}

/// Two nodes on a fresh database, or `None` when PostgreSQL tests skip.
async fn two_nodes(test: &str) -> Option<(pg::TestDb, tempfile::TempDir, Node, Node)> {
    let db = pg::TestDb::create(test).await?;
    let dir = tempfile::tempdir().unwrap();
    // Started at the same moment: migrations and the signing key must
    // still come out as one (advisory lock, ON CONFLICT DO NOTHING).
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Node::start(dir.path(), &db.url));
        let b = s.spawn(|| Node::start(dir.path(), &db.url));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.issuer, b.issuer);
    Some((db, dir, a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    dtr_no_postgres,
    ignore = "needs PostgreSQL: set DTR_TEST_POSTGRES_URL"
)]
async fn created_on_a_polled_on_b_approved_on_a_redeemed_once() {
    let Some((_db, _dir, a, b)) = two_nodes("multinode::created_on_a_polled_on_b").await else {
        return;
    };
    let (ca, cb) = (a.client().await, b.client().await);
    let code = defer(&ca).await;
    let r = cb.poll_once(&code).await.unwrap();
    assert_eq!(code_of(&r), Some(&ErrorCode::AuthorizationPending), "{r:?}");
    let id = newest_pending_id(&a.admin()).await;
    a.admin().approve(&id, None).await.unwrap();
    let TokenResult::Token(t) = cb.poll_once(&code).await.unwrap() else {
        panic!("expected the token on B")
    };
    assert_eq!(t.scope.as_deref(), Some("payments"));
    // Both nodes sign with the one key in the database: the key B signed
    // with is the one A publishes. (Introspection at A would also check
    // `iss`, which differs here because each test node is its own issuer;
    // behind a load balancer the nodes share one.)
    let header = t.access_token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    let jwks: serde_json::Value = reqwest::get(format!("{}/jwks.json", a.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"]),
        "B's signing key {header} is A's: {jwks}"
    );
    let info = cb.introspect(&t.access_token).await.unwrap();
    assert_eq!(info["active"], true, "{info}");
    // DTR-21 across nodes: A knows it was redeemed on B.
    let again = ca.poll_once(&code).await.unwrap();
    assert_eq!(code_of(&again), Some(&ErrorCode::InvalidGrant), "{again:?}");
    assert_eq!(b.admin().show(&id).await.unwrap()["state"], "redeemed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    dtr_no_postgres,
    ignore = "needs PostgreSQL: set DTR_TEST_POSTGRES_URL"
)]
async fn fifty_concurrent_polls_over_both_nodes_give_one_token() {
    let Some((_db, _dir, a, b)) = two_nodes("multinode::fifty_concurrent_polls").await else {
        return;
    };
    let (ca, cb) = (a.client().await, b.client().await);
    let code = defer(&ca).await;
    let id = newest_pending_id(&b.admin()).await;
    b.admin().approve(&id, None).await.unwrap();

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
            let (code, barrier) = (code.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                c.poll_once(&code).await.unwrap()
            })
        })
        .collect();
    let (mut tokens, mut invalid_grant) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            TokenResult::Token(_) => tokens += 1,
            r if code_of(&r) == Some(&ErrorCode::InvalidGrant) => invalid_grant += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(tokens, 1, "DTR-21: one token response, never two");
    assert_eq!(invalid_grant, 49);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    dtr_no_postgres,
    ignore = "needs PostgreSQL: set DTR_TEST_POSTGRES_URL"
)]
async fn polling_a_then_b_faster_than_interval_is_slow_down() {
    let Some((_db, _dir, a, b)) = two_nodes("multinode::slow_down").await else {
        return;
    };
    let (ca, cb) = (a.client().await, b.client().await);
    let code = defer(&ca).await;
    let first = ca.poll_once(&code).await.unwrap();
    assert_eq!(code_of(&first), Some(&ErrorCode::AuthorizationPending));
    // DTR-19: the polling state is in the database, so B knows A was just polled.
    let second = cb.poll_once(&code).await.unwrap();
    assert_eq!(code_of(&second), Some(&ErrorCode::SlowDown), "{second:?}");
    let third = ca.poll_once(&code).await.unwrap();
    assert_eq!(code_of(&third), Some(&ErrorCode::SlowDown), "{third:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    dtr_no_postgres,
    ignore = "needs PostgreSQL: set DTR_TEST_POSTGRES_URL"
)]
async fn cancel_on_b_is_seen_on_a() {
    let Some((_db, _dir, a, b)) = two_nodes("multinode::cancel").await else {
        return;
    };
    let (ca, cb) = (a.client().await, b.client().await);
    let code = defer(&ca).await;
    let id = newest_pending_id(&a.admin()).await;
    cb.cancel(&code).await.unwrap();
    // DTR-32: later polls anywhere answer access_denied, and no reviewer
    // can approve it any more.
    let r = ca.poll_once(&code).await.unwrap();
    assert_eq!(code_of(&r), Some(&ErrorCode::AccessDenied), "{r:?}");
    assert_eq!(a.admin().show(&id).await.unwrap()["state"], "cancelled");
    assert_eq!(
        a.admin().approve(&id, None).await.unwrap_err().status(),
        Some(409)
    );

    // DTR-34: approved on A, cancelled on B before collection: no token.
    let code = defer(&ca).await;
    let id = newest_pending_id(&a.admin()).await;
    a.admin().approve(&id, None).await.unwrap();
    cb.cancel(&code).await.unwrap();
    let r = ca.poll_once(&code).await.unwrap();
    assert_eq!(code_of(&r), Some(&ErrorCode::AccessDenied), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    dtr_no_postgres,
    ignore = "needs PostgreSQL: set DTR_TEST_POSTGRES_URL"
)]
async fn sigkill_one_node_under_load_loses_nothing() {
    let Some((db, dir, mut a, b)) = two_nodes("multinode::sigkill").await else {
        return;
    };
    let (ca, cb) = (a.client().await, b.client().await);
    const N: usize = 20;
    let mut codes = Vec::new();
    for i in 0..N {
        codes.push(defer(if i % 2 == 0 { &ca } else { &cb }).await);
    }

    // A bounded polling load over both nodes: 4 workers, at most 150 polls
    // each, for at most 4 seconds, all on loopback.
    let deadline = Instant::now() + Duration::from_secs(4);
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (ca, cb, codes, killed) = (ca.clone(), cb.clone(), codes.clone(), killed.clone());
            tokio::spawn(async move {
                let (mut b_ok_after_kill, mut b_failures) = (0u32, Vec::new());
                for i in 0..150usize {
                    if Instant::now() > deadline {
                        break;
                    }
                    let code = &codes[(w * 7 + i) % codes.len()];
                    let on_a = i % 2 == 0;
                    let after_kill = killed.load(std::sync::atomic::Ordering::SeqCst);
                    let r = if on_a {
                        ca.poll_once(code).await
                    } else {
                        cb.poll_once(code).await
                    };
                    match (on_a, r) {
                        // A dies mid-load: its failures are expected.
                        (true, _) => {}
                        (false, Ok(r)) => {
                            // Pending deferrals only: pending or slow_down.
                            let c = code_of(&r).cloned();
                            if !matches!(
                                c,
                                Some(ErrorCode::AuthorizationPending | ErrorCode::SlowDown)
                            ) {
                                b_failures.push(format!("{r:?}"));
                            }
                            if after_kill {
                                b_ok_after_kill += 1;
                            }
                        }
                        (false, Err(e)) => b_failures.push(e.to_string()),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (b_ok_after_kill, b_failures)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.kill();
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut served_after_kill = 0;
    for w in workers {
        let (ok, failures) = w.await.unwrap();
        assert!(failures.is_empty(), "B must keep serving: {failures:?}");
        served_after_kill += ok;
    }
    assert!(served_after_kill > 0, "B answered polls after A was killed");

    // Every deferral is still there and still pending; approve them on B.
    let admin_b = b.admin();
    let pending = admin_b.list(Some("pending"), Some("svc")).await.unwrap();
    assert_eq!(pending.len(), N, "no deferral lost");
    for d in &pending {
        admin_b
            .approve(d["id"].as_str().unwrap(), None)
            .await
            .unwrap();
    }

    // A comes back (new process, new port) on the same database.
    let a2 = Node::start(dir.path(), &db.url);
    let ca2 = a2.client().await;
    let polls: Vec<_> = codes
        .iter()
        .flat_map(|code| {
            [ca2.clone(), cb.clone(), ca2.clone(), cb.clone()]
                .into_iter()
                .map(move |c| (code.clone(), c))
        })
        .enumerate()
        .map(|(i, (code, c))| {
            tokio::spawn(async move { (i / 4, c.poll_once(&code).await.unwrap()) })
        })
        .collect();
    let mut tokens = [0usize; N];
    for p in polls {
        let (idx, r) = p.await.unwrap();
        match r {
            TokenResult::Token(_) => tokens[idx] += 1,
            r => assert_eq!(code_of(&r), Some(&ErrorCode::InvalidGrant), "{r:?}"),
        }
    }
    assert_eq!(tokens, [1; N], "each deferral redeemed exactly once");
    let redeemed = a2
        .admin()
        .list(Some("redeemed"), Some("svc"))
        .await
        .unwrap();
    assert_eq!(redeemed.len(), N);
    drop(a2);
    drop(b);
}

/// Both nodes behind one issuer, as behind a load balancer: a DPoP proof
/// accepted by one node is a replay on the other (RFC 9449 section 11.1:
/// the `jti` cache lives in the shared database).
#[tokio::test]
#[cfg_attr(
    dtr_no_postgres,
    ignore = "needs PostgreSQL: set DTR_TEST_POSTGRES_URL"
)]
async fn dpop_proof_replayed_on_the_other_node_is_refused() {
    let Some(db) = pg::TestDb::create("multinode::dpop_replay").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // https: a non-loopback http issuer is refused outside dev_mode.
    let issuer = "https://dtr.lb.test";
    let a = Node::start_with(dir.path(), &db.url, CONFIG, &["--issuer", issuer]);
    let b = Node::start_with(dir.path(), &db.url, CONFIG, &["--issuer", issuer]);
    let key = dtr_client::DpopKey::generate();
    let proof = key
        .proof("POST", &format!("{issuer}/token"), None, None)
        .unwrap();
    let http = reqwest::Client::new();
    let send = |node: &Node, proof: &str| {
        http.post(format!("http://{}/token", node.addr))
            .basic_auth("svc", Some("svc-secret"))
            .header("DPoP", proof)
            .form(&[("grant_type", "client_credentials"), ("scope", "read")])
            .send()
    };
    let first = send(&a, &proof).await.unwrap();
    assert_eq!(first.status(), 200);
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");
    let replay = send(&b, &proof).await.unwrap();
    assert_eq!(replay.status(), 400);
    let body: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    // A fresh proof works on B: the refusal was the replay, not the node.
    let fresh = key
        .proof("POST", &format!("{issuer}/token"), None, None)
        .unwrap();
    assert_eq!(send(&b, &fresh).await.unwrap().status(), 200);
    drop((a, b));
}

/// Both nodes run the callback sender on one outbox: each resolution is
/// notified exactly once, whichever node claims it (DTR-26).
#[tokio::test]
#[cfg_attr(
    dtr_no_postgres,
    ignore = "needs PostgreSQL: set DTR_TEST_POSTGRES_URL"
)]
async fn each_callback_arrives_once_with_two_senders() {
    let Some(db) = pg::TestDb::create("multinode::callbacks_once").await else {
        return;
    };
    let (endpoint, counts) = receiver::receiver().await;
    let dir = tempfile::tempdir().unwrap();
    // The shared configuration plus `dev_mode` (loopback http callbacks,
    // a top-level key) and the client's notification endpoint.
    let config = format!(
        "dev_mode = true\n{}\n[callbacks]\ndelay_ms = 100\n",
        CONFIG.replace(
            "scope = \"read payments\"\n",
            &format!("scope = \"read payments\"\ndeferred_client_notification_endpoint = \"{endpoint}\"\n"),
        )
    );
    let a = Node::start_with(dir.path(), &db.url, &config, &[]);
    let b = Node::start_with(dir.path(), &db.url, &config, &[]);
    let ca = a.client().await;
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(defer(&ca).await.secret().to_owned());
    }
    for (i, row) in a
        .admin()
        .list(Some("pending"), None)
        .await
        .unwrap()
        .iter()
        .enumerate()
    {
        let admin = if i % 2 == 0 { a.admin() } else { b.admin() };
        admin
            .approve(row["id"].as_str().unwrap(), None)
            .await
            .unwrap();
    }
    for _ in 0..200 {
        if counts.lock().unwrap().len() == codes.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let got = counts.lock().unwrap().clone();
    for code in &codes {
        assert_eq!(got.get(code), Some(&1), "exactly once: {got:?}");
    }
    drop((a, b));
}
