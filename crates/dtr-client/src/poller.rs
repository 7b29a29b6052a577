//! Waiting for a deferral to resolve: the polling loop of the draft's
//! "Token Endpoint — Polling" (DTR-15..19), driven by an injectable
//! [`Clock`] and an injectable [`PollTransport`].
//!
//! Schedule, all times measured from the previous poll:
//! - the first poll comes `interval` seconds after the deferred response;
//! - every `slow_down` adds 5 s to the interval for the rest of the
//!   deferral (DTR-19, RFC 8628 section 3.5);
//! - `authorization_pending`, `interaction_required` (DTR-18) and the
//!   draft's newer `interaction_pending` continue; so does every error code
//!   the client does not know: the draft's profile rules (Substrate
//!   Invariants, obligation A) let a profile add pending states as new
//!   error codes, so an unknown code means "keep polling at the interval
//!   while the code lives", never "the deferral is over". Only the codes of
//!   [`TERMINAL_POLL_ERRORS`] end polling for good (`invalid_grant`,
//!   `expired_token`, `access_denied`, `invalid_request`, ...);
//! - `temporarily_unavailable` continues too (OAuth 2.1 section 5.2: the
//!   condition is temporary), and the next poll honours the answer's
//!   `Retry-After` (RFC 9110 section 10.2.3) when it is longer than the
//!   interval;
//! - the first poll may carry parameters that belong to it alone
//!   ([`Poller::with_first_poll_params`]): after a deferral at the
//!   authorization endpoint the first poll presents the PKCE
//!   `code_verifier` (RFC 7636 section 4.5) and the `redirect_uri`, and no
//!   later poll may repeat them;
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
use std::fmt;
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

/// The error codes that end polling for good. Everything else a poll is
/// answered with (the pending family, `slow_down`, `temporarily_unavailable`,
/// `use_dpop_nonce` after the transport's own nonce retry, and any code the
/// client does not know) means "poll again at the interval while the code
/// lives": the draft lets profiles define new pending states as new error
/// codes (Substrate Invariants, profile obligation A), so treating an
/// unknown code as final would abandon a deferral the server still holds.
pub const TERMINAL_POLL_ERRORS: &[&str] = &[
    "invalid_grant",
    "access_denied",
    "expired_token",
    "invalid_request",
    "invalid_client",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "invalid_authorization_details",
    "invalid_dpop_proof",
    "server_error",
];

/// Whether a poll answered with `code` ends the deferral for the client
/// (see [`TERMINAL_POLL_ERRORS`]).
pub fn is_terminal_poll_error(code: &ErrorCode) -> bool {
    TERMINAL_POLL_ERRORS.contains(&code.as_str())
}

/// Parameters that go on one poll only: the first one. After a deferral at
/// the authorization endpoint these are the PKCE `code_verifier` (RFC 7636
/// section 4.5) and the `redirect_uri` of the authorization request
/// (OAuth 2.1 section 4.1.3); the server verifies them on the first poll
/// and refuses them on any later one. `Debug` shows the names only: the
/// verifier is a credential.
/// It serialises (as a list of name-value pairs) so that a deferral whose
/// first poll is still owed can be saved and resumed; store it like the
/// deferral code itself.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct FirstPollParams {
    pairs: Vec<(String, String)>,
}

impl fmt::Debug for FirstPollParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

