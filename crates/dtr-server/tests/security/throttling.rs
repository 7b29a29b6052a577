//! Security regressions: throttling.
//!
//! Every wrong secret cost an Argon2 hash, unthrottled: ~70 wrong secrets a
//! second took both cores, and passwords and the admin token could be
//! guessed online at full speed. Failed authentication now spends budgets
//! per client id, user and source address (refused without hashing once
//! spent), sign-ins back off per user, the hashing queue is bounded, the
//! admin token has at least 32 characters and registrations are limited
//! per source address.

use super::common::*;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use dtr_server::config::{ConfigFile, Overrides};
use std::net::SocketAddr;

/// The shared test configuration with small budgets.
fn config() -> String {
    format!(
        r#"{CONFIG}
[throttle]
failures_per_minute = 60
failure_burst = 3
address_failures_per_minute = 60
address_failure_burst = 8
registrations_per_minute = 1
registration_burst = 2
login_backoff_after = 2
login_backoff_max_secs = 60
refusal_delay_ms = 0
"#
    )
}

fn retry_after(r: &Resp) -> Option<u64> {
    r.headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn from(addr: &str, mut req: Request<Body>) -> Request<Body> {
    let addr: SocketAddr = addr.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

/// Keeps every hashing thread busy and the queue full until the returned
/// sender is dropped: any request that needs a hash now gets 503, so one
/// that does not get 503 did not hash.
fn occupy_hashing(h: &Harness) -> std::sync::mpsc::Sender<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = Arc::new(Mutex::new(held));
    let started = Arc::new(AtomicUsize::new(0));
    let pool = &h.state.hashing;
    let hold = || {
        let (held, started) = (held.clone(), started.clone());
        move || {
            started.fetch_add(1, Ordering::SeqCst);
            let _ = held.lock().map(|r| r.recv());
        }
    };
    // First every thread, and wait until each has taken its job (threads
    // start and take jobs in their own time); then fill the queue.
    for _ in 0..pool.threads() {
        assert!(pool.submit(hold()).is_ok());
    }
    while started.load(Ordering::SeqCst) < pool.threads() {
        std::thread::yield_now();
    }
    for _ in 0..=pool.capacity() {
        if pool.submit(hold()).is_err() {
            return release;
        }
    }
    panic!("the hashing queue accepted more than its capacity");
}

/// Lets the held jobs go and waits until the queue has drained.
async fn release_hashing(h: &Harness, release: std::sync::mpsc::Sender<()>) {
    drop(release);
    loop {
        if let Ok(done) = h.state.hashing.submit(|| ()) {
            // The queue is first in, first out: the held jobs are done.
            done.await;
            return;
        }
        tokio::task::yield_now().await;
    }
}

async fn client_credentials(h: &Harness, client: (&str, &str)) -> Resp {
    h.post(
        "/token",
        client,
        &[("grant_type", "client_credentials"), ("scope", "read")],
    )
    .await
}

#[tokio::test]
async fn wrong_client_secrets_are_throttled_before_hashing() {
    let h = harness_with(&config()).await;
    // svc authenticates once: its secret is now known to this node.
    assert_eq!(client_credentials(&h, SVC).await.status, StatusCode::OK);
    for _ in 0..3 {
        let r = client_credentials(&h, ("svc", "wrong-secret")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.error(), "invalid_client");
        assert_eq!(retry_after(&r), None);
    }
    // Over budget: refused, told when to come back, and without a hash:
    // with the hashing pool full, a request that hashed would be a 503.
    let release = occupy_hashing(&h);
    for path in ["/token", "/revoke", "/introspect", "/par"] {
        let r = h
            .post(path, ("svc", "wrong-secret"), &[("token", "x")])
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.text);
        assert_eq!(r.error(), "invalid_client", "{path}");
        assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
        let secs = retry_after(&r).expect("Retry-After");
        assert!((1..=10).contains(&secs), "{path}: Retry-After {secs}");
    }
    // The real svc is not locked out: its known secret costs no hash.
    assert_eq!(client_credentials(&h, SVC).await.status, StatusCode::OK);
    release_hashing(&h, release).await;
    // Another client with a correct secret is untouched by svc's budget.
    let r = h
        .post_other(
            "/token",
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The budget refills with time (one failure a second).
    h.clock.advance_secs(1);
    let r = client_credentials(&h, ("svc", "wrong-again")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(retry_after(&r), None, "a refilled cell is looked at");
}

#[tokio::test]
async fn unknown_clients_are_throttled_per_source_address() {
    let h = harness_with(&config()).await;
    // Eight unknown client ids, one address: the address budget is spent.
    for i in 0..8 {
        let id = format!("nobody-{i}");
        let req = Request::post("/token")
            .header(header::AUTHORIZATION, basic((&id, "guess")))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("grant_type=client_credentials"))
            .unwrap();
        let r = h.send(from("192.0.2.7:4000", req)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(retry_after(&r), None);
    }
    let attempt = |addr: &'static str| {
        let req = Request::post("/token")
            .header(header::AUTHORIZATION, basic(("nobody-new", "guess")))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("grant_type=client_credentials"))
            .unwrap();
        from(addr, req)
    };
    let r = h.send(attempt("192.0.2.7:4001")).await;
    assert_eq!(r.error(), "invalid_client");
    assert!(retry_after(&r).is_some(), "the address is over budget");
    let r = h.send(attempt("198.51.100.1:4000")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(retry_after(&r), None, "another address has its own budget");
}

#[tokio::test]
async fn a_full_hashing_queue_sheds_with_503_not_wrong_secret() {
    let h = harness_with(&config()).await;
    let release = occupy_hashing(&h);
    // `other` was never verified on this node: its secret needs a hash.
    let r = h
        .post_other(
            "/token",
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.error(), "temporarily_unavailable");
    assert!(r.no_store());
    assert!(retry_after(&r).is_some());
    release_hashing(&h, release).await;
    // Shedding spent no failure budget: the right secret works at once.
    let r = h
        .post_other(
            "/token",
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// One sign-in through the login form (double-submit cookie and all).
async fn sign_in_attempt(h: &Harness, addr: &str, user: &str, password: &str) -> Resp {
    let page = h.get("/login").await;
    let csrf = page
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("dtr_login_csrf="))
        .and_then(|v| v.split(';').next())
        .expect("login csrf cookie")
        .to_owned();
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("dtr_login_csrf={csrf}"))
        .body(Body::from(form(&[
            ("csrf", &csrf),
            ("username", user),
            ("password", password),
        ])))
        .unwrap();
    h.send(from(addr, req)).await
}

fn session_cookie(r: &Resp) -> bool {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("dtr_session=") && !v.starts_with("dtr_session=;"))
}

