//! AuthZEN against a real PDP: Cerbos (`support/cerbos.rs`), started by
//! each test with a policy directory the test writes.
//! - The openid/authzen Todo interop decision vectors
//!   (`fixtures/authzen-todo`) replayed through dtr's PDP client
//!   (discovery, one batch), to show its requests are well-formed.
//! - Token requests decided by Cerbos through the router: the gate, the
//!   scopes and the authorization details, and their synchronous errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/cerbos.rs"]
mod cerbos;
mod common;

use axum::http::StatusCode;
use common::*;
use dtr_server::config::AuthzenConfig;
use dtr_server::pdp::Pdp;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/authzen-todo");

fn pdp_client(base: &str) -> Pdp {
    let http = dtr_server::outbound::SafeHttp::new(
        dtr_server::outbound::OutboundConfig {
            dev_mode: true,
            connect_timeout: std::time::Duration::from_secs(2),
            timeout: std::time::Duration::from_secs(5),
            max_body: 1 << 20,
            extra_root_pem: None,
        },
        Arc::new(dtr_server::outbound::SystemResolver),
    );
    Pdp::new(
        AuthzenConfig {
            pdp: base.into(),
            token: None,
            timeout_ms: 5000,
            retries: 0,
            breaker_threshold: 5,
            breaker_cooldown_ms: 1000,
            access_request_origins: vec![],
        },
        &http,
        Arc::new(dtr_server::clock::SystemClock),
    )
}

/// An entity of this revision of the vectors in Authorization API 1.0
/// form: `type` and `id`, every other member under `properties`.
fn entity(v: &Value) -> Value {
    let mut props = Map::new();
    let mut out = Map::new();
    for (k, x) in v.as_object().unwrap() {
        if k == "type" || k == "id" {
            out.insert(k.clone(), x.clone());
        } else {
            props.insert(k.clone(), x.clone());
        }
    }
    if !props.is_empty() {
        out.insert("properties".into(), Value::Object(props));
    }
    Value::Object(out)
}

fn todo_policies() -> Vec<(&'static str, String)> {
    ["todo.yaml", "user.yaml"]
        .iter()
        .map(|f| {
            (
                *f,
                std::fs::read_to_string(format!("{FIXTURES}/cerbos/{f}")).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
#[cfg_attr(
    dtr_no_cerbos,
    ignore = "needs Cerbos: npm ci in interop/cerbos, or DTR_CERBOS_BIN"
)]
async fn todo_interop_vectors_replay_through_the_pdp_client() {
    let policies = todo_policies();
    let refs: Vec<(&str, &str)> = policies.iter().map(|(n, y)| (*n, y.as_str())).collect();
    let Some(c) = cerbos::start("todo_interop_vectors_replay_through_the_pdp_client", &refs).await
    else {
        return;
    };
    let pdp = pdp_client(&c.base);
    // Discovery: Cerbos names itself as the PDP we asked.
    let m = pdp.metadata().await.unwrap();
    assert_eq!(m.evaluations, format!("{}/access/v1/evaluations", c.base));

    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{FIXTURES}/decisions-authorization-api-1_0-00.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let vectors = vectors["evaluation"].as_array().unwrap();
    assert_eq!(vectors.len(), 40);
    let expected: Vec<bool> = vectors
        .iter()
        .map(|v| v["expected"].as_bool().unwrap())
        .collect();
    assert!(expected.iter().any(|e| !e) && expected.iter().any(|e| *e));

    // All in one batch, each evaluation complete.
    let evaluations: Vec<Value> = vectors
        .iter()
        .map(|v| {
            let r = &v["request"];
            json!({
                "subject": entity(&r["subject"]),
                "action": r["action"],
                "resource": entity(&r["resource"]),
            })
        })
        .collect();
    let decisions = pdp
        .evaluate(&json!({"evaluations": evaluations}))
        .await
        .unwrap();
    let got: Vec<bool> = decisions.iter().map(|d| d.allowed).collect();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "vector {i}: {}", vectors[i]["request"]);
    }

    // The same, as batches of one subject and action each, the way dtr
    // asks: the shared members as top-level defaults.
    for chunk in vectors.chunks(1) {
        let r = &chunk[0]["request"];
        let body = json!({
            "subject": entity(&r["subject"]),
            "action": r["action"],
            "evaluations": [{"resource": entity(&r["resource"])}],
        });
        let d = pdp.evaluate(&body).await.unwrap();
        assert_eq!(d[0].allowed, chunk[0]["expected"].as_bool().unwrap(), "{r}");
    }
}

/// dtr's own policy for Cerbos: grants of client credentials for every
/// client but `other`; scope `read` and `payments`, never `admin`; payment
/// details up to 1000.
const DTR_POLICIES: &[(&str, &str)] = &[
    (
        "grant.yaml",
        r#"apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: grant
  rules:
    - actions: ["request"]
      effect: EFFECT_ALLOW
      roles: ["*"]
      condition:
        match:
          expr: request.principal.id != "other"
"#,
    ),
    (
        "scope.yaml",
        r#"apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: scope
  rules:
    - actions: ["request"]
      effect: EFFECT_ALLOW
      roles: ["*"]
      condition:
        match:
          expr: request.resource.id in ["read", "payments"]
"#,
    ),
    (
        "payment.yaml",
        r#"apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: payment
  rules:
    - actions: ["request"]
      effect: EFFECT_ALLOW
      roles: ["*"]
      condition:
        match:
          expr: request.resource.attr.amount <= 1000
"#,
    ),
];

fn dtr_config(pdp: &str) -> String {
    format!(
        r#"
issuer = "http://127.0.0.1:8080"
dev_mode = true
[admin]
token = "{ADMIN}"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments admin"
[[clients]]
client_id = "other"
client_secret = "other-secret"
token_endpoint_auth_method = "client_secret_post"
scope = "read"
[[policy]]
action = "authzen"
[authzen]
pdp = "{pdp}"
"#
    )
}

#[tokio::test]
#[cfg_attr(
    dtr_no_cerbos,
    ignore = "needs Cerbos: npm ci in interop/cerbos, or DTR_CERBOS_BIN"
)]
async fn token_requests_decided_by_cerbos() {
    let Some(c) = cerbos::start("token_requests_decided_by_cerbos", DTR_POLICIES).await else {
        return;
    };
    let h = harness_with(&dtr_config(&c.base)).await;
    let cc = |scope: &'static str| [("grant_type", "client_credentials"), ("scope", scope)];

    let r = h.post("/token", SVC, &cc("read payments")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let r = h.post("/token", SVC, &cc("read admin")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "invalid_scope", "{}", r.text);

    let small = json!([{"type": "payment", "amount": 50}]).to_string();
    let big = json!([{"type": "payment", "amount": 5000}]).to_string();
    for (details, want) in [
        (&small, None),
        (&big, Some("invalid_authorization_details")),
    ] {
        let r = h
            .post(
                "/token",
                SVC,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "read"),
                    ("authorization_details", details),
                ],
            )
            .await;
        match want {
            None => assert_eq!(r.status, StatusCode::OK, "{}", r.text),
            Some(e) => assert_eq!(r.error(), e, "{}", r.text),
        }
    }

    let r = h.post_other("/token", &cc("read")).await;
    assert_eq!(r.error(), "access_denied", "{}", r.text);

    // A plain denial is never deferred, opt-in or not.
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "admin"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    assert_eq!(r.error(), "invalid_scope");
    assert!(r.json.get("deferral_code").is_none());

    // Cerbos gone: fail closed.
    drop(c);
    let r = h.post("/token", SVC, &cc("read")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.error(), "temporarily_unavailable");
}
