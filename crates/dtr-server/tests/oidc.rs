//! OpenID Connect Core 1.0 through the router: discovery, ID tokens of the
//! code flow verified with the published JWKS (RS256 and ES256), `nonce`,
//! `auth_time`, `at_hash`, the ID token of a refresh (section 12.2) and of
//! a deferred code flow, `prompt`, `max_age`, `login_hint`,
//! `id_token_hint`, and UserInfo with Bearer and DPoP tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::browser::*;
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

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
scope = "openid profile email read payments"
redirect_uris = ["https://app.example/cb"]
[[clients]]
client_id = "ec"
client_secret = "ec-secret-1"
grant_types = ["authorization_code"]
scope = "openid read"
redirect_uris = ["https://ec.example/cb"]
id_token_signed_response_alg = "ES256"
[[clients]]
client_id = "spa"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code"]
scope = "openid profile"
redirect_uris = ["https://spa.example/cb"]
[[clients]]
client_id = "plain"
client_secret = "plain-secret"
grant_types = ["authorization_code"]
scope = "read"
redirect_uris = ["https://plain.example/cb"]
[[users]]
username = "alice"
password = "alice-password"
name = "Alice Example"
given_name = "Alice"
email = "alice@example.com"
email_verified = true
phone_number = "+15550100"
[[users]]
username = "bob"
password = "bob-password"
[[policy]]
scope_any = ["payments"]
action = "review"
"#;

const WEB: (&str, &str) = ("web", "web-secret-1");
const EC: (&str, &str) = ("ec", "ec-secret-1");
const ISS: &str = "http://127.0.0.1:8080";

/// Verifies an ID token with the key of its `kid` in the published JWKS
/// (as a relying party does, Core 1.0 section 3.1.3.7) and returns its
/// header and claims.
async fn verify_id_token(h: &Harness, token: &str, aud: &str) -> (Value, Value) {
    let jwks = h.get("/jwks.json").await.json;
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.clone().unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"))
        .clone();
    let key = match header.alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap(),
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::DecodingKey::from_ec_components(
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap(),
        )
        .unwrap(),
        other => panic!("unexpected alg {other:?}"),
    };
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[ISS]);
    // The manual clock starts in the past of the real one.
    v.validate_exp = false;
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    (serde_json::to_value(&header).unwrap(), data.claims)
}

fn at_hash(at: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(at.as_bytes())[..16])
}

