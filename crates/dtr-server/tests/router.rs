//! Router tests: the whole application driven through `oneshot`, with an
//! in-memory database and a manual clock. Each test cites the requirement
//! numbers of SPEC.md it checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{header, StatusCode};
use common::*;
use serde_json::json;

// ---------------------------------------------------------------- metadata

#[tokio::test]
async fn metadata_advertises_dtr() {
    // DTR-7
    let h = harness().await;
    let r = h.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(r.status, StatusCode::OK);
    let m = &r.json;
    assert_eq!(m["issuer"], "http://127.0.0.1:8080");
    assert_eq!(m["deferred_token_response_supported"], true);
    assert!(m["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(POLL)));
    assert!(m["revocation_endpoint_token_type_values_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("urn:ietf:params:oauth:token-type:deferral-code")));
    assert_eq!(m["token_endpoint"], "http://127.0.0.1:8080/token");
    assert_eq!(m["revocation_endpoint"], "http://127.0.0.1:8080/revoke");
    assert_eq!(
        m["introspection_endpoint"],
        "http://127.0.0.1:8080/introspect"
    );
    assert_eq!(m["jwks_uri"], "http://127.0.0.1:8080/jwks.json");
}

#[tokio::test]
async fn jwks_and_healthz() {
    let h = harness().await;
    let r = h.get("/jwks.json").await;
    assert_eq!(r.json["keys"][0]["alg"], "ES256");
    assert_eq!(r.json["keys"][0]["crv"], "P-256");
    assert!(
        r.json["keys"][0].get("d").is_none(),
        "no private member in the JWKS"
    );
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);
}

// ------------------------------------------------------ synchronous grants

#[tokio::test]
async fn client_credentials_is_synchronous_by_default() {
    // DTR-2
    let h = harness().await;
    let r = h
        .post(
            "/token",
            SVC,
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["scope"], "read");
    assert_eq!(r.json["expires_in"], 3600);
    assert!(r.no_store());
    let claims = h
        .state
        .signer
        .verify(r.json["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims["client_id"], "svc");
    assert_eq!(claims["sub"], "svc");
    assert_eq!(claims["iss"], "http://127.0.0.1:8080");
}

#[tokio::test]
async fn deferral_needs_opt_in() {
    // DTR-2: never deferred without `deferred`; policy review never issues either.
    let h = harness().await;
    for cm in [None, Some("sync"), Some("other-mode")] {
        let mut p = vec![("grant_type", "client_credentials"), ("scope", "payments")];
        if let Some(cm) = cm {
            p.push(("completion_mode", cm));
        }
        let r = h.post("/token", SVC, &p).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.error(), "access_denied");
        assert!(r.json.get("deferral_code").is_none());
        assert!(r.no_store());
    }
    let r = h.admin("GET", "/admin/deferrals", None).await;
    assert_eq!(r.json, json!([]), "no deferral was created");
}

#[tokio::test]
async fn opt_in_does_not_force_deferral() {
    // DTR-3: the server may answer synchronously even with `deferred`.
    let h = harness().await;
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "read"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json["access_token"].is_string());
}

#[tokio::test]
async fn completion_mode_values() {
    // DTR-1: order irrelevant, unknown ignored, repeats malformed.
    let h = harness().await;
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "future deferred"),
            ],
        )
        .await;
    assert_eq!(r.error(), "authorization_pending");
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred deferred"),
            ],
        )
        .await;
    assert_eq!(r.error(), "invalid_request");
}

#[tokio::test]
async fn policy_deny_and_scope_checks() {
    let h = harness().await;
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "forbidden"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(r.error(), "access_denied");
    let r = h
        .post(
            "/token",
            SVC,
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        )
        .await;
    assert_eq!(r.error(), "invalid_scope");
}

// -------------------------------------------------------- deferred response

#[tokio::test]
async fn deferred_response_shape() {
    // DTR-8, DTR-9, DTR-22
    let h = harness().await;
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "authorization_pending");
    assert!(r.no_store());
    assert!(r
        .headers
        .get(header::CONTENT_TYPE)
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.json["expires_in"], 600);
    assert_eq!(r.json["interval"], 5);
    let code = r.json["deferral_code"].as_str().unwrap();
    assert!(code.len() >= 27, "at least 160 bits");
    assert!(
        code.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "base64url, no padding"
    );
    assert!(r.json.get("access_token").is_none());
}

