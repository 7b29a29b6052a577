//! dtr's own ARAP access request endpoint (`/access/v1/requests`),
//! through the router: submissions become deferrals in the review queue,
//! routed by policy, decided by admins and reviewers (four eyes too),
//! polled and cancelled by the submitting enforcement point; idempotent
//! by `Idempotency-Key`; RFC 9457 problems for what ARAP names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use dtr_server::pdp::wire::format_time;
use serde_json::{json, Value};

const PEP: (&str, &str) = ("pep", "pep-secret");
const PEP2: (&str, &str) = ("pep2", "pep2-secret");
const FOUR: (&str, &str) = ("pep4", "pep4-secret");

fn config() -> String {
    format!(
        r#"
issuer = "http://127.0.0.1:8080"
dev_mode = true
[admin]
token = "{ADMIN}"
[[clients]]
client_id = "pep"
client_secret = "pep-secret"
grant_types = ["client_credentials"]
scope = ""
[[clients]]
client_id = "pep2"
client_secret = "pep2-secret"
scope = ""
[[clients]]
client_id = "pep4"
client_secret = "pep4-secret"
scope = ""
[[clients]]
client_id = "blocked"
client_secret = "blocked-secret"
scope = ""
[[clients]]
client_id = "app"
token_endpoint_auth_method = "none"
redirect_uris = ["http://127.0.0.1:9/cb"]
scope = ""
[[users]]
username = "carol"
password = "carol-password"
roles = ["reviewer"]
groups = ["fraud"]
[[users]]
username = "dave"
password = "dave-password"
roles = ["reviewer"]
groups = ["fraud"]
[[policy]]
client_id = "pep4"
authorization_details_type = "access_request"
action = "review"
approvers = ["group:fraud"]
approvals_required = 2
[[policy]]
client_id = "blocked"
action = "deny"
"#
    )
}

fn submission(h: &Harness) -> Value {
    let now = dtr_server::clock::Clock::now_ms(&*h.clock);
    json!({
        "subject": {"type": "user", "id": "alice@example.com"},
        "resource": {"type": "document", "id": "q4-plan"},
        "action": {"name": "can_read"},
        "context": {"business_justification": "renewal review"},
        "denial": {
            "evaluation_id": "eval_1",
            "expires_at": format_time(now + 600_000),
            "reason": "approval_required",
            "binding_token": "eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.c2ln",
        },
    })
}

async fn call(
    h: &Harness,
    method: &str,
    path: &str,
    auth: Option<String>,
    key: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    if let Some(k) = key {
        b = b.header("Idempotency-Key", k);
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    h.send(b.body(body).unwrap()).await
}

async fn submit(h: &Harness, client: (&str, &str), key: Option<&str>, body: &Value) -> Resp {
    call(
        h,
        "POST",
        "/access/v1/requests",
        Some(basic(client)),
        key,
        Some(body),
    )
    .await
}

fn task_path(r: &Resp) -> String {
    let ep = r.json["task"]["status_endpoint"].as_str().unwrap();
    ep.strip_prefix("http://127.0.0.1:8080").unwrap().to_owned()
}

#[tokio::test]
async fn the_metadata_lists_the_access_request_endpoint() {
    let h = harness_with(&config()).await;
    let r = h.get("/.well-known/authzen-configuration").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json["access_request_endpoint"],
        "http://127.0.0.1:8080/access/v1/requests"
    );
    assert_eq!(r.json["policy_decision_point"], "http://127.0.0.1:8080");
    assert_eq!(
        r.json["capabilities"],
        json!(["urn:openid:authzen:capability:access-request"])
    );
}