#[tokio::test]
async fn discovery_at_both_paths_with_the_oidc_members() {
    let h = harness_with(CFG).await;
    let oidc = h.get("/.well-known/openid-configuration").await;
    assert_eq!(oidc.status, StatusCode::OK);
    let oauth = h.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(oidc.json, oauth.json, "one document at both paths");
    let m = &oidc.json;
    assert_eq!(m["issuer"], ISS);
    assert_eq!(m["userinfo_endpoint"], format!("{ISS}/userinfo"));
    assert_eq!(m["jwks_uri"], format!("{ISS}/jwks.json"));
    assert_eq!(m["subject_types_supported"], json!(["public"]));
    assert_eq!(
        m["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256"])
    );
    assert!(m["claims_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("email")));
    assert!(m["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("openid")));
    let jwks = h.get("/jwks.json").await.json;
    let ktys: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kty"].as_str().unwrap())
        .collect();
    assert_eq!(ktys, ["EC", "RSA"]);
    // The RSA key is made once and kept: the same on every read.
    assert_eq!(h.get("/jwks.json").await.json, jwks);
}

#[tokio::test]
async fn code_flow_id_token_rs256_with_nonce_auth_time_and_at_hash() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let signed_in_at = h.now_s();
    let code = code_for(
        &mut b,
        "web",
        &[("scope", "openid profile read"), ("nonce", "n-0S6_WzA2Mj")],
    )
    .await;
    let r = exchange_as(&h, WEB, &code, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let at = r.json["access_token"].as_str().unwrap();
    let id = r.json["id_token"].as_str().unwrap();
    let (hdr, c) = verify_id_token(&h, id, "web").await;
    assert_eq!(hdr["alg"], "RS256");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "web");
    assert_eq!(c["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(c["auth_time"], signed_in_at);
    assert_eq!(c["at_hash"], at_hash(at));
    assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());

    // Section 12.2: the refresh's ID token keeps auth_time, sub, aud and
    // carries no nonce.
    h.clock.advance_ms(30_000);
    let rt = r.json["refresh_token"].as_str().unwrap();
    let r2 = h
        .post(
            "/token",
            WEB,
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
        .await;
    assert_eq!(r2.status, StatusCode::OK, "{}", r2.text);
    let (_, c2) = verify_id_token(&h, r2.json["id_token"].as_str().unwrap(), "web").await;
    assert_eq!(c2["sub"], "alice");
    assert_eq!(c2["auth_time"], signed_in_at);
    assert!(c2.get("nonce").is_none());
    assert_eq!(
        c2["at_hash"],
        at_hash(r2.json["access_token"].as_str().unwrap())
    );
    assert!(c2["iat"].as_i64().unwrap() > c["iat"].as_i64().unwrap());
}

#[tokio::test]
async fn es256_per_client_and_no_id_token_without_openid() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "ec", &[("scope", "openid read")]).await;
    let r = exchange_as(&h, EC, &code, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.json["id_token"].as_str().unwrap();
    let (hdr, c) = verify_id_token(&h, id, "ec").await;
    assert_eq!(hdr["alg"], "ES256");
    assert_eq!(c["aud"], "ec");
    // An ID token is no access token: introspection and the resource
    // refuse it.
    let intro = h.post("/introspect", EC, &[("token", id)]).await;
    assert_eq!(intro.json["active"], false);

    let code = code_for(&mut b, "web", &[("scope", "read")]).await;
    let r = exchange_as(&h, WEB, &code, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json.get("id_token").is_none(), "{}", r.text);
}

#[tokio::test]
async fn deferred_code_flow_issues_the_id_token_on_redemption() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(
        &mut b,
        "web",
        &[
            ("scope", "openid payments"),
            ("nonce", "later"),
            ("completion_mode", "deferred"),
        ],
    )
    .await;
    let r = exchange_as(&h, WEB, &code, &[("completion_mode", "deferred")]).await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    let dc = r.json["deferral_code"].as_str().unwrap().to_owned();
    let id = h.newest_id().await;
    let a = h
        .admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    h.clock.advance_ms(6_000);
    let done = h
        .post(
            "/token",
            WEB,
            &[("grant_type", POLL), ("deferral_code", &dc)],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let (_, c) = verify_id_token(&h, done.json["id_token"].as_str().unwrap(), "web").await;
    assert_eq!(c["nonce"], "later");
    assert_eq!(
        c["at_hash"],
        at_hash(done.json["access_token"].as_str().unwrap())
    );
}

#[tokio::test]
async fn prompt_none_login_and_consent() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    // Not signed in: login_required, redirected to the client.
    let r = b
        .get(&authorize_path(
            "web",
            &[("scope", "openid"), ("prompt", "none")],
        ))
        .await;
    let q = query_of(&location(&r));
    assert_eq!(q["error"], "login_required", "{q:?}");
    assert_eq!(q["state"], "st-1");
    // Signed in but no consent yet: consent_required.
    let code = code_for(&mut b, "web", &[("scope", "openid read")]).await;
    assert!(!code.is_empty());
    let r = b
        .get(&authorize_path(
            "web",
            &[("scope", "openid profile"), ("prompt", "none")],
        ))
        .await;
    assert_eq!(query_of(&location(&r))["error"], "consent_required");
    // Within the consent: a code without any page.
    let r = b
        .get(&authorize_path(
            "web",
            &[("scope", "openid read"), ("prompt", "none")],
        ))
        .await;
    assert!(query_of(&location(&r)).contains_key("code"), "{}", r.text);
    // prompt=consent asks although consent covers the request.
    let r = b
        .get(&authorize_path(
            "web",
            &[("scope", "openid read"), ("prompt", "consent")],
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("Allow access?"));
    // Malformed values are invalid_request.
    let r = b
        .get(&authorize_path(
            "web",
            &[("scope", "openid"), ("prompt", "none login")],
        ))
        .await;
    assert_eq!(query_of(&location(&r))["error"], "invalid_request");
}

#[tokio::test]
async fn prompt_login_and_max_age_ask_for_a_fresh_login_once() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "openid read")]).await;
    let first = exchange_as(&h, WEB, &code, &[]).await;
    let (_, c1) = verify_id_token(&h, first.json["id_token"].as_str().unwrap(), "web").await;

    h.clock.advance_ms(120_000);
    for extra in [("prompt", "login"), ("max_age", "60")] {
        let r = b
            .get(&authorize_path("web", &[("scope", "openid read"), extra]))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let loc = location(&r);
        assert!(loc.starts_with("/login?"), "{extra:?}: {loc}");
        // The login form is shown although alice is signed in.
        let back = b.sign_in_from(r, "alice", "alice-password").await;
        let q = query_of(&location(&back));
        let code = q
            .get("code")
            .unwrap_or_else(|| panic!("{extra:?}: {q:?}"))
            .clone();
        let r = exchange_as(&h, WEB, &code, &[]).await;
        let (_, c) = verify_id_token(&h, r.json["id_token"].as_str().unwrap(), "web").await;
        assert!(
            c["auth_time"].as_i64().unwrap() > c1["auth_time"].as_i64().unwrap(),
            "{extra:?}: a new authentication"
        );
        h.clock.advance_ms(120_000);
    }
    // A generous max_age needs no new login.
    let r = b
        .get(&authorize_path(
            "web",
            &[("scope", "openid read"), ("max_age", "86400")],
        ))
        .await;
    assert!(query_of(&location(&r)).contains_key("code"));
}

