//! The authorization code grant with PKCE, its login and consent pages,
//! PAR, refresh tokens and DTR on them, driven through the router with a
//! manual clock and a cookie jar, as a browser would (forms followed,
//! cookies kept).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::browser::*;
use common::*;
use serde_json::{json, Value};

const CFG: &str = r#"
issuer = "http://127.0.0.1:8080"
[deferral]
expires_in = 600
interval = 5
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "web"
client_secret = "web-secret-1"
grant_types = ["authorization_code", "refresh_token"]
scope = "read write payments"
redirect_uris = ["https://app.example/cb"]
[[clients]]
client_id = "spa"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
scope = "read payments"
redirect_uris = ["https://spa.example/cb", "https://spa.example/other"]
[[clients]]
client_id = "pushy"
client_secret = "pushy-secret"
grant_types = ["authorization_code"]
scope = "read"
redirect_uris = ["https://pushy.example/cb"]
require_pushed_authorization_requests = true
[[users]]
username = "alice"
password = "alice-password"
[[users]]
username = "bob"
password = "bob-password"
[[policy]]
scope_any = ["payments"]
action = "review"
[[policy]]
grant_type = "refresh_token"
scope_any = ["write"]
action = "review"
"#;

const WEB: (&str, &str) = ("web", "web-secret-1");

async fn exchange(h: &Harness, code: &str, extra: &[(&str, &str)]) -> Resp {
    exchange_as(h, WEB, code, extra).await
}

#[tokio::test]
async fn synchronous_code_flow_with_pkce_and_refresh_rotation() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "read write")]).await;
    let r = exchange(&h, &code, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.no_store());
    assert_eq!(r.json["scope"], "read write");
    assert_eq!(r.json["token_type"], "Bearer");
    let rt1 = r.json["refresh_token"].as_str().unwrap().to_owned();
    let at1 = r.json["access_token"].as_str().unwrap().to_owned();

    // A replayed code: invalid_grant, and what it issued is revoked.
    let again = exchange(&h, &code, &[]).await;
    assert_eq!(again.error(), "invalid_grant");
    let intro = h.post("/introspect", WEB, &[("token", &at1)]).await;
    assert_eq!(intro.json["active"], false, "{}", intro.text);
    let dead = h
        .post(
            "/token",
            WEB,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        )
        .await;
    assert_eq!(dead.error(), "invalid_grant");

    // A second consent-covered request skips the consent page.
    let code = code_for(&mut b, "web", &[("scope", "read")]).await;
    let r = exchange(&h, &code, &[]).await;
    let rt = r.json["refresh_token"].as_str().unwrap().to_owned();
    // Rotation: the new refresh token works once, the old is dead.
    let r2 = h
        .post(
            "/token",
            WEB,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await;
    assert_eq!(r2.status, StatusCode::OK, "{}", r2.text);
    let rt2 = r2.json["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt, rt2);
    // Reuse of the old one revokes the whole family, the new one included.
    let reuse = h
        .post(
            "/token",
            WEB,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await;
    assert_eq!(reuse.error(), "invalid_grant");
    let r3 = h
        .post(
            "/token",
            WEB,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
        )
        .await;
    assert_eq!(r3.error(), "invalid_grant");
}

#[tokio::test]
async fn pkce_redirect_uri_and_client_are_checked() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[]).await;
    let bad = exchange(&h, &code, &[("code_verifier", "x".repeat(43).as_str())]).await;
    // The verifier given twice is a malformed request.
    assert_eq!(bad.error(), "invalid_request");
    let code = code_for(&mut b, "web", &[]).await;
    let r = h
        .post(
            "/token",
            WEB,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &"a".repeat(43)),
            ],
        )
        .await;
    assert_eq!(r.error(), "invalid_grant");
    let code = code_for(&mut b, "web", &[("redirect_uri", "https://app.example/cb")]).await;
    let r = exchange(&h, &code, &[]).await;
    assert_eq!(r.error(), "invalid_grant", "redirect_uri must be repeated");

    // Errors before the redirect URI is trusted are pages, never redirects.
    let r = b
        .get(&authorize_path(
            "web",
            &[("redirect_uri", "https://evil.example/cb")],
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.headers.get(header::LOCATION).is_none());
    // Later errors go back to the client with state and iss.
    let r = b
        .get("/authorize?response_type=code&client_id=web&state=s2")
        .await;
    let q = query_of(&location(&r));
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "s2");
    let plain = format!("/authorize?response_type=code&client_id=web&code_challenge={CHALLENGE}&code_challenge_method=plain");
    assert_eq!(
        query_of(&location(&b.get(&plain).await))["error"],
        "invalid_request"
    );
}

