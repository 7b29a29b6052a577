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

pub(crate) use crate::outbox::{retry_or_fail, LEASE_MS};

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

/// Runs until `shutdown` turns true: the outbox's sender loop
/// ([`crate::outbox::run`]), woken when a resolution queues a callback,
/// each delivery also holding a slot of its endpoint's host.
pub async fn run(state: AppState, shutdown: watch::Receiver<bool>) {
    let per_host: Arc<Mutex<HashMap<String, Arc<Semaphore>>>> = Arc::default();
    let claimer = state.clone();
    crate::outbox::run(
        state.clock.clone(),
        state.config.callbacks.concurrency,
        Some(state.callback_wake.clone()),
        shutdown,
        "callbacks",
        |now, limit| {
            let s = claimer.clone();
            async move { s.store.claim_callbacks(now, limit, LEASE_MS).await }
        },
        |job: CallbackJob| {
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
            async move {
                let Ok(_host) = host_sem.acquire_owned().await else {
                    return;
                };
                deliver(&state, job).await;
            }
        },
    )
    .await;
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
    // DTR-26: the draft's callback carries only the code; a CIBA
    // request's is its ping or push (crate::ciba_delivery); the bearer
    // only when the client gave a token; nothing secret in the URL.
    let prepared = match crate::ciba_delivery::prepare(state, &job).await {
        Ok(p) => p,
        Err(error) => {
            // The deferral finished (redeemed, cancelled) since the job
            // was queued, or the sealing key changed: nothing can be sent.
            finish(CallbackOutcome::Failed {
                status: None,
                error,
            })
            .await;
            return;
        }
    };
    let (body, token) = (&prepared.body, prepared.bearer.clone());
    let endpoint = prepared.endpoint.as_deref().unwrap_or(&job.endpoint);
    let started = std::time::Instant::now();
    let result = state
        .outbound
        .post_json(endpoint, body, token.as_deref())
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
    if prepared.push && !matches!(outcome, CallbackOutcome::Retry { .. }) {
        crate::ciba_delivery::finished(state, &job).await;
    }
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
