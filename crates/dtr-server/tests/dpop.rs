//! DPoP at the token, revocation and demo resource endpoints (RFC 9449;
//! DTR-13, DTR-14, DTR-20, DTR-31), through `oneshot` with a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use serde_json::json;

const CC_DEFERRED: &[(&str, &str)] = &[
    ("grant_type", "client_credentials"),
    ("scope", "payments"),
    ("completion_mode", "deferred"),
];

async fn bound_deferral(h: &Harness, key: &DpopKey) -> String {
    let r = h
        .post_dpop("/token", SVC, Some(&h.proof(key, "/token")), CC_DEFERRED)
        .await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    r.json["deferral_code"].as_str().unwrap().to_owned()
}

async fn poll_with(h: &Harness, code: &str, proof: Option<&str>) -> Resp {
    h.post_dpop(
        "/token",
        SVC,
        proof,
        &[("grant_type", POLL), ("deferral_code", code)],
    )
    .await
}

#[tokio::test]
async fn metadata_lists_dpop_algorithms() {
    let h = harness().await;
    let m = h.get("/.well-known/oauth-authorization-server").await.json;
    let algs = m["dpop_signing_alg_values_supported"].as_array().unwrap();
    assert!(algs.contains(&json!("ES256")) && algs.contains(&json!("EdDSA")));
    assert!(!algs.contains(&json!("HS256")) && !algs.contains(&json!("none")));
}

#[tokio::test]
async fn synchronous_grant_with_dpop_is_bound() {
    let h = harness().await;
    let key = DpopKey::new();
    let r = h
        .post_dpop(
            "/token",
            SVC,
            Some(&h.proof(&key, "/token")),
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "DPoP");
    let token = r.json["access_token"].as_str().unwrap();
    let claims = h.state.signer.verify(token).unwrap();
    assert_eq!(claims["cnf"]["jkt"], key.jkt().as_str());
    let i = h.post("/introspect", SVC, &[("token", token)]).await;
    assert_eq!(i.json["token_type"], "DPoP");
    assert_eq!(i.json["cnf"]["jkt"], key.jkt().as_str());
}

