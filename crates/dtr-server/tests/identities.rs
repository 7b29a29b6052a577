//! Approver identities: users' roles and groups, personal API tokens of
//! the admin API (shown once, hashed at rest, revoked at once), what a
//! reviewer's token may see and decide, and the review console's sign-in
//! with username and password.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use dtr_proto::secret::sha256_b64;
use serde_json::{json, Value};

const CONFIG: &str = r#"
issuer = "http://127.0.0.1:8080"
[deferral]
expires_in = 600
interval = 5
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read write payments"
[[users]]
username = "carol"
password = "carol-password"
roles = ["reviewer"]
groups = ["fraud"]
name = "Carol Example"
email = "carol@example.com"
[[users]]
username = "dave"
password = "dave-password"
roles = ["reviewer"]
groups = ["kyc"]
[[users]]
username = "erin"
password = "erin-password"
groups = ["fraud"]
[[users]]
username = "root"
password = "root-password"
roles = ["admin"]
[[policy]]
scope_any = ["payments"]
approvers = ["group:fraud"]
action = "review"
[[policy]]
scope_any = ["write"]
action = "review"
"#;

async fn h() -> Harness {
    harness_with(CONFIG).await
}

async fn bearer(h: &Harness, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    let body = body
        .map(|v| Body::from(v.to_string()))
        .unwrap_or_else(Body::empty);
    h.send(b.body(body).unwrap()).await
}

/// Creates a personal token for `user` with the admin token.
async fn token_for(h: &Harness, user: &str) -> (String, String) {
    let r = h
        .admin("POST", &format!("/admin/users/{user}/tokens"), None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.no_store());
    (
        r.json["id"].as_str().unwrap().to_owned(),
        r.json["token"].as_str().unwrap().to_owned(),
    )
}

/// Defers `scope` as svc; returns the deferral's id.
async fn deferred(h: &Harness, scope: &str) -> String {
    let code = h.defer(scope).await;
    let d = h
        .state
        .store
        .deferral_by_code(&sha256_b64(&code))
        .await
        .unwrap()
        .unwrap();
    d.id
}