impl FirstPollParams {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one parameter.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.pairs.push((name.into(), value.into()));
        self
    }

    /// The parameters as form pairs.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

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

    /// [`PollTransport::poll_bound`] with `params` added to this one poll
    /// (see [`FirstPollParams`]). The default refuses non-empty `params`
    /// without sending anything rather than drop them: a first poll
    /// without its verifier would end the deferral on the server.
    fn poll_with(
        &self,
        code: &DeferralCode,
        dpop_jkt: Option<&str>,
        params: &[(&str, &str)],
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        let refused = (!params.is_empty()).then(|| {
            Error::InvalidParameter(
                "this poll transport cannot send the parameters of a first poll".into(),
            )
        });
        async move {
            match refused {
                Some(e) => Err(e),
                None => self.poll_bound(code, dpop_jkt).await,
            }
        }
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

    fn poll_with(
        &self,
        code: &DeferralCode,
        dpop_jkt: Option<&str>,
        params: &[(&str, &str)],
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        let check = self.check_binding(dpop_jkt);
        async move {
            check?;
            Ok(Client::poll_once_with_reply(self, code, params)
                .await?
                .result)
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
    fn poll_with(
        &self,
        code: &DeferralCode,
        dpop_jkt: Option<&str>,
        params: &[(&str, &str)],
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        (**self).poll_with(code, dpop_jkt, params)
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
    fn poll_with(
        &self,
        code: &DeferralCode,
        dpop_jkt: Option<&str>,
        params: &[(&str, &str)],
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        (**self).poll_with(code, dpop_jkt, params)
    }
}

/// One step of polling, reported after every non-terminal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollProgress {
    /// Number of polls sent so far, this one included (from 1).
    pub attempt: u32,
    /// The current polling interval in seconds (after any `slow_down`).
    pub interval: u64,
    /// The answer: `authorization_pending`, `interaction_required`,
    /// `interaction_pending`, `slow_down`, `temporarily_unavailable`, or a
    /// pending state the client does not know, kept by its name.
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
    first_poll: Option<FirstPollParams>,
    /// The earliest moment of the next poll set by a `Retry-After`.
    not_before: Option<i64>,
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
            first_poll: None,
            not_before: None,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Sends `params` with the first poll that reaches the server, and with
    /// no other (see [`FirstPollParams`]). A poll that failed before
    /// anything was sent (a refused connection, a missing DPoP key) keeps
    /// them for the next attempt; once a request may have reached the
    /// server they are gone, because a verifier presented twice is
    /// refused and ends the deferral.
    pub fn with_first_poll_params(mut self, params: FirstPollParams) -> Self {
        self.first_poll = (!params.is_empty()).then_some(params);
        self
    }

    /// Whether parameters of the first poll are still waiting to be sent.
    pub fn first_poll_pending(&self) -> bool {
        self.first_poll.is_some()
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
        let after_interval = match self.last_poll_at {
            Some(last) => last.saturating_add(self.interval_ms()),
            None => now,
        };
        after_interval.max(self.not_before.unwrap_or(i64::MIN))
    }

    /// When to poll next, or `None` if no poll fits before expiry.
    fn plan(&self, now: i64) -> Option<i64> {
        let base = self.last_poll_at.unwrap_or(self.started_at);
        let delay = self.interval_ms().max(ms(self.relaxed));
        let planned = base
            .saturating_add(delay)
            .max(now)
            .max(self.not_before.unwrap_or(i64::MIN));
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
            let sent = {
                let extra = self
                    .first_poll
                    .as_ref()
                    .map(FirstPollParams::pairs)
                    .unwrap_or_default();
                self.transport
                    .poll_with(&self.code, self.dpop_jkt.as_deref(), &extra)
                    .await
            };
            match &sent {
                Err(e) if e.nothing_sent() => {}
                _ => self.first_poll = None,
            }
            self.not_before = None;
            let (error, description) = match sent? {
                TokenResult::Token(t) => return Ok(PollOutcome::Token(t)),
                // A poll answer never repeats the code (DTR-18), but a
                // server that does only tells us the deferral is pending.
                TokenResult::Deferred(d) => {
                    self.interaction_uri = d.interaction_uri;
                    (d.error, d.description)
                }
                TokenResult::Error(e) if is_terminal_poll_error(&e.error) => {
                    return Ok(PollOutcome::Failed(e))
                }
                TokenResult::Error(e) => {
                    match e.error {
                        ErrorCode::SlowDown => {
                            // DTR-19: for the rest of the deferral.
                            self.interval_secs =
                                self.interval_secs.saturating_add(SLOW_DOWN_STEP_SECS);
                        }
                        // These say nothing about the deferral itself, so
                        // the interaction URI of the previous answer stands.
                        ErrorCode::TemporarilyUnavailable | ErrorCode::UseDpopNonce => {}
                        // DTR-18: pending states may alternate; the URI
                        // belongs to the latest answer only. A state the
                        // client does not know may carry one too.
                        _ => self.interaction_uri = e.interaction_uri,
                    }
                    if let Some(secs) = e.retry_after {
                        let secs = i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
                        self.not_before = Some(now.saturating_add(secs));
                    }
                    (e.error, e.error_description)
                }
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
        params: Mutex<Vec<Vec<(String, String)>>>,
        ring: Mutex<Option<Arc<Notify>>>,
    }

    impl Script {
        fn new(clock: &ManualClock, answers: Vec<Result<TokenResult, Error>>) -> Self {
            Self {
                clock: clock.clone(),
                answers: Mutex::new(answers.into()),
                calls: Mutex::new(Vec::new()),
                params: Mutex::new(Vec::new()),
                ring: Mutex::new(None),
            }
        }
        fn calls(&self) -> Vec<i64> {
            self.calls.lock().unwrap().clone()
        }
        /// The extra parameters of every poll, names only.
        fn param_names(&self) -> Vec<Vec<String>> {
            self.params
                .lock()
                .unwrap()
                .iter()
                .map(|p| p.iter().map(|(k, _)| k.clone()).collect())
                .collect()
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

        fn poll_with(
            &self,
            code: &DeferralCode,
            _dpop_jkt: Option<&str>,
            params: &[(&str, &str)],
        ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
            self.params.lock().unwrap().push(
                params
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            );
            self.poll_once(code)
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
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "invalid_target",
            "invalid_authorization_details",
            "invalid_dpop_proof",
            "server_error",
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
    fn with_retry_after(code: &str, secs: u64) -> Result<TokenResult, Error> {
        Ok(TokenResult::Error(
            OAuthError::new(ErrorCode::parse(code)).with_retry_after(secs),
        ))
    }

    #[tokio::test]
    async fn unknown_and_newer_pending_states_keep_polling() {
        // The draft's profile rule: a state the client does not know is a
        // pending state. interaction_pending may carry the URI; the
        // progress names every state as it came.
        let clock = ManualClock::new(0);
        let t = Script::new(
            &clock,
            vec![
                Ok(TokenResult::Error(OAuthError {
                    error: ErrorCode::parse("interaction_pending"),
                    error_description: Some("step=user".into()),
                    interaction_uri: Some("https://as/interact/1".into()),
                    retry_after: None,
                })),
                err("x_profile_review_queued"),
                err("temporarily_unavailable"),
                err("use_dpop_nonce"),
                token(),
            ],
        );
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 5));
        let (r, seen) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Token(_))), "{r:?}");
        let names: Vec<&str> = seen.iter().map(|s| s.error.as_str()).collect();
        assert_eq!(
            names,
            [
                "interaction_pending",
                "x_profile_review_queued",
                "temporarily_unavailable",
                "use_dpop_nonce"
            ]
        );
        assert_eq!(
            seen[0].interaction_uri.as_deref(),
            Some("https://as/interact/1")
        );
        assert_eq!(seen[0].error_description.as_deref(), Some("step=user"));
        // The unknown state carried no URI: it belongs to the latest answer.
        assert_eq!(seen[1].interaction_uri, None);
        // Only slow_down changes the interval.
        assert_eq!(t.calls(), [5_000, 10_000, 15_000, 20_000, 25_000]);
        assert!(!is_terminal_poll_error(&ErrorCode::parse(
            "interaction_pending"
        )));
        assert!(is_terminal_poll_error(&ErrorCode::AccessDenied));
    }

    #[tokio::test]
    async fn unknown_pending_state_until_expiry_is_expired() {
        let clock = ManualClock::new(0);
        let t = Script::new(&clock, vec![err("x_waiting"), err("x_waiting")]);
        let mut p = Poller::new(&t, clock.clone(), &deferral(12, 5));
        let (r, seen) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Expired)), "{r:?}");
        assert_eq!(t.calls(), [5_000, 10_000]);
        assert_eq!(seen.len(), 2);
    }

    #[tokio::test]
    async fn retry_after_delays_the_next_poll_once() {
        // RFC 9110 section 10.2.3: 30 s instead of the 5 s interval, for
        // the next poll only.
        let clock = ManualClock::new(0);
        let t = Script::new(
            &clock,
            vec![
                with_retry_after("temporarily_unavailable", 30),
                err("authorization_pending"),
                token(),
            ],
        );
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 5));
        let (r, seen) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Token(_))));
        assert_eq!(t.calls(), [5_000, 35_000, 40_000]);
        assert_eq!(seen[0].next_poll_in, Some(Duration::from_secs(30)));
        assert_eq!(p.interval(), 5);
    }

    fn first_poll() -> FirstPollParams {
        FirstPollParams::new()
            .with("code_verifier", "VERIFIER-SECRET")
            .with("redirect_uri", "http://127.0.0.1:1/callback")
    }

    #[tokio::test]
    async fn first_poll_params_go_on_the_first_poll_only() {
        let clock = ManualClock::new(0);
        let t = Script::new(
            &clock,
            vec![
                err("authorization_pending"),
                err("slow_down"),
                err("interaction_pending"),
                token(),
            ],
        );
        let mut p =
            Poller::new(&t, clock.clone(), &deferral(600, 5)).with_first_poll_params(first_poll());
        assert!(p.first_poll_pending());
        let (r, _) = run_collect(&mut p).await;
        assert!(matches!(r, Ok(PollOutcome::Token(_))));
        let names = t.param_names();
        assert_eq!(names.len(), 4);
        assert_eq!(names[0], ["code_verifier", "redirect_uri"]);
        assert!(names[1..].iter().all(Vec::is_empty), "{names:?}");
        assert_eq!(t.params.lock().unwrap()[0][0].1, "VERIFIER-SECRET");
        assert!(!p.first_poll_pending());
        assert!(!format!("{:?}", first_poll()).contains("VERIFIER-SECRET"));
    }

    #[tokio::test]
    async fn first_poll_params_survive_a_poll_that_was_never_sent() {
        // A refused local check sends nothing, so the verifier is still
        // owed to the server; an answer the client cannot read may come
        // from a server that consumed it, so it is not sent again.
        let clock = ManualClock::new(0);
        let t = Script::new(
            &clock,
            vec![
                Err(Error::DpopKeyRequired { jkt: "J".into() }),
                Err(Error::UnexpectedResponse {
                    status: 502,
                    body: "bad gateway".into(),
                }),
                token(),
            ],
        );
        let mut p =
            Poller::new(&t, clock.clone(), &deferral(600, 5)).with_first_poll_params(first_poll());
        assert!(matches!(
            run_collect(&mut p).await.0,
            Err(Error::DpopKeyRequired { .. })
        ));
        assert!(p.first_poll_pending());
        assert!(matches!(
            run_collect(&mut p).await.0,
            Err(Error::UnexpectedResponse { .. })
        ));
        assert!(!p.first_poll_pending());
        assert!(matches!(
            run_collect(&mut p).await.0,
            Ok(PollOutcome::Token(_))
        ));
        let names = t.param_names();
        assert_eq!(names[0], ["code_verifier", "redirect_uri"]);
        assert_eq!(names[1], ["code_verifier", "redirect_uri"]);
        assert!(names[2].is_empty());
    }

    /// A transport that knows only `poll_once`.
    struct Plain(std::sync::atomic::AtomicU32);

    impl PollTransport for Plain {
        fn poll_once(
            &self,
            _code: &DeferralCode,
        ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { token() }
        }
    }

    #[tokio::test]
    async fn a_transport_without_first_poll_support_refuses_rather_than_drops() {
        let clock = ManualClock::new(0);
        let t = Plain(std::sync::atomic::AtomicU32::new(0));
        let mut p =
            Poller::new(&t, clock.clone(), &deferral(600, 5)).with_first_poll_params(first_poll());
        let r = p.run(|_| {}).await;
        assert!(matches!(r, Err(Error::InvalidParameter(_))), "{r:?}");
        assert_eq!(t.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Without first-poll parameters the same transport polls.
        let mut p = Poller::new(&t, clock.clone(), &deferral(600, 5));
        assert!(matches!(p.run(|_| {}).await, Ok(PollOutcome::Token(_))));
    }
}
