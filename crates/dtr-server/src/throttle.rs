//! Throttling of failed authentication, per client id, per username and
//! per source address, and of registrations per source address.
//!
//! Every wrong secret costs an Argon2 hash, so unthrottled guessing both
//! burns the CPU that legitimate sign-ins need and lets an attacker try
//! passwords online at full speed. RFC 6749 section 2.3.1: an endpoint
//! taking client passwords "MUST" be protected "against brute force
//! attacks"; section 10.10: the server "MUST prevent attackers from
//! guessing ... resource owner passwords, and client credentials". The
//! budgets are GCRA rate limiters of `governor`, keyed by what the attempt
//! names:
//!
//! - client authentication at the token, revocation, introspection, PAR and
//!   device authorization endpoints: the client id and the source address;
//! - a user's password sign-in: the username and the source address, plus
//!   an exponential backoff per user (below);
//! - the admin token (admin API, review console): the source address only.
//!   A budget shared by every caller would let anyone lock the admins out,
//!   and at 32 characters or more (`admin.token`) the token cannot be
//!   guessed online however many addresses try.
//!
//! Only failures spend the budget: before verifying, the budgets are
//! *looked at* without spending (a key over budget is refused at once,
//! without hashing), and a cell is spent only when the verification fails.
//! A client or user that authenticates correctly therefore never uses up
//! its own budget, however often it polls. While an attempt is being
//! verified it holds one cell, so a crowd of concurrent attempts gets at
//! most as many hashes as the budget has cells, not one each.
//!
//! How a refusal is answered, per endpoint:
//! - token, revocation, introspection, PAR, device authorization:
//!   `invalid_client` (401, `WWW-Authenticate`) with `Retry-After`. The
//!   client's authentication was not accepted, which is exactly what
//!   `invalid_client` says (RFC 6749 section 5.2, used unchanged by RFC 7009
//!   section 2.2.1, RFC 7662 section 2.3, RFC 9126 section 2.3 and RFC 8628
//!   section 3.2); RFC 6749 defines no 429, and `slow_down` belongs to
//!   polling. `Retry-After` (RFC 9110 section 10.2.3) is allowed on any
//!   response and tells well-behaved clients when to come back.
//! - HTML sign-in pages (login, review console): a 429 page with
//!   `Retry-After` (RFC 6585 section 4).
//! - admin API and registration: 429 JSON `{"error": "slow_down", ...}`
//!   with `Retry-After`.
//!
//! Sign-in backoff: after `[throttle] login_backoff_after` wrong passwords
//! of one user, every sign-in of that user is refused until 2^k seconds
//! (capped by `login_backoff_max_secs`) after the k-th further failure,
//! and a correct sign-in resets it. Time is the injected clock, so tests
//! advance it instead of sleeping.
//!
//! The counters live in this node's memory. With several nodes on one
//! PostgreSQL database each node keeps its own, so an attacker spreading
//! requests over N nodes gets N budgets; the bound stays proportional.
//! The source address is the TCP peer: behind a reverse proxy every
//! request comes from the proxy's address and shares its budget.

use crate::clock::Clock;
use crate::config::ThrottleConfig;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

tokio::task_local! {
    /// The peer address of the request being handled.
    static SOURCE: Option<IpAddr>;
    /// Whether the request is being answered with a throttle's refusal
    /// (see [`Refused::answered`]).
    static REFUSED: std::cell::Cell<bool>;
}

/// Runs `request` (the rest of a request's handling) with `addr` as its
/// source address, so the checks deep inside client authentication need
/// no plumbing through every handler; see [`source`]. Returns its output
/// and whether it was answered with a throttle's refusal (see
/// [`Refused::answered`]), which the caller holds in its tarpit.
pub async fn with_source<T>(addr: Option<IpAddr>, request: impl Future<Output = T>) -> (T, bool) {
    REFUSED
        .scope(std::cell::Cell::new(false), async {
            let out = SOURCE.scope(addr, request).await;
            (out, REFUSED.with(std::cell::Cell::get))
        })
        .await
}

/// The source address of the request being handled, if known.
pub fn source() -> Option<IpAddr> {
    SOURCE.try_with(|a| *a).ok().flatten()
}

/// The budget key of an address: an IPv4 address as is (also when mapped
/// into IPv6), an IPv6 address by its /64, the smallest block one
/// subscriber is usually given: per address, one host could rotate through
/// 2^64 of them.
fn address_key(ip: Option<IpAddr>) -> Option<IpAddr> {
    ip.map(|ip| match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    })
}

