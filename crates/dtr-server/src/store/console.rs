//! Storage of review console sessions: server-side so that signing out,
//! expiry and a new admin token end them (a signed cookie alone outlives
//! its logout). The cookie carries a random session id; only its SHA-256
//! is stored, so a read of the table yields no usable session.

use super::StoreResult;
use async_trait::async_trait;

/// A console session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 of the session id (base64url): the key.
    pub id_hash: String,
    /// HMAC of the admin token the session was opened with, keyed by the
    /// session id: the session is refused once the configured token
    /// differs, and the table alone tells nothing about the token. Empty
    /// for a user's session.
    pub admin_fingerprint: String,
    /// The user who signed in with their password; `None` for a session
    /// opened with the admin token.
    pub username: Option<String>,
    /// Created (ms).
    pub created_at: i64,
    /// Ends (ms).
    pub expires_at: i64,
}

/// Review console sessions.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Stores a new session.
    async fn insert_console_session(&self, s: &ConsoleSession) -> StoreResult<()>;
    /// The session with this id hash, unless it has ended at `now`.
    async fn console_session(&self, id_hash: &str, now: i64)
        -> StoreResult<Option<ConsoleSession>>;
    /// Ends a session (sign-out); false when there was none.
    async fn delete_console_session(&self, id_hash: &str) -> StoreResult<bool>;
    /// Ends every session of a user; returns how many.
    async fn delete_user_console_sessions(&self, username: &str) -> StoreResult<u64>;
    /// Deletes sessions that ended before `before`; returns how many.
    async fn prune_console_sessions(&self, before: i64) -> StoreResult<u64>;
}
