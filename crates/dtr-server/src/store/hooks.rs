//! The outbox of approver webhook notifications (see
//! [`crate::approver_hooks`]): one row per (deferral, webhook), claimed
//! under a lease like the callback outbox.

use super::{CallbackOutcome, StoreResult};
use async_trait::async_trait;

/// A notification to queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewHookJob {
    /// The deferral it announces.
    pub deferral_id: String,
    /// The webhook's id ([`crate::config::WebhookConfig::id`]).
    pub webhook_id: String,
    /// Where it goes.
    pub url: String,
    /// The JSON body, exactly as sent (and signed).
    pub body: String,
    /// When it was queued (ms); the first attempt is due then.
    pub created_at: i64,
    /// The deferral's expiry (ms): no attempt after it.
    pub expires_at: i64,
}

/// A notification claimed for delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookJob {
    /// The deferral it announces.
    pub deferral_id: String,
    /// The webhook's id.
    pub webhook_id: String,
    /// Where it goes.
    pub url: String,
    /// The JSON body.
    pub body: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The deferral's expiry (ms).
    pub expires_at: i64,
}

/// A notification's state, for tests and operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookStatus {
    /// The webhook's id.
    pub webhook_id: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Status of the last answer.
    pub last_status: Option<u16>,
}

/// The approver notification outbox.
#[async_trait]
pub trait ApproverHookStore: Send + Sync {
    /// Queues notifications, all or none; a (deferral, webhook) already
    /// queued is left as it is, so enqueueing twice never sends twice.
    async fn enqueue_hooks(&self, jobs: &[NewHookJob]) -> StoreResult<()>;
    /// Claims up to `limit` due notifications for `lease_ms`; one whose
    /// lease ran out (its node died mid-delivery) is due again.
    async fn claim_hooks(&self, now: i64, limit: u32, lease_ms: i64) -> StoreResult<Vec<HookJob>>;
    /// Records the end of an attempt.
    async fn finish_hook(
        &self,
        deferral_id: &str,
        webhook_id: &str,
        outcome: &CallbackOutcome,
        now: i64,
    ) -> StoreResult<()>;
    /// The notifications of a deferral, by webhook id.
    async fn hook_status(&self, deferral_id: &str) -> StoreResult<Vec<HookStatus>>;
}