/// What an authentication attempt claims to be.
#[derive(Clone, Copy, Debug)]
pub enum Attempt<'a> {
    /// A client authenticating at an endpoint of [`crate::client_auth`].
    Client(&'a str),
    /// A user signing in with a password.
    User(&'a str),
    /// Someone presenting the admin token.
    AdminToken,
}

/// How a verification ended, as far as the budgets are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The credentials were right: clears the user's backoff.
    Success,
    /// The credentials were wrong: spends one failure of every budget.
    Failure,
    /// Nothing was decided (overload, internal error): no budget changes.
    Undecided,
}

/// A refusal: over budget, come back after `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// How long until the next attempt would be looked at.
    pub retry_after: Duration,
}

impl Refused {
    /// Whole seconds for `Retry-After`, rounded up and at least 1.
    /// Marks the request being handled as answered with this refusal (it
    /// is then held by the tarpit of
    /// [`crate::http::throttle_source::remember_source`]) and returns the
    /// seconds for its `Retry-After`. Every answer of a refusal goes
    /// through here; a refusal overruled (credentials this node already
    /// verified) is not answered and holds nothing.
    pub fn answered(&self) -> u64 {
        let _ = REFUSED.try_with(|c| c.set(true));
        self.retry_after_secs()
    }

    /// Seconds for `Retry-After`, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let ms = self.retry_after.as_millis();
        u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX).max(1)
    }
}

/// `governor`'s view of the injected clock: nanoseconds since the Unix
/// epoch, so a `ManualClock` drives the budgets like every other expiry.
#[derive(Clone)]
struct InjectedClock(Arc<dyn Clock>);

impl governor::clock::Clock for InjectedClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        let ms = u64::try_from(self.0.now_ms()).unwrap_or(0);
        Nanos::from(Duration::from_millis(ms))
    }
}

/// A key and whether the decision spends a cell of its budget.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Probe<K> {
    key: K,
    spend: bool,
}

/// A `DashMap` state store that can also be *looked at*: a probe with
/// `spend = false` runs the limiter's decision on the current state and
/// keeps that state, so a key can be refused before any work without
/// success costing budget.
struct LookingStore<K: Hash + Eq + Clone>(DashMapStateStore<K>);

impl<K: Hash + Eq + Clone> StateStore for LookingStore<K> {
    type Key = Probe<K>;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe<K>, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if probe.spend {
            return self.0.measure_and_replace(&probe.key, f);
        }
        if !self.0.contains_key(&probe.key) {
            // A fresh key; looking must not create an entry.
            return f(None).map(|(t, _)| t);
        }
        // The store replaces the state only on `Ok`: hand it the decision
        // as an `Err` so the state stays as it was.
        match self
            .0
            .measure_and_replace(&probe.key, |tat| Err::<(Infallible, Nanos), _>(f(tat)))
        {
            Ok(never) => match never {},
            Err(decision) => decision.map(|(t, _)| t),
        }
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<Probe<K>> for LookingStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.0, drop_below);
    }
    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.0);
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Decisions between two sweeps of keys whose budget is full again.
const SWEEP_EVERY: u64 = 4096;

/// One keyed budget.
struct Budget<K: Hash + Eq + Clone> {
    limiter: RateLimiter<Probe<K>, LookingStore<K>, InjectedClock, NoOpMiddleware<Nanos>>,
    clock: InjectedClock,
    decisions: AtomicU64,
    /// Attempts of each key being verified now. Each holds a cell of the
    /// budget until its outcome is known, so a crowd of concurrent
    /// attempts cannot all pass the look before the first failure is
    /// spent (only as many as the budget has cells go to hashing).
    in_flight: Mutex<HashMap<K, u32>>,
    /// How long one cell takes to come back.
    interval: Duration,
}

