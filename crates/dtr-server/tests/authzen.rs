//! Policy action `authzen`: decisions from an AuthZEN PDP and deferrals
//! resolved by an ARAP access request task, against the PDP and access
//! request service fixture of `support/arap.rs`, through the router with
//! a manual clock (the task poller driven round by round).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/arap.rs"]
mod arap;
mod common;

use axum::http::StatusCode;
use base64::Engine;
use common::*;
use dtr_server::authzen::tasks;
use dtr_server::pdp::wire::format_time;
use serde_json::{json, Value};

fn config(pdp: &str) -> String {
    format!(
        r#"
issuer = "http://127.0.0.1:8080"
dev_mode = true
[deferral]
expires_in = 600
interval = 5
[admin]
token = "{ADMIN}"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read write payments forbidden"
[[clients]]
client_id = "other"
client_secret = "other-secret"
token_endpoint_auth_method = "client_secret_post"
scope = "read payments"
[[clients]]
client_id = "web"
client_secret = "web-secret-1"
grant_types = ["authorization_code"]
scope = "read payments forbidden"
redirect_uris = ["https://app.example/cb"]
[[users]]
username = "alice"
password = "alice-password"
[[policy]]
scope_any = ["write"]
action = "review"
[[policy]]
action = "authzen"
[authzen]
pdp = "{pdp}"
token = "pdp-credential"
retries = 1
breaker_threshold = 3
breaker_cooldown_ms = 10000
"#
    )
}

/// A harness and a fixture whose tasks live 120 s (shorter than the
/// deferral's 600 s) and whose denials may be requested for 60 s.
async fn setup() -> (Harness, arap::Fixture) {
    let now = dtr_server::clock::SystemClock;
    let now = dtr_server::clock::Clock::now_ms(&now);
    let f = arap::start(&format_time(now + 120_000), &format_time(now + 60_000)).await;
    let h = harness_with(&config(&f.base)).await;
    (h, f)
}

async fn token(h: &Harness, scope: &str, deferred: bool) -> Resp {
    let mut p = vec![("grant_type", "client_credentials"), ("scope", scope)];
    if deferred {
        p.push(("completion_mode", "deferred"));
    }
    h.post("/token", SVC, &p).await
}

fn exp_of(access_token: &str) -> i64 {
    let payload = access_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["exp"].as_i64().unwrap()
}

fn now(h: &Harness) -> i64 {
    dtr_server::clock::Clock::now_ms(&*h.clock)
}

/// Advances the clock past the next poll and lets the poller run.
async fn poll_round(h: &Harness) {
    h.clock.advance_secs(3);
    tasks::run_once(&h.state).await;
}

#[tokio::test]
async fn allowed_requests_are_issued_after_one_batch_with_the_pdp_credential() {
    let (h, f) = setup().await;
    let r = token(&h, "read", false).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let g = f.lock();
    assert_eq!(g.batches.len(), 1);
    assert_eq!(
        g.batches[0],
        json!({
            "subject": {"type": "client", "id": "svc"},
            "action": {"name": "request"},
            "context": {"client_id": "svc"},
            "evaluations": [
                {"resource": {"type": "grant", "id": "client_credentials"}},
                {"resource": {"type": "scope", "id": "read"}},
            ],
            "options": {"evaluations_semantic": "execute_all"},
        })
    );
    assert_eq!(
        g.last_authorization.as_deref(),
        Some("Bearer pdp-credential")
    );
}

#[tokio::test]
async fn plain_denials_are_the_grants_own_errors_never_deferrals() {
    let (h, f) = setup().await;
    // A scope: invalid_scope, even with the opt-in.
    let r = token(&h, "read forbidden", true).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "invalid_scope", "{}", r.text);
    assert!(r.json.get("deferral_code").is_none());
    assert!(r.no_store());
    // A plain denial beside a requestable one still decides.
    let r = token(&h, "payments forbidden", true).await;
    assert_eq!(r.error(), "invalid_scope", "{}", r.text);
    // An authorization detail: invalid_authorization_details.
    let details = json!([{"type": "blocked", "amount": 5}]).to_string();
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "read"),
                ("authorization_details", &details),
            ],
        )
        .await;
    assert_eq!(r.error(), "invalid_authorization_details", "{}", r.text);
    let last = f.lock().batches.last().unwrap().clone();
    assert_eq!(
        last["evaluations"][2]["resource"],
        json!({"type": "blocked", "id": "blocked#0", "properties": {"amount": 5}})
    );
    // The gate: access_denied.
    let r = h
        .post_other(
            "/token",
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(r.error(), "access_denied", "{}", r.text);
    // Nothing was submitted, nothing deferred.
    assert_eq!(f.lock().submissions, 0);
    let list = h.admin("GET", "/admin/deferrals", None).await;
    assert_eq!(list.json, json!([]));
}

