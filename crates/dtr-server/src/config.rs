//! Server configuration: the TOML file of DESIGN.md, command-line
//! overrides, the built-in demo, and validation whose every error names the
//! offending key (exit code 2 at start-up).

use crate::policy::{Rule, RuleConfig};
use dtr_proto::scope::Scope;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

/// The configuration file, exactly the keys of DESIGN.md (plus additions
/// recorded in the README). Unknown keys are errors.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Issuer identifier (RFC 8414); defaults to `http://<listen>`.
    pub issuer: Option<String>,
    /// Address to listen on; defaults to `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// `sqlite://PATH` or `postgres://...`; defaults to `sqlite://dtr-data/dtr.db`.
    pub database: Option<String>,
    /// Connections each node keeps to PostgreSQL at most (ignored for
    /// SQLite, which uses one); defaults to 10.
    pub database_pool_size: Option<u32>,
    /// Allows http loopback issuer, callbacks and interaction URIs.
    #[serde(default)]
    pub dev_mode: bool,
    /// Deferral lifetimes and polling.
    #[serde(default)]
    pub deferral: DeferralConfig,
    /// Token lifetimes.
    #[serde(default)]
    pub tokens: TokensConfig,
    /// Admin API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Statically configured clients.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Resource owners who can log in.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Ordered policy rules.
    #[serde(default)]
    pub policy: Vec<RuleConfig>,
    /// DPoP (RFC 9449).
    #[serde(default)]
    pub dpop: DpopConfig,
    /// Callback notifications (DTR-25..30).
    #[serde(default)]
    pub callbacks: CallbacksConfig,
    /// Dynamic client registration (RFC 7591, RFC 7592).
    #[serde(default)]
    pub registration: RegistrationConfig,
    /// Device authorization grant (RFC 8628).
    #[serde(default)]
    pub device: crate::grants::device::DeviceConfig,
    /// Throttling of failed authentication and of registration, and the
    /// bound of the password hashing queue.
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// `[[resource_servers]]`: the only valid `audience` and `resource`
    /// values of a token exchange, each with the optional confidential
    /// client it introspects with (see [`crate::token_policy`]). None by
    /// default: then no exchange may name a target.
    #[serde(default)]
    pub resource_servers: Vec<crate::token_policy::ResourceServerConfig>,
    /// `[[token_exchange]]`: which client may exchange the tokens of which
    /// clients (`subject_clients`, `"*"` for any), for which resource
    /// servers (`audiences`). Without a rule a client exchanges only its
    /// own tokens and those addressed to it, and names no target.
    #[serde(default)]
    pub token_exchange: Vec<crate::token_policy::TokenExchangeRule>,
    /// Connection limits of the HTTP listener.
    #[serde(default)]
    pub http: HttpConfig,
}

/// `[http]`: how long a client may hold a connection without making
/// progress, and how many connections are open at once. Every connection
/// costs a file descriptor and memory, so none is held for free: a
/// client that stops sending (slowloris) or just keeps a socket open is
/// disconnected, and at the cap new connections wait in the kernel's
/// accept backlog until one closes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Milliseconds a client has to send a complete request head (request
    /// line and headers), counted from its first byte. A connection whose
    /// head is still incomplete then is closed without an answer.
    pub header_timeout_ms: u64,
    /// Milliseconds a whole request body may take to arrive, counted from
    /// when the server starts reading it; later, the request is answered
    /// 408 `invalid_request` and the connection closed.
    pub body_timeout_ms: u64,
    /// Milliseconds a connection may sit with no request in progress (after
    /// connecting, or between keep-alive requests) before it is closed.
    pub idle_timeout_ms: u64,
    /// Connections open at once. At the cap the server stops accepting
    /// until one closes; new connections wait in the kernel backlog (and
    /// are refused by the kernel when that is full).
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
        }
    }
}

impl HttpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("http.header_timeout_ms", self.header_timeout_ms),
            ("http.body_timeout_ms", self.body_timeout_ms),
            ("http.idle_timeout_ms", self.idle_timeout_ms),
        ] {
            // Zero would mean "no time at all"; an hour is far beyond any
            // legitimate client and would make the limit meaningless.
            if !(1..=3_600_000).contains(&v) {
                return Err(err(key, "must be between 1 and 3600000 ms"));
            }
        }
        // Each connection holds a file descriptor; the semaphore counts in u32.
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(err("http.max_connections", "must be between 1 and 1000000"));
        }
        Ok(())
    }

    /// `header_timeout_ms` as a duration.
    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.header_timeout_ms)
    }

    /// `body_timeout_ms` as a duration.
    pub fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.body_timeout_ms)
    }

    /// `idle_timeout_ms` as a duration.
    pub fn idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.idle_timeout_ms)
    }
}

