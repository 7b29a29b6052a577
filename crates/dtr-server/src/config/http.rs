//! `[http]`: the connection limits of the HTTP listener (timeouts and the
//! cap on open connections).

use super::{err, ConfigError};
use serde::Deserialize;

/// `[http]`: how long a client may hold a connection without making
/// progress, and how many connections are open at once. Every connection
/// costs a file descriptor and memory, so none is held for free: a
/// client that stops sending (slowloris) or just keeps a socket open is
/// disconnected, and at the cap new connections wait in the kernel's
/// accept backlog until one closes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Milliseconds a client has to send a complete request head (request
    /// line and headers), counted from its first byte. A connection whose
    /// head is still incomplete then is closed without an answer.
    pub header_timeout_ms: u64,
    /// Milliseconds a whole request body may take to arrive, counted from
    /// when the server starts reading it; later, the request is answered
    /// 408 `invalid_request` and the connection closed.
    pub body_timeout_ms: u64,
    /// Milliseconds a connection may sit with no request in progress (after
    /// connecting, or between keep-alive requests) before it is closed.
    pub idle_timeout_ms: u64,
    /// Connections open at once. At the cap the server stops accepting
    /// until one closes; new connections wait in the kernel backlog (and
    /// are refused by the kernel when that is full).
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
        }
    }
}

impl HttpConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("http.header_timeout_ms", self.header_timeout_ms),
            ("http.body_timeout_ms", self.body_timeout_ms),
            ("http.idle_timeout_ms", self.idle_timeout_ms),
        ] {
            // Zero would mean "no time at all"; an hour is far beyond any
            // legitimate client and would make the limit meaningless.
            if !(1..=3_600_000).contains(&v) {
                return Err(err(key, "must be between 1 and 3600000 ms"));
            }
        }
        // Each connection holds a file descriptor; the semaphore counts in u32.
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(err("http.max_connections", "must be between 1 and 1000000"));
        }
        Ok(())
    }

    /// `header_timeout_ms` as a duration.
    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.header_timeout_ms)
    }

    /// `body_timeout_ms` as a duration.
    pub fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.body_timeout_ms)
    }

    /// `idle_timeout_ms` as a duration.
    pub fn idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.idle_timeout_ms)
    }
}
