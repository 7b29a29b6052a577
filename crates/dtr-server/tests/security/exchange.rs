//! Security regressions: exchange.
//!
//! Token exchange (RFC 8693 sections 2.1 and 5, RFC 9700 section 2.3):
//! a client exchanges only its own tokens or those addressed to it unless
//! a `[[token_exchange]]` rule says more, names only the configured
//! resource servers its rule allows, and what it gets dies with the token
//! it was made from. Introspection (RFC 7662 sections 2.1 and 4): only
//! confidential clients, and only about their own or addressed tokens.

use super::common::*;
use axum::http::StatusCode;

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const API: &str = "https://api.example.com/";
const BILLING: &str = "https://billing.example.com/";
const GATEWAY: (&str, &str) = ("gateway", "gateway-secret");
const LONER: (&str, &str) = ("loner", "loner-secret");
const RS: (&str, &str) = ("api", "api-resource-secret");
const WEB: (&str, &str) = ("web", "web-secret-1");
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

const CFG: &str = r#"
issuer = "http://127.0.0.1:8080"
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read write"
[[clients]]
client_id = "gateway"
client_secret = "gateway-secret"
grant_types = ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]
scope = "read write"
[[clients]]
client_id = "loner"
client_secret = "loner-secret"
grant_types = ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]
scope = "read write"
[[clients]]
client_id = "anon"
token_endpoint_auth_method = "none"
grant_types = ["urn:ietf:params:oauth:grant-type:token-exchange"]
scope = "read write"
[[clients]]
client_id = "api"
client_secret = "api-resource-secret"
grant_types = ["urn:ietf:params:oauth:grant-type:token-exchange"]
scope = "read write"
[[clients]]
client_id = "web"
client_secret = "web-secret-1"
grant_types = ["authorization_code", "refresh_token"]
scope = "read write"
redirect_uris = ["https://app.example/cb"]
[[users]]
username = "alice"
password = "alice-password"
[[resource_servers]]
identifier = "https://api.example.com/"
client_id = "api"
[[resource_servers]]
identifier = "https://billing.example.com/"
[[token_exchange]]
client_id = "gateway"
subject_clients = ["svc", "web"]
audiences = ["https://api.example.com/"]
"#;

async fn h() -> Harness {
    harness_with(CFG).await
}

/// An access token of `client` (client credentials).
async fn cc_token(h: &Harness, client: (&str, &str)) -> String {
    let r = h
        .post(
            "/token",
            client,
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["access_token"].as_str().unwrap().to_owned()
}

async fn exchange(
    h: &Harness,
    client: (&str, &str),
    subject: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let mut pairs = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", AT),
    ];
    pairs.extend_from_slice(extra);
    h.post("/token", client, &pairs).await
}

/// Exchanges and expects a token.
async fn exchanged(
    h: &Harness,
    client: (&str, &str),
    subject: &str,
    extra: &[(&str, &str)],
) -> String {
    let r = exchange(h, client, subject, extra).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["access_token"].as_str().unwrap().to_owned()
}

