//! The rules every outbox of this server follows (the client callbacks of
//! [`crate::callbacks`], the approver notifications of
//! [`crate::approver_hooks`]): the lease of a claimed row, how often the
//! outbox is checked, and when a failed attempt is retried. It imports
//! only the store's outcome type, so both senders share it without
//! depending on each other.

use crate::store::CallbackOutcome;

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
