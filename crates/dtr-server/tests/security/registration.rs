//! Security regressions: registration (RFC 7591), the redirect URIs a
//! client may have (RFC 9700 section 4.1, RFC 8252 sections 7.1 and 7.3),
//! and the secrets registration generates.

use super::common::*;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use dtr_server::config::{ConfigFile, Overrides};
use serde_json::{json, Value};

async fn register(h: &Harness, doc: &Value) -> Resp {
    register_raw(h, doc.to_string(), None).await
}

async fn register_raw(h: &Harness, body: String, bearer: Option<&str>) -> Resp {
    let mut b = Request::post("/register").header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    h.send(b.body(Body::from(body)).unwrap()).await
}

/// Registration opened by the operator for `scope` and `grant_types`.
fn open(scope: &str, grant_types: &str) -> String {
    format!(
        "{CONFIG}\n[registration]\nenabled = true\nopen = true\nscope = \"{scope}\"\n\
         grant_types = {grant_types}\n"
    )
}

async fn client_count(h: &Harness) -> usize {
    h.state.store.list_clients().await.unwrap().len()
}

#[tokio::test]
async fn registration_is_off_by_default() {
    // The issue: `POST /register {}` with the default config returned a
    // client with every configured scope.
    let h = harness_with(CONFIG).await;
    let r = register(&h, &json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.error(), "access_denied");
    assert!(r.json["error_description"].is_string());
    assert_eq!(client_count(&h).await, 2, "nothing was registered");
    let meta = h.get("/.well-known/oauth-authorization-server").await.json;
    assert!(meta.get("registration_endpoint").is_none());
}

