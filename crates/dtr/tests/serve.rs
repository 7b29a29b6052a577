//! Tests of the `dtr` binary itself: configuration errors exit 2 naming
//! the key, SIGTERM drains and exits 0, state survives a restart of the
//! process, and the demo starts with no arguments.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dtr_client::{
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, TokenResult,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const DTR: &str = env!("CARGO_BIN_EXE_dtr");

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
[admin]
token = "serve-test-admin-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments"
[[policy]]
scope_any = ["payments"]
action = "review"
"#;

fn config_error(dir: &Path, text: &str) -> (i32, String) {
    let path = dir.join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(DTR)
        .args(["serve", "--config"])
        .arg(&path)
        .args([
            "--database",
            &format!("sqlite://{}", dir.join("x.db").display()),
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("surprise = true", "surprise"),
        ("[deferral]\ninterval = \"soon\"", "deferral.interval"),
        ("[deferral]\nslow_down_limit = -1", "deferral.slow_down_limit"),
        ("issuer = \"ftp://x\"", "issuer"),
        ("[[policy]]\naction = \"perhaps\"", "policy[0].action"),
        ("[[clients]]\nclient_id = \"a\"\nclient_secret = \"12345678\"\ngrant_types = [\"password\"]", "clients[0].grant_types"),
        ("[[users]]\nusername = \"a\"\npassword = \"12345678\"\nroles = [\"boss\"]", "users[0].roles[0]"),
        ("[[users]]\nusername = \"a\"\npassword = \"12345678\"\ngroups = [\"a b\"]", "users[0].groups[0]"),
        // A rule that asks the AuthZEN PDP needs [authzen] to name it.
        ("[[policy]]\naction = \"authzen\"", "policy[0].action"),
        ("[authzen]\npdp = \"ftp://pdp\"", "authzen.pdp"),
    ] {
        let (code, stderr) = config_error(dir.path(), text);
        assert_eq!(code, 2, "{text}: {stderr}");
        assert!(stderr.contains(key), "{text}: message should name {key}: {stderr}");
    }
    let missing = Command::new(DTR)
        .args(["serve", "--config", "/nonexistent/dtr.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let bad_flag = Command::new(DTR)
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(bad_flag.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_flag.stderr).contains("listen"));
    let unknown_flag = Command::new(DTR)
        .args(["serve", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(unknown_flag.status.code(), Some(2));
}

struct Server {
    child: Child,
    issuer: String,
}

/// Starts `dtr serve` and reads the bound address from its first line.
fn spawn(cwd: &Path, args: &[&str]) -> (Server, Vec<String>) {
    let mut child = Command::new(DTR)
        .current_dir(cwd)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let issuer = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        seen.push(line.clone());
        if let Some(rest) = line.strip_prefix("dtr listening on ") {
            break rest.split("issuer ").nth(1).unwrap().trim().to_owned();
        }
        if let Some(i) = line.trim().strip_prefix("issuer") {
            break i.trim().to_owned();
        }
    };
    // Keep reading the rest of the banner in the background so the pipe never fills.
    let rest: Vec<String> = if seen[0].starts_with("dtr demo") {
        lines
            .by_ref()
            .take_while(|l| {
                l.as_ref()
                    .map(|l| !l.starts_with("Or let"))
                    .unwrap_or(false)
            })
            .flatten()
            .collect()
    } else {
        Vec::new()
    };
    seen.extend(rest);
    (Server { child, issuer }, seen)
}

impl Server {
    fn sigterm(mut self) -> i32 {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

async fn client(issuer: &str) -> Client {
    let auth = ClientAuth::SecretBasic {
        client_id: "svc".into(),
        secret: ClientSecret::new("svc-secret"),
    };
    Client::discover(issuer, auth).await.unwrap()
}

#[tokio::test]
async fn sigterm_exits_0_and_state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dtr.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let db = format!("sqlite://{}", dir.path().join("data/dtr.db").display());
    let args = ["--config", cfg.to_str().unwrap(), "--database", &db];

    let (server, _) = spawn(dir.path(), &args);
    let c = client(&server.issuer).await;
    let req = ClientCredentialsRequest {
        scope: Some("payments".into()),
        deferred: true,
        ..Default::default()
    };
    let TokenResult::Deferred(d) = c.client_credentials(&req).await.unwrap() else {
        panic!("expected a deferral")
    };
    assert_eq!(server.sigterm(), 0, "SIGTERM drains and exits 0");

    let (server, _) = spawn(dir.path(), &args);
    let c = client(&server.issuer).await;
    let admin = AdminClient::new(&server.issuer, "serve-test-admin-0123456789abcdefghij").unwrap();
    let pending = admin.list(Some("pending"), None).await.unwrap();
    assert_eq!(pending.len(), 1, "the deferral survived the restart");
    admin
        .approve(pending[0]["id"].as_str().unwrap(), None)
        .await
        .unwrap();
    let TokenResult::Token(t) = c.poll_once(&d.code).await.unwrap() else {
        panic!("expected a token")
    };
    assert_eq!(t.scope.as_deref(), Some("payments"));
    assert_eq!(server.sigterm(), 0);
}

#[tokio::test]
async fn demo_runs_without_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (server, banner) = spawn(dir.path(), &["--listen", "127.0.0.1:0"]);
    let text = banner.join("\n");
    assert!(text.contains("svc-secret"), "{text}");
    assert!(text.contains("completion_mode=deferred"), "{text}");
    // Registration is closed by default; the demo's is open and says so.
    assert!(text.contains("registration OPEN to anyone"), "{text}");
    assert!(dir.path().join("dtr-data/dtr.db").exists());
    let token = std::fs::read_to_string(dir.path().join("dtr-data/admin-token")).unwrap();

    // The demo policy defers `payments` for review; `dtr admin` finds the
    // token file in the working directory.
    let c = client(&server.issuer).await;
    let req = ClientCredentialsRequest {
        scope: Some("payments".into()),
        deferred: true,
        ..Default::default()
    };
    let TokenResult::Deferred(d) = c.client_credentials(&req).await.unwrap() else {
        panic!("expected a deferral")
    };
    let list = Command::new(DTR)
        .current_dir(dir.path())
        .args([
            "admin",
            "--url",
            &server.issuer,
            "list",
            "--state",
            "pending",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = rows[0]["id"].as_str().unwrap().to_owned();
    let approve = Command::new(DTR)
        .current_dir(dir.path())
        .args(["admin", "--url", &server.issuer, "approve", &id])
        .output()
        .unwrap();
    assert!(approve.status.success());
    let TokenResult::Token(_) = c.poll_once(&d.code).await.unwrap() else {
        panic!("expected a token")
    };
    assert!(AdminClient::new(&server.issuer, token.trim())
        .unwrap()
        .show(&id)
        .await
        .is_ok());
    // The audit trail as JSON lines: one deferral's, and everyone's since
    // a time.
    for args in [
        vec!["events", id.as_str()],
        vec!["events", "--since", "2000-01-01T00:00:00Z"],
    ] {
        let out = Command::new(DTR)
            .current_dir(dir.path())
            .args(["admin", "--url", &server.issuer])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kinds: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let e: serde_json::Value = serde_json::from_str(l).unwrap();
                e["type"].as_str().unwrap().to_owned()
            })
            .collect();
        assert!(
            kinds
                .windows(3)
                .any(|w| w == ["created", "approved", "redeemed"]),
            "{args:?}: {kinds:?}"
        );
    }
    assert_eq!(server.sigterm(), 0);
}

#[tokio::test]
async fn admin_token_commands_create_use_and_revoke_personal_tokens() {
    const ADMIN: &str = "serve-test-admin-0123456789abcdefghij";
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dtr.toml");
    std::fs::write(
        &cfg,
        format!(
            "{CONFIG}[[users]]\nusername = \"carol\"\npassword = \"carol-password\"\nroles = [\"reviewer\"]\ngroups = [\"fraud\"]\n"
        ),
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("dtr.db").display());
    let (server, _) = spawn(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "--database", &db],
    );
    let admin = |token: &str, args: &[&str]| {
        Command::new(DTR)
            .current_dir(dir.path())
            .args(["admin", "--url", &server.issuer, "--token", token])
            .args(args)
            .output()
            .unwrap()
    };
    let created = admin(ADMIN, &["token", "create", "carol"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let (id, token) = (v["id"].as_str().unwrap(), v["token"].as_str().unwrap());
    assert!(token.starts_with("dtrp_"));

    // The reviewer's token lists deferrals, is refused at admin-only
    // endpoints (exit 1), and its listing never shows the token.
    let list = admin(token, &["list", "--json"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let refused = admin(token, &["client-disable", "svc"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("403"));
    let listed = admin(ADMIN, &["token", "list", "carol"]);
    assert!(listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains(id) && !listed.contains(token));

    // Revoked: the token no longer authenticates (exit 2, like a wrong token).
    let revoked = admin(ADMIN, &["token", "revoke", "carol", id]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert_eq!(admin(token, &["list", "--json"]).status.code(), Some(2));
    assert_eq!(
        admin(ADMIN, &["token", "revoke", "carol", "nope"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(server.sigterm(), 0);
}
