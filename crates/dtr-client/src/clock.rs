//! Injectable time for the [`crate::Poller`]: the real clock sleeps with
//! tokio, the manual clock jumps forward instantly so polling schedules are
//! tested deterministically and without waiting.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch (0 if the system clock is
/// before 1970).
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A source of time that can also wait.
///
/// Wall-clock time (not a monotonic instant) because a [`crate::Deferral`]
/// saved to disk must be resumable after a restart, and its lifetime is
/// anchored to when the deferred response was received.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_unix_ms(&self) -> i64;
    /// Waits for `d`.
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send;
}

/// The real clock: system time and `tokio::time::sleep`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> i64 {
        now_unix_ms()
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(d)
    }
}

#[derive(Debug)]
struct ManualState {
    now: AtomicI64,
    frozen: bool,
    sleeps: Mutex<Vec<Duration>>,
}

/// A test clock. `sleep(d)` records `d`, moves the time forward by `d` and
/// returns at once; a *frozen* clock instead never returns from `sleep`, so
/// only an early wake-up can make progress. Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    state: Arc<ManualState>,
}

impl ManualClock {
    /// A clock that starts at `start_unix_ms` and advances on every sleep.
    pub fn new(start_unix_ms: i64) -> Self {
        Self::build(start_unix_ms, false)
    }

    /// A clock at `start_unix_ms` whose sleeps never end.
    pub fn frozen(start_unix_ms: i64) -> Self {
        Self::build(start_unix_ms, true)
    }

    fn build(start: i64, frozen: bool) -> Self {
        Self {
            state: Arc::new(ManualState {
                now: AtomicI64::new(start),
                frozen,
                sleeps: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Moves the time forward without sleeping.
    pub fn advance(&self, d: Duration) {
        self.state.now.fetch_add(duration_ms(d), Ordering::SeqCst);
    }

    /// Every duration passed to `sleep` so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state
            .sleeps
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> i64 {
        self.state.now.load(Ordering::SeqCst)
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send {
        let state = Arc::clone(&self.state);
        async move {
            match state.sleeps.lock() {
                Ok(mut s) => s.push(d),
                Err(e) => e.into_inner().push(d),
            }
            if state.frozen {
                std::future::pending::<()>().await;
            }
            state.now.fetch_add(duration_ms(d), Ordering::SeqCst);
            // Let other tasks run, as a real sleep would.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_jumps_and_records() {
        let c = ManualClock::new(1_000);
        c.sleep(Duration::from_secs(5)).await;
        c.advance(Duration::from_millis(250));
        assert_eq!(c.now_unix_ms(), 6_250);
        assert_eq!(c.clone().sleeps(), vec![Duration::from_secs(5)]);
    }

    #[tokio::test]
    async fn frozen_clock_never_wakes() {
        let c = ManualClock::frozen(0);
        let r =
            tokio::time::timeout(Duration::from_millis(20), c.sleep(Duration::from_secs(1))).await;
        assert!(r.is_err());
        assert_eq!(c.now_unix_ms(), 0);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_unix_ms() > 1_577_836_800_000);
    }
}
