//! `[throttle]`: the budgets of failed authentications and registrations,
//! the sign-in backoff, the bound of the password hashing queue and the
//! tarpit delay of refusals.

use super::{err, ConfigError};
use serde::Deserialize;

/// `[throttle]`: how many failed authentications the server answers before
/// it refuses to look at more (without hashing), and how long a queue of
/// password hashes it keeps. The counters live in each node's memory: on
/// PostgreSQL with several nodes, each node throttles on its own, so the
/// budgets apply per node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Failed authentications per minute allowed for one client id and for
    /// one username (the rate at which the budget refills).
    pub failures_per_minute: u32,
    /// Failed authentications one client id or username may spend at once
    /// before the per-minute rate applies.
    pub failure_burst: u32,
    /// Failed authentications per minute allowed from one source address
    /// (IPv4 address, or IPv6 /64), whatever the client, user or token.
    pub address_failures_per_minute: u32,
    /// Failed authentications one source address may spend at once.
    pub address_failure_burst: u32,
    /// Client registrations (`POST /register`) per minute from one source
    /// address.
    pub registrations_per_minute: u32,
    /// Registrations one source address may make at once.
    pub registration_burst: u32,
    /// Wrong passwords of one user after which sign-ins back off
    /// exponentially: the k-th failure beyond this refuses every sign-in of
    /// that user for 2^k seconds after it, until a sign-in succeeds.
    pub login_backoff_after: u32,
    /// The longest a user's sign-in backoff lasts, in seconds.
    pub login_backoff_max_secs: u64,
    /// Password hashes that may wait per hashing thread (one thread per
    /// core, at most four); beyond that a request needing a hash is
    /// answered 503 `temporarily_unavailable` at once instead of queueing.
    pub hash_queue_per_thread: usize,
    /// Milliseconds a request refused by a throttle waits before its
    /// answer is sent (a tarpit). A client looping on refusals then sends
    /// at most one request per connection and delay, so a flood of guesses
    /// cannot fill the server with cheap refusals and starve legitimate
    /// requests; a refused client loses nothing it would not lose to
    /// `Retry-After`. 0 answers at once.
    pub refusal_delay_ms: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            failures_per_minute: 10,
            failure_burst: 5,
            address_failures_per_minute: 30,
            address_failure_burst: 20,
            registrations_per_minute: 10,
            registration_burst: 10,
            login_backoff_after: 5,
            login_backoff_max_secs: 900,
            hash_queue_per_thread: 16,
            refusal_delay_ms: 1000,
        }
    }
}

impl ThrottleConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("throttle.failures_per_minute", self.failures_per_minute),
            ("throttle.failure_burst", self.failure_burst),
            (
                "throttle.address_failures_per_minute",
                self.address_failures_per_minute,
            ),
            ("throttle.address_failure_burst", self.address_failure_burst),
            (
                "throttle.registrations_per_minute",
                self.registrations_per_minute,
            ),
            ("throttle.registration_burst", self.registration_burst),
            ("throttle.login_backoff_after", self.login_backoff_after),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        if !(1..=86_400).contains(&self.login_backoff_max_secs) {
            return Err(err(
                "throttle.login_backoff_max_secs",
                "must be between 1 and 86400 seconds",
            ));
        }
        if !(1..=1024).contains(&self.hash_queue_per_thread) {
            return Err(err(
                "throttle.hash_queue_per_thread",
                "must be between 1 and 1024",
            ));
        }
        if self.refusal_delay_ms > 10_000 {
            return Err(err("throttle.refusal_delay_ms", "must be at most 10000 ms"));
        }
        Ok(())
    }
}
