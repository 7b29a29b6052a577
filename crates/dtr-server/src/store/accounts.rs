//! Storage of what user grants need: users, login sessions, consents,
//! authorization requests (RFC 9126 pushed ones included), authorization
//! codes and refresh token families (OAuth 2.1 sections 4.1 and 4.3).
//!
//! Bearer secrets (session ids, codes, refresh tokens, `request_uri`
//! values) reach the store only as SHA-256 hashes. Every single-use
//! secret is consumed by one conditional update, so two nodes cannot both
//! accept it.

use super::StoreResult;
use async_trait::async_trait;

/// A user as stored.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserRecord {
    /// Login name.
    pub username: String,
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// Enabled by configuration.
    pub enabled: bool,
    /// Disabled through the admin API (kept across restarts).
    pub admin_disabled: bool,
    /// Roles (`reviewer`, `admin`), from `[[users]] roles`.
    pub roles: Vec<String>,
    /// Groups, from `[[users]] groups`.
    pub groups: Vec<String>,
    /// Display name (`[[users]] name`).
    pub name: Option<String>,
    /// E-mail address (`[[users]] email`).
    pub email: Option<String>,
}

impl UserRecord {
    /// Whether the user may log in and hold grants (DTR-23).
    pub fn is_active(&self) -> bool {
        self.enabled && !self.admin_disabled
    }
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("enabled", &self.enabled)
            .field("admin_disabled", &self.admin_disabled)
            .field("roles", &self.roles)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// Joins a list for a space-separated column.
pub fn join_list(items: &[String]) -> String {
    items.join(" ")
}

/// Splits a space-separated column into its items.
pub fn split_list(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// A personal API token of a user (the admin API's bearer credential of a
/// reviewer); the token itself is shown once, the store keeps its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct UserTokenRecord {
    /// Public identifier (for listing and revocation).
    pub id: String,
    /// The user it authenticates.
    pub username: String,
    /// SHA-256 (base64url) of the token: the lookup key.
    pub token_hash: String,
    /// Created (ms).
    pub created_at: i64,
    /// Revoked (ms); a revoked token authenticates nobody.
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for UserTokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTokenRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("token_hash", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// A login session; the cookie holds the id, the store its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 (base64url) of the session id.
    pub id_hash: String,
    /// The user.
    pub username: String,
    /// Created (ms).
    pub created_at: i64,
    /// Expires (ms).
    pub expires_at: i64,
    /// Logged out or ended by an administrator (ms).
    pub ended_at: Option<i64>,
}

impl SessionRecord {
    /// Whether the session still authenticates its user at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

/// A user's consent to a client for a scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    /// The user.
    pub username: String,
    /// The client.
    pub client_id: String,
    /// Identifier of this grant of consent; a consent revoked and given
    /// again gets a new one, so deferrals relying on the old one fail
    /// (DTR-23).
    pub id: String,
    /// Consented scope (space-separated, canonical).
    pub scope: String,
    /// When it was (last) widened (ms).
    pub granted_at: i64,
}

/// A validated authorization request kept for login and consent, or
/// pushed by the client (RFC 9126).
#[derive(Clone, Debug, PartialEq)]
pub struct AuthorizationRequestRecord {
    /// SHA-256 of the handle (the `request_uri` suffix for pushed ones).
    pub id_hash: String,
    /// The client.
    pub client_id: String,
    /// The validated request (JSON).
    pub request: serde_json::Value,
    /// Pushed at `/par`.
    pub pushed: bool,
    /// Created (ms).
    pub created_at: i64,
    /// Expires (ms).
    pub expires_at: i64,
    /// Consumed (ms).
    pub used_at: Option<i64>,
}

/// An authorization code, stored by hash (OAuth 2.1 section 4.1.2).
#[derive(Clone, Debug, PartialEq)]
pub struct AuthorizationCodeRecord {
    /// SHA-256 of the code.
    pub code_hash: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The token family the code starts (RFC 9700 section 2.1.1: a replay
    /// revokes it).
    pub family_id: String,
    /// Everything the token request needs (JSON).
    pub grant_data: serde_json::Value,
    /// Issued (ms).
    pub created_at: i64,
    /// Expires (ms).
    pub expires_at: i64,
    /// Exchanged (ms).
    pub used_at: Option<i64>,
}

/// What consuming a single-use secret found.
#[derive(Clone, Debug, PartialEq)]
pub enum Consumed<T> {
    /// First use, now consumed.
    Fresh(T),
    /// Already used before: a replay (RFC 9700 sections 2.1.1, 4.14.2).
    Replayed(T),
    /// Unknown, expired or revoked.
    Invalid,
}

/// A token family: every token descending from one authorization grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFamilyRecord {
    /// Identifier.
    pub family_id: String,
    /// The client.
    pub client_id: String,
    /// The resource owner.
    pub username: String,
    /// Created (ms).
    pub created_at: i64,
    /// Revoked (ms): by reuse detection, code replay or revocation.
    pub revoked_at: Option<i64>,
}

/// A refresh token, stored by hash.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the token.
    pub token_hash: String,
    /// Its family.
    pub family_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Scope, subject, consent, DPoP binding (JSON).
    pub grant_data: serde_json::Value,
    /// Issued (ms).
    pub issued_at: i64,
    /// Expires (ms).
    pub expires_at: i64,
    /// Rotated away (ms).
    pub used_at: Option<i64>,
}

/// Users, sessions, consents, authorization requests and codes, refresh
/// tokens.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Inserts or updates a configured user, keeping `admin_disabled`.
    async fn upsert_user(&self, u: &UserRecord) -> StoreResult<()>;
    /// One user.
    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// All users, by name.
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Sets the admin override; false when the user is unknown.
    async fn set_user_admin_disabled(&self, username: &str, disabled: bool) -> StoreResult<bool>;