#[tokio::test]
async fn reviewers_never_see_the_code() {
    // DTR-9, DTR-36: the admin API shows an opaque id, never the code or its hash.
    let h = harness().await;
    let code = h.defer("payments").await;
    let r = h.admin("GET", "/admin/deferrals?state=pending", None).await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    assert!(!r.text.contains(&code));
    assert!(!r.text.contains(&dtr_proto::secret::sha256_b64(&code)));
    let d = &r.json[0];
    assert!(d["id"].as_str().unwrap().starts_with("dfr_"));
    assert_eq!(d["client_id"], "svc");
    assert_eq!(d["grant_type"], "client_credentials");
    assert_eq!(d["scope"], "payments");
    assert_eq!(d["state"], "pending");
    assert_eq!(d["subject"], "svc");
    assert_eq!(d["interaction_required"], false);
}

// ----------------------------------------------------------------- polling

#[tokio::test]
async fn poll_approve_redeem_exactly_once() {
    // DTR-16, DTR-18, DTR-20, DTR-21
    let h = harness().await;
    let code = h.defer("payments read").await;
    let r = h.poll(&code).await;
    assert_eq!(r.error(), "authorization_pending");
    assert!(
        r.json.get("deferral_code").is_none(),
        "polls do not repeat the code"
    );
    assert!(r.no_store());
    let id = h.newest_id().await;
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["state"], "approved");
    let r = h.poll(&code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(
        r.json["expires_in"], 3600,
        "access token lifetime, not the code's"
    );
    assert_eq!(r.json["scope"], "payments read");
    assert!(r.json.get("issued_token_type").is_none());
    assert!(r.no_store());
    let again = h.poll(&code).await;
    assert_eq!(again.error(), "invalid_grant");
    let shown = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(shown.json["state"], "redeemed");
}

#[tokio::test]
async fn unknown_and_foreign_codes_are_indistinguishable() {
    // DTR-17
    let h = harness().await;
    let code = h.defer("payments").await;
    let unknown = h
        .post_other(
            "/token",
            &[
                ("grant_type", POLL),
                ("deferral_code", "not-a-real-code-at-all-xxxxx"),
            ],
        )
        .await;
    let foreign = h
        .post_other("/token", &[("grant_type", POLL), ("deferral_code", &code)])
        .await;
    assert_eq!(unknown.status, foreign.status);
    assert_eq!(unknown.json, foreign.json);
    assert_eq!(foreign.error(), "invalid_grant");
    // The foreign poll changed nothing: the owner's first poll is not slow_down.
    assert_eq!(h.poll(&code).await.error(), "authorization_pending");
}

#[tokio::test]
async fn redeemed_is_described_differently_for_the_owner() {
    // DTR-17: the owner may learn "already redeemed".
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    h.admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    assert_eq!(h.poll(&code).await.status, StatusCode::OK);
    let owner = h.poll(&code).await;
    let unknown = h.poll("never-issued-code-xxxxxxxxxxxx").await;
    assert_eq!(owner.error(), "invalid_grant");
    assert_ne!(
        owner.json["error_description"],
        unknown.json["error_description"]
    );
}

