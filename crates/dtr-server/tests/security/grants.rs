//! Security regressions: the grants at the token endpoint.
//!
//! - A refused refresh (a widened scope, a policy deferral without the
//!   opt-in) used to rotate the token first, so the corrected retry counted
//!   as reuse and revoked the family: every check now runs before rotation.
//! - A used authorization code presented by anyone revoked the victim's
//!   tokens: only its own client with the right verifier triggers that.
//! - `require_dpop = true` was checked in three grants and missed in two:
//!   the token endpoint now checks it once for every grant.

use super::common::browser::*;
use super::common::*;
use axum::http::StatusCode;

const CFG: &str = r#"
issuer = "http://127.0.0.1:8080"
[admin]
token = "test-admin-token-0123456789abcdef"
[[clients]]
client_id = "web"
client_secret = "web-secret-1"
grant_types = ["authorization_code", "refresh_token"]
scope = "read write reports"
redirect_uris = ["https://app.example/cb"]
[[clients]]
client_id = "thief"
client_secret = "thief-secret"
grant_types = ["authorization_code", "refresh_token"]
scope = "read write"
redirect_uris = ["https://thief.example/cb"]
[[clients]]
client_id = "bound"
client_secret = "bound-secret"
grant_types = ["authorization_code", "refresh_token"]
scope = "read write"
redirect_uris = ["https://bound.example/cb"]
require_dpop = true
[[users]]
username = "alice"
password = "alice-password"
[[policy]]
grant_type = "refresh_token"
scope_any = ["reports"]
action = "review"
"#;

const WEB: (&str, &str) = ("web", "web-secret-1");
const THIEF: (&str, &str) = ("thief", "thief-secret");
const BOUND: (&str, &str) = ("bound", "bound-secret");

async fn refresh(h: &Harness, rt: &str, extra: &[(&str, &str)]) -> Resp {
    let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", rt)];
    pairs.extend_from_slice(extra);
    h.post("/token", WEB, &pairs).await
}

async fn introspect_active(h: &Harness, token: &str) -> bool {
    let r = h.post("/introspect", WEB, &[("token", token)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["active"] == true
}

/// Item 6: a refresh refused for a widened scope does not rotate the
/// token; the corrected retry succeeds and the family stays alive.
#[tokio::test]
async fn refused_refresh_with_widened_scope_does_not_burn_the_token() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "read")]).await;
    let r = exchange_as(&h, WEB, &code, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rt = r.json["refresh_token"].as_str().unwrap().to_owned();
    let at = r.json["access_token"].as_str().unwrap().to_owned();

    let wide = refresh(&h, &rt, &[("scope", "read write")]).await;
    assert_eq!(wide.error(), "invalid_scope", "{}", wide.text);

    let retry = refresh(&h, &rt, &[("scope", "read")]).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text);
    assert!(
        introspect_active(&h, &at).await,
        "the family must not be revoked"
    );
}

/// Item 6: a refresh that policy would defer, sent without the opt-in, is
/// refused without rotation; the retry with `completion_mode=deferred` is
/// deferred, not treated as reuse.
#[tokio::test]
async fn refresh_refused_for_missing_opt_in_can_be_retried_deferred() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "read reports")]).await;
    let r = exchange_as(&h, WEB, &code, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rt = r.json["refresh_token"].as_str().unwrap().to_owned();
    let at = r.json["access_token"].as_str().unwrap().to_owned();

    let no_opt_in = refresh(&h, &rt, &[]).await;
    assert_eq!(no_opt_in.error(), "access_denied", "{}", no_opt_in.text);
    assert!(no_opt_in.text.contains("completion_mode=deferred"));

    let deferred = refresh(&h, &rt, &[("completion_mode", "deferred")]).await;
    assert_eq!(
        deferred.error(),
        "authorization_pending",
        "{}",
        deferred.text
    );
    assert!(deferred.json["deferral_code"].is_string());
    assert!(introspect_active(&h, &at).await, "the family must stay");

    // Now the token is rotated: presenting it again is reuse.
    let reuse = refresh(&h, &rt, &[("completion_mode", "deferred")]).await;
    assert_eq!(reuse.error(), "invalid_grant");
    assert!(
        !introspect_active(&h, &at).await,
        "reuse revokes the family"
    );
}

/// Item 7: a used code presented by another client, or by its own client
/// without the right verifier, changes nothing; only its own client with
/// the verifier triggers the replay revocation (OAuth 2.1 section 4.1.2).
#[tokio::test]
async fn only_the_codes_client_with_its_verifier_triggers_replay_revocation() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "web", &[("scope", "read")]).await;
    let r = exchange_as(&h, WEB, &code, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let at = r.json["access_token"].as_str().unwrap().to_owned();

    // Another client with the right verifier.
    let foreign = exchange_as(&h, THIEF, &code, &[]).await;
    assert_eq!(foreign.error(), "invalid_grant");
    assert!(introspect_active(&h, &at).await);
    // The right client with a wrong verifier.
    let wrong = h
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
    assert_eq!(wrong.error(), "invalid_grant");
    assert!(introspect_active(&h, &at).await);
    // The right client with a wrong redirect URI.
    let redirect = exchange_as(
        &h,
        WEB,
        &code,
        &[("redirect_uri", "https://app.example/other")],
    )
    .await;
    assert_eq!(redirect.error(), "invalid_grant");
    assert!(introspect_active(&h, &at).await);

    // The real replay: its own client, the verifier.
    let replay = exchange_as(&h, WEB, &code, &[]).await;
    assert_eq!(replay.error(), "invalid_grant");
    assert!(!introspect_active(&h, &at).await);
}

/// Item 9: a `require_dpop` client gets no Bearer token from the
/// authorization code grant, nor from the refresh grant.
#[tokio::test]
async fn require_dpop_holds_for_the_code_and_refresh_grants() {
    let h = harness_with(CFG).await;
    let mut b = Browser::new(&h);
    let code = code_for(&mut b, "bound", &[("scope", "read")]).await;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
    ];
    let bearer = h.post("/token", BOUND, &pairs).await;
    assert_eq!(bearer.error(), "invalid_dpop_proof", "{}", bearer.text);

    // The refusal did not spend the code: with a proof it works.
    let key = DpopKey::new();
    let proof = h.proof(&key, "/token");
    let r = h.post_dpop("/token", BOUND, Some(&proof), &pairs).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "DPoP");
    let rt = r.json["refresh_token"].as_str().unwrap().to_owned();

    let refresh_pairs = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    let bearer = h.post("/token", BOUND, &refresh_pairs).await;
    assert_eq!(bearer.error(), "invalid_dpop_proof", "{}", bearer.text);
    let proof = h.proof(&key, "/token");
    let r = h
        .post_dpop("/token", BOUND, Some(&proof), &refresh_pairs)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "DPoP");
}
