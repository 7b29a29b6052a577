//! ARAP access request tasks dtr submitted for its deferrals (see
//! [`crate::authzen`]): one row per deferral, polled under a lease like
//! the callback outbox, found by the hash of its callback secret.

use super::StoreResult;
use async_trait::async_trait;

/// A task, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthzenTask {
    /// The deferral it decides.
    pub deferral_id: String,
    /// `task.id` at the access request service.
    pub task_id: String,
    /// `task.status_endpoint`: polled with GET.
    pub status_endpoint: String,
    /// `task.links.cancel`, when the service supports cancellation.
    pub cancel_endpoint: Option<String>,
    /// SHA-256 of the secret path segment of our callback URL.
    pub callback_hash: String,
    /// The batch evaluation and the submitted indices, for the
    /// re-evaluation after approval (JSON).
    pub evaluation: serde_json::Value,
    /// `pending` (polled), `cancel` (to be cancelled at the service),
    /// `done`.
    pub state: String,
    /// The next poll (ms).
    pub next_poll_at: i64,
    /// Polls so far (the backoff grows with them).
    pub polls: u32,
    /// `task.expires_at` (ms), or the deferral's end.
    pub expires_at: i64,
    /// When it was submitted (ms).
    pub created_at: i64,
}

impl std::fmt::Debug for AuthzenTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzenTask")
            .field("deferral_id", &self.deferral_id)
            .field("task_id", &self.task_id)
            .field("state", &self.state)
            .field("next_poll_at", &self.next_poll_at)
            .field("polls", &self.polls)
            .finish_non_exhaustive()
    }
}

/// A submission to dtr's own access request endpoint, by its
/// `Idempotency-Key`.
#[derive(Clone, PartialEq, Eq)]
pub struct SubmissionKey {
    /// The submitting client.
    pub client_id: String,
    /// Its `Idempotency-Key`.
    pub idempotency_key: String,
    /// SHA-256 of the canonical submission body.
    pub body_hash: String,
    /// The deferral it created.
    pub deferral_id: String,
    /// The task id (the deferral's code), sealed to the deferral.
    pub task_sealed: String,
    /// When (ms).
    pub created_at: i64,
    /// Kept until then (ms).
    pub expires_at: i64,
}

impl std::fmt::Debug for SubmissionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmissionKey")
            .field("client_id", &self.client_id)
            .field("deferral_id", &self.deferral_id)
            .finish_non_exhaustive()
    }
}

/// The task store.
#[async_trait]
pub trait AuthzenTaskStore: Send + Sync {
    /// Records a submitted task (before its deferral: a task without a
    /// deferral is dropped by the poller, a deferral without its task
    /// would wait for nothing).
    async fn insert_authzen_task(&self, t: &AuthzenTask) -> StoreResult<()>;
    /// The task of a deferral.
    async fn authzen_task(&self, deferral_id: &str) -> StoreResult<Option<AuthzenTask>>;
    /// The task whose callback secret hashes to `hash`.
    async fn authzen_task_by_callback(&self, hash: &str) -> StoreResult<Option<AuthzenTask>>;
    /// Claims up to `limit` tasks due at `now` (`pending` or `cancel`),
    /// pushing their next poll `lease_ms` ahead so that another node does
    /// not take them meanwhile.
    async fn claim_authzen_tasks(
        &self,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<AuthzenTask>>;
    /// Sets a task's state and next poll; `polls` counts one more when
    /// `counted`. A `done` task is never changed again.
    async fn update_authzen_task(
        &self,
        deferral_id: &str,
        state: &str,
        next_poll_at: i64,
        counted: bool,
    ) -> StoreResult<()>;
    /// Ends a pending deferral's life now (the access request expired
    /// before its deferral: ARAP `expired` is the deferral's
    /// `expired_token`), so that the `expire` transition applies. True
    /// when it was pending and alive.
    async fn end_deferral_now(&self, deferral_id: &str, now: i64) -> StoreResult<bool>;
    /// Deletes tasks that ended before `before`, and submission keys kept
    /// until before it.
    async fn prune_authzen_tasks(&self, before: i64) -> StoreResult<u64>;
    /// Records a submission's key unless the client used it already;
    /// returns the earlier record when it did (nothing written then).
    async fn remember_submission(&self, k: &SubmissionKey) -> StoreResult<Option<SubmissionKey>>;
    /// The submission a client made under `key`, if any.
    async fn submission_by_key(
        &self,
        client_id: &str,
        key: &str,
    ) -> StoreResult<Option<SubmissionKey>>;
}
