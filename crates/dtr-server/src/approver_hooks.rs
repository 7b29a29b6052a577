//! Approver webhooks: when a deferral lands in the queue of a group or
//! user that a `[[webhooks]]` entry watches, that webhook is notified.
//!
//! [`enqueue`] writes one outbox row per (deferral, webhook) right after
//! the deferral is stored, and a failure fails the request, so a queued
//! deferral never goes unannounced; the row's primary key means it is
//! never announced twice by two rows. [`run`] claims due rows under a
//! lease, POSTs the body through the SSRF-safe client the callbacks use,
//! signed with the webhook's secret ([`signature_header`]), and retries
//! with the callbacks' backoff (`[callbacks] max_attempts`,
//! `retry_base_ms`) until a 2xx answer, the attempts run out or the
//! deferral expires. A node that dies mid-delivery leaves a lease that
//! runs out and the row is delivered again (at least once).
//!
//! The body names the deferral (id, client, grant type, what is asked,
//! times, approvers) and links to its review page; never its code, a
//! token or an interaction handle.

use crate::clock::rfc3339;
use crate::config::WebhookConfig;
use crate::state::AppState;
use crate::store::{CallbackOutcome, HookJob, NewDeferral, NewHookJob, StoreError};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio::sync::watch;

// How long a claimed notification is ours, and how often the outbox is
// checked: the callbacks' values, for the same reasons.
use crate::outbox::LEASE_MS;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "DTR-Signature";

/// The queues a deferral lands in: its approvers, and for a CIBA request
/// also the user it is about (`user:<name>`), whose webhook tells their
/// device to look at `/ciba` (OpenID CIBA Core 1.0 section 2: the
/// authentication device is told out of band).
fn queues(new: &NewDeferral) -> Vec<String> {
    let mut q = new.approvers.clone();
    if new.grant_type == dtr_proto::GRANT_TYPE_CIBA {
        if let Some(user) = &new.subject {
            let own = format!("user:{user}");
            if !q.contains(&own) {
                q.push(own);
            }
        }
    }
    q
}

/// The webhooks watching one of `queues`.
fn watching<'a>(state: &'a AppState, queues: &'a [String]) -> Vec<&'a WebhookConfig> {
    state
        .config
        .webhooks
        .iter()
        .filter(|h| queues.contains(&h.approvers))
        .collect()
}

/// Queues the notifications of a new deferral, one per webhook watching
/// one of its approvers. Called right after the deferral is stored; an
/// error must fail the request.
pub async fn enqueue(state: &AppState, new: &NewDeferral) -> Result<(), StoreError> {
    let queues = queues(new);
    let hooks = watching(state, &queues);
    if hooks.is_empty() {
        return Ok(());
    }
    let client_name = state
        .store
        .get_client(&new.client_id)
        .await?
        .and_then(|c| c.metadata)
        .and_then(|m| {
            m.get("client_name")
                .and_then(|n| n.as_str())
                .map(str::to_owned)
        });
    let jobs: Vec<NewHookJob> = hooks
        .into_iter()
        .map(|h| NewHookJob {
            deferral_id: new.id.clone(),
            webhook_id: h.id(),
            url: h.url.clone(),
            body: body(&state.issuer, new, client_name.as_deref(), &h.approvers).to_string(),
            created_at: new.created_at,
            expires_at: new.expires_at,
        })
        .collect();
    state.store.enqueue_hooks(&jobs).await?;
    tracing::info!(deferral = %new.id, webhooks = jobs.len(), "approver notifications queued");
    Ok(())
}

