//! Server configuration: the TOML file of DESIGN.md, command-line
//! overrides, the built-in demo, and validation whose every error names the
//! offending key (exit code 2 at start-up).
//!
//! This file holds the file as a whole ([`ConfigFile`]), its validated form
//! ([`Config`]), the command-line [`Overrides`] and the entry points that
//! parse, load and validate; each section of the file has its own module
//! beside it, and everything is re-exported here.

mod admin;
mod authzen;
mod callbacks;
mod ciba;
mod clients;
mod database;
mod deferral;
mod device;
mod dpop;
mod http;
mod policy;
mod registration;
mod throttle;
mod token_policy;
mod tokens;
mod urls;
mod users;
mod webhooks;

pub use self::admin::{AdminConfig, ADMIN_TOKEN_MIN_LEN};
pub use self::authzen::AuthzenConfig;
pub use self::callbacks::CallbacksConfig;
pub use self::ciba::CibaConfig;
pub use self::clients::{oidc_client_metadata, AuthMethod, ClientConfig, StaticClient};
pub use self::database::DatabaseUrl;
pub use self::deferral::DeferralConfig;
pub use self::device::DeviceConfig;
pub use self::dpop::DpopConfig;
pub use self::http::HttpConfig;
pub use self::policy::RuleConfig;
pub use self::registration::RegistrationConfig;
pub use self::throttle::ThrottleConfig;
pub use self::token_policy::{ResourceServerConfig, TokenExchangeRule};
pub use self::tokens::TokensConfig;
pub use self::urls::validate_https_or_dev;
pub use self::users::UserConfig;
pub use self::webhooks::{WebhookConfig, WEBHOOK_SECRET_MIN_LEN};

use crate::policy::Rule;
use serde::Deserialize;
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
    pub device: DeviceConfig,
    /// Throttling of failed authentication and of registration, and the
    /// bound of the password hashing queue.
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// `[[resource_servers]]`: the only valid `audience` and `resource`
    /// values of a token exchange, each with the optional confidential
    /// client it introspects with (see [`crate::token_policy`]). None by
    /// default: then no exchange may name a target.
    #[serde(default)]
    pub resource_servers: Vec<ResourceServerConfig>,
    /// `[[token_exchange]]`: which client may exchange the tokens of which
    /// clients (`subject_clients`, `"*"` for any), for which resource
    /// servers (`audiences`). Without a rule a client exchanges only its
    /// own tokens and those addressed to it, and names no target.
    #[serde(default)]
    pub token_exchange: Vec<TokenExchangeRule>,
    /// Connection limits of the HTTP listener.
    #[serde(default)]
    pub http: HttpConfig,
    /// `[[authorization_details_types]]`: how reviewers may narrow RFC
    /// 9396 authorization details of each type (DTR-24).
    #[serde(default)]
    pub authorization_details_types: Vec<crate::policy::narrowing::DetailsTypeConfig>,
    /// `[[webhooks]]`: approver webhooks, each notified when a deferral
    /// lands in the queue of the group or user it watches.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// `[authzen]`: the AuthZEN PDP of `action = "authzen"` rules.
    #[serde(default)]
    pub authzen: Option<AuthzenConfig>,
    /// `[ciba]`: CIBA and the deferral bridge.
    #[serde(default)]
    pub ciba: CibaConfig,
}