#[tokio::test]
async fn a_requestable_denial_without_the_opt_in_is_refused_at_once() {
    let (h, f) = setup().await;
    let r = token(&h, "payments", false).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "access_denied");
    assert!(r.json["error_description"]
        .as_str()
        .unwrap()
        .contains("completion_mode=deferred"));
    assert_eq!(f.lock().submissions, 0);
}

#[tokio::test]
async fn a_requestable_denial_is_deferred_to_an_access_request_and_approved_through_it() {
    let (h, f) = setup().await;
    let started = now(&h);
    let r = token(&h, "read payments", true).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.error(), "authorization_pending");
    // DTR-8, bounded by the task's expires_at (120 s), not [deferral] 600 s.
    let expires_in = r.json["expires_in"].as_u64().unwrap();
    assert!((100..=120).contains(&expires_in), "{expires_in}");
    let code = r.json["deferral_code"].as_str().unwrap().to_owned();

    // The submission: the denied evaluation, its denial echoed, our
    // callback with a secret segment, an Idempotency-Key.
    let id = f.task_id();
    let t = f.task(&id);
    let s = &t.submission;
    assert_eq!(s["subject"], json!({"type": "client", "id": "svc"}));
    assert_eq!(s["resource"], json!({"type": "scope", "id": "payments"}));
    assert_eq!(s["action"], json!({"name": "request"}));
    assert_eq!(
        s["denial"]["binding_token"],
        "eyJhbGciOiJFUzI1NiJ9.eyJiIjoxfQ.c2ln"
    );
    assert_eq!(s["denial"]["evaluation_id"], "eval_svc_payments");
    assert_eq!(s["denial"]["template"], "manager_approval");
    let callback = f.callback_of(&id);
    let prefix = "http://127.0.0.1:8080/authzen/callback/";
    assert!(callback.starts_with(prefix), "{callback}");
    let secret = &callback[prefix.len()..];
    assert!(secret.len() >= 40, "an unguessable segment");
    assert!(!t.idempotency_key.is_empty());
    // The secret is stored only hashed.
    let dfr = h.newest_id().await;
    let stored = h.state.store.authzen_task(&dfr).await.unwrap().unwrap();
    assert_ne!(stored.callback_hash, secret);
    assert!(!format!("{stored:?}").contains(secret));

    // Pending, with a progress step (DTR-10).
    f.set_step(&id, "manager_approval");
    poll_round(&h).await;
    let r = h.poll(&code).await;
    assert_eq!(r.error(), "authorization_pending");
    assert_eq!(r.json["error_description"], "step=manager_approval");

    // The approver approves for an hour; the service calls back.
    let until_ms = now(&h) + 3_600_000;
    f.approve(&id, &format_time(until_ms));
    let cb = h
        .post_raw(
            &format!("/authzen/callback/{secret}"),
            None,
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(cb.status, StatusCode::NO_CONTENT);
    // The callback made the task due now: no clock advance needed.
    tasks::run_once(&h.state).await;

    // Re-evaluation carried the approval unchanged at context.approval.
    let last = f.lock().batches.last().unwrap().clone();
    let approval = &f.task(&id).approval.unwrap();
    let evs = last["evaluations"].as_array().unwrap();
    let pay = evs
        .iter()
        .find(|e| e["resource"]["id"] == "payments")
        .unwrap();
    assert_eq!(pay["context"]["approval"], *approval);
    assert_eq!(pay["context"]["client_id"], "svc");
    // Only the approved evaluation carries it.
    assert_eq!(evs.iter().filter(|e| e.get("context").is_some()).count(), 1);

    h.clock.advance_secs(6);
    let r = h.poll(&code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The token lives no longer than approved_until.
    let exp = exp_of(r.json["access_token"].as_str().unwrap());
    assert!(exp <= until_ms / 1000, "exp {exp} past approved_until");
    assert!(exp > started / 1000);
    let events = h
        .admin("GET", &format!("/admin/deferrals/{dfr}/events"), None)
        .await;
    let kinds: Vec<&str> = events
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"approved"), "{kinds:?}");
    assert!(events
        .json
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["by"] == "authzen"));
}