fn ids(r: &Resp) -> Vec<String> {
    r.json
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn users_show_roles_groups_and_claims() {
    let h = h().await;
    let r = h.admin("GET", "/admin/users", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let carol = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "carol")
        .unwrap();
    assert_eq!(carol["roles"], json!(["reviewer"]));
    assert_eq!(carol["groups"], json!(["fraud"]));
    assert_eq!(carol["name"], "Carol Example");
    assert_eq!(carol["email"], "carol@example.com");
}

#[tokio::test]
async fn a_personal_token_is_shown_once_works_and_dies_when_revoked() {
    let h = h().await;
    let (id, token) = token_for(&h, "carol").await;
    assert!(token.starts_with("dtrp_") && token.len() >= 40, "{token}");

    // Stored only as its hash; listed without it.
    let stored = h
        .state
        .store
        .user_token_by_hash(&sha256_b64(&token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.id.as_str(), stored.username.as_str()),
        (id.as_str(), "carol")
    );
    assert!(!format!("{stored:?}").contains(&stored.token_hash));
    let list = h.admin("GET", "/admin/users/carol/tokens", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(ids(&list), std::slice::from_ref(&id));
    assert!(!list.text.contains(&token) && list.json[0].get("token").is_none());

    // It works at the admin API.
    let r = bearer(&h, "GET", "/admin/deferrals", &token, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Revoked: refused at once; revoking again is harmless.
    let r = h
        .admin("DELETE", &format!("/admin/users/carol/tokens/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = bearer(&h, "GET", "/admin/deferrals", &token, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.admin("DELETE", &format!("/admin/users/carol/tokens/{id}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let listed = h.admin("GET", "/admin/users/carol/tokens", None).await;
    assert!(listed.json[0]["revoked_at"].is_string());

    // Unknown users and tokens, another user's token id.
    for (m, path) in [
        ("POST", "/admin/users/nobody/tokens".to_owned()),
        ("DELETE", "/admin/users/carol/tokens/nope".to_owned()),
        ("DELETE", format!("/admin/users/dave/tokens/{id}")),
    ] {
        assert_eq!(
            h.admin(m, &path, None).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // A made-up token of the right shape is refused.
    let r = bearer(
        &h,
        "GET",
        "/admin/deferrals",
        "dtrp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_disabled_users_token_is_refused() {
    let h = h().await;
    let (_, token) = token_for(&h, "carol").await;
    assert_eq!(
        h.admin("POST", "/admin/users/carol/disable", None)
            .await
            .status,
        StatusCode::OK
    );
    let r = bearer(&h, "GET", "/admin/deferrals", &token, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    h.admin("POST", "/admin/users/carol/enable", None).await;
    let r = bearer(&h, "GET", "/admin/deferrals", &token, None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_reviewer_gets_403_at_admin_only_endpoints_and_changes_nothing() {
    let h = h().await;
    let (_, token) = token_for(&h, "carol").await;
    for (m, path) in [
        ("GET", "/admin/clients"),
        ("POST", "/admin/clients/svc/disable"),
        ("GET", "/admin/users"),
        ("POST", "/admin/users/dave/disable"),
        ("POST", "/admin/users/carol/tokens"),
        ("GET", "/admin/users/carol/tokens"),
        ("POST", "/admin/users/dave/sessions/end"),
    ] {
        let r = bearer(&h, m, path, &token, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {path}: {}", r.text);
        assert_eq!(r.error(), "forbidden");
    }
    // Nothing changed: the client and dave enabled, one token for carol.
    let clients = h.admin("GET", "/admin/clients", None).await;
    assert_eq!(clients.json[0]["enabled"], true);
    let users = h.admin("GET", "/admin/users", None).await;
    assert!(users
        .json
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["enabled"] == true));
    let tokens = h.admin("GET", "/admin/users/carol/tokens", None).await;
    assert_eq!(tokens.json.as_array().unwrap().len(), 1);

    // A user with the admin role administers with their token.
    let (_, root) = token_for(&h, "root").await;
    let r = bearer(&h, "GET", "/admin/clients", &root, None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_reviewer_lists_shows_and_decides_only_what_is_routed_to_them() {
    let h = h().await;
    let routed = deferred(&h, "payments").await;
    let unrouted = deferred(&h, "write").await;
    let (_, carol) = token_for(&h, "carol").await;
    let (_, dave) = token_for(&h, "dave").await;
    let (_, erin) = token_for(&h, "erin").await;

    let all = h.admin("GET", "/admin/deferrals", None).await;
    assert_eq!(ids(&all).len(), 2);
    let r = bearer(&h, "GET", "/admin/deferrals", &carol, None).await;
    assert_eq!(ids(&r), std::slice::from_ref(&routed));
    let r = bearer(&h, "GET", "/admin/deferrals?state=pending", &carol, None).await;
    assert_eq!(ids(&r), std::slice::from_ref(&routed));
    for t in [&dave, &erin] {
        let r = bearer(&h, "GET", "/admin/deferrals", t, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(ids(&r).is_empty());
    }
    // One may not see is as unknown as one that does not exist.
    let r = bearer(
        &h,
        "GET",
        &format!("/admin/deferrals/{routed}"),
        &carol,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    for (t, id) in [(&carol, &unrouted), (&dave, &routed), (&erin, &routed)] {
        let r = bearer(&h, "GET", &format!("/admin/deferrals/{id}"), t, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(
            r.json,
            bearer(&h, "GET", "/admin/deferrals/nope", t, None)
                .await
                .json
        );
    }

    // Not in the group: 403 and nothing changes.
    let approve = format!("/admin/deferrals/{routed}/approve");
    let r = bearer(&h, "POST", &approve, &dave, Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = bearer(
        &h,
        "POST",
        &format!("/admin/deferrals/{unrouted}/approve"),
        &carol,
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // In the group but without the reviewer role: 403 too.
    let r = bearer(&h, "POST", &approve, &erin, Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let d = h
        .state
        .store
        .deferral_by_id(&routed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        h.admin("GET", &format!("/admin/deferrals/{routed}"), None)
            .await
            .json["state"],
        "pending"
    );
    assert!(d.decided_by.is_none());

    // In the group: approved, by carol.
    let r = bearer(&h, "POST", &approve, &carol, Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["state"], "approved");
    let d = h
        .state
        .store
        .deferral_by_id(&routed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.decided_by.as_deref(), Some("carol"));
}

// ---- the review console ----

async fn console_sign_in(h: &Harness, pairs: &[(&str, &str)]) -> Resp {
    h.post_raw(
        "/review/login",
        None,
        "application/x-www-form-urlencoded",
        form(pairs).into_bytes(),
    )
    .await
}

fn cookie_of(r: &Resp) -> String {
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    set.split(';').next().unwrap().to_owned()
}

fn csrf(page: &str) -> String {
    let i = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[i..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_sign_in_page_offers_username_and_password() {
    let h = h().await;
    let r = h.get("/review").await;
    assert_eq!(r.status, StatusCode::OK);
    for field in ["name=\"username\"", "name=\"password\"", "name=\"token\""] {
        assert!(r.text.contains(field), "{field}");
    }
    assert!(r.text.contains("<label>Username") && r.text.contains("<label>Password"));
}

#[tokio::test]
async fn a_reviewer_signs_in_with_a_password_and_decides_as_themselves() {
    let h = h().await;
    let routed = deferred(&h, "payments").await;
    let unrouted = deferred(&h, "write").await;

    let r = console_sign_in(&h, &[("username", "carol"), ("password", "carol-password")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let cookie = cookie_of(&r);
    let get = |path: String| {
        let cookie = cookie.clone();
        let h = &h;
        async move {
            h.send(
                Request::get(path)
                    .header(header::COOKIE, cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
        }
    };
    let list = get("/review".into()).await;
    assert!(list.text.contains("Signed in as <strong>carol</strong>"));
    assert!(list.text.contains(&routed) && !list.text.contains(&unrouted));
    let hidden = get(format!("/review/{unrouted}")).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);

    let detail = get(format!("/review/{routed}")).await;
    assert_eq!(detail.status, StatusCode::OK);
    let token = csrf(&detail.text);
    let r = h
        .send(
            Request::post(format!("/review/{routed}/approve"))
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form(&[
                    ("csrf", &token),
                    ("scope_payments", "1"),
                ])))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let d = h
        .state
        .store
        .deferral_by_id(&routed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.decided_by.as_deref(), Some("carol"));

    // Not routed to her: refused, nothing changes.
    let r = h
        .send(
            Request::post(format!("/review/{unrouted}/deny"))
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form(&[("csrf", &token)])))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let d = h
        .state
        .store
        .deferral_by_id(&unrouted)
        .await
        .unwrap()
        .unwrap();
    assert!(d.decided_by.is_none());

    // Disabled: the session stops counting at once.
    h.admin("POST", "/admin/users/carol/disable", None).await;
    let list = get("/review".into()).await;
    assert!(
        list.text.contains("name=\"password\""),
        "back to the sign-in page"
    );
}

#[tokio::test]
async fn wrong_passwords_and_users_without_a_role_are_refused_alike() {
    let h = h().await;
    let wrong = console_sign_in(&h, &[("username", "carol"), ("password", "not-carols")]).await;
    let no_role = console_sign_in(&h, &[("username", "erin"), ("password", "erin-password")]).await;
    let unknown = console_sign_in(&h, &[("username", "zed"), ("password", "whatever-pw")]).await;
    for r in [&wrong, &no_role, &unknown] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.headers.get(header::SET_COOKIE).is_none());
    }
    assert_eq!(wrong.text, no_role.text, "no hint which one it was");
    assert_eq!(wrong.text, unknown.text);

    // The admin token still signs in, as the admin.
    let r = console_sign_in(&h, &[("token", ADMIN)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let list = h
        .send(
            Request::get("/review")
                .header(header::COOKIE, cookie_of(&r))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(list.text.contains("Signed in as <strong>admin</strong>"));
}

#[tokio::test]
async fn ending_a_users_sessions_ends_their_console_sessions() {
    let h = h().await;
    let r = console_sign_in(&h, &[("username", "carol"), ("password", "carol-password")]).await;
    let cookie = cookie_of(&r);
    let r = h
        .admin("POST", "/admin/users/carol/sessions/end", None)
        .await;
    assert_eq!(r.json["ended"], 1);
    let list = h
        .send(
            Request::get("/review")
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(list.text.contains("name=\"password\""));
}

#[tokio::test]
async fn a_reviewer_manages_their_own_tokens_in_the_console() {
    let h = h().await;
    let r = console_sign_in(&h, &[("username", "carol"), ("password", "carol-password")]).await;
    let cookie = cookie_of(&r);
    let page = h.get_with_cookie("/review/tokens", &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("None."));
    let csrf = csrf(&page.text);
    // A stale form creates nothing.
    let refused = h
        .post_with_cookie("/review/tokens", &cookie, &[("csrf", "wrong")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let created = h
        .post_with_cookie("/review/tokens", &cookie, &[("csrf", &csrf)])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let i = created.text.find("value=\"dtrp_").unwrap() + "value=\"".len();
    let token = created.text[i..].split('"').next().unwrap().to_owned();
    // It works at the admin API, as carol.
    let r = bearer(&h, "GET", "/admin/deferrals", &token, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Shown once: the list has its id, never the token.
    let again = h.get_with_cookie("/review/tokens", &cookie).await;
    assert!(!again.text.contains(&token));
    let id = again
        .text
        .split("/review/tokens/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let revoked = h
        .post_with_cookie(
            &format!("/review/tokens/{id}/revoke"),
            &cookie,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    let r = bearer(&h, "GET", "/admin/deferrals", &token, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Nobody revokes another's token here.
    let (dave_id, _) = token_for(&h, "dave").await;
    let foreign = h
        .post_with_cookie(
            &format!("/review/tokens/{dave_id}/revoke"),
            &cookie,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    // Signed out: nothing to see.
    assert_eq!(
        h.get("/review/tokens").await.status,
        StatusCode::UNAUTHORIZED
    );
}
