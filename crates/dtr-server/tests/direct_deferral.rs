//! Deferral at the authorization endpoint: the redirect carries
//! `deferral_code`, `expires_in`, `interval`, `state` and `iss` instead of
//! `code` for a client that opted in (`deferred_authorization_endpoint`),
//! the first poll proves the PKCE verifier, `dpop_jkt` binds the code from
//! the start (RFC 9449 section 10), signed request objects (RFC 9101)
//! carry the request, and the pending states `interaction_pending` and
//! `deferred_interactive`. Driven through the router with a cookie jar and
//! a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::browser::*;
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;

const ISSUER: &str = "http://127.0.0.1:8080";

fn config(extra: &str) -> String {
    format!(
        r#"
issuer = "{ISSUER}"
[deferral]
expires_in = 600
interval = 5
{extra}
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "web"
client_secret = "web-secret-1"
grant_types = ["authorization_code", "refresh_token"]
scope = "openid read payments identity"
redirect_uris = ["https://app.example/cb", "https://app.example/other"]
deferred_authorization_endpoint = true
[[clients]]
client_id = "plain"
client_secret = "plain-secret-1"
grant_types = ["authorization_code"]
scope = "read payments"
redirect_uris = ["https://plain.example/cb"]
[[clients]]
client_id = "spa"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
scope = "read payments"
redirect_uris = ["https://spa.example/cb"]
deferred_authorization_endpoint = true
[[users]]
username = "alice"
password = "alice-password"
[[policy]]
scope_any = ["payments"]
action = "review"
[[policy]]
scope_any = ["identity"]
action = "interaction"
"#
    )
}

const WEB: (&str, &str) = ("web", "web-secret-1");

/// Runs the authorization request `path` as alice (sign-in and consent);
/// returns the parameters of the redirect back to the client.
async fn authorize(b: &mut Browser<'_>, path: &str) -> HashMap<String, String> {
    let r = b.get(path).await;
    let r = if r.status == StatusCode::SEE_OTHER && location(&r).starts_with("/login") {
        b.sign_in_from(r, "alice", "alice-password").await
    } else {
        r
    };
    if r.status == StatusCode::SEE_OTHER {
        return query_of(&location(&r));
    }
    b.consent(&r, "approve").await
}

async fn poll(h: &Harness, code: &str, extra: &[(&str, &str)]) -> Resp {
    poll_as(h, WEB, code, extra).await
}

async fn poll_as(h: &Harness, client: (&str, &str), code: &str, extra: &[(&str, &str)]) -> Resp {
    let mut pairs = vec![("grant_type", POLL), ("deferral_code", code)];
    pairs.extend_from_slice(extra);
    h.post("/token", client, &pairs).await
}

async fn direct(h: &Harness, b: &mut Browser<'_>, scope: &str) -> HashMap<String, String> {
    let q = authorize(
        b,
        &authorize_path(
            "web",
            &[
                ("redirect_uri", "https://app.example/cb"),
                ("scope", scope),
                ("completion_mode", "deferred"),
            ],
        ),
    )
    .await;
    let _ = h;
    q
}

#[tokio::test]
async fn the_redirect_carries_a_deferral_code_and_the_first_poll_proves_the_verifier() {
    let h = harness_with(&config("")).await;
    let mut b = Browser::new(&h);
    let q = direct(&h, &mut b, "payments").await;
    assert!(!q.contains_key("code"), "{q:?}");
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], ISSUER);
    assert_eq!(q["expires_in"], "600");
    assert_eq!(q["interval"], "5");
    let code = q["deferral_code"].clone();
    assert!(code.len() >= 22);
    // The first poll carries the verifier and the redirect URI the request
    // named; the deferral is pending.
    let r = poll(
        &h,
        &code,
        &[
            ("code_verifier", VERIFIER),
            ("redirect_uri", "https://app.example/cb"),
        ],
    )
    .await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    // Later polls need not (and must not) repeat it.
    h.clock.advance_secs(6);
    let r = poll(&h, &code, &[]).await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    let id = h.newest_id().await;
    let d = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(d.json["grant_type"], "authorization_code");
    assert_eq!(d.json["subject"], "alice");
    assert_eq!(d.json["deferred_at"], "authorization_endpoint");
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.clock.advance_secs(6);
    let r = poll(&h, &code, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The authorization code grant's own response (DTR-20): with its
    // refresh token.
    assert!(r.json["access_token"].is_string());
    assert!(r.json["refresh_token"].is_string());
    assert_eq!(r.json["scope"], "payments");
    h.clock.advance_secs(6);
    assert_eq!(poll(&h, &code, &[]).await.error(), "invalid_grant");
}

