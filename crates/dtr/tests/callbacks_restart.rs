//! Durability of callbacks (DTR-26, DTR-27): resolutions whose callbacks
//! are queued when the server is killed (SIGKILL, no chance to flush) are
//! each delivered exactly once after it starts again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dtr_client::{
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, TokenResult,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[path = "support/receiver.rs"]
mod receiver;

use receiver::receiver;

const DTR: &str = env!("CARGO_BIN_EXE_dtr");

fn spawn(cwd: &Path, config: &Path) -> (Child, String) {
    let mut child = Command::new(DTR)
        .current_dir(cwd)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let issuer = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("dtr listening on ") {
            break rest.split("issuer ").nth(1).unwrap().trim().to_owned();
        }
    };
    (child, issuer)
}

#[tokio::test]
async fn queued_callbacks_survive_sigkill_and_arrive_once() {
    let (endpoint, counts) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dtr.toml");
    // The callback delay keeps the jobs queued while the server is killed.
    std::fs::write(
        &cfg,
        format!(
            r#"
listen = "127.0.0.1:0"
database = "sqlite://{db}"
dev_mode = true
[deferral]
expires_in = 120
interval = 1
[admin]
token = "restart-admin-token-0123456789abcdefghij"
[callbacks]
delay_ms = 2500
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "payments"
deferred_client_notification_endpoint = "{endpoint}"
[[policy]]
scope_any = ["payments"]
action = "review"
"#,
            db = dir.path().join("dtr.db").display()
        ),
    )
    .unwrap();

    let (mut child, issuer) = spawn(dir.path(), &cfg);
    let c = Client::discover(
        &issuer,
        ClientAuth::SecretBasic {
            client_id: "svc".into(),
            secret: ClientSecret::new("svc-secret"),
        },
    )
    .await
    .unwrap();
    let admin = AdminClient::new(&issuer, "restart-admin-token-0123456789abcdefghij").unwrap();
    let req = ClientCredentialsRequest {
        scope: Some("payments".into()),
        deferred: true,
        ..Default::default()
    };
    let mut codes = Vec::new();
    for _ in 0..5 {
        let TokenResult::Deferred(d) = c.client_credentials(&req).await.unwrap() else {
            panic!("expected a deferral")
        };
        codes.push(d.code.secret().to_owned());
    }
    for row in admin.list(Some("pending"), None).await.unwrap() {
        admin
            .approve(row["id"].as_str().unwrap(), None)
            .await
            .unwrap();
    }
    // SIGKILL: no graceful shutdown, nothing flushed by the process.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        counts.lock().unwrap().is_empty(),
        "nothing was due before the kill"
    );

    let (mut child, _issuer) = spawn(dir.path(), &cfg);
    for _ in 0..200 {
        if counts.lock().unwrap().len() == codes.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give any duplicate a chance to show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = counts.lock().unwrap().clone();
    for code in &codes {
        assert_eq!(
            got.get(code),
            Some(&1),
            "each callback exactly once: {got:?}"
        );
    }
    assert_eq!(got.len(), codes.len());
    child.kill().unwrap();
    child.wait().unwrap();
}
