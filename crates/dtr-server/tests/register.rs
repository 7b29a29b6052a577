//! Dynamic client registration (RFC 7591) and management (RFC 7592),
//! with the SSRF checks of the callback endpoint (DTR-25, DTR-28).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use dtr_server::outbound::StaticResolver;
use serde_json::{json, Value};
use std::sync::Arc;

async fn register(h: &Harness, doc: Value) -> Resp {
    h.send(
        Request::post("/register")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(doc.to_string()))
            .unwrap(),
    )
    .await
}

async fn manage(h: &Harness, method: &str, uri: &str, token: &str, doc: Option<Value>) -> Resp {
    let path = uri.trim_start_matches("http://127.0.0.1:8080");
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    h.send(
        b.body(
            doc.map(|d| Body::from(d.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap(),
    )
    .await
}

/// Registration is closed by default: these tests open it, for the scopes
/// and grant types they register.
const OPEN: &str = r#"
[registration]
enabled = true
open = true
scope = "read payments"
grant_types = ["client_credentials", "authorization_code"]
"#;

fn open_config() -> String {
    format!("{CONFIG}\n{OPEN}")
}

/// [`open_config`] for tests that send many registration documents from
/// one source: registrations are rate-limited per source address.
fn many_registrations() -> String {
    format!("{}\n[throttle]\nregistration_burst = 100\n", open_config())
}

fn resolver() -> Arc<StaticResolver> {
    let r = Arc::new(StaticResolver::default());
    r.set("client.example", vec!["93.184.216.34".parse().unwrap()]);
    r.set("loopback.example", vec!["127.0.0.1".parse().unwrap()]);
    r.set("internal.example", vec!["10.1.2.3".parse().unwrap()]);
    r
}

#[tokio::test]
async fn register_and_use_a_confidential_client() {
    let h = harness_with_resolver(&open_config(), resolver()).await;
    let r = register(
        &h,
        json!({
            "client_name": "Agent",
            "grant_types": ["client_credentials"],
            "scope": "read payments",
            "deferred_client_notification_endpoint": "https://client.example/dtr/cb",
            "unknown_member": "ignored",
        }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.no_store());
    let id = r.json["client_id"].as_str().unwrap().to_owned();
    let secret = r.json["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(r.json["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(r.json["client_secret_expires_at"], 0);
    assert_eq!(
        r.json["deferred_client_notification_endpoint"],
        "https://client.example/dtr/cb"
    );
    assert!(r.json.get("unknown_member").is_none());
    let rat = r.json["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let uri = r.json["registration_client_uri"]
        .as_str()
        .unwrap()
        .to_owned();

    let t = h
        .post(
            "/token",
            (&id, &secret),
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    // The registered endpoint makes its deferrals notifiable: the callback
    // job appears with the resolution.
    let code = h
        .post(
            "/token",
            (&id, &secret),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(code.error(), "authorization_pending");
    let did = h.newest_id().await;
    h.admin("POST", &format!("/admin/deferrals/{did}/approve"), None)
        .await;
    let cb = h.state.store.callback_status(&did).await.unwrap().unwrap();
    assert_eq!(cb.state, "pending");

    // RFC 7592: read, update, delete.
    let read = manage(&h, "GET", &uri, &rat, None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json["client_id"], id.as_str());
    assert!(read.json.get("client_secret").is_none());
    assert_eq!(
        manage(&h, "GET", &uri, "wrong-token", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let upd = manage(
        &h,
        "PUT",
        &uri,
        &rat,
        // RFC 7592 section 2.2: the update replaces every member, so the
        // grant types are restated (omitted would mean authorization_code).
        Some(json!({"client_id": id, "grant_types": ["client_credentials"], "scope": "read"})),
    )
    .await;
    assert_eq!(upd.status, StatusCode::OK, "{}", upd.text);
    assert_eq!(upd.json["scope"], "read");
    let narrowed = h
        .post(
            "/token",
            (&id, &secret),
            &[("grant_type", "client_credentials"), ("scope", "payments")],
        )
        .await;
    assert_eq!(narrowed.error(), "invalid_scope", "the update took effect");
    assert_eq!(
        manage(&h, "DELETE", &uri, &rat, None).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = h
        .post(
            "/token",
            (&id, &secret),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(gone.error(), "invalid_client");
    assert_eq!(
        manage(&h, "GET", &uri, &rat, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn metadata_errors() {
    // RFC 7591 section 3.2.2
    let h = harness_with_resolver(&many_registrations(), resolver()).await;
    let cases = [
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": "https://app.example/cb"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"token_endpoint_auth_method": "tls_client_auth"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (json!({"scope": "read admin"}), "invalid_client_metadata"),
        (
            json!({"jwks": {"keys": []}, "jwks_uri": "https://client.example/jwks"}),
            "invalid_client_metadata",
        ),
        (
            json!({"token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
            "invalid_client_metadata",
        ),
        (json!({"client_name": 42}), "invalid_client_metadata"),
        (
            json!({"deferred_authorization_endpoint": "yes"}),
            "invalid_client_metadata",
        ),
        (
            json!({"require_signed_request_object": true}),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ];
    for (doc, error) in cases {
        let r = register(&h, doc.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{doc}: {}", r.text);
        assert_eq!(r.error(), error, "{doc}");
        assert!(r.json["error_description"].is_string());
    }
    let not_json = h
        .send(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{"))
                .unwrap(),
        )
        .await;
    assert_eq!(not_json.error(), "invalid_client_metadata");
    let form = h
        .send(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("a=b"))
                .unwrap(),
        )
        .await;
    assert_eq!(form.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        h.state.store.list_clients().await.unwrap().len(),
        2,
        "nothing was registered"
    );
}

#[tokio::test]
async fn ssrf_endpoints_are_refused() {
    // DTR-28: private, loopback, link-local, unspecified, mapped, and names
    // that resolve to them.
    let h = harness_with_resolver(&many_registrations(), resolver()).await;
    for ep in [
        "https://127.0.0.1/cb",
        "https://10.0.0.1/cb",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/cb",
        "https://[::ffff:127.0.0.1]/cb",
        "https://0.0.0.0/cb",
        "https://loopback.example/cb",
        "https://internal.example/cb",
        "https://unresolvable.example/cb",
        "http://client.example/cb",
        "https://user:pw@client.example/cb",
        "https://client.example/cb#frag",
    ] {
        let r = register(&h, json!({"deferred_client_notification_endpoint": ep})).await;
        assert_eq!(r.error(), "invalid_client_metadata", "{ep}: {}", r.text);
    }
}

#[tokio::test]
async fn initial_access_token_and_disabling() {
    let protected = format!(
        "{CONFIG}\n[registration]\nenabled = true\ninitial_access_token = \"initial-access-token-123\"\n\
         scope = \"read\"\ngrant_types = [\"authorization_code\"]\n"
    );
    let h = harness_with_resolver(&protected, resolver()).await;
    assert_eq!(
        register(&h, json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );
    let ok = h
        .send(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, "Bearer initial-access-token-123")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);

    let off = format!("{CONFIG}\n[registration]\nenabled = false\n");
    let h = harness_with(&off).await;
    assert_eq!(register(&h, json!({})).await.status, StatusCode::FORBIDDEN);
    let meta = h.get("/.well-known/oauth-authorization-server").await.json;
    assert!(
        meta.get("registration_endpoint").is_none(),
        "not advertised when disabled"
    );
}

#[tokio::test]
async fn a_registered_client_opts_in_to_deferral_at_the_authorization_endpoint() {
    let h = harness_with_resolver(&open_config(), resolver()).await;
    let r = register(
        &h,
        json!({
            "redirect_uris": ["https://client.example/cb"],
            "grant_types": ["authorization_code"],
            "scope": "payments",
            "deferred_authorization_endpoint": true,
        }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["deferred_authorization_endpoint"], true);
    let id = r.json["client_id"].as_str().unwrap();
    let stored = h.state.store.get_client(id).await.unwrap().unwrap();
    assert!(stored.deferred_authorization_endpoint);
    assert!(!stored.require_signed_request_object);
}