/// `[throttle]`: how many failed authentications the server answers before
/// it refuses to look at more (without hashing), and how long a queue of
/// password hashes it keeps. The counters live in each node's memory: on
/// PostgreSQL with several nodes, each node throttles on its own, so the
/// budgets apply per node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Failed authentications per minute allowed for one client id and for
    /// one username (the rate at which the budget refills).
    pub failures_per_minute: u32,
    /// Failed authentications one client id or username may spend at once
    /// before the per-minute rate applies.
    pub failure_burst: u32,
    /// Failed authentications per minute allowed from one source address
    /// (IPv4 address, or IPv6 /64), whatever the client, user or token.
    pub address_failures_per_minute: u32,
    /// Failed authentications one source address may spend at once.
    pub address_failure_burst: u32,
    /// Client registrations (`POST /register`) per minute from one source
    /// address.
    pub registrations_per_minute: u32,
    /// Registrations one source address may make at once.
    pub registration_burst: u32,
    /// Wrong passwords of one user after which sign-ins back off
    /// exponentially: the k-th failure beyond this refuses every sign-in of
    /// that user for 2^k seconds after it, until a sign-in succeeds.
    pub login_backoff_after: u32,
    /// The longest a user's sign-in backoff lasts, in seconds.
    pub login_backoff_max_secs: u64,
    /// Password hashes that may wait per hashing thread (one thread per
    /// core, at most four); beyond that a request needing a hash is
    /// answered 503 `temporarily_unavailable` at once instead of queueing.
    pub hash_queue_per_thread: usize,
    /// Milliseconds a request refused by a throttle waits before its
    /// answer is sent (a tarpit). A client looping on refusals then sends
    /// at most one request per connection and delay, so a flood of guesses
    /// cannot fill the server with cheap refusals and starve legitimate
    /// requests; a refused client loses nothing it would not lose to
    /// `Retry-After`. 0 answers at once.
    pub refusal_delay_ms: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            failures_per_minute: 10,
            failure_burst: 5,
            address_failures_per_minute: 30,
            address_failure_burst: 20,
            registrations_per_minute: 10,
            registration_burst: 10,
            login_backoff_after: 5,
            login_backoff_max_secs: 900,
            hash_queue_per_thread: 16,
            refusal_delay_ms: 1000,
        }
    }
}

impl ThrottleConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("throttle.failures_per_minute", self.failures_per_minute),
            ("throttle.failure_burst", self.failure_burst),
            (
                "throttle.address_failures_per_minute",
                self.address_failures_per_minute,
            ),
            ("throttle.address_failure_burst", self.address_failure_burst),
            (
                "throttle.registrations_per_minute",
                self.registrations_per_minute,
            ),
            ("throttle.registration_burst", self.registration_burst),
            ("throttle.login_backoff_after", self.login_backoff_after),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        if !(1..=86_400).contains(&self.login_backoff_max_secs) {
            return Err(err(
                "throttle.login_backoff_max_secs",
                "must be between 1 and 86400 seconds",
            ));
        }
        if !(1..=1024).contains(&self.hash_queue_per_thread) {
            return Err(err(
                "throttle.hash_queue_per_thread",
                "must be between 1 and 1024",
            ));
        }
        if self.refusal_delay_ms > 10_000 {
            return Err(err("throttle.refusal_delay_ms", "must be at most 10000 ms"));
        }
        Ok(())
    }
}

/// `[registration]`: dynamic client registration (RFC 7591, RFC 7592).
/// Closed by default: off unless `enabled`; when on, an initial access
/// token is required unless `open` says otherwise; and a registered client
/// gets only what `scope` and `grant_types` allow, both empty by default.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Whether `POST /register` is offered (default `false`). When it is
    /// not, `POST /register` and `PUT /register/{client_id}` answer 403
    /// `access_denied` and the metadata document does not list
    /// `registration_endpoint`.
    pub enabled: bool,
    /// Lets anyone register without an initial access token (default
    /// `false`). Start-up refuses `enabled = true` with neither this nor
    /// `initial_access_token`, and both at once: registration is never
    /// open by accident.
    pub open: bool,
    /// The initial access token (RFC 7591 section 3, at least 16
    /// characters): registration then requires `Authorization: Bearer
    /// <token>`. Required when `enabled = true` unless `open = true`.
    pub initial_access_token: Option<String>,
    /// The scopes a registered client may have (default: none). A
    /// registration without a `scope` member gets all of them; one asking
    /// for more is `invalid_client_metadata`.
    pub scope: String,
    /// The grant types a registered client may have (default: none but
    /// the polling grant, which is always implied and need not be listed).
    /// A registration naming another one is `invalid_client_metadata`.
    pub grant_types: Vec<String>,
}

