//! Legitimate traffic under a credential-guessing flood, for `bench/run`
//! (row 7): what a real client's token request and a real user's login
//! cost while many attackers send wrong secrets, against the same server
//! idle.
//!
//! Usage:
//! `bench_attack URL --server-pid PID --duration SECS --attackers N
//!  --client ID:SECRET --user NAME:PASSWORD [--rate R]`
//!
//! Two phases of `--duration` seconds each:
//! 1. idle: the legitimate loop alone. Every `1/R` seconds (default 20/s)
//!    it sends, alternately, a client credentials token request with the
//!    right secret and a login with the right password, from 127.0.0.1.
//! 2. attack: the same loop, while `N` attackers (default 200) loop as fast
//!    as the server answers them, each from 127.0.0.2 (another loopback
//!    source address, as an attacker has another address than the
//!    victims): wrong secrets of the real client id... of another client
//!    (`attacked`), unknown client ids, wrong passwords of another user
//!    (`bob`) and unknown users. The legitimate client and user are never
//!    attacked themselves: per-client and per-user throttles would refuse
//!    them then, by design (that is the lockout trade-off, measured by the
//!    security tests, not here).
//!
//! Latency of a legitimate request runs from its intended start (open
//! loop: a late request keeps its slot), so queueing shows.
//!
//! Output, one line per phase on stdout:
//! `RESULT phase=idle token_p50_us=.. token_p99_us=.. login_p50_us=..
//!  login_p99_us=.. legit_errors=.. server_cpu_pct=.. attack_requests=..
//!  attack_401=.. attack_429=.. attack_503=.. attack_other=..`

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    url: String,
    server_pid: u32,
    duration: Duration,
    attackers: usize,
    client: (String, String),
    user: (String, String),
    rate: f64,
}

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let url = it
        .next()
        .context("usage: bench_attack URL --server-pid PID ...")?;
    let mut a = Args {
        url: url.trim_end_matches('/').to_owned(),
        server_pid: 0,
        duration: Duration::from_secs(5),
        attackers: 200,
        client: (String::new(), String::new()),
        user: (String::new(), String::new()),
        rate: 20.0,
    };
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        let pair = |v: &str| -> Result<(String, String)> {
            let (x, y) = v.split_once(':').context("expected NAME:SECRET")?;
            Ok((x.to_owned(), y.to_owned()))
        };
        match flag.as_str() {
            "--server-pid" => a.server_pid = v.parse()?,
            "--duration" => a.duration = Duration::from_secs_f64(v.parse()?),
            "--attackers" => a.attackers = v.parse()?,
            "--client" => a.client = pair(&v)?,
            "--user" => a.user = pair(&v)?,
            "--rate" => a.rate = v.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if a.client.0.is_empty() || a.user.0.is_empty() {
        bail!("--client and --user are required");
    }
    Ok(a)
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces: ") S ppid ...".
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // Clock ticks: 100 per second on Linux unless configured otherwise.
    Some((utime + stime) / 100.0)
}

fn client_from(addr: Ipv4Addr) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .local_address(IpAddr::V4(addr))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn token_request(http: &reqwest::Client, a: &Args, id: &str, secret: &str) -> Option<u16> {
    http.post(format!("{}/token", a.url))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn login(http: &reqwest::Client, a: &Args, user: &str, password: &str) -> Option<u16> {
    // The login form's double-submit token: any value of 24 characters, as
    // cookie and field alike.
    let csrf = "benchcsrfbenchcsrfbench0";
    http.post(format!("{}/login", a.url))
        .header("Cookie", format!("dtr_login_csrf={csrf}"))
        .form(&[
            ("csrf", csrf),
            ("return_to", ""),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[derive(Default)]
struct AttackCounts {
    total: AtomicU64,
    s401: AtomicU64,
    s429: AtomicU64,
    s503: AtomicU64,
    other: AtomicU64,
}

async fn attacker(a: Arc<Args>, n: usize, stop: Arc<AtomicBool>, counts: Arc<AttackCounts>) {
    let Ok(http) = client_from(Ipv4Addr::new(127, 0, 0, 2)) else {
        return;
    };
    let mut i = n;
    while !stop.load(Ordering::Relaxed) {
        let status = match i % 4 {
            0 => token_request(&http, &a, "attacked", &format!("guess-{i}")).await,
            1 => token_request(&http, &a, &format!("nobody-{i}"), "guess").await,
            2 => login(&http, &a, "bob", &format!("guess-{i}")).await,
            _ => login(&http, &a, &format!("nobody-{i}"), "guess").await,
        };
        i += 1;
        counts.total.fetch_add(1, Ordering::Relaxed);
        let slot = match status {
            Some(401) => &counts.s401,
            Some(429) => &counts.s429,
            Some(503) => &counts.s503,
            _ => &counts.other,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the legitimate loop for the duration; returns (token latencies,
/// login latencies, errors), latencies in microseconds.
async fn legitimate(a: &Args) -> Result<(Vec<u64>, Vec<u64>, u64)> {
    let http = client_from(Ipv4Addr::LOCALHOST)?;
    let gap = Duration::from_secs_f64(1.0 / a.rate);
    let start = Instant::now();
    let (mut tokens, mut logins, mut errors) = (Vec::new(), Vec::new(), 0);
    let mut i: u32 = 0;
    loop {
        let due = start + gap * i;
        if due.duration_since(start) >= a.duration {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let ok = if i & 1 == 0 {
            let s = token_request(&http, a, &a.client.0, &a.client.1).await;
            tokens.push(due.elapsed().as_micros() as u64);
            s == Some(200)
        } else {
            let s = login(&http, a, &a.user.0, &a.user.1).await;
            logins.push(due.elapsed().as_micros() as u64);
            matches!(s, Some(200 | 303))
        };
        if !ok {
            errors += 1;
        }
        i += 1;
    }
    tokens.sort_unstable();
    logins.sort_unstable();
    Ok((tokens, logins, errors))
}

async fn phase(a: Arc<Args>, name: &str, attackers: usize) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(AttackCounts::default());
    let tasks: Vec<_> = (0..attackers)
        .map(|n| tokio::spawn(attacker(a.clone(), n, stop.clone(), counts.clone())))
        .collect();
    let cpu0 = cpu_seconds(a.server_pid);
    let t0 = Instant::now();
    let (tokens, logins, errors) = legitimate(&a).await?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(a.server_pid);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let cpu_pct = match (cpu0, cpu1) {
        (Some(x), Some(y)) => format!("{:.0}", (y - x) / wall * 100.0),
        _ => "-".into(),
    };
    let c = |x: &AtomicU64| x.load(Ordering::Relaxed);
    println!(
        "RESULT phase={name} token_p50_us={} token_p99_us={} login_p50_us={} login_p99_us={} \
         legit_requests={} legit_errors={errors} server_cpu_pct={cpu_pct} attack_requests={} \
         attack_401={} attack_429={} attack_503={} attack_other={}",
        percentile(&tokens, 0.50),
        percentile(&tokens, 0.99),
        percentile(&logins, 0.50),
        percentile(&logins, 0.99),
        tokens.len() + logins.len(),
        c(&counts.total),
        c(&counts.s401),
        c(&counts.s429),
        c(&counts.s503),
        c(&counts.other),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let run = async {
        let a = Arc::new(parse_args()?);
        phase(a.clone(), "idle", 0).await?;
        phase(a.clone(), "attack", a.attackers).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_attack: {e:#}");
            ExitCode::from(2)
        }
    }
}
