//! The client library's authorization code grant (`Client::authorize`)
//! against a real server on port 0: the library's loopback redirect
//! receiver (RFC 8252 section 7.3) on its own port, and a cookie-keeping
//! HTTP client in the role of the user's browser, signing in and
//! consenting on the server's pages and then delivering the response to
//! the receiver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/server.rs"]
mod server;

#[path = "support/login_browser.rs"]
mod login_browser;

use dtr_client::{
    AdminClient, AuthorizationCodeRequest, AuthorizationOutcome, AuthorizationResponse, Client,
    ClientAuth, CompletionMode, DeferredAt, DpopKey, Error, ErrorCode, PollOutcome, ResponseError,
    ResponseMode, SystemClock,
};
use login_browser::{Delivery, LoginBrowser};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use url::Url;

const ADMIN_TOKEN: &str = "code-flow-admin-token-0123456789abcdefghij";

const CONFIG: &str = r#"
[deferral]
expires_in = 60
interval = 1
[admin]
token = "code-flow-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "cli"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
scope = "read payments"
redirect_uris = ["http://127.0.0.1/callback"]
[[users]]
username = "alice"
password = "alice-password"
[[policy]]
scope_any = ["payments"]
action = "review"
"#;

struct Setup {
    server: server::Running,
    _dir: tempfile::TempDir,
}

async fn start() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server = server::start(CONFIG, &dir.path().join("dtr.db")).await;
    Setup { server, _dir: dir }
}

impl Setup {
    async fn client(&self) -> Client {
        Client::discover(
            &self.server.issuer,
            ClientAuth::None {
                client_id: "cli".into(),
            },
        )
        .await
        .unwrap()
    }

    fn origin(&self) -> String {
        Url::parse(&self.server.issuer)
            .unwrap()
            .origin()
            .ascii_serialization()
    }
}

/// What one run of `Client::authorize` with the test browser gave.
struct Run {
    outcome: Result<AuthorizationOutcome, Error>,
    /// The kind of response the library reported.
    kind: Option<&'static str>,
    /// What the browser saw.
    delivery: Delivery,
    /// The URL the browser was sent to.
    url: Url,
}

/// Runs `Client::authorize` with the test browser answering `decision`.
async fn run(s: &Setup, c: &Client, req: &AuthorizationCodeRequest, decision: &'static str) -> Run {
    let origin = s.origin();
    let mut browser: Option<(Url, JoinHandle<Delivery>)> = None;
    let seen = Arc::new(Mutex::new(None));
    let kind = Arc::clone(&seen);
    let outcome = c
        .authorize(
            req,
            |url| {
                let opened = url.clone();
                let url = url.clone();
                browser = Some((
                    opened,
                    tokio::spawn(async move {
                        LoginBrowser::new("alice", "alice-password")
                            .authorize(url, &origin, decision)
                            .await
                    }),
                ));
            },
            move |r: &AuthorizationResponse| *kind.lock().unwrap() = Some(r.kind()),
        )
        .await;
    let (url, browser) = browser.expect("the opener was called");
    let delivery = browser.await.unwrap();
    let kind = *seen.lock().unwrap();
    Run {
        outcome,
        kind,
        delivery,
        url,
    }
}

/// The parameter names of a URL's query.
fn names(url: &Url) -> Vec<String> {
    url.query_pairs().map(|(k, _)| k.into_owned()).collect()
}