/// The notification body: what a reviewer needs to find and judge the
/// deferral, nothing that would let anyone redeem or decide it.
pub fn body(
    issuer: &str,
    new: &NewDeferral,
    client_name: Option<&str>,
    queue: &str,
) -> serde_json::Value {
    let issuer = issuer.trim_end_matches('/');
    let mut b = serde_json::json!({
        "event": "deferral.queued",
        "deferral_id": new.id,
        "client_id": new.client_id,
        "client_name": client_name,
        "grant_type": new.grant_type,
        "scope": new.scope,
        "authorization_details": new.authorization_details,
        "created_at": rfc3339(new.created_at),
        "expires_at": rfc3339(new.expires_at),
        "approvers": new.approvers,
        "approvals_required": new.approvals_required,
        "queue": queue,
        "review_url": format!("{}/review/{}", issuer, new.id),
    });
    // The user's own queue: where they decide it.
    if new.grant_type == dtr_proto::GRANT_TYPE_CIBA
        && new
            .subject
            .as_ref()
            .is_some_and(|u| queue == format!("user:{u}"))
    {
        b["event"] = "ciba.requested".into();
        b["user_url"] = format!("{issuer}{}", dtr_proto::paths::CIBA).into();
    }
    b
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA-256 of "<t>.<body>" keyed by the
/// secret>`.
pub fn signature_header(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    format!("t={unix_seconds},v1={}", sign(secret, unix_seconds, body))
}

/// The hex HMAC-SHA-256 of `"<t>.<body>"`.
pub fn sign(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What to do after an attempt that did not succeed: retry with the
/// callbacks' backoff, never past the deferral's expiry, at most
/// `max_attempts` attempts.
pub fn after_failure(
    job: &HookJob,
    now: i64,
    max_attempts: u32,
    base_ms: u64,
    jitter: f64,
    status: Option<u16>,
    error: String,
) -> CallbackOutcome {
    crate::outbox::retry_or_fail(
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

/// Runs until `shutdown` turns true ([`crate::outbox::run`]); idle when no
/// webhook is configured.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    if state.config.webhooks.is_empty() {
        let _ = shutdown.wait_for(|stop| *stop).await;
        return;
    }
    let claimer = state.clone();
    crate::outbox::run(
        state.clock.clone(),
        state.config.callbacks.concurrency,
        None,
        shutdown,
        "approver notifications",
        |now, limit| {
            let s = claimer.clone();
            async move { s.store.claim_hooks(now, limit, LEASE_MS).await }
        },
        |job: HookJob| {
            let state = state.clone();
            async move { deliver(&state, job).await }
        },
    )
    .await;
}

/// One delivery attempt of one notification.
async fn deliver(state: &AppState, job: HookJob) {
    let now = state.clock.now_ms();
    let cfg = &state.config.callbacks;
    let hook = state
        .config
        .webhooks
        .iter()
        .find(|h| h.id() == job.webhook_id);
    // Only a deferral still waiting for a decision is worth a reviewer's
    // attention; one never written (its creation failed after the row was
    // queued) or already decided is not announced.
    let waiting = state
        .store
        .deferral_by_id(&job.deferral_id)
        .await
        .map(|d| d.is_some_and(|d| d.effective_state(now).is_pending()));
    // A failed attempt: retried with the callbacks' backoff and jitter.
    let retry = |status: Option<u16>, error: String| {
        let jitter = rand::thread_rng().gen_range(-0.2..=0.2);
        after_failure(
            &job,
            now,
            cfg.max_attempts,
            cfg.retry_base_ms,
            jitter,
            status,
            error,
        )
    };
    let outcome = if now >= job.expires_at {
        CallbackOutcome::Failed {
            status: None,
            error: "deferral expired".into(),
        }
    } else if let Err(e) = &waiting {
        retry(None, format!("reading the deferral failed: {e}"))
    } else if waiting.as_ref().is_ok_and(|w| !w) {
        CallbackOutcome::Failed {
            status: None,
            error: "deferral no longer pending, or never created".into(),
        }
    } else if let Some(hook) = hook {
        let t = now.div_euclid(1000);
        let signature = signature_header(&hook.secret, t, job.body.as_bytes());
        let result = state
            .outbound
            .post_json_bytes(
                &job.url,
                job.body.clone().into_bytes(),
                &[(SIGNATURE_HEADER, signature)],
            )
            .await;
        match result {
            Ok(status) if (200..300).contains(&status) => CallbackOutcome::Delivered { status },
            Ok(status) => retry(Some(status), format!("HTTP {status}")),
            Err(e) => retry(None, e.to_string()),
        }
    } else {
        // The entry was removed (or its URL changed) since the row was
        // queued: there is no secret to sign with.
        CallbackOutcome::Failed {
            status: None,
            error: "webhook no longer configured".into(),
        }
    };
    if let Err(e) = state
        .store
        .finish_hook(
            &job.deferral_id,
            &job.webhook_id,
            &outcome,
            state.clock.now_ms(),
        )
        .await
    {
        tracing::warn!(error = %e, deferral = %job.deferral_id, "recording an approver notification outcome failed");
    }
    match &outcome {
        CallbackOutcome::Delivered { status } => tracing::info!(
            deferral = %job.deferral_id, webhook = %job.webhook_id, status, attempts = job.attempts,
            "approver notification delivered"
        ),
        CallbackOutcome::Retry { error, .. } => tracing::info!(
            deferral = %job.deferral_id, webhook = %job.webhook_id, attempts = job.attempts, error = %error,
            "approver notification will be retried"
        ),
        CallbackOutcome::Failed { error, .. } => tracing::warn!(
            deferral = %job.deferral_id, webhook = %job.webhook_id, attempts = job.attempts, error = %error,
            "approver notification given up"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(attempts: u32, expires_at: i64) -> HookJob {
        HookJob {
            deferral_id: "d".into(),
            webhook_id: "w".into(),
            url: "https://x/".into(),
            body: "{}".into(),
            attempts,
            expires_at,
        }
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_and_body() {
        // RFC 4231 style check against an independently computed value:
        // HMAC-SHA-256(key = "key", "1.{}").
        let h = signature_header("key", 1, b"{}");
        assert!(h.starts_with("t=1,v1="), "{h}");
        let v1 = h.trim_start_matches("t=1,v1=");
        assert_eq!(v1.len(), 64);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"1.{}");
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(v1, expected);
        assert_ne!(sign("key", 2, b"{}"), v1, "the timestamp is signed");
        assert_ne!(sign("other", 1, b"{}"), v1, "the key matters");
    }

    #[test]
    fn retries_stop_at_the_limit_and_before_expiry() {
        let r = after_failure(&job(1, 1_000_000), 0, 3, 1000, 0.0, Some(500), "x".into());
        assert!(matches!(r, CallbackOutcome::Retry { at: 1000, .. }));
        let r = after_failure(&job(3, 1_000_000), 0, 3, 1000, 0.0, Some(500), "x".into());
        assert!(matches!(r, CallbackOutcome::Failed { .. }));
        let r = after_failure(&job(1, 500), 0, 3, 1000, 0.0, None, "x".into());
        assert!(matches!(r, CallbackOutcome::Failed { .. }));
    }
}
