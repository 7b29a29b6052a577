//! The review console (`/review`): sign-in with the admin token, listing,
//! decisions with CSRF protection, narrowing only (DTR-24), escaping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;

async fn sign_in(h: &Harness) -> String {
    let r = h
        .post_raw(
            "/review/login",
            None,
            "application/x-www-form-urlencoded",
            form(&[("token", ADMIN)]).into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    set.split(';').next().unwrap().to_owned()
}

async fn get(h: &Harness, path: &str, cookie: &str) -> Resp {
    h.send(
        Request::get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn post(h: &Harness, path: &str, cookie: &str, pairs: &[(&str, &str)]) -> Resp {
    h.send(
        Request::post(path)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form(pairs)))
            .unwrap(),
    )
    .await
}

fn csrf(page: &str) -> String {
    let i = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[i..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn sign_in_is_required() {
    let h = harness().await;
    let r = h.get("/review").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("Admin token"), "a sign-in form");
    let wrong = h
        .post_raw(
            "/review/login",
            None,
            "application/x-www-form-urlencoded",
            form(&[("token", "nope")]).into_bytes(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    let forged = get(&h, "/review", "dtr_review=99999999999.forged").await;
    assert!(
        forged.text.contains("Admin token"),
        "a forged cookie is no sign-in"
    );
}

#[tokio::test]
async fn approve_with_narrowing_from_the_console() {
    let h = harness().await;
    let code = h.defer("payments read").await;
    let cookie = sign_in(&h).await;
    let list = get(&h, "/review", &cookie).await;
    let id = h.newest_id().await;
    assert!(list.text.contains(&id));
    assert!(!list.text.contains(&code), "reviewers never see the code");

    let detail = get(&h, &format!("/review/{id}"), &cookie).await;
    assert!(detail.text.contains("name=\"scope_payments\""));
    let token = csrf(&detail.text);

    // Without the CSRF token nothing happens.
    let r = post(
        &h,
        &format!("/review/{id}/approve"),
        &cookie,
        &[("scope_read", "1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        h.admin("GET", &format!("/admin/deferrals/{id}"), None)
            .await
            .json["state"],
        "pending"
    );

    // Nothing ticked is refused; ticking only `read` narrows (DTR-24).
    let r = post(
        &h,
        &format!("/review/{id}/approve"),
        &cookie,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r
        .headers
        .get(header::LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("error="));
    let r = post(
        &h,
        &format!("/review/{id}/approve"),
        &cookie,
        &[("csrf", &token), ("scope_read", "1"), ("scope_admin", "1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let shown = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await
        .json;
    assert_eq!(shown["state"], "approved");
    assert_eq!(
        shown["granted_scope"], "read",
        "an unrequested scope cannot be added"
    );
    let t = h.poll(&code).await;
    assert_eq!(t.json["scope"], "read");
}

#[tokio::test]
async fn deny_progress_and_interaction_from_the_console() {
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    let cookie = sign_in(&h).await;
    let token = csrf(&get(&h, &format!("/review/{id}"), &cookie).await.text);
    post(
        &h,
        &format!("/review/{id}/progress"),
        &cookie,
        &[("csrf", &token), ("step", "fraud_check")],
    )
    .await;
    assert_eq!(
        h.poll(&code).await.json["error_description"],
        "step=fraud_check"
    );
    post(
        &h,
        &format!("/review/{id}/interaction"),
        &cookie,
        &[("csrf", &token), ("required", "true")],
    )
    .await;
    h.clock.advance_secs(6);
    assert_eq!(h.poll(&code).await.error(), "interaction_required");
    post(
        &h,
        &format!("/review/{id}/deny"),
        &cookie,
        &[("csrf", &token), ("reason", "no")],
    )
    .await;
    h.clock.advance_secs(6);
    assert_eq!(h.poll(&code).await.error(), "access_denied");
    let again = post(
        &h,
        &format!("/review/{id}/approve"),
        &cookie,
        &[("csrf", &token), ("scope_payments", "1")],
    )
    .await;
    assert!(
        again
            .headers
            .get(header::LOCATION)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("error="),
        "not pending any more"
    );
}

#[tokio::test]
async fn user_controlled_text_is_escaped() {
    let h = harness().await;
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
                (
                    "authorization_details",
                    r#"[{"type":"payment","creditorName":"<script>alert(1)</script>"}]"#,
                ),
            ],
        )
        .await;
    assert_eq!(r.error(), "authorization_pending");
    let id = h.newest_id().await;
    let cookie = sign_in(&h).await;
    let page = get(&h, &format!("/review/{id}"), &cookie).await;
    assert!(!page.text.contains("<script>"), "no live script");
    assert!(page.text.contains("&lt;script&gt;"), "shown as text");
    assert!(page.headers.get(header::CONTENT_SECURITY_POLICY).is_some());
}
