//! OpenID CIBA Core 1.0 poll mode on the deferral engine, through the
//! router: the backchannel authentication request and its errors, the
//! user's `/ciba` page, the CIBA grant's answers (pending, slow_down,
//! approved with an ID token, denied, expired, cancelled, redeemed once),
//! an admin deciding for the user, a DPoP-bound `auth_req_id`, the CIBA to
//! deferral continuation under policy, and the deferral to CIBA bridge.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::browser::*;
use common::*;
use serde_json::{json, Value};

const CIBA: &str = "urn:openid:params:grant-type:ciba";
const BANK: (&str, &str) = ("bank", "bank-secret");
const SHOP: (&str, &str) = ("shop", "shop-secret");

const CFG: &str = r#"
issuer = "http://127.0.0.1:8080"
[deferral]
expires_in = 600
interval = 5
[admin]
token = "test-admin-token-0123456789abcdefghij"
[ciba]
bridge = true
[[clients]]
client_id = "bank"
client_secret = "bank-secret"
grant_types = ["urn:openid:params:grant-type:ciba", "refresh_token", "client_credentials"]
scope = "openid profile payments read"
[[clients]]
client_id = "shop"
client_secret = "shop-secret"
grant_types = ["urn:openid:params:grant-type:ciba", "client_credentials"]
scope = "openid read payments"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
grant_types = ["client_credentials"]
scope = "openid read"
[[users]]
username = "alice"
password = "alice-password"
name = "Alice Example"
[[users]]
username = "bob"
password = "bob-password"
[[users]]
username = "carol"
password = "carol-password"
user_code = "4711"
[[users]]
username = "rita"
password = "rita-password"
roles = ["reviewer"]
groups = ["fraud"]
[[policy]]
grant_type = "urn:openid:params:grant-type:ciba"
scope_any = ["payments"]
action = "review"
approvers = ["group:fraud"]
[[policy]]
scope_any = ["payments"]
action = "review"
[[policy]]
scope_any = ["forbidden"]
action = "deny"
"#;

async fn bc(h: &Harness, client: (&str, &str), pairs: &[(&str, &str)]) -> Resp {
    h.post("/bc-authorize", client, pairs).await
}

