//! Router tests (`oneshot`, manual clock) of the device authorization grant
//! (RFC 8628) and token exchange (RFC 8693), each synchronous and deferred:
//! the two pending states of the device grant are never confused, the
//! hint-consistency rule (DTR-5), DTR-14 for public clients, user-code
//! attempt limits, `issued_token_type` on the successful poll (DTR-20),
//! and the subject token re-checked at redemption (DTR-23).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{form, harness_with, DpopKey, Harness, Resp, POLL};
use serde_json::Value;

const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const SVC: (&str, &str) = ("svc", "svc-secret");
const BROKER: (&str, &str) = ("broker", "broker-secret");
const TVC: (&str, &str) = ("tv-conf", "tv-conf-secret");

const CONFIG: &str = r#"
issuer = "http://127.0.0.1:8080"
[deferral]
expires_in = 600
interval = 5
[device]
expires_in = 300
interval = 5
max_user_code_failures = 3
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read write payments"
[[clients]]
client_id = "broker"
client_secret = "broker-secret"
grant_types = ["urn:ietf:params:oauth:grant-type:token-exchange"]
scope = "read write payments"
[[clients]]
client_id = "tv"
token_endpoint_auth_method = "none"
grant_types = ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]
scope = "read payments"
[[clients]]
client_id = "tv-conf"
client_secret = "tv-conf-secret"
grant_types = ["urn:ietf:params:oauth:grant-type:device_code"]
scope = "read payments"
[[users]]
username = "alice"
password = "alice-password"
[[users]]
username = "bob"
password = "bob-password"
[[resource_servers]]
identifier = "billing"
[[resource_servers]]
identifier = "https://api.example/v1"
[[resource_servers]]
identifier = "ledger"
[[token_exchange]]
client_id = "broker"
subject_clients = ["svc"]
audiences = ["billing", "https://api.example/v1", "ledger"]
[[policy]]
grant_type = "urn:ietf:params:oauth:grant-type:device_code"
scope_any = ["payments"]
action = "review"
[[policy]]
grant_type = "urn:ietf:params:oauth:grant-type:token-exchange"
scope_any = ["payments"]
action = "review"
"#;

async fn h() -> Harness {
    harness_with(CONFIG).await
}

/// The claims of one of our JWTs, without verifying it.
fn claims(jwt: &str) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The value of a `name="..." value="..."` input in a page.
fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    let end = rest.find('"')?;
    Some(
        rest[..end]
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#39;", "'"),
    )
}

fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers.get_all(header::SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let pair = v.split(';').next()?;
        let (k, val) = pair.split_once('=')?;
        (k == name && !val.is_empty()).then(|| format!("{k}={val}"))
    })
}

