//! The rules every outbox of this server follows (the client callbacks of
//! [`crate::callbacks`], the approver notifications of
//! [`crate::approver_hooks`]): the lease of a claimed row, how often the
//! outbox is checked, when a failed attempt is retried, and the sender
//! loop itself ([`run`]). It imports only the clock and the store's
//! types, so both senders share it without depending on each other.

use crate::clock::Clock;
use crate::store::{CallbackOutcome, StoreError};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{watch, Notify, Semaphore};

/// How long a claimed job is ours. Longer than a delivery can take
/// (timeout plus waiting for a per-host slot), so a live node never loses
/// a job to another; a dead node's jobs come back after it.
pub const LEASE_MS: i64 = 120_000;

/// Longest wait between retries.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;

/// How often (on the state's clock) the outbox is checked when nothing
/// wakes the sender: for retries coming due and jobs of other nodes.
pub const IDLE_POLL_MS: i64 = 200;

/// When to retry after `attempts` failed attempts: exponential from
/// `base_ms`, capped, with ±20% jitter so retries of many jobs spread out.
pub fn backoff_ms(base_ms: u64, attempts: u32, jitter: f64) -> i64 {
    let exp = (base_ms as i64).saturating_mul(1i64 << attempts.saturating_sub(1).min(20));
    let capped = exp.min(MAX_BACKOFF_MS) as f64;
    (capped * (1.0 + jitter.clamp(-0.2, 0.2))) as i64
}

/// The outbox's retry rule, for client callbacks and approver
/// notifications alike: after `attempts` failed attempts, retry with
/// [`backoff_ms`], at most `max_attempts` attempts, and never at or past
/// `expires_at` (the deferral's expiry, DTR-27).
#[allow(clippy::too_many_arguments)]
pub fn retry_or_fail(
    attempts: u32,
    expires_at: i64,
    now: i64,
    max_attempts: u32,
    base_ms: u64,
    jitter: f64,
    status: Option<u16>,
    error: String,
) -> CallbackOutcome {
    let at = now + backoff_ms(base_ms, attempts, jitter);
    if attempts >= max_attempts || at >= expires_at {
        CallbackOutcome::Failed { status, error }
    } else {
        CallbackOutcome::Retry { at, status, error }
    }
}

/// The sender loop of an outbox, until `shutdown` turns true: every
/// [`IDLE_POLL_MS`] on `clock` (or at once when `wake` is notified) it
/// claims as many due jobs as there are free delivery slots (at most 64
/// at a time, under [`LEASE_MS`]) with `claim(now, limit)`, and delivers
/// each on a task of its own holding one of the `concurrency` slots. What
/// cannot start now stays in the outbox; a failed claim is logged as
/// `what` and tried again on the next round.
pub async fn run<J, C, CF, D, DF>(
    clock: Arc<dyn Clock>,
    concurrency: usize,
    wake: Option<Arc<Notify>>,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    claim: C,
    deliver: D,
) where
    J: Send + 'static,
    C: Fn(i64, u32) -> CF,
    CF: Future<Output = Result<Vec<J>, StoreError>>,
    D: Fn(J) -> DF,
    DF: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrency));
    loop {
        let woken = async {
            match &wake {
                Some(w) => w.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = clock.sleep_until(clock.now_ms() + IDLE_POLL_MS) => {}
            _ = woken => {}
            _ = shutdown.changed() => return,
        }
        let free = slots.available_permits() as u32;
        if free == 0 {
            continue;
        }
        let jobs = match claim(clock.now_ms(), free.min(64)).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "claiming {what} failed");
                continue;
            }
        };
        for job in jobs {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let delivery = deliver(job);
            tokio::spawn(async move {
                let _slot = permit;
                delivery.await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(1000, 1, 0.0), 1000);
        assert_eq!(backoff_ms(1000, 2, 0.0), 2000);
        assert_eq!(backoff_ms(1000, 4, 0.0), 8000);
        assert_eq!(backoff_ms(1000, 30, 0.0), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(1000, 1, 0.2), 1200);
        assert_eq!(backoff_ms(1000, 1, 5.0), 1200, "jitter is clamped");
    }
}
