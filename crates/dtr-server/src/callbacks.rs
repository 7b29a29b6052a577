//! The callback sender (DTR-26..30): claims due jobs from the outbox the
//! store fills when a deferral is resolved, delivers them through the
//! SSRF-safe client, and records the outcome. Bounded concurrency overall
//! and per host, so a slow or dead endpoint never holds up other clients'
//! callbacks, and nothing here runs on a request path.

use crate::state::AppState;
use crate::store::{CallbackJob, CallbackOutcome};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Semaphore};

/// How long a claimed job is ours. Longer than a delivery can take
/// (timeout plus waiting for a per-host slot), so a live node never loses
/// a job to another; a dead node's jobs come back after it.
pub(crate) const LEASE_MS: i64 = 120_000;

/// Longest wait between retries.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;

/// How often (on the state's clock) the outbox is checked when nothing
/// wakes the sender: for retries coming due and jobs of other nodes.
pub(crate) const IDLE_POLL_MS: i64 = 200;

/// When to retry after `attempts` failed attempts: exponential from
/// `base_ms`, capped, with ±20% jitter so retries of many jobs spread out.
pub fn backoff_ms(base_ms: u64, attempts: u32, jitter: f64) -> i64 {
    let exp = (base_ms as i64).saturating_mul(1i64 << attempts.saturating_sub(1).min(20));
    let capped = exp.min(MAX_BACKOFF_MS) as f64;
    (capped * (1.0 + jitter.clamp(-0.2, 0.2))) as i64
}

/// What to do after an attempt that did not succeed.
pub fn after_failure(
    job: &CallbackJob,
    now: i64,
    max_attempts: u32,
    base_ms: u64,
    jitter: f64,
    status: Option<u16>,
    error: String,
) -> CallbackOutcome {
    retry_or_fail(
        job.attempts,
        job.expires_at,
        now,
        max_attempts,
        base_ms,
        jitter,
        status,
        error,
    )
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

/// Runs until `shutdown` turns true.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let global = Arc::new(Semaphore::new(state.config.callbacks.concurrency));
    let per_host: Arc<Mutex<HashMap<String, Arc<Semaphore>>>> = Arc::default();
    loop {
        tokio::select! {
            _ = state.clock.sleep_until(state.clock.now_ms() + IDLE_POLL_MS) => {}
            _ = state.callback_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        // Claim only what can start now; the rest stays in the outbox.
        let free = global.available_permits() as u32;
        if free == 0 {
            continue;
        }
        let jobs = match state
            .store
            .claim_callbacks(state.clock.now_ms(), free.min(64), LEASE_MS)
            .await
        {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "claiming callbacks failed");
                continue;
            }
        };
        for job in jobs {
            let Ok(permit) = global.clone().acquire_owned().await else {
                return;
            };
            let host = url::Url::parse(&job.endpoint)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            let host_sem = per_host
                .lock()
                .map(|mut m| {
                    m.entry(host)
                        .or_insert_with(|| {
                            Arc::new(Semaphore::new(
                                state.config.callbacks.per_endpoint_concurrency,
                            ))
                        })
                        .clone()
                })
                .unwrap_or_else(|_| Arc::new(Semaphore::new(1)));
            let state = state.clone();
            tokio::spawn(async move {
                let _global = permit;
                let Ok(_host) = host_sem.acquire_owned().await else {
                    return;
                };
                deliver(&state, job).await;
            });
        }
    }
}