#[tokio::test]
async fn a_missing_wrong_or_replayed_verifier_kills_the_code() {
    let h = harness_with(&config("")).await;
    let mut b = Browser::new(&h);
    let redirect = ("redirect_uri", "https://app.example/cb");
    // Missing.
    let code = direct(&h, &mut b, "payments").await["deferral_code"].clone();
    let r = poll(&h, &code, &[redirect]).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);
    h.clock.advance_secs(6);
    let r = poll(&h, &code, &[("code_verifier", VERIFIER), redirect]).await;
    assert_eq!(r.error(), "access_denied", "the code is dead: {}", r.text);
    // Wrong.
    let code = direct(&h, &mut b, "payments").await["deferral_code"].clone();
    let wrong = "A".repeat(43);
    let r = poll(&h, &code, &[("code_verifier", &wrong), redirect]).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);
    h.clock.advance_secs(6);
    let r = poll(&h, &code, &[("code_verifier", VERIFIER), redirect]).await;
    assert_eq!(r.error(), "access_denied", "{}", r.text);
    // The redirect URI the request named is part of the proof.
    let code = direct(&h, &mut b, "payments").await["deferral_code"].clone();
    let r = poll(&h, &code, &[("code_verifier", VERIFIER)]).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);
    // Replayed on a later poll.
    let code = direct(&h, &mut b, "payments").await["deferral_code"].clone();
    let r = poll(&h, &code, &[("code_verifier", VERIFIER), redirect]).await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    h.clock.advance_secs(6);
    let r = poll(&h, &code, &[("code_verifier", VERIFIER), redirect]).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);
    let id = h.newest_id().await;
    let d = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(d.json["state"], "cancelled", "{}", d.text);
}