impl<K: Hash + Eq + Clone> Budget<K> {
    fn new(per_minute: u32, burst: u32, clock: InjectedClock) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let interval = Duration::from_secs(60) / per_minute.get();
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_minute(per_minute))
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::new(
                quota,
                LookingStore(DashMapStateStore::default()),
                clock.clone(),
            ),
            clock,
            decisions: AtomicU64::new(0),
            in_flight: Mutex::new(HashMap::new()),
            interval,
        }
    }

    /// Holds one cell for an attempt about to be verified: refused when
    /// the cells left do not cover it and the attempts of the same key
    /// already being verified. Spends nothing: [`Budget::release`] when the
    /// outcome is known.
    fn reserve(&self, key: &K) -> Result<(), Refused> {
        let mut pending = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = pending.get(key).copied().unwrap_or(0).saturating_add(1);
        let now = governor::clock::Clock::now(&self.clock);
        let probe = Probe {
            key: key.clone(),
            spend: false,
        };
        match self
            .limiter
            .check_key_n(&probe, NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
        {
            Ok(Ok(())) => {
                *pending.entry(key.clone()).or_insert(0) += 1;
                Ok(())
            }
            Ok(Err(not_until)) => Err(Refused {
                retry_after: not_until.wait_time_from(now).max(Duration::from_millis(1)),
            }),
            // More attempts in flight than the whole burst.
            Err(_) => Err(Refused {
                retry_after: self.interval,
            }),
        }
    }

    /// Lets go of a cell held by [`Budget::reserve`].
    fn release(&self, key: &K) {
        let mut pending = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = pending.get_mut(key) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                pending.remove(key);
            }
        }
    }

    fn decide(&self, key: K, spend: bool) -> Option<Refused> {
        // Keys are attacker-chosen (client ids, usernames): forget the ones
        // whose budget is full again, so memory stays proportional to the
        // failures of the last minutes.
        if self.decisions.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        let now = governor::clock::Clock::now(&self.clock);
        self.limiter
            .check_key(&Probe { key, spend })
            .err()
            .map(|not_until| Refused {
                retry_after: not_until.wait_time_from(now),
            })
    }

    /// Spends one cell (when there is one left).
    fn spend(&self, key: K) -> Option<Refused> {
        self.decide(key, true)
    }
}

/// Cells held for one attempt being verified (see [`Throttle::check`]).
/// Dropped without [`Reservation::record`] (say the request was
/// cancelled), it lets them go and changes nothing else.
#[must_use = "record the outcome of the attempt"]
pub struct Reservation<'a> {
    throttle: &'a Throttle,
    name: Option<Name>,
    address: Option<Option<IpAddr>>,
    user: Option<String>,
}

impl Reservation<'_> {
    /// Records how the attempt ended: a failure spends a cell of each of
    /// its budgets (and counts towards the user's backoff), a success
    /// clears the user's backoff.
    pub fn record(self, outcome: Outcome) {
        let t = self.throttle;
        match outcome {
            Outcome::Undecided => {}
            Outcome::Success => {
                if let (Some(u), Ok(mut m)) = (&self.user, t.backoff.lock()) {
                    m.remove(u);
                }
            }
            Outcome::Failure => {
                // Spent before the held cells are let go (on drop), so the
                // failure is never uncounted in between.
                if let Some(n) = &self.name {
                    let _ = t.names.spend(n.clone());
                }
                if let Some(a) = self.address {
                    let _ = t.addresses.spend(a);
                }
                if let Some(u) = &self.user {
                    t.user_failed(u);
                }
            }
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(n) = &self.name {
            self.throttle.names.release(n);
        }
        if let Some(a) = &self.address {
            self.throttle.addresses.release(a);
        }
    }
}

/// Who a per-name budget belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Name {
    Client(String),
    User(String),
}

/// A user's run of wrong passwords.
#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last_ms: i64,
}

/// Users whose failures are remembered at most; beyond that, runs whose
/// backoff is over are forgotten first.
const MAX_BACKOFF_ENTRIES: usize = 100_000;

/// The throttles of one server (one node).
pub struct Throttle {
    names: Budget<Name>,
    addresses: Budget<Option<IpAddr>>,
    registrations: Budget<Option<IpAddr>>,
    backoff: Mutex<HashMap<String, Failures>>,
    backoff_after: u32,
    backoff_max_ms: i64,
    clock: Arc<dyn Clock>,
}

