//! A fault test: PostgreSQL stops (immediate shutdown, as in a crash)
//! under a bounded polling and approval load on two nodes, and starts
//! again.
//!
//! - During the outage every answer of the token endpoint and the admin
//!   API is `503 temporarily_unavailable` with `Retry-After` and without
//!   detail (never a 500, never another OAuth error), and `/healthz` on
//!   both nodes says the database is down.
//! - Around the outage (requests that straddle the stop or the start)
//!   every answer is a legitimate one for the deferral's state, or that
//!   same 503.
//! - Afterwards both nodes recover on their own, and every deferral is
//!   where it was or in a later legitimate state: none lost, none
//!   redeemed twice, every approval collectable exactly once, pending ones
//!   still pending and approvable.
//!
//! A second test holds the narrowest window open deterministically (a
//! crash after the exactly-once gate, before the token's row is written).
//!
//! The shared PostgreSQL of the other tests is never stopped: each test
//! runs a private cluster of its own (`initdb` in a temporary directory,
//! on a free port, run as the `postgres` user), so it needs root and
//! PostgreSQL 15's server binaries. The tests are `#[ignore]`d for that
//! reason and `.ci/run` runs both explicitly with `--ignored`; there
//! it fails rather than skips when anything it needs is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/server.rs"]
mod server;

use dtr_client::{
    AdminClient, Client, ClientAuth, ClientCredentialsRequest, ClientSecret, TokenResult,
};
use dtr_proto::secret::DeferralCode;
use serde_json::Value;
use server::Running;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const ADMIN_TOKEN: &str = "outage-admin-token-0123456789abcdefghij";
const CONFIG: &str = r#"
[deferral]
expires_in = 600
interval = 1
slow_down_limit = 100
[admin]
token = "outage-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments"
[[policy]]
scope_any = ["payments"]
action = "review"
"#;

/// Deferrals created before the load.
const DEFERRALS: usize = 20;
/// Of those, approved before the load (the first ones) ...
const APPROVED_BEFORE: usize = 10;
/// ... and of these, redeemed before the load.
const REDEEMED_BEFORE: usize = 3;
/// Pending ones the load approves (the next ones); the rest stay pending.
const APPROVED_UNDER_LOAD: usize = 4;
/// Polling tasks of the load (the deferrals are shared out among them).
const POLLERS: usize = 4;

/// Whatever a request may take; longer counts as a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------
// A private PostgreSQL cluster.