async fn start(h: &Harness, scope: &str, user: &str) -> String {
    let r = bc(
        h,
        BANK,
        &[
            ("scope", scope),
            ("login_hint", user),
            ("binding_message", "W4SCT"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.no_store());
    assert_eq!(r.json["expires_in"], 600);
    assert_eq!(r.json["interval"], 5);
    r.json["auth_req_id"].as_str().unwrap().to_owned()
}

async fn collect(h: &Harness, client: (&str, &str), id: &str) -> Resp {
    h.post(
        "/token",
        client,
        &[("grant_type", CIBA), ("auth_req_id", id)],
    )
    .await
}

/// Signs `user` in on the `/ciba` page and decides the first request listed.
async fn decide_on_page(h: &Harness, user: &str, decision: &str) -> String {
    let mut b = Browser::new(h);
    let r = b.get("/ciba").await;
    let page = b.sign_in_from(r, user, &format!("{user}-password")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let id = hidden(&page.text, "id");
    let csrf = hidden(&page.text, "csrf");
    let done = b
        .post(
            "/ciba",
            &[("id", &id), ("csrf", &csrf), ("decision", decision)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    page.text
}

#[tokio::test]
async fn poll_mode_approved_by_the_user() {
    let h = harness_with(CFG).await;
    let id = start(&h, "openid profile read", "alice").await;
    let r = collect(&h, BANK, &id).await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    // Polling faster than interval: slow_down.
    let r = collect(&h, BANK, &id).await;
    assert_eq!(r.error(), "slow_down", "{}", r.text);
    // The request is a deferral: the admin API lists it with its grant.
    let list = h.admin("GET", "/admin/deferrals", None).await;
    assert_eq!(list.json[0]["grant_type"], CIBA);
    assert_eq!(list.json[0]["subject"], "alice");
    assert_eq!(list.json[0]["state"], "pending");
    // Another user sees nothing to decide.
    let mut b = Browser::new(&h);
    let r = b.get("/ciba").await;
    let bobs = b.sign_in_from(r, "bob", "bob-password").await;
    assert!(bobs.text.contains("No request is waiting"), "{}", bobs.text);
    // Alice sees the binding message and approves.
    h.clock.advance_ms(2_000);
    let approved_at = h.now_s();
    let page = decide_on_page(&h, "alice", "approve").await;
    assert!(page.contains("W4SCT"));
    assert!(page.contains("bank"));
    h.clock.advance_ms(10_000);
    let r = collect(&h, BANK, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.no_store());
    assert_eq!(r.json["scope"], "openid profile read");
    assert!(r.json["refresh_token"].is_string(), "{}", r.text);
    let idt = r.json["id_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            idt.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "bank");
    assert_eq!(claims["auth_time"], approved_at);
    // Exactly once: the auth_req_id is spent.
    let again = collect(&h, BANK, &id).await;
    assert_eq!(again.error(), "invalid_grant", "{}", again.text);
    // The user's approval is consent: the refresh token works.
    let rt = r.json["refresh_token"].as_str().unwrap();
    let rr = h
        .post(
            "/token",
            BANK,
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
        .await;
    assert_eq!(rr.status, StatusCode::OK, "{}", rr.text);
    assert!(rr.json["id_token"].is_string());
}

#[tokio::test]
async fn poll_mode_denied_expired_and_cancelled() {
    let h = harness_with(CFG).await;
    // Denied by the user.
    let id = start(&h, "openid read", "alice").await;
    decide_on_page(&h, "alice", "deny").await;
    h.clock.advance_ms(6_000);
    assert_eq!(collect(&h, BANK, &id).await.error(), "access_denied");

    // Expired: requested_expiry shortens the lifetime.
    let r = bc(
        &h,
        BANK,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("requested_expiry", "30"),
        ],
    )
    .await;
    assert_eq!(r.json["expires_in"], 30, "{}", r.text);
    let id = r.json["auth_req_id"].as_str().unwrap().to_owned();
    h.clock.advance_ms(31_000);
    assert_eq!(collect(&h, BANK, &id).await.error(), "expired_token");

    // Cancelled: the client revokes its auth_req_id (RFC 7009, DTR-31).
    let id = start(&h, "openid", "alice").await;
    let rv = h.post("/revoke", BANK, &[("token", &id)]).await;
    assert_eq!(rv.status, StatusCode::OK);
    h.clock.advance_ms(6_000);
    assert_eq!(collect(&h, BANK, &id).await.error(), "access_denied");
    let d = h.admin("GET", "/admin/deferrals", None).await;
    assert_eq!(d.json[0]["state"], "cancelled");

    // Another client's auth_req_id is unknown to it.
    let id = start(&h, "openid", "alice").await;
    h.clock.advance_ms(6_000);
    assert_eq!(collect(&h, SHOP, &id).await.error(), "invalid_grant");
}

#[tokio::test]
async fn an_admin_decides_for_the_user() {
    let h = harness_with(CFG).await;
    let id = start(&h, "openid read", "alice").await;
    // Alice has the page open with the request on it.
    let mut b = Browser::new(&h);
    let p = b.get("/ciba").await;
    let p = b.sign_in_from(p, "alice", "alice-password").await;
    let csrf = hidden(&p.text, "csrf");
    let did = h.newest_id().await;
    assert_eq!(hidden(&p.text, "id"), did);
    let a = h
        .admin("POST", &format!("/admin/deferrals/{did}/approve"), None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    h.clock.advance_ms(6_000);
    let r = collect(&h, BANK, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json["id_token"].is_string());
    // No consent of the user's own: no refresh token.
    assert!(r.json.get("refresh_token").is_none(), "{}", r.text);
    // Her page no longer lists it; deciding it there is a conflict.
    let p = b.get("/ciba").await;
    assert!(p.text.contains("No request is waiting"));
    let late = b
        .post(
            "/ciba",
            &[("id", &did), ("csrf", &csrf), ("decision", "deny")],
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn backchannel_request_errors() {
    let h = harness_with(CFG).await;
    let err = |r: &Resp| r.json["error"].as_str().unwrap_or("").to_owned();
    let r = bc(&h, BANK, &[("scope", "openid"), ("login_hint", "mallory")]).await;
    assert_eq!(err(&r), "unknown_user_id");
    let r = bc(&h, BANK, &[("scope", "read"), ("login_hint", "alice")]).await;
    assert_eq!(err(&r), "invalid_scope");
    let r = bc(
        &h,
        BANK,
        &[("scope", "openid admin"), ("login_hint", "alice")],
    )
    .await;
    assert_eq!(err(&r), "invalid_scope");
    let r = bc(
        &h,
        BANK,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("login_hint_token", "x"),
        ],
    )
    .await;
    assert_eq!(err(&r), "invalid_request");
    let r = bc(&h, BANK, &[("scope", "openid"), ("request", "eyJ.eyJ.sig")]).await;
    assert_eq!(err(&r), "invalid_request");
    assert!(r.json["error_description"]
        .as_str()
        .unwrap()
        .contains("signed authentication request"));
    // Not a CIBA client.
    let r = bc(&h, SVC, &[("scope", "openid"), ("login_hint", "alice")]).await;
    assert_eq!(err(&r), "unauthorized_client");
    // Bad client credentials.
    let r = bc(
        &h,
        ("bank", "wrong-secret"),
        &[("scope", "openid"), ("login_hint", "alice")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(err(&r), "invalid_client");
    // User codes.
    let r = bc(&h, BANK, &[("scope", "openid"), ("login_hint", "carol")]).await;
    assert_eq!(err(&r), "missing_user_code");
    let r = bc(
        &h,
        BANK,
        &[
            ("scope", "openid"),
            ("login_hint", "carol"),
            ("user_code", "0000"),
        ],
    )
    .await;
    assert_eq!(err(&r), "invalid_user_code");
    let r = bc(
        &h,
        BANK,
        &[
            ("scope", "openid"),
            ("login_hint", "carol"),
            ("user_code", "4711"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Policy denies: 403 access_denied (CIBA Core section 13).
    let r = bc(
        &h,
        BANK,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("binding_message", "a\u{7}b"),
        ],
    )
    .await;
    assert_eq!(err(&r), "invalid_binding_message");
    // A token request with parameters of another grant: they are ignored
    // (RFC 6749 section 3.2), like on a poll; the unknown id is the answer.
    let r = h
        .post(
            "/token",
            BANK,
            &[
                ("grant_type", CIBA),
                ("auth_req_id", "x"),
                ("scope", "read"),
            ],
        )
        .await;
    assert_eq!(r.error(), "invalid_grant");
    // Nothing of these left a deferral behind but carol's.
    let list = h.admin("GET", "/admin/deferrals", None).await;
    assert_eq!(list.json.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn id_token_hint_names_the_user() {
    let h = harness_with(CFG).await;
    let id = start(&h, "openid", "alice").await;
    decide_on_page(&h, "alice", "approve").await;
    h.clock.advance_ms(6_000);
    let idt = collect(&h, BANK, &id).await.json["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = bc(&h, BANK, &[("scope", "openid"), ("id_token_hint", &idt)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        h.admin("GET", "/admin/deferrals", None).await.json[0]["subject"],
        "alice"
    );
    // Issued to bank: no hint for shop.
    let r = bc(&h, SHOP, &[("scope", "openid"), ("id_token_hint", &idt)]).await;
    assert_eq!(r.json["error"], "invalid_request");
}

#[tokio::test]
async fn dpop_bound_auth_req_id() {
    let h = harness_with(CFG).await;
    let key = DpopKey::new();
    let r = h
        .post_dpop(
            "/bc-authorize",
            BANK,
            Some(&h.proof(&key, "/bc-authorize")),
            &[("scope", "openid"), ("login_hint", "alice")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.json["auth_req_id"].as_str().unwrap().to_owned();
    decide_on_page(&h, "alice", "approve").await;
    h.clock.advance_ms(6_000);
    let pairs = [("grant_type", CIBA), ("auth_req_id", id.as_str())];
    let none = collect(&h, BANK, &id).await;
    assert_eq!(none.error(), "invalid_dpop_proof");
    let other = DpopKey::new();
    let wrong = h
        .post_dpop("/token", BANK, Some(&h.proof(&other, "/token")), &pairs)
        .await;
    assert_eq!(wrong.error(), "invalid_dpop_proof");
    let ok = h
        .post_dpop("/token", BANK, Some(&h.proof(&key, "/token")), &pairs)
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json["token_type"], "DPoP");
}

#[tokio::test]
async fn ciba_continues_as_a_deferral_when_policy_wants_a_reviewer() {
    let h = harness_with(CFG).await;
    let id = start(&h, "openid payments", "alice").await;
    // Routed to the fraud group, and the user decides too.
    let list = h.admin("GET", "/admin/deferrals", None).await;
    assert_eq!(list.json[0]["grant_type"], CIBA);
    h.clock.advance_ms(1_000);
    let approved_at = h.now_s();
    decide_on_page(&h, "alice", "approve").await;
    h.clock.advance_ms(6_000);
    // Without the opt-in: refused (DTR-2), and the auth_req_id survives.
    let r = collect(&h, BANK, &id).await;
    assert_eq!(r.error(), "access_denied", "{}", r.text);
    assert!(r.json["error_description"]
        .as_str()
        .unwrap()
        .contains("completion_mode=deferred"));
    // With it: the deferred response of a new deferral.
    let r = h
        .post(
            "/token",
            BANK,
            &[
                ("grant_type", CIBA),
                ("auth_req_id", &id),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    let code = r.json["deferral_code"].as_str().unwrap().to_owned();
    // The auth_req_id is spent.
    h.clock.advance_ms(6_000);
    assert_eq!(collect(&h, BANK, &id).await.error(), "invalid_grant");
    // A fraud reviewer approves the new deferral.
    let did = h.newest_id().await;
    let d = h
        .admin("GET", &format!("/admin/deferrals/{did}"), None)
        .await;
    assert_eq!(d.json["state"], "pending");
    let a = h
        .admin("POST", &format!("/admin/deferrals/{did}/approve"), None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let r = h
        .post(
            "/token",
            BANK,
            &[("grant_type", POLL), ("deferral_code", &code)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let idt = r.json["id_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            idt.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["auth_time"], approved_at,
        "the user's authentication"
    );
}

/// Defers a client credentials request of `client` (the bridge continues
/// deferrals of any grant).
async fn defer_as(h: &Harness, client: (&str, &str), dpop: Option<&DpopKey>) -> String {
    let pairs = [
        ("grant_type", "client_credentials"),
        ("scope", "payments"),
        ("completion_mode", "deferred"),
    ];
    let proof = dpop.map(|k| h.proof(k, "/token"));
    let r = h
        .post_dpop("/token", client, proof.as_deref(), &pairs)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    r.json["deferral_code"].as_str().unwrap().to_owned()
}

async fn bridge(h: &Harness, client: (&str, &str), code: &str, dpop: Option<&DpopKey>) -> Resp {
    let hint = format!("urn:dtr:deferral:{code}");
    let proof = dpop.map(|k| h.proof(k, "/bc-authorize"));
    h.post_dpop(
        "/bc-authorize",
        client,
        proof.as_deref(),
        &[("scope", "openid"), ("login_hint_token", &hint)],
    )
    .await
}

#[tokio::test]
async fn bridge_one_decision_two_handles_one_redemption() {
    let h = harness_with(CFG).await;
    let meta = h.get("/.well-known/openid-configuration").await;
    assert_eq!(meta.json["dtr_ciba_deferral_bridge_supported"], true);
    assert_eq!(
        meta.json["backchannel_authentication_endpoint"],
        "http://127.0.0.1:8080/bc-authorize"
    );
    for first_by_ciba in [true, false] {
        let code = defer_as(&h, BANK, None).await;
        let r = bridge(&h, BANK, &code, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let id = r.json["auth_req_id"].as_str().unwrap().to_owned();
        assert_ne!(id, code);
        // A second bridge of the same deferral is refused.
        assert_eq!(
            bridge(&h, BANK, &code, None).await.json["error"],
            "invalid_request"
        );
        // One decision.
        let did = h.newest_id().await;
        h.admin("POST", &format!("/admin/deferrals/{did}/approve"), None)
            .await;
        h.clock.advance_ms(6_000);
        let by_code = || async {
            h.post(
                "/token",
                BANK,
                &[("grant_type", POLL), ("deferral_code", &code)],
            )
            .await
        };
        let (first, second) = if first_by_ciba {
            (collect(&h, BANK, &id).await, by_code().await)
        } else {
            (by_code().await, collect(&h, BANK, &id).await)
        };
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        assert_eq!(second.error(), "invalid_grant", "{}", second.text);
        h.clock.advance_ms(6_000);
    }
}

#[tokio::test]
async fn bridge_redeemed_exactly_once_under_concurrency() {
    let h = harness_with(CFG).await;
    let code = defer_as(&h, BANK, None).await;
    let id = bridge(&h, BANK, &code, None).await.json["auth_req_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let did = h.newest_id().await;
    h.admin("POST", &format!("/admin/deferrals/{did}/approve"), None)
        .await;
    h.clock.advance_ms(6_000);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let app = h.app.clone();
            let (gt, name, value) = if i % 2 == 0 {
                (CIBA, "auth_req_id", id.clone())
            } else {
                (POLL, "deferral_code", code.clone())
            };
            tokio::spawn(async move {
                use tower::ServiceExt;
                let req = axum::http::Request::post("/token")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("authorization", basic(BANK))
                    .body(axum::body::Body::from(form(&[
                        ("grant_type", gt),
                        (name, &value),
                    ])))
                    .unwrap();
                app.oneshot(req).await.unwrap().status()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "one redemption across both handles");
    let d = h
        .admin("GET", &format!("/admin/deferrals/{did}"), None)
        .await;
    assert_eq!(d.json["state"], "redeemed");
}

#[tokio::test]
async fn bridge_refuses_foreign_unknown_and_unproven_codes() {
    let h = harness_with(CFG).await;
    let code = defer_as(&h, BANK, None).await;
    let foreign = bridge(&h, SHOP, &code, None).await;
    let unknown = bridge(&h, BANK, "no-such-code-0123456789abcdef", None).await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST);
    assert_eq!(foreign.json, unknown.json, "indistinguishable");
    assert_eq!(foreign.json["error"], "invalid_request");
    // A DPoP-bound code bridges only with a proof of its key, and its
    // auth_req_id is bound the same.
    let key = DpopKey::new();
    h.clock.advance_ms(1_000);
    let bound = defer_as(&h, BANK, Some(&key)).await;
    assert_eq!(
        bridge(&h, BANK, &bound, None).await.json["error"],
        "invalid_dpop_proof"
    );
    assert_eq!(
        bridge(&h, BANK, &bound, Some(&DpopKey::new())).await.json["error"],
        "invalid_dpop_proof"
    );
    let r = bridge(&h, BANK, &bound, Some(&key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.json["auth_req_id"].as_str().unwrap().to_owned();
    let did = h.newest_id().await;
    h.admin("POST", &format!("/admin/deferrals/{did}/approve"), None)
        .await;
    h.clock.advance_ms(6_000);
    assert_eq!(collect(&h, BANK, &id).await.error(), "invalid_dpop_proof");
    let ok = h
        .post_dpop(
            "/token",
            BANK,
            Some(&h.proof(&key, "/token")),
            &[("grant_type", CIBA), ("auth_req_id", &id)],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // A dead (redeemed) code cannot be bridged.
    assert_eq!(
        bridge(&h, BANK, &bound, Some(&key)).await.json,
        unknown.json
    );
    let _ = json!(null);
}

#[tokio::test]
async fn bridge_is_off_by_default() {
    let h = harness_with(&CFG.replace("bridge = true", "bridge = false")).await;
    let meta = h.get("/.well-known/oauth-authorization-server").await;
    assert!(meta
        .json
        .get("dtr_ciba_deferral_bridge_supported")
        .is_none());
    assert_eq!(
        meta.json["backchannel_token_delivery_modes_supported"],
        json!(["poll", "ping", "push"])
    );
    let code = defer_as(&h, BANK, None).await;
    let r = bridge(&h, BANK, &code, None).await;
    assert_eq!(r.json["error"], "invalid_request");
    assert!(r.json["error_description"]
        .as_str()
        .unwrap()
        .contains("not enabled"));
}

#[tokio::test]
async fn registered_clients_carry_oidc_and_ciba_metadata() {
    let cfg = format!(
        "{CFG}\n[registration]\nenabled = true\nopen = true\nscope = \"openid read\"\ngrant_types = [\"{CIBA}\"]\n"
    );
    let h = harness_with(&cfg).await;
    let reg = |body: Value| {
        let h = &h;
        async move {
            h.send(
                axum::http::Request::post("/register")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
        }
    };
    // CIBA without openid, an unknown mode, ping without an endpoint: refused.
    for bad in [
        json!({"grant_types": [CIBA], "scope": "read"}),
        json!({"grant_types": [CIBA], "scope": "openid", "backchannel_token_delivery_mode": "fax"}),
        json!({"grant_types": [CIBA], "scope": "openid", "backchannel_token_delivery_mode": "ping"}),
        json!({"grant_types": [CIBA], "scope": "openid", "id_token_signed_response_alg": "none"}),
    ] {
        let r = reg(bad.clone()).await;
        assert_eq!(
            r.json["error"], "invalid_client_metadata",
            "{bad}: {}",
            r.text
        );
    }
    let r = reg(json!({
        "grant_types": [CIBA],
        "scope": "openid read",
        "id_token_signed_response_alg": "ES256",
        "token_endpoint_auth_method": "client_secret_basic",
    }))
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["backchannel_token_delivery_mode"], "poll");
    assert_eq!(r.json["id_token_signed_response_alg"], "ES256");
    let id = r.json["client_id"].as_str().unwrap().to_owned();
    let secret = r.json["client_secret"].as_str().unwrap().to_owned();
    let me = (id.as_str(), secret.as_str());
    let r = bc(&h, me, &[("scope", "openid"), ("login_hint", "alice")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let auth_req_id = r.json["auth_req_id"].as_str().unwrap().to_owned();
    decide_on_page(&h, "alice", "approve").await;
    h.clock.advance_ms(6_000);
    let t = collect(&h, me, &auth_req_id).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    let idt = t.json["id_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(idt).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
}

#[tokio::test]
async fn signed_authentication_requests_are_request_objects() {
    // CIBA Core 1.0 section 7.1.1: the parameters signed by the client's
    // key (RFC 9101 checks), used once.
    let key = DpopKey::new();
    let cfg = format!(
        "{CFG}\n[[clients]]\nclient_id = \"signer\"\nclient_secret = \"signer-secret\"\n\
         grant_types = [\"urn:openid:params:grant-type:ciba\"]\nscope = \"openid read\"\n\
         jwks = {{ keys = [ {{ kty = \"EC\", crv = \"P-256\", kid = \"s1\", x = \"{}\", y = \"{}\" }} ] }}\n",
        key.jwk["x"].as_str().unwrap(),
        key.jwk["y"].as_str().unwrap()
    );
    let h = harness_with(&cfg).await;
    let signer = ("signer", "signer-secret");
    let sign = |k: &DpopKey, claims: Value| {
        k.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": "s1"}), &claims)
    };
    let now = h.now_s();
    let claims = json!({
        "iss": "signer", "aud": "http://127.0.0.1:8080", "exp": now + 60, "iat": now,
        "nbf": now, "jti": "ciba-1", "scope": "openid read", "login_hint": "alice",
        "binding_message": "W4SCT",
    });
    let jwt = sign(&key, claims.clone());
    let r = bc(&h, signer, &[("request", &jwt)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json["auth_req_id"].is_string());
    // Used once.
    let r = bc(&h, signer, &[("request", &jwt)]).await;
    assert_eq!(r.error(), "invalid_request", "{}", r.text);
    // Another key, or claims of another client: refused.
    let r = bc(
        &h,
        signer,
        &[("request", &sign(&DpopKey::new(), claims.clone()))],
    )
    .await;
    assert_eq!(r.error(), "invalid_request", "{}", r.text);
    let mut foreign = claims;
    foreign["iss"] = json!("bank");
    foreign["jti"] = json!("ciba-2");
    let r = bc(&h, signer, &[("request", &sign(&key, foreign))]).await;
    assert_eq!(r.error(), "invalid_request", "{}", r.text);
    let m = h.get("/.well-known/openid-configuration").await;
    assert!(
        m.json["backchannel_authentication_request_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "ES256")
    );
}