#[tokio::test]
async fn bound_deferral_polls_need_the_same_key() {
    // DTR-13: every poll proves the key; failures change no state.
    let h = harness().await;
    let key = DpopKey::new();
    let other = DpopKey::new();
    let code = bound_deferral(&h, &key).await;
    let url = "http://127.0.0.1:8080/token";

    let refused = [
        ("no proof", None),
        ("another key", Some(h.proof(&other, "/token"))),
        (
            "wrong htm",
            Some(key.proof_with("GET", url, h.now_s(), json!(null))),
        ),
        (
            "wrong htu",
            Some(key.proof_with(
                "POST",
                "http://127.0.0.1:8080/revoke",
                h.now_s(),
                json!(null),
            )),
        ),
        (
            "stale iat",
            Some(key.proof_with("POST", url, h.now_s() - 3600, json!(null))),
        ),
        ("garbage", Some("not.a.proof".to_owned())),
    ];
    for (what, proof) in refused {
        let r = poll_with(&h, &code, proof.as_deref()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(r.error(), "invalid_dpop_proof", "{what}: {}", r.text);
        assert!(r.no_store(), "{what}");
    }
    // Replay: a proof accepted once is refused the second time.
    let proof = h.proof(&key, "/token");
    assert_eq!(
        poll_with(&h, &code, Some(&proof)).await.error(),
        "authorization_pending",
        "no refusal counted as a poll"
    );
    h.clock.advance_secs(6);
    assert_eq!(
        poll_with(&h, &code, Some(&proof)).await.error(),
        "invalid_dpop_proof",
        "replayed jti"
    );

    let id = h.newest_id().await;
    h.admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    assert_eq!(
        poll_with(&h, &code, None).await.error(),
        "invalid_dpop_proof",
        "approved but still bound"
    );
    let r = poll_with(&h, &code, Some(&h.proof(&key, "/token"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // DTR-20: the token is bound to the deferral's key.
    assert_eq!(r.json["token_type"], "DPoP");
    let claims = h
        .state
        .signer
        .verify(r.json["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims["cnf"]["jkt"], key.jkt().as_str());
}

#[tokio::test]
async fn foreign_and_unknown_codes_stay_invalid_grant_with_dpop() {
    // DTR-17 comes before DTR-13: the binding check never tells another
    // client that a code exists.
    let h = harness().await;
    let key = DpopKey::new();
    let code = bound_deferral(&h, &key).await;
    for proof in [None, Some(h.proof(&key, "/token"))] {
        let mut b = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(p) = &proof {
            b = b.header("DPoP", p.as_str());
        }
        let body = form(&[
            ("client_id", OTHER.0),
            ("client_secret", OTHER.1),
            ("grant_type", POLL),
            ("deferral_code", &code),
        ]);
        let r = h.send(b.body(Body::from(body)).unwrap()).await;
        assert_eq!(r.error(), "invalid_grant", "{}", r.text);
    }
    assert_eq!(
        poll_with(&h, "unknown-code-xxxxxxxxxxxxxxxx", None)
            .await
            .error(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn revocation_of_a_bound_code_needs_the_key() {
    // DTR-13, DTR-31: without the right proof nothing is cancelled.
    let h = harness().await;
    let key = DpopKey::new();
    let other = DpopKey::new();
    let code = bound_deferral(&h, &key).await;
    let r = h.post_dpop("/revoke", SVC, None, &[("token", &code)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "invalid_dpop_proof");
    let r = h
        .post_dpop(
            "/revoke",
            SVC,
            Some(&h.proof(&other, "/revoke")),
            &[("token", &code)],
        )
        .await;
    assert_eq!(r.error(), "invalid_dpop_proof");
    let r = h
        .post_dpop(
            "/revoke",
            SVC,
            Some(&h.proof(&key, "/token")),
            &[("token", &code)],
        )
        .await;
    assert_eq!(
        r.error(),
        "invalid_dpop_proof",
        "a proof for the token endpoint is not one for /revoke"
    );
    assert_eq!(
        poll_with(&h, &code, Some(&h.proof(&key, "/token")))
            .await
            .error(),
        "authorization_pending"
    );
    let r = h
        .post_dpop(
            "/revoke",
            SVC,
            Some(&h.proof(&key, "/revoke")),
            &[("token", &code)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.clock.advance_secs(6);
    assert_eq!(
        poll_with(&h, &code, Some(&h.proof(&key, "/token")))
            .await
            .error(),
        "access_denied"
    );
}

#[tokio::test]
async fn two_dpop_headers_are_refused() {
    let h = harness().await;
    let key = DpopKey::new();
    let req = Request::post("/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, basic(SVC))
        .header("DPoP", h.proof(&key, "/token"))
        .header("DPoP", h.proof(&key, "/token"))
        .body(Body::from(form(&[
            ("grant_type", "client_credentials"),
            ("scope", "read"),
        ])))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.error(), "invalid_dpop_proof");
}

const STRICT: &str = r#"
issuer = "http://127.0.0.1:8080"
[admin]
token = "test-admin-token-0123456789abcdefghij"
[dpop]
require_for_deferral = true
nonce = true
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments"
[[clients]]
client_id = "bound"
client_secret = "bound-secret"
scope = "read"
require_dpop = true
[[policy]]
scope_any = ["payments"]
action = "review"
"#;

#[tokio::test]
async fn require_dpop_and_require_for_deferral() {
    // DTR-14
    let h = harness_with(STRICT).await;
    let r = h
        .post(
            "/token",
            ("bound", "bound-secret"),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(r.error(), "invalid_dpop_proof");
    let r = h.post("/token", SVC, CC_DEFERRED).await;
    assert_eq!(
        r.error(),
        "invalid_dpop_proof",
        "no deferral without a proof"
    );
    assert_eq!(
        h.admin("GET", "/admin/deferrals", None).await.json,
        json!([]),
        "nothing was created"
    );
}

#[tokio::test]
async fn server_nonces() {
    // RFC 9449 section 8: use_dpop_nonce with a DPoP-Nonce header, then success.
    let h = harness_with(STRICT).await;
    let key = DpopKey::new();
    let r = h
        .post_dpop("/token", SVC, Some(&h.proof(&key, "/token")), CC_DEFERRED)
        .await;
    assert_eq!(r.error(), "use_dpop_nonce");
    let nonce = r
        .headers
        .get("dpop-nonce")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let bad = key.proof_with(
        "POST",
        "http://127.0.0.1:8080/token",
        h.now_s(),
        json!({"nonce": "forged"}),
    );
    assert_eq!(
        h.post_dpop("/token", SVC, Some(&bad), CC_DEFERRED)
            .await
            .error(),
        "use_dpop_nonce"
    );
    let good = key.proof_with(
        "POST",
        "http://127.0.0.1:8080/token",
        h.now_s(),
        json!({"nonce": nonce}),
    );
    let r = h.post_dpop("/token", SVC, Some(&good), CC_DEFERRED).await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    // The nonce stays valid for a while, then expires.
    h.clock.advance_secs(700);
    let late = key.proof_with(
        "POST",
        "http://127.0.0.1:8080/token",
        h.now_s(),
        json!({"nonce": nonce}),
    );
    assert_eq!(
        h.post_dpop("/token", SVC, Some(&late), CC_DEFERRED)
            .await
            .error(),
        "use_dpop_nonce"
    );
}

async fn get_resource(h: &Harness, auth: &str, proof: Option<&str>) -> Resp {
    let mut b = Request::get("/demo/resource").header(header::AUTHORIZATION, auth);
    if let Some(p) = proof {
        b = b.header("DPoP", p);
    }
    h.send(b.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn demo_resource_checks_the_binding() {
    let h = harness().await;
    let key = DpopKey::new();
    let code = bound_deferral(&h, &key).await;
    let id = h.newest_id().await;
    h.admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    let token = poll_with(&h, &code, Some(&h.proof(&key, "/token")))
        .await
        .json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = "http://127.0.0.1:8080/demo/resource";
    let ath = dtr_proto::dpop::access_token_hash(&token);

    let ok = key.proof_with("GET", url, h.now_s(), json!({"ath": ath}));
    let r = get_resource(&h, &format!("DPoP {token}"), Some(&ok)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "DPoP");

    let replay = get_resource(&h, &format!("DPoP {token}"), Some(&ok)).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "replayed proof");

    let bearer = get_resource(&h, &format!("Bearer {token}"), None).await;
    assert_eq!(
        bearer.status,
        StatusCode::UNAUTHORIZED,
        "a bound token is not a bearer token"
    );
    assert!(bearer
        .headers
        .get(header::WWW_AUTHENTICATE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("invalid_token"));

    let no_ath = key.proof_with("GET", url, h.now_s(), json!(null));
    assert_eq!(
        get_resource(&h, &format!("DPoP {token}"), Some(&no_ath))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let other = DpopKey::new().proof_with("GET", url, h.now_s(), json!({"ath": ath}));
    let r = get_resource(&h, &format!("DPoP {token}"), Some(&other)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r
        .headers
        .get(header::WWW_AUTHENTICATE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("invalid_dpop_proof"));

    // An unbound token works as a bearer token.
    let plain = h
        .post(
            "/token",
            SVC,
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    let plain = plain.json["access_token"].as_str().unwrap();
    assert_eq!(
        get_resource(&h, &format!("Bearer {plain}"), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get_resource(&h, "Bearer nonsense", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

// ---------------------------------------------------------- private_key_jwt

async fn jwt_harness(key: &DpopKey) -> Harness {
    let mut jwk = key.jwk.clone();
    jwk["kid"] = "k1".into();
    let jwk_toml: Vec<String> = jwk
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    let config = format!(
        r#"
issuer = "http://127.0.0.1:8080"
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "jwt-client"
token_endpoint_auth_method = "private_key_jwt"
scope = "read payments"
jwks = {{ keys = [ {{ {} }} ] }}
[[policy]]
scope_any = ["payments"]
action = "review"
"#,
        jwk_toml.join(", ")
    );
    harness_with(&config).await
}

fn assertion(h: &Harness, key: &DpopKey, aud: &str, jti: &str) -> String {
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
    let claims = json!({"iss": "jwt-client", "sub": "jwt-client", "aud": aud, "jti": jti,
        "iat": h.now_s(), "exp": h.now_s() + 60});
    key.sign(&header, &claims)
}

async fn post_assertion(h: &Harness, assertion: &str, extra: &[(&str, &str)]) -> Resp {
    let mut pairs = vec![
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    pairs.extend_from_slice(extra);
    h.post_raw(
        "/token",
        None,
        "application/x-www-form-urlencoded",
        form(&pairs).into_bytes(),
    )
    .await
}

#[tokio::test]
async fn private_key_jwt_authentication() {
    // RFC 7523 section 2.2 and 3.
    let key = DpopKey::new();
    let h = jwt_harness(&key).await;
    let cc = [("grant_type", "client_credentials"), ("scope", "read")];
    let a = assertion(&h, &key, "http://127.0.0.1:8080/token", "jti-1");
    let r = post_assertion(&h, &a, &cc).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let replay = post_assertion(&h, &a, &cc).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "jti is single-use");
    assert_eq!(replay.error(), "invalid_client");

    let issuer_aud = assertion(&h, &key, "http://127.0.0.1:8080", "jti-2");
    assert_eq!(
        post_assertion(&h, &issuer_aud, &cc).await.status,
        StatusCode::OK,
        "the issuer is an accepted audience"
    );

    let wrong_aud = assertion(&h, &key, "https://elsewhere.example/token", "jti-3");
    assert_eq!(
        post_assertion(&h, &wrong_aud, &cc).await.status,
        StatusCode::UNAUTHORIZED
    );

    let other = DpopKey::new();
    let forged = assertion(&h, &other, "http://127.0.0.1:8080/token", "jti-4");
    assert_eq!(
        post_assertion(&h, &forged, &cc).await.status,
        StatusCode::UNAUTHORIZED
    );

    let mixed = assertion(&h, &key, "http://127.0.0.1:8080/token", "jti-5");
    let r = post_assertion(&h, &mixed, &[cc[0], cc[1], ("client_secret", "x")]).await;
    assert_eq!(r.error(), "invalid_request", "two authentication methods");

    // DTR-14: strong client authentication may be deferred without DPoP.
    let d = assertion(&h, &key, "http://127.0.0.1:8080/token", "jti-6");
    let r = post_assertion(
        &h,
        &d,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "payments"),
            ("completion_mode", "deferred"),
        ],
    )
    .await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    let meta = h.get("/.well-known/oauth-authorization-server").await.json;
    assert!(meta["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("private_key_jwt")));
}

#[tokio::test]
async fn private_key_jwt_with_keys_at_a_jwks_uri() {
    // RFC 7591 `jwks_uri`: the keys are fetched through the SSRF-safe client
    // (loopback http only because of dev_mode) and cached.
    let key = DpopKey::new();
    let mut jwk = key.jwk.clone();
    jwk["kid"] = "k1".into();
    let jwks = json!({ "keys": [jwk] });
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { axum::Json(jwks) }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let config = format!(
        r#"
issuer = "http://127.0.0.1:8080"
dev_mode = true
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "jwt-client"
token_endpoint_auth_method = "private_key_jwt"
scope = "read"
jwks_uri = "http://{addr}/jwks.json"
"#
    );
    let h = harness_with(&config).await;
    let cc = [("grant_type", "client_credentials"), ("scope", "read")];
    for jti in ["u-1", "u-2"] {
        let a = assertion(&h, &key, "http://127.0.0.1:8080/token", jti);
        let r = post_assertion(&h, &a, &cc).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "fetched once, then cached"
    );
    let forged = assertion(&h, &DpopKey::new(), "http://127.0.0.1:8080/token", "u-3");
    assert_eq!(
        post_assertion(&h, &forged, &cc).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Both at once is a configuration error naming the key.
    let both = format!("{config}jwks = {{ keys = [] }}\n");
    let e = dtr_server::config::ConfigFile::parse(&both)
        .unwrap()
        .validate(&dtr_server::config::Overrides::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("jwks_uri"), "{e}");
}