#[tokio::test]
async fn slow_down_then_escalation() {
    // DTR-19 with slow_down_limit = 2.
    let h = harness().await;
    let code = h.defer("payments").await;
    assert_eq!(
        h.poll(&code).await.error(),
        "authorization_pending",
        "first poll is never too fast"
    );
    h.clock.advance_ms(1000);
    let r = h.poll(&code).await;
    assert_eq!(r.error(), "slow_down");
    assert!(r.no_store());
    h.clock.advance_secs(5);
    assert_eq!(
        h.poll(&code).await.error(),
        "authorization_pending",
        "a well-paced poll is fine again"
    );
    h.clock.advance_ms(100);
    assert_eq!(h.poll(&code).await.error(), "slow_down");
    h.clock.advance_ms(100);
    let r = h.poll(&code).await;
    assert_eq!(r.error(), "invalid_request", "third offence escalates");
    // The code is dead for the client, even at a good pace or after approval.
    h.clock.advance_secs(10);
    assert_eq!(h.poll(&code).await.error(), "invalid_request");
    let id = h.newest_id().await;
    assert_eq!(
        h.admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
            .await
            .status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn expired_token_after_lifetime() {
    // DTR-16 step 3
    let h = harness().await;
    let code = h.defer("payments").await;
    h.clock.advance_secs(601);
    let r = h.poll(&code).await;
    assert_eq!(r.error(), "expired_token");
    assert!(r.no_store());
    let id = h.newest_id().await;
    let r = h
        .admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "an expired deferral cannot be decided"
    );
    assert_eq!(
        h.admin("GET", &format!("/admin/deferrals/{id}"), None)
            .await
            .json["state"],
        "expired"
    );
}

#[tokio::test]
async fn approved_but_uncollected_expires_too() {
    // The expires_in definition: after the lifetime, polls get expired_token.
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    h.admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    h.clock.advance_secs(601);
    assert_eq!(h.poll(&code).await.error(), "expired_token");
}

#[tokio::test]
async fn denial_is_access_denied() {
    // DTR-16 step 4
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/deny"),
            Some(json!({"reason": "fraud suspected"})),
        )
        .await;
    assert_eq!(r.json["state"], "denied");
    let p = h.poll(&code).await;
    assert_eq!(p.error(), "access_denied");
    assert!(
        !p.text.contains("fraud"),
        "the reviewer's reason stays internal"
    );
    assert_eq!(
        h.admin("POST", &format!("/admin/deferrals/{id}/deny"), None)
            .await
            .status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn narrowing_only() {
    // DTR-24
    let h = harness().await;
    let code = h.defer("payments read").await;
    let id = h.newest_id().await;
    let wider = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(json!({"scope": "payments read write"})),
        )
        .await;
    assert_eq!(wider.status, StatusCode::BAD_REQUEST);
    assert_eq!(wider.json["error"], "invalid_request");
    assert_eq!(
        h.admin("GET", &format!("/admin/deferrals/{id}"), None)
            .await
            .json["state"],
        "pending",
        "nothing changed"
    );
    let typo = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(json!({"scopes": "read"})),
        )
        .await;
    assert_eq!(
        typo.status,
        StatusCode::BAD_REQUEST,
        "unknown members are refused, not ignored"
    );
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(json!({"scope": "read"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let t = h.poll(&code).await;
    assert_eq!(t.json["scope"], "read");
    let claims = h
        .state
        .signer
        .verify(t.json["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims["scope"], "read");
}

#[tokio::test]
async fn progress_steps_on_polls() {
    // DTR-10
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/progress"),
            Some(json!({"step": "document_review"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["progress"], "document_review");
    let p = h.poll(&code).await;
    assert_eq!(p.error(), "authorization_pending");
    assert_eq!(p.json["error_description"], "step=document_review");
    let bad = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/progress"),
            Some(json!({"step": "John Smith, passport 123"})),
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::BAD_REQUEST,
        "steps are identifiers, never personal data"
    );
}

#[tokio::test]
async fn approve_after_resolves_by_itself() {
    let h = harness().await;
    let code = h.defer("reports").await;
    assert_eq!(h.poll(&code).await.error(), "authorization_pending");
    h.clock.advance_secs(5);
    let r = h.poll(&code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["scope"], "reports");
}

#[tokio::test]
async fn concurrent_polls_issue_one_token() {
    // DTR-21
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    h.admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let app = h.app.clone();
        let body = form(&[("grant_type", POLL), ("deferral_code", &code)]);
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::post("/token")
                .header(header::AUTHORIZATION, basic(SVC))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(axum::body::Body::from(body))
                .unwrap();
            app.oneshot(req).await.unwrap().status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "exactly one token response");
}

#[tokio::test]
async fn disabled_client_gets_no_token() {
    // DTR-23
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    h.admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    let r = h.admin("POST", "/admin/clients/svc/disable", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["enabled"], false);
    assert_eq!(h.poll(&code).await.error(), "access_denied");
    h.admin("POST", "/admin/clients/svc/enable", None).await;
    assert_eq!(
        h.poll(&code).await.error(),
        "access_denied",
        "the deferral stays denied"
    );
    let fresh = h
        .post(
            "/token",
            SVC,
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(
        fresh.status,
        StatusCode::OK,
        "re-enabled client works again"
    );
    assert_eq!(
        h.admin("POST", "/admin/clients/nobody/disable", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn disabled_client_cannot_start_grants() {
    let h = harness().await;
    h.admin("POST", "/admin/clients/svc/disable", None).await;
    let r = h
        .post(
            "/token",
            SVC,
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error(), "invalid_client");
}

// ------------------------------------------------------------- interaction

#[tokio::test]
async fn interaction_flow() {
    // DTR-11, DTR-18
    let h = harness().await;
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "identity"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(r.error(), "interaction_required");
    let code = r.json["deferral_code"].as_str().unwrap().to_owned();
    let uri = r.json["interaction_uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("http://127.0.0.1:8080/interact/"));
    assert!(!uri.contains('#'));
    assert!(!uri.contains(&code));
    let path = uri.trim_start_matches("http://127.0.0.1:8080");

    let p = h.poll(&code).await;
    assert_eq!(p.error(), "interaction_required");
    assert_eq!(p.json["interaction_uri"], uri.as_str());

    // Without a session the page sends the user to the login form.
    let anon = h.get(path).await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    let cookie = h.sign_in("alice", "alice-password").await;
    // Opening the page approves nothing.
    let page = h.get_with_cookie(path, &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("svc"));
    h.clock.advance_secs(5);
    // Still pending, and the server saw the interaction begin.
    assert_eq!(h.poll(&code).await.error(), "interaction_pending");

    // A decision without the session's CSRF token decides nothing.
    let bad = h
        .post_with_cookie(path, &cookie, &[("decision", "approve")])
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);

    let csrf = hidden_field(&page.text, "csrf");
    let ok = h
        .post_with_cookie(path, &cookie, &[("csrf", &csrf), ("decision", "approve")])
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // Single use: the handle is gone.
    assert_eq!(
        h.get_with_cookie(path, &cookie).await.status,
        StatusCode::NOT_FOUND
    );
    h.clock.advance_secs(5);
    let t = h.poll(&code).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
}

#[tokio::test]
async fn interaction_can_come_and_go() {
    // DTR-18: pending and interaction_required alternate both ways.
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/interaction"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.json["interaction_required"], true);
    let p = h.poll(&code).await;
    assert_eq!(p.error(), "interaction_required");
    assert!(p.json["interaction_uri"]
        .as_str()
        .unwrap()
        .contains("/interact/"));
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/interaction"),
            Some(json!({"required": false})),
        )
        .await;
    assert_eq!(r.json["interaction_required"], false);
    h.clock.advance_secs(5);
    assert_eq!(h.poll(&code).await.error(), "authorization_pending");
}

#[tokio::test]
async fn interaction_page_denial() {
    let h = harness().await;
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "identity"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    let code = r.json["deferral_code"].as_str().unwrap().to_owned();
    let path = r.json["interaction_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://127.0.0.1:8080")
        .to_owned();
    let cookie = h.sign_in("alice", "alice-password").await;
    let page = h.get_with_cookie(&path, &cookie).await;
    let csrf = hidden_field(&page.text, "csrf");
    h.post_with_cookie(&path, &cookie, &[("csrf", &csrf), ("decision", "deny")])
        .await;
    assert_eq!(h.poll(&code).await.error(), "access_denied");
}

// ------------------------------------------------------------ cancellation

#[tokio::test]
async fn cancellation_through_revocation() {
    // DTR-31, DTR-32, DTR-35
    let h = harness().await;
    let code = h.defer("payments").await;
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
    assert_eq!(h.poll(&code).await.error(), "access_denied");
    let id = h.newest_id().await;
    assert_eq!(
        h.admin("GET", &format!("/admin/deferrals/{id}"), None)
            .await
            .json["state"],
        "cancelled"
    );
    // Idempotent, and without the hint too.
    assert_eq!(
        h.post("/revoke", SVC, &[("token", &code)]).await.status,
        StatusCode::OK
    );
    assert_eq!(h.poll(&code).await.error(), "access_denied");
    assert_eq!(
        h.admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
            .await
            .status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn revoking_unknown_or_foreign_codes_changes_nothing() {
    // DTR-33
    let h = harness().await;
    let code = h.defer("payments").await;
    let foreign = h.post_other("/revoke", &[("token", &code)]).await;
    assert_eq!(foreign.status, StatusCode::OK);
    let unknown = h
        .post(
            "/revoke",
            SVC,
            &[("token", "unknown-code-xxxxxxxxxxxxxxxx")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::OK);
    assert_eq!(
        h.poll(&code).await.error(),
        "authorization_pending",
        "still alive"
    );
}

#[tokio::test]
async fn cancel_after_approval_before_collection() {
    // DTR-34: redeemed-then-cancelled: no token.
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    h.admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    h.post("/revoke", SVC, &[("token", &code)]).await;
    assert_eq!(h.poll(&code).await.error(), "access_denied");
}

#[tokio::test]
async fn revoking_a_redeemed_code_keeps_the_token() {
    // DTR-34 item 3, DTR-33: the delivered access token stays valid.
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    h.admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    let token = h.poll(&code).await.json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        h.post("/revoke", SVC, &[("token", &code)]).await.status,
        StatusCode::OK
    );
    let i = h.post("/introspect", SVC, &[("token", &token)]).await;
    assert_eq!(i.json["active"], true);
    assert_eq!(
        h.poll(&code).await.error(),
        "invalid_grant",
        "still redeemed, not cancelled"
    );
}

// ------------------------------------------- access tokens: revoke, introspect

#[tokio::test]
async fn introspection_and_access_token_revocation() {
    let h = harness().await;
    let t = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "read write"),
            ],
        )
        .await;
    let token = t.json["access_token"].as_str().unwrap().to_owned();
    let i = h.post("/introspect", SVC, &[("token", &token)]).await;
    assert_eq!(i.json["active"], true);
    assert_eq!(i.json["scope"], "read write");
    assert_eq!(i.json["client_id"], "svc");
    assert!(i.no_store());
    // Another client cannot revoke it.
    h.post_other(
        "/revoke",
        &[("token", &token), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(
        h.post("/introspect", SVC, &[("token", &token)]).await.json["active"],
        true
    );
    h.post(
        "/revoke",
        SVC,
        &[("token", &token), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(
        h.post("/introspect", SVC, &[("token", &token)]).await.json["active"],
        false
    );
    // Garbage and deferral codes are inactive.
    assert_eq!(
        h.post("/introspect", SVC, &[("token", "garbage")])
            .await
            .json,
        json!({"active": false})
    );
    let code = h.defer("payments").await;
    assert_eq!(
        h.post("/introspect", SVC, &[("token", &code)]).await.json["active"],
        false
    );
    // Expired tokens are inactive.
    let t2 = h
        .post(
            "/token",
            SVC,
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    h.clock.advance_secs(3601);
    let tok2 = t2.json["access_token"].as_str().unwrap();
    assert_eq!(
        h.post("/introspect", SVC, &[("token", tok2)]).await.json["active"],
        false
    );
}

#[tokio::test]
async fn introspection_requires_client_authentication() {
    let h = harness().await;
    let r = h
        .post_raw(
            "/introspect",
            None,
            "application/x-www-form-urlencoded",
            b"token=x".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

// ------------------------------------------------------ client authentication

#[tokio::test]
async fn client_authentication_failures() {
    let h = harness().await;
    let body = &[("grant_type", "client_credentials")];
    for client in [("svc", "wrong"), ("nobody", "whatever"), ("other", "wrong")] {
        let r = h.post("/token", client, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{client:?}");
        assert_eq!(r.error(), "invalid_client");
        assert!(r.headers.get(header::WWW_AUTHENTICATE).is_some());
        assert!(r.no_store());
    }
    let none = h
        .post_raw(
            "/token",
            None,
            "application/x-www-form-urlencoded",
            form(body).into_bytes(),
        )
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let post = h
        .post_other(
            "/token",
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(post.status, StatusCode::OK, "client_secret_post works");
    // Either secret method works for a client with a secret.
    let basic = h
        .post(
            "/token",
            OTHER,
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(basic.status, StatusCode::OK, "{}", basic.text);
}

// ---------------------------------------------------------------- bad input

#[tokio::test]
async fn bad_input_gets_oauth_errors_and_changes_nothing() {
    let h = harness().await;
    let code = h.defer("payments").await;
    let poll_body = form(&[("grant_type", POLL), ("deferral_code", &code)]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "application/json",
            br#"{"grant_type":"client_credentials"}"#.to_vec(),
            "wrong content type",
        ),
        ("text/plain", poll_body.clone().into_bytes(), "text/plain"),
        (
            "application/x-www-form-urlencoded",
            b"grant_type=client_credentials&scope=%ff%fe".to_vec(),
            "invalid UTF-8",
        ),
        (
            "application/x-www-form-urlencoded",
            format!("{poll_body}&deferral_code=x").into_bytes(),
            "duplicate parameter",
        ),
        (
            "application/x-www-form-urlencoded",
            format!("{poll_body}&grant_type={POLL}").into_bytes(),
            "duplicate grant_type",
        ),
        (
            "application/x-www-form-urlencoded",
            vec![b'a'; 70 * 1024],
            "oversized body",
        ),
        (
            "application/x-www-form-urlencoded",
            b"scope=read".to_vec(),
            "missing grant_type",
        ),
        (
            "application/x-www-form-urlencoded",
            format!("grant_type={POLL}").into_bytes(),
            "missing deferral_code",
        ),
        (
            "application/x-www-form-urlencoded",
            format!("{poll_body}&completion_mode=deferred").into_bytes(),
            "DTR-6",
        ),
    ];
    for (ct, body, what) in cases {
        let r = h.post_raw("/token", Some(basic(SVC)), ct, body).await;
        // RFC 9110 section 15.5.14: an oversized body is 413, still an
        // OAuth JSON error.
        let want = if what == "oversized body" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(r.status, want, "{what}: {}", r.text);
        assert_eq!(r.error(), "invalid_request", "{what}");
        assert!(r.no_store(), "{what}");
        assert!(r.json["error_description"].is_string(), "{what}");
    }
    let r = h.post("/token", SVC, &[("grant_type", "password")]).await;
    assert_eq!(r.error(), "unsupported_grant_type");
    // None of that touched the deferral: the first real poll is a normal pending answer.
    assert_eq!(h.poll(&code).await.error(), "authorization_pending");
}

#[tokio::test]
async fn revoke_requires_token() {
    let h = harness().await;
    let r = h.post("/revoke", SVC, &[]).await;
    assert_eq!(r.error(), "invalid_request");
}

// ---------------------------------------------------------------- admin API

#[tokio::test]
async fn admin_api_authentication_and_errors() {
    let h = harness().await;
    let r = h.get("/admin/deferrals").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let wrong = h
        .send(
            axum::http::Request::get("/admin/deferrals")
                .header(header::AUTHORIZATION, "Bearer wrong-token")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.admin("GET", "/admin/deferrals/dfr_nope", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.admin("POST", "/admin/deferrals/dfr_nope/approve", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.admin("GET", "/admin/deferrals?state=bogus", None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    let bad_json = h
        .send(
            axum::http::Request::post(format!("/admin/deferrals/{id}/approve"))
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .body(axum::body::Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.poll(&code).await.error(), "authorization_pending");
}

#[tokio::test]
async fn admin_list_filters_and_orders() {
    let h = harness().await;
    h.defer("payments").await;
    h.clock.advance_ms(10);
    h.defer("reports").await;
    h.clock.advance_ms(10);
    let other = h
        .post_other(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(other.error(), "authorization_pending");
    let all = h.admin("GET", "/admin/deferrals", None).await.json;
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[0]["client_id"], "other", "newest first");
    let svc = h
        .admin("GET", "/admin/deferrals?state=pending&client_id=svc", None)
        .await
        .json;
    assert_eq!(svc.as_array().unwrap().len(), 2);
    let id = svc[0]["id"].as_str().unwrap();
    h.admin("POST", &format!("/admin/deferrals/{id}/deny"), None)
        .await;
    let pending = h
        .admin("GET", "/admin/deferrals?state=pending&client_id=svc", None)
        .await
        .json;
    assert_eq!(pending.as_array().unwrap().len(), 1);
    let denied = h
        .admin("GET", "/admin/deferrals?state=denied", None)
        .await
        .json;
    assert_eq!(denied.as_array().unwrap().len(), 1);
}