impl Throttle {
    /// Budgets as configured in `[throttle]`, on the server's clock.
    pub fn new(config: &ThrottleConfig, clock: Arc<dyn Clock>) -> Self {
        let c = InjectedClock(clock.clone());
        Self {
            names: Budget::new(config.failures_per_minute, config.failure_burst, c.clone()),
            addresses: Budget::new(
                config.address_failures_per_minute,
                config.address_failure_burst,
                c.clone(),
            ),
            registrations: Budget::new(
                config.registrations_per_minute,
                config.registration_burst,
                c,
            ),
            backoff: Mutex::new(HashMap::new()),
            backoff_after: config.login_backoff_after.max(1),
            backoff_max_ms: i64::try_from(config.login_backoff_max_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            clock,
        }
    }

    fn name(attempt: Attempt<'_>) -> Option<Name> {
        match attempt {
            Attempt::Client(id) => Some(Name::Client(id.to_owned())),
            Attempt::User(u) => Some(Name::User(u.to_owned())),
            Attempt::AdminToken => None,
        }
    }

    /// Whether `attempt` from `from` may be verified now: refused when the
    /// user is backing off, or a budget of the attempt has no cell left
    /// for it beside the attempts of the same keys being verified. The
    /// [`Reservation`] holds a cell of each budget until
    /// [`Reservation::record`] (or its drop) says how the attempt ended.
    pub fn check<'a>(
        &'a self,
        attempt: Attempt<'_>,
        from: Option<IpAddr>,
    ) -> Result<Reservation<'a>, Refused> {
        if let Attempt::User(u) = attempt {
            if let Some(r) = self.backoff_wait(u) {
                return Err(r);
            }
        }
        let mut held = Reservation {
            throttle: self,
            name: None,
            address: None,
            user: match attempt {
                Attempt::User(u) => Some(u.to_owned()),
                _ => None,
            },
        };
        if let Some(n) = Self::name(attempt) {
            self.names.reserve(&n)?;
            held.name = Some(n);
        }
        let a = address_key(from);
        // On refusal `held` drops and lets the name's cell go.
        self.addresses.reserve(&a)?;
        held.address = Some(a);
        Ok(held)
    }

    /// [`Throttle::check`], then `verify` unless refused, then
    /// [`Reservation::record`] of what `judge` makes of its result: the
    /// one way every endpoint guards a verification.
    pub async fn guard<R>(
        &self,
        attempt: Attempt<'_>,
        from: Option<IpAddr>,
        verify: impl std::future::Future<Output = R>,
        judge: impl FnOnce(&R) -> Outcome,
    ) -> Result<R, Refused> {
        let held = self.check(attempt, from)?;
        let result = verify.await;
        let outcome = judge(&result);
        if outcome == Outcome::Failure {
            tracing::info!(?attempt, "authentication failed");
        }
        held.record(outcome);
        Ok(result)
    }

    /// Counts one registration from `from`; refused when over budget.
    pub fn registration(&self, from: Option<IpAddr>) -> Result<(), Refused> {
        match self.registrations.spend(address_key(from)) {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    fn backoff_wait(&self, user: &str) -> Option<Refused> {
        let f = *self.backoff.lock().ok()?.get(user)?;
        let wait = self.backoff_ms(f.count)?;
        let until = f.last_ms.saturating_add(wait);
        let now = self.clock.now_ms();
        (now < until).then(|| Refused {
            retry_after: Duration::from_millis(u64::try_from(until - now).unwrap_or(0)),
        })
    }

    /// The backoff after `count` failures: none before `backoff_after`,
    /// then 2 s, 4 s, 8 s, ... up to the maximum.
    fn backoff_ms(&self, count: u32) -> Option<i64> {
        let k = count.checked_sub(self.backoff_after)?.saturating_add(1);
        let secs = 1i64.checked_shl(k.min(40)).unwrap_or(i64::MAX);
        Some(secs.saturating_mul(1000).min(self.backoff_max_ms))
    }

    fn user_failed(&self, user: &str) {
        let now = self.clock.now_ms();
        let Ok(mut m) = self.backoff.lock() else {
            return;
        };
        if m.len() >= MAX_BACKOFF_ENTRIES && !m.contains_key(user) {
            let max = self.backoff_max_ms;
            m.retain(|_, f| now.saturating_sub(f.last_ms) < max);
        }
        let f = m.entry(user.to_owned()).or_insert(Failures {
            count: 0,
            last_ms: now,
        });
        f.count = f.count.saturating_add(1);
        f.last_ms = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn throttle(clock: &Arc<ManualClock>) -> Throttle {
        let config = ThrottleConfig {
            failures_per_minute: 6,
            failure_burst: 5,
            address_failures_per_minute: 60,
            address_failure_burst: 10,
            registrations_per_minute: 1,
            registration_burst: 2,
            login_backoff_after: 2,
            login_backoff_max_secs: 10,
            ..ThrottleConfig::default()
        };
        Throttle::new(&config, clock.clone())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    /// One attempt that is looked at and ends with `outcome`.
    fn attempt(t: &Throttle, a: Attempt<'_>, from: Option<IpAddr>, outcome: Outcome) {
        t.check(a, from).expect("looked at").record(outcome);
    }

    #[test]
    fn failures_spend_the_budget_and_successes_do_not() {
        let clock = Arc::new(ManualClock::new());
        let t = throttle(&clock);
        let a = Attempt::Client("svc");
        for _ in 0..100 {
            attempt(&t, a, None, Outcome::Success);
        }
        for _ in 0..5 {
            attempt(&t, a, None, Outcome::Failure);
        }
        let r = t.check(a, None).err().expect("over budget");
        // One cell comes back every 10 s (6 per minute).
        assert_eq!(r.retry_after_secs(), 10);
        assert!(t.check(Attempt::Client("other"), None).is_ok());
        clock.advance_secs(10);
        assert!(t.check(a, None).is_ok());
    }

    #[test]
    fn attempts_being_verified_hold_a_cell_each() {
        let clock = Arc::new(ManualClock::new());
        let t = throttle(&clock);
        let a = Attempt::Client("svc");
        // Five concurrent attempts take the whole burst: a sixth is
        // refused before any of them failed.
        let held: Vec<_> = (0..5).map(|_| t.check(a, None).expect("a cell")).collect();
        assert!(t.check(a, None).is_err());
        // A success gives its cell back; a cancelled attempt too.
        let mut held = held.into_iter();
        held.next().expect("held").record(Outcome::Success);
        drop(held.next());
        let again = t.check(a, None).expect("a cell came back");
        // Failures spend theirs.
        for h in held {
            h.record(Outcome::Failure);
        }
        again.record(Outcome::Failure);
        assert!(t.check(a, None).is_ok(), "one cell left of five");
        attempt(&t, a, None, Outcome::Failure);
        assert!(t.check(a, None).is_err());
        assert!(t
            .names
            .in_flight
            .lock()
            .map(|m| m.is_empty())
            .unwrap_or(false));
        assert!(t
            .addresses
            .in_flight
            .lock()
            .map(|m| m.is_empty())
            .unwrap_or(false));
    }

    #[test]
    fn addresses_are_budgeted_by_ipv4_and_ipv6_slash_64() {
        let clock = Arc::new(ManualClock::new());
        let t = throttle(&clock);
        for i in 0..10 {
            // Different clients, one /64.
            let id = format!("c{i}");
            let from = ip(&format!("2001:db8::{i}"));
            attempt(&t, Attempt::Client(&id), from, Outcome::Failure);
        }
        assert!(t
            .check(Attempt::Client("new"), ip("2001:db8::ffff"))
            .is_err());
        assert!(t
            .check(Attempt::AdminToken, ip("2001:db8:0:0:1::1"))
            .is_err());
        assert!(t
            .check(Attempt::Client("new"), ip("2001:db8:0:1::1"))
            .is_ok());
        assert!(t.check(Attempt::Client("new"), ip("192.0.2.1")).is_ok());
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn user_backoff_grows_and_a_success_resets_it() {
        let clock = Arc::new(ManualClock::new());
        let t = throttle(&clock);
        let u = Attempt::User("alice");
        attempt(&t, u, ip("192.0.2.1"), Outcome::Failure);
        attempt(&t, u, ip("192.0.2.2"), Outcome::Failure);
        // Second failure: 2 s, from any address.
        let r = t.check(u, ip("192.0.2.3")).err().expect("backing off");
        assert_eq!(r.retry_after_secs(), 2);
        clock.advance_secs(2);
        attempt(&t, u, None, Outcome::Failure);
        clock.advance_secs(3);
        let r = t.check(u, None).err().expect("backing off");
        assert_eq!(r.retry_after_secs(), 1);
        clock.advance_secs(1);
        attempt(&t, u, None, Outcome::Success);
        attempt(&t, u, None, Outcome::Failure);
        assert!(t.check(u, None).is_ok());
        // Capped at the maximum.
        assert_eq!(t.backoff_ms(40), Some(10_000));
    }

    #[test]
    fn looking_creates_no_state_and_registrations_spend() {
        let clock = Arc::new(ManualClock::new());
        let t = throttle(&clock);
        for i in 0..50 {
            let held = t.check(Attempt::Client(&format!("x{i}")), None);
            drop(held);
        }
        assert!(t.names.limiter.is_empty());
        assert!(t.registration(ip("192.0.2.9")).is_ok());
        assert!(t.registration(ip("192.0.2.9")).is_ok());
        assert!(t.registration(ip("192.0.2.9")).is_err());
        assert!(t.registration(ip("192.0.2.10")).is_ok());
    }
}
