//! Callbacks to a real HTTPS receiver whose certificate comes from a test
//! certificate authority, trusted through `callbacks.extra_root_ca`
//! (DTR-26, DTR-28): the production path (https, certificate and host name
//! checked, connection pinned), on loopback only, which `dev_mode` allows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dtr_client::{
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, NotificationToken,
    TokenResult,
};
use dtr_server::clock::SystemClock;
use dtr_server::config::{ConfigFile, Overrides};
use dtr_server::AppState;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

struct TestCa {
    ca_pem: String,
    leaf_der: Vec<u8>,
    leaf_key_der: Vec<u8>,
}

fn test_ca() -> TestCa {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dtr test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    TestCa {
        ca_pem: ca.pem(),
        leaf_der: leaf.der().to_vec(),
        leaf_key_der: leaf_key.serialize_der(),
    }
}

#[derive(Debug, Clone)]
struct Got {
    request_line: String,
    authorization: Option<String>,
    body: String,
}

/// A minimal HTTPS/1.1 receiver: reads one request per connection,
/// records it, answers 204.
async fn https_receiver(ca: &TestCa) -> (u16, Arc<Mutex<Vec<Got>>>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = vec![rustls::pki_types::CertificateDer::from(ca.leaf_der.clone())];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ca.leaf_key_der.clone().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let sink = sink.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read headers, then Content-Length bytes of body.
                let (head, body) = loop {
                    let n = tls.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).into_owned();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        while buf.len() < i + 4 + len {
                            let n = tls.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        break (head, String::from_utf8_lossy(&buf[i + 4..]).into_owned());
                    }
                };
                let authorization = head.lines().find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                        .map(|(_, v)| v.trim().to_owned())
                });
                sink.lock().unwrap().push(Got {
                    request_line: head.lines().next().unwrap_or("").to_owned(),
                    authorization,
                    body,
                });
                let _ = tls
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, got)
}

#[tokio::test]
async fn callback_over_https_with_a_private_ca() {
    let ca = test_ca();
    let (port, got) = https_receiver(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let config = format!(
        r#"
dev_mode = true
[deferral]
expires_in = 60
interval = 1
[admin]
token = "tls-admin-token-0123456789abcdefghij"
[callbacks]
delay_ms = 100
extra_root_ca = "{ca}"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "payments"
deferred_client_notification_endpoint = "https://localhost:{port}/dtr/callback"
[[policy]]
scope_any = ["payments"]
action = "review"
"#,
        ca = ca_file.display()
    );
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        database: Some(format!("sqlite://{}", dir.path().join("dtr.db").display())),
        issuer: None,
    };
    let config = ConfigFile::parse(&config)
        .unwrap()
        .validate(&overrides)
        .unwrap();
    let store = dtr_server::open_store(&config.database).await.unwrap();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::build(config, issuer.clone(), store, Arc::new(SystemClock))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let store = state.store.clone();
    tokio::spawn(dtr_server::serve(listener, state, async {
        let _ = stopped.await;
    }));

    let c = Client::discover(
        &issuer,
        ClientAuth::SecretBasic {
            client_id: "svc".into(),
            secret: ClientSecret::new("svc-secret"),
        },
    )
    .await
    .unwrap();
    let token = NotificationToken::generate();
    let req = ClientCredentialsRequest {
        scope: Some("payments".into()),
        deferred: true,
        notification_token: Some(token.clone()),
        ..Default::default()
    };
    let TokenResult::Deferred(d) = c.client_credentials(&req).await.unwrap() else {
        panic!("expected a deferral")
    };
    let admin = AdminClient::new(&issuer, "tls-admin-token-0123456789abcdefghij").unwrap();
    let id = admin.list(Some("pending"), None).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin.approve(&id, None).await.unwrap();
    // Done when the outbox says so; one attempt, so one request.
    let mut job = None;
    for _ in 0..200 {
        job = store.callback_status(&id).await.unwrap();
        if job.as_ref().is_some_and(|j| j.state != "pending") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = job.unwrap();
    assert_eq!((job.state.as_str(), job.attempts), ("delivered", 1));
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "exactly one callback over TLS: {got:?}");
    assert_eq!(got[0].request_line, "POST /dtr/callback HTTP/1.1");
    assert_eq!(
        got[0].authorization.as_deref(),
        Some(format!("Bearer {}", token.secret()).as_str())
    );
    let body: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"deferral_code": d.code.secret()}));
    let _ = stop.send(());
}