#[tokio::test]
async fn denied_and_cancelled_direct_deferrals() {
    let h = harness_with(&config("")).await;
    let mut b = Browser::new(&h);
    let proof = [
        ("code_verifier", VERIFIER),
        ("redirect_uri", "https://app.example/cb"),
    ];
    let code = direct(&h, &mut b, "payments").await["deferral_code"].clone();
    let id = h.newest_id().await;
    h.admin(
        "POST",
        &format!("/admin/deferrals/{id}/deny"),
        Some(json!({})),
    )
    .await;
    let r = poll(&h, &code, &proof).await;
    assert_eq!(r.error(), "access_denied", "{}", r.text);

    let code = direct(&h, &mut b, "payments").await["deferral_code"].clone();
    let r = h
        .post(
            "/revoke",
            WEB,
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
    let r = poll(&h, &code, &proof).await;
    assert_eq!(r.error(), "access_denied", "{}", r.text);
}

#[tokio::test]
async fn without_the_opt_in_or_a_deferring_policy_the_redirect_carries_a_code() {
    let h = harness_with(&config("")).await;
    let mut b = Browser::new(&h);
    // A client that did not opt in: the hint is remembered, the response
    // shape never changes (DTR-4).
    let q = authorize(
        &mut b,
        &authorize_path(
            "plain",
            &[("scope", "payments"), ("completion_mode", "deferred")],
        ),
    )
    .await;
    assert!(q.contains_key("code") && !q.contains_key("deferral_code"));
    let r = exchange_as(&h, ("plain", "plain-secret-1"), &q["code"], &[]).await;
    assert_eq!(r.error(), "invalid_request", "DTR-5: {}", r.text);
    // An opted-in client whose request policy does not defer.
    let q = direct(&h, &mut b, "read").await;
    assert!(q.contains_key("code") && !q.contains_key("deferral_code"));
    let r = exchange_as(
        &h,
        WEB,
        &q["code"],
        &[
            ("redirect_uri", "https://app.example/cb"),
            ("completion_mode", "deferred"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // An opted-in client without completion_mode=deferred: a code.
    let q = authorize(
        &mut b,
        &authorize_path("web", &[("redirect_uri", "https://app.example/cb")]),
    )
    .await;
    assert!(q.contains_key("code"));
}

async fn send_public(h: &Harness, proof: Option<String>, pairs: &[(&str, &str)]) -> Resp {
    let mut req =
        Request::post("/token").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    h.send(req.body(Body::from(form(pairs))).unwrap()).await
}

#[tokio::test]
async fn public_clients_need_dpop_jkt_and_the_code_is_bound_to_that_key() {
    let h = harness_with(&config("")).await;
    let mut b = Browser::new(&h);
    let q = authorize(
        &mut b,
        &authorize_path(
            "spa",
            &[("scope", "payments"), ("completion_mode", "deferred")],
        ),
    )
    .await;
    assert_eq!(q["error"], "invalid_request", "{q:?}");
    assert!(q["error_description"].contains("dpop_jkt"));
    assert_eq!(q["state"], "st-1");

    let key = DpopKey::new();
    let jkt = key.jkt();
    let q = authorize(
        &mut b,
        &authorize_path(
            "spa",
            &[
                ("scope", "payments"),
                ("completion_mode", "deferred"),
                ("dpop_jkt", &jkt),
            ],
        ),
    )
    .await;
    let code = q["deferral_code"].clone();
    let pairs = [
        ("grant_type", POLL),
        ("client_id", "spa"),
        ("deferral_code", code.as_str()),
        ("code_verifier", VERIFIER),
    ];
    // Without a proof, or with another key: refused before anything
    // else, and the code stays usable (DTR-13).
    let r = send_public(&h, None, &pairs).await;
    assert_eq!(r.error(), "invalid_dpop_proof", "{}", r.text);
    let other = DpopKey::new();
    let r = send_public(&h, Some(h.proof(&other, "/token")), &pairs).await;
    assert_eq!(r.error(), "invalid_dpop_proof", "{}", r.text);
    let r = send_public(&h, Some(h.proof(&key, "/token")), &pairs).await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    // Cancelling a bound code takes a proof of its key too.
    let revoke = [("client_id", "spa"), ("token", code.as_str())];
    let r = h
        .send(
            Request::post("/revoke")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form(&revoke)))
                .unwrap(),
        )
        .await;
    let id = h.newest_id().await;
    let d = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(d.json["state"], "pending", "{} / {}", r.text, d.text);
    let id = h.newest_id().await;
    h.admin(
        "POST",
        &format!("/admin/deferrals/{id}/approve"),
        Some(json!({})),
    )
    .await;
    h.clock.advance_secs(6);
    let pairs = [
        ("grant_type", POLL),
        ("client_id", "spa"),
        ("deferral_code", code.as_str()),
    ];
    let r = send_public(&h, Some(h.proof(&key, "/token")), &pairs).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "DPoP");
    assert!(r.json["refresh_token"].is_string());
}

#[tokio::test]
async fn a_code_bound_by_dpop_jkt_needs_that_key_at_the_token_endpoint() {
    let h = harness_with(&config("")).await;
    let mut b = Browser::new(&h);
    let key = DpopKey::new();
    let jkt = key.jkt();
    let q = authorize(
        &mut b,
        &authorize_path(
            "web",
            &[
                ("redirect_uri", "https://app.example/cb"),
                ("scope", "read"),
                ("dpop_jkt", &jkt),
            ],
        ),
    )
    .await;
    let code = q["code"].clone();
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", "https://app.example/cb"),
    ];
    let r = h.post("/token", WEB, &pairs).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);
    let other = DpopKey::new();
    let r = h
        .post_dpop("/token", WEB, Some(&h.proof(&other, "/token")), &pairs)
        .await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);
    let r = h
        .post_dpop("/token", WEB, Some(&h.proof(&key, "/token")), &pairs)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "DPoP");
    // A malformed dpop_jkt is refused on the redirect.
    let q = authorize(
        &mut b,
        &authorize_path(
            "web",
            &[
                ("redirect_uri", "https://app.example/cb"),
                ("dpop_jkt", "not a thumbprint"),
            ],
        ),
    )
    .await;
    assert_eq!(q["error"], "invalid_request");
}

