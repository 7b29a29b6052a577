//! A deferral at the authorization endpoint, client side, over real
//! sockets: `Client::authorize` with its loopback receiver, an
//! authorization server played by a small axum app that holds the client
//! to the contract of direct deferral (the redirect brings `deferral_code`,
//! `expires_in`, `interval`, `state` and `iss` as a form post; the first
//! poll must carry the PKCE verifier of the request's challenge and the
//! redirect URI, a later poll must not; every poll proves the key of
//! `dpop_jkt`), and answers pending states the client knows and one it
//! does not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dtr_client::{
    AuthorizationCodeRequest, AuthorizationOutcome, AuthorizationServerMetadata, Client,
    ClientAuth, CompletionMode, DeferredAt, DpopKey, PollOutcome, ResponseMode, SystemClock,
};
use dtr_proto::secret::sha256_b64;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake server learnt from the authorization request, and the
/// polls it received.
#[derive(Default)]
struct Contract {
    challenge: String,
    redirect_uri: String,
    dpop_jkt: String,
    polls: Vec<HashMap<String, String>>,
    violations: Vec<String>,
}

type Shared = Arc<Mutex<Contract>>;

/// The thumbprint of the key in a DPoP proof's header.
fn proof_jkt(headers: &HeaderMap) -> Option<String> {
    let proof = headers.get("DPoP")?.to_str().ok()?;
    let header = URL_SAFE_NO_PAD.decode(proof.split('.').next()?).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    dtr_proto::dpop::jwk_thumbprint(header.get("jwk")?.as_object()?)
}

fn oauth_error(body: Value) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("cache-control", "no-store")],
        axum::Json(body),
    )
        .into_response()
}

async fn token(
    State(c): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let params: HashMap<String, String> = form.into_iter().collect();
    let mut c = c.lock().unwrap();
    let n = c.polls.len();
    c.polls.push(params.clone());
    let mut broken = Vec::new();
    if params.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:deferred")
        || params.get("deferral_code").map(String::as_str) != Some("DC-1")
    {
        broken.push(format!("poll {n}: not a poll of DC-1"));
    }
    if params.contains_key("completion_mode") {
        broken.push(format!("poll {n}: completion_mode on a poll (DTR-6)"));
    }
    if proof_jkt(&headers).as_deref() != Some(c.dpop_jkt.as_str()) {
        broken.push(format!("poll {n}: no proof of the dpop_jkt key (DTR-13)"));
    }
    let verifier = params.get("code_verifier");
    if n == 0 {
        if verifier.map(|v| sha256_b64(v)) != Some(c.challenge.clone()) {
            broken.push("first poll: no verifier of the challenge".into());
        }
        if params.get("redirect_uri") != Some(&c.redirect_uri) {
            broken.push("first poll: not the request's redirect_uri".into());
        }
    } else if verifier.is_some() || params.contains_key("redirect_uri") {
        broken.push(format!("poll {n}: the verifier presented again"));
    }
    if !broken.is_empty() {
        c.violations.extend(broken);
        // What the server does: the deferral is dead.
        return oauth_error(json!({"error": "invalid_grant"}));
    }
    match n {
        0 => oauth_error(json!({
            "error": "interaction_pending",
            "interaction_uri": "https://as.example/interact/h1"
        })),
        1 => oauth_error(json!({
            "error": "x_profile_state",
            "error_description": "step=queued"
        })),
        _ => (
            StatusCode::OK,
            [("cache-control", "no-store")],
            axum::Json(json!({
                "access_token": "AT",
                "token_type": "DPoP",
                "expires_in": 3600,
                "refresh_token": "RT",
                "scope": "payments"
            })),
        )
            .into_response(),
    }
}

#[tokio::test]
async fn deferral_code_on_the_redirect_is_polled_with_the_verifier_once() {
    let shared: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/token", post(token))
        .with_state(Arc::clone(&shared));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut md = AuthorizationServerMetadata {
        issuer: issuer.clone(),
        token_endpoint: Some(format!("{issuer}/token")),
        ..Default::default()
    };
    md.other.insert(
        "authorization_endpoint".into(),
        format!("{issuer}/authorize").into(),
    );
    md.other.insert(
        "authorization_response_iss_parameter_supported".into(),
        true.into(),
    );
    let key = DpopKey::generate();
    let client = Client::from_metadata(
        md,
        ClientAuth::None {
            client_id: "cli".into(),
        },
    )
    .with_dpop(key.clone());
    let req = AuthorizationCodeRequest {
        scope: Some("payments".into()),
        completion_mode: CompletionMode::Deferred,
        response_mode: ResponseMode::FormPost,
        timeout: Duration::from_secs(20),
        ..Default::default()
    };

    // The "browser": the server deferred after login and consent, so it
    // posts the deferral to the redirect URI (form_post).
    let mut delivered = None;
    let outcome = client
        .authorize(
            &req,
            |url| {
                let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
                {
                    let mut c = shared.lock().unwrap();
                    c.challenge = q["code_challenge"].clone();
                    c.redirect_uri = q["redirect_uri"].clone();
                    c.dpop_jkt = q["dpop_jkt"].clone();
                }
                assert_eq!(q["completion_mode"], "deferred");
                assert_eq!(q["response_mode"], "form_post");
                let issuer = issuer.clone();
                delivered = Some(tokio::spawn(async move {
                    reqwest::Client::new()
                        .post(&q["redirect_uri"])
                        .form(&[
                            ("deferral_code", "DC-1"),
                            ("expires_in", "60"),
                            ("interval", "1"),
                            ("state", q["state"].as_str()),
                            ("iss", issuer.as_str()),
                        ])
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                }));
            },
            |r| assert_eq!(r.kind(), "deferral_code"),
        )
        .await
        .unwrap();
    assert_eq!(delivered.unwrap().await.unwrap(), 200);
    let AuthorizationOutcome::Deferred(d) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(d.at, DeferredAt::AuthorizationEndpoint);
    assert_eq!(d.deferral.dpop_jkt.as_deref(), Some(key.thumbprint()));
    // Nothing was polled before the poller ran.
    assert!(shared.lock().unwrap().polls.is_empty());

    let mut poller = d.poller(&client, SystemClock);
    let mut seen = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        poller.run(|p| seen.push((p.error.as_str().to_owned(), p.interaction_uri.clone()))),
    )
    .await
    .unwrap()
    .unwrap();
    let c = shared.lock().unwrap();
    assert!(c.violations.is_empty(), "{:?}", c.violations);
    let PollOutcome::Token(t) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (t.access_token.as_str(), t.token_type.as_str()),
        ("AT", "DPoP")
    );
    assert_eq!(t.refresh_token.as_deref(), Some("RT"));
    assert_eq!(c.polls.len(), 3);
    // The newer state and one no client knows both meant "keep polling".
    assert_eq!(
        seen,
        [
            (
                "interaction_pending".to_owned(),
                Some("https://as.example/interact/h1".to_owned())
            ),
            ("x_profile_state".to_owned(), None),
        ]
    );
}
