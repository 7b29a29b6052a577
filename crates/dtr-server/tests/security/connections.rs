//! Security regressions: connections. Sockets that make no progress are
//! closed, open connections are capped, and oversized or slow bodies are
//! refused with OAuth JSON errors.

use super::common::*;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../support/server.rs"]
mod server;

/// Generous: the machine running the tests may be busy.
const BOUND: Duration = Duration::from_secs(10);

/// A server with `[http]` limits and nothing else configured.
async fn start(http: &str) -> (server::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[http]\n{http}\n");
    let running = server::start(&config, &dir.path().join("dtr.db")).await;
    (running, dir)
}

async fn connect(running: &server::Running) -> TcpStream {
    let addr = running.issuer.trim_start_matches("http://");
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until the server closes the connection; `None` if it did not
/// within [`BOUND`]. A reset counts as closed.
async fn closed_within(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| all)
}

/// Reads one complete `GET /healthz` response (its body is `ok`-sized and
/// has a Content-Length).
async fn read_response(s: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&all)
        );
        all.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&all).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

#[tokio::test]
async fn half_sent_header_is_closed_after_header_timeout() {
    let (running, _dir) = start("header_timeout_ms = 300\nidle_timeout_ms = 600000").await;
    let mut s = connect(&running).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .unwrap();
    let got = closed_within(&mut s)
        .await
        .expect("a connection with half a header must be closed");
    assert!(got.is_empty(), "no answer to half a request: {got:?}");
    running.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let (running, _dir) = start("header_timeout_ms = 600000\nidle_timeout_ms = 300").await;
    let mut s = connect(&running).await;
    s.write_all(HEALTHZ).await.unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // Kept alive after the answer, then closed once idle for 300 ms.
    let rest = closed_within(&mut s)
        .await
        .expect("an idle keep-alive connection must be closed");
    assert!(rest.is_empty());

    // A connection that never sends anything is idle too.
    let mut silent = connect(&running).await;
    assert!(closed_within(&mut silent).await.is_some());
    running.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (running, _dir) = start("max_connections = 1\nidle_timeout_ms = 600000").await;
    let mut first = connect(&running).await;
    first.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut first).await.starts_with("HTTP/1.1 200"));

    // The second connection completes in the kernel backlog but is not
    // served while the first is open.
    let mut second = connect(&running).await;
    second.write_all(HEALTHZ).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_secs(1), second.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond max_connections: {early:?}");

    drop(first);
    let resp = tokio::time::timeout(BOUND, read_response(&mut second))
        .await
        .expect("served once the first connection closed");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    running.stop().await;
}

#[tokio::test]
async fn slow_body_times_out_with_a_json_408() {
    let (running, _dir) = start("body_timeout_ms = 300").await;
    let mut s = connect(&running).await;
    s.write_all(
        b"POST /token HTTP/1.1\r\nHost: test\r\n\
          Content-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 200\r\n\r\ngrant_type=",
    )
    .await
    .unwrap();
    let got = closed_within(&mut s)
        .await
        .expect("a trickled body must be answered and the connection closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{text}"
    );
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"], "invalid_request");
    running.stop().await;
}

/// 3 MiB: over the framework's own 2 MB default as well as our limit.
fn oversized() -> Vec<u8> {
    vec![b'a'; 3 * 1024 * 1024]
}

fn assert_json_413(r: &Resp, what: &str) {
    assert_eq!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{what}: {}",
        r.text
    );
    assert_eq!(r.error(), "invalid_request", "{what}: {}", r.text);
    assert!(r.json["error_description"].is_string(), "{what}");
    assert!(r.no_store(), "{what}");
}

#[tokio::test]
async fn oversized_bodies_are_json_413_on_every_endpoint() {
    let h = harness().await;
    let before = h.admin("GET", "/admin/deferrals", None).await.json;
    for (path, ct, auth) in [
        (
            "/token",
            "application/x-www-form-urlencoded",
            Some(basic(SVC)),
        ),
        (
            "/revoke",
            "application/x-www-form-urlencoded",
            Some(basic(SVC)),
        ),
        ("/register", "application/json", None),
        (
            "/admin/deferrals/dfr_x/approve",
            "application/json",
            Some(format!("Bearer {ADMIN}")),
        ),
    ] {
        // Without a length (streamed) ...
        let r = h.post_raw(path, auth.clone(), ct, oversized()).await;
        assert_json_413(&r, path);
        // ... and announced by Content-Length.
        let mut b = Request::post(path)
            .header(header::CONTENT_TYPE, ct)
            .header(header::CONTENT_LENGTH, oversized().len());
        if let Some(a) = &auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        let r = h.send(b.body(Body::from(oversized())).unwrap()).await;
        assert_json_413(&r, path);
    }
    // Nothing changed.
    assert_eq!(h.admin("GET", "/admin/deferrals", None).await.json, before);
}