/// Runs `cmd` through `sh` as the `postgres` user (PostgreSQL refuses to
/// run as root); panics with its output when it fails.
fn as_postgres(cmd: &str) {
    let out = Command::new("su")
        .args(["postgres", "-s", "/bin/sh", "-c", cmd])
        .output()
        .unwrap_or_else(|e| panic!("cannot run su: {e}"));
    assert!(
        out.status.success(),
        "`{cmd}` as postgres failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free loopback port (nothing is listening on it when this returns).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PostgreSQL 15 cluster of this test's own, in a temporary directory
/// owned by `postgres`, listening on 127.0.0.1 at a free port with trust
/// authentication. Dropping it stops the server (immediately) and removes
/// the directory, also when the test fails.
struct PrivatePg {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePg {
    fn create() -> Self {
        let uid = Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test runs PostgreSQL as the postgres user and needs root"
        );
        assert!(
            Path::new(PG_BIN).join("postgres").exists(),
            "PostgreSQL 15's server binaries are missing under {PG_BIN} \
             (Debian's postgresql-15; scripts/postgres.sh installs it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("dtr-outage-")
            .tempdir()
            .unwrap();
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "chown postgres {}", dir.path().display());
        let pg = PrivatePg {
            dir,
            port: free_port(),
        };
        as_postgres(&format!(
            "{PG_BIN}/initdb -D {} -U postgres -A trust -E UTF8 --no-sync >/dev/null",
            pg.data().display()
        ));
        pg.start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &str) {
        as_postgres(&format!(
            "{PG_BIN}/pg_ctl -D {} -l {} {args}",
            self.data().display(),
            self.dir.path().join("log").display()
        ));
    }

    /// Starts the server and waits until it accepts connections.
    fn start(&self) {
        self.pg_ctl(&format!(
            "-w -t 120 -o '-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100' start >/dev/null",
            self.port,
            self.dir.path().display()
        ));
    }

    /// Immediate shutdown: every server process exits at once, no
    /// checkpoint; the next start runs crash recovery.
    fn stop_immediately(&self) {
        self.pg_ctl("-w -m immediate stop >/dev/null");
    }

    fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}:{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's log, for failure messages, without the refusals of
    /// connections while it starts.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                !l.contains("the database system is starting up")
                    && !l.contains("not yet accepting connections")
                    && !l.contains("Consistent recovery state")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c"])
            .arg(format!(
                "{PG_BIN}/pg_ctl -D {} -w -m immediate stop >/dev/null 2>&1",
                self.data().display()
            ))
            .status();
    }
}

async fn sql(url: &str, statements: &str) {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the private PostgreSQL: {e}"));
    tokio::spawn(conn);
    c.batch_execute(statements).await.unwrap();
}

/// Access tokens recorded per deferral id, read straight from the database.
async fn tokens_per_deferral(url: &str) -> BTreeMap<String, i64> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.query(
        "SELECT deferral_id, COUNT(*) FROM access_tokens WHERE deferral_id IS NOT NULL GROUP BY deferral_id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

// ---------------------------------------------------------------------
// The record of every answer.

/// Where the outage stood. An answer is "during the outage" when its
/// request was sent and answered while the phase was `Down`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Phase {
    Before = 0,
    Stopping = 1,
    Down = 2,
    Starting = 3,
    After = 4,
}

#[derive(Default)]
struct PhaseCell(AtomicU8);

impl PhaseCell {
    fn get(&self) -> Phase {
        match self.0.load(Ordering::SeqCst) {
            0 => Phase::Before,
            1 => Phase::Stopping,
            2 => Phase::Down,
            3 => Phase::Starting,
            _ => Phase::After,
        }
    }
    fn set(&self, p: Phase) {
        self.0.store(p as u8, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A poll of the deferred grant.
    Poll,
    /// A new deferred request.
    Create,
    /// `POST /admin/deferrals/{id}/approve`.
    Approve,
    /// `GET /admin/deferrals/{id}` or `GET /admin/deferrals`.
    AdminRead,
    /// `GET /healthz`.
    Healthz,
}

#[derive(Debug)]
struct Answer {
    kind: Kind,
    what: String,
    sent: Phase,
    answered: Phase,
    /// 0: no answer within [`REQUEST_TIMEOUT`] or a transport error.
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    fn during_outage(&self) -> bool {
        self.sent == Phase::Down && self.answered == Phase::Down
    }
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

/// The shared state of the load and the checks.
#[derive(Default)]
struct Record {
    phase: PhaseCell,
    answers: Mutex<Vec<Answer>>,
    /// Access tokens handed to the client, per deferral id.
    tokens: Mutex<BTreeMap<String, Vec<String>>>,
    /// Deferrals an approval answered 200 or 409 for.
    approved_by_load: Mutex<BTreeSet<String>>,
}

impl Record {
    async fn send(&self, kind: Kind, what: String, req: reqwest::RequestBuilder) -> (u16, Value) {
        let sent = self.phase.get();
        let (status, retry_after, body) = match req.timeout(REQUEST_TIMEOUT).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let text = r.text().await.unwrap_or_default();
                let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                (status, retry_after, body)
            }
            Err(e) => (0, None, Value::String(format!("no answer: {e}"))),
        };
        let answered = self.phase.get();
        self.answers.lock().unwrap().push(Answer {
            kind,
            what,
            sent,
            answered,
            status,
            retry_after,
            body: body.clone(),
        });
        (status, body)
    }

    fn count(&self, f: impl Fn(&Answer) -> bool) -> usize {
        self.answers.lock().unwrap().iter().filter(|a| f(a)).count()
    }
}

// ---------------------------------------------------------------------
// Requests.

struct Nodes {
    issuers: [String; 2],
    http: reqwest::Client,
}

impl Nodes {
    fn poll(&self, node: usize, code: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/token", self.issuers[node]))
            .basic_auth("svc", Some("svc-secret"))
            .form(&[
                ("grant_type", dtr_proto::GRANT_TYPE_DEFERRED),
                ("deferral_code", code),
            ])
    }

    fn create(&self, node: usize) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/token", self.issuers[node]))
            .basic_auth("svc", Some("svc-secret"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
            ])
    }

    fn approve(&self, node: usize, id: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!(
                "{}/admin/deferrals/{id}/approve",
                self.issuers[node]
            ))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body("{}")
    }

    fn show(&self, node: usize, id: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/admin/deferrals/{id}", self.issuers[node]))
            .bearer_auth(ADMIN_TOKEN)
    }

    fn list(&self, node: usize) -> reqwest::RequestBuilder {
        self.http
            .get(format!(
                "{}/admin/deferrals?state=pending",
                self.issuers[node]
            ))
            .bearer_auth(ADMIN_TOKEN)
    }

    fn healthz(&self, node: usize) -> reqwest::RequestBuilder {
        self.http.get(format!("{}/healthz", self.issuers[node]))
    }
}