#[tokio::test]
async fn login_hint_and_id_token_hint() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "openid read")]).await;
    let r = exchange_as(&h, WEB, &code, &[]).await;
    let alice_id = r.json["id_token"].as_str().unwrap().to_owned();
    // The hint names the signed-in user: no page.
    let r = b
        .get(&authorize_path(
            "web",
            &[
                ("scope", "openid read"),
                ("id_token_hint", &alice_id),
                ("prompt", "none"),
            ],
        ))
        .await;
    assert!(query_of(&location(&r)).contains_key("code"), "{}", r.text);
    // Someone else: login_required without a page, the login form with.
    let r = b
        .get(&authorize_path(
            "web",
            &[
                ("scope", "openid read"),
                ("login_hint", "bob"),
                ("prompt", "none"),
            ],
        ))
        .await;
    assert_eq!(query_of(&location(&r))["error"], "login_required");
    let r = b
        .get(&authorize_path(
            "web",
            &[("scope", "openid read"), ("login_hint", "bob")],
        ))
        .await;
    assert!(location(&r).starts_with("/login?"));
    // A hint that is not our ID token for this client: invalid_request.
    let mut forged: Vec<&str> = alice_id.split('.').collect();
    let body = URL_SAFE_NO_PAD.encode(json!({"iss": ISS, "sub": "bob", "aud": "web"}).to_string());
    forged[1] = &body;
    for bad in [forged.join("."), "not-a-jwt".to_owned()] {
        let r = b
            .get(&authorize_path(
                "web",
                &[("scope", "openid read"), ("id_token_hint", &bad)],
            ))
            .await;
        assert_eq!(query_of(&location(&r))["error"], "invalid_request");
    }
    // Issued to another client: not a hint for this one.
    let mut b2 = Browser::new(&h);
    let code = code_for(&mut b2, "ec", &[("scope", "openid read")]).await;
    let ec_id = exchange_as(&h, EC, &code, &[]).await.json["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = b
        .get(&authorize_path(
            "web",
            &[("scope", "openid read"), ("id_token_hint", &ec_id)],
        ))
        .await;
    assert_eq!(query_of(&location(&r))["error"], "invalid_request");
}