#[tokio::test]
async fn form_post_delivers_the_deferral_in_a_self_submitting_form() {
    let h = harness_with(&config("")).await;
    let mut b = Browser::new(&h);
    let path = authorize_path(
        "web",
        &[
            ("redirect_uri", "https://app.example/cb"),
            ("scope", "payments"),
            ("completion_mode", "deferred"),
            ("response_mode", "form_post"),
        ],
    );
    let r = b.get(&path).await;
    let page = b.sign_in_from(r, "alice", "alice-password").await;
    let request = hidden(&page.text, "request");
    let csrf = hidden(&page.text, "csrf");
    let r = b
        .post(
            "/authorize/consent",
            &[
                ("request", &request),
                ("csrf", &csrf),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r
        .text
        .contains("<form method=\"post\" action=\"https://app.example/cb\">"));
    let code = hidden(&r.text, "deferral_code");
    assert_eq!(hidden(&r.text, "state"), "st-1");
    assert_eq!(hidden(&r.text, "iss"), ISSUER);
    assert_eq!(hidden(&r.text, "interval"), "5");
    assert!(!r.text.contains("name=\"code\""));
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("form-action https://app.example"), "{csp}");
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    let r = poll(
        &h,
        &code,
        &[
            ("code_verifier", VERIFIER),
            ("redirect_uri", "https://app.example/cb"),
        ],
    )
    .await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    // Unknown response modes are refused (fragment is not offered).
    let q = authorize(
        &mut b,
        &authorize_path(
            "web",
            &[
                ("redirect_uri", "https://app.example/cb"),
                ("response_mode", "fragment"),
            ],
        ),
    )
    .await;
    assert_eq!(q["error"], "invalid_request");
}

