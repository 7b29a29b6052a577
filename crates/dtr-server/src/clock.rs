//! Time as a parameter: every expiry, `interval` and `slow_down` decision
//! reads the clock through this trait, so tests advance time instead of
//! sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// A wait on a [`Clock`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of "now", in milliseconds since the Unix epoch, that can also
/// wait for a moment to come.
pub trait Clock: Send + Sync + 'static {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Resolves once the clock reads `deadline_ms` or later. Background
    /// tasks pace themselves with it, so that a test clock paces them too.
    /// The default sleeps for the difference on the tokio timer.
    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_> {
        let wait = deadline_ms.saturating_sub(self.now_ms()).max(0) as u64;
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to (tests): waits on it end when it
/// is advanced past their deadline, never by themselves.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    advanced: Notify,
}

impl ManualClock {
    /// A clock starting at the current system time.
    pub fn new() -> Self {
        Self {
            now: AtomicI64::new(SystemClock.now_ms()),
            advanced: Notify::new(),
        }
    }

    /// Moves the clock forward, waking the waits it reaches.
    pub fn advance_ms(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
        self.advanced.notify_waiters();
    }

    /// Moves the clock forward by whole seconds.
    pub fn advance_secs(&self, s: i64) {
        self.advance_ms(s * 1000);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                // Registered before the time is read, so an advance between
                // the two is not missed.
                let advanced = self.advanced.notified();
                tokio::pin!(advanced);
                advanced.as_mut().enable();
                if self.now_ms() >= deadline_ms {
                    return;
                }
                advanced.await;
            }
        })
    }
}

/// RFC 3339 rendering of a millisecond timestamp, for the admin API.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Milliseconds since the epoch of an RFC 3339 time (`humantime`'s
/// parser: `2026-12-02T10:00:00Z`, with fractions); `None` when it is not
/// one.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let ms = 1_764_669_600_000;
        assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[tokio::test]
    async fn manual_sleep_ends_only_when_advanced_past_its_deadline() {
        let c = std::sync::Arc::new(ManualClock::new());
        let deadline = c.now_ms() + 1_000;
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.sleep_until(deadline).await }
        });
        tokio::task::yield_now().await;
        c.advance_ms(999);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "not yet at the deadline");
        c.advance_ms(1);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the advance")
            .expect("no panic");
    }

    #[tokio::test]
    async fn a_deadline_already_passed_does_not_wait() {
        let c = ManualClock::new();
        c.sleep_until(c.now_ms() - 1).await;
        c.sleep_until(c.now_ms()).await;
    }
}
