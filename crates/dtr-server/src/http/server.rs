//! The listener: HTTP/1.1 connections served with the router, each held
//! only while its client makes progress (`[http]` in the configuration).
//!
//! Every open connection costs a file descriptor, a task and buffers, so
//! none is held for free:
//! - a request head (request line and headers) must be complete within
//!   `header_timeout_ms` of its first byte, else the connection is closed
//!   without an answer (slowloris: a few bytes now and then);
//! - a connection with no request in progress (just accepted, or between
//!   keep-alive requests) is closed after `idle_timeout_ms` (a pipelined
//!   head whose first bytes came while the previous request was being
//!   answered is bounded by this one, not by `header_timeout_ms`);
//! - a request body must arrive within `body_timeout_ms` (see
//!   [`super::body`], which answers 408);
//! - at most `max_connections` are open. At the cap the loop stops
//!   accepting until one closes: new connections wait in the kernel's
//!   accept backlog (and the kernel refuses them when that is full),
//!   which costs this process nothing, where accepting and closing them
//!   at once would spend a descriptor and a syscall on each attacker
//!   connection and serve no one better.
//!
//! Only HTTP/1.1 (and 1.0) is spoken. dtr is reached through a TLS
//! terminating proxy or directly by OAuth clients, which all speak
//! HTTP/1.1; cleartext HTTP/2 would add a second protocol engine (and its
//! stream-level attacks) for no client we know.
//!
//! Each request carries `ConnectInfo<SocketAddr>` (the peer address) in
//! its extensions, as `axum::serve` with connect info would.

use crate::config::HttpConfig;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

/// Where a connection is in its life, for its timeouts.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// No request in progress and no byte of the next one, since then.
    Idle(Instant),
    /// The first byte of a request head arrived then; the head is not
    /// complete yet.
    Head(Instant),
    /// This many requests are being answered (their heads are complete).
    Busy(usize),
}

/// The phase of one connection, shared by its socket wrapper, its
/// requests and its watchdog.
struct Progress {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Progress {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Idle(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        {
            let mut p = self.phase.lock().unwrap_or_else(|e| e.into_inner());
            *p = f(*p);
        }
        // A stored permit if the watchdog is not waiting: it re-reads the
        // phase before sleeping again, so no change is missed.
        self.changed.notify_one();
    }

    fn current(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived from the client. While idle they begin a request
    /// head, which then has `header_timeout` to complete.
    fn bytes_read(&self) {
        if matches!(self.current(), Phase::Idle(_)) {
            self.update(|p| match p {
                Phase::Idle(_) => Phase::Head(Instant::now()),
                other => other,
            });
        }
    }

    fn request_started(&self) {
        self.update(|p| match p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
    }

    fn request_finished(&self) {
        self.update(|p| match p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }

    /// When the connection is to be closed if nothing changes.
    fn deadline(&self, limits: &HttpConfig) -> Option<Instant> {
        match self.current() {
            Phase::Idle(since) => Some(since + limits.idle_timeout()),
            Phase::Head(since) => Some(since + limits.header_timeout()),
            // The body timeout bounds reading; answering is ours.
            Phase::Busy(_) => None,
        }
    }
}

/// Ends a request's [`Phase::Busy`] share when its response has been
/// written (or the request abandoned).
struct InFlight(Arc<Progress>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The client's socket, reporting the bytes it reads to [`Progress`].
struct Watched {
    io: TcpStream,
    progress: Arc<Progress>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.progress.bytes_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, b)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting, lets every connection finish the request it is answering
/// (idle ones close at once) and returns when all are closed.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    raise_nofile_limit(limits.max_connections);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        // At the cap, wait for a connection to close before accepting.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory: accepting again at once
                    // would spin; closing connections frees some.
                    tracing::warn!(error = %e, "accept failed; retrying in 1 s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let limits = limits.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            connection(stream, remote, router, &limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every open connection holds a permit until it closes.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection, until it ends, times out or is drained at shutdown.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: &HttpConfig,
    mut stop: watch::Receiver<bool>,
) {
    let progress = Arc::new(Progress::new());
    let io = TokioIo::new(Watched {
        io: stream,
        progress: progress.clone(),
    });
    let in_service = progress.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            in_service.request_started();
            let in_flight = InFlight(in_service.clone());
            let router = router.clone();
            async move {
                let resp = tower::ServiceExt::oneshot(router, req).await?;
                // The request counts as in progress until hyper drops the
                // body, having written it.
                Ok::<_, std::convert::Infallible>(resp.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &in_flight;
                        frame
                    }))
                }))
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        // Our own watchdog times the head: hyper's timer would also run
        // while the connection is idle, making idle_timeout meaningless.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = *stop.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let deadline = progress.deadline(limits);
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = progress.changed.notified() => {}
            () = expired => {
                // Re-read: a byte or a request may have come just now.
                if progress.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(phase = ?progress.current(), "connection timed out");
                    return;
                }
            }
            _ = stop.changed(), if !draining => {
                draining = true;
                // Closes an idle connection now, a busy one after its answer.
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Raises the soft limit of open files to the hard limit, once per
/// process: each connection holds a descriptor, and distributions often
/// start services with a soft limit of 1024.
fn raise_nofile_limit(max_connections: usize) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => {
            tracing::info!(nofile = soft, "open file limit");
            // Room for the database, callbacks and logs besides connections.
            if soft < max_connections as u64 + 64 {
                tracing::warn!(
                    nofile = soft,
                    max_connections,
                    "open file limit is below http.max_connections; accepts will fail before the cap"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Handlers see the peer address, as with `axum::serve` and connect
    /// info (per-client throttling relies on it).
    #[tokio::test]
    async fn requests_carry_the_peer_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(listener, router, HttpConfig::default(), async {
            let _ = stopped.await;
        }));
        let mut s = TcpStream::connect(addr).await.unwrap();
        let me = s.local_addr().unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with(&me.to_string()), "{out}");
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