#[tokio::test]
async fn the_notification_token_never_rides_in_a_browser_url() {
    let h = harness_with(&config("")).await;
    let mut b = Browser::new(&h);
    let token = "nt-0123456789abcdefghijklmnop";
    let q = authorize(
        &mut b,
        &authorize_path(
            "web",
            &[
                ("redirect_uri", "https://app.example/cb"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
                ("client_notification_token", token),
            ],
        ),
    )
    .await;
    assert_eq!(q["error"], "invalid_request", "{q:?}");
    assert!(q["error_description"].contains("client_notification_token"));
    // Pushed (RFC 9126), it is accepted and reaches the deferral.
    let r = h
        .post(
            "/par",
            WEB,
            &[
                ("response_type", "code"),
                ("redirect_uri", "https://app.example/cb"),
                ("scope", "payments"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("state", "st-1"),
                ("completion_mode", "deferred"),
                ("client_notification_token", token),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let uri = r.json["request_uri"].as_str().unwrap().to_owned();
    let q = authorize(
        &mut b,
        &format!(
            "/authorize?{}",
            form(&[("client_id", "web"), ("request_uri", &uri)])
        ),
    )
    .await;
    assert!(q.contains_key("deferral_code"), "{q:?}");
}

#[tokio::test]
async fn polls_ignore_unknown_and_altering_parameters() {
    let h = harness_with(&config("")).await;
    let plain = ("plain", "plain-secret-1");
    let code = h.defer_as(plain, "payments").await;
    // RFC 6749 section 3.2: a trace id, or the session's scope that many
    // libraries append to every token request, changes nothing.
    let extra = [
        ("x_trace_id", "1"),
        ("scope", "read"),
        ("resource", "https://x"),
    ];
    let r = poll_as(&h, plain, &code, &extra).await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    let id = h.newest_id().await;
    h.admin(
        "POST",
        &format!("/admin/deferrals/{id}/approve"),
        Some(json!({})),
    )
    .await;
    h.clock.advance_secs(6);
    let r = poll_as(&h, plain, &code, &[("scope", "read")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["scope"], "payments",
        "the poll's scope never applies"
    );
    // DTR-6: completion_mode on a poll is still malformed.
    let code = h.defer_as(plain, "payments").await;
    let r = poll_as(&h, plain, &code, &[("completion_mode", "deferred")]).await;
    assert_eq!(r.error(), "invalid_request");
}

impl Harness {
    /// A deferral of `plain` made at the token endpoint (an authorization
    /// code exchange with the opt-in).
    async fn defer_as(&self, client: (&str, &str), scope: &str) -> String {
        assert_eq!(client.0, "plain");
        let mut b = Browser::new(self);
        let q = authorize(
            &mut b,
            &authorize_path(
                "plain",
                &[("scope", scope), ("completion_mode", "deferred")],
            ),
        )
        .await;
        let _ = client;
        let r = exchange_as(
            self,
            ("plain", "plain-secret-1"),
            &q["code"],
            &[("completion_mode", "deferred")],
        )
        .await;
        assert_eq!(r.error(), "authorization_pending", "{}", r.text);
        r.json["deferral_code"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn interaction_pending_once_the_user_opened_the_page() {
    let h = harness_with(&config("")).await;
    let mut b = Browser::new(&h);
    let q = direct(&h, &mut b, "identity").await;
    let code = q["deferral_code"].clone();
    let r = poll(
        &h,
        &code,
        &[
            ("code_verifier", VERIFIER),
            ("redirect_uri", "https://app.example/cb"),
        ],
    )
    .await;
    assert_eq!(r.error(), "interaction_required", "{}", r.text);
    let uri = r.json["interaction_uri"].as_str().unwrap().to_owned();
    let path = url::Url::parse(&uri).unwrap().path().to_owned();
    // Opening the page decides nothing, but the interaction has begun.
    let page = b.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    h.clock.advance_secs(6);
    let r = poll(&h, &code, &[]).await;
    assert_eq!(r.error(), "interaction_pending", "{}", r.text);
    assert_eq!(r.json["interaction_uri"], uri.as_str());
    let id = h.newest_id().await;
    let events = h
        .admin("GET", &format!("/admin/deferrals/{id}/events"), None)
        .await;
    assert!(
        events.text.contains("interaction_started"),
        "{}",
        events.text
    );
    let d = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert!(d.json["interaction_started_at"].is_string(), "{}", d.text);
    // The user approves on the page: the token follows.
    let csrf = hidden(&page.text, "csrf");
    let r = b
        .post(&path, &[("csrf", &csrf), ("decision", "approve")])
        .await;
    assert!(
        r.status.is_success() || r.status.is_redirection(),
        "{}",
        r.text
    );
    h.clock.advance_secs(6);
    let r = poll(&h, &code, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn deferred_interactive_gates_interaction_when_the_server_requires_it() {
    let h = harness_with(&config("require_interactive_opt_in = true")).await;
    let mut b = Browser::new(&h);
    let proof = [
        ("code_verifier", VERIFIER),
        ("redirect_uri", "https://app.example/cb"),
    ];
    // `deferred` alone: never sent to an interaction; reviewers decide.
    let code = direct(&h, &mut b, "identity").await["deferral_code"].clone();
    let r = poll(&h, &code, &proof).await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    assert!(r.json.get("interaction_uri").is_none());
    let id = h.newest_id().await;
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/interaction"),
            Some(json!({"required": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // `deferred_interactive`: interaction as before.
    let q = authorize(
        &mut b,
        &authorize_path(
            "web",
            &[
                ("redirect_uri", "https://app.example/cb"),
                ("scope", "identity"),
                ("completion_mode", "deferred_interactive"),
            ],
        ),
    )
    .await;
    let r = poll(&h, &q["deferral_code"], &proof).await;
    assert_eq!(r.error(), "interaction_required", "{}", r.text);
    assert!(r.json["interaction_uri"].is_string());

    // Without the server setting, `deferred` clients are sent to
    // interaction as they always were.
    let h = harness_with(&config("")).await;
    let mut b = Browser::new(&h);
    let code = direct(&h, &mut b, "identity").await["deferral_code"].clone();
    let r = poll(&h, &code, &proof).await;
    assert_eq!(r.error(), "interaction_required", "{}", r.text);
}

/// A client with keys for request objects, and its signing key.
fn jar_config(key: &DpopKey, require: bool) -> String {
    let jwk = &key.jwk;
    config("").replace(
        "[[users]]",
        &format!(
            r#"[[clients]]
client_id = "jar"
client_secret = "jar-secret-1"
grant_types = ["authorization_code"]
scope = "read payments"
redirect_uris = ["https://jar.example/cb"]
deferred_authorization_endpoint = true
require_signed_request_object = {require}
jwks = {{ keys = [ {{ kty = "EC", crv = "P-256", kid = "rk", x = "{x}", y = "{y}" }} ] }}
[[users]]"#,
            x = jwk["x"].as_str().unwrap(),
            y = jwk["y"].as_str().unwrap(),
        ),
    )
}

fn request_object(key: &DpopKey, h: &Harness, over: Value) -> String {
    let now = h.now_s();
    let mut claims = json!({
        "iss": "jar", "aud": ISSUER, "client_id": "jar", "exp": now + 60, "iat": now,
        "nbf": now, "jti": dtr_proto::secret::random_token(12),
        "response_type": "code", "redirect_uri": "https://jar.example/cb",
        "scope": "payments", "state": "st-jar", "code_challenge": CHALLENGE,
        "code_challenge_method": "S256", "completion_mode": "deferred",
    });
    for (k, v) in over.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    key.sign(
        &json!({"alg": "ES256", "typ": "oauth-authz-req+jwt", "kid": "rk"}),
        &claims,
    )
}

fn jar_path(jwt: &str) -> String {
    format!(
        "/authorize?{}",
        form(&[
            ("client_id", "jar"),
            ("redirect_uri", "https://jar.example/cb"),
            ("request", jwt),
        ])
    )
}

#[tokio::test]
async fn a_signed_request_object_carries_the_request() {
    let key = DpopKey::new();
    let h = harness_with(&jar_config(&key, true)).await;
    let mut b = Browser::new(&h);
    let bound = DpopKey::new();
    let jwt = request_object(
        &key,
        &h,
        json!({"dpop_jkt": bound.jkt(), "client_notification_token": "nt-0123456789abcdefghijklmnop",
               "authorization_details": [{"type": "payment_initiation", "amount": 5}]}),
    );
    let q = authorize(&mut b, &jar_path(&jwt)).await;
    assert_eq!(q["state"], "st-jar", "{q:?}");
    let code = q["deferral_code"].clone();
    let id = h.newest_id().await;
    let d = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(
        d.json["authorization_details"][0]["amount"], 5,
        "{}",
        d.text
    );
    // Bound to the key the request object named.
    let pairs = [
        ("grant_type", POLL),
        ("deferral_code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", "https://jar.example/cb"),
    ];
    let jar = ("jar", "jar-secret-1");
    let r = h.post("/token", jar, &pairs).await;
    assert_eq!(r.error(), "invalid_dpop_proof", "{}", r.text);
    let r = h
        .post_dpop("/token", jar, Some(&h.proof(&bound, "/token")), &pairs)
        .await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    // The same request object again: its jti was used.
    let q = authorize(&mut b, &jar_path(&jwt)).await;
    assert_eq!(q["error"], "invalid_request_object", "{q:?}");
    // Without a request object: refused for this client.
    let q = authorize(
        &mut b,
        &authorize_path("jar", &[("redirect_uri", "https://jar.example/cb")]),
    )
    .await;
    assert_eq!(q["error"], "invalid_request", "{q:?}");
    // Through PAR, the request object is the pushed request.
    let jwt = request_object(
        &key,
        &h,
        json!({"aud": format!("{ISSUER}/par"), "completion_mode": null, "scope": "read"}),
    );
    let r = h.post("/par", jar, &[("request", &jwt)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .post("/par", jar, &[("scope", "read"), ("response_type", "code")])
        .await;
    assert_eq!(r.error(), "invalid_request", "{}", r.text);
    let bad = request_object(&DpopKey::new(), &h, json!({}));
    let r = h.post("/par", jar, &[("request", &bad)]).await;
    assert_eq!(r.error(), "invalid_request_object", "{}", r.text);
}

#[tokio::test]
async fn every_request_object_failure_is_refused() {
    let key = DpopKey::new();
    let h = harness_with(&jar_config(&key, false)).await;
    let mut b = Browser::new(&h);
    let now = h.now_s();
    let cases = [
        (
            "signed by another key",
            request_object(&DpopKey::new(), &h, json!({})),
        ),
        ("iss", request_object(&key, &h, json!({"iss": "web"}))),
        (
            "client_id",
            request_object(&key, &h, json!({"client_id": "web"})),
        ),
        (
            "aud",
            request_object(&key, &h, json!({"aud": "https://other.example"})),
        ),
        ("exp", request_object(&key, &h, json!({"exp": now - 300}))),
        ("no exp", request_object(&key, &h, json!({"exp": null}))),
        ("nbf", request_object(&key, &h, json!({"nbf": now + 300}))),
        (
            "lifetime",
            request_object(&key, &h, json!({"exp": now + 7200})),
        ),
        ("no jti", request_object(&key, &h, json!({"jti": null}))),
    ];
    for (what, jwt) in cases {
        let q = authorize(&mut b, &jar_path(&jwt)).await;
        assert_eq!(q["error"], "invalid_request_object", "{what}: {q:?}");
    }
    // Unsigned (`alg: none`).
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(
            json!({"iss": "jar", "aud": ISSUER, "exp": now + 60, "jti": "n1",
                   "response_type": "code", "code_challenge": CHALLENGE,
                   "code_challenge_method": "S256"})
            .to_string()
        )
    );
    let q = authorize(&mut b, &jar_path(&none)).await;
    assert_eq!(q["error"], "invalid_request_object", "{q:?}");
    // A request_uri by reference to an arbitrary URL stays refused.
    let r = b
        .get(&format!(
            "/authorize?{}",
            form(&[
                ("client_id", "jar"),
                ("request_uri", "https://attacker.example/req.jwt")
            ])
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // A valid one still works for a client that does not require it.
    let q = authorize(&mut b, &jar_path(&request_object(&key, &h, json!({})))).await;
    assert!(q.contains_key("deferral_code"), "{q:?}");
}

#[tokio::test]
async fn metadata_advertises_the_new_capabilities() {
    let h = harness_with(&config("")).await;
    let m = h.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(m.json["deferred_authorization_endpoint_supported"], true);
    assert_eq!(m.json["request_parameter_supported"], true);
    assert_eq!(m.json["request_uri_parameter_supported"], false);
    let algs = m.json["request_object_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.iter().any(|a| a == "ES256"));
    assert!(!algs.iter().any(|a| a == "none" || a == "HS256"));
    assert_eq!(
        m.json["response_modes_supported"],
        json!(["query", "form_post"])
    );
}

#[tokio::test]
async fn an_openid_request_deferred_at_the_authorization_endpoint_gets_its_id_token() {
    let h = harness_with(&config("")).await;
    let mut b = Browser::new(&h);
    let q = authorize(
        &mut b,
        &authorize_path(
            "web",
            &[
                ("redirect_uri", "https://app.example/cb"),
                ("scope", "openid payments"),
                ("nonce", "n-0S6_WzA2Mj"),
                ("completion_mode", "deferred"),
            ],
        ),
    )
    .await;
    let code = q["deferral_code"].clone();
    let id = h.newest_id().await;
    h.admin(
        "POST",
        &format!("/admin/deferrals/{id}/approve"),
        Some(json!({})),
    )
    .await;
    let r = poll(
        &h,
        &code,
        &[
            ("code_verifier", VERIFIER),
            ("redirect_uri", "https://app.example/cb"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // OpenID Connect Core 1.0 section 3.1.3.3: the ID token of the code
    // flow, with the authorization request's nonce.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let id_token = r.json["id_token"].as_str().expect("an ID token");
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(payload["sub"], "alice");
    assert_eq!(payload["aud"], "web");
    assert!(payload["auth_time"].is_i64());
}
