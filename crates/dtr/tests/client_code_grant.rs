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
use std::sync::{Arc, Mutex};
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
client_id = "cli-direct"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
scope = "read payments"
redirect_uris = ["http://127.0.0.1/callback"]
deferred_authorization_endpoint = true
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
async fn deferral_code_on_the_redirect_with_dpop() {
    // A client that opted in to deferral at the authorization endpoint:
    // the redirect brings the deferral code, bound to the key of dpop_jkt,
    // and the command polls it (the verifier on the first poll).
    let s = serve();
    let mut run = Run::start(
        &s,
        &[
            "--client-id",
            "cli-direct",
            "--scope",
            "payments",
            "--deferred",
            "--dpop",
        ],
    );
    let url = run.url();
    let delivery = LoginBrowser::new("alice", "alice-password")
        .authorize(url, &origin(&s), "approve")
        .await;
    assert_eq!(delivery.status.as_u16(), 200, "{delivery:?}");
    let admin = AdminClient::new(&s.issuer, ADMIN).unwrap();
    let id = loop {
        let pending = admin
            .list(Some("pending"), Some("cli-direct"))
            .await
            .unwrap();
        if let Some(d) = pending.first() {
            break d["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    admin.approve(&id, None).await.unwrap();
    let (code, out, err) = tokio::task::spawn_blocking(move || run.finish())
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "authorization response: deferral_code (deferred at the authorization endpoint"
        ),
        "{err}"
    );
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["token_type"], "DPoP");
    assert_eq!(t["scope"], "payments");
    assert!(t["refresh_token"].is_string());
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
            "--no-wait without --state FILE",
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

/// A token endpoint on raw sockets: serves the metadata, records every
/// token request body and answers `authorization_pending`, then a token.
async fn fake_token_endpoint() -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", l.local_addr().unwrap());
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = bodies.clone();
    let iss = issuer.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (seen, iss) = (seen.clone(), iss.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..i]).to_string();
                    let len: usize = head
                        .to_ascii_lowercase()
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        let body = String::from_utf8_lossy(&buf[i + 4..i + 4 + len]).to_string();
                        break (head, body);
                    }
                };
                let (status, json) = if head.starts_with("GET /.well-known/") {
                    (
                        "200 OK",
                        serde_json::json!({
                            "issuer": iss,
                            "token_endpoint": format!("{iss}/token"),
                            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:deferred"],
                            "deferred_token_response_supported": true,
                            "response_types_supported": ["code"],
                        }),
                    )
                } else {
                    let mut all = seen.lock().unwrap();
                    all.push(body);
                    if all.len() == 1 {
                        (
                            "400 Bad Request",
                            serde_json::json!({"error": "authorization_pending"}),
                        )
                    } else {
                        (
                            "200 OK",
                            serde_json::json!({"access_token": "AT", "token_type": "Bearer"}),
                        )
                    }
                };
                let body = json.to_string();
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (issuer, bodies)
}

#[tokio::test]
async fn saved_first_poll_is_sent_once_on_resume() {
    // A deferral at the authorization endpoint saved by `dtr token --state`
    // before its first poll: `dtr poll --state` sends the verifier on the
    // first poll, removes it from the file, and never sends it again.
    let (issuer, bodies) = fake_token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let saved = serde_json::json!({
        "code": "DC-SAVED",
        "expires_in": 600,
        "interval": 1,
        "received_at_unix_ms": now,
        "issuer": issuer,
        "client_id": "cli",
        "error": "authorization_pending",
        "first_poll": [
            ["code_verifier", "VERIFIER-1"],
            ["redirect_uri", "http://127.0.0.1:7/callback"]
        ],
    });
    std::fs::write(&path, saved.to_string()).unwrap();
    let poll = {
        let (path, issuer) = (path.clone(), issuer.clone());
        move |once: bool| {
            let mut c = Command::new(DTR);
            c.args(["poll", "--state", path.to_str().unwrap()]);
            if once {
                c.arg("--once");
            }
            c.env("DTR_ISSUER", &issuer)
                .env("DTR_CLIENT_ID", "cli")
                .env_remove("DTR_CLIENT_SECRET")
                .output()
                .unwrap()
        }
    };
    let first = tokio::task::spawn_blocking({
        let poll = poll.clone();
        move || poll(true)
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert_eq!(first.status.code(), Some(0), "{err}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("VERIFIER-1") && text.contains("DC-SAVED"),
        "{text}"
    );
    let second = tokio::task::spawn_blocking(move || poll(false))
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(second.status.code(), Some(0), "{err}");
    assert!(!path.exists(), "the finished deferral's state is removed");
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let form = |b: &str| -> Vec<(String, String)> {
        url::form_urlencoded::parse(b.as_bytes())
            .into_owned()
            .collect()
    };
    let names = |b: &str| -> Vec<String> { form(b).into_iter().map(|(k, _)| k).collect() };
    assert_eq!(
        names(&bodies[0]),
        [
            "grant_type",
            "deferral_code",
            "code_verifier",
            "redirect_uri",
            "client_id"
        ]
    );
    assert_eq!(form(&bodies[0])[2].1, "VERIFIER-1");
    assert_eq!(
        names(&bodies[1]),
        ["grant_type", "deferral_code", "client_id"]
    );
}

#[tokio::test]
async fn no_wait_with_state_then_poll_resumes() {
    // --no-wait needs --state for this grant (the file would hold a first
    // poll's verifier); `dtr poll --state` with the same DPoP key collects
    // the token after the reviewer's approval.
    let s = serve();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let key = dir.path().join("dpop.pem");
    let (state_s, key_s) = (
        state.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
    );
    let mut run = Run::start(
        &s,
        &[
            "--scope",
            "payments",
            "--deferred",
            "--dpop-key",
            &key_s,
            "--no-wait",
            "--state",
            &state_s,
        ],
    );
    let url = run.url();
    LoginBrowser::new("alice", "alice-password")
        .authorize(url, &origin(&s), "approve")
        .await;
    let (code, out, err) = tokio::task::spawn_blocking(move || run.finish())
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["error"], "authorization_pending");
    assert!(printed["dpop_jkt"].is_string());
    assert!(state.exists(), "{err}");
    let admin = AdminClient::new(&s.issuer, ADMIN).unwrap();
    let pending = admin.list(Some("pending"), Some("cli")).await.unwrap();
    admin
        .approve(pending[0]["id"].as_str().unwrap(), None)
        .await
        .unwrap();
    let issuer = s.issuer.clone();
    let o = tokio::task::spawn_blocking(move || {
        Command::new(DTR)
            .args(["poll", "--state", &state_s, "--dpop-key", &key_s])
            .env("DTR_ISSUER", &issuer)
            .env("DTR_CLIENT_ID", "cli")
            .env_remove("DTR_CLIENT_SECRET")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let t: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(t["token_type"], "DPoP");
    assert!(!state.exists());
}