impl RegistrationConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        Scope::parse(&self.scope).map_err(|e| err("registration.scope", e))?;
        for (i, g) in self.grant_types.iter().enumerate() {
            if g != dtr_proto::GRANT_TYPE_DEFERRED && !SUPPORTED_GRANT_TYPES.contains(&g.as_str()) {
                return Err(err(
                    &format!("registration.grant_types[{i}]"),
                    format!("unsupported grant type '{g}'"),
                ));
            }
        }
        if self
            .initial_access_token
            .as_ref()
            .is_some_and(|t| t.len() < 16)
        {
            return Err(err(
                "registration.initial_access_token",
                "must be at least 16 characters",
            ));
        }
        if self.open && self.initial_access_token.is_some() {
            return Err(err(
                "registration.open",
                "open = true and an initial_access_token contradict each other; keep one",
            ));
        }
        if self.enabled && !self.open && self.initial_access_token.is_none() {
            return Err(err(
                "registration.initial_access_token",
                "required with registration.enabled = true, unless registration.open = true \
                 allows anyone to register",
            ));
        }
        Ok(())
    }

    /// The scopes registered clients may have (validated at start-up).
    pub fn allowed_scope(&self) -> Scope {
        Scope::parse(&self.scope).unwrap_or_default()
    }

    /// The originating grant types registered clients may have; the
    /// polling grant is implied and not among them.
    pub fn allowed_grant_types(&self) -> impl Iterator<Item = &str> {
        self.grant_types
            .iter()
            .map(String::as_str)
            .filter(|g| *g != dtr_proto::GRANT_TYPE_DEFERRED)
    }
}

impl std::fmt::Debug for RegistrationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationConfig")
            .field("enabled", &self.enabled)
            .field("open", &self.open)
            .field(
                "initial_access_token",
                &self.initial_access_token.as_ref().map(|_| "[redacted]"),
            )
            .field("scope", &self.scope)
            .field("grant_types", &self.grant_types)
            .finish()
    }
}

/// `[callbacks]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    /// Milliseconds after the deferred response before a callback may go
    /// out, so the client has recorded the code (DTR-27).
    pub delay_ms: u64,
    /// Attempts before a callback is given up.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter, capped at 5 min.
    pub retry_base_ms: u64,
    /// Connect timeout of a delivery.
    pub connect_timeout_ms: u64,
    /// Whole-delivery timeout (read included).
    pub timeout_ms: u64,
    /// Deliveries in flight at once, all endpoints together.
    pub concurrency: usize,
    /// Deliveries in flight at once to one host.
    pub per_endpoint_concurrency: usize,
    /// PEM file of an extra trusted root certificate (private CAs, tests).
    pub extra_root_ca: Option<String>,
    /// 32 bytes, base64url, sealing codes and notification tokens at rest
    /// until their callback is done. Without it a key is derived from the
    /// signing key in the database, which protects nothing against a
    /// database leak: set it in production.
    pub encryption_key: Option<String>,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            delay_ms: 500,
            max_attempts: 8,
            retry_base_ms: 1000,
            connect_timeout_ms: 3000,
            timeout_ms: 5000,
            concurrency: 32,
            per_endpoint_concurrency: 4,
            extra_root_ca: None,
            encryption_key: None,
        }
    }
}

impl std::fmt::Debug for CallbacksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbacksConfig")
            .field("delay_ms", &self.delay_ms)
            .field("max_attempts", &self.max_attempts)
            .field(
                "encryption_key",
                &self.encryption_key.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

impl CallbacksConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(err("callbacks.max_attempts", "must be at least 1"));
        }
        if self.concurrency == 0 || self.per_endpoint_concurrency == 0 {
            return Err(err(
                "callbacks.concurrency",
                "concurrency limits must be at least 1",
            ));
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 || self.retry_base_ms == 0 {
            return Err(err(
                "callbacks.timeout_ms",
                "timeouts and retry_base_ms must be at least 1 ms",
            ));
        }
        if let Some(p) = &self.extra_root_ca {
            let pem = std::fs::read(p)
                .map_err(|e| err("callbacks.extra_root_ca", format!("cannot read {p}: {e}")))?;
            reqwest::Certificate::from_pem(&pem).map_err(|e| err("callbacks.extra_root_ca", e))?;
        }
        if let Some(k) = &self.encryption_key {
            if self.key_bytes().is_none() {
                return Err(err(
                    "callbacks.encryption_key",
                    format!(
                        "must be 32 bytes in base64url ({} characters)",
                        43 + usize::from(k.ends_with('='))
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The configured sealing key.
    pub fn key_bytes(&self) -> Option<[u8; 32]> {
        use base64::Engine;
        let k = self.encryption_key.as_ref()?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(k.trim_end_matches('='))
            .ok()?;
        raw.try_into().ok()
    }
}

/// `[dpop]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// Accepted distance of a proof's `iat` from now, seconds (RFC 9449
    /// section 11.1).
    pub iat_window: u64,
    /// Require server-provided nonces (RFC 9449 section 8).
    pub nonce: bool,
    /// Never defer a request without a DPoP proof, whatever the client
    /// (DTR-14 says confidential clients with secrets SHOULD bind).
    pub require_for_deferral: bool,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            iat_window: 60,
            nonce: false,
            require_for_deferral: false,
        }
    }
}

/// `[deferral]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeferralConfig {
    /// Seconds a deferral code lives (`expires_in`, DTR-8).
    pub expires_in: u64,
    /// Minimum seconds between polls (`interval`, DTR-8, DTR-19).
    pub interval: u64,
    /// `slow_down` answers before escalating to `invalid_request` (DTR-19).
    pub slow_down_limit: u32,
}

impl Default for DeferralConfig {
    fn default() -> Self {
        Self {
            expires_in: 600,
            interval: 5,
            slow_down_limit: 3,
        }
    }
}

/// `[tokens]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Access token lifetime in seconds.
    pub access_token_ttl: u64,
    /// Refresh token lifetime in seconds.
    pub refresh_token_ttl: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: 3600,
            refresh_token_ttl: 86400,
        }
    }
}

