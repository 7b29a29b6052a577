//! Who decides: routing by `[[policy]] approvers`, four eyes by
//! `approvals_required`, narrowings that compose, and the audit trail at
//! `GET /admin/deferrals/{id}/events`, through the admin API and the
//! interaction page (DESIGN.md, "Contract for the next capabilities").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

const ISSUER: &str = "http://127.0.0.1:8080";

/// `svc` acts for olga; `payments` needs two distinct approvers among
/// olga (the owner) and carol, at the interaction page or by an admin;
/// `identity` is olga's alone to decide at the page.
const ROUTED: &str = r#"
issuer = "http://127.0.0.1:8080"
[deferral]
expires_in = 600
interval = 5
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments identity"
owner = "olga"
[[users]]
username = "olga"
password = "olga-password"
[[users]]
username = "carol"
password = "carol-password"
[[users]]
username = "mallory"
password = "mallory-password"
[[policy]]
scope_any = ["payments"]
action = "interaction"
approvers = ["owner", "user:carol"]
approvals_required = 2
[[policy]]
scope_any = ["identity"]
action = "interaction"
approvers = ["owner"]
"#;

async fn interaction_path(h: &Harness, code: &str) -> String {
    let r = h.poll(code).await;
    assert_eq!(r.error(), "interaction_required", "{}", r.text);
    r.json["interaction_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches(ISSUER)
        .to_owned()
}

/// `user` signs in and sends `decision` at `path`: (page, decision) statuses.
async fn decide_at_page(
    h: &Harness,
    path: &str,
    user: &str,
    decision: &str,
) -> (StatusCode, StatusCode) {
    let cookie = h.sign_in(user, &format!("{user}-password")).await;
    let page = h.get_with_cookie(path, &cookie).await;
    let csrf = if page.status == StatusCode::OK {
        hidden_field(&page.text, "csrf")
    } else {
        let other = h.get_with_cookie("/device", &cookie).await;
        hidden_field(&other.text, "csrf")
    };
    let decided = h
        .post_with_cookie(path, &cookie, &[("csrf", &csrf), ("decision", decision)])
        .await;
    (page.status, decided.status)
}

#[tokio::test]
async fn four_eyes_needs_two_distinct_approvers_and_narrowings_compose() {
    let h = harness_with(ROUTED).await;
    let code = h.defer("read payments").await;
    let path = interaction_path(&h, &code).await;
    let id = h.newest_id().await;

    // The first approval (an admin, narrowing to `payments`) is recorded;
    // the deferral stays pending with its approvals listed.
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(json!({"scope": "payments"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["state"], "pending");
    assert_eq!(r.json["approvals"][0]["by"], "admin");
    assert_eq!(r.json["approvals_required"], 2);
    // The same approver again counts once: 409, nothing changes.
    let again = h
        .admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    let shown = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(shown.json["state"], "pending");
    assert_eq!(shown.json["approvals"].as_array().unwrap().len(), 1);

    // Someone who is not an approver is refused at the page, and the
    // handle stays usable.
    let (_, refused) = decide_at_page(&h, &path, "mallory", "approve").await;
    assert_eq!(refused, StatusCode::FORBIDDEN);

    // The owner's plain approval is the second: approved, with what both
    // allowed (the admin's narrowing stands).
    let (page, decided) = decide_at_page(&h, &path, "olga", "approve").await;
    assert_eq!((page, decided), (StatusCode::OK, StatusCode::OK));
    let shown = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(shown.json["state"], "approved", "{}", shown.text);
    assert_eq!(shown.json["granted_scope"], "payments");
    assert_eq!(shown.json["decided_by"], "olga");
    assert_eq!(shown.json["approvals"].as_array().unwrap().len(), 2);

    // A third approval after the second: 409, the decision stands.
    let third = h
        .admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    assert_eq!(third.status, StatusCode::CONFLICT);

    let token = h.poll(&code).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    assert_eq!(token.json["scope"], "payments");

    // The audit trail, oldest first.
    let events = h
        .admin("GET", &format!("/admin/deferrals/{id}/events"), None)
        .await;
    assert_eq!(events.status, StatusCode::OK, "{}", events.text);
    let kinds: Vec<&str> = events
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "approval",
            "interaction_started",
            "approval",
            "approved",
            "redeemed",
            "polled"
        ],
        "{}",
        events.text
    );
    let e = &events.json[1];
    assert_eq!(
        (e["by"].as_str(), e["scope"].as_str()),
        (Some("admin"), Some("payments"))
    );
    assert!(e["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(events.json[3]["by"], "olga");
}

#[tokio::test]
async fn one_denial_denies_under_four_eyes() {
    let h = harness_with(ROUTED).await;
    let code = h.defer("payments").await;
    let path = interaction_path(&h, &code).await;
    let id = h.newest_id().await;
    let r = h
        .admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    assert_eq!(r.json["state"], "pending");
    let (_, decided) = decide_at_page(&h, &path, "olga", "deny").await;
    assert_eq!(decided, StatusCode::OK);
    assert_eq!(h.poll(&code).await.error(), "access_denied");
}

#[tokio::test]
async fn a_narrowing_that_widens_is_refused() {
    let h = harness_with(ROUTED).await;
    h.defer("payments").await;
    let id = h.newest_id().await;
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(json!({"scope": "read payments"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let shown = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(shown.json["approvals"], json!([]));
}

#[tokio::test]
async fn the_owner_decides_alone_where_the_rule_says_so_and_nobody_else() {
    let h = harness_with(ROUTED).await;
    let code = h.defer("identity").await;
    let path = interaction_path(&h, &code).await;
    let (_, refused) = decide_at_page(&h, &path, "carol", "approve").await;
    assert_eq!(refused, StatusCode::FORBIDDEN);
    let (_, decided) = decide_at_page(&h, &path, "olga", "approve").await;
    assert_eq!(decided, StatusCode::OK);
    assert_eq!(h.poll(&code).await.status, StatusCode::OK);
}

#[test]
fn start_up_refuses_routing_that_cannot_work() {
    use dtr_server::config::{ConfigFile, Overrides};
    let base = r#"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "payments"
"#;
    for (rule, key) in [
        (
            "action = \"deny\"\napprovers = [\"group:fraud\"]",
            "approvers",
        ),
        (
            "action = \"approve_after\"\napprove_after_seconds = 5\napprovals_required = 2",
            "approvals_required",
        ),
        (
            "action = \"review\"\napprovers = [\"subject\"]\napprovals_required = 2",
            "approvals_required",
        ),
        (
            "action = \"review\"\napprovers = [\"owner\"]\napprovals_required = 2",
            "approvals_required",
        ),
        (
            "action = \"review\"\napprovals_required = 0",
            "approvals_required",
        ),
        (
            "action = \"review\"\napprovers = [\"role:admin\"]",
            "approvers",
        ),
    ] {
        let text = format!("{base}[[policy]]\nscope_any = [\"payments\"]\n{rule}\n");
        let e = ConfigFile::parse(&text)
            .and_then(|f| f.validate(&Overrides::default()))
            .expect_err(&text)
            .0;
        assert!(e.contains(key), "{e} (for {rule})");
    }
}

#[tokio::test]
async fn an_approval_until_a_time_caps_the_token() {
    let h = harness_with(ROUTED).await;
    let code = h.defer("identity").await;
    let id = h.newest_id().await;
    // Ten minutes from the server's clock (the harness starts it at a
    // fixed time): the token lives at most that long, not its hour.
    let shown = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    let created =
        dtr_server::clock::parse_rfc3339(shown.json["created_at"].as_str().unwrap()).unwrap();
    let until = dtr_server::clock::rfc3339(created + 600_000);
    let past = dtr_server::clock::rfc3339(created - 1_000);
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(json!({"approved_until": past})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(json!({"approved_until": until})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["approved_until"], until.as_str());
    let token = h.poll(&code).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    let expires_in = token.json["expires_in"].as_i64().unwrap();
    assert!((1..=600).contains(&expires_in), "{}", token.text);
}

/// Payments over 100 need two approvers, who may lower the amount and
/// drop a payment, never raise one or change its creditor.
const PAYMENTS: &str = r#"
issuer = "http://127.0.0.1:8080"
[deferral]
expires_in = 600
interval = 5
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "payments"
owner = "olga"
[[users]]
username = "olga"
password = "olga-password"
[[authorization_details_types]]
type = "payment_initiation"
decrease = ["instructedAmount.amount"]
equal = ["instructedAmount.currency", "creditorName"]
droppable = true
[[policy]]
authorization_details_type = "payment_initiation"
action = "interaction"
approvers = ["owner", "user:carol"]
approvals_required = 2
"#;

fn payment(amount: &str, creditor: &str) -> serde_json::Value {
    json!({"type": "payment_initiation",
           "instructedAmount": {"currency": "EUR", "amount": amount},
           "creditorName": creditor})
}

#[tokio::test]
async fn authorization_details_narrow_per_type_and_compose_under_four_eyes() {
    let h = harness_with(PAYMENTS).await;
    let asked = json!([payment("500.00", "Merchant A"), payment("20", "Merchant B")]);
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("authorization_details", &asked.to_string()),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let code = r.json["deferral_code"].as_str().unwrap().to_owned();
    let path = interaction_path(&h, &code).await;
    let id = h.newest_id().await;
    let approve = |body: serde_json::Value| {
        let h = &h;
        let id = id.clone();
        async move {
            h.admin(
                "POST",
                &format!("/admin/deferrals/{id}/approve"),
                Some(body),
            )
            .await
        }
    };
    // Not narrowings: a raised amount, a changed creditor, an added entry.
    for bad in [
        json!([payment("600", "Merchant A"), payment("20", "Merchant B")]),
        json!([payment("500.00", "Mallory"), payment("20", "Merchant B")]),
        json!([
            payment("500.00", "Merchant A"),
            payment("20", "Merchant B"),
            payment("1", "X")
        ]),
    ] {
        let r = approve(json!({"authorization_details": bad})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    // The admin lowers the first payment to 300.
    let r = approve(json!({"authorization_details": [payment("300", "Merchant A"), payment("20", "Merchant B")]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["state"], "pending");
    // The owner approves as asked: the admin's narrowing stands.
    let (_, decided) = decide_at_page(&h, &path, "olga", "approve").await;
    assert_eq!(decided, StatusCode::OK);
    let shown = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(
        shown.json["granted_authorization_details"],
        json!([payment("300", "Merchant A"), payment("20", "Merchant B")]),
        "{}",
        shown.text
    );
    // The successful poll returns what was granted, and the token carries it.
    let token = h.poll(&code).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    assert_eq!(
        token.json["authorization_details"][0]["instructedAmount"]["amount"],
        "300"
    );
    let payload = token.json["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["authorization_details"][0]["instructedAmount"]["amount"],
        "300"
    );
}

#[tokio::test]
async fn a_single_approver_may_drop_a_droppable_entry() {
    let mut config = PAYMENTS.replace("approvals_required = 2", "");
    config = config.replace("approvers = [\"owner\", \"user:carol\"]", "");
    let h = harness_with(&config).await;
    let asked = json!([payment("500.00", "Merchant A"), payment("20", "Merchant B")]);
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("authorization_details", &asked.to_string()),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    let code = r.json["deferral_code"].as_str().unwrap().to_owned();
    let id = h.newest_id().await;
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(json!({"authorization_details": [payment("20", "Merchant B")]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["state"], "approved");
    let token = h.poll(&code).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    assert_eq!(
        token.json["authorization_details"],
        json!([payment("20", "Merchant B")])
    );
}

/// alice and carol review for the fraud group; alice's own payments go to
/// that group too.
const SELF: &str = r#"
issuer = "http://127.0.0.1:8080"
[deferral]
expires_in = 600
interval = 5
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "web"
client_secret = "web-secret-1"
grant_types = ["authorization_code"]
scope = "read payments"
redirect_uris = ["https://app.example/cb"]
[[users]]
username = "alice"
password = "alice-password"
roles = ["reviewer"]
groups = ["fraud"]
[[users]]
username = "carol"
password = "carol-password"
roles = ["reviewer"]
groups = ["fraud"]
[[policy]]
scope_any = ["payments"]
action = "review"
approvers = ["group:fraud"]
"#;

#[tokio::test]
async fn the_subject_cannot_approve_their_own_request_through_the_admin_api() {
    use common::browser::*;
    let h = harness_with(SELF).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "payments")]).await;
    let r = exchange_as(
        &h,
        ("web", "web-secret-1"),
        &code,
        &[("completion_mode", "deferred")],
    )
    .await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    let deferral_code = r.json["deferral_code"].as_str().unwrap().to_owned();
    let id = h.newest_id().await;
    let token_of = |user: &'static str| {
        let h = &h;
        async move {
            let r = h
                .admin("POST", &format!("/admin/users/{user}/tokens"), None)
                .await;
            r.json["token"].as_str().unwrap().to_owned()
        }
    };
    let approve_with = |token: String| {
        let h = &h;
        let id = id.clone();
        async move {
            h.send(
                axum::http::Request::post(format!("/admin/deferrals/{id}/approve"))
                    .header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(axum::http::header::CONTENT_TYPE, "application/json")
                    .body(axum::body::Body::from("{}"))
                    .unwrap(),
            )
            .await
        }
    };
    // alice is a fraud reviewer, but this is her own request.
    let alice = approve_with(token_of("alice").await).await;
    assert_eq!(alice.status, StatusCode::FORBIDDEN, "{}", alice.text);
    let shown = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(shown.json["state"], "pending");
    // carol, of the same group, may.
    let carol = approve_with(token_of("carol").await).await;
    assert_eq!(carol.status, StatusCode::OK, "{}", carol.text);
    assert_eq!(carol.json["decided_by"], "carol");
    let token = h
        .post(
            "/token",
            ("web", "web-secret-1"),
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:deferred"),
                ("deferral_code", &deferral_code),
            ],
        )
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
}