/// Grant types this build can run as originating grants.
pub const SUPPORTED_GRANT_TYPES: &[&str] = &[
    dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS,
    dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE,
    dtr_proto::GRANT_TYPE_REFRESH_TOKEN,
    dtr_proto::GRANT_TYPE_DEVICE_CODE,
    dtr_proto::GRANT_TYPE_TOKEN_EXCHANGE,
    dtr_proto::GRANT_TYPE_CIBA,
];

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
    pub device: DeviceConfig,
    /// Throttling and the hashing queue bound.
    pub throttle: ThrottleConfig,
    /// Resource servers (`[[resource_servers]]`).
    pub resource_servers: Vec<ResourceServerConfig>,
    /// Token exchange rules (`[[token_exchange]]`).
    pub token_exchange: Vec<TokenExchangeRule>,
    /// Connection limits.
    pub http: HttpConfig,
    /// How reviewers may narrow authorization details, per type.
    pub narrowing: crate::policy::narrowing::NarrowingRules,
    /// Approver webhooks (validated; `approvers` canonical).
    pub webhooks: Vec<WebhookConfig>,
    /// The AuthZEN PDP (`[authzen]`), when configured.
    pub authzen: Option<AuthzenConfig>,
    /// CIBA settings.
    pub ciba: CibaConfig,
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
    /// an automatic approval after 10 seconds; svc may also send CIBA
    /// requests for alice. Registration is open, the
    /// one place where it is (the banner says so), and limited to what the
    /// walkthrough needs.
    pub fn demo() -> Self {
        let client = |id: &str, secret: &str, method: &str| ClientConfig {
            client_id: id.into(),
            client_secret: Some(secret.into()),
            token_endpoint_auth_method: Some(method.into()),
            grant_types: clients::default_grant_types(),
            scope: "read write payments identity reports".into(),
            redirect_uris: vec![],
            jwks: None,
            jwks_uri: None,
            deferred_client_notification_endpoint: None,
            enabled: true,
            require_dpop: false,
            require_pushed_authorization_requests: false,
            owner: Some("alice".into()),
            deferred_authorization_endpoint: false,
            require_signed_request_object: false,
            id_token_signed_response_alg: None,
            backchannel_token_delivery_mode: None,
            backchannel_client_notification_endpoint: None,
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
                // svc is also a CIBA client (poll mode): `dtr token --grant
                // ciba --login-hint alice`, alice approving at /ciba.
                ClientConfig {
                    grant_types: vec![
                        dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS.into(),
                        dtr_proto::GRANT_TYPE_CIBA.into(),
                    ],
                    scope: "openid read write payments identity reports".into(),
                    ..client("svc", "svc-secret", "client_secret_basic")
                },
                client("svc-post", "svc-post-secret", "client_secret_post"),
            ],
            users: vec![UserConfig {
                username: "alice".into(),
                password: "alice-password".into(),
                roles: vec![],
                groups: vec![],
                ..Default::default()
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
            Some(i) => Some(urls::validate_issuer(&i, self.dev_mode)?),
        };

        let db_raw = o
            .database
            .clone()
            .or(self.database)
            .unwrap_or_else(|| "sqlite://dtr-data/dtr.db".into());
        let database = database::parse_database(&db_raw)?;
        let database_pool_size = database::pool_size(self.database_pool_size)?;

        self.deferral.validate()?;
        self.tokens.validate()?;
        self.callbacks.validate()?;
        self.device.validate()?;
        self.registration.validate()?;
        self.http.validate()?;
        self.dpop.validate()?;
        self.admin.validate()?;
        self.throttle.validate()?;

        let clients = clients::validate_clients(self.clients, &self.users, self.dev_mode)?;
        users::validate_users(&self.users)?;

        let policy = policy::validate_policy(&self.policy)?;

        token_policy::validate(&self.resource_servers, &self.token_exchange, &clients)?;
        let narrowing =
            crate::policy::narrowing::NarrowingRules::new(&self.authorization_details_types)
                .map_err(ConfigError)?;
        let webhooks = webhooks::validate_webhooks(self.webhooks, self.dev_mode)?;
        let authzen = self
            .authzen
            .map(|a| a.validate(self.dev_mode))
            .transpose()?;
        if authzen.is_none() {
            if let Some(i) = policy
                .iter()
                .position(|r| r.action() == crate::policy::Action::Authzen)
            {
                return Err(err(
                    &format!("policy[{i}].action"),
                    "\"authzen\" needs an [authzen] section naming the PDP (pdp = \"https://...\")",
                ));
            }
        }

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
            narrowing,
            webhooks,
            authzen,
            ciba: self.ciba,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses and validates `text` without overrides.
    pub(super) fn validate(text: &str) -> Result<Config, ConfigError> {
        ConfigFile::parse(text)?.validate(&Overrides::default())
    }

    /// The error message of validating `text`, empty when it is valid.
    pub(super) fn msg(text: &str) -> String {
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
}