async fn active(h: &Harness, client: (&str, &str), token: &str) -> bool {
    let r = h.post("/introspect", client, &[("token", token)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["active"].as_bool().unwrap()
}

fn location_query(r: &Resp, key: &str) -> String {
    let loc = r.headers["location"].to_str().unwrap();
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {key} in {loc}"))
}

/// alice's access and refresh tokens for `web` (authorization code with
/// PKCE, signed in and consenting through the pages).
async fn user_tokens(h: &Harness) -> (String, String) {
    let cookie = h.sign_in("alice", "alice-password").await;
    let q = form(&[
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", "https://app.example/cb"),
        ("scope", "read"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "st"),
    ]);
    let page = h.get_with_cookie(&format!("/authorize?{q}"), &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let r = h
        .post_with_cookie(
            "/authorize/consent",
            &cookie,
            &[
                ("request", &hidden_field(&page.text, "request")),
                ("csrf", &hidden_field(&page.text, "csrf")),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let code = location_query(&r, "code");
    let t = h
        .post(
            "/token",
            WEB,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
                ("redirect_uri", "https://app.example/cb"),
            ],
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    (
        t.json["access_token"].as_str().unwrap().to_owned(),
        t.json["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// Issue 2: another client's token cannot be laundered into one of the
/// exchanging client's own, by a confidential client without a rule nor
/// by an anonymous one; as subject or as actor token alike.
#[tokio::test]
async fn exchanging_another_clients_token_is_refused_without_a_rule() {
    let h = h().await;
    let foreign = cc_token(&h, SVC).await;
    let r = exchange(&h, LONER, &foreign, &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.error(), "invalid_grant");
    // The same answer as for a token that is not valid at all: no oracle.
    let garbage = exchange(&h, LONER, "x.y.z", &[]).await;
    assert_eq!(r.json, garbage.json);
    // An anonymous client gets nothing either.
    let pairs = [
        ("client_id", "anon"),
        ("grant_type", EXCHANGE),
        ("subject_token", foreign.as_str()),
        ("subject_token_type", AT),
    ];
    let anon = h
        .post_raw(
            "/token",
            None,
            "application/x-www-form-urlencoded",
            form(&pairs).into_bytes(),
        )
        .await;
    assert!(anon.status.is_client_error(), "{}", anon.text);
    assert!(anon.json.get("access_token").is_none(), "{}", anon.text);
    // A foreign actor token is refused the same way.
    let own = cc_token(&h, LONER).await;
    let r = exchange(
        &h,
        LONER,
        &own,
        &[("actor_token", &foreign), ("actor_token_type", AT)],
    )
    .await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);
    // Its own token it may exchange; a rule widens to the clients named.
    exchanged(&h, LONER, &own, &[]).await;
    exchanged(&h, GATEWAY, &foreign, &[]).await;
    let loner_token = cc_token(&h, LONER).await;
    assert_eq!(
        exchange(&h, GATEWAY, &loner_token, &[]).await.error(),
        "invalid_grant",
        "the rule names svc and web, not loner"
    );
    // A token addressed to a resource server may be exchanged by the
    // client of that resource server (its aud names it).
    let for_api = exchanged(&h, GATEWAY, &foreign, &[("audience", API)]).await;
    exchanged(&h, RS, &for_api, &[]).await;
}

/// Issue 2: `audience` and `resource` only name configured resource
/// servers that the client's rule allows; anything else is
/// `invalid_target` and issues nothing.
#[tokio::test]
async fn foreign_audience_or_resource_is_invalid_target() {
    let h = h().await;
    let subject = cc_token(&h, SVC).await;
    for extra in [
        [("audience", "https://evil.example/")],
        [("resource", "https://evil.example/")],
        // Configured, but not in gateway's rule.
        [("audience", BILLING)],
        [("resource", BILLING)],
    ] {
        let r = exchange(&h, GATEWAY, &subject, &extra).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.error(), "invalid_target", "{extra:?}: {}", r.text);
        assert!(r.json["error_description"].is_string());
    }
    // Both given: both must be allowed.
    let r = exchange(
        &h,
        GATEWAY,
        &subject,
        &[("audience", API), ("resource", "https://evil.example/")],
    )
    .await;
    assert_eq!(r.error(), "invalid_target");
    // Without a rule a client names no target, even for its own token.
    let own = cc_token(&h, LONER).await;
    assert_eq!(
        exchange(&h, LONER, &own, &[("audience", API)])
            .await
            .error(),
        "invalid_target"
    );
    // What the rule allows works, and becomes the token's aud.
    let t = exchanged(&h, GATEWAY, &subject, &[("resource", API)]).await;
    let r = h.post("/introspect", RS, &[("token", &t)]).await;
    assert_eq!(r.json["active"], true, "{}", r.text);
    assert_eq!(r.json["aud"], API);
}

/// Issue 2: an exchanged token dies with its subject token, through a
/// chain of exchanges.
#[tokio::test]
async fn revoking_the_subject_token_kills_the_exchanged_tokens() {
    let h = h().await;
    let subject = cc_token(&h, SVC).await;
    let first = exchanged(&h, GATEWAY, &subject, &[]).await;
    // The exchanged token used as subject again (its own token now).
    let second = exchanged(&h, GATEWAY, &first, &[]).await;
    assert!(active(&h, GATEWAY, &first).await);
    assert!(active(&h, GATEWAY, &second).await);
    let r = h.post("/revoke", SVC, &[("token", &subject)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!active(&h, GATEWAY, &first).await, "dies with its subject");
    assert!(
        !active(&h, GATEWAY, &second).await,
        "and so do its children"
    );
    assert_eq!(
        exchange(&h, GATEWAY, &second, &[]).await.error(),
        "invalid_grant"
    );
    // An actor token's revocation kills the delegation too.
    let subject = cc_token(&h, SVC).await;
    let actor = cc_token(&h, GATEWAY).await;
    let delegated = exchanged(
        &h,
        GATEWAY,
        &subject,
        &[("actor_token", &actor), ("actor_token_type", AT)],
    )
    .await;
    assert!(active(&h, GATEWAY, &delegated).await);
    h.post("/revoke", GATEWAY, &[("token", &actor)]).await;
    assert!(!active(&h, GATEWAY, &delegated).await);
}

/// Issue 2: revoking the subject token's family (here by revoking the
/// refresh token, RFC 7009 section 2.1) kills the exchanged token.
#[tokio::test]
async fn family_revocation_kills_the_exchanged_token() {
    let h = h().await;
    let (access, refresh) = user_tokens(&h).await;
    let made = exchanged(&h, GATEWAY, &access, &[]).await;
    assert!(active(&h, GATEWAY, &made).await);
    let r = h.post("/revoke", WEB, &[("token", &refresh)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!active(&h, WEB, &access).await);
    assert!(!active(&h, GATEWAY, &made).await);
}

/// Issue 2: disabling the user makes their tokens, and what was exchanged
/// from them, inactive; enabling them again restores them.
#[tokio::test]
async fn disabled_user_kills_the_exchanged_token() {
    let h = h().await;
    let (access, _) = user_tokens(&h).await;
    let made = exchanged(&h, GATEWAY, &access, &[]).await;
    assert!(active(&h, GATEWAY, &made).await);
    let r = h.admin("POST", "/admin/users/alice/disable", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!active(&h, WEB, &access).await);
    assert!(!active(&h, GATEWAY, &made).await);
    assert_eq!(
        exchange(&h, GATEWAY, &access, &[]).await.error(),
        "invalid_grant"
    );
    h.admin("POST", "/admin/users/alice/enable", None).await;
    assert!(active(&h, GATEWAY, &made).await);
}

/// Issue 5: a public client's bare `client_id` is no credential: 401
/// `invalid_client`, and nothing about the token.
#[tokio::test]
async fn public_client_may_not_introspect() {
    let h = h().await;
    let token = cc_token(&h, SVC).await;
    let r = h
        .post_raw(
            "/introspect",
            None,
            "application/x-www-form-urlencoded",
            form(&[("client_id", "anon"), ("token", &token)]).into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.error(), "invalid_client");
    assert!(r.headers.contains_key("www-authenticate"));
    assert!(r.json.get("active").is_none() && r.json.get("sub").is_none());
}

/// Issue 5: a confidential client learns nothing about another client's
/// token; a resource server sees the tokens addressed to it.
#[tokio::test]
async fn foreign_token_introspects_inactive() {
    let h = h().await;
    let token = cc_token(&h, SVC).await;
    let r = h.post("/introspect", LONER, &[("token", &token)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, serde_json::json!({"active": false}));
    // The resource server sees nothing of tokens for others...
    let r = h.post("/introspect", RS, &[("token", &token)]).await;
    assert_eq!(r.json, serde_json::json!({"active": false}));
    // ...but everything of tokens for it; the owner sees its own.
    let for_api = exchanged(&h, GATEWAY, &token, &[("audience", API)]).await;
    let r = h.post("/introspect", RS, &[("token", &for_api)]).await;
    assert_eq!(r.json["active"], true);
    assert_eq!(r.json["client_id"], "gateway");
    assert!(active(&h, SVC, &token).await);
    assert!(!active(&h, LONER, &for_api).await);
}
