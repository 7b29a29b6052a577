//! Security regressions: protocol.

use super::common::*;
use axum::http::StatusCode;
use serde_json::{json, Value};

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
    harness_with(&format!(
        r#"
issuer = "http://127.0.0.1:8080"
[[clients]]
client_id = "jwt-client"
token_endpoint_auth_method = "private_key_jwt"
scope = "read"
jwks = {{ keys = [ {{ {} }} ] }}
"#,
        jwk_toml.join(", ")
    ))
    .await
}

/// A client credentials request authenticated by an assertion of `claims`
/// over the defaults (`iss`, `sub`, a fresh `jti`, `iat` now, `exp` in a
/// minute, `aud` the token endpoint).
async fn token_with(h: &Harness, key: &DpopKey, jti: &str, claims: Value) -> Resp {
    let mut c = json!({"iss": "jwt-client", "sub": "jwt-client", "jti": jti,
        "aud": "http://127.0.0.1:8080/token", "iat": h.now_s(), "exp": h.now_s() + 60});
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    let assertion = key.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}), &c);
    h.post_raw(
        "/token",
        None,
        "application/x-www-form-urlencoded",
        form(&[
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
            ("grant_type", "client_credentials"),
            ("scope", "read"),
        ])
        .into_bytes(),
    )
    .await
}

#[tokio::test]
async fn private_key_jwt_refuses_an_audience_array_naming_another_party() {
    // RFC 7523 section 3 point 3: an assertion also addressed to someone
    // else (who could replay it here) is not for us.
    let key = DpopKey::new();
    let h = jwt_harness(&key).await;
    let r = token_with(
        &h,
        &key,
        "j1",
        json!({"aud": ["http://127.0.0.1:8080/token", "https://rp.example/token"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.error(), "invalid_client");

    // An array of only this server's identifiers is fine.
    let r = token_with(
        &h,
        &key,
        "j2",
        json!({"aud": ["http://127.0.0.1:8080", "http://127.0.0.1:8080/token"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn private_key_jwt_refuses_an_assertion_not_valid_yet() {
    // RFC 7519 section 4.1.5: not accepted before `nbf` (beyond the skew).
    let key = DpopKey::new();
    let h = jwt_harness(&key).await;
    let r = token_with(&h, &key, "j1", json!({"nbf": h.now_s() + 300})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.error(), "invalid_client");

    // The refusal spent nothing: once valid, a fresh assertion works.
    let r = token_with(&h, &key, "j2", json!({"nbf": h.now_s()})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