#[tokio::test]
async fn wrong_passwords_then_the_right_one_is_refused_during_backoff() {
    let h = harness_with(&config()).await;
    for _ in 0..2 {
        let r = sign_in_attempt(&h, "192.0.2.1:1", "alice", "not-her-password").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // The right password, even from another address, within the backoff.
    let r = sign_in_attempt(&h, "203.0.113.5:1", "alice", "alice-password").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(retry_after(&r), Some(2));
    assert!(!session_cookie(&r), "no session during the backoff");
    // Each further failure doubles the wait.
    h.clock.advance_secs(2);
    let r = sign_in_attempt(&h, "192.0.2.1:1", "alice", "still-wrong").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = sign_in_attempt(&h, "203.0.113.5:1", "alice", "alice-password").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&r), Some(4));
    // After the backoff the right password signs in.
    h.clock.advance_secs(4);
    let r = sign_in_attempt(&h, "203.0.113.5:1", "alice", "alice-password").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(session_cookie(&r));
}

#[tokio::test]
async fn admin_token_guessing_is_throttled_per_source_address() {
    let h = harness_with(&config()).await;
    let admin = |addr: &str, token: &str| {
        from(
            addr,
            Request::get("/admin/deferrals")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
    };
    for i in 0..8 {
        let r = h
            .send(admin(
                "192.0.2.66:1",
                &format!("guess-{i}-0123456789abcdef0123456789"),
            ))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = h.send(admin("192.0.2.66:2", "guess-again")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error(), "slow_down");
    assert!(retry_after(&r).is_some());
    // Refused unexamined, even the right token, from that address...
    let r = h.send(admin("192.0.2.66:3", ADMIN)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // ... and at the review console's sign-in, which shares the check.
    let req = Request::post("/review/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(&[("token", ADMIN)])))
        .unwrap();
    let r = h.send(from("192.0.2.66:4", req)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r).is_some());
    // Other addresses are unaffected.
    let r = h.send(admin("198.51.100.9:1", ADMIN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[test]
fn a_short_admin_token_is_refused_at_start_up() {
    let validate = |token: &str| {
        ConfigFile::parse(&format!("[admin]\ntoken = \"{token}\""))
            .unwrap()
            .validate(&Overrides::default())
    };
    for short in ["test-admin-token", "12345678", "x".repeat(31).as_str()] {
        let e = validate(short).expect_err(short);
        assert!(e.to_string().contains("admin.token"), "{e}");
    }
    assert!(validate(&"x".repeat(32)).is_ok());
    assert!(ADMIN.len() >= 32);
}

#[tokio::test]
async fn registrations_are_rate_limited_per_source_address() {
    let config = format!(
        "{}\n[registration]\nenabled = true\ninitial_access_token = \"registration-token-0123456789\"\n",
        config()
    );
    let h = harness_with(&config).await;
    let register = |addr: &str| {
        from(
            addr,
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .header(
                    header::AUTHORIZATION,
                    "Bearer registration-token-0123456789",
                )
                .body(Body::from(r#"{"client_name": "throttled"}"#))
                .unwrap(),
        )
    };
    for _ in 0..2 {
        let r = h.send(register("192.0.2.50:1")).await;
        assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    }
    let r = h.send(register("192.0.2.50:2")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.error(), "slow_down");
    assert!(retry_after(&r).is_some());
    let r = h.send(register("198.51.100.50:1")).await;
    assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
}

/// The throttle counts failures, not attempts in flight: a legitimate
/// client's burst of concurrent first requests (before its secret is
/// cached on this node) is answered, not refused as if it were guessing,
/// and it costs one shared verification rather than a queued hash each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_a_clients_concurrent_first_requests_is_not_throttled() {
    let h = std::sync::Arc::new(harness_with(&config()).await);
    let answers: Vec<_> = (0..40)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { client_credentials(&h, SVC).await })
        })
        .collect();
    for a in answers {
        let r = a.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
}

/// A refusal is answered only after `throttle.refusal_delay_ms` (the
/// tarpit): a closed loop of guesses gets one answer per delay, not one as
/// fast as the server can refuse. Requests the throttle lets through are
/// not held.
#[tokio::test]
async fn refusals_are_held_by_the_tarpit() {
    let cfg = config().replace("refusal_delay_ms = 0", "refusal_delay_ms = 400");
    let h = harness_with(&cfg).await;
    // Spend the client's budget with wrong secrets.
    let mut refused = None;
    for _ in 0..10 {
        let started = std::time::Instant::now();
        let r = client_credentials(&h, ("svc", "wrong-secret")).await;
        if retry_after(&r).is_some() {
            refused = Some(started.elapsed());
            break;
        }
    }
    let held = refused.expect("the budget ran out");
    assert!(
        held >= std::time::Duration::from_millis(400),
        "a refusal is held at least the delay: {held:?}"
    );
    // The right secret of another client is answered without the hold's
    // cost (it is not refused); asserting only that it succeeds.
    let r = client_credentials(&h, OTHER).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn personal_token_guessing_spends_the_same_budget() {
    let h = harness_with(&config()).await;
    let created = h.admin("POST", "/admin/users/alice/tokens", None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let real = created.json["token"].as_str().unwrap().to_owned();
    let call = |addr: &str, token: &str| {
        from(
            addr,
            Request::get("/admin/deferrals")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
    };
    for i in 0..8 {
        let r = h
            .send(call(
                "192.0.2.77:1",
                &format!("dtrp_guess-{i}-0123456789abcdef0123456789abcdef"),
            ))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Over budget: refused unexamined, the real token too, from there...
    let r = h.send(call("192.0.2.77:2", &real)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r).is_some());
    // ... and the admin token, which shares the budget.
    let r = h.send(call("192.0.2.77:3", ADMIN)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = h.send(call("198.51.100.10:1", &real)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