    /// Stores a new personal API token (its hash).
    async fn insert_user_token(&self, t: &UserTokenRecord) -> StoreResult<()>;
    /// The token with this SHA-256, revoked or not.
    async fn user_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<UserTokenRecord>>;
    /// Every token of a user, oldest first.
    async fn list_user_tokens(&self, username: &str) -> StoreResult<Vec<UserTokenRecord>>;
    /// Revokes a token of a user (an earlier revocation keeps its time);
    /// false when the user has no token with this id.
    async fn revoke_user_token(&self, username: &str, id: &str, now: i64) -> StoreResult<bool>;

    /// Stores a new session.
    async fn insert_session(&self, s: &SessionRecord) -> StoreResult<()>;
    /// A session by the hash of its id (ended or expired ones too).
    async fn session_by_hash(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>>;
    /// Ends one session; false when unknown or already ended.
    async fn end_session(&self, id_hash: &str, now: i64) -> StoreResult<bool>;
    /// Ends every open session of a user; returns how many.
    async fn end_user_sessions(&self, username: &str, now: i64) -> StoreResult<u64>;

    /// Records consent to `scope` (the caller passes the union with what
    /// was consented before); keeps the consent id when one exists,
    /// otherwise stores `new_id`. Returns the stored consent.
    async fn grant_consent(
        &self,
        username: &str,
        client_id: &str,
        scope: &str,
        new_id: &str,
        now: i64,
    ) -> StoreResult<ConsentRecord>;
    /// The consent of a user to a client.
    async fn get_consent(
        &self,
        username: &str,
        client_id: &str,
    ) -> StoreResult<Option<ConsentRecord>>;
    /// Every consent of a user.
    async fn list_consents(&self, username: &str) -> StoreResult<Vec<ConsentRecord>>;
    /// Revokes a consent; false when there was none.
    async fn revoke_consent(&self, username: &str, client_id: &str) -> StoreResult<bool>;

    /// Stores an authorization request.
    async fn insert_authorization_request(&self, r: &AuthorizationRequestRecord)
        -> StoreResult<()>;
    /// An unused, unexpired authorization request.
    async fn authorization_request(
        &self,
        id_hash: &str,
        now: i64,
    ) -> StoreResult<Option<AuthorizationRequestRecord>>;
    /// Consumes an authorization request (single use, RFC 9126 section 4);
    /// false when used, expired or unknown.
    async fn consume_authorization_request(&self, id_hash: &str, now: i64) -> StoreResult<bool>;

    /// Stores an authorization code.
    async fn insert_authorization_code(&self, c: &AuthorizationCodeRecord) -> StoreResult<()>;
    /// Reads a code without consuming it, used or not (the token request
    /// checks client, redirect URI and verifier before it consumes the
    /// code, OAuth 2.1 section 4.1.2).
    async fn authorization_code(
        &self,
        code_hash: &str,
    ) -> StoreResult<Option<AuthorizationCodeRecord>>;
    /// Consumes a code: fresh once, a replay afterwards (even past expiry,
    /// so the replay still revokes its family).
    async fn use_authorization_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> StoreResult<Consumed<AuthorizationCodeRecord>>;

    /// Creates a token family unless it exists.
    async fn insert_family(&self, f: &TokenFamilyRecord) -> StoreResult<()>;
    /// A token family.
    async fn get_family(&self, family_id: &str) -> StoreResult<Option<TokenFamilyRecord>>;
    /// Revokes a family: its refresh tokens and its access tokens. True
    /// when the family was not revoked before.
    async fn revoke_family(&self, family_id: &str, now: i64) -> StoreResult<bool>;
    /// Links an issued access token to its family.
    async fn set_token_family(&self, jti: &str, family_id: &str) -> StoreResult<()>;

    /// Stores a refresh token.
    async fn insert_refresh_token(&self, t: &RefreshTokenRecord) -> StoreResult<()>;
    /// A refresh token by hash, whatever its state.
    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>>;
    /// Rotates a refresh token away: fresh once (unexpired, family not
    /// revoked), a replay when it was used before.
    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<Consumed<RefreshTokenRecord>>;
    /// Deletes expired sessions, requests, codes and refresh tokens.
    async fn prune_accounts(&self, before: i64) -> StoreResult<u64>;
}