/// Fewest characters of `[admin] token`: the token is compared as a
/// whole, so its length is all that stands between an attacker and the
/// admin API (at least 32 random characters is ~190 bits).
pub const ADMIN_TOKEN_MIN_LEN: usize = 32;

/// `[admin]`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token of the admin API and the review console, at least
    /// [`ADMIN_TOKEN_MIN_LEN`] characters; without one the admin API is off.
    /// Failed attempts are throttled like client secrets (`[throttle]`).
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// One `[[clients]]` table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client identifier.
    pub client_id: String,
    /// Secret of a confidential client; absent for public clients.
    pub client_secret: Option<String>,
    /// `client_secret_basic | client_secret_post | private_key_jwt | none`.
    pub token_endpoint_auth_method: Option<String>,
    /// Grants the client may use; the polling grant is implied.
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<String>,
    /// Scopes the client may ask for.
    #[serde(default)]
    pub scope: String,
    /// Registered redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Public keys for `private_key_jwt`.
    #[serde(default)]
    pub jwks: Option<toml::Value>,
    /// Or where the client publishes them (https; fetched SSRF-safely).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Callback endpoint (DTR-25); empty means none.
    #[serde(default)]
    pub deferred_client_notification_endpoint: Option<String>,
    /// Whether the client may obtain tokens.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Every token and deferral of this client must be DPoP-bound (DTR-14).
    #[serde(default)]
    pub require_dpop: bool,
    /// RFC 9126 section 6: authorization requests must come through `/par`.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// The user this client acts for (an agent's principal): a configured
    /// `[[users]]` username. It decides, at the interaction page, the
    /// deferrals of this client that concern no other user (client
    /// credentials, token exchange of the client's own tokens). Without
    /// an owner only admins decide those (DESIGN.md).
    #[serde(default)]
    pub owner: Option<String>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("grant_types", &self.grant_types)
            .field("scope", &self.scope)
            .field("enabled", &self.enabled)
            .finish()
    }
}

fn default_grant_types() -> Vec<String> {
    vec![dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS.to_owned()]
}

fn default_true() -> bool {
    true
}

/// One `[[users]]` table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name.
    pub username: String,
    /// Password (hashed in memory at start-up, never stored in clear).
    pub password: String,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Client authentication methods at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic (RFC 6749 section 2.3.1).
    ClientSecretBasic,
    /// Secret in the form body.
    ClientSecretPost,
    /// Signed JWT assertion (RFC 7523).
    PrivateKeyJwt,
    /// Public client.
    None,
}

impl AuthMethod {
    /// Parses a `token_endpoint_auth_method` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "client_secret_basic" => Self::ClientSecretBasic,
            "client_secret_post" => Self::ClientSecretPost,
            "private_key_jwt" => Self::PrivateKeyJwt,
            "none" => Self::None,
            _ => return None,
        })
    }

    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }
}

/// Grant types this build can run as originating grants.
pub const SUPPORTED_GRANT_TYPES: &[&str] = &[
    dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS,
    dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE,
    dtr_proto::GRANT_TYPE_REFRESH_TOKEN,
    dtr_proto::GRANT_TYPE_DEVICE_CODE,
    dtr_proto::GRANT_TYPE_TOKEN_EXCHANGE,
];

/// A validated client.
#[derive(Clone)]
pub struct StaticClient {
    /// Identifier.
    pub client_id: String,
    /// Secret in clear, only until it is hashed at start-up.
    pub client_secret: Option<String>,
    /// Authentication method.
    pub auth_method: AuthMethod,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// Allowed scope.
    pub scope: Scope,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// JWKS (JSON) for `private_key_jwt`.
    pub jwks: Option<serde_json::Value>,
    /// URL of the client's JWKS.
    pub jwks_uri: Option<String>,
    /// Callback endpoint (DTR-25).
    pub notification_endpoint: Option<String>,
    /// Enabled in configuration.
    pub enabled: bool,
    /// DPoP required (RFC 9449 `dpop_bound_access_tokens`).
    pub require_dpop: bool,
    /// Pushed authorization requests required (RFC 9126 section 6).
    pub require_par: bool,
    /// The user this client acts for (`[[clients]] owner`).
    pub owner: Option<String>,
}

impl std::fmt::Debug for StaticClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticClient")
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The database the server uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
}

