//! Open-loop (constant arrival rate) HTTP/1.1 load generator for `bench/run`:
//! latency percentiles at a fixed request rate, without coordinated omission.
//!
//! Why open-loop: a closed-loop tool such as wrk sends the next request on a
//! connection only once the previous answer has arrived. It can only measure
//! latency at saturation (it sends as fast as the server answers), and when
//! the server stalls the tool stalls with it: the requests that would have
//! arrived during the stall are never sent, so the queueing delay they would
//! have seen never reaches the percentiles. Here the schedule is fixed in
//! advance instead: request `i` is due at `start + i / rate` whatever
//! happened to the earlier ones, and its latency runs from that intended
//! start to the end of its response. A request that has to wait for a free
//! connection keeps its intended start, so a stalled or overloaded server
//! shows up in the percentiles, and as an achieved rate below the target.
//!
//! Usage:
//! `bench_load URL --rate R --duration SECS [--connections N] [--method GET|POST]
//!  [--path P] [--body B] [--auth HEADER_VALUE]
//!  [--prefix PREFIX --count N --param NAME --grant GRANT]`
//!
//! * `URL`: `http://host:port[/path]`, plain HTTP (loopback benchmarks).
//! * `--body`: a fixed `application/x-www-form-urlencoded` body.
//! * `--prefix` (poll mode, as bench/lua/poll.lua): request `i` polls
//!   `/token` with `grant_type=GRANT&NAME=PREFIX<i % N, 10 digits>`, the
//!   predictable codes that bench_seed writes.
//! * `--auth`: the `Authorization` header value, verbatim.
//! * The method defaults to POST with a body or in poll mode, GET otherwise.
//!
//! Output, one line on stdout (bench/lua/report.lua's fields, then more):
//! `RESULT rps=.. p50_us=.. p99_us=.. requests=.. ok=.. pending=.. slow_down=..
//!  other=.. socket_errors=.. target_rps=.. p999_us=.. max_us=..`
//!
//! Everything runs on one current-thread runtime, so that `bench/run` can
//! pin the generator to one core: a dispatcher walks the schedule and hands
//! each request to an idle connection from a pool (a channel of idle
//! connections), in a task of its own that returns the connection when done.
//! To start requests on time to the microsecond rather than on tokio's
//! millisecond timer ticks, the dispatcher spins (yielding) through the last
//! 2 ms before each due time: from 500 requests a second (gaps under 2 ms)
//! on, the generator keeps its core busy, so it wants a core of its own.
//!
//! At the end of the duration, requests still waiting for a connection are
//! not sent (the achieved rate falls short of the target); those in flight
//! get 5 s more, and any still unanswered then count as socket errors
//! (timeouts), as wrk counts its timeouts.

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout_at, Instant};

const USAGE: &str = "usage: bench_load URL --rate R --duration SECS [--connections N] \
    [--method GET|POST] [--path P] [--body B] [--auth HEADER_VALUE] \
    [--prefix PREFIX --count N --param NAME --grant GRANT]";

/// How long to wait, after the duration, for the requests still in flight.
const GRACE: Duration = Duration::from_secs(5);

/// One client connection; `None` in the pool means "reconnect before use"
/// (after an error).
type Conn = SendRequest<Full<Bytes>>;

/// What each request sends, prepared once.
struct Template {
    method: Method,
    uri: Uri,
    host: HeaderValue,
    auth: Option<HeaderValue>,
    body: Body,
}

enum Body {
    Empty,
    Fixed(Bytes),
    /// Poll mode: `start` is `grant_type=GRANT&NAME=`, then the code.
    Poll {
        start: String,
        prefix: String,
        count: u64,
    },
}