impl Harness {
    async fn get_cookie(&self, path: &str, cookie: &str) -> Resp {
        self.send(
            Request::get(path)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post_page(&self, path: &str, cookie: &str, pairs: &[(&str, &str)]) -> Resp {
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, cookie)
            .body(Body::from(form(pairs)))
            .unwrap();
        self.send(req).await
    }

    /// Signs in through the login form; returns the session cookie.
    async fn login(&self, user: &str, password: &str) -> String {
        let page = self.get("/login").await;
        let csrf_cookie = set_cookie(&page, "dtr_login_csrf").unwrap();
        let csrf = input_value(&page.text, "csrf").unwrap();
        let r = self
            .post_page(
                "/login",
                &csrf_cookie,
                &[("csrf", &csrf), ("username", user), ("password", password)],
            )
            .await;
        set_cookie(&r, "dtr_session")
            .unwrap_or_else(|| panic!("login failed: {} {}", r.status, r.text))
    }

    /// The user enters `user_code` on the page and approves or denies.
    async fn user_decides(&self, cookie: &str, user_code: &str, approve: bool) -> Resp {
        let page = self
            .get_cookie(&format!("/device?user_code={user_code}"), cookie)
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let csrf = input_value(&page.text, "csrf").unwrap();
        let confirm = self
            .post_page(
                "/device",
                cookie,
                &[
                    ("csrf", &csrf),
                    ("action", "lookup"),
                    ("user_code", user_code),
                ],
            )
            .await;
        assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
        let action = if approve { "approve" } else { "deny" };
        let code = input_value(&confirm.text, "user_code").unwrap();
        self.post_page(
            "/device",
            cookie,
            &[("csrf", &csrf), ("action", action), ("user_code", &code)],
        )
        .await
    }

    /// `POST /device_authorization` as the public client `tv`.
    async fn device_start(&self, extra: &[(&str, &str)]) -> Resp {
        let mut pairs = vec![("client_id", "tv")];
        pairs.extend_from_slice(extra);
        self.post_raw(
            "/device_authorization",
            None,
            "application/x-www-form-urlencoded",
            form(&pairs).into_bytes(),
        )
        .await
    }

    /// The device-code token request of the public client `tv`.
    async fn device_token(
        &self,
        device_code: &str,
        extra: &[(&str, &str)],
        proof: Option<&str>,
    ) -> Resp {
        let mut pairs = vec![
            ("client_id", "tv"),
            ("grant_type", DEVICE),
            ("device_code", device_code),
        ];
        pairs.extend_from_slice(extra);
        let mut b = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(p) = proof {
            b = b.header("DPoP", p);
        }
        self.send(b.body(Body::from(form(&pairs))).unwrap()).await
    }

    fn advance(&self, secs: u64) {
        self.clock.advance_ms(secs as i64 * 1000);
    }

    /// An access token of `svc` for `scope` (client credentials).
    async fn svc_token(&self, scope: &str) -> String {
        let r = self
            .post(
                "/token",
                SVC,
                &[("grant_type", "client_credentials"), ("scope", scope)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json["access_token"].as_str().unwrap().to_owned()
    }

    async fn exchange(&self, subject: &str, extra: &[(&str, &str)]) -> Resp {
        let mut pairs = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", AT),
        ];
        pairs.extend_from_slice(extra);
        self.post("/token", BROKER, &pairs).await
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

// ---------------------------------------------------------------- device

#[tokio::test]
async fn device_authorization_response_and_metadata() {
    let h = h().await;
    let plain = h.device_start(&[("scope", "read")]).await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text);
    assert!(plain.no_store());
    let uc = s(&plain.json["user_code"]);
    assert_eq!(uc.len(), 9);
    assert_eq!(&uc[4..5], "-");
    assert!(uc
        .chars()
        .filter(|c| *c != '-')
        .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)));
    assert_eq!(
        plain.json["verification_uri"],
        "http://127.0.0.1:8080/device"
    );
    assert_eq!(
        plain.json["verification_uri_complete"],
        format!("http://127.0.0.1:8080/device?user_code={uc}")
    );
    assert_eq!(plain.json["expires_in"], 300);
    assert_eq!(plain.json["interval"], 5);
    assert!(s(&plain.json["device_code"]).len() >= 27);
    // DTR-4: the hint never changes the response's shape.
    let hinted = h
        .device_start(&[("scope", "read"), ("completion_mode", "deferred")])
        .await;
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&plain.json), keys(&hinted.json));
    // Scope beyond the client, clients without the grant, bad input.
    assert_eq!(
        h.device_start(&[("scope", "write")]).await.error(),
        "invalid_scope"
    );
    let r = h
        .post("/device_authorization", SVC, &[("scope", "read")])
        .await;
    assert_eq!(r.error(), "unauthorized_client");
    let r = h
        .post_raw("/device_authorization", None, "text/plain", b"x".to_vec())
        .await;
    assert_eq!(r.error(), "invalid_request");
    let m = h.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(
        m.json["device_authorization_endpoint"],
        "http://127.0.0.1:8080/device_authorization"
    );
    let grants = m.json["grant_types_supported"].as_array().unwrap();
    assert!(grants.iter().any(|g| g == DEVICE) && grants.iter().any(|g| g == EXCHANGE));
}

