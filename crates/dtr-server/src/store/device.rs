//! Storage of the device authorization grant (RFC 8628): device codes and
//! the count of wrong user-code entries. Codes are stored only as SHA-256
//! hashes (the device code is a 160-bit bearer secret; the user code is
//! short, so it is also single-use, short-lived and rate-limited, RFC 8628
//! section 5.1). Every transition is one conditional update, as for
//! deferrals, so two nodes can never both approve or both collect a code.

use super::StoreResult;
use async_trait::async_trait;
use dtr_proto::device::{DeviceState, DeviceView};

/// A new device authorization.
#[derive(Clone, Debug)]
pub struct NewDeviceCode {
    /// SHA-256 of the device code.
    pub device_code_hash: String,
    /// SHA-256 of the canonical user code.
    pub user_code_hash: String,
    /// The client that asked.
    pub client_id: String,
    /// Requested scope (canonical).
    pub scope: String,
    /// `completion_mode=deferred` was sent to the device authorization
    /// endpoint (DTR-4); the token request must then carry it too (DTR-5).
    pub deferred_hint: bool,
    /// Created (ms).
    pub created_at: i64,
    /// Expires (ms).
    pub expires_at: i64,
    /// Polling interval (ms).
    pub interval_ms: i64,
}

/// A stored device authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCodeRecord {
    /// SHA-256 of the device code.
    pub device_code_hash: String,
    /// SHA-256 of the user code.
    pub user_code_hash: String,
    /// The client.
    pub client_id: String,
    /// Requested scope.
    pub scope: String,
    /// See [`NewDeviceCode::deferred_hint`].
    pub deferred_hint: bool,
    /// Stored state.
    pub state: DeviceState,
    /// Who approved or denied it.
    pub username: Option<String>,
    /// SHA-256 of the login session the decision was made in.
    pub session_id_hash: Option<String>,
    /// Created (ms).
    pub created_at: i64,
    /// Expires (ms).
    pub expires_at: i64,
    /// Current polling interval (ms); grows by 5 s per `slow_down`.
    pub interval_ms: i64,
    /// Previous token request (ms).
    pub last_polled_at: Option<i64>,
    /// Approved or denied (ms).
    pub decided_at: Option<i64>,
    /// Collected (ms).
    pub redeemed_at: Option<i64>,
}

impl DeviceCodeRecord {
    /// What the pure decision needs.
    pub fn view(&self) -> DeviceView {
        DeviceView {
            state: self.state,
            expires_at: self.expires_at,
            last_polled_at: self.last_polled_at,
            interval_ms: self.interval_ms,
        }
    }
}

/// Device codes and user-code attempt limits.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Stores a new device authorization; `false` (nothing stored) when
    /// the user code is already taken, so the caller draws another.
    async fn insert_device_code(&self, d: &NewDeviceCode) -> StoreResult<bool>;
    /// Looks a device code up by its hash (one indexed read).
    async fn device_code_by_hash(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<DeviceCodeRecord>>;
    /// A device code still waiting for the user (pending, unexpired at
    /// `now`) by the hash of its user code.
    async fn pending_device_code_by_user_code(
        &self,
        user_code_hash: &str,
        now: i64,
    ) -> StoreResult<Option<DeviceCodeRecord>>;
    /// `pending → approved|denied` by the user, unless expired; the user
    /// code is single-use: a second decision changes nothing.
    async fn decide_device_code(
        &self,
        user_code_hash: &str,
        approve: bool,
        username: &str,
        session_id_hash: &str,
        now: i64,
    ) -> StoreResult<bool>;
    /// Records a token request of a pending code (compare-and-set on the
    /// previous request's time) and sets its interval; `false` when
    /// another request came in between or the code moved on.
    async fn record_device_poll(
        &self,
        device_code_hash: &str,
        expected_last_polled_at: Option<i64>,
        interval_ms: i64,
        now: i64,
    ) -> StoreResult<bool>;
    /// `approved → redeemed` unless expired: only one token request ever
    /// collects an approval, whether it is issued or deferred.
    async fn redeem_device_code(&self, device_code_hash: &str, now: i64) -> StoreResult<bool>;
    /// Counts one wrong user-code entry under `key` and returns the count
    /// within the window of `window_ms` (a new window starts when the
    /// previous one is over). One atomic upsert.
    async fn count_user_code_failure(
        &self,
        key: &str,
        window_ms: i64,
        now: i64,
    ) -> StoreResult<u32>;
    /// Wrong entries under `key` in the current window.
    async fn user_code_failures(&self, key: &str, window_ms: i64, now: i64) -> StoreResult<u32>;
    /// Deletes device codes that expired before `before`, and attempt
    /// counters whose window started before it.
    async fn prune_device_codes(&self, before: i64) -> StoreResult<u64>;
}