/// The validated, complete configuration the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Issuer identifier, without a trailing slash.
    pub issuer: Option<String>,
    /// Listen address.
    pub listen: SocketAddr,
    /// Database.
    pub database: DatabaseUrl,
    /// PostgreSQL connections per node (`database_pool_size`).
    pub database_pool_size: u32,
    /// Development mode.
    pub dev_mode: bool,
    /// Deferral settings.
    pub deferral: DeferralConfig,
    /// Token lifetimes.
    pub tokens: TokensConfig,
    /// Admin token.
    pub admin_token: Option<String>,
    /// Clients.
    pub clients: Vec<StaticClient>,
    /// Users.
    pub users: Vec<UserConfig>,
    /// Policy rules.
    pub policy: Vec<Rule>,
    /// DPoP settings.
    pub dpop: DpopConfig,
    /// Callback settings.
    pub callbacks: CallbacksConfig,
    /// Registration settings.
    pub registration: RegistrationConfig,
    /// Device grant settings.
    pub device: crate::grants::device::DeviceConfig,
    /// Throttling and the hashing queue bound.
    pub throttle: ThrottleConfig,
    /// Resource servers (`[[resource_servers]]`).
    pub resource_servers: Vec<crate::token_policy::ResourceServerConfig>,
    /// Token exchange rules (`[[token_exchange]]`).
    pub token_exchange: Vec<crate::token_policy::TokenExchangeRule>,
    /// Connection limits.
    pub http: HttpConfig,
}

/// A configuration error; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(key: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("config key `{key}`: {msg}"))
}

/// Command-line overrides of config keys.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--database`.
    pub database: Option<String>,
    /// `--issuer`.
    pub issuer: Option<String>,
}

impl ConfigFile {
    /// Parses TOML text; errors carry the dotted path of the bad key.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.message().to_owned();
            // For an unknown key the path points at its parent; the message
            // names the key itself.
            if path == "." || path.is_empty() {
                ConfigError(format!("config: {msg}"))
            } else {
                err(&path, msg)
            }
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// The built-in demo (`dtr serve` with no config file): two
    /// confidential clients acting for their owner alice, one user (alice),
    /// and a policy that sends `payments` to review, `identity` to user
    /// interaction (decided by alice, the clients' owner) and `reports` to
    /// an automatic approval after 10 seconds. Registration is open, the
    /// one place where it is (the banner says so), and limited to what the
    /// walkthrough needs.
    pub fn demo() -> Self {
        let client = |id: &str, secret: &str, method: &str| ClientConfig {
            client_id: id.into(),
            client_secret: Some(secret.into()),
            token_endpoint_auth_method: Some(method.into()),
            grant_types: default_grant_types(),
            scope: "read write payments identity reports".into(),
            redirect_uris: vec![],
            jwks: None,
            jwks_uri: None,
            deferred_client_notification_endpoint: None,
            enabled: true,
            require_dpop: false,
            require_pushed_authorization_requests: false,
            owner: Some("alice".into()),
        };
        let rule = |scope: &str, action: &str, secs: Option<u64>| RuleConfig {
            scope_any: vec![scope.into()],
            action: action.into(),
            approve_after_seconds: secs,
            ..Default::default()
        };
        Self {
            dev_mode: true,
            clients: vec![
                client("svc", "svc-secret", "client_secret_basic"),
                client("svc-post", "svc-post-secret", "client_secret_post"),
            ],
            users: vec![UserConfig {
                username: "alice".into(),
                password: "alice-password".into(),
            }],
            policy: vec![
                rule("payments", "review", None),
                rule("identity", "interaction", None),
                rule("reports", "approve_after", Some(10)),
            ],
            registration: RegistrationConfig {
                enabled: true,
                open: true,
                initial_access_token: None,
                scope: "read payments reports".into(),
                grant_types: vec![
                    dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS.into(),
                    dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE.into(),
                ],
            },
            ..Default::default()
        }
    }