impl Template {
    /// Request number `i` of the schedule.
    fn build(&self, i: u64) -> Request<Full<Bytes>> {
        let body = match &self.body {
            Body::Empty => Bytes::new(),
            Body::Fixed(b) => b.clone(),
            Body::Poll {
                start,
                prefix,
                count,
            } => Bytes::from(format!("{start}{prefix}{:010}", i % count)),
        };
        let has_body = !matches!(self.body, Body::Empty);
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.insert(HOST, self.host.clone());
        if has_body {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
        if let Some(auth) = &self.auth {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        req
    }
}

struct Config {
    /// `host:port` to connect to.
    addr: String,
    rate: f64,
    duration: Duration,
    connections: usize,
    template: Template,
}

/// Hand-parsed command line; any mistake is an error carrying the usage.
fn parse_args() -> Result<Config> {
    let mut url = None;
    let (mut rate, mut duration, mut connections) = (None, None, 32usize);
    let (mut method, mut path, mut body, mut auth) = (None, None, None, None);
    let (mut prefix, mut count, mut param, mut grant) = (None, None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if !arg.starts_with("--") {
            if url.replace(arg).is_some() {
                bail!("more than one URL\n{USAGE}");
            }
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value\n{USAGE}"))?;
        match arg.as_str() {
            "--rate" => rate = Some(value.parse::<f64>().context("--rate: not a number")?),
            "--duration" => {
                duration = Some(value.parse::<f64>().context("--duration: not a number")?)
            }
            "--connections" => {
                connections = value.parse().context("--connections: not a number")?
            }
            "--method" => method = Some(value),
            "--path" => path = Some(value),
            "--body" => body = Some(value),
            "--auth" => auth = Some(value),
            "--prefix" => prefix = Some(value),
            "--count" => count = Some(value.parse::<u64>().context("--count: not a number")?),
            "--param" => param = Some(value),
            "--grant" => grant = Some(value),
            _ => bail!("unknown option {arg}\n{USAGE}"),
        }
    }

    let url = url.with_context(|| format!("missing URL\n{USAGE}"))?;
    let uri: Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// URLs are supported: {url}");
    }
    let authority = uri
        .authority()
        .with_context(|| format!("no host in {url}"))?;
    let addr = match authority.port_u16() {
        Some(_) => authority.to_string(),
        None => format!("{}:80", authority.host()),
    };
    let host = HeaderValue::from_str(authority.as_str())?;

    let rate = rate.with_context(|| format!("missing --rate\n{USAGE}"))?;
    let duration = duration.with_context(|| format!("missing --duration\n{USAGE}"))?;
    if !(rate.is_finite() && rate > 0.0) {
        bail!("--rate must be positive");
    }
    if !(duration.is_finite() && duration > 0.0) {
        bail!("--duration must be positive");
    }
    if connections == 0 {
        bail!("--connections must be at least 1");
    }

    let body = match (body, prefix) {
        (Some(_), Some(_)) => bail!("--body and --prefix (poll mode) exclude each other"),
        (Some(b), None) => Body::Fixed(Bytes::from(b)),
        (None, Some(prefix)) => {
            let count = count.context("poll mode (--prefix) needs --count")?;
            let param = param.context("poll mode (--prefix) needs --param")?;
            let grant = grant.context("poll mode (--prefix) needs --grant")?;
            if count == 0 {
                bail!("--count must be at least 1");
            }
            Body::Poll {
                start: format!("grant_type={grant}&{param}="),
                prefix,
                count,
            }
        }
        (None, None) => {
            if count.is_some() || param.is_some() || grant.is_some() {
                bail!("--count, --param and --grant need --prefix\n{USAGE}");
            }
            Body::Empty
        }
    };
    let method = match method.as_deref() {
        None if matches!(body, Body::Empty) => Method::GET,
        None | Some("POST") => Method::POST,
        Some("GET") => Method::GET,
        Some(m) => bail!("--method must be GET or POST, not {m}"),
    };
    // --path wins; then the URL's own path; poll mode polls /token.
    let path = match path {
        Some(p) => p,
        None if matches!(body, Body::Poll { .. }) => "/token".to_owned(),
        None => uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
    };
    let path: Uri = path.parse().with_context(|| format!("bad --path {path}"))?;
    let auth = auth
        .map(|a| HeaderValue::from_str(&a))
        .transpose()
        .context("--auth: not a valid header value")?;

    Ok(Config {
        addr,
        rate,
        duration: Duration::from_secs_f64(duration),
        connections,
        template: Template {
            method,
            uri: path,
            host,
            auth,
            body,
        },
    })
}

/// Counts by kind of answer, as bench/lua/report.lua counts them.
#[derive(Default)]
struct Stats {
    /// Intended start to end of response, in microseconds, one per answer.
    latencies_us: Vec<u64>,
    ok: u64,
    pending: u64,
    slow_down: u64,
    other: u64,
    socket_errors: u64,
    /// When the last answer or error came in.
    last_done: Option<Instant>,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Stats {
    fn record(&mut self, due: Instant, outcome: Result<(StatusCode, Bytes)>) {
        let done = Instant::now();
        self.last_done = Some(done);
        match outcome {
            Ok((status, body)) => {
                self.latencies_us
                    .push(done.saturating_duration_since(due).as_micros() as u64);
                if contains(&body, b"authorization_pending") {
                    self.pending += 1;
                } else if contains(&body, b"slow_down") {
                    self.slow_down += 1;
                } else if status.is_success() {
                    self.ok += 1;
                } else {
                    self.other += 1;
                    // The first unexpected answer, so that a broken setup is
                    // visible rather than only a count (stderr: stdout has
                    // only the RESULT line).
                    if self.other == 1 {
                        let shown = &body[..body.len().min(200)];
                        eprintln!(
                            "UNEXPECTED {} {}",
                            status.as_u16(),
                            String::from_utf8_lossy(shown)
                        );
                    }
                }
            }
            Err(e) => {
                self.socket_errors += 1;
                if self.socket_errors == 1 {
                    eprintln!("SOCKET ERROR {e:#}");
                }
            }
        }
    }
}

async fn connect(addr: &str) -> Result<Conn> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    // The connection driver does the actual reading and writing.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request on `conn` (reconnecting first if it is gone). Returns the
/// connection to put back in the pool, `None` after an error so that its
/// next user reconnects.
async fn exchange(
    conn: Option<Conn>,
    req: Request<Full<Bytes>>,
    addr: &str,
) -> (Option<Conn>, Result<(StatusCode, Bytes)>) {
    // A connection that the server closed while it sat idle (keep-alive
    // timeout) is replaced without counting an error.
    let usable = match conn {
        Some(mut c) => c.ready().await.is_ok().then_some(c),
        None => None,
    };
    let mut conn = match usable {
        Some(c) => c,
        None => match connect(addr).await {
            Ok(c) => c,
            Err(e) => return (None, Err(e.context("connect"))),
        },
    };
    let answer = async {
        let resp = conn.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, body))
    }
    .await;
    match answer {
        Ok(a) => (Some(conn), Ok(a)),
        Err(e) => (None, Err(e)),
    }
}

/// Sleeps until `due` with sub-millisecond precision. Tokio's timer ticks
/// in milliseconds and rounds up, which would add up to a millisecond of the
/// generator's own lateness to every latency; so this sleeps on the timer
/// only until shortly before `due`, then yields to the other tasks (answers
/// keep being read meanwhile) until the clock reaches `due`.
async fn wait_until(due: Instant) {
    if let Some(early) = due.checked_sub(Duration::from_millis(2)) {
        if Instant::now() < early {
            sleep_until(early).await;
        }
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // The message only (anyhow's `main` would add a backtrace when
    // RUST_BACKTRACE is set).
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let cfg = parse_args()?;
    let n = cfg.connections;
    let addr: Arc<str> = cfg.addr.into();
    let expected = (cfg.rate * cfg.duration.as_secs_f64()) as usize;
    let stats = Arc::new(Mutex::new(Stats {
        latencies_us: Vec::with_capacity(expected.min(50_000_000)),
        ..Stats::default()
    }));

    // The pool of idle connections, all opened before the clock starts.
    let (idle_tx, mut idle_rx) = mpsc::channel::<Option<Conn>>(n);
    for _ in 0..n {
        let conn = connect(&addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        idle_tx.try_send(Some(conn))?;
    }

    let start = Instant::now();
    let end = start + cfg.duration;
    let mut i: u64 = 0;
    loop {
        let due = start + Duration::from_secs_f64(i as f64 / cfg.rate);
        if due >= end {
            break;
        }
        wait_until(due).await;
        // With every connection busy the request waits here, and its
        // latency keeps counting from `due`: that wait is the point.
        let conn = match timeout_at(end, idle_rx.recv()).await {
            Ok(Some(conn)) => conn,
            // The duration is over with requests still waiting for a
            // connection: they are not sent, the achieved rate shows it.
            _ => break,
        };
        let req = cfg.template.build(i);
        let (addr, stats, idle_tx) = (addr.clone(), stats.clone(), idle_tx.clone());
        tokio::spawn(async move {
            let (conn, outcome) = exchange(conn, req, &addr).await;
            stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(due, outcome);
            // Capacity n and at most n connections: never full.
            let _ = idle_tx.send(conn).await;
        });
        i += 1;
    }

    // Wait (up to GRACE) for every connection to come back to the pool;
    // one still out has a request in flight, counted as a socket error
    // (a timeout), as wrk counts its timeouts.
    let grace_end = Instant::now().max(end) + GRACE;
    let mut back = 0;
    while back < n {
        match timeout_at(grace_end, idle_rx.recv()).await {
            Ok(Some(_)) => back += 1,
            _ => break,
        }
    }

    let mut s = std::mem::take(&mut *stats.lock().unwrap_or_else(|e| e.into_inner()));
    s.socket_errors += (n - back) as u64;
    s.latencies_us.sort_unstable();
    let answers = s.latencies_us.len();
    // Completions over the time they took: the duration, or longer if the
    // last answers came in during the grace period.
    let elapsed = s.last_done.map_or(end, |t| t.max(end)) - start;
    let lat = &s.latencies_us;
    println!(
        "RESULT rps={:.1} p50_us={} p99_us={} requests={} ok={} pending={} slow_down={} \
         other={} socket_errors={} target_rps={} p999_us={} max_us={}",
        answers as f64 / elapsed.as_secs_f64(),
        percentile(lat, 50.0),
        percentile(lat, 99.0),
        answers,
        s.ok,
        s.pending,
        s.slow_down,
        s.other,
        s.socket_errors,
        cfg.rate,
        percentile(lat, 99.9),
        lat.last().copied().unwrap_or(0),
    );
    Ok(())
}