#[tokio::test]
async fn denied_cancelled_failed_and_unknown_statuses_deny_and_expired_expires() {
    for (status, error) in [
        ("denied", "access_denied"),
        ("cancelled", "access_denied"),
        ("failed", "access_denied"),
        ("escalated_to_mars", "access_denied"),
        ("expired", "expired_token"),
    ] {
        let (h, f) = setup().await;
        let code = h.defer("payments").await;
        let id = f.task_id();
        f.set_status(&id, status);
        poll_round(&h).await;
        let r = h.poll(&code).await;
        assert_eq!(r.error(), error, "{status}: {}", r.text);
    }
}

#[tokio::test]
async fn an_approval_without_an_enforceable_result_is_no_approval() {
    let (h, f) = setup().await;
    let code = h.defer("payments").await;
    let id = f.task_id();
    // Approved, but no result: the PEP must not treat it as approval.
    f.set_status(&id, "approved");
    poll_round(&h).await;
    assert_eq!(h.poll(&code).await.error(), "access_denied");
}

#[tokio::test]
async fn polling_honours_retry_after_and_callbacks_need_the_secret() {
    let (h, f) = setup().await;
    let _code = h.defer("payments").await;
    let dfr = h.newest_id().await;
    f.lock().retry_after = Some(45);
    poll_round(&h).await;
    assert_eq!(f.lock().status_polls, 1);
    let t = h.state.store.authzen_task(&dfr).await.unwrap().unwrap();
    let now = now(&h);
    assert!(t.next_poll_at >= now + 45_000, "Retry-After is a floor");
    // Not due yet: nothing polled.
    h.clock.advance_secs(30);
    tasks::run_once(&h.state).await;
    assert_eq!(f.lock().status_polls, 1);
    h.clock.advance_secs(20);
    tasks::run_once(&h.state).await;
    assert_eq!(f.lock().status_polls, 2);
    // A wrong secret authenticates nothing and changes nothing.
    let cb = h
        .post_raw(
            "/authzen/callback/not-the-secret",
            None,
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(cb.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn revoking_the_deferral_code_cancels_the_task() {
    let (h, f) = setup().await;
    let code = h.defer("payments").await;
    let id = f.task_id();
    let r = h
        .post(
            "/revoke",
            SVC,
            &[
                ("token", &code),
                (
                    "token_type_hint",
                    "urn:ietf:params:oauth:token-type:deferral-code",
                ),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // The revocation woke the poller; the cancellation is due at once.
    tasks::run_once(&h.state).await;
    let t = f.task(&id);
    assert!(t.cancelled_by_pep);
    assert_eq!(t.status, "cancelled");
    assert_eq!(h.poll(&code).await.error(), "access_denied");
}

#[tokio::test]
async fn a_pdp_that_is_down_or_talks_nonsense_fails_closed_and_approved_deferrals_stay_redeemable()
{
    let (h, f) = setup().await;
    // A deferral a reviewer approves (rule `review`, no PDP involved).
    let code = h.defer("write").await;
    let dfr = h.newest_id().await;
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{dfr}/approve"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Nonsense: a batch of the wrong size.
    f.lock().evaluations_body = Some(json!({"evaluations": []}));
    let r = token(&h, "read", false).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.error(), "temporarily_unavailable");
    assert!(r.no_store());

    // Down: 5xx answers, retried, then the circuit opens.
    {
        let mut g = f.lock();
        g.evaluations_body = None;
        g.evaluations_status = Some(500);
    }
    for _ in 0..3 {
        let r = token(&h, "read", false).await;
        assert_eq!(r.error(), "temporarily_unavailable");
    }
    let calls = f.lock().batches.len();
    let r = token(&h, "read", false).await;
    assert_eq!(r.error(), "temporarily_unavailable");
    assert_eq!(
        f.lock().batches.len(),
        calls,
        "an open circuit sends nothing"
    );
    assert!(h.state.pdp.as_ref().unwrap().circuit_open());

    // The approved deferral is redeemed without the PDP.
    h.clock.advance_secs(6);
    let r = h.poll(&code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // After the cooldown one probe goes through; the PDP is back.
    f.lock().evaluations_status = None;
    h.clock.advance_secs(11);
    let r = token(&h, "read", false).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!h.state.pdp.as_ref().unwrap().circuit_open());
}

#[tokio::test]
async fn a_retried_submission_reuses_its_key_and_a_new_request_gets_a_new_one() {
    let (h, f) = setup().await;
    // The service fails the first attempt after taking it: the retry
    // carries the same key and gets the same task.
    f.lock().fail_next_submissions = 1;
    let _a = h.defer("payments").await;
    assert_eq!(f.lock().submissions, 2);
    assert_eq!(f.lock().tasks.len(), 1);
    let _b = h.defer("payments").await;
    let g = f.lock();
    assert_eq!(g.tasks.len(), 2, "two requests, two tasks");
    let keys: std::collections::HashSet<_> = g
        .tasks
        .values()
        .map(|t| t.idempotency_key.clone())
        .collect();
    assert_eq!(keys.len(), 2);
    for dfr_key in &keys {
        assert_eq!(dfr_key.len(), 43, "SHA-256, base64url");
    }
}

#[tokio::test]
async fn a_refused_submission_is_access_denied_and_a_service_outage_spares_the_pdp() {
    let (h, f) = setup().await;
    f.lock().refuse_submissions = Some(410);
    let r = token(&h, "payments", true).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "access_denied", "{}", r.text);
    assert_eq!(
        h.admin("GET", "/admin/deferrals", None).await.json,
        json!([])
    );

    // The service down: fail closed, until its own circuit opens...
    {
        let mut g = f.lock();
        g.refuse_submissions = None;
        g.submissions_down = true;
    }
    for _ in 0..4 {
        let r = token(&h, "payments", true).await;
        assert_eq!(r.error(), "temporarily_unavailable", "{}", r.text);
    }
    let tried = f.lock().submissions;
    let r = token(&h, "payments", true).await;
    assert_eq!(r.error(), "temporarily_unavailable");
    assert_eq!(f.lock().submissions, tried, "the service's circuit is open");
    // ...while the PDP's stays closed: allowed requests are issued.
    let r = token(&h, "read", false).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!h.state.pdp.as_ref().unwrap().circuit_open());
    assert_eq!(
        h.admin("GET", "/admin/deferrals", None).await.json,
        json!([])
    );
}

#[tokio::test]
async fn user_grants_ask_about_the_user_and_a_refusal_leaves_the_code_usable() {
    use common::browser::{code_for, exchange_as, Browser};
    const WEB: (&str, &str) = ("web", "web-secret-1");
    let (h, f) = setup().await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "read forbidden")]).await;
    let r = exchange_as(&h, WEB, &code, &[]).await;
    assert_eq!(r.error(), "invalid_scope", "{}", r.text);
    let last = f.lock().batches.last().unwrap().clone();
    assert_eq!(last["subject"], json!({"type": "user", "id": "alice"}));
    assert_eq!(last["context"]["client_id"], "web");
    assert_eq!(
        last["evaluations"][0]["resource"],
        json!({"type": "grant", "id": "authorization_code"})
    );

    // A requestable denial without the opt-in is refused before the code
    // is spent (DTR-2), so the corrected request with it is deferred.
    let code = code_for(&mut b, "web", &[("scope", "read payments")]).await;
    let r = exchange_as(&h, WEB, &code, &[]).await;
    assert_eq!(r.error(), "access_denied", "{}", r.text);
    let r = exchange_as(&h, WEB, &code, &[("completion_mode", "deferred")]).await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    let id = f.task_id();
    assert_eq!(
        f.task(&id).submission["subject"],
        json!({"type": "user", "id": "alice"})
    );
}

