//! CIBA driven by the client crate against a real server on port 0: a
//! poll-mode request collected by the `Poller` with the CIBA transport, a
//! push received by the library's `CallbackReceiver` and taken once, and
//! a deferral bridged to CIBA by the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/server.rs"]
mod server;

use dtr_client::{
    AdminClient, BackchannelRequest, CallbackReceiver, Ciba, Client, ClientAuth,
    ClientCredentialsRequest, ClientSecret, NotificationToken, PollOutcome, Poller, SystemClock,
    TokenResult,
};
use std::time::Duration;

const ADMIN: &str = "cl-admin-token-0123456789abcdefghij";

fn config(push_endpoint: &str) -> String {
    format!(
        r#"
dev_mode = true
[deferral]
expires_in = 60
interval = 1
[admin]
token = "{ADMIN}"
[callbacks]
delay_ms = 0
retry_base_ms = 100
[ciba]
bridge = true
[[clients]]
client_id = "bank"
client_secret = "bank-secret"
grant_types = ["urn:openid:params:grant-type:ciba", "client_credentials"]
scope = "openid payments"
[[clients]]
client_id = "pusher"
client_secret = "pusher-secret"
grant_types = ["urn:openid:params:grant-type:ciba"]
scope = "openid"
backchannel_token_delivery_mode = "push"
backchannel_client_notification_endpoint = "{push_endpoint}"
[[users]]
username = "alice"
password = "alice-password"
[[policy]]
grant_type = "client_credentials"
scope_any = ["payments"]
action = "review"
"#
    )
}

async fn client(issuer: &str, id: &str, secret: &str) -> Client {
    Client::discover(
        issuer,
        ClientAuth::SecretBasic {
            client_id: id.into(),
            secret: ClientSecret::new(secret),
        },
    )
    .await
    .unwrap()
}

async fn approve_newest(admin: &AdminClient) {
    let id = admin.list(Some("pending"), None).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin.approve(&id, None).await.unwrap();
}

#[tokio::test]
async fn library_poll_push_and_bridge() {
    let receiver = CallbackReceiver::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/callback", listener.local_addr().unwrap());
    let r2 = receiver.clone();
    tokio::spawn(async move { r2.serve(listener, std::future::pending()).await });
    let dir = tempfile::tempdir().unwrap();
    let s = server::start(&config(&endpoint), &dir.path().join("dtr.db")).await;
    let admin = AdminClient::new(&s.issuer, ADMIN).unwrap();

    // Poll mode through the Poller.
    let bank = client(&s.issuer, "bank", "bank-secret").await;
    let a = bank
        .backchannel_authentication(&BackchannelRequest {
            login_hint: Some("alice".into()),
            binding_message: Some("7391".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    approve_newest(&admin).await;
    let d = a.as_deferral(&bank);
    let mut poller = Poller::new(Ciba(&bank), SystemClock, &d);
    let out = tokio::time::timeout(Duration::from_secs(20), poller.run(|_| {}))
        .await
        .unwrap()
        .unwrap();
    let PollOutcome::Token(t) = out else {
        panic!("{out:?}")
    };
    assert!(t.id_token.is_some());

    // Push mode: the receiver keeps the response, once.
    let pusher = client(&s.issuer, "pusher", "pusher-secret").await;
    let token = NotificationToken::generate();
    let a = pusher
        .backchannel_authentication(&BackchannelRequest {
            login_hint: Some("alice".into()),
            notification_token: Some(token.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let d = a.as_deferral(&pusher);
    let wake = receiver.register(&d, token);
    approve_newest(&admin).await;
    tokio::time::timeout(Duration::from_secs(20), wake.notified())
        .await
        .unwrap();
    let pushed = receiver.take_push(&d.code).unwrap();
    assert_eq!(pushed["auth_req_id"], a.auth_req_id.as_str());
    assert!(pushed["access_token"].is_string());
    assert!(receiver.take_push(&d.code).is_none(), "taken once");

    // The bridge: a deferral continued as CIBA and collected by its
    // auth_req_id; its deferral code is then spent.
    let TokenResult::Deferred(deferral) = bank
        .client_credentials(&ClientCredentialsRequest {
            scope: Some("payments".into()),
            deferred: true,
            ..Default::default()
        })
        .await
        .unwrap()
    else {
        panic!("expected a deferral")
    };
    let a = bank.bridge_to_ciba(&deferral, None).await.unwrap();
    approve_newest(&admin).await;
    let TokenResult::Token(_) = bank.ciba_token(&a.as_deferral(&bank).code).await.unwrap() else {
        panic!("expected the token through the auth_req_id")
    };
    let TokenResult::Error(e) = bank.poll_once(&deferral.code).await.unwrap() else {
        panic!("expected invalid_grant")
    };
    assert_eq!(e.error.as_str(), "invalid_grant");
    s.stop().await;
}

#[tokio::test]
async fn a_push_reaches_the_library_receiver_once_across_a_restart() {
    let receiver = CallbackReceiver::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/callback", listener.local_addr().unwrap());
    let r2 = receiver.clone();
    tokio::spawn(async move { r2.serve(listener, std::future::pending()).await });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dtr.db");
    // A delay longer than the test's first server lives: the approval's
    // push is still queued when that server stops.
    let cfg = config(&endpoint).replace("delay_ms = 0", "delay_ms = 1500");
    let s = server::start(&cfg, &db).await;
    let admin = AdminClient::new(&s.issuer, ADMIN).unwrap();
    let pusher = client(&s.issuer, "pusher", "pusher-secret").await;
    let token = NotificationToken::generate();
    let a = pusher
        .backchannel_authentication(&BackchannelRequest {
            login_hint: Some("alice".into()),
            notification_token: Some(token.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let d = a.as_deferral(&pusher);
    let wake = receiver.register(&d, token);
    let deferral_id = admin.list(Some("pending"), None).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    approve_newest(&admin).await;
    s.stop().await;
    assert!(
        receiver.take_push(&d.code).is_none(),
        "not sent before the restart"
    );
    let s = server::start(&cfg, &db).await;
    tokio::time::timeout(Duration::from_secs(20), wake.notified())
        .await
        .unwrap();
    let pushed = receiver.take_push(&d.code).unwrap();
    assert_eq!(pushed["auth_req_id"], a.auth_req_id.as_str());
    // Nothing more arrives: the job is done.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(receiver.take_push(&d.code).is_none());
    let status = s
        .state
        .store
        .callback_status(&deferral_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((status.state.as_str(), status.attempts), ("delivered", 1));
    s.stop().await;
}
