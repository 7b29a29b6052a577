//! Security regressions: logs. A value a client chose cannot forge a log
//! line or reach the reader's terminal, in either log format.

use super::common::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dtr_server::logging::{subscriber, Format};
use std::sync::{Arc, Mutex};

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// A forged line: a newline, then what looks like a log line of ours,
/// with terminal escapes (ESC, C1 CSI) and a DEL around it.
const FORGED: &str =
    "svc\n2026-01-01T00:00:00Z  INFO dtr: \x1b[31madmin approved\x1b[0m \u{9b}2J\x7f";

/// Sends a token request whose client assertion (unsigned, never
/// verified) claims `iss` = [`FORGED`]; the refusal is logged with it.
async fn logged_by_forged_assertion(format: Format) -> String {
    let buf = Buffer::default();
    let sub = subscriber(
        format,
        tracing_subscriber::EnvFilter::new("info"),
        buf.clone(),
    );
    let _guard = tracing::subscriber::set_default(sub);
    let h = harness().await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        serde_json::json!({"iss": FORGED, "sub": FORGED, "aud": "x", "exp": 1}).to_string(),
    );
    let assertion = format!("{header}.{claims}.c2ln");
    let r = h
        .post_raw(
            "/token",
            None,
            "application/x-www-form-urlencoded",
            form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
            ])
            .into_bytes(),
        )
        .await;
    assert_eq!(r.error(), "invalid_client", "{}", r.text);
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        out.contains("client assertion refused"),
        "the refusal is logged: {out}"
    );
    out
}

/// Only line ends are raw; no line is the forged one.
fn assert_no_raw_controls(out: &str) {
    if let Some(c) = out.chars().find(|&c| c != '\n' && c.is_control()) {
        panic!("raw {c:?} in {out:?}");
    }
    assert!(
        !out.lines().any(|l| l.starts_with("2026-01-01")),
        "a forged line: {out}"
    );
}

#[tokio::test]
async fn text_logs_escape_control_characters_of_untrusted_values() {
    let out = logged_by_forged_assertion(Format::Text { ansi: false }).await;
    assert_no_raw_controls(&out);
    assert!(
        out.contains(r"svc\n2026-01-01"),
        "escaped, not dropped: {out}"
    );
    assert!(out.contains(r"\u{1b}[31madmin"), "{out}");
}

#[tokio::test]
async fn json_logs_escape_control_characters_of_untrusted_values() {
    let out = logged_by_forged_assertion(Format::Json).await;
    assert_no_raw_controls(&out);
    let mut seen = false;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["fields"]["message"] == "client assertion refused" {
            assert_eq!(v["fields"]["client"], FORGED, "the same value, escaped");
            seen = true;
        }
    }
    assert!(seen, "{out}");
}