#[tokio::test]
async fn device_grant_synchronous_with_rfc8628_polling() {
    let h = h().await;
    let start = h.device_start(&[("scope", "read")]).await;
    let dc = s(&start.json["device_code"]).to_owned();
    let uc = s(&start.json["user_code"]).to_owned();
    // The user has not acted: RFC 8628 authorization_pending, never a deferral.
    let r = h.device_token(&dc, &[], None).await;
    assert_eq!(r.error(), "authorization_pending");
    assert!(r.json.get("deferral_code").is_none() && r.no_store());
    // Too fast: slow_down, and the interval grows by 5 s for good.
    h.advance(4);
    assert_eq!(h.device_token(&dc, &[], None).await.error(), "slow_down");
    h.advance(6);
    assert_eq!(
        h.device_token(&dc, &[], None).await.error(),
        "slow_down",
        "interval is 10 s now"
    );
    h.advance(15);
    assert_eq!(
        h.device_token(&dc, &[], None).await.error(),
        "authorization_pending"
    );
    // The device code of one client is nobody else's.
    let foreign = h
        .post(
            "/token",
            TVC,
            &[("grant_type", DEVICE), ("device_code", &dc)],
        )
        .await;
    assert_eq!(foreign.error(), "invalid_grant");

    let cookie = h.login("alice", "alice-password").await;
    let done = h.user_decides(&cookie, &uc, true).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(done.text.contains("approved"));
    let t = h.device_token(&dc, &[], None).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    let c = claims(s(&t.json["access_token"]));
    assert_eq!(
        (c["sub"].as_str(), c["client_id"].as_str()),
        (Some("alice"), Some("tv"))
    );
    assert_eq!(t.json["scope"], "read");
    assert!(t.json["refresh_token"].is_string(), "tv may refresh");
    // Exactly once.
    assert_eq!(
        h.device_token(&dc, &[], None).await.error(),
        "invalid_grant"
    );
    // The user code is single-use too.
    let again = h
        .get_cookie(&format!("/device?user_code={uc}"), &cookie)
        .await;
    let csrf = input_value(&again.text, "csrf").unwrap();
    let r = h
        .post_page(
            "/device",
            &cookie,
            &[("csrf", &csrf), ("action", "lookup"), ("user_code", &uc)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn device_grant_denied_and_expired() {
    let h = h().await;
    let cookie = h.login("alice", "alice-password").await;
    let start = h.device_start(&[("scope", "read")]).await;
    let done = h
        .user_decides(&cookie, s(&start.json["user_code"]), false)
        .await;
    assert!(done.text.contains("denied"), "{}", done.text);
    let r = h
        .device_token(s(&start.json["device_code"]), &[], None)
        .await;
    assert_eq!(r.error(), "access_denied");

    let start = h.device_start(&[("scope", "read")]).await;
    h.advance(301);
    assert_eq!(
        h.device_token(s(&start.json["device_code"]), &[], None)
            .await
            .error(),
        "expired_token"
    );
    // And the user can no longer approve it.
    let page = h.get_cookie("/device", &cookie).await;
    let csrf = input_value(&page.text, "csrf").unwrap();
    let r = h
        .post_page(
            "/device",
            &cookie,
            &[
                ("csrf", &csrf),
                ("action", "approve"),
                ("user_code", s(&start.json["user_code"])),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn hint_requires_deferred_on_the_token_request() {
    let h = h().await;
    let start = h
        .device_start(&[("scope", "read"), ("completion_mode", "deferred")])
        .await;
    let dc = s(&start.json["device_code"]).to_owned();
    // DTR-5: the hint binds the token request, whatever the device state.
    let r = h.device_token(&dc, &[], None).await;
    assert_eq!(r.error(), "invalid_request", "{}", r.text);
    let r = h
        .device_token(&dc, &[("completion_mode", "other")], None)
        .await;
    assert_eq!(r.error(), "invalid_request");
    let r = h
        .device_token(&dc, &[("completion_mode", "deferred")], None)
        .await;
    assert_eq!(r.error(), "authorization_pending");
    assert!(r.json.get("deferral_code").is_none());
    // No hint is never a reason to refuse `deferred` (DTR-5).
    let start = h.device_start(&[("scope", "read")]).await;
    h.advance(5);
    let r = h
        .device_token(
            s(&start.json["device_code"]),
            &[("completion_mode", "deferred")],
            None,
        )
        .await;
    assert_eq!(r.error(), "authorization_pending");
    // Approved, policy allows: a token despite the hint (DTR-3).
    let cookie = h.login("alice", "alice-password").await;
    h.user_decides(&cookie, s(&start.json["user_code"]), true)
        .await;
    h.advance(5);
    let r = h
        .device_token(
            s(&start.json["device_code"]),
            &[("completion_mode", "deferred")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn approved_then_deferred_by_policy_then_redeemed() {
    let h = h().await;
    let key = DpopKey::new();
    let start = h
        .device_start(&[("scope", "read payments"), ("completion_mode", "deferred")])
        .await;
    let dc = s(&start.json["device_code"]).to_owned();
    let cookie = h.login("alice", "alice-password").await;
    h.user_decides(&cookie, s(&start.json["user_code"]), true)
        .await;

    // Policy reviews payments: without the opt-in never a token, and the
    // approval is kept (DTR-2).
    let fresh = h.device_start(&[("scope", "payments")]).await;
    h.user_decides(&cookie, s(&fresh.json["user_code"]), true)
        .await;
    let r = h
        .device_token(s(&fresh.json["device_code"]), &[], None)
        .await;
    assert_eq!(r.error(), "access_denied");
    // DTR-14: a public client is deferred only with a DPoP proof; the
    // approval is not spent by the refusal.
    let r = h
        .device_token(&dc, &[("completion_mode", "deferred")], None)
        .await;
    assert_eq!(r.error(), "invalid_dpop_proof", "{}", r.text);
    let r = h
        .device_token(
            &dc,
            &[("completion_mode", "deferred")],
            Some(&h.proof(&key, "/token")),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.error(), "authorization_pending");
    let deferral = s(&r.json["deferral_code"]).to_owned();
    assert!(!deferral.is_empty() && r.json["expires_in"] == 600 && r.json["interval"] == 5);
    // The device code is spent: its pending state is over, never mixed in.
    let r = h
        .device_token(
            &dc,
            &[("completion_mode", "deferred")],
            Some(&h.proof(&key, "/token")),
        )
        .await;
    assert_eq!(r.error(), "invalid_grant");

    let poll = |proof: String| {
        let h = &h;
        let deferral = deferral.clone();
        async move {
            let pairs = [
                ("client_id", "tv"),
                ("grant_type", POLL),
                ("deferral_code", deferral.as_str()),
            ];
            let req = Request::post("/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("DPoP", proof)
                .body(Body::from(form(&pairs)))
                .unwrap();
            h.send(req).await
        }
    };
    let r = poll(h.proof(&key, "/token")).await;
    assert_eq!(r.error(), "authorization_pending");
    assert!(r.json.get("deferral_code").is_none());
    let list = h.admin("GET", "/admin/deferrals?state=pending", None).await;
    assert_eq!(list.json[0]["grant_type"], DEVICE);
    assert_eq!(list.json[0]["subject"], "alice");
    let id = s(&list.json[0]["id"]).to_owned();
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.advance(5);
    let t = poll(h.proof(&key, "/token")).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    assert_eq!(t.json["token_type"], "DPoP");
    let c = claims(s(&t.json["access_token"]));
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["cnf"]["jkt"], key.jkt());
    assert_eq!(t.json["scope"], "payments read");
    h.advance(5);
    assert_eq!(poll(h.proof(&key, "/token")).await.error(), "invalid_grant");
}

#[tokio::test]
async fn deferred_device_grant_denied_when_the_user_is_gone() {
    let h = h().await;
    let cookie = h.login("bob", "bob-password").await;
    let r = h
        .post(
            "/token",
            TVC,
            &[("grant_type", DEVICE), ("device_code", "unknown")],
        )
        .await;
    assert_eq!(r.error(), "invalid_grant");
    // The confidential client may be deferred without DPoP.
    let start = h
        .post("/device_authorization", TVC, &[("scope", "payments")])
        .await;
    h.user_decides(&cookie, s(&start.json["user_code"]), true)
        .await;
    let r = h
        .post(
            "/token",
            TVC,
            &[
                ("grant_type", DEVICE),
                ("device_code", s(&start.json["device_code"])),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    let deferral = s(&r.json["deferral_code"]).to_owned();
    assert!(!deferral.is_empty(), "{}", r.text);
    // DTR-23: the user's session ends before the reviewer approves.
    let page = h.get_cookie("/device", &cookie).await;
    let csrf = input_value(&page.text, "csrf").unwrap();
    h.post_page("/logout", &cookie, &[("csrf", &csrf)]).await;
    let id = h.newest_id().await;
    h.admin(
        "POST",
        &format!("/admin/deferrals/{id}/approve"),
        Some(serde_json::json!({})),
    )
    .await;
    let r = h
        .post(
            "/token",
            TVC,
            &[("grant_type", POLL), ("deferral_code", &deferral)],
        )
        .await;
    assert_eq!(r.error(), "access_denied", "{}", r.text);
}

#[tokio::test]
async fn device_page_requires_login_csrf_and_limits_wrong_codes() {
    let h = h().await;
    // Not signed in: to the login page, coming back with the code.
    let r = h.get("/device?user_code=bcdf-ghjk").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let loc = r.headers.get(header::LOCATION).unwrap().to_str().unwrap();
    assert!(
        loc.starts_with("/login?return_to=%2Fdevice%3Fuser_code%3DBCDF-GHJK"),
        "{loc}"
    );
    let cookie = h.login("alice", "alice-password").await;
    // Whatever the query holds is never echoed as markup.
    let r = h
        .get_cookie(
            "/device?user_code=%3Cscript%3Ealert(1)%3C/script%3E",
            &cookie,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text.contains("<script>") && !r.text.contains("alert(1)"));
    let start = h.device_start(&[("scope", "read")]).await;
    let uc = s(&start.json["user_code"]).to_owned();
    // No CSRF token: refused, nothing decided.
    let r = h
        .post_page(
            "/device",
            &cookie,
            &[("action", "approve"), ("user_code", &uc)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let other = h.login("bob", "bob-password").await;
    let page = h.get_cookie("/device", &other).await;
    let bobs_csrf = input_value(&page.text, "csrf").unwrap();
    let r = h
        .post_page(
            "/device",
            &cookie,
            &[
                ("csrf", &bobs_csrf),
                ("action", "approve"),
                ("user_code", &uc),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "another session's token is no token"
    );
    assert_eq!(
        h.device_token(s(&start.json["device_code"]), &[], None)
            .await
            .error(),
        "authorization_pending"
    );
    // Lookup shows what is asked and the code to compare; opening it decides nothing.
    let page = h.get_cookie("/device", &cookie).await;
    let csrf = input_value(&page.text, "csrf").unwrap();
    let r = h
        .post_page(
            "/device",
            &cookie,
            &[
                ("csrf", &csrf),
                ("action", "lookup"),
                ("user_code", &uc.to_lowercase()),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains(&uc) && r.text.contains("tv") && r.text.contains("<code>read</code>"));
    h.advance(5);
    assert_eq!(
        h.device_token(s(&start.json["device_code"]), &[], None)
            .await
            .error(),
        "authorization_pending"
    );
    // Wrong codes: three per session, then nothing is looked up any more,
    // not even the right code.
    for (i, wrong) in ["BBBB-BBBB", "not a code", "CCCC-CCCC"].iter().enumerate() {
        let r = h
            .post_page(
                "/device",
                &cookie,
                &[("csrf", &csrf), ("action", "lookup"), ("user_code", wrong)],
            )
            .await;
        let expected = if i < 2 {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(r.status, expected, "attempt {i}");
    }
    let r = h
        .post_page(
            "/device",
            &cookie,
            &[("csrf", &csrf), ("action", "approve"), ("user_code", &uc)],
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // The limit is per user too: a fresh session of alice is still blocked.
    let fresh = h.login("alice", "alice-password").await;
    let p = h.get_cookie("/device", &fresh).await;
    let c2 = input_value(&p.text, "csrf").unwrap();
    let r = h
        .post_page(
            "/device",
            &fresh,
            &[("csrf", &c2), ("action", "lookup"), ("user_code", &uc)],
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Bob is not affected, and after the window alice may try again.
    let r = h
        .post_page(
            "/device",
            &other,
            &[
                ("csrf", &bobs_csrf),
                ("action", "lookup"),
                ("user_code", &uc),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    h.advance(900);
    let start = h.device_start(&[("scope", "read")]).await;
    let r = h
        .post_page(
            "/device",
            &fresh,
            &[
                ("csrf", &c2),
                ("action", "lookup"),
                ("user_code", s(&start.json["user_code"])),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

// ---------------------------------------------------------- token exchange

#[tokio::test]
async fn token_exchange_synchronous() {
    let h = h().await;
    let subject = h.svc_token("read write").await;
    let r = h
        .exchange(
            &subject,
            &[
                ("scope", "read"),
                ("audience", "billing"),
                ("requested_token_type", AT),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.no_store());
    assert_eq!(r.json["issued_token_type"], AT);
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["scope"], "read");
    let c = claims(s(&r.json["access_token"]));
    assert_eq!(
        (
            c["sub"].as_str(),
            c["client_id"].as_str(),
            c["aud"].as_str()
        ),
        (Some("svc"), Some("broker"), Some("billing"))
    );
    assert!(c.get("act").is_none());
    // Introspection knows the new token.
    let i = h
        .post(
            "/introspect",
            BROKER,
            &[("token", s(&r.json["access_token"]))],
        )
        .await;
    assert_eq!(i.json["active"], true);
    // No scope asked: the subject's scope, as far as the client may have it.
    let r = h.exchange(&subject, &[]).await;
    assert_eq!(r.json["scope"], "read write");
    // With an actor: the act claim names it (RFC 8693 section 4.1).
    let actor = h.svc_token("read").await;
    let r = h
        .exchange(
            &subject,
            &[
                ("actor_token", &actor),
                ("actor_token_type", AT),
                ("resource", "https://api.example/v1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let c = claims(s(&r.json["access_token"]));
    assert_eq!(
        c["act"],
        serde_json::json!({"sub": "svc", "client_id": "svc"})
    );
    assert_eq!(c["aud"], "https://api.example/v1");
    // A token made from another never outlives it.
    h.advance(1800);
    let r = h.exchange(&subject, &[]).await;
    assert!(r.json["expires_in"].as_u64().unwrap() <= 1800, "{}", r.text);
}

#[tokio::test]
async fn token_exchange_refusals() {
    let h = h().await;
    let subject = h.svc_token("read").await;
    // No expansion beyond the subject token.
    assert_eq!(
        h.exchange(&subject, &[("scope", "read write")])
            .await
            .error(),
        "invalid_scope"
    );
    // Other token types, malformed targets.
    let r = h
        .post(
            "/token",
            BROKER,
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", &subject),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                ),
            ],
        )
        .await;
    assert_eq!(r.error(), "invalid_request");
    let r = h
        .exchange(
            &subject,
            &[(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            )],
        )
        .await;
    assert_eq!(r.error(), "invalid_request");
    assert_eq!(
        h.exchange(&subject, &[("actor_token", &subject)])
            .await
            .error(),
        "invalid_request"
    );
    assert_eq!(
        h.exchange(&subject, &[("resource", "relative/path")])
            .await
            .error(),
        "invalid_target"
    );
    // Not our token, a forged one.
    assert_eq!(h.exchange("garbage", &[]).await.error(), "invalid_grant");
    let mut parts: Vec<String> = subject.split('.').map(str::to_owned).collect();
    parts[1].pop();
    assert_eq!(
        h.exchange(&parts.join("."), &[]).await.error(),
        "invalid_grant"
    );
    // A client without the grant.
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", &subject),
                ("subject_token_type", AT),
            ],
        )
        .await;
    assert_eq!(r.error(), "unauthorized_client");
    // Revoked and expired subject tokens.
    let revoked = h.svc_token("read").await;
    h.post("/revoke", SVC, &[("token", &revoked)]).await;
    assert_eq!(h.exchange(&revoked, &[]).await.error(), "invalid_grant");
    h.advance(3601);
    assert_eq!(h.exchange(&subject, &[]).await.error(), "invalid_grant");
}

#[tokio::test]
async fn dpop_bound_subject_needs_its_key() {
    let h = h().await;
    let key = DpopKey::new();
    let r = h
        .post_dpop(
            "/token",
            SVC,
            Some(&h.proof(&key, "/token")),
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    let bound = s(&r.json["access_token"]).to_owned();
    assert_eq!(h.exchange(&bound, &[]).await.error(), "invalid_grant");
    let pairs = [
        ("grant_type", EXCHANGE),
        ("subject_token", bound.as_str()),
        ("subject_token_type", AT),
    ];
    let r = h
        .post_dpop(
            "/token",
            BROKER,
            Some(&h.proof(&DpopKey::new(), "/token")),
            &pairs,
        )
        .await;
    assert_eq!(r.error(), "invalid_grant");
    let r = h
        .post_dpop("/token", BROKER, Some(&h.proof(&key, "/token")), &pairs)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "DPoP", "the binding carries over");
}

#[tokio::test]
async fn token_exchange_deferred_then_redeemed_with_issued_token_type() {
    let h = h().await;
    let subject = h.svc_token("read payments").await;
    // Policy reviews payments: without the opt-in refused (DTR-2).
    assert_eq!(
        h.exchange(&subject, &[("scope", "payments")]).await.error(),
        "access_denied"
    );
    let r = h
        .exchange(
            &subject,
            &[
                ("scope", "payments read"),
                ("audience", "ledger"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.error(), "authorization_pending");
    let code = s(&r.json["deferral_code"]).to_owned();
    let poll = || async {
        h.post(
            "/token",
            BROKER,
            &[("grant_type", POLL), ("deferral_code", code.as_str())],
        )
        .await
    };
    assert_eq!(poll().await.error(), "authorization_pending");
    let list = h.admin("GET", "/admin/deferrals?state=pending", None).await;
    assert_eq!(list.json[0]["grant_type"], EXCHANGE);
    assert_eq!(list.json[0]["subject"], "svc");
    let id = s(&list.json[0]["id"]).to_owned();
    // The reviewer narrows to payments (DTR-24).
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(serde_json::json!({"scope": "payments"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.advance(5);
    let t = poll().await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    // DTR-20: the originating grant's response, issued_token_type included.
    assert_eq!(t.json["issued_token_type"], AT);
    assert_eq!(t.json["scope"], "payments");
    let c = claims(s(&t.json["access_token"]));
    assert_eq!(
        (
            c["sub"].as_str(),
            c["client_id"].as_str(),
            c["aud"].as_str()
        ),
        (Some("svc"), Some("broker"), Some("ledger"))
    );
    h.advance(5);
    assert_eq!(poll().await.error(), "invalid_grant");
}

#[tokio::test]
async fn deferred_exchange_denied_when_subject_revoked() {
    let h = h().await;
    let subject = h.svc_token("payments").await;
    let r = h
        .exchange(&subject, &[("completion_mode", "deferred")])
        .await;
    let code = s(&r.json["deferral_code"]).to_owned();
    let id = h.newest_id().await;
    h.admin(
        "POST",
        &format!("/admin/deferrals/{id}/approve"),
        Some(serde_json::json!({})),
    )
    .await;
    // DTR-23: the subject token is revoked before the client collects.
    h.post("/revoke", SVC, &[("token", &subject)]).await;
    let r = h
        .post(
            "/token",
            BROKER,
            &[("grant_type", POLL), ("deferral_code", &code)],
        )
        .await;
    assert_eq!(r.error(), "access_denied", "{}", r.text);
    let d = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(d.json["state"], "denied");
    // And when it expires meanwhile (5 minutes left of its hour; the
    // deferral lives 10).
    let subject = h.svc_token("payments").await;
    h.advance(3300);
    let r = h
        .exchange(&subject, &[("completion_mode", "deferred")])
        .await;
    let code = s(&r.json["deferral_code"]).to_owned();
    let id = h.newest_id().await;
    h.admin(
        "POST",
        &format!("/admin/deferrals/{id}/approve"),
        Some(serde_json::json!({})),
    )
    .await;
    h.advance(301);
    let r = h
        .post(
            "/token",
            BROKER,
            &[("grant_type", POLL), ("deferral_code", &code)],
        )
        .await;
    assert_eq!(r.error(), "access_denied", "{}", r.text);
}