#[tokio::test]
async fn deferred_code_exchange_approved_with_hint() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    // DTR-4: the hint does not change the authorization response.
    let code = code_for(
        &mut b,
        "web",
        &[("scope", "read payments"), ("completion_mode", "deferred")],
    )
    .await;
    // DTR-5: the token request must carry the hint too.
    let r = exchange(&h, &code, &[]).await;
    assert_eq!(r.error(), "invalid_request", "{}", r.text);

    let code = code_for(
        &mut b,
        "web",
        &[("scope", "read payments"), ("completion_mode", "deferred")],
    )
    .await;
    let r = exchange(&h, &code, &[("completion_mode", "deferred")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    let dcode = r.json["deferral_code"].as_str().unwrap().to_owned();
    let id = h.newest_id().await;
    let shown = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(shown.json["grant_type"], "authorization_code");
    assert_eq!(shown.json["subject"], "alice");
    h.admin(
        "POST",
        &format!("/admin/deferrals/{id}/approve"),
        Some(json!({"scope": "payments"})),
    )
    .await;
    let t = h
        .post(
            "/token",
            WEB,
            &[("grant_type", POLL), ("deferral_code", &dcode)],
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    // DTR-20: the authorization code grant's response, narrowed (DTR-24).
    assert_eq!(t.json["scope"], "payments");
    assert!(t.json["refresh_token"].is_string());
}

#[tokio::test]
async fn no_hint_is_no_reason_to_refuse_deferred() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "payments")]).await;
    let r = exchange(&h, &code, &[("completion_mode", "deferred")]).await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    // Without any opt-in, a request policy wants reviewed is refused.
    let code = code_for(&mut b, "web", &[("scope", "payments")]).await;
    assert_eq!(exchange(&h, &code, &[]).await.error(), "access_denied");
}

async fn deferred(h: &Harness, b: &mut Browser<'_>) -> (String, String) {
    let code = code_for(b, "web", &[("scope", "payments")]).await;
    let r = exchange(h, &code, &[("completion_mode", "deferred")]).await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    (
        r.json["deferral_code"].as_str().unwrap().to_owned(),
        h.newest_id().await,
    )
}

#[tokio::test]
async fn deferred_denied_cancelled_expired() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let (code, id) = deferred(&h, &mut b).await;
    h.admin(
        "POST",
        &format!("/admin/deferrals/{id}/deny"),
        Some(json!({})),
    )
    .await;
    let r = h
        .post(
            "/token",
            WEB,
            &[("grant_type", POLL), ("deferral_code", &code)],
        )
        .await;
    assert_eq!(r.error(), "access_denied");

    let (code, _) = deferred(&h, &mut b).await;
    let c = h
        .post(
            "/revoke",
            WEB,
            &[
                ("token", &code),
                ("token_type_hint", dtr_proto::TOKEN_TYPE_DEFERRAL_CODE),
            ],
        )
        .await;
    assert_eq!(c.status, StatusCode::OK);
    let r = h
        .post(
            "/token",
            WEB,
            &[("grant_type", POLL), ("deferral_code", &code)],
        )
        .await;
    assert_eq!(r.error(), "access_denied");

    let (code, _) = deferred(&h, &mut b).await;
    h.clock.advance_secs(601);
    let r = h
        .post(
            "/token",
            WEB,
            &[("grant_type", POLL), ("deferral_code", &code)],
        )
        .await;
    assert_eq!(r.error(), "expired_token");
}

