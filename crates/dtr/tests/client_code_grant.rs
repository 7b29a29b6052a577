//! `dtr token --grant authorization_code` as a subprocess against `dtr
//! serve`: the command prints the authorization URL (`--no-browser`), a
//! cookie-keeping HTTP client plays the user's browser (sign-in, consent,
//! delivery of the response to the command's loopback redirect URI), and
//! the command prints the token response. The progress lines say which
//! kind of authorization response came back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../dtr-server/tests/support/login_browser.rs"]
mod login_browser;

use dtr_client::AdminClient;
use login_browser::LoginBrowser;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use url::Url;

const DTR: &str = env!("CARGO_BIN_EXE_dtr");
const ADMIN: &str = "code-grant-cli-admin-0123456789abcdefghij";

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
[deferral]
expires_in = 60
interval = 1
[admin]
token = "code-grant-cli-admin-0123456789abcdefghij"
[[clients]]
client_id = "cli"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
scope = "read payments"
redirect_uris = ["http://127.0.0.1/callback"]
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments"
[[users]]
username = "alice"
password = "alice-password"
[[policy]]
scope_any = ["payments"]
action = "review"
"#;

/// A `dtr serve` child, killed when dropped.
struct Server {
    child: Child,
    issuer: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dtr.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let db = format!("sqlite://{}", dir.path().join("dtr.db").display());
    let mut child = Command::new(DTR)
        .current_dir(dir.path())
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--database",
            &db,
        ])
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
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        issuer,
        _dir: dir,
    }
}

/// A running `dtr token --grant authorization_code --no-browser`.
struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl Run {
    fn start(s: &Server, extra: &[&str]) -> Run {
        let mut child = Command::new(DTR)
            .args([
                "token",
                "--grant",
                "authorization_code",
                "--no-browser",
                "--login-timeout",
                "30",
            ])
            .args(extra)
            .env("DTR_ISSUER", &s.issuer)
            .env("DTR_CLIENT_ID", "cli")
            .env_remove("DTR_CLIENT_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Run {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    /// The authorization URL the command printed.
    fn url(&mut self) -> Url {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no URL printed: {:?}", self.stderr));
            self.stderr.push(line.clone());
            if let Some(u) = line.trim().strip_prefix("http") {
                return Url::parse(&format!("http{u}")).unwrap();
            }
        }
    }

    /// Waits for the exit; returns the exit code, stdout and all of stderr.
    fn finish(mut self) -> (i32, String, String) {
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stderr.push(line);
        }
        (status.code().unwrap_or(-1), out, self.stderr.join("\n"))
    }
}

fn origin(s: &Server) -> String {
    Url::parse(&s.issuer)
        .unwrap()
        .origin()
        .ascii_serialization()
}

#[tokio::test]
async fn code_on_the_redirect_to_tokens() {
    let s = serve();
    let mut run = Run::start(&s, &["--scope", "read", "--response-mode", "form_post"]);
    let url = run.url();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "cli");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_mode"], "form_post");
    assert!(q["redirect_uri"].starts_with("http://127.0.0.1:"));
    assert!(q["redirect_uri"].ends_with("/callback"));
    assert!(!q.contains_key("completion_mode") && !q.contains_key("dpop_jkt"));
    let delivery = LoginBrowser::new("alice", "alice-password")
        .authorize(url, &origin(&s), "approve")
        .await;
    assert_eq!(delivery.status.as_u16(), 200, "{delivery:?}");
    let (code, out, err) = tokio::task::spawn_blocking(move || run.finish())
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("authorization response: code"), "{err}");
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["scope"], "read");
    assert!(t["access_token"].is_string() && t["refresh_token"].is_string());
}

#[tokio::test]
async fn deferred_with_dpop_waits_for_the_reviewer() {
    let s = serve();
    let mut run = Run::start(&s, &["--scope", "payments", "--interactive", "--dpop"]);
    let url = run.url();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    // The hint (DTR-4) and the key binding (RFC 9449 section 10).
    assert_eq!(q["completion_mode"], "deferred deferred_interactive");
    assert_eq!(q["dpop_jkt"].len(), 43);
    let delivery = LoginBrowser::new("alice", "alice-password")
        .authorize(url, &origin(&s), "approve")
        .await;
    assert_eq!(delivery.status.as_u16(), 200, "{delivery:?}");
    let admin = AdminClient::new(&s.issuer, ADMIN).unwrap();
    let id = loop {
        let pending = admin.list(Some("pending"), Some("cli")).await.unwrap();
        if let Some(d) = pending.first() {
            break d["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    admin.approve(&id, None).await.unwrap();
    let (code, out, err) = tokio::task::spawn_blocking(move || run.finish())
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    // Today's server defers at the token endpoint; the line names the case.
    assert!(
        err.contains("authorization response: code")
            || err.contains(
                "authorization response: deferral_code (deferred at the authorization endpoint"
            ),
        "{err}"
    );
    assert!(err.contains("deferred: authorization_pending"), "{err}");
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["token_type"], "DPoP");
    assert_eq!(t["scope"], "payments");
}

#[tokio::test]
async fn denied_consent_exits_1() {
    let s = serve();
    // Pushed (RFC 9126): the browser sees client_id and request_uri only.
    let mut run = Run::start(&s, &["--scope", "read", "--par"]);
    let url = run.url();
    let names: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    assert_eq!(names, ["client_id", "request_uri"]);
    LoginBrowser::new("alice", "alice-password")
        .authorize(url, &origin(&s), "deny")
        .await;
    let (code, out, err) = tokio::task::spawn_blocking(move || run.finish())
        .await
        .unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("denied: access_denied"), "{err}");
}

#[test]
fn flags_that_do_not_apply_exit_2() {
    let run = |args: &[&str]| {
        Command::new(DTR)
            .args(args)
            .env("DTR_ISSUER", "http://127.0.0.1:9")
            .env("DTR_CLIENT_ID", "cli")
            .env_remove("DTR_CLIENT_SECRET")
            .output()
            .unwrap()
    };
    for (args, flag) in [
        (
            &["token", "--grant", "authorization_code", "--no-wait"][..],
            "--no-wait",
        ),
        (
            &[
                "token",
                "--grant",
                "authorization_code",
                "--state",
                "f.json",
            ][..],
            "--state",
        ),
        (
            &["token", "--grant", "device", "--interactive"][..],
            "--interactive",
        ),
        (&["token", "--no-browser"][..], "--no-browser"),
        (&["token", "--par"][..], "--par"),
        (
            &["token", "--response-mode", "form_post"][..],
            "--response-mode",
        ),
    ] {
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn interactive_client_credentials_is_an_opt_in() {
    // `deferred deferred_interactive` carries the opt-in (DTR-1): the
    // server defers, and --no-wait prints the deferral.
    let s = serve();
    let o = Command::new(DTR)
        .args(["token", "--scope", "payments", "--interactive", "--no-wait"])
        .env("DTR_ISSUER", &s.issuer)
        .env("DTR_CLIENT_ID", "svc")
        .env("DTR_CLIENT_SECRET", "svc-secret")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["error"], "authorization_pending");
    assert!(d["deferral_code"].is_string());
}