#[tokio::test]
async fn a_reevaluation_that_says_retry_keeps_the_deferral_pending() {
    let (h, f) = setup().await;
    let code = h.defer("payments").await;
    let dfr = h.newest_id().await;
    let id = f.task_id();
    f.lock().grant_pending = true;
    f.approve(&id, &format_time(now(&h) + 3_600_000));
    poll_round(&h).await;
    // ARAP next_action "retry": not denied, asked again after retry_after.
    assert_eq!(h.poll(&code).await.error(), "authorization_pending");
    let t = h.state.store.authzen_task(&dfr).await.unwrap().unwrap();
    assert!(t.next_poll_at >= now(&h) + 30_000, "retry_after is a floor");
    f.lock().grant_pending = false;
    h.clock.advance_secs(40);
    tasks::run_once(&h.state).await;
    h.clock.advance_secs(6);
    let r = h.poll(&code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn a_task_completed_at_submission_is_settled_at_once() {
    let (h, f) = setup().await;
    let until = now(&h) + 600_000;
    f.lock().approve_on_submit = Some(format_time(until));
    // Still the deferred response: the client collects by polling.
    let code = h.defer("payments").await;
    h.clock.advance_secs(6);
    let r = h.poll(&code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(exp_of(r.json["access_token"].as_str().unwrap()) <= until / 1000);
    assert_eq!(f.lock().status_polls, 0, "no poll was needed");
}
