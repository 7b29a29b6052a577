//! What DPoP (RFC 9449) and `private_key_jwt` (RFC 7523) put on the wire,
//! against a small scripted HTTP server: a fresh proof per request for the
//! exact endpoint, the `use_dpop_nonce` retry (once), nonces remembered
//! per server, local refusal of bound deferrals without their key
//! (DTR-13), `ath` at a resource, and fresh client assertions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dtr_client::{
    AuthorizationServerMetadata, Client, ClientAuth, ClientCredentialsRequest, ClientSecret,
    DpopKey, Error, ErrorCode, Es256Key, PollOutcome, Poller, SystemClock, TokenResult,
};
use dtr_proto::dpop::{verify_proof, ProofContext, VerifiedProof};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    dpop: Option<String>,
    body: String,
}

impl Seen {
    fn param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.body.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

#[derive(Default)]
struct Mock {
    seen: Mutex<Vec<Seen>>,
    answers: Mutex<VecDeque<Answer>>,
}

impl Mock {
    fn script(&self, answers: &[Answer]) {
        self.answers.lock().unwrap().extend(answers.iter().cloned());
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handler(
    State(m): State<Arc<Mock>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    m.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        authorization: h("authorization"),
        dpop: h("dpop"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, hdrs, body) =
        m.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((500, vec![], "no answer scripted"));
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

fn metadata(base: &str) -> AuthorizationServerMetadata {
    AuthorizationServerMetadata {
        issuer: base.to_owned(),
        token_endpoint: Some(format!("{base}/token")),
        revocation_endpoint: Some(format!("{base}/revoke")),
        revocation_endpoint_token_type_values_supported: vec![
            "urn:ietf:params:oauth:token-type:deferral-code".into(),
        ],
        ..Default::default()
    }
}

fn basic() -> ClientAuth {
    ClientAuth::SecretBasic {
        client_id: "svc".into(),
        secret: ClientSecret::new("svc-secret"),
    }
}

fn now() -> i64 {
    dtr_client::clock::now_unix_ms() / 1000
}

/// Verifies a proof with the server-side rules for `method` on `url`.
fn verified(proof: &str, method: &str, url: &str, at: Option<&str>) -> VerifiedProof {
    let ctx = ProofContext {
        method,
        url,
        now: now(),
        iat_window: 60,
        access_token: at,
    };
    verify_proof(proof, &ctx).unwrap_or_else(|e| panic!("proof for {method} {url}: {e}"))
}

const USE_NONCE: &str = r#"{"error":"use_dpop_nonce","error_description":"nonce"}"#;
const TOKEN: &str = r#"{"access_token":"at-1","token_type":"DPoP","expires_in":60}"#;
const DEFERRED: &str =
    r#"{"error":"authorization_pending","deferral_code":"DC1","expires_in":600,"interval":1}"#;

fn deferred() -> ClientCredentialsRequest {
    ClientCredentialsRequest {
        scope: Some("payments".into()),
        deferred: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn use_dpop_nonce_is_retried_once_with_the_nonce() {
    let (base, mock) = start().await;
    let key = DpopKey::generate();
    let c = Client::from_metadata(metadata(&base), basic()).with_dpop(key.clone());
    mock.script(&[
        (400, vec![("dpop-nonce", "n-1")], USE_NONCE),
        (200, vec![("dpop-nonce", "n-2")], TOKEN),
    ]);
    let r = c.client_credentials(&deferred()).await.unwrap();
    assert!(
        matches!(r, TokenResult::Token(ref t) if t.token_type == "DPoP"),
        "{r:?}"
    );
    let seen = mock.seen();
    assert_eq!(seen.len(), 2, "exactly one retry");
    let url = format!("{base}/token");
    let first = verified(seen[0].dpop.as_deref().unwrap(), "POST", &url, None);
    let second = verified(seen[1].dpop.as_deref().unwrap(), "POST", &url, None);
    assert_eq!(first.nonce, None);
    assert_eq!(second.nonce.as_deref(), Some("n-1"));
    assert_ne!(first.jti, second.jti, "a fresh proof for the retry");
    assert_eq!(first.jkt, key.thumbprint());
    // The same request was repeated.
    assert_eq!(seen[1].body, seen[0].body);
    // The latest nonce is remembered for the next proof.
    assert_eq!(c.dpop_nonce(&url).as_deref(), Some("n-2"));
    mock.script(&[(200, vec![], TOKEN)]);
    c.client_credentials(&deferred()).await.unwrap();
    let third = verified(mock.seen()[2].dpop.as_deref().unwrap(), "POST", &url, None);
    assert_eq!(third.nonce.as_deref(), Some("n-2"));
}

#[tokio::test]
async fn a_second_use_dpop_nonce_is_returned_not_retried() {
    let (base, mock) = start().await;
    let c = Client::from_metadata(metadata(&base), basic()).with_dpop(DpopKey::generate());
    mock.script(&[
        (400, vec![("dpop-nonce", "n-1")], USE_NONCE),
        (400, vec![("dpop-nonce", "n-2")], USE_NONCE),
    ]);
    let r = c.client_credentials(&deferred()).await.unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::UseDpopNonce));
    assert_eq!(mock.seen().len(), 2);
}

#[tokio::test]
async fn use_dpop_nonce_without_a_nonce_is_not_retried() {
    let (base, mock) = start().await;
    let c = Client::from_metadata(metadata(&base), basic()).with_dpop(DpopKey::generate());
    mock.script(&[(400, vec![], USE_NONCE)]);
    let r = c.client_credentials(&deferred()).await.unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::UseDpopNonce));
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn without_a_key_no_proof_is_sent() {
    let (base, mock) = start().await;
    let c = Client::from_metadata(metadata(&base), basic());
    mock.script(&[(400, vec![], DEFERRED)]);
    let TokenResult::Deferred(d) = c.client_credentials(&deferred()).await.unwrap() else {
        panic!("not deferred")
    };
    assert_eq!(d.dpop_jkt, None, "an unbound deferral");
    assert!(mock.seen()[0].dpop.is_none());
}

#[tokio::test]
async fn bound_deferral_needs_its_key_locally() {
    // DTR-13: a bound code is never sent without a proof of its key.
    let (base, mock) = start().await;
    let key = DpopKey::generate();
    let c = Client::from_metadata(metadata(&base), basic()).with_dpop(key.clone());
    mock.script(&[(400, vec![], DEFERRED)]);
    let TokenResult::Deferred(d) = c.client_credentials(&deferred()).await.unwrap() else {
        panic!("not deferred")
    };
    assert_eq!(d.dpop_jkt.as_deref(), Some(key.thumbprint()));
    // Saved and resumed: the binding survives.
    let d: dtr_client::Deferral =
        serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();

    let keyless = Client::from_metadata(metadata(&base), basic());
    let other = Client::from_metadata(metadata(&base), basic()).with_dpop(DpopKey::generate());
    assert!(matches!(
        keyless.poll_deferral(&d).await,
        Err(Error::DpopKeyRequired { ref jkt }) if jkt == key.thumbprint()
    ));
    assert!(matches!(
        other.poll_deferral(&d).await,
        Err(Error::DpopKeyMismatch { .. })
    ));
    assert!(matches!(
        keyless.cancel_deferral(&d).await,
        Err(Error::DpopKeyRequired { .. })
    ));
    let mut poller = Poller::new(&keyless, SystemClock, &d);
    poller.waker().notify_one();
    let e = poller.run(|_| {}).await.unwrap_err();
    assert!(e.to_string().contains("DPoP-bound"), "{e}");
    assert_eq!(mock.seen().len(), 1, "nothing was sent");

    // The right key polls and cancels, each with a proof for its endpoint.
    mock.script(&[(200, vec![], TOKEN), (200, vec![], "")]);
    let mut poller = Poller::new(&c, SystemClock, &d);
    assert!(matches!(
        poller.run(|_| {}).await.unwrap(),
        PollOutcome::Token(_)
    ));
    c.cancel_deferral(&d).await.unwrap();
    let seen = mock.seen();
    let poll = &seen[1];
    assert_eq!(poll.param("deferral_code").as_deref(), Some("DC1"));
    let p = verified(
        poll.dpop.as_deref().unwrap(),
        "POST",
        &format!("{base}/token"),
        None,
    );
    assert_eq!(p.jkt, key.thumbprint());
    let revoke = &seen[2];
    assert_eq!(revoke.path, "/revoke");
    let p = verified(
        revoke.dpop.as_deref().unwrap(),
        "POST",
        &format!("{base}/revoke"),
        None,
    );
    assert_eq!(p.jkt, key.thumbprint());
}

#[tokio::test]
async fn revocation_nonce_retry() {
    let (base, mock) = start().await;
    let c = Client::from_metadata(metadata(&base), basic()).with_dpop(DpopKey::generate());
    mock.script(&[
        (400, vec![("dpop-nonce", "rn")], USE_NONCE),
        (200, vec![], ""),
    ]);
    c.cancel(&dtr_client::DeferralCode::new("DC1"))
        .await
        .unwrap();
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    let p = verified(
        seen[1].dpop.as_deref().unwrap(),
        "POST",
        &format!("{base}/revoke"),
        None,
    );
    assert_eq!(p.nonce.as_deref(), Some("rn"));
}

#[tokio::test]
async fn resource_call_with_dpop_and_bearer() {
    let (base, mock) = start().await;
    let key = DpopKey::generate();
    let c = Client::from_metadata(metadata(&base), basic()).with_dpop(key.clone());
    let url = format!("{base}/api/thing?x=1");
    mock.script(&[
        (
            401,
            vec![
                ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
                ("dpop-nonce", "rs-n"),
            ],
            "",
        ),
        (200, vec![], r#"{"ok":true}"#),
        (200, vec![], r#"{"ok":true}"#),
    ]);
    let r = c.fetch_resource(&url, "tok", "DPoP").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["ok"], true);
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.method, "GET");
        assert_eq!(s.authorization.as_deref(), Some("DPoP tok"));
    }
    let htu = format!("{base}/api/thing");
    let p = verified(seen[1].dpop.as_deref().unwrap(), "GET", &htu, Some("tok"));
    assert_eq!(p.nonce.as_deref(), Some("rs-n"));
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(seen[1].dpop.as_deref().unwrap().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["htu"], htu.as_str(), "no query in htu");

    c.fetch_resource(&url, "plain", "bearer").await.unwrap();
    let s = &mock.seen()[2];
    assert_eq!(s.authorization.as_deref(), Some("Bearer plain"));
    assert!(s.dpop.is_none());

    let keyless = Client::from_metadata(metadata(&base), basic());
    assert!(matches!(
        keyless.fetch_resource(&url, "tok", "DPoP").await,
        Err(Error::DpopKeyRequired { .. })
    ));
}

#[tokio::test]
async fn private_key_jwt_sends_a_fresh_assertion_per_request() {
    let (base, mock) = start().await;
    let key = Es256Key::generate();
    let auth = ClientAuth::PrivateKeyJwt {
        client_id: "svc-jwt".into(),
        key: key.clone(),
        kid: Some("k1".into()),
    };
    let c = Client::from_metadata(metadata(&base), auth).with_dpop(DpopKey::generate());
    mock.script(&[
        (400, vec![("dpop-nonce", "n")], USE_NONCE),
        (200, vec![], TOKEN),
    ]);
    c.client_credentials(&deferred()).await.unwrap();
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk()).unwrap();
    let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let token_url = format!("{base}/token");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[token_url.as_str()]);
    let mut jtis = Vec::new();
    for s in &seen {
        assert!(s.authorization.is_none(), "no Basic beside an assertion");
        assert_eq!(
            s.param("client_assertion_type").as_deref(),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        assert!(s.param("client_secret").is_none());
        let a = s.param("client_assertion").unwrap();
        let claims = jsonwebtoken::decode::<Value>(&a, &dk, &v).unwrap().claims;
        assert_eq!(claims["iss"], "svc-jwt");
        assert_eq!(claims["sub"], "svc-jwt");
        assert_eq!(claims["aud"], token_url.as_str());
        jtis.push(claims["jti"].as_str().unwrap().to_owned());
    }
    assert_ne!(jtis[0], jtis[1], "assertions are single-use");
}