#[tokio::test]
async fn a_submission_lands_in_the_review_queue_and_its_task_follows_the_decision() {
    let h = harness_with(&config()).await;
    let r = submit(&h, PEP, None, &submission(&h)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let task = &r.json["task"];
    assert_eq!(task["status"], "pending");
    let id = task["id"].as_str().unwrap().to_owned();
    assert!(id.len() >= 27, "an unguessable task id");
    assert_eq!(
        r.headers.get(header::LOCATION).unwrap().to_str().unwrap(),
        task["status_endpoint"].as_str().unwrap()
    );
    assert!(task["links"]["cancel"]
        .as_str()
        .unwrap()
        .ends_with("/cancel"));
    let path = task_path(&r);

    // In the admin API like any deferral, never showing the task id.
    let list = h.admin("GET", "/admin/deferrals?state=pending", None).await;
    let d = &list.json[0];
    assert_eq!(d["grant_type"], "urn:openid:authzen:access-request");
    assert_eq!(d["client_id"], "pep");
    assert_eq!(d["subject"], "alice@example.com");
    assert_eq!(d["authorization_details"][0]["type"], "access_request");
    assert_eq!(d["authorization_details"][0]["resource"]["id"], "q4-plan");
    assert_eq!(
        d["authorization_details"][0]["denial"]["evaluation_id"],
        "eval_1"
    );
    assert!(!list.text.contains(&id));
    let dfr = d["id"].as_str().unwrap().to_owned();
    assert!(dfr.starts_with("arq_"));

    // Progress reaches the task.
    let p = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{dfr}/progress"),
            Some(json!({"step": "manager_review"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let s = call(&h, "GET", &path, Some(basic(PEP)), None, None).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    assert_eq!(s.json["task"]["progress"]["step_name"], "manager_review");

    // Only its submitter sees it; without credentials nobody does.
    let other = call(&h, "GET", &path, Some(basic(PEP2)), None, None).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(
        other.json["type"],
        "urn:openid:authzen:access-request:error:unknown_task"
    );
    assert_eq!(
        other.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/problem+json"
    );
    let anon = call(&h, "GET", &path, None, None, None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);

    // The task id is no deferral code to poll.
    let poll = h
        .post(
            "/token",
            PEP,
            &[("grant_type", POLL), ("deferral_code", &id)],
        )
        .await;
    assert_eq!(poll.error(), "invalid_grant");

    // An admin approves: the task is approved with a re-evaluation result.
    let a = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{dfr}/approve"),
            Some(json!({})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let s = call(&h, "GET", &path, Some(basic(PEP)), None, None).await;
    assert_eq!(s.json["task"]["status"], "approved", "{}", s.text);
    assert_eq!(s.json["result"]["mode"], "reevaluate");
    let approval = &s.json["result"]["approval"];
    assert!(approval["id"].as_str().unwrap().starts_with("apr_"));
    assert!(
        dtr_server::pdp::wire::parse_time(approval["approved_until"].as_str().unwrap()).is_some()
    );
    assert!(s.json["task"].get("links").is_none());
    // Decided tasks cannot be cancelled.
    let c = call(
        &h,
        "POST",
        &format!("{path}/cancel"),
        Some(basic(PEP)),
        None,
        Some(&json!({})),
    )
    .await;
    assert_eq!(c.status, StatusCode::CONFLICT);
    assert_eq!(
        c.json["type"],
        "urn:openid:authzen:access-request:error:invalid_task_state"
    );
}

#[tokio::test]
async fn four_eyes_routing_by_policy_and_the_same_event_log() {
    let h = harness_with(&config()).await;
    let r = submit(&h, FOUR, None, &submission(&h)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let path = task_path(&r);
    let dfr = h.newest_id().await;
    let mut tokens = Vec::new();
    for u in ["carol", "dave"] {
        let t = h
            .admin("POST", &format!("/admin/users/{u}/tokens"), Some(json!({})))
            .await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        tokens.push(t.json["token"].as_str().unwrap().to_owned());
    }
    let approve = |t: &str| {
        Request::post(format!("/admin/deferrals/{dfr}/approve"))
            .header(header::AUTHORIZATION, format!("Bearer {t}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap()
    };
    let first = h.send(approve(&tokens[0])).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.json["state"], "pending");
    let s = call(&h, "GET", &path, Some(basic(FOUR)), None, None).await;
    assert_eq!(s.json["task"]["status"], "pending");
    let again = h.send(approve(&tokens[0])).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let second = h.send(approve(&tokens[1])).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    let s = call(&h, "GET", &path, Some(basic(FOUR)), None, None).await;
    assert_eq!(s.json["task"]["status"], "approved");
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
    assert_eq!(
        kinds,
        ["created", "approval", "approval", "approved"],
        "{}",
        events.text
    );
}

#[tokio::test]
async fn submissions_are_idempotent_by_key_and_checked() {
    let h = harness_with(&config()).await;
    let body = submission(&h);
    let a = submit(&h, PEP, Some("k-1"), &body).await;
    let b = submit(&h, PEP, Some("k-1"), &body).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(b.status, StatusCode::ACCEPTED, "{}", b.text);
    assert_eq!(a.json["task"]["id"], b.json["task"]["id"]);
    let list = h.admin("GET", "/admin/deferrals", None).await;
    assert_eq!(list.json.as_array().unwrap().len(), 1);
    // The same key with another body.
    let mut other = body.clone();
    other["resource"]["id"] = "q5-plan".into();
    let c = submit(&h, PEP, Some("k-1"), &other).await;
    assert_eq!(c.status, StatusCode::CONFLICT);
    assert_eq!(
        c.json["type"],
        "urn:openid:authzen:access-request:error:duplicate_request"
    );
    // Keys are per client.
    let d = submit(&h, PEP2, Some("k-1"), &other).await;
    assert_eq!(d.status, StatusCode::ACCEPTED, "{}", d.text);
    assert_ne!(d.json["task"]["id"], a.json["task"]["id"]);

    // Denial binding, freshness, shape, policy, credentials.
    let mut unbound = body.clone();
    unbound["denial"] = json!({"expires_at": body["denial"]["expires_at"]});
    let r = submit(&h, PEP, None, &unbound).await;
    assert_eq!(
        r.json["type"],
        "urn:openid:authzen:access-request:error:invalid_denial_binding"
    );
    let mut stale = body.clone();
    stale["denial"]["expires_at"] = "2020-01-01T00:00:00Z".into();
    let r = submit(&h, PEP, None, &stale).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert_eq!(
        r.json["type"],
        "urn:openid:authzen:access-request:error:expired_denial"
    );
    let r = call(
        &h,
        "POST",
        "/access/v1/requests",
        Some(basic(PEP)),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = submit(&h, ("blocked", "blocked-secret"), None, &body).await;
    assert_eq!(
        r.json["type"],
        "urn:openid:authzen:access-request:error:not_requestable"
    );
    let r = submit(&h, ("pep", "wrong"), None, &body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let mut cb = body.clone();
    cb["callback"] = json!({"endpoint": "https://evil.example/cb"});
    let r = submit(&h, PEP, None, &cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Nothing of the refused ones reached the queue.
    let list = h.admin("GET", "/admin/deferrals", None).await;
    assert_eq!(list.json.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_submitter_cancels_and_may_use_its_access_token() {
    let h = harness_with(&config()).await;
    // A client credentials token of the client itself stands for it.
    let t = h
        .post("/token", PEP, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    let bearer = format!("Bearer {}", t.json["access_token"].as_str().unwrap());
    let r = call(
        &h,
        "POST",
        "/access/v1/requests",
        Some(bearer.clone()),
        None,
        Some(&submission(&h)),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let path = task_path(&r);
    let c = call(
        &h,
        "DELETE",
        &format!("{path}/cancel"),
        Some(bearer.clone()),
        None,
        None,
    )
    .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    assert_eq!(c.json["task"]["status"], "cancelled");
    let again = call(
        &h,
        "POST",
        &format!("{path}/cancel"),
        Some(bearer),
        None,
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let list = h.admin("GET", "/admin/deferrals", None).await;
    assert_eq!(list.json[0]["state"], "cancelled");
    // A forged bearer authenticates nobody.
    let r = call(&h, "GET", &path, Some("Bearer a.b.c".into()), None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