    /// Applies overrides and validates everything.
    pub fn validate(self, o: &Overrides) -> Result<Config, ConfigError> {
        let listen_raw = o
            .listen
            .clone()
            .or(self.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_raw.parse().map_err(|_| {
            err(
                "listen",
                format!("'{listen_raw}' is not an address like 127.0.0.1:8080"),
            )
        })?;

        let issuer = match o.issuer.clone().or(self.issuer) {
            None => None,
            Some(i) => Some(validate_issuer(&i, self.dev_mode)?),
        };

        let db_raw = o
            .database
            .clone()
            .or(self.database)
            .unwrap_or_else(|| "sqlite://dtr-data/dtr.db".into());
        let database = parse_database(&db_raw)?;
        // Each node holds this many connections; PostgreSQL's default
        // `max_connections` is 100, shared by every node.
        let database_pool_size = self.database_pool_size.unwrap_or(10);
        if !(1..=1000).contains(&database_pool_size) {
            return Err(err("database_pool_size", "must be between 1 and 1000"));
        }

        let d = &self.deferral;
        if d.expires_in == 0 {
            return Err(err("deferral.expires_in", "must be at least 1 second"));
        }
        if d.interval == 0 {
            return Err(err("deferral.interval", "must be at least 1 second"));
        }
        if d.interval >= d.expires_in {
            return Err(err(
                "deferral.interval",
                "must be shorter than deferral.expires_in",
            ));
        }
        if self.tokens.access_token_ttl == 0 {
            return Err(err("tokens.access_token_ttl", "must be at least 1 second"));
        }
        if self.tokens.refresh_token_ttl == 0 {
            return Err(err("tokens.refresh_token_ttl", "must be at least 1 second"));
        }
        self.callbacks.validate()?;
        self.device.validate()?;
        self.registration.validate()?;
        self.http.validate()?;
        if self.dpop.iat_window == 0 || self.dpop.iat_window > 3600 {
            return Err(err("dpop.iat_window", "must be between 1 and 3600 seconds"));
        }
        if let Some(t) = &self.admin.token {
            if t.chars().count() < ADMIN_TOKEN_MIN_LEN {
                return Err(err(
                    "admin.token",
                    format!("must be at least {ADMIN_TOKEN_MIN_LEN} characters"),
                ));
            }
        }
        self.throttle.validate()?;

        let usernames: HashSet<String> = self.users.iter().map(|u| u.username.clone()).collect();
        let mut seen = HashSet::new();
        let mut clients = Vec::new();
        for (i, c) in self.clients.into_iter().enumerate() {
            let key = |k: &str| format!("clients[{i}].{k}");
            if c.client_id.is_empty()
                || !c
                    .client_id
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b':')
            {
                return Err(err(
                    &key("client_id"),
                    "must be non-empty printable ASCII without ':'",
                ));
            }
            if !seen.insert(c.client_id.clone()) {
                return Err(err(
                    &key("client_id"),
                    format!("duplicate client '{}'", c.client_id),
                ));
            }
            let method_raw = c.token_endpoint_auth_method.clone().unwrap_or_else(|| {
                if c.client_secret.is_some() {
                    "client_secret_basic"
                } else {
                    "none"
                }
                .to_owned()
            });
            let auth_method = AuthMethod::parse(&method_raw).ok_or_else(|| {
                err(
                    &key("token_endpoint_auth_method"),
                    format!("unknown method '{method_raw}'"),
                )
            })?;
            match (auth_method, c.client_secret.as_deref()) {
                (AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost, None) => {
                    return Err(err(
                        &key("client_secret"),
                        "required with a client_secret_* method",
                    ))
                }
                (AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost, Some(s))
                    if s.len() < 8 =>
                {
                    return Err(err(&key("client_secret"), "must be at least 8 characters"))
                }
                (AuthMethod::None | AuthMethod::PrivateKeyJwt, Some(_)) => {
                    return Err(err(
                        &key("client_secret"),
                        format!("not allowed with method '{method_raw}'"),
                    ))
                }
                (AuthMethod::PrivateKeyJwt, None) if c.jwks.is_none() && c.jwks_uri.is_none() => {
                    return Err(err(
                        &key("jwks"),
                        "required with private_key_jwt (or jwks_uri)",
                    ))
                }
                _ => {}
            }
            for g in &c.grant_types {
                if !SUPPORTED_GRANT_TYPES.contains(&g.as_str()) {
                    return Err(err(
                        &key("grant_types"),
                        format!("unsupported grant type '{g}'"),
                    ));
                }
            }
            let scope = Scope::parse(&c.scope).map_err(|e| err(&key("scope"), e))?;
            if c.jwks.is_some() && c.jwks_uri.is_some() {
                return Err(err(
                    &key("jwks_uri"),
                    "jwks and jwks_uri must not both be set (RFC 7591 section 2)",
                ));
            }
            let jwks = match c.jwks {
                None => None,
                Some(v) => {
                    let j = serde_json::to_value(v).map_err(|e| err(&key("jwks"), e))?;
                    if !j.get("keys").is_some_and(|k| k.is_array()) {
                        return Err(err(&key("jwks"), "must be a table with a `keys` array"));
                    }
                    Some(j)
                }
            };
            let jwks_uri = match c.jwks_uri.filter(|s| !s.is_empty()) {
                None => None,
                Some(u) => Some(
                    validate_https_or_dev(&u, self.dev_mode)
                        .map_err(|m| err(&key("jwks_uri"), m))?,
                ),
            };
            let notification_endpoint = match c
                .deferred_client_notification_endpoint
                .filter(|s| !s.is_empty())
            {
                None => None,
                Some(u) => Some(
                    validate_https_or_dev(&u, self.dev_mode)
                        .map_err(|m| err(&key("deferred_client_notification_endpoint"), m))?,
                ),
            };
            // The same rule as a registration's (RFC 9700 section 4.1,
            // RFC 8252 sections 7.1 and 7.3), whatever `dev_mode` says: a
            // dangerous redirect is dangerous in development too.
            for (j, r) in c.redirect_uris.iter().enumerate() {
                dtr_proto::redirect_uri::check(r)
                    .map_err(|e| err(&format!("clients[{i}].redirect_uris[{j}]"), e))?;
            }
            // An owner decides for the client: it must be someone who can
            // sign in, never a name a user could later take.
            if let Some(o) = &c.owner {
                if !usernames.contains(o) {
                    return Err(err(
                        &key("owner"),
                        format!("'{o}' is not a configured user"),
                    ));
                }
            }
            clients.push(StaticClient {
                client_id: c.client_id,
                client_secret: c.client_secret,
                auth_method,
                grant_types: c.grant_types,
                scope,
                redirect_uris: c.redirect_uris,
                jwks,
                jwks_uri,
                notification_endpoint,
                enabled: c.enabled,
                require_dpop: c.require_dpop,
                require_par: c.require_pushed_authorization_requests,
                owner: c.owner,
            });
        }

        let mut seen_users = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.username.is_empty() {
                return Err(err(&format!("users[{i}].username"), "must not be empty"));
            }
            if !seen_users.insert(u.username.clone()) {
                return Err(err(
                    &format!("users[{i}].username"),
                    format!("duplicate user '{}'", u.username),
                ));
            }
            if u.password.len() < 8 {
                return Err(err(
                    &format!("users[{i}].password"),
                    "must be at least 8 characters",
                ));
            }
        }

