//! Waiting for a deferral to resolve: the polling loop of the draft's
//! "Token Endpoint — Polling" (DTR-15..19), driven by an injectable
//! [`Clock`] and an injectable [`PollTransport`].
//!
//! Schedule, all times measured from the previous poll:
//! - the first poll comes `interval` seconds after the deferred response;
//! - every `slow_down` adds 5 s to the interval for the rest of the
//!   deferral (DTR-19, RFC 8628 section 3.5);
//! - `authorization_pending` and `interaction_required` continue (DTR-18);
//!   every other error ends polling for good (`invalid_grant`,
//!   `expired_token`, `access_denied`, `invalid_request`, ...);
//! - no poll is sent at or after the code's expiry. With a relaxed
//!   schedule (see [`Poller::with_relaxed_delay`]) the last poll is moved
//!   to just before expiry so a late decision is still collected; it never
//!   comes sooner than `interval` after the previous poll, which the draft
//!   forbids ("MUST NOT send polling requests faster than ... interval").
//! - a callback notification (DTR-26) may wake the poller early through
//!   [`Poller::waker`]; it then polls as soon as the interval allows
//!   (DTR-30: the callback only says "poll now").

use crate::client::Client;
use crate::clock::Clock;
use crate::deferral::{Deferral, TokenResult};
use crate::error::Error;
use dtr_proto::secret::DeferralCode;
use dtr_proto::token::TokenResponse;
use dtr_proto::{ErrorCode, OAuthError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Seconds added to the interval on every `slow_down` (DTR-19: "at least
/// 5 seconds").
pub const SLOW_DOWN_STEP_SECS: u64 = 5;

/// How long before expiry the moved last poll of a relaxed schedule is
/// sent, so that it reaches the server while the code is still valid.
pub const FINAL_POLL_MARGIN: Duration = Duration::from_secs(1);

/// Sends one polling request. [`Client`] implements it; tests script it.
pub trait PollTransport: Send + Sync {
    /// Polls the token endpoint once with `code` (DTR-15).
    fn poll_once(
        &self,
        code: &DeferralCode,
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send;

    /// Polls a code that is DPoP-bound to the key `dpop_jkt` (DTR-13), or
    /// unbound with `None`. A transport that can tell refuses locally when
    /// it cannot prove that key; the default just polls.
    fn poll_bound(
        &self,
        code: &DeferralCode,
        dpop_jkt: Option<&str>,
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        let _ = dpop_jkt;
        self.poll_once(code)
    }
}

impl PollTransport for Client {
    fn poll_once(
        &self,
        code: &DeferralCode,
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        Client::poll_once(self, code)
    }

    fn poll_bound(
        &self,
        code: &DeferralCode,
        dpop_jkt: Option<&str>,
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        let check = self.check_binding(dpop_jkt);
        async move {
            check?;
            Client::poll_once(self, code).await
        }
    }
}

impl<T: PollTransport> PollTransport for &T {
    fn poll_once(
        &self,
        code: &DeferralCode,
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        (**self).poll_once(code)
    }
    fn poll_bound(
        &self,
        code: &DeferralCode,
        dpop_jkt: Option<&str>,
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        (**self).poll_bound(code, dpop_jkt)
    }
}

impl<T: PollTransport> PollTransport for Arc<T> {
    fn poll_once(
        &self,
        code: &DeferralCode,
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        (**self).poll_once(code)
    }
    fn poll_bound(
        &self,
        code: &DeferralCode,
        dpop_jkt: Option<&str>,
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        (**self).poll_bound(code, dpop_jkt)
    }
}

/// One step of polling, reported after every non-terminal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollProgress {
    /// Number of polls sent so far, this one included (from 1).
    pub attempt: u32,
    /// The current polling interval in seconds (after any `slow_down`).
    pub interval: u64,
    /// `authorization_pending`, `interaction_required` or `slow_down`.
    pub error: ErrorCode,
    /// Progress information (DTR-10), e.g. `step=document_review`.
    pub error_description: Option<String>,
    /// The current `interaction_uri` (DTR-11), if the server waits for one.
    pub interaction_uri: Option<String>,
    /// When the next poll is planned; `None` when the code expires first.
    pub next_poll_in: Option<Duration>,
}

/// How polling ended.
#[derive(Clone, Debug, PartialEq)]
pub enum PollOutcome {
    /// The deferral resolved with a token response (DTR-20).
    Token(TokenResponse),
    /// A terminal error: `access_denied` (denied or cancelled),
    /// `invalid_grant`, `expired_token` from the server, `invalid_request`
    /// (DTR-19 escalation), ...
    Failed(OAuthError),
    /// The code's lifetime ran out on the client's clock without a
    /// decision; no poll was sent past it.
    Expired,
}

impl PollOutcome {
    /// Whether the deferral expired, by the client's clock or by the
    /// server's `expired_token`.
    pub fn is_expired(&self) -> bool {
        match self {
            Self::Expired => true,
            Self::Failed(e) => e.error == ErrorCode::ExpiredToken,
            Self::Token(_) => false,
        }
    }
}

/// Polls one deferral until it resolves, fails or expires.
///
/// The poller keeps its state (attempts, interval, time of the last poll)
/// between calls of [`Poller::run`], so after a transport error the caller
/// may simply call `run` again.
#[derive(Debug)]
pub struct Poller<T: PollTransport, C: Clock> {
    transport: T,
    clock: C,
    code: DeferralCode,
    interval_secs: u64,
    relaxed: Duration,
    started_at: i64,
    deadline: Option<i64>,
    last_poll_at: Option<i64>,
    attempt: u32,
    interaction_uri: Option<String>,
    dpop_jkt: Option<String>,
    wake: Arc<Notify>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<T: PollTransport, C: Clock> Poller<T, C> {
    /// A poller for a deferral received from the server (or loaded from
    /// saved state): the schedule and the expiry are anchored at
    /// `deferral.received_at_unix_ms`.
    pub fn new(transport: T, clock: C, deferral: &Deferral) -> Self {
        let mut p = Self::build(
            transport,
            clock,
            deferral.code.clone(),
            deferral.interval,
            deferral.received_at_unix_ms,
            Some(deferral.expires_at_unix_ms()),
        );
        p.interaction_uri = deferral.interaction_uri.clone();
        p.dpop_jkt = deferral.dpop_jkt.clone();
        p
    }

    /// A poller for a bare code whose deferred response is not at hand
    /// (e.g. `dtr poll CODE`): the first poll comes `interval` seconds from
    /// now; without `expires_at_unix_ms` polling ends only when the server
    /// answers `expired_token`.
    pub fn resume(
        transport: T,
        clock: C,
        code: DeferralCode,
        interval: u64,
        expires_at_unix_ms: Option<i64>,
    ) -> Self {
        let now = clock.now_unix_ms();
        Self::build(transport, clock, code, interval, now, expires_at_unix_ms)
    }

    fn build(
        transport: T,
        clock: C,
        code: DeferralCode,
        interval: u64,
        started_at: i64,
        deadline: Option<i64>,
    ) -> Self {
        Self {
            transport,
            clock,
            code,
            // An interval of 0 would mean polling in a tight loop; one
            // second is the least any sensible server expects.
            interval_secs: interval.max(1),
            relaxed: Duration::ZERO,
            started_at,
            deadline,
            last_poll_at: None,
            attempt: 0,
            interaction_uri: None,
            dpop_jkt: None,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Marks the code as DPoP-bound to the key with thumbprint `jkt`
    /// (DTR-13), for a poller made with [`Poller::resume`]; [`Poller::new`]
    /// takes it from the [`Deferral`].
    pub fn with_dpop_jkt(mut self, jkt: Option<String>) -> Self {
        self.dpop_jkt = jkt;
        self
    }

    /// Poll only every `delay` (when longer than the interval) unless woken
    /// through [`Poller::waker`]: for clients that receive callback
    /// notifications and need polling only as the authoritative fallback
    /// (DTR-30).
    pub fn with_relaxed_delay(mut self, delay: Duration) -> Self {
        self.relaxed = delay;
        self
    }

    /// Uses a shared wake-up handle instead of the poller's own.
    pub fn with_waker(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// The handle a callback receiver calls `notify_one()` on to make the
    /// poller poll as soon as the interval allows. A notification that
    /// arrives while a poll is in flight is kept for the next wait.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// The current interval in seconds (grows with every `slow_down`).
    pub fn interval(&self) -> u64 {
        self.interval_secs
    }

    /// Polls sent so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    fn interval_ms(&self) -> i64 {
        i64::try_from(self.interval_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The earliest moment the draft allows the next poll: `interval` after
    /// the previous one. The first poll may come at any time.
    fn allowed_at(&self, now: i64) -> i64 {
        match self.last_poll_at {
            Some(last) => last.saturating_add(self.interval_ms()),
            None => now,
        }
    }

    /// When to poll next, or `None` if no poll fits before expiry.
    fn plan(&self, now: i64) -> Option<i64> {
        let base = self.last_poll_at.unwrap_or(self.started_at);
        let delay = self.interval_ms().max(ms(self.relaxed));
        let planned = base.saturating_add(delay).max(now);
        let Some(deadline) = self.deadline else {
            return Some(planned);
        };
        if planned < deadline {
            return Some(planned);
        }
        // The regular schedule would cross expiry: move the last poll to
        // just before it, but never sooner than the interval allows.
        let last = deadline
            .saturating_sub(ms(FINAL_POLL_MARGIN))
            .max(self.allowed_at(now))
            .max(now);
        (last < deadline && last < planned).then_some(last)
    }

    /// Sleeps until `target`, or until woken and the interval allows.
    async fn wait_until(&self, mut target: i64) {
        loop {
            let now = self.clock.now_unix_ms();
            if now >= target {
                return;
            }
            let d = Duration::from_millis(u64::try_from(target - now).unwrap_or(0));
            tokio::select! {
                biased;
                () = self.wake.notified() => {
                    target = target.min(self.allowed_at(now).max(now));
                }
                () = self.clock.sleep(d) => {}
            }
        }
    }

    /// Polls until the deferral resolves, fails or expires, calling
    /// `progress` after every non-terminal answer. A transport error is
    /// returned as `Err`; the poller can be run again afterwards.
    pub async fn run<F>(&mut self, mut progress: F) -> Result<PollOutcome, Error>
    where
        F: FnMut(&PollProgress),
    {
        loop {
            let Some(target) = self.plan(self.clock.now_unix_ms()) else {
                return Ok(PollOutcome::Expired);
            };
            self.wait_until(target).await;
            let now = self.clock.now_unix_ms();
            if matches!(self.deadline, Some(d) if now >= d) {
                return Ok(PollOutcome::Expired);
            }
            self.attempt = self.attempt.saturating_add(1);
            self.last_poll_at = Some(now);
            let (error, description) = match self
                .transport
                .poll_bound(&self.code, self.dpop_jkt.as_deref())
                .await?
            {
                TokenResult::Token(t) => return Ok(PollOutcome::Token(t)),
                // A poll answer never repeats the code (DTR-18), but a
                // server that does only tells us the deferral is pending.
                TokenResult::Deferred(d) => {
                    self.interaction_uri = d.interaction_uri;
                    (d.error, d.description)
                }
                TokenResult::Error(e) => match e.error {
                    ErrorCode::AuthorizationPending | ErrorCode::InteractionRequired => {
                        // DTR-18: the two may alternate; the URI belongs to
                        // the latest answer only.
                        self.interaction_uri = e.interaction_uri;
                        (e.error, e.error_description)
                    }
                    ErrorCode::SlowDown => {
                        self.interval_secs = self.interval_secs.saturating_add(SLOW_DOWN_STEP_SECS);
                        (e.error, e.error_description)
                    }
                    _ => return Ok(PollOutcome::Failed(e)),
                },
            };
            let now = self.clock.now_unix_ms();
            let next_poll_in = self
                .plan(now)
                .map(|t| Duration::from_millis(u64::try_from(t - now).unwrap_or(0)));
            progress(&PollProgress {
                attempt: self.attempt,
                interval: self.interval_secs,
                error,
                error_description: description,
                interaction_uri: self.interaction_uri.clone(),
                next_poll_in,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A scripted transport: answers from a queue, records when it was
    /// called (clock time) and can ring a waker on every call.
    struct Script {
        clock: ManualClock,
        answers: Mutex<VecDeque<Result<TokenResult, Error>>>,
        calls: Mutex<Vec<i64>>,
        ring: Mutex<Option<Arc<Notify>>>,
    }

    impl Script {
        fn new(clock: &ManualClock, answers: Vec<Result<TokenResult, Error>>) -> Self {
            Self {
                clock: clock.clone(),
                answers: Mutex::new(answers.into()),
                calls: Mutex::new(Vec::new()),
                ring: Mutex::new(None),
            }
        }
        fn calls(&self) -> Vec<i64> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl PollTransport for Script {
        fn poll_once(
            &self,
            code: &DeferralCode,
        ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
            assert_eq!(code.secret(), "code");
            self.calls.lock().unwrap().push(self.clock.now_unix_ms());
            if let Some(n) = self.ring.lock().unwrap().take() {
                n.notify_one();
            }
            let next = self.answers.lock().unwrap().pop_front();
            async move { next.unwrap_or_else(|| panic!("poller polled past the script")) }
        }
    }

    fn err(code: &str) -> Result<TokenResult, Error> {
        Ok(TokenResult::Error(OAuthError::new(ErrorCode::parse(code))))
    }

    fn pending_step(step: &str) -> Result<TokenResult, Error> {
        Ok(TokenResult::Error(OAuthError::with_description(
            ErrorCode::AuthorizationPending,
            format!("step={step}"),
        )))
    }

    fn interaction(uri: &str) -> Result<TokenResult, Error> {
        Ok(TokenResult::Error(OAuthError {
            error: ErrorCode::InteractionRequired,
            error_description: None,
            interaction_uri: Some(uri.into()),
            retry_after: None,
        }))
    }

    fn token() -> Result<TokenResult, Error> {
        Ok(TokenResult::Token(TokenResponse {
            access_token: "at".into(),
            token_type: "Bearer".into(),
            expires_in: Some(3600),
            refresh_token: None,
            scope: Some("read".into()),
            issued_token_type: None,
            authorization_details: None,
            id_token: None,
        }))
    }

    fn deferral(expires_in: u64, interval: u64) -> Deferral {
        Deferral {
            code: DeferralCode::new("code"),
            expires_in,
            interval,
            interaction_uri: None,
            description: None,
            received_at_unix_ms: 0,
            issuer: "https://as".into(),
            client_id: "svc".into(),
            error: ErrorCode::AuthorizationPending,
            dpop_jkt: None,
        }
    }

    async fn run_collect<C: Clock>(
        p: &mut Poller<&Script, C>,
    ) -> (Result<PollOutcome, Error>, Vec<PollProgress>) {
        let mut seen = Vec::new();
        let r = p.run(|s| seen.push(s.clone())).await;
        (r, seen)
    }

    #[tokio::test]
    async fn first_poll_after_interval_then_every_interval() {
        let clock = ManualClock::new(0);
        let t = Script::new(&clock, vec![pending_step("a"), pending_step("b"), token()]);
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 5));
        let (r, seen) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Token(ref tok)) if tok.access_token == "at"));
        assert_eq!(t.calls(), [5_000, 10_000, 15_000]);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].attempt, 1);
        assert_eq!(seen[1].error_description.as_deref(), Some("step=b"));
        assert_eq!(seen[1].next_poll_in, Some(Duration::from_secs(5)));
        assert_eq!(p.attempts(), 3);
    }

    #[tokio::test]
    async fn slow_down_adds_five_seconds_each_time() {
        // DTR-19: cumulative, for the rest of the deferral.
        let clock = ManualClock::new(0);
        let t = Script::new(
            &clock,
            vec![
                err("authorization_pending"),
                err("slow_down"),
                err("slow_down"),
                token(),
            ],
        );
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 5));
        let (r, seen) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Token(_))));
        assert_eq!(t.calls(), [5_000, 10_000, 20_000, 35_000]);
        let intervals: Vec<u64> = seen.iter().map(|s| s.interval).collect();
        assert_eq!(intervals, [5, 10, 15]);
        assert_eq!(seen[2].error, ErrorCode::SlowDown);
        assert_eq!(seen[2].next_poll_in, Some(Duration::from_secs(15)));
        assert_eq!(p.interval(), 15);
    }

    #[tokio::test]
    async fn terminal_errors_stop_for_good() {
        for code in [
            "invalid_grant",
            "expired_token",
            "access_denied",
            "invalid_request",
            "invalid_client",
            "server_error",
            "some_future_error",
        ] {
            let clock = ManualClock::new(0);
            // The token after the error proves no further poll is sent.
            let t = Script::new(
                &clock,
                vec![err("authorization_pending"), err(code), token()],
            );
            let mut p = Poller::new(&t, clock.clone(), &deferral(600, 5));
            let (r, seen) = run_collect(&mut p).await;
            match r {
                Ok(PollOutcome::Failed(e)) => assert_eq!(e.error.as_str(), code),
                other => panic!("{code}: {other:?}"),
            }
            assert_eq!(t.calls().len(), 2, "{code}");
            assert_eq!(seen.len(), 1, "{code}");
        }
    }

    #[tokio::test]
    async fn interaction_required_continues_and_uri_follows_the_latest_answer() {
        // DTR-11, DTR-18
        let clock = ManualClock::new(0);
        let t = Script::new(
            &clock,
            vec![
                interaction("https://as/interact/1"),
                interaction("https://as/interact/2"),
                err("authorization_pending"),
                token(),
            ],
        );
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 2));
        let (r, seen) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Token(_))));
        let uris: Vec<Option<&str>> = seen.iter().map(|s| s.interaction_uri.as_deref()).collect();
        assert_eq!(
            uris,
            [
                Some("https://as/interact/1"),
                Some("https://as/interact/2"),
                None
            ]
        );
        assert_eq!(seen[0].error, ErrorCode::InteractionRequired);
    }

    #[tokio::test]
    async fn never_polls_past_expiry() {
        let clock = ManualClock::new(0);
        let t = Script::new(
            &clock,
            vec![err("authorization_pending"), err("authorization_pending")],
        );
        let mut p = Poller::new(&t, clock.clone(), &deferral(12, 5));
        let (r, seen) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Expired)), "{r:?}");
        // 15 s would be past the 12 s lifetime, and 11 s would be sooner
        // than the interval after the poll at 10 s.
        assert_eq!(t.calls(), [5_000, 10_000]);
        assert_eq!(seen[1].next_poll_in, None);
        assert!(r.map(|o| o.is_expired()).unwrap_or(false));
    }

    #[tokio::test]
    async fn relaxed_schedule_polls_once_more_just_before_expiry() {
        let clock = ManualClock::new(0);
        let t = Script::new(&clock, vec![err("authorization_pending"), token()]);
        let mut p = Poller::new(&t, clock.clone(), &deferral(40, 5))
            .with_relaxed_delay(Duration::from_secs(30));
        let (r, seen) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Token(_))));
        assert_eq!(t.calls(), [30_000, 39_000]);
        assert_eq!(seen[0].next_poll_in, Some(Duration::from_secs(9)));
    }

    #[tokio::test]
    async fn resumed_deferral_already_expired_sends_nothing() {
        let clock = ManualClock::new(1_000_000);
        let t = Script::new(&clock, vec![]);
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 5));
        let (r, _) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Expired)));
        assert!(t.calls().is_empty());
    }

    #[tokio::test]
    async fn resumed_saved_deferral_keeps_its_schedule() {
        // Saved at t=0, resumed at t=3 s: the first poll still comes at 5 s.
        let clock = ManualClock::new(3_000);
        let t = Script::new(&clock, vec![token()]);
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 5));
        let (r, _) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Token(_))));
        assert_eq!(t.calls(), [5_000]);
    }

    #[tokio::test]
    async fn resumed_from_saved_json_after_a_restart() {
        // A deferral saved as JSON (what `dtr token --state` writes) and
        // read back by a new process 7 s later: the first poll, due at 5 s,
        // goes out at once, the next one an interval later, and the code's
        // lifetime still counts from the original deferred response.
        let saved = serde_json::to_string(&deferral(20, 5)).unwrap();
        let clock = ManualClock::new(7_000);
        let t = Script::new(
            &clock,
            vec![
                err("authorization_pending"),
                err("authorization_pending"),
                err("authorization_pending"),
            ],
        );
        let restored: Deferral = serde_json::from_str(&saved).unwrap();
        let mut p = Poller::new(&t, clock.clone(), &restored);
        let (r, _) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Expired)), "{r:?}");
        // 7 s (overdue), 12 s, 17 s; 22 s would be past the 20 s lifetime
        // and 19 s sooner than the interval allows.
        assert_eq!(t.calls(), [7_000, 12_000, 17_000]);
    }

    #[tokio::test]
    async fn bare_code_without_expiry_polls_until_the_server_says_expired() {
        let clock = ManualClock::new(100);
        let t = Script::new(
            &clock,
            vec![err("authorization_pending"), err("expired_token")],
        );
        let mut p = Poller::resume(&t, clock.clone(), DeferralCode::new("code"), 5, None);
        let (r, _) = run_collect(&mut p).await;
        assert_eq!(t.calls(), [5_100, 10_100]);
        let r = r.unwrap();
        assert!(matches!(r, PollOutcome::Failed(_)));
        assert!(r.is_expired());
    }

    #[tokio::test]
    async fn wake_before_the_first_poll_polls_at_once() {
        // DTR-30: a callback means "poll now". The frozen clock never ends a
        // sleep, so only the wake-up can lead to this poll.
        let clock = ManualClock::frozen(0);
        let t = Script::new(&clock, vec![token()]);
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 5));
        p.waker().notify_one();
        let r = tokio::time::timeout(Duration::from_secs(5), p.run(|_| {})).await;
        assert!(matches!(r, Ok(Ok(PollOutcome::Token(_)))), "{r:?}");
        assert_eq!(t.calls(), [0]);
    }

    #[tokio::test]
    async fn wake_never_breaks_the_interval() {
        // A callback arriving during the first poll shortens the relaxed
        // 60 s wait, but only down to the 5 s interval.
        let clock = ManualClock::new(0);
        let t = Script::new(&clock, vec![err("authorization_pending"), token()]);
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 5))
            .with_relaxed_delay(Duration::from_secs(60));
        *t.ring.lock().unwrap() = Some(p.waker());
        p.waker().notify_one();
        let (r, seen) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Token(_))));
        assert_eq!(t.calls(), [0, 5_000]);
        assert_eq!(seen[0].next_poll_in, Some(Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn transport_error_is_returned_and_polling_can_resume() {
        let clock = ManualClock::new(0);
        let t = Script::new(
            &clock,
            vec![
                Err(Error::UnexpectedResponse {
                    status: 502,
                    body: "bad gateway".into(),
                }),
                token(),
            ],
        );
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 5));
        let (r, _) = run_collect(&mut p).await;
        assert!(matches!(
            r,
            Err(Error::UnexpectedResponse { status: 502, .. })
        ));
        let (r, _) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Token(_))));
        assert_eq!(t.calls(), [5_000, 10_000]);
        assert_eq!(p.attempts(), 2);
    }

    #[tokio::test]
    async fn zero_interval_is_treated_as_one_second() {
        let clock = ManualClock::new(0);
        let t = Script::new(&clock, vec![err("authorization_pending"), token()]);
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 0));
        let (r, _) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Token(_))));
        assert_eq!(t.calls(), [1_000, 2_000]);
    }
}