async fn userinfo(h: &Harness, auth: &str, dpop: Option<&str>) -> Resp {
    let mut b = Request::get("/userinfo").header(header::AUTHORIZATION, auth);
    if let Some(p) = dpop {
        b = b.header("DPoP", p);
    }
    h.send(b.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn userinfo_with_bearer_releases_the_claims_of_the_scope() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "openid profile read")]).await;
    let r = exchange_as(&h, WEB, &code, &[]).await;
    let at = r.json["access_token"].as_str().unwrap();
    let u = userinfo(&h, &format!("Bearer {at}"), None).await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.text);
    assert_eq!(u.json["sub"], "alice");
    assert_eq!(u.json["name"], "Alice Example");
    assert_eq!(u.json["given_name"], "Alice");
    assert_eq!(u.json["preferred_username"], "alice");
    assert!(u.json.get("email").is_none(), "email scope not granted");
    assert!(u.no_store());
    // POST works too (section 5.3.1).
    let p = h
        .send(
            Request::post("/userinfo")
                .header(header::AUTHORIZATION, format!("Bearer {at}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(p.json["sub"], "alice");

    // RFC 6750 section 3.1 errors.
    let none = h.get("/userinfo").await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.headers[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("Bearer"));
    let bad = userinfo(&h, "Bearer nope", None).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.headers[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("Bearer error=\"invalid_token\""));
    // A token without openid: 403 insufficient_scope.
    let code = code_for(&mut b, "web", &[("scope", "read")]).await;
    let plain = exchange_as(&h, WEB, &code, &[]).await;
    let u = userinfo(
        &h,
        &format!("Bearer {}", plain.json["access_token"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(u.status, StatusCode::FORBIDDEN);
    assert_eq!(u.json["error"], "insufficient_scope");
    // A revoked token: invalid_token.
    h.post("/revoke", WEB, &[("token", at)]).await;
    let u = userinfo(&h, &format!("Bearer {at}"), None).await;
    assert_eq!(u.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn userinfo_with_a_dpop_bound_token() {
    let h = harness_with(CFG).await;
    let key = DpopKey::new();
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "spa", &[("scope", "openid profile")]).await;
    let proof = h.proof(&key, "/token");
    let r = h
        .send(
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("DPoP", proof)
                .body(Body::from(form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("code_verifier", VERIFIER),
                    ("client_id", "spa"),
                ])))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "DPoP");
    let at = r.json["access_token"].as_str().unwrap();
    let url = format!("{ISS}/userinfo");
    let ath = dtr_proto::dpop::access_token_hash(at);
    let good = key.proof_with("GET", &url, h.now_s(), json!({"ath": ath}));
    let u = userinfo(&h, &format!("DPoP {at}"), Some(&good)).await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.text);
    assert_eq!(u.json["sub"], "alice");
    // The same proof again: replay refused.
    let u = userinfo(&h, &format!("DPoP {at}"), Some(&good)).await;
    assert_eq!(u.status, StatusCode::UNAUTHORIZED);
    assert_eq!(u.json["error"], "invalid_dpop_proof");
    // As a Bearer token (RFC 9449 section 7.2), or with another key: refused.
    let u = userinfo(&h, &format!("Bearer {at}"), None).await;
    assert_eq!(u.status, StatusCode::UNAUTHORIZED);
    let other = DpopKey::new().proof_with("GET", &url, h.now_s(), json!({"ath": ath}));
    let u = userinfo(&h, &format!("DPoP {at}"), Some(&other)).await;
    assert_eq!(u.status, StatusCode::UNAUTHORIZED);
    assert!(u.headers[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("DPoP"));
}
