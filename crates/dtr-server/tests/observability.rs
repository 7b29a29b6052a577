//! Logs and metrics as an operator sees them.
//!
//! `redaction`: DTR-36 says logs never hold deferral codes, notification
//! tokens, access tokens, client secrets (and, here, the admin token) in
//! clear text. A full deferral flow runs with every event of every crate
//! captured at TRACE level, in the JSON format of `dtr serve --log-format
//! json`, and the capture is searched for each secret that went over the
//! wire. The same capture must show the request ids, so the test fails if
//! capturing itself broke.
//!
//! The subscriber is process-global (the store logs from blocking threads),
//! so this file holds exactly one test that installs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine;
use common::*;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

const NOTIFICATION_TOKEN: &str = "notif-token-0123456789abcdefghij";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_and_request_ids_over_a_full_flow() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let h = harness().await;

    // Create (with a notification token, DTR-12), poll, poll too fast
    // (slow_down), approve, redeem, poll again (already redeemed).
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
                ("client_notification_token", NOTIFICATION_TOKEN),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let code = r.json["deferral_code"].as_str().unwrap().to_owned();
    assert_eq!(h.poll(&code).await.error(), "authorization_pending");
    assert_eq!(h.poll(&code).await.error(), "slow_down");
    let id = h.newest_id().await;
    let r = h
        .admin(
            "POST",
            &format!("/admin/deferrals/{id}/approve"),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.clock.advance_secs(10);
    let r = h.poll(&code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let access_token = r.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(h.poll(&code).await.error(), "invalid_grant");

    // Revoke: the redeemed code (no-op, DTR-33), the access token, and a
    // second deferral cancelled while pending (DTR-32) by the other client
    // (client_secret_post: the secret travels in the body).
    let revoke = |token: String| {
        let h = &h;
        async move {
            h.post(
                "/revoke",
                SVC,
                &[
                    ("token", token.as_str()),
                    ("token_type_hint", dtr_proto::TOKEN_TYPE_DEFERRAL_CODE),
                ],
            )
            .await
        }
    };
    assert_eq!(revoke(code.clone()).await.status, StatusCode::OK);
    let r = h
        .post("/revoke", SVC, &[("token", access_token.as_str())])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .post_other(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
            ],
        )
        .await;
    let other_code = r.json["deferral_code"].as_str().unwrap().to_owned();
    let r = h
        .post_other("/revoke", &[("token", other_code.as_str())])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .post_other(
            "/token",
            &[("grant_type", POLL), ("deferral_code", other_code.as_str())],
        )
        .await;
    assert_eq!(r.error(), "access_denied");

    // A request id from the caller is kept and echoed.
    let resp = h
        .send(
            Request::get("/healthz")
                .header("x-request-id", "trace-me-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        resp.headers.get("x-request-id").unwrap().to_str().unwrap(),
        "trace-me-42"
    );
    // A generated one otherwise; a header that could forge log fields is
    // replaced.
    let resp = h
        .send(
            Request::get("/healthz")
                .header("x-request-id", "a\"b")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let generated = resp.headers.get("x-request-id").unwrap().to_str().unwrap();
    assert!(
        generated.len() >= 16 && !generated.contains('"'),
        "{generated}"
    );

    let logs = capture.text();

    // The capture works and carries request ids: otherwise the absence of
    // secrets below would prove nothing.
    assert!(logs.contains("deferral created"), "{logs}");
    assert!(logs.contains(&id), "the deferral id is loggable: {logs}");
    assert!(logs.contains("\"request_id\":\"trace-me-42\""), "{logs}");
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
    let request_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"message\":\"request\""))
        .collect();
    assert!(request_lines.len() >= 12, "{logs}");
    assert!(
        request_lines.iter().all(|l| l.contains("\"request_id\":")),
        "every access line carries its request id: {logs}"
    );

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", SVC.0, SVC.1));
    let signature = access_token.rsplit('.').next().unwrap().to_owned();
    for (what, secret) in [
        ("deferral code", code.as_str()),
        ("cancelled deferral code", other_code.as_str()),
        ("notification token", NOTIFICATION_TOKEN),
        ("client secret", SVC.1),
        ("client secret (post)", OTHER.1),
        ("basic credentials", basic.as_str()),
        ("access token", access_token.as_str()),
        ("access token signature", signature.as_str()),
        ("admin token", ADMIN),
    ] {
        assert!(
            !logs.contains(secret),
            "DTR-36: the {what} appears in the logs"
        );
    }

    // The same flow in the metrics: outcomes and resolutions, no secret in
    // any label.
    let _still_pending = h.defer("payments").await;
    dtr_server::worker::refresh_pending_gauge(&h.state).await;
    let m = h.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    for expected in [
        r#"dtr_http_requests_total{endpoint="/token",method="POST",grant_type="client_credentials",outcome="authorization_pending"} 3"#,
        r#"dtr_http_requests_total{endpoint="/token",method="POST",grant_type="deferred",outcome="slow_down"} 1"#,
        r#"dtr_http_requests_total{endpoint="/token",method="POST",grant_type="deferred",outcome="ok"} 1"#,
        r#"dtr_http_requests_total{endpoint="/token",method="POST",grant_type="deferred",outcome="invalid_grant"} 1"#,
        r#"dtr_http_requests_total{endpoint="/admin/deferrals/{id}/approve",method="POST",grant_type="none",outcome="ok"} 1"#,
        r#"dtr_deferrals_created_total{client_id="svc",grant_type="client_credentials"} 2"#,
        r#"dtr_deferrals_pending{client_id="svc"} 1"#,
        r#"dtr_deferrals_resolved_total{outcome="approved"} 1"#,
        r#"dtr_deferrals_resolved_total{outcome="redeemed"} 1"#,
        r#"dtr_deferrals_resolved_total{outcome="cancelled"} 1"#,
        r#"dtr_poll_slow_down_total{client_id="svc"} 1"#,
        r#"dtr_deferral_resolution_seconds_count{outcome="redeemed"} 1"#,
    ] {
        assert!(m.text.contains(expected), "missing {expected}:\n{}", m.text);
    }
    for secret in [
        code.as_str(),
        other_code.as_str(),
        access_token.as_str(),
        ADMIN,
        SVC.1,
    ] {
        assert!(!m.text.contains(secret));
    }
}