/// One deferral of the test.
#[derive(Clone)]
struct Deferral {
    id: String,
    code: String,
}

/// Polls its deferrals round-robin over both nodes until `stop`, each
/// deferral about once a second (its interval): the answers are the
/// deferral's own, never `slow_down`, outside the outage.
async fn poller(
    rec: Arc<Record>,
    nodes: Arc<Nodes>,
    mine: Vec<Deferral>,
    first_node: usize,
    stop: Arc<AtomicBool>,
) {
    let pause = Duration::from_millis(1250 / mine.len().max(1) as u64);
    let mut node = first_node;
    while !stop.load(Ordering::SeqCst) {
        for d in &mine {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let (status, body) = rec
                .send(
                    Kind::Poll,
                    format!("poll {} at node {node}", d.id),
                    nodes.poll(node, &d.code),
                )
                .await;
            if status == 200 {
                let token = body["access_token"].as_str().unwrap_or_default().to_owned();
                rec.tokens
                    .lock()
                    .unwrap()
                    .entry(d.id.clone())
                    .or_default()
                    .push(token);
            }
            node = 1 - node;
            tokio::time::sleep(pause).await;
        }
    }
}

/// Approves `targets` one at a time, alternating nodes, with an admin
/// read between approvals, until `stop`; an approval answered 503 is
/// tried again (it may have applied: then the retry answers 409).
async fn approver(
    rec: Arc<Record>,
    nodes: Arc<Nodes>,
    targets: Vec<Deferral>,
    all: Vec<Deferral>,
    stop: Arc<AtomicBool>,
) {
    let mut node = 0;
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let open: Vec<&Deferral> = {
            let done = rec.approved_by_load.lock().unwrap();
            targets.iter().filter(|d| !done.contains(&d.id)).collect()
        };
        if let Some(d) = open.first() {
            let (status, _) = rec
                .send(
                    Kind::Approve,
                    format!("approve {} at node {node}", d.id),
                    nodes.approve(node, &d.id),
                )
                .await;
            if status == 200 || status == 409 {
                rec.approved_by_load.lock().unwrap().insert(d.id.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let read = if i.is_multiple_of(2) {
            let d = &all[i / 2 % all.len()];
            (
                format!("show {} at node {node}", d.id),
                nodes.show(node, &d.id),
            )
        } else {
            (format!("list at node {node}"), nodes.list(node))
        };
        rec.send(Kind::AdminRead, read.0, read.1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        node = 1 - node;
        i += 1;
    }
}

// ---------------------------------------------------------------------
// Judging answers.

/// Words of database errors that must never reach a client.
const DETAIL: [&str; 7] = [
    "postgres",
    "connection",
    "sqlstate",
    "db error",
    "storage",
    "pool",
    "terminating",
];

/// What is wrong with a 503, if anything: it must be the fixed
/// `temporarily_unavailable` answer with `Retry-After`.
fn bad_unavailable(a: &Answer) -> Option<String> {
    if a.kind == Kind::Healthz {
        return (a.body["status"] != "database unavailable")
            .then(|| "healthz 503 without {\"status\": \"database unavailable\"}".into());
    }
    if a.error() != "temporarily_unavailable" {
        return Some("a 503 whose error is not temporarily_unavailable".into());
    }
    if a.retry_after.is_none() {
        return Some("a 503 without Retry-After".into());
    }
    let text = a.body.to_string().to_lowercase();
    DETAIL
        .iter()
        .find(|w| text.contains(*w))
        .map(|w| format!("a 503 with detail ({w})"))
}

/// What is wrong with `a`, if anything.
fn judge(a: &Answer) -> Option<String> {
    if a.status == 0 {
        return Some("no answer (a hang or a dropped connection)".into());
    }
    if a.status == 503 {
        if a.sent == Phase::Before && a.answered == Phase::Before {
            return Some("503 while the database was up".into());
        }
        return bad_unavailable(a);
    }
    if a.during_outage() {
        return Some(format!(
            "during the outage a {} instead of 503 temporarily_unavailable",
            a.status
        ));
    }
    let ok = match a.kind {
        Kind::Poll => match a.status {
            200 => a.body["access_token"].is_string(),
            400 => matches!(
                a.error(),
                "authorization_pending" | "slow_down" | "invalid_grant"
            ),
            _ => false,
        },
        Kind::Create => a.status == 400 && a.body["deferral_code"].is_string(),
        Kind::Approve => match a.status {
            200 => a.body["state"] == "approved",
            409 => a.body["error"] == "conflict",
            _ => false,
        },
        Kind::AdminRead | Kind::Healthz => a.status == 200,
    };
    (!ok).then(|| "not a legitimate answer".into())
}

// ---------------------------------------------------------------------

async fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn admin_state(nodes: &Nodes, node: usize, id: &str) -> String {
    let r = nodes.show(node, id).send().await.unwrap();
    assert_eq!(r.status(), 200, "show {id}");
    let v: Value = r.json().await.unwrap();
    v["state"].as_str().unwrap().to_owned()
}

/// A poll outside the load: (status, error or "token", the access token).
async fn poll_now(nodes: &Nodes, node: usize, code: &str) -> (u16, String, Option<String>) {
    let r = nodes.poll(node, code).send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    match v["access_token"].as_str() {
        Some(t) => (status, "token".into(), Some(t.to_owned())),
        None => (status, v["error"].as_str().unwrap_or("").to_owned(), None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root and PostgreSQL 15's server binaries; .ci/run runs it with --ignored"]
async fn postgres_outage_under_load_loses_nothing() {
    let pg = PrivatePg::create();
    for statement in [
        "CREATE ROLE dtr LOGIN PASSWORD 'dtr'",
        "CREATE DATABASE dtr OWNER dtr",
    ] {
        sql(&pg.url("postgres", "postgres"), statement).await;
    }
    let db = pg.url("dtr", "dtr");
    let clock = || Arc::new(dtr_server::clock::SystemClock) as Arc<dyn dtr_server::clock::Clock>;
    let a: Running = server::start_on(CONFIG, &db, clock()).await;
    let b: Running = server::start_on(CONFIG, &db, clock()).await;
    let nodes = Arc::new(Nodes {
        issuers: [a.issuer.clone(), b.issuer.clone()],
        http: reqwest::Client::new(),
    });
    let rec = Arc::new(Record::default());

    // The deferrals, half of them approved and a few redeemed, spread
    // over both nodes.
    let auth = || ClientAuth::SecretBasic {
        client_id: "svc".into(),
        secret: ClientSecret::new("svc-secret"),
    };
    let clients = [
        Client::discover(&a.issuer, auth()).await.unwrap(),
        Client::discover(&b.issuer, auth()).await.unwrap(),
    ];
    let admins = [
        AdminClient::new(&a.issuer, ADMIN_TOKEN).unwrap(),
        AdminClient::new(&b.issuer, ADMIN_TOKEN).unwrap(),
    ];
    let request = ClientCredentialsRequest {
        scope: Some("payments".into()),
        deferred: true,
        ..Default::default()
    };
    let mut all = Vec::new();
    for i in 0..DEFERRALS {
        let TokenResult::Deferred(d) = clients[i % 2].client_credentials(&request).await.unwrap()
        else {
            panic!("expected a deferral")
        };
        let stored = a
            .state
            .store
            .deferral_by_code(&d.code.hash())
            .await
            .unwrap()
            .expect("the deferral is stored");
        all.push(Deferral {
            id: stored.id,
            code: d.code.secret().to_owned(),
        });
    }
    for (i, d) in all.iter().enumerate().take(APPROVED_BEFORE) {
        admins[i % 2].approve(&d.id, None).await.unwrap();
    }
    for (i, d) in all.iter().enumerate().take(REDEEMED_BEFORE) {
        let TokenResult::Token(t) = clients[i % 2]
            .poll_once(&DeferralCode::new(d.code.clone()))
            .await
            .unwrap()
        else {
            panic!("expected the token of {}", d.id)
        };
        rec.tokens
            .lock()
            .unwrap()
            .insert(d.id.clone(), vec![t.access_token.clone()]);
    }
    let mut before = BTreeMap::new();
    for d in &all {
        before.insert(d.id.clone(), admin_state(&nodes, 0, &d.id).await);
    }
    let targets: Vec<Deferral> =
        all[APPROVED_BEFORE..APPROVED_BEFORE + APPROVED_UNDER_LOAD].to_vec();
    // Polled less than a second ago (the redemptions) would be slow_down:
    // let the interval pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // The load.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..POLLERS {
        let mine: Vec<Deferral> = all.iter().skip(p).step_by(POLLERS).cloned().collect();
        tasks.push(tokio::spawn(poller(
            rec.clone(),
            nodes.clone(),
            mine,
            p % 2,
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(approver(
        rec.clone(),
        nodes.clone(),
        targets.clone(),
        all.clone(),
        stop.clone(),
    )));

    // Some load with the database up, then the crash.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_until("answers before the outage", Duration::from_secs(30), || {
        rec.count(|a| a.answered == Phase::Before && a.kind == Kind::Poll) >= 8
    })
    .await;
    rec.phase.set(Phase::Stopping);
    pg.stop_immediately();
    rec.phase.set(Phase::Down);

    // During the outage: health, new requests and admin reads on both
    // nodes, next to the load's polls and approvals.
    for node in 0..2 {
        rec.send(
            Kind::Healthz,
            format!("healthz at node {node}"),
            nodes.healthz(node),
        )
        .await;
        rec.send(
            Kind::Create,
            format!("new deferred request at node {node}"),
            nodes.create(node),
        )
        .await;
        rec.send(
            Kind::AdminRead,
            format!("list at node {node}"),
            nodes.list(node),
        )
        .await;
    }
    wait_until(
        "the load's answers during the outage",
        Duration::from_secs(60),
        || {
            rec.count(|a| a.during_outage() && a.kind == Kind::Poll) >= 3 * POLLERS
                && rec.count(|a| a.during_outage() && a.kind == Kind::Approve) >= 2
                && rec.count(|a| a.during_outage() && a.kind == Kind::AdminRead) >= 4
        },
    )
    .await;
    for node in 0..2 {
        rec.send(
            Kind::Healthz,
            format!("healthz at node {node}"),
            nodes.healthz(node),
        )
        .await;
    }

    // PostgreSQL comes back (crash recovery); both nodes reconnect on
    // their own.
    rec.phase.set(Phase::Starting);
    pg.start();
    rec.phase.set(Phase::After);
    let recovered_at = Instant::now();
    for node in 0..2 {
        loop {
            let ok = nodes
                .healthz(node)
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                break;
            }
            assert!(
                recovered_at.elapsed() < Duration::from_secs(60),
                "node {node} does not recover after PostgreSQL is back"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // The load goes on until the approvals it makes have all applied.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_until(
        "the load's approvals after the outage",
        Duration::from_secs(60),
        || rec.approved_by_load.lock().unwrap().len() == targets.len(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    // The checks below poll: let the interval of the load's last polls pass.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // Every answer, judged.
    let answers = std::mem::take(&mut *rec.answers.lock().unwrap());
    let wrong: Vec<String> = answers
        .iter()
        .filter_map(|a| {
            judge(a).map(|why| {
                format!(
                    "{} (sent {:?}, answered {:?}): {} {} -> {why}",
                    a.what, a.sent, a.answered, a.status, a.body
                )
            })
        })
        .collect();
    let during = |k: Kind| {
        answers
            .iter()
            .filter(|a| a.during_outage() && a.kind == k)
            .count()
    };
    eprintln!(
        "{} answers; during the outage: {} polls, {} approvals, {} admin reads, {} new requests, {} health checks",
        answers.len(),
        during(Kind::Poll),
        during(Kind::Approve),
        during(Kind::AdminRead),
        during(Kind::Create),
        during(Kind::Healthz),
    );
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}\n--- PostgreSQL log ---\n{}",
        wrong.len(),
        wrong.join("\n"),
        pg.log()
    );
    assert_eq!(
        during(Kind::Healthz),
        4,
        "health checked on both nodes, twice"
    );
    assert_eq!(during(Kind::Create), 2);

    // Every deferral where it was, or in a later legitimate state.
    let tokens = rec.tokens.lock().unwrap().clone();
    let approved_by_load = rec.approved_by_load.lock().unwrap().clone();
    let recorded = tokens_per_deferral(&db).await;
    let mut lost = Vec::new();
    for d in &all {
        let now = admin_state(&nodes, 1, &d.id).await;
        let delivered = tokens.get(&d.id).map_or(0, Vec::len);
        assert!(delivered <= 1, "{}: {delivered} tokens delivered", d.id);
        assert_eq!(
            recorded.get(&d.id).copied().unwrap_or(0),
            delivered as i64,
            "{}: tokens recorded in the database vs. delivered",
            d.id
        );
        let was = before[&d.id].as_str();
        let legit: &[&str] = match was {
            "redeemed" => &["redeemed"],
            "approved" => &["approved", "redeemed"],
            "pending" if approved_by_load.contains(&d.id) => &["approved", "redeemed"],
            "pending" => &["pending"],
            other => panic!("{}: unexpected state {other} before the load", d.id),
        };
        assert!(
            legit.contains(&now.as_str()),
            "{}: {was} before the outage, {now} after",
            d.id
        );
        if now == "redeemed" && delivered == 0 {
            lost.push(d.id.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "approvals lost: redeemed without a token delivered: {lost:?}"
    );

    // Every approval collectable exactly once; pending ones approvable.
    for (i, d) in all.iter().enumerate() {
        let node = i % 2;
        let state = admin_state(&nodes, node, &d.id).await;
        if state == "pending" {
            let (status, error, _) = poll_now(&nodes, node, &d.code).await;
            assert_eq!(
                (status, error.as_str()),
                (400, "authorization_pending"),
                "{} still pending",
                d.id
            );
            let r = nodes.approve(1 - node, &d.id).send().await.unwrap();
            assert_eq!(r.status(), 200, "{} approvable", d.id);
        }
        if state != "redeemed" {
            let (status, error, token) = poll_now(&nodes, 1 - node, &d.code).await;
            assert_eq!(
                (status, error.as_str()),
                (200, "token"),
                "{} collectable",
                d.id
            );
            rec.tokens
                .lock()
                .unwrap()
                .entry(d.id.clone())
                .or_default()
                .push(token.unwrap());
        }
        let (status, error, _) = poll_now(&nodes, node, &d.code).await;
        assert_eq!(
            (status, error.as_str()),
            (400, "invalid_grant"),
            "{} collected once only",
            d.id
        );
        assert_eq!(admin_state(&nodes, node, &d.id).await, "redeemed");
    }
    let tokens = rec.tokens.lock().unwrap().clone();
    let recorded = tokens_per_deferral(&db).await;
    let distinct: BTreeSet<&String> = tokens.values().flatten().collect();
    assert_eq!(distinct.len(), DEFERRALS, "one token per deferral");
    for d in &all {
        assert_eq!(tokens[&d.id].len(), 1, "{}: one token delivered", d.id);
        assert_eq!(
            recorded.get(&d.id),
            Some(&1),
            "{}: one token recorded",
            d.id
        );
    }
    a.stop().await;
    b.stop().await;
}

/// The narrowest window of a poll: the deferral has passed the
/// exactly-once gate (`approved` -> `redeemed`, not yet committed) and the
/// token's row is being written when PostgreSQL goes down. No token left
/// the server, so the approval must still be collectable afterwards, once.
/// The window is held open deterministically: a trigger makes the token's
/// insert sleep, and PostgreSQL is stopped while it sleeps. It holds
/// because the redemption and the token's rows are one transaction
/// (`IssuanceStore::record_issuance`): the crash rolls both back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root and PostgreSQL 15's server binaries; .ci/run runs it with --ignored"]
async fn postgres_crash_between_redemption_and_token_keeps_the_approval() {
    let pg = PrivatePg::create();
    for statement in [
        "CREATE ROLE dtr LOGIN PASSWORD 'dtr'",
        "CREATE DATABASE dtr OWNER dtr",
    ] {
        sql(&pg.url("postgres", "postgres"), statement).await;
    }
    let db = pg.url("dtr", "dtr");
    let superuser = pg.url("postgres", "dtr");
    let clock = || Arc::new(dtr_server::clock::SystemClock) as Arc<dyn dtr_server::clock::Clock>;
    let a: Running = server::start_on(CONFIG, &db, clock()).await;
    let b: Running = server::start_on(CONFIG, &db, clock()).await;
    let nodes = Nodes {
        issuers: [a.issuer.clone(), b.issuer.clone()],
        http: reqwest::Client::new(),
    };
    let client = Client::discover(
        &a.issuer,
        ClientAuth::SecretBasic {
            client_id: "svc".into(),
            secret: ClientSecret::new("svc-secret"),
        },
    )
    .await
    .unwrap();
    let request = ClientCredentialsRequest {
        scope: Some("payments".into()),
        deferred: true,
        ..Default::default()
    };
    let TokenResult::Deferred(d) = client.client_credentials(&request).await.unwrap() else {
        panic!("expected a deferral")
    };
    let code = d.code.secret().to_owned();
    let id = a
        .state
        .store
        .deferral_by_code(&d.code.hash())
        .await
        .unwrap()
        .unwrap()
        .id;
    let r = nodes.approve(1, &id).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The token's insert sleeps; the poll passes the gate and waits in it.
    sql(
        &superuser,
        "CREATE FUNCTION hold_tokens() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$; \
         CREATE TRIGGER hold_tokens BEFORE INSERT ON access_tokens \
         FOR EACH ROW EXECUTE FUNCTION hold_tokens();",
    )
    .await;
    let poll = tokio::spawn({
        let req = nodes.poll(0, &code).timeout(REQUEST_TIMEOUT);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    });
    let (probe, conn) = tokio_postgres::connect(&superuser, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let start = Instant::now();
    loop {
        let held: i64 = probe
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if held == 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the poll never reached the token's insert"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state: String = probe
        .query_one("SELECT state FROM deferrals WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    // The redemption and the token's row are one transaction: until it
    // commits, nobody sees the deferral redeemed.
    assert_eq!(
        state, "approved",
        "the redemption is not visible before its token"
    );
    drop(probe);

    pg.stop_immediately();
    let (status, body) = poll.await.unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "the poll caught in the crash: {body}"
    );
    pg.start();
    sql(
        &superuser,
        "DROP TRIGGER hold_tokens ON access_tokens; DROP FUNCTION hold_tokens();",
    )
    .await;
    let start = Instant::now();
    for node in 0..2 {
        while !nodes
            .healthz(node)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "node {node} recovers"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // No token left the server: the approval is still there, collectable once.
    assert_eq!(tokens_per_deferral(&db).await.get(&id), None);
    let (status, what, _) = poll_now(&nodes, 1, &code).await;
    assert_eq!(
        (status, what.as_str()),
        (200, "token"),
        "the approval of {id} is collectable after the crash (state now {})",
        admin_state(&nodes, 1, &id).await
    );
    let (status, what, _) = poll_now(&nodes, 0, &code).await;
    assert_eq!((status, what.as_str()), (400, "invalid_grant"));
    assert_eq!(tokens_per_deferral(&db).await.get(&id), Some(&1));
    a.stop().await;
    b.stop().await;
}