        let mut policy = Vec::new();
        for (i, r) in self.policy.iter().enumerate() {
            let rule = Rule::from_config(r)
                .map_err(|m| ConfigError(format!("config key `policy[{i}].{m}")))?;
            if let Some(g) = &r.grant_type {
                if !SUPPORTED_GRANT_TYPES.contains(&g.as_str()) {
                    return Err(err(
                        &format!("policy[{i}].grant_type"),
                        format!("unsupported grant type '{g}'"),
                    ));
                }
            }
            for (j, s) in r.scope_any.iter().enumerate() {
                if Scope::parse(s)
                    .map(|p| p.iter().count() != 1)
                    .unwrap_or(true)
                {
                    return Err(err(
                        &format!("policy[{i}].scope_any[{j}]"),
                        "must be one scope token",
                    ));
                }
            }
            policy.push(rule);
        }

        crate::token_policy::validate(&self.resource_servers, &self.token_exchange, &clients)?;

        Ok(Config {
            issuer,
            listen,
            database,
            database_pool_size,
            dev_mode: self.dev_mode,
            deferral: self.deferral,
            tokens: self.tokens,
            admin_token: self.admin.token,
            clients,
            users: self.users,
            policy,
            dpop: self.dpop,
            callbacks: self.callbacks,
            registration: self.registration,
            device: self.device,
            throttle: self.throttle,
            resource_servers: self.resource_servers,
            token_exchange: self.token_exchange,
            http: self.http,
        })
    }
}