fn request(scope: &str, completion_mode: CompletionMode) -> AuthorizationCodeRequest {
    AuthorizationCodeRequest {
        scope: Some(scope.into()),
        completion_mode,
        timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

#[tokio::test]
async fn code_through_the_loopback_receiver_to_tokens() {
    let s = start().await;
    let c = s.client().await;
    let Run {
        outcome,
        kind,
        delivery,
        url,
    } = run(
        &s,
        &c,
        &request("read", CompletionMode::Synchronous),
        "approve",
    )
    .await;
    assert!(names(&url).contains(&"code_challenge".to_owned()));
    assert_eq!(delivery.pages, ["Sign in", "Allow access?"]);
    assert_eq!(delivery.method, "GET");
    assert_eq!(delivery.status.as_u16(), 200);
    assert!(
        delivery.text.contains("You can close this window"),
        "{}",
        delivery.text
    );
    assert_eq!(kind, Some("code"));
    let AuthorizationOutcome::Token(t) = outcome.unwrap() else {
        panic!("expected tokens")
    };
    assert_eq!(t.scope.as_deref(), Some("read"));
    assert!(t.refresh_token.is_some(), "{t:?}");
    assert!(t.token_type.eq_ignore_ascii_case("bearer"), "{t:?}");
    s.server.stop().await;
}

#[tokio::test]
async fn deferred_token_request_with_dpop_is_polled_to_a_bound_token() {
    // The hint on the authorization request, completion_mode and a DPoP
    // proof on the token request (DTR-5, DTR-14), the deferral bound to the
    // key of dpop_jkt (DTR-13), a reviewer's approval, polls with proofs.
    let s = start().await;
    let key = DpopKey::generate();
    let c = s.client().await.with_dpop(key.clone());
    let Run {
        outcome,
        kind,
        delivery,
        url,
    } = run(
        &s,
        &c,
        &request("payments", CompletionMode::Deferred),
        "approve",
    )
    .await;
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["dpop_jkt"], key.thumbprint());
    assert_eq!(q["completion_mode"], "deferred");
    assert_eq!(delivery.status.as_u16(), 200);
    let AuthorizationOutcome::Deferred(d) = outcome.unwrap() else {
        panic!("expected a deferral")
    };
    // Today's server defers at the token endpoint: the redirect has a code.
    // Once it defers at the authorization endpoint instead, the redirect
    // brings the deferral code and the first poll carries the verifier.
    match d.at {
        DeferredAt::TokenEndpoint => {
            assert_eq!(kind, Some("code"));
            assert!(d.first_poll_params().is_empty());
        }
        DeferredAt::AuthorizationEndpoint => {
            assert_eq!(kind, Some("deferral_code"));
            let names: Vec<&str> = d.first_poll_params().pairs().iter().map(|p| p.0).collect();
            assert_eq!(names, ["code_verifier", "redirect_uri"]);
        }
    }
    assert_eq!(d.deferral.dpop_jkt.as_deref(), Some(key.thumbprint()));
    let admin = AdminClient::new(&s.server.issuer, ADMIN_TOKEN).unwrap();
    let pending = admin.list(Some("pending"), Some("cli")).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    let mut poller = d.poller(&c, SystemClock);
    let poll = tokio::spawn({
        let admin = admin.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            admin.approve(&id, None).await.unwrap();
        }
    });
    let outcome = tokio::time::timeout(Duration::from_secs(30), poller.run(|_| {}))
        .await
        .unwrap()
        .unwrap();
    poll.await.unwrap();
    let PollOutcome::Token(t) = outcome else {
        panic!("{outcome:?}")
    };
    // DTR-20: the authorization code grant's response, DPoP-bound.
    assert_eq!(t.token_type, "DPoP");
    assert!(t.refresh_token.is_some());
    assert_eq!(t.scope.as_deref(), Some("payments"));
    assert!(!poller.first_poll_pending());
    s.server.stop().await;
}

#[tokio::test]
async fn denied_consent_comes_back_as_access_denied() {
    let s = start().await;
    let c = s.client().await;
    let Run {
        outcome,
        kind,
        delivery,
        ..
    } = run(
        &s,
        &c,
        &request("read", CompletionMode::Synchronous),
        "deny",
    )
    .await;
    // The browser is told; the library returns the error response.
    assert_eq!(delivery.status.as_u16(), 200);
    assert!(delivery.text.contains("access_denied"), "{}", delivery.text);
    assert_eq!(kind, None, "no response to redeem");
    match outcome {
        Err(Error::AuthorizationResponse(ResponseError::Denied(e))) => {
            assert_eq!(e.error, ErrorCode::AccessDenied)
        }
        other => panic!("{other:?}"),
    }
    s.server.stop().await;
}

#[tokio::test]
async fn form_post_response_mode() {
    // OAuth 2.0 Form Post Response Mode. A server that announces it posts
    // the response to the receiver; one that does not redirects with the
    // query, which the receiver takes as well.
    let s = start().await;
    let c = s.client().await;
    let announced = c
        .metadata()
        .other
        .get("response_modes_supported")
        .and_then(|v| v.as_array())
        .is_some_and(|m| m.iter().any(|v| v == "form_post"));
    let req = AuthorizationCodeRequest {
        response_mode: ResponseMode::FormPost,
        ..request("read", CompletionMode::Synchronous)
    };
    let Run {
        outcome,
        kind,
        delivery,
        ..
    } = run(&s, &c, &req, "approve").await;
    assert_eq!(
        delivery.method,
        if announced { "POST" } else { "GET" },
        "{delivery:?}"
    );
    assert_eq!(delivery.status.as_u16(), 200);
    assert_eq!(kind, Some("code"));
    assert!(matches!(outcome, Ok(AuthorizationOutcome::Token(_))));
    s.server.stop().await;
}