/// One delivery attempt of one job.
async fn deliver(state: &AppState, job: CallbackJob) {
    let now = state.clock.now_ms();
    let cfg = &state.config.callbacks;
    let id = job.deferral_id.as_str();
    let finish = |outcome: CallbackOutcome| async move {
        if let Err(e) = state
            .store
            .finish_callback(id, &outcome, state.clock.now_ms())
            .await
        {
            tracing::warn!(error = %e, deferral = %id, "recording a callback outcome failed");
        }
        outcome
    };
    // DTR-27: never for an expired code.
    if now >= job.expires_at {
        finish(CallbackOutcome::Failed {
            status: None,
            error: "deferral expired".into(),
        })
        .await;
        return;
    }
    let Some(code) = job
        .code_sealed
        .as_deref()
        .and_then(|s| state.seal_key.open(s, &job.deferral_id))
    else {
        // The deferral finished (redeemed, cancelled) since the job was
        // queued, or the sealing key changed: nothing can be sent.
        finish(CallbackOutcome::Failed {
            status: None,
            error: "deferral code no longer available".into(),
        })
        .await;
        return;
    };
    let token = job
        .token_sealed
        .as_deref()
        .and_then(|s| state.seal_key.open(s, &job.deferral_id));
    // DTR-26: the body carries only the code; the bearer only when the
    // client gave a token; nothing secret in the URL.
    let mut endpoint = job.endpoint.clone();
    let body = if job.deferral_id.starts_with(crate::arap::ID_PREFIX) {
        // An access request submitted to dtr: ARAP's task notification
        // (the task id is the code), read fresh for its status, to the
        // callback URL the submission gave (checked against the client's
        // registered endpoint when it was accepted).
        match state.store.deferral_by_id(&job.deferral_id).await {
            Ok(Some(rec)) => {
                if let Some(cb) = rec
                    .grant_context
                    .as_ref()
                    .and_then(|g| g["callback_sealed"].as_str())
                    .and_then(|s| {
                        state
                            .seal_key
                            .open(s, &crate::arap::callback_context(&rec.id))
                    })
                {
                    endpoint = cb;
                }
                crate::arap::callback_body(&state.issuer, &code, &rec, now)
            }
            _ => serde_json::json!({ "task": { "id": code } }),
        }
    } else {
        serde_json::json!({ "deferral_code": code })
    };
    let started = std::time::Instant::now();
    let result = state
        .outbound
        .post_json(&endpoint, &body, token.as_deref())
        .await;
    let jitter = rand::thread_rng().gen_range(-0.2..=0.2);
    let outcome = match result {
        Ok(status) if (200..300).contains(&status) => CallbackOutcome::Delivered { status },
        Ok(status) => after_failure(
            &job,
            now,
            cfg.max_attempts,
            cfg.retry_base_ms,
            jitter,
            Some(status),
            format!("HTTP {status}"),
        ),
        Err(e) => after_failure(
            &job,
            now,
            cfg.max_attempts,
            cfg.retry_base_ms,
            jitter,
            None,
            e.to_string(),
        ),
    };
    let outcome = finish(outcome).await;
    let since_resolution = (state.clock.now_ms() - job.resolved_at).max(0);
    match &outcome {
        CallbackOutcome::Delivered { status } => tracing::info!(
            deferral = %job.deferral_id, status, attempts = job.attempts,
            ms = started.elapsed().as_millis() as u64, since_resolution_ms = since_resolution, "callback delivered"
        ),
        CallbackOutcome::Retry { error, .. } => {
            tracing::info!(deferral = %job.deferral_id, attempts = job.attempts, error = %error, "callback will be retried")
        }
        CallbackOutcome::Failed { error, .. } => {
            tracing::warn!(deferral = %job.deferral_id, attempts = job.attempts, error = %error, "callback given up")
        }
    }
    state.metrics.callback_attempt(&outcome, since_resolution);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(attempts: u32, expires_at: i64) -> CallbackJob {
        CallbackJob {
            deferral_id: "d".into(),
            endpoint: "https://x/cb".into(),
            attempts,
            code_sealed: None,
            token_sealed: None,
            expires_at,
            resolved_at: 0,
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(1000, 1, 0.0), 1000);
        assert_eq!(backoff_ms(1000, 2, 0.0), 2000);
        assert_eq!(backoff_ms(1000, 4, 0.0), 8000);
        assert_eq!(backoff_ms(1000, 30, 0.0), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(1000, 1, 0.2), 1200);
        assert_eq!(backoff_ms(1000, 1, 5.0), 1200, "jitter is clamped");
    }

    #[test]
    fn retries_stop_at_the_limit_and_before_expiry() {
        let r = after_failure(&job(1, 1_000_000), 0, 3, 1000, 0.0, Some(500), "x".into());
        assert!(matches!(r, CallbackOutcome::Retry { at: 1000, .. }));
        let r = after_failure(&job(3, 1_000_000), 0, 3, 1000, 0.0, Some(500), "x".into());
        assert!(matches!(r, CallbackOutcome::Failed { .. }), "max attempts");
        let r = after_failure(&job(1, 500), 0, 3, 1000, 0.0, None, "x".into());
        assert!(
            matches!(r, CallbackOutcome::Failed { .. }),
            "never past expiry"
        );
    }
}