fn is_loopback_host(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// The issuer: an https URL (RFC 8414 section 2) without query or fragment;
/// http is accepted for loopback hosts, where no network sees it, and
/// anywhere in `dev_mode`.
fn validate_issuer(raw: &str, dev_mode: bool) -> Result<String, ConfigError> {
    let u =
        url::Url::parse(raw).map_err(|e| err("issuer", format!("'{raw}' is not a URL: {e}")))?;
    if u.query().is_some() || u.fragment().is_some() {
        return Err(err(
            "issuer",
            "must not have a query or fragment (RFC 8414 section 2)",
        ));
    }
    match u.scheme() {
        "https" => {}
        "http" if dev_mode || is_loopback_host(&u) => {}
        _ => {
            return Err(err(
                "issuer",
                "must be https (http only on loopback or with dev_mode = true)",
            ))
        }
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// An outbound URL chosen by a client: https, or loopback http in dev mode
/// (DTR-25).
pub fn validate_https_or_dev(raw: &str, dev_mode: bool) -> Result<String, String> {
    crate::outbound::check_form(raw, dev_mode)
        .map(|_| raw.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_database(raw: &str) -> Result<DatabaseUrl, ConfigError> {
    if let Some(path) = raw.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(err("database", "sqlite:// needs a file path"));
        }
        return Ok(DatabaseUrl::Sqlite(path.into()));
    }
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        return Ok(DatabaseUrl::Postgres(raw.to_owned()));
    }
    Err(err(
        "database",
        format!("'{raw}' must start with sqlite:// or postgres://"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<Config, ConfigError> {
        ConfigFile::parse(text)?.validate(&Overrides::default())
    }

    fn msg(text: &str) -> String {
        validate(text).err().map(|e| e.0).unwrap_or_default()
    }

    #[test]
    fn design_example_is_valid() {
        let c = validate(
            r#"
issuer = "http://127.0.0.1:8080"
listen = "127.0.0.1:8080"
database = "sqlite://dtr-data/dtr.db"
dev_mode = false
[deferral]
expires_in = 600
interval = 5
slow_down_limit = 3
[tokens]
access_token_ttl = 3600
refresh_token_ttl = 86400
[admin]
token = "change-me-to-32-or-more-random-characters"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
token_endpoint_auth_method = "client_secret_basic"
grant_types = ["client_credentials"]
scope = "read write payments"
redirect_uris = []
jwks = { keys = [] }
deferred_client_notification_endpoint = ""
enabled = true
[[users]]
username = "alice"
password = "alice-password"
[[policy]]
scope_any = ["payments"]
action = "review"
"#,
        );
        let c = c.unwrap();
        assert_eq!(c.clients.len(), 1);
        assert_eq!(c.deferral.interval, 5);
        assert_eq!(c.policy.len(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        assert!(msg("bogus = 1").contains("bogus"));
        assert!(msg("[deferral]\ninterval = \"x\"").contains("deferral.interval"));
        assert!(msg("[deferral]\nexpires_in = 0").contains("deferral.expires_in"));
        assert!(msg("issuer = \"not a url\"").contains("issuer"));
        assert!(msg("issuer = \"http://example.com\"").contains("issuer"));
        assert!(msg("listen = \"nope\"").contains("listen"));
        assert!(msg("database = \"mysql://x\"").contains("database"));
        assert!(msg("database_pool_size = 0").contains("database_pool_size"));
        assert!(msg("database_pool_size = -3").contains("database_pool_size"));
        assert!(msg("[deferral]\nsurprise = 1").contains("surprise"));
        let dup = "[[clients]]\nclient_id=\"a\"\nclient_secret=\"12345678\"\n[[clients]]\nclient_id=\"a\"\nclient_secret=\"12345678\"\n";
        assert!(msg(dup).contains("clients[1].client_id"));
        let stranger =
            "[[clients]]\nclient_id=\"a\"\nclient_secret=\"12345678\"\nowner=\"mallory\"\n";
        assert!(msg(stranger).contains("clients[0].owner"));
        assert!(msg(
            "[[clients]]\nclient_id=\"a\"\ntoken_endpoint_auth_method=\"client_secret_post\""
        )
        .contains("clients[0].client_secret"));
        assert!(msg("[[policy]]\naction=\"maybe\"").contains("policy[0].action"));
        assert!(msg("[[policy]]\naction=\"review\"\nauthorization_details_match={ \"instructedAmount.amount\" = { over = 1 } }")
            .contains("policy[0].authorization_details_match.\"instructedAmount.amount\""));
        assert!(
            msg("[[policy]]\naction=\"approve_after\"").contains("policy[0].approve_after_seconds")
        );
        let cb = "[[clients]]\nclient_id=\"a\"\nclient_secret=\"12345678\"\ndeferred_client_notification_endpoint=\"http://example.com/cb\"";
        assert!(msg(cb).contains("deferred_client_notification_endpoint"));
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            listen: Some("127.0.0.1:0".into()),
            database: Some("sqlite://x.db".into()),
            issuer: None,
        };
        let c = ConfigFile::parse("listen = \"127.0.0.1:9\"")
            .unwrap()
            .validate(&o)
            .unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.database, DatabaseUrl::Sqlite("x.db".into()));
    }

    #[test]
    fn demo_is_valid() {
        let c = ConfigFile::demo().validate(&Overrides::default()).unwrap();
        assert!(c.dev_mode);
        assert_eq!(c.clients.len(), 2);
        assert!(c.registration.enabled && c.registration.open);
    }

    #[test]
    fn registration_is_closed_by_default_and_never_open_by_accident() {
        let c = validate("").unwrap();
        assert!(!c.registration.enabled);
        assert!(!c.registration.open);
        assert!(c.registration.allowed_scope().is_empty());
        assert_eq!(c.registration.allowed_grant_types().count(), 0);
        // On, with neither an initial access token nor open = true.
        assert!(msg("[registration]\nenabled = true").contains("registration.initial_access_token"));
        assert!(msg(
            "[registration]\nenabled = true\nopen = true\ninitial_access_token = \"0123456789abcdef\""
        )
        .contains("registration.open"));
        assert!(msg("[registration]\ninitial_access_token = \"short\"")
            .contains("registration.initial_access_token"));
        assert!(msg("[registration]\ngrant_types = [\"password\"]")
            .contains("registration.grant_types[0]"));
        assert!(msg("[registration]\nscope = \"a\\\\b\"").contains("registration.scope"));
        let on = validate(
            "[registration]\nenabled = true\ninitial_access_token = \"0123456789abcdef\"\n\
             scope = \"read\"\ngrant_types = [\"client_credentials\", \"urn:ietf:params:oauth:grant-type:deferred\"]",
        )
        .unwrap();
        assert_eq!(
            on.registration.allowed_grant_types().collect::<Vec<_>>(),
            ["client_credentials"]
        );
        assert!(!format!("{:?}", on.registration).contains("0123456789abcdef"));
    }

    #[test]
    fn configured_redirect_uris_obey_the_registration_rule() {
        let client = |uri: &str| {
            format!("[[clients]]\nclient_id = \"a\"\ntoken_endpoint_auth_method = \"none\"\nredirect_uris = [\"https://ok.example/cb\", \"{uri}\"]")
        };
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "http://app.example/cb",
            "https://u@app.example/cb",
            "https://app.example/cb#f",
            "myapp:/cb",
        ] {
            assert!(
                msg(&client(bad)).contains("clients[0].redirect_uris[1]"),
                "{bad}"
            );
        }
        for good in ["http://127.0.0.1:9/cb", "com.example.app:/cb"] {
            assert!(validate(&client(good)).is_ok(), "{good}");
        }
    }
}