#[tokio::test]
async fn enabled_registration_needs_an_initial_access_token_unless_open() {
    // Never open by accident: `enabled = true` alone does not start.
    let e = ConfigFile::parse(&format!("{CONFIG}\n[registration]\nenabled = true\n"))
        .unwrap()
        .validate(&Overrides::default())
        .expect_err("enabled without a token nor open = true must not start");
    assert!(e.0.contains("registration.initial_access_token"), "{}", e.0);

    let token = "initial-access-token-0123456789";
    let h = harness_with(&format!(
        "{CONFIG}\n[registration]\nenabled = true\ninitial_access_token = \"{token}\"\n\
         scope = \"read\"\ngrant_types = [\"client_credentials\"]\n"
    ))
    .await;
    let doc = json!({"grant_types": ["client_credentials"]}).to_string();
    for bearer in [None, Some("wrong-token-0123456789abcdef")] {
        let r = register_raw(&h, doc.clone(), bearer).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bearer:?}: {}", r.text);
        assert_eq!(r.error(), "invalid_token");
    }
    assert_eq!(client_count(&h).await, 2);
    let r = register_raw(&h, doc, Some(token)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn a_registered_client_gets_only_what_the_operator_allows() {
    let h = harness_with(&open("read", r#"["client_credentials"]"#)).await;
    // No `scope` member: the client gets `registration.scope`, not the
    // union of every configured client's scopes.
    let r = register(&h, &json!({"grant_types": ["client_credentials"]})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["scope"], "read");
    let me = (
        r.json["client_id"].as_str().unwrap().to_owned(),
        r.json["client_secret"].as_str().unwrap().to_owned(),
    );
    let me = (me.0.as_str(), me.1.as_str());
    let t = h
        .post("/token", me, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    assert_eq!(t.json["scope"], "read");
    let t = h
        .post(
            "/token",
            me,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "read write"),
            ],
        )
        .await;
    assert_eq!(t.error(), "invalid_scope", "{}", t.text);

    // Asking for more is refused, and registers nothing.
    let before = client_count(&h).await;
    for doc in [
        json!({"grant_types": ["client_credentials"], "scope": "read write"}),
        json!({"grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"]}),
        json!({"grant_types": ["client_credentials", "refresh_token"]}),
        // Omitted means authorization_code (RFC 7591 section 2), not allowed here.
        json!({}),
    ] {
        let r = register(&h, &doc).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{doc}: {}", r.text);
        assert_eq!(r.error(), "invalid_client_metadata", "{doc}");
    }
    assert_eq!(client_count(&h).await, before);

    // The default allows nothing: no scope, and no grant but polling.
    let h = harness_with(&format!(
        "{CONFIG}\n[registration]\nenabled = true\nopen = true\n"
    ))
    .await;
    for doc in [
        json!({"grant_types": ["client_credentials"]}),
        json!({"grant_types": ["urn:ietf:params:oauth:grant-type:deferred"]}),
        json!({"grant_types": ["client_credentials"], "scope": "read"}),
    ] {
        let r = register(&h, &doc).await;
        assert_eq!(r.error(), "invalid_client_metadata", "{doc}: {}", r.text);
    }
}

#[tokio::test]
async fn registration_documents_and_their_arrays_are_capped() {
    let h = harness_with(&open("read", r#"["authorization_code"]"#)).await;
    let before = client_count(&h).await;
    let big = json!({"client_name": "x".repeat(17 * 1024)});
    let r = register(&h, &big).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.error(), "invalid_client_metadata");
    assert!(r.json["error_description"]
        .as_str()
        .unwrap()
        .contains("larger than"));

    let uris: Vec<String> = (0..17)
        .map(|i| format!("https://app.example/cb{i}"))
        .collect();
    let r = register(&h, &json!({"redirect_uris": uris})).await;
    assert_eq!(r.error(), "invalid_redirect_uri", "{}", r.text);
    let contacts: Vec<String> = (0..9).map(|i| format!("ops{i}@app.example")).collect();
    let r = register(
        &h,
        &json!({"redirect_uris": ["https://app.example/cb"], "contacts": contacts}),
    )
    .await;
    assert_eq!(r.error(), "invalid_client_metadata", "{}", r.text);
    let key = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
    let r = register(
        &h,
        &json!({
            "redirect_uris": ["https://app.example/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": vec![key; 9]},
        }),
    )
    .await;
    assert_eq!(r.error(), "invalid_client_metadata", "{}", r.text);
    assert_eq!(client_count(&h).await, before, "nothing was registered");
}

#[tokio::test]
async fn dangerous_redirect_uris_are_refused_at_registration() {
    // Many documents from one source: above the per-source rate limit.
    let config = format!(
        "{}\n[throttle]\nregistration_burst = 100\n",
        open("read", r#"["authorization_code"]"#)
    );
    let h = harness_with(&config).await;
    let before = client_count(&h).await;
    for uri in [
        "javascript:alert(document.cookie)",
        "JAVASCRIPT:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "blob:https://app.example/0b6c",
        "about:blank",
        "ws://app.example/cb",
        "ftp://app.example/cb",
        "https://user:pw@app.example/cb",
        "https://app.example@evil.example/cb",
        "http://app.example/cb",
        "https://app.example/cb#fragment",
        "myapp:/cb",
    ] {
        let r = register(
            &h,
            &json!({"token_endpoint_auth_method": "none", "redirect_uris": [uri]}),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text);
        assert_eq!(r.error(), "invalid_redirect_uri", "{uri}");
    }
    assert_eq!(client_count(&h).await, before, "nothing was registered");
    for uri in [
        "https://app.example/cb",
        "http://127.0.0.1:51234/cb",
        "http://[::1]/cb",
        "com.example.app:/oauth2redirect",
    ] {
        let r = register(
            &h,
            &json!({"token_endpoint_auth_method": "none", "redirect_uris": [uri]}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{uri}: {}", r.text);
    }
}

#[tokio::test]
async fn dangerous_redirect_uris_are_refused_in_configuration() {
    for uri in [
        "javascript:alert(1)",
        "data:text/html,x",
        "https://u@app.example/cb",
    ] {
        let cfg = format!(
            "{CONFIG}\n[[clients]]\nclient_id = \"web\"\ntoken_endpoint_auth_method = \"none\"\n\
             grant_types = [\"authorization_code\"]\nredirect_uris = [\"{uri}\"]\n"
        );
        let e = ConfigFile::parse(&cfg)
            .unwrap()
            .validate(&Overrides::default())
            .expect_err(uri);
        assert!(
            e.0.contains("clients[2].redirect_uris[0]"),
            "{uri}: {}",
            e.0
        );
    }
}

#[tokio::test]
async fn authorize_never_sends_the_browser_to_a_stored_javascript_uri() {
    // A client stored before the rule existed keeps its URI in the
    // database; /authorize refuses it before anything else happens.
    let h = harness().await;
    let record = dtr_server::store::ClientRecord {
        client_id: "old".into(),
        secret_hash: None,
        auth_method: "none".into(),
        grant_types: vec!["authorization_code".into()],
        scope: "read".into(),
        redirect_uris: vec!["javascript:alert(document.domain)".into()],
        jwks: None,
        jwks_uri: None,
        notification_endpoint: None,
        enabled: true,
        admin_disabled: false,
        dpop_bound_access_tokens: false,
        registration_token_hash: None,
        metadata: None,
        require_par: false,
        deferred_authorization_endpoint: false,
        require_signed_request_object: false,
        owner: None,
    };
    h.state.store.upsert_client(&record).await.unwrap();
    h.state.clients.refresh(record);
    let r = h
        .get(&format!(
            "/authorize?{}",
            form(&[
                ("response_type", "code"),
                ("client_id", "old"),
                ("redirect_uri", "javascript:alert(document.domain)"),
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
                ),
                ("code_challenge_method", "S256"),
                ("scope", "read"),
            ])
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.headers.get(header::LOCATION).is_none());
    assert!(r.text.contains("not allowed"), "{}", r.text);
}

#[tokio::test]
async fn loopback_redirect_uris_match_on_any_port() {
    // RFC 8252 section 7.3: a native app listens on the port it got.
    let h = harness_with(&format!(
        "{CONFIG}\n[[clients]]\nclient_id = \"native\"\ntoken_endpoint_auth_method = \"none\"\n\
         grant_types = [\"authorization_code\"]\nscope = \"read\"\n\
         redirect_uris = [\"http://127.0.0.1/cb\"]\n"
    ))
    .await;
    let authorize = |redirect: &'static str| {
        format!(
            "/authorize?{}",
            form(&[
                ("response_type", "code"),
                ("client_id", "native"),
                ("redirect_uri", redirect),
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
                ),
                ("code_challenge_method", "S256"),
                ("scope", "read"),
            ])
        )
    };
    let r = h.get(&authorize("http://127.0.0.1:51234/cb")).await;
    assert_ne!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Only the port is free: another path is still refused.
    let r = h.get(&authorize("http://127.0.0.1:51234/other")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

#[tokio::test]
async fn generated_secrets_are_high_entropy_and_stored_as_a_keyed_hash() {
    let h = harness_with(&open("read", r#"["client_credentials"]"#)).await;
    let r = register(&h, &json!({"grant_types": ["client_credentials"]})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["client_id"].as_str().unwrap().to_owned();
    let secret = r.json["client_secret"].as_str().unwrap().to_owned();
    // 256 bits in base64url.
    assert!(secret.len() >= 43, "{secret}");
    let stored = h
        .state
        .store
        .get_client(&id)
        .await
        .unwrap()
        .unwrap()
        .secret_hash
        .unwrap();
    assert!(stored.starts_with("$dtr-hmac-sha256$v1$"), "{stored}");
    assert!(!stored.contains(&secret));
    let ok = h
        .post(
            "/token",
            (id.as_str(), secret.as_str()),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let wrong = format!("{secret}x");
    let bad = h
        .post(
            "/token",
            (id.as_str(), wrong.as_str()),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(bad.error(), "invalid_client");
    // Configured secrets, which people choose, stay Argon2.
    let svc = h.state.store.get_client("svc").await.unwrap().unwrap();
    assert!(svc.secret_hash.unwrap().starts_with("$argon2id$"));
}
