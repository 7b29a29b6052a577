//! Security regressions: pages.

use super::common::*;
use axum::http::StatusCode;
use dtr_server::tokens::Grant;

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const ISSUER: &str = "http://127.0.0.1:8080";

/// Clients that defer to the interaction page: `svc` acts for alice, `orphan`
/// for nobody, `broker` exchanges tokens.
const PAGES: &str = r#"
issuer = "http://127.0.0.1:8080"
[deferral]
expires_in = 600
interval = 5
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read identity"
owner = "alice"
[[clients]]
client_id = "orphan"
client_secret = "orphan-secret"
scope = "identity"
[[clients]]
client_id = "broker"
client_secret = "broker-secret"
grant_types = ["urn:ietf:params:oauth:grant-type:token-exchange"]
scope = "read identity"
[[token_exchange]]
client_id = "broker"
subject_clients = ["svc"]
[[users]]
username = "alice"
password = "alice-password"
[[users]]
username = "bob"
password = "bob-password"
[[policy]]
scope_any = ["identity"]
action = "interaction"
[[policy]]
grant_type = "urn:ietf:params:oauth:grant-type:token-exchange"
action = "interaction"
"#;

/// The path of an `interaction_uri`.
fn path_of(r: &Resp) -> String {
    r.json["interaction_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("no interaction_uri: {}", r.text))
        .trim_start_matches(ISSUER)
        .to_owned()
}

/// `user`'s session cookie and a valid CSRF token of that session, taken
/// from another signed-in page: what a signed-in attacker has.
async fn signed_in(h: &Harness, user: &str) -> (String, String) {
    let cookie = h.sign_in(user, &format!("{user}-password")).await;
    let page = h.get_with_cookie("/device", &cookie).await;
    (cookie.clone(), hidden_field(&page.text, "csrf"))
}

/// `user` opens the page and approves; returns (page status, decision status).
async fn approve_as(h: &Harness, path: &str, user: &str) -> (StatusCode, StatusCode) {
    let (cookie, csrf) = signed_in(h, user).await;
    let page = h.get_with_cookie(path, &cookie).await;
    let decided = h
        .post_with_cookie(path, &cookie, &[("csrf", &csrf), ("decision", "approve")])
        .await;
    (page.status, decided.status)
}

async fn poll_as(h: &Harness, client: (&str, &str), code: &str) -> Resp {
    h.post(
        "/token",
        client,
        &[("grant_type", POLL), ("deferral_code", code)],
    )
    .await
}

fn sub_of(jwt: &str) -> String {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["sub"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn another_user_cannot_decide_a_token_exchange_about_alice() {
    // The reported attack: bob approved, at the interaction page, the
    // exchange of alice's token, and the poll returned `sub: alice`.
    let h = harness_with(PAGES).await;
    let alice_token = dtr_server::grants::StoredGrant::Client
        .issue(
            &h.state,
            &Grant {
                client_id: "svc".into(),
                subject: "alice".into(),
                scope: "read".into(),
                authorization_details: None,
                deferral_id: None,
                dpop_jkt: None,
                not_after: None,
            },
        )
        .await
        .unwrap()
        .access_token;
    let broker = ("broker", "broker-secret");
    let r = h
        .post(
            "/token",
            broker,
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", &alice_token),
                ("subject_token_type", AT),
                ("scope", "read"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(r.error(), "interaction_required", "{}", r.text);
    let code = r.json["deferral_code"].as_str().unwrap().to_owned();
    let path = path_of(&r);

    let (page, decided) = approve_as(&h, &path, "bob").await;
    assert_eq!(
        (page, decided),
        (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN)
    );
    assert_eq!(
        poll_as(&h, broker, &code).await.error(),
        "interaction_required",
        "bob's refused decision changed nothing"
    );

    // The handle is still alice's to use.
    h.clock.advance_secs(5);
    assert_eq!(
        approve_as(&h, &path, "alice").await,
        (StatusCode::OK, StatusCode::OK)
    );
    h.clock.advance_secs(5);
    let t = poll_as(&h, broker, &code).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    assert_eq!(sub_of(t.json["access_token"].as_str().unwrap()), "alice");
}

#[tokio::test]
async fn an_exchange_of_a_clients_own_token_is_decided_by_that_clients_owner() {
    // The subject token is svc's own (client credentials): the exchange is
    // about svc, so svc's owner decides it, nobody else.
    let h = harness_with(PAGES).await;
    let t = h
        .post(
            "/token",
            SVC,
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    let svc_token = t.json["access_token"].as_str().unwrap().to_owned();
    let broker = ("broker", "broker-secret");
    let r = h
        .post(
            "/token",
            broker,
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", &svc_token),
                ("subject_token_type", AT),
                ("scope", "read"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(r.error(), "interaction_required", "{}", r.text);
    let path = path_of(&r);
    assert_eq!(
        approve_as(&h, &path, "bob").await,
        (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN)
    );
    assert_eq!(
        approve_as(&h, &path, "alice").await,
        (StatusCode::OK, StatusCode::OK)
    );
}

#[tokio::test]
async fn a_client_deferral_is_decided_at_the_page_by_its_owner_only() {
    // Client credentials: the page decides for the client's owner (alice
    // for svc); a client without an owner is left to admins.
    let h = harness_with(PAGES).await;
    let defer = |client: (&'static str, &'static str)| {
        let h = &h;
        async move {
            h.post(
                "/token",
                client,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "identity"),
                    ("completion_mode", "deferred"),
                ],
            )
            .await
        }
    };
    let svc = defer(SVC).await;
    let path = path_of(&svc);
    assert_eq!(
        approve_as(&h, &path, "bob").await,
        (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN),
        "bob is not svc's owner"
    );
    assert_eq!(
        approve_as(&h, &path, "alice").await,
        (StatusCode::OK, StatusCode::OK)
    );

    let orphan = defer(("orphan", "orphan-secret")).await;
    let code = orphan.json["deferral_code"].as_str().unwrap().to_owned();
    let path = path_of(&orphan);
    for user in ["alice", "bob"] {
        let (cookie, _) = signed_in(&h, user).await;
        let page = h.get_with_cookie(&path, &cookie).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{user}");
        assert!(page.text.contains("administrator"), "{}", page.text);
        assert_eq!(
            approve_as(&h, &path, user).await.1,
            StatusCode::FORBIDDEN,
            "{user} may not decide a deferral about no user"
        );
    }
    assert_eq!(
        poll_as(&h, ("orphan", "orphan-secret"), &code)
            .await
            .error(),
        "interaction_required"
    );
    // An admin decides it.
    let listed = h
        .admin("GET", "/admin/deferrals?client_id=orphan", None)
        .await;
    let id = listed.json[0]["id"].as_str().unwrap().to_owned();
    let r = h
        .admin("POST", &format!("/admin/deferrals/{id}/approve"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.clock.advance_secs(5);
    let t = poll_as(&h, ("orphan", "orphan-secret"), &code).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
}

#[tokio::test]
async fn interaction_handles_are_stored_only_as_hashes() {
    // A read of the database must not yield a usable interaction link.
    let h = harness_with(PAGES).await;
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "identity"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    let handle = path_of(&r).rsplit('/').next().unwrap().to_owned();
    let store = &h.state.store;
    assert!(
        store
            .deferral_by_interaction(&handle)
            .await
            .unwrap()
            .is_none(),
        "the handle itself is not a stored value"
    );
    let rec = store
        .deferral_by_interaction(&dtr_proto::secret::sha256_b64(&handle))
        .await
        .unwrap()
        .expect("found by its hash");
    let stored = rec.interaction_handle.expect("stored handle");
    assert!(!stored.hash.contains(&handle) && !stored.sealed.contains(&handle));
    // The link still works, and polls still carry it (DTR-18).
    let code = r.json["deferral_code"].as_str().unwrap();
    let p = h.poll(code).await;
    assert_eq!(p.json["interaction_uri"], r.json["interaction_uri"]);
}

// ------------------------------------------------------------ review console

/// Signs in to the review console with `token`; returns the cookie.
async fn console_sign_in(h: &Harness, token: &str) -> String {
    let r = h
        .post_raw(
            "/review/login",
            None,
            "application/x-www-form-urlencoded",
            form(&[("token", token)]).into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let set = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// Whether `cookie` is a live console session: the list shows a sign-out
/// form (and its CSRF token) instead of the sign-in form.
async fn console_csrf(h: &Harness, cookie: &str) -> Option<String> {
    let page = h.get_with_cookie("/review", cookie).await;
    page.text
        .contains("Sign out")
        .then(|| hidden_field(&page.text, "csrf"))
}

#[tokio::test]
async fn console_logout_ends_the_session_for_every_copy_of_the_cookie() {
    // The reported attack: after logout, the old cookie and its CSRF token
    // still listed and decided deferrals.
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    let cookie = console_sign_in(&h, ADMIN).await;
    let csrf = console_csrf(&h, &cookie).await.expect("signed in");
    let out = h
        .post_with_cookie("/review/logout", &cookie, &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.text);

    // A copy of the cookie kept from before the logout is worth nothing.
    assert_eq!(console_csrf(&h, &cookie).await, None);
    let r = h
        .post_with_cookie(
            &format!("/review/{id}/approve"),
            &cookie,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(
        h.poll(&code).await.error(),
        "authorization_pending",
        "nothing was decided"
    );
    let d = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await;
    assert_eq!(d.json["state"], "pending");
}

#[tokio::test]
async fn console_sessions_end_at_expiry_and_with_the_admin_token() {
    let h = harness().await;
    let cookie = console_sign_in(&h, ADMIN).await;
    assert!(console_csrf(&h, &cookie).await.is_some());
    // The cookie is only a random id: nothing in it says when it ends.
    assert!(!cookie.contains('.'), "{cookie}");
    h.clock.advance_secs(8 * 3600);
    assert_eq!(console_csrf(&h, &cookie).await, None, "expired");

    // A node (or a restart) configured with another admin token refuses
    // the sessions opened under the old one, on the same database.
    let cookie = console_sign_in(&h, ADMIN).await;
    let config = dtr_server::config::ConfigFile::parse(
        &CONFIG.replace("test-admin-token", "rotated-admin-token"),
    )
    .unwrap()
    .validate(&dtr_server::config::Overrides::default())
    .unwrap();
    let rotated = dtr_server::AppState::build(
        config,
        ISSUER.into(),
        h.state.store.clone(),
        h.clock.clone(),
    )
    .await
    .unwrap();
    let other = Harness {
        app: dtr_server::http::app(rotated.clone()),
        state: rotated,
        clock: h.clock.clone(),
    };
    assert!(
        console_csrf(&h, &cookie).await.is_some(),
        "same token: live"
    );
    assert_eq!(console_csrf(&other, &cookie).await, None, "token changed");
    let fresh = console_sign_in(
        &other,
        &ADMIN.replace("test-admin-token", "rotated-admin-token"),
    )
    .await;
    assert!(console_csrf(&other, &fresh).await.is_some());
}
