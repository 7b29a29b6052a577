//! The client commands (`dtr token`, `dtr poll`, `dtr cancel`) run as
//! subprocesses against `dtr serve`: to a token (exit 0, JSON on stdout),
//! to each failure exit code (denied, expired, cancelled: 1; usage: 2),
//! saved state with `--state`, and the progress display on a terminal
//! through a pseudo-terminal (`script` from util-linux).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dtr_client::{
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, TokenResult,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const DTR: &str = env!("CARGO_BIN_EXE_dtr");
const ADMIN: &str = "cli-test-admin-0123456789abcdefghij";

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
[deferral]
expires_in = 60
interval = 1
[admin]
token = "cli-test-admin-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments reports identity"
[[policy]]
scope_any = ["payments"]
action = "review"
[[policy]]
scope_any = ["reports"]
action = "approve_after"
approve_after_seconds = 1
[[policy]]
scope_any = ["identity"]
action = "interaction"
"#;

/// A `dtr serve` child, killed when dropped.
struct Server {
    child: Child,
    issuer: String,
    dir: tempfile::TempDir,
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
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, issuer, dir }
}

impl Server {
    /// A `dtr` client command with this server's issuer and client.
    fn dtr(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DTR);
        c.current_dir(self.dir.path())
            .args(args)
            .env("DTR_ISSUER", &self.issuer)
            .env("DTR_CLIENT_ID", "svc")
            .env("DTR_CLIENT_SECRET", "svc-secret")
            .env_remove("DTR_DEFERRAL_CODE");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.dtr(args).output().unwrap()
    }

    fn admin(&self) -> AdminClient {
        AdminClient::new(&self.issuer, ADMIN).unwrap()
    }

    /// A deferral made through the library, for the `poll` tests.
    async fn defer(&self, scope: &str) -> String {
        let c = Client::discover(
            &self.issuer,
            ClientAuth::SecretBasic {
                client_id: "svc".into(),
                secret: ClientSecret::new("svc-secret"),
            },
        )
        .await
        .unwrap();
        let req = ClientCredentialsRequest {
            scope: Some(scope.into()),
            deferred: true,
            ..Default::default()
        };
        match c.client_credentials(&req).await.unwrap() {
            TokenResult::Deferred(d) => d.code.secret().to_owned(),
            other => panic!("expected a deferral, got {other:?}"),
        }
    }

    /// Waits for the newest pending deferral to appear and returns its id.
    async fn pending_id(&self) -> String {
        for _ in 0..200 {
            let list = self.admin().list(Some("pending"), None).await.unwrap();
            if let Some(id) = list.first().and_then(|d| d["id"].as_str()) {
                return id.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no pending deferral appeared");
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn token_waits_for_the_decision_and_prints_json() {
    let s = serve();
    // approve_after 1 s: deferred, polled, then the token. The callback
    // receiver is served too; with no endpoint registered for the client
    // the poller's schedule alone gets the token (DTR-30).
    let o = s.run(&[
        "token",
        "--scope",
        "reports",
        "--deferred",
        "--callback-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let t = json(&o);
    assert!(
        t["access_token"].as_str().is_some_and(|a| !a.is_empty()),
        "{t}"
    );
    assert_eq!(t["scope"], "reports");
    let err = stderr(&o);
    assert!(err.contains("deferred: authorization_pending"), "{err}");
    assert!(
        err.contains("callback receiver listening on http://127.0.0.1:"),
        "{err}"
    );
    // Plain lines, no spinner, when stderr is not a terminal.
    assert!(!err.contains('\r'), "{err:?}");
}

#[tokio::test]
async fn denied_exits_1() {
    let s = serve();
    let child =
        tokio::process::Command::from(s.dtr(&["token", "--scope", "payments", "--deferred"]))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let id = s.pending_id().await;
    s.admin().deny(&id, Some("no budget")).await.unwrap();
    let o = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("denied: access_denied"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty(), "no token on stdout");
}

#[tokio::test]
async fn expired_exits_1() {
    let s = serve();
    let code_value = s.defer("payments").await;
    // Nobody decides; the code's lifetime (as the client was told) runs out.
    let o = s.run(&["poll", "--interval", "1", "--expires-in", "2", &code_value]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("expired"), "{}", stderr(&o));
}

#[tokio::test]
async fn no_wait_state_then_cancel_and_cancelled_exits_1() {
    let s = serve();
    let state = s.dir.path().join("deferral.json");
    let st = state.to_str().unwrap();
    let o = s.run(&[
        "token",
        "--scope",
        "payments",
        "--deferred",
        "--no-wait",
        "--state",
        st,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let printed = json(&o);
    let code_value = printed["deferral_code"].as_str().unwrap().to_owned();
    // The saved state holds the code: owner-only (DTR-29).
    #[cfg(unix)]
    assert_eq!(mode(&state), 0o600);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["code"], code_value.as_str());
    assert_eq!(saved["issuer"], s.issuer.as_str());

    // A second --state run refuses to overwrite it (exit 2, nothing sent).
    let again = s.run(&[
        "token",
        "--scope",
        "payments",
        "--deferred",
        "--no-wait",
        "--state",
        st,
    ]);
    assert_eq!(code(&again), 2, "{}", stderr(&again));
    assert_eq!(
        s.admin().list(Some("pending"), None).await.unwrap().len(),
        1
    );

    let o = s.run(&["cancel", "--state", st]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        !state.exists(),
        "the state file of a cancelled deferral is removed"
    );
    // DTR-32: polls of a cancelled code answer access_denied: exit 1.
    let o = s.run(&["poll", "--interval", "1", "--expires-in", "30", &code_value]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("access_denied"), "{}", stderr(&o));
}

#[tokio::test]
async fn poll_resumes_saved_state_to_a_token() {
    let s = serve();
    let state = s.dir.path().join("reports.json");
    let st = state.to_str().unwrap();
    let o = s.run(&[
        "token",
        "--scope",
        "reports",
        "--deferred",
        "--no-wait",
        "--state",
        st,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The state names its issuer: another --issuer is refused before
    // anything is sent.
    let wrong = s
        .dtr(&["poll", "--state", st])
        .env("DTR_ISSUER", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(code(&wrong), 2, "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("--issuer"), "{}", stderr(&wrong));
    let o = s.run(&["poll", "--state", st]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["scope"], "reports");
    assert!(
        !state.exists(),
        "the state file of a finished deferral is removed"
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let not_state = dir.path().join("bad.json");
    std::fs::write(&not_state, "{}").unwrap();
    for args in [
        vec!["token", "--bogus"],
        vec![
            "token",
            "--client-id",
            "svc",
            "--callback-listen",
            "not-an-address",
        ],
        vec![
            "token",
            "--client-id",
            "svc",
            "--no-wait",
            "--callback-listen",
            "127.0.0.1:0",
        ],
        vec!["poll", "--client-id", "svc"],
        vec![
            "poll",
            "--client-id",
            "svc",
            "--state",
            missing.to_str().unwrap(),
        ],
        vec![
            "poll",
            "--client-id",
            "svc",
            "--state",
            not_state.to_str().unwrap(),
        ],
        vec![
            "cancel",
            "--client-id",
            "svc",
            "--state",
            missing.to_str().unwrap(),
        ],
    ] {
        let o = Command::new(DTR)
            .args(&args)
            .env_remove("DTR_DEFERRAL_CODE")
            .env("DTR_ISSUER", "http://127.0.0.1:9")
            .output()
            .unwrap();
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
    }
}

#[tokio::test]
async fn terminal_shows_spinner_next_poll_and_prominent_interaction_uri() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: `script` (util-linux) is not installed");
        return;
    }
    let s = serve();
    // `interaction` policy: the server waits for the user at an
    // interaction_uri (DTR-11); nobody opens it, so the run ends expired.
    let code_value = s.defer("identity").await;
    let cmd = format!("{DTR} poll --interval 1 --expires-in 4 {code_value}");
    // script(1) runs the command on a pseudo-terminal: stderr is a TTY.
    let o = Command::new("script")
        .current_dir(s.dir.path())
        .env("DTR_ISSUER", &s.issuer)
        .env("DTR_CLIENT_ID", "svc")
        .env("DTR_CLIENT_SECRET", "svc-secret")
        .env("TERM", "xterm")
        .args(["-qefc", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(code(&o), 1, "expired: {out}");
    // The spinner line, redrawn in place.
    assert!(out.contains("\r\x1b[2K"), "{out:?}");
    assert!(out.contains("next poll in"), "{out:?}");
    assert!(out.contains("waiting: interaction_required"), "{out:?}");
    assert!(
        ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
            .iter()
            .any(|c| out.contains(*c)),
        "{out:?}"
    );
    // The interaction URI alone on a line of its own, under the banner.
    assert!(out.contains("ACTION REQUIRED"), "{out:?}");
    let uri_line = out
        .split(['\n', '\r'])
        .find(|l| l.contains("/interact/"))
        .unwrap_or_else(|| panic!("no interaction URI line: {out:?}"));
    assert!(uri_line.trim_start().starts_with(">>>"), "{uri_line:?}");
    assert!(
        !uri_line.contains("waiting:"),
        "the URI shares its line: {uri_line:?}"
    );
    assert!(out.contains("expired"), "{out:?}");
}
