//! A plain-http callback receiver on loopback for the binary's tests:
//! counts callbacks per deferral code and answers 204.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain-http receiver on loopback counting callbacks per deferral code.
pub async fn receiver() -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", l.local_addr().unwrap());
    let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let sink = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            let body: serde_json::Value =
                                serde_json::from_slice(&buf[i + 4..i + 4 + len])
                                    .unwrap_or_default();
                            if let Some(code) = body["deferral_code"].as_str() {
                                *sink.lock().unwrap().entry(code.to_owned()).or_default() += 1;
                            }
                            let _ = s
                                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, counts)
}