#[tokio::test]
async fn pushed_request_keeps_the_parameters_out_of_the_browser() {
    // RFC 9126: the request goes to /par in the back channel; the browser
    // carries client_id and request_uri only, and the rest of the flow is
    // unchanged (state and iss checked, PKCE at the token endpoint).
    let s = start().await;
    let c = s.client().await;
    let req = AuthorizationCodeRequest {
        pushed: true,
        ..request("read", CompletionMode::Synchronous)
    };
    let Run {
        outcome,
        kind,
        delivery,
        url,
    } = run(&s, &c, &req, "approve").await;
    assert_eq!(names(&url), ["client_id", "request_uri"]);
    assert_eq!(delivery.pages, ["Sign in", "Allow access?"]);
    assert_eq!(kind, Some("code"));
    let AuthorizationOutcome::Token(t) = outcome.unwrap() else {
        panic!("expected tokens")
    };
    assert_eq!(t.scope.as_deref(), Some("read"));
    s.server.stop().await;
}

/// The client of [`CONFIG`] opted in to deferral at the authorization
/// endpoint (DESIGN.md, `[[clients]] deferred_authorization_endpoint`).
const DIRECT_CONFIG: &str = r#"
[deferral]
expires_in = 60
interval = 1
[admin]
token = "code-flow-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "cli"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
scope = "read payments"
redirect_uris = ["http://127.0.0.1/callback"]
deferred_authorization_endpoint = true
[[users]]
username = "alice"
password = "alice-password"
[[policy]]
scope_any = ["payments"]
action = "review"
"#;

#[tokio::test]
async fn deferral_code_on_the_redirect_polled_to_tokens() {
    // The redirect brings the deferral code (form_post), bound to the key
    // of dpop_jkt; the first poll carries the verifier, later ones do not;
    // the reviewer's approval yields the authorization code grant's
    // response, refresh token included.
    let dir = tempfile::tempdir().unwrap();
    let server = server::start(DIRECT_CONFIG, &dir.path().join("dtr.db")).await;
    let s = Setup { server, _dir: dir };
    let key = DpopKey::generate();
    let c = s.client().await.with_dpop(key.clone());
    assert_eq!(
        c.metadata()
            .other
            .get("deferred_authorization_endpoint_supported"),
        Some(&serde_json::Value::Bool(true))
    );
    let req = AuthorizationCodeRequest {
        response_mode: ResponseMode::FormPost,
        ..request("payments", CompletionMode::Deferred)
    };
    let Run {
        outcome,
        kind,
        delivery,
        ..
    } = run(&s, &c, &req, "approve").await;
    assert_eq!(delivery.method, "POST");
    assert_eq!(delivery.status.as_u16(), 200);
    assert_eq!(kind, Some("deferral_code"));
    let AuthorizationOutcome::Deferred(d) = outcome.unwrap() else {
        panic!("expected a deferral")
    };
    assert_eq!(d.at, DeferredAt::AuthorizationEndpoint);
    assert_eq!(d.deferral.dpop_jkt.as_deref(), Some(key.thumbprint()));
    let admin = AdminClient::new(&s.server.issuer, ADMIN_TOKEN).unwrap();
    let pending = admin.list(Some("pending"), Some("cli")).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    let mut poller = d.poller(&c, SystemClock);
    let approve = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        admin.approve(&id, None).await.unwrap();
    });
    let mut states = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        poller.run(|p| states.push(p.error.as_str().to_owned())),
    )
    .await
    .unwrap()
    .unwrap();
    approve.await.unwrap();
    // At least one pending answer before the approval: the first poll,
    // with the verifier, was accepted, and later ones without it too.
    assert!(!states.is_empty());
    assert!(!poller.first_poll_pending());
    let PollOutcome::Token(t) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(t.token_type, "DPoP");
    assert!(t.refresh_token.is_some());
    assert_eq!(t.scope.as_deref(), Some("payments"));
    s.server.stop().await;
}
