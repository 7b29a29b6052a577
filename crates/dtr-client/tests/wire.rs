//! Wire-format tests of `Client` and `AdminClient` against a small
//! in-process HTTP server that records what it receives and answers from a
//! script. They check what goes on the wire (client authentication,
//! exactly which parameters a poll carries, DTR-6/15/31) rather than
//! server behaviour.

// Helpers outside `#[test]` functions are test code too; clippy.toml's
// allow-unwrap-in-tests covers only the functions themselves.
#![allow(clippy::unwrap_used)]

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use dtr_client::{
    AdminClient, AdminError, Client, ClientAuth, ClientCredentialsRequest, ClientSecret,
    CompletionMode, DeferralCode, Error, ErrorCode, NotificationToken, TokenResult,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    authorization: Option<String>,
    body: String,
}

impl Seen {
    fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
}

/// A scripted answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

#[derive(Default)]
struct Mock {
    seen: Mutex<Vec<Seen>>,
    answers: Mutex<VecDeque<Answer>>,
}

async fn handler(
    State(m): State<Arc<Mock>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    m.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        uri: uri.to_string(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, hdrs, body) =
        m.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((500, vec![], "no answer scripted".into()));
    let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (k, v) in hdrs {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

async fn start() -> (String, Arc<Mock>) {
    let mock = Arc::new(Mock::default());
    let app = Router::new()
        .fallback(any(handler))
        .with_state(Arc::clone(&mock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), mock)
}

fn answer(m: &Mock, status: u16, body: &str) {
    m.answers
        .lock()
        .unwrap()
        .push_back((status, vec![], body.to_owned()));
}

fn answer_with(m: &Mock, status: u16, headers: Vec<(&'static str, String)>, body: &str) {
    m.answers
        .lock()
        .unwrap()
        .push_back((status, headers, body.to_owned()));
}

fn metadata_json(issuer: &str, cancellable: bool) -> String {
    let types = if cancellable {
        r#"["access_token","refresh_token","urn:ietf:params:oauth:token-type:deferral-code"]"#
    } else {
        r#"["access_token"]"#
    };
    format!(
        r#"{{"issuer":"{issuer}","token_endpoint":"{issuer}/token","revocation_endpoint":"{issuer}/revoke",
        "introspection_endpoint":"{issuer}/introspect","response_types_supported":[],
        "grant_types_supported":["client_credentials","urn:ietf:params:oauth:grant-type:deferred"],
        "revocation_endpoint_token_type_values_supported":{types},
        "deferred_token_response_supported":true}}"#
    )
}

fn basic() -> ClientAuth {
    ClientAuth::SecretBasic {
        client_id: "svc".into(),
        secret: ClientSecret::new("svc-secret"),
    }
}

async fn discovered(auth: ClientAuth, cancellable: bool) -> (Client, Arc<Mock>) {
    let (base, mock) = start().await;
    answer(&mock, 200, &metadata_json(&base, cancellable));
    let c = Client::discover(&format!("{base}/"), auth).await.unwrap();
    mock.seen.lock().unwrap().clear();
    (c, mock)
}

#[tokio::test]
async fn discovery_fetches_well_known_and_checks_issuer() {
    let (base, mock) = start().await;
    answer(&mock, 200, &metadata_json(&base, true));
    let c = Client::discover(&base, basic()).await.unwrap();
    assert!(c.metadata().supports_polling());
    let seen = mock.seen.lock().unwrap().clone();
    assert_eq!(seen[0].uri, "/.well-known/oauth-authorization-server");

    // RFC 8414 section 3.3: a document naming another issuer is refused.
    answer(&mock, 200, &metadata_json("https://evil.example", true));
    let r = Client::discover(&base, basic()).await;
    assert!(
        matches!(r, Err(Error::Discovery(ref m)) if m.contains("evil")),
        "{r:?}"
    );
}

#[tokio::test]
async fn deferred_client_credentials_request_and_response() {
    let (c, mock) = discovered(basic(), true).await;
    answer_with(
        &mock,
        400,
        vec![("cache-control", "no-store".into())],
        r#"{"error":"authorization_pending","deferral_code":"DC1","expires_in":600,"interval":5}"#,
    );
    let nt = NotificationToken::new("n".repeat(27));
    let reply = c
        .client_credentials_reply(&ClientCredentialsRequest {
            scope: Some("payments read".into()),
            deferred: true,
            notification_token: Some(nt),
            authorization_details: Some(serde_json::json!([{"type": "payment_initiation"}])),
        })
        .await
        .unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
    let d = match reply.result {
        TokenResult::Deferred(d) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!(d.code.secret(), "DC1");
    assert_eq!(d.client_id, "svc");
    assert_eq!(d.issuer, c.metadata().issuer);

    let seen = mock.seen.lock().unwrap()[0].clone();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("POST", "/token")
    );
    assert_eq!(
        seen.authorization.as_deref(),
        Some("Basic c3ZjOnN2Yy1zZWNyZXQ=")
    );
    let form = seen.form();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("client_credentials"));
    assert_eq!(get("scope"), Some("payments read"));
    assert_eq!(get("completion_mode"), Some("deferred"));
    assert_eq!(
        get("client_notification_token"),
        Some("n".repeat(27).as_str())
    );
    assert_eq!(
        get("authorization_details"),
        Some(r#"[{"type":"payment_initiation"}]"#)
    );
    assert_eq!(
        get("client_id"),
        None,
        "basic auth puts nothing in the body"
    );
}

#[tokio::test]
async fn synchronous_request_omits_completion_mode() {
    // DTR-2: without `deferred` the client sends no completion_mode at all.
    let (c, mock) = discovered(basic(), true).await;
    answer(&mock, 200, r#"{"access_token":"at","token_type":"Bearer"}"#);
    let r = c
        .client_credentials(&ClientCredentialsRequest::default())
        .await
        .unwrap();
    assert!(matches!(r, TokenResult::Token(ref t) if t.access_token == "at"));
    let form = mock.seen.lock().unwrap()[0].form();
    assert_eq!(
        form,
        [("grant_type".to_owned(), "client_credentials".to_owned())]
    );
}

#[tokio::test]
async fn interactive_mode_sends_both_values() {
    // DTR-1: `deferred` stays in the list beside `deferred_interactive`.
    let (c, mock) = discovered(basic(), true).await;
    answer(&mock, 200, r#"{"access_token":"at","token_type":"Bearer"}"#);
    let req = ClientCredentialsRequest {
        scope: Some("read".into()),
        ..Default::default()
    };
    let reply = c
        .client_credentials_with_mode(&req, CompletionMode::DeferredInteractive)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let form = mock.seen.lock().unwrap()[0].form();
    assert_eq!(
        form,
        [
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("scope".to_owned(), "read".to_owned()),
            (
                "completion_mode".to_owned(),
                "deferred deferred_interactive".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn poll_sends_only_grant_type_and_code() {
    // DTR-6, DTR-15
    let (c, mock) = discovered(
        ClientAuth::SecretPost {
            client_id: "svc".into(),
            secret: ClientSecret::new("s"),
        },
        true,
    )
    .await;
    answer(&mock, 400, r#"{"error":"slow_down"}"#);
    let r = c.poll_once(&DeferralCode::new("DC1")).await.unwrap();
    assert!(matches!(r, TokenResult::Error(ref e) if e.error == ErrorCode::SlowDown));
    let seen = mock.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.authorization, None);
    let names: Vec<String> = seen.form().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        ["grant_type", "deferral_code", "client_id", "client_secret"]
    );
    assert_eq!(
        seen.form()[0].1,
        "urn:ietf:params:oauth:grant-type:deferred"
    );
}

#[tokio::test]
async fn first_poll_params_follow_the_code_and_retry_after_is_read() {
    // The first poll of a deferral at the authorization endpoint: the
    // verifier and redirect URI after the code, nothing else added.
    // RFC 9110 section 10.2.3: Retry-After in delay-seconds reaches the
    // error (the poller waits for it); an HTTP date is not read.
    let (c, mock) = discovered(basic(), true).await;
    answer_with(
        &mock,
        503,
        vec![("retry-after", "7".into())],
        r#"{"error":"temporarily_unavailable"}"#,
    );
    answer_with(
        &mock,
        503,
        vec![("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".into())],
        r#"{"error":"temporarily_unavailable"}"#,
    );
    let reply = c
        .poll_once_with_reply(
            &DeferralCode::new("DC1"),
            &[
                ("code_verifier", "V"),
                ("redirect_uri", "http://127.0.0.1:1/callback"),
            ],
        )
        .await
        .unwrap();
    assert!(
        matches!(reply.result, TokenResult::Error(ref e) if e.error == ErrorCode::TemporarilyUnavailable && e.retry_after == Some(7)),
        "{:?}",
        reply.result
    );
    let seen = mock.seen.lock().unwrap()[0].clone();
    assert_eq!(
        seen.form(),
        [
            (
                "grant_type".to_owned(),
                "urn:ietf:params:oauth:grant-type:deferred".to_owned()
            ),
            ("deferral_code".to_owned(), "DC1".to_owned()),
            ("code_verifier".to_owned(), "V".to_owned()),
            (
                "redirect_uri".to_owned(),
                "http://127.0.0.1:1/callback".to_owned()
            ),
        ]
    );
    let r = c.poll_once(&DeferralCode::new("DC1")).await.unwrap();
    assert!(
        matches!(r, TokenResult::Error(ref e) if e.retry_after.is_none()),
        "{r:?}"
    );
}

#[tokio::test]
async fn client_auth_failure_keeps_www_authenticate() {
    let (c, mock) = discovered(basic(), true).await;
    answer_with(
        &mock,
        401,
        vec![("www-authenticate", r#"Basic realm="dtr""#.into())],
        r#"{"error":"invalid_client"}"#,
    );
    let reply = c.poll_once_reply(&DeferralCode::new("x")).await.unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.www_authenticate.as_deref(),
        Some(r#"Basic realm="dtr""#)
    );
    assert!(
        matches!(reply.result, TokenResult::Error(ref e) if e.error == ErrorCode::InvalidClient)
    );
}

#[tokio::test]
async fn cancel_revokes_with_the_deferral_code_hint() {
    // DTR-31
    let (c, mock) = discovered(
        ClientAuth::None {
            client_id: "pub".into(),
        },
        true,
    )
    .await;
    answer(&mock, 200, "");
    c.cancel(&DeferralCode::new("DC1")).await.unwrap();
    let seen = mock.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.uri, "/revoke");
    assert_eq!(
        seen.form(),
        [
            ("token".to_owned(), "DC1".to_owned()),
            (
                "token_type_hint".to_owned(),
                "urn:ietf:params:oauth:token-type:deferral-code".to_owned()
            ),
            ("client_id".to_owned(), "pub".to_owned()),
        ]
    );
}

#[tokio::test]
async fn cancel_is_refused_locally_when_not_advertised() {
    // DTR-7
    let (c, mock) = discovered(basic(), false).await;
    let r = c.cancel(&DeferralCode::new("DC1")).await;
    assert!(matches!(r, Err(Error::CancellationUnsupported)));
    assert!(mock.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn revocation_and_introspection_errors() {
    let (c, mock) = discovered(basic(), true).await;
    answer(&mock, 401, r#"{"error":"invalid_client"}"#);
    let r = c.revoke("at", Some("access_token")).await;
    assert!(
        matches!(r, Err(Error::OAuth { status: 401, ref error }) if error.error == ErrorCode::InvalidClient)
    );
    answer(&mock, 200, r#"{"active":false}"#);
    assert_eq!(c.introspect("at").await.unwrap()["active"], false);
    answer(&mock, 503, "<html>down</html>");
    assert!(matches!(
        c.introspect("at").await,
        Err(Error::UnexpectedResponse { status: 503, .. })
    ));
}

#[tokio::test]
async fn admin_calls_use_bearer_and_documented_paths() {
    let (base, mock) = start().await;
    let a = AdminClient::new(&base, "admin-t").unwrap();
    answer(&mock, 200, r#"[{"id":"d1","state":"pending"}]"#);
    let list = a.list(Some("pending"), Some("svc")).await.unwrap();
    assert_eq!(list.len(), 1);
    answer(&mock, 200, "{}");
    a.approve("d1", Some("read")).await.unwrap();
    answer(&mock, 200, "{}");
    a.deny("d1", None).await.unwrap();
    answer(&mock, 200, "{}");
    a.progress("d1", "document_review").await.unwrap();
    answer(&mock, 204, "");
    assert_eq!(
        a.disable_client("svc").await.unwrap(),
        serde_json::Value::Null
    );
    answer(
        &mock,
        409,
        r#"{"error":"invalid_request","error_description":"not pending"}"#,
    );
    let e = a.interaction("d1").await.unwrap_err();
    assert!(matches!(e, AdminError::Status { status: 409, .. }));
    assert_eq!(e.description().as_deref(), Some("not pending"));

    let seen = mock.seen.lock().unwrap().clone();
    let got: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.uri.as_str(), s.body.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("GET", "/admin/deferrals?state=pending&client_id=svc", ""),
            ("POST", "/admin/deferrals/d1/approve", r#"{"scope":"read"}"#),
            ("POST", "/admin/deferrals/d1/deny", "{}"),
            (
                "POST",
                "/admin/deferrals/d1/progress",
                r#"{"step":"document_review"}"#
            ),
            ("POST", "/admin/clients/svc/disable", "{}"),
            ("POST", "/admin/deferrals/d1/interaction", "{}"),
        ]
    );
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer admin-t")));
}