#[tokio::test]
async fn consent_staleness_denies_at_redemption() {
    for what in ["disable", "consent", "session"] {
        let h = harness_with(CFG).await;
        let mut b = Browser::new(&h);
        let (code, id) = deferred(&h, &mut b).await;
        let r = match what {
            "disable" => h.admin("POST", "/admin/users/alice/disable", None).await,
            "consent" => {
                h.admin("DELETE", "/admin/users/alice/consents/web", None)
                    .await
            }
            _ => {
                h.admin("POST", "/admin/users/alice/sessions/end", None)
                    .await
            }
        };
        assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.text);
        h.admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(json!({})),
        )
        .await;
        let t = h
            .post(
                "/token",
                WEB,
                &[("grant_type", POLL), ("deferral_code", &code)],
            )
            .await;
        assert_eq!(t.error(), "access_denied", "{what}: {}", t.text);
        let shown = h
            .admin("GET", &format!("/admin/deferrals/{id}"), None)
            .await;
        assert_eq!(shown.json["state"], "denied", "{what}");
    }
}

#[tokio::test]
async fn admin_users_and_consents() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    code_for(&mut b, "web", &[("scope", "read")]).await;
    let users = h.admin("GET", "/admin/users", None).await;
    assert_eq!(users.json.as_array().unwrap().len(), 2);
    let c = h.admin("GET", "/admin/users/alice/consents", None).await;
    assert_eq!(c.json[0]["client_id"], "web");
    assert_eq!(c.json[0]["scope"], "read");
    assert_eq!(
        h.admin("GET", "/admin/users/nobody/consents", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // A disabled user cannot sign in, and their session stops counting.
    h.admin("POST", "/admin/users/alice/disable", None).await;
    let r = b.get(&authorize_path("web", &[])).await;
    assert!(location(&r).starts_with("/login"));
    h.admin("POST", "/admin/users/alice/enable", None).await;
    let r = b.get(&authorize_path("web", &[("scope", "read")])).await;
    assert!(
        location(&r).starts_with("https://app.example/cb?code="),
        "{}",
        location(&r)
    );
}

#[tokio::test]
async fn public_client_needs_dpop_to_be_deferred_and_gets_bound_refresh_tokens() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let key = DpopKey::new();
    let code = code_for(
        &mut b,
        "spa",
        &[
            ("redirect_uri", "https://spa.example/cb"),
            ("scope", "read"),
        ],
    )
    .await;
    let proof = h.proof(&key, "/token");
    let pairs = [
        ("grant_type", "authorization_code"),
        ("client_id", "spa"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", "https://spa.example/cb"),
    ];
    let send = |proof: Option<String>, pairs: Vec<(&'static str, String)>| {
        let mut req = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(p) = proof {
            req = req.header("DPoP", p);
        }
        let body = form(
            &pairs
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        );
        req.body(Body::from(body)).unwrap()
    };
    let owned = |p: &[(&'static str, &str)]| {
        p.iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect::<Vec<_>>()
    };
    let r = h.send(send(Some(proof), owned(&pairs))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "DPoP");
    let rt = r.json["refresh_token"].as_str().unwrap().to_owned();
    // The refresh token is bound: without the key it is refused and not burnt.
    let refresh = [
        ("grant_type", "refresh_token"),
        ("client_id", "spa"),
        ("refresh_token", rt.as_str()),
    ];
    let r = h.send(send(None, owned(&refresh))).await;
    assert_eq!(r.error(), "invalid_dpop_proof");
    let r = h
        .send(send(Some(h.proof(&key, "/token")), owned(&refresh)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // DTR-14: a public client is not deferred without DPoP.
    let code = code_for(
        &mut b,
        "spa",
        &[
            ("redirect_uri", "https://spa.example/cb"),
            ("scope", "payments"),
        ],
    )
    .await;
    let p2 = [
        ("grant_type", "authorization_code"),
        ("client_id", "spa"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", "https://spa.example/cb"),
        ("completion_mode", "deferred"),
    ];
    let r = h.send(send(None, owned(&p2))).await;
    assert_eq!(r.error(), "invalid_dpop_proof", "{}", r.text);
}

#[tokio::test]
async fn refresh_grant_can_be_deferred() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "read write")]).await;
    let rt = exchange(&h, &code, &[]).await.json["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h
        .post(
            "/token",
            WEB,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    let dcode = r.json["deferral_code"].as_str().unwrap().to_owned();
    let id = h.newest_id().await;
    h.admin(
        "POST",
        &format!("/admin/deferrals/{id}/approve"),
        Some(json!({})),
    )
    .await;
    let t = h
        .post(
            "/token",
            WEB,
            &[("grant_type", POLL), ("deferral_code", &dcode)],
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    assert_eq!(t.json["scope"], "read write");
    let rt2 = t.json["refresh_token"].as_str().unwrap().to_owned();
    // A narrower refresh is not reviewed; revocation kills the family.
    let r = h
        .post(
            "/token",
            WEB,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt2),
                ("scope", "read"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rt3 = r.json["refresh_token"].as_str().unwrap().to_owned();
    let at = r.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.post("/revoke", WEB, &[("token", &rt3)]).await.status,
        StatusCode::OK
    );
    let r = h
        .post(
            "/token",
            WEB,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt3)],
        )
        .await;
    assert_eq!(r.error(), "invalid_grant");
    assert_eq!(
        h.post("/introspect", WEB, &[("token", &at)]).await.json["active"],
        false
    );
}

#[tokio::test]
async fn pushed_authorization_requests() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    // A client that must push is refused at /authorize directly.
    let r = b.get(&authorize_path("pushy", &[])).await;
    assert_eq!(query_of(&location(&r))["error"], "invalid_request");
    let pushed = h
        .post(
            "/par",
            ("pushy", "pushy-secret"),
            &[
                ("response_type", "code"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("state", "st-1"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text);
    assert_eq!(pushed.json["expires_in"], 60);
    let uri = pushed.json["request_uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    let path = format!(
        "/authorize?{}",
        form(&[("client_id", "pushy"), ("request_uri", &uri)])
    );
    let first = b.get(&path).await;
    let page = b.sign_in_from(first, "alice", "alice-password").await;
    let q = b.consent(&page, "approve").await;
    let code = q["code"].clone();
    // Single use.
    let again = b.get(&path).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    // The pushed hint binds the token request (DTR-5).
    let r = h
        .post(
            "/token",
            ("pushy", "pushy-secret"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(r.error(), "invalid_request", "{}", r.text);
    // Bad pushed requests are JSON errors.
    let bad = h
        .post(
            "/par",
            ("pushy", "pushy-secret"),
            &[("response_type", "code")],
        )
        .await;
    assert_eq!(bad.error(), "invalid_request");
}

#[tokio::test]
async fn consent_denied_and_csrf_and_escaping() {
    // Open registration, for the client with markup in its name below.
    let h = harness_with(&format!(
        "{CFG}\n[registration]\nenabled = true\nopen = true\nscope = \"read\"\n\
         grant_types = [\"authorization_code\"]\n"
    ))
    .await;
    let mut b = Browser::new(&h);
    let r = b.get(&authorize_path("web", &[])).await;
    let page = b.sign_in_from(r, "alice", "alice-password").await;
    // A forged form (no CSRF token) changes nothing.
    let request = hidden(&page.text, "request");
    let forged = b
        .post(
            "/authorize/consent",
            &[("request", &request), ("decision", "approve")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let q = b.consent(&page, "deny").await;
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-1");

    // Login without the double-submit cookie is refused.
    let r = h
        .post_raw(
            "/login",
            None,
            "application/x-www-form-urlencoded",
            form(&[
                ("csrf", "x".repeat(30).as_str()),
                ("username", "alice"),
                ("password", "alice-password"),
            ])
            .into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // A client name with markup is shown as text.
    let reg: Value = h
        .send(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({
                        "client_name": "<script>alert('x')</script>",
                        "grant_types": ["authorization_code"],
                        "token_endpoint_auth_method": "none",
                        "redirect_uris": ["https://evil.example/cb"],
                        "scope": "read",
                    })
                    .to_string(),
                ))
                .unwrap(),
        )
        .await
        .json;
    let id = reg["client_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{reg}"))
        .to_owned();
    let page = b.get(&authorize_path(&id, &[])).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(!page.text.contains("<script>"), "{}", page.text);
    assert!(page
        .text
        .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
}

#[tokio::test]
async fn interaction_page_uses_the_session() {
    let h = harness_with(&format!(
        "{CFG}\n[[policy]]\nscope_any = [\"read\"]\naction = \"interaction\"\n"
    ))
    .await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "read")]).await;
    let r = exchange(&h, &code, &[("completion_mode", "deferred")]).await;
    assert_eq!(r.error(), "interaction_required", "{}", r.text);
    let uri = r.json["interaction_uri"].as_str().unwrap();
    let path = uri.trim_start_matches("http://127.0.0.1:8080").to_owned();
    let dcode = r.json["deferral_code"].as_str().unwrap().to_owned();
    // Bob may not decide alice's request: the page is refused him, and so
    // is a decision sent with his own session's valid CSRF token (taken
    // from another signed-in page).
    let mut bob = Browser::new(&h);
    let first = bob.get(&path).await;
    let page = bob.sign_in_from(first, "bob", "bob-password").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    let csrf = hidden(&bob.get("/device").await.text, "csrf");
    let r = bob
        .post(&path, &[("csrf", &csrf), ("decision", "approve")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Opening the page approves nothing.
    let page = b.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    let p = h
        .post(
            "/token",
            WEB,
            &[("grant_type", POLL), ("deferral_code", &dcode)],
        )
        .await;
    // Still pending: the interaction has begun (interaction_pending).
    assert_eq!(p.error(), "interaction_pending");
    let csrf = hidden(&page.text, "csrf");
    assert_eq!(
        b.post(&path, &[("decision", "approve")]).await.status,
        StatusCode::FORBIDDEN
    );
    let r = b
        .post(&path, &[("csrf", &csrf), ("decision", "approve")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Single use.
    assert_eq!(
        b.post(&path, &[("csrf", &csrf), ("decision", "approve")])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    h.clock.advance_secs(6);
    let t = h
        .post(
            "/token",
            WEB,
            &[("grant_type", POLL), ("deferral_code", &dcode)],
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    assert!(t.json["refresh_token"].is_string());
}

#[tokio::test]
async fn metadata_lists_the_authorization_endpoint() {
    let h = harness_with(CFG).await;
    let m = h.get("/.well-known/oauth-authorization-server").await.json;
    assert_eq!(
        m["authorization_endpoint"],
        "http://127.0.0.1:8080/authorize"
    );
    assert_eq!(
        m["pushed_authorization_request_endpoint"],
        "http://127.0.0.1:8080/par"
    );
    assert_eq!(m["response_types_supported"], json!(["code"]));
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    let grants = m["grant_types_supported"].as_array().unwrap();
    assert!(
        grants.contains(&json!("authorization_code")) && grants.contains(&json!("refresh_token"))
    );
}
