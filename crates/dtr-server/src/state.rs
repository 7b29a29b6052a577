//! The shared server state: one `Clone` struct of `Arc`s handed to every
//! handler, and its construction from a validated configuration.

use crate::client_auth::ClientRegistry;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::TokenSigner;
use crate::policy::Policy;
use crate::store::{ClientRecord, Store};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

/// Handle to the server's state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What the handlers share.
pub struct Inner {
    /// Validated configuration.
    pub config: Config,
    /// The issuer identifier, without a trailing slash.
    pub issuer: String,
    /// The database.
    pub store: Arc<dyn Store>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Access token signer.
    pub signer: TokenSigner,
    /// Clients for authentication.
    pub clients: ClientRegistry,
    /// Deferral policy.
    pub policy: Policy,
    /// SHA-256 of the admin token; `None` disables the admin API.
    pub admin_token_sha256: Option<[u8; 32]>,
    /// Prometheus metrics of this server.
    pub metrics: crate::metrics::Metrics,
    /// Key of DPoP server nonces (shared by all nodes of one database).
    pub dpop_nonce_key: [u8; 32],
    /// Seals codes and notification tokens until their callback is done.
    pub seal_key: crate::sealed::SealKey,
    /// SSRF-safe client for URLs that clients chose (DTR-28).
    pub outbound: crate::outbound::SafeHttp,
    /// Wakes the callback sender when this node resolved a deferral.
    pub callback_wake: Arc<tokio::sync::Notify>,
    /// Clients' key sets fetched from their `jwks_uri`.
    pub jwks_cache: crate::outbound::JwksCache,
    /// Budgets of failed authentication and of registrations.
    pub throttle: crate::throttle::Throttle,
    /// The password hashing threads and their bounded queue.
    pub hashing: crate::password::HashPool,
    /// The AuthZEN PDP of `[authzen]`, when configured.
    pub pdp: Option<Arc<crate::pdp::Pdp>>,
    /// Wakes the ARAP task poller (a callback came, a code was revoked).
    pub authzen_wake: Arc<tokio::sync::Notify>,
    /// The RS256 key of ID tokens, read (or made) on first use: making an
    /// RSA key takes a prime search that a server which never issues an
    /// ID token should not pay at start-up.
    pub id_token_rsa: tokio::sync::OnceCell<crate::keys::RsaSigner>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A failure while building the state (exit code 2 at start-up).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);

impl AppState {
    /// Builds the state: writes configured clients to the store (secrets
    /// hashed), loads or creates the signing key, hashes user passwords.
    pub async fn build(
        config: Config,
        issuer: String,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        Self::build_with_resolver(
            config,
            issuer,
            store,
            clock,
            Arc::new(crate::outbound::SystemResolver),
        )
        .await
    }

    /// [`AppState::build`] with a chosen name resolver for outbound
    /// requests (tests control what hosts resolve to).
    pub async fn build_with_resolver(
        config: Config,
        issuer: String,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        resolver: Arc<dyn crate::outbound::Resolver>,
    ) -> Result<Self, StartupError> {
        let e = |m: String| StartupError(m);
        let hashing = crate::password::HashPool::per_core(config.throttle.hash_queue_per_thread);
        let cb = &config.callbacks;
        let extra_root_pem = match &cb.extra_root_ca {
            None => None,
            Some(p) => Some(
                std::fs::read(p)
                    .map_err(|x| e(format!("config key `callbacks.extra_root_ca`: {x}")))?,
            ),
        };
        let outbound = crate::outbound::SafeHttp::new(
            crate::outbound::OutboundConfig {
                dev_mode: config.dev_mode,
                connect_timeout: std::time::Duration::from_millis(cb.connect_timeout_ms),
                timeout: std::time::Duration::from_millis(cb.timeout_ms),
                max_body: 64 * 1024,
                extra_root_pem,
            },
            resolver,
        );
        // Static clients get the same endpoint checks as registered ones,
        // resolution included (DTR-28).
        for (i, c) in config.clients.iter().enumerate() {
            if let Some(uri) = &c.jwks_uri {
                outbound
                    .validate(uri)
                    .await
                    .map_err(|x| e(format!("config key `clients[{i}].jwks_uri`: {x}")))?;
            }
            if let Some(ep) = &c.notification_endpoint {
                outbound.validate(ep).await.map_err(|x| {
                    e(format!(
                        "config key `clients[{i}].deferred_client_notification_endpoint`: {x}"
                    ))
                })?;
            }
        }
        for c in &config.clients {
            let existing = store
                .get_client(&c.client_id)
                .await
                .map_err(|x| e(x.to_string()))?;
            // Keep the stored hash when it still matches, so a restart does
            // not rehash every secret.
            let secret_hash = match (
                &c.client_secret,
                existing.as_ref().and_then(|x| x.secret_hash.clone()),
            ) {
                (None, _) => None,
                (Some(s), Some(h))
                    if hashing
                        .verify(s.clone(), Some(h.clone()))
                        .await
                        .map_err(|x| e(x.to_string()))? =>
                {
                    Some(h)
                }
                (Some(s), _) => Some(hashing.hash(s.clone()).await.map_err(e)?),
            };
            let record = ClientRecord {
                client_id: c.client_id.clone(),
                secret_hash,
                auth_method: c.auth_method.as_str().to_owned(),
                grant_types: c.grant_types.clone(),
                scope: c.scope.to_string(),
                redirect_uris: c.redirect_uris.clone(),
                jwks: c.jwks.clone(),
                notification_endpoint: c.notification_endpoint.clone(),
                enabled: c.enabled,
                admin_disabled: existing.is_some_and(|x| x.admin_disabled),
                dpop_bound_access_tokens: c.require_dpop,
                registration_token_hash: None,
                metadata: (!c.oidc_metadata.is_empty())
                    .then(|| serde_json::Value::Object(c.oidc_metadata.clone())),
                require_par: c.require_par,
                deferred_authorization_endpoint: c.deferred_authorization_endpoint,
                require_signed_request_object: c.require_signed_request_object,
                jwks_uri: c.jwks_uri.clone(),
                owner: c.owner.clone(),
            };
            store
                .upsert_client(&record)
                .await
                .map_err(|x| e(x.to_string()))?;
        }
        let der = store
            .signing_key(&crate::keys::generate_pkcs8, clock.now_ms())
            .await
            .map_err(|x| e(x.to_string()))?;
        let signer = TokenSigner::from_pkcs8(&der).map_err(e)?;
        let clients = ClientRegistry::load(
            store.as_ref(),
            crate::generated_secret::SecretHashKey::derive(&der),
        )
        .await
        .map_err(|x| e(x.to_string()))?;
        let dpop_nonce_key = crate::dpop::nonce_key(&der);
        let seal_key = match config.callbacks.key_bytes() {
            Some(k) => crate::sealed::SealKey::from_bytes(&k),
            None => {
                let mut h = Sha256::new();
                h.update(b"dtr callback seal v1");
                h.update(&der);
                crate::sealed::SealKey::from_bytes(&h.finalize().into())
            }
        };

        sync_users(store.as_ref(), &config, &hashing)
            .await
            .map_err(e)?;
        let admin_token_sha256 = config
            .admin_token
            .as_ref()
            .map(|t| Sha256::digest(t.as_bytes()).into());
        let policy = Policy::new(config.policy.clone());
        let throttle = crate::throttle::Throttle::new(&config.throttle, clock.clone());
        let pdp = config
            .authzen
            .clone()
            .map(|a| Arc::new(crate::pdp::Pdp::new(a, &outbound, clock.clone())));
        Ok(Self(Arc::new(Inner {
            config,
            issuer,
            store,
            clock,
            signer,
            clients,
            policy,
            admin_token_sha256,
            dpop_nonce_key,
            seal_key,
            outbound,
            callback_wake: Arc::new(tokio::sync::Notify::new()),
            jwks_cache: crate::outbound::JwksCache::default(),
            metrics: crate::metrics::Metrics::new(),
            throttle,
            hashing,
            pdp,
            authzen_wake: Arc::new(tokio::sync::Notify::new()),
            id_token_rsa: tokio::sync::OnceCell::new(),
        })))
    }

    /// The RS256 ID token key of this database: made once, off the async
    /// runtime, by whichever node needs it first; every node then reads
    /// the one stored.
    pub async fn rsa_signer(&self) -> Result<&crate::keys::RsaSigner, crate::error::Error> {
        use crate::error::Error;
        self.id_token_rsa
            .get_or_try_init(|| async {
                let now = self.clock.now_ms();
                let der = match self.store.id_token_key("RS256", None, now).await? {
                    Some(der) => der,
                    None => {
                        let candidate =
                            tokio::task::spawn_blocking(crate::keys::generate_rsa_pkcs8)
                                .await
                                .map_err(Error::internal)?;
                        self.store
                            .id_token_key("RS256", Some(candidate), now)
                            .await?
                            .ok_or_else(|| Error::internal("ID token key vanished after insert"))?
                    }
                };
                crate::keys::RsaSigner::from_pkcs8(&der).map_err(Error::internal)
            })
            .await
    }

    /// What authenticating the client of a request reads (see
    /// [`crate::client_auth`]).
    pub fn client_auth(&self) -> crate::client_auth::Authenticator<'_> {
        crate::client_auth::Authenticator {
            clients: &self.clients,
            store: self.store.as_ref(),
            hashing: &self.hashing,
            throttle: &self.throttle,
            issuer: &self.issuer,
            clock: self.clock.as_ref(),
            outbound: &self.outbound,
            jwks_cache: &self.jwks_cache,
        }
    }

    /// What DPoP checks at this server's endpoints read (see
    /// [`crate::dpop`]).
    pub fn dpop(&self) -> crate::dpop::Verifier<'_> {
        crate::dpop::Verifier {
            config: &self.config.dpop,
            nonce_key: &self.dpop_nonce_key,
            issuer: &self.issuer,
            clock: self.clock.as_ref(),
            store: self.store.as_ref(),
        }
    }

    /// Verifies a user's password against the store; unknown and disabled
    /// users fail, and take as long. Throttled per user and source address
    /// (see [`crate::throttle`]): over budget is refused without hashing,
    /// and a full hashing queue is [`crate::password::Overloaded`], never a
    /// wrong password.
    pub async fn verify_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Result<bool, SignInFault>, crate::throttle::Refused> {
        use crate::throttle::{Attempt, Outcome};
        let verify = async {
            // A store failure is a fault, never "wrong password".
            let user = self
                .store
                .get_user(username)
                .await
                .map_err(SignInFault::Store)?;
            let active = user.as_ref().is_some_and(|u| u.is_active());
            let ok = self
                .hashing
                .verify(password.to_owned(), user.map(|u| u.password_hash))
                .await
                .map_err(|_| SignInFault::Overloaded)?;
            Ok(ok && active)
        };
        self.throttle
            .guard(
                Attempt::User(username),
                crate::throttle::source(),
                verify,
                |r| match r {
                    Ok(true) => Outcome::Success,
                    Ok(false) => Outcome::Failure,
                    Err(_) => Outcome::Undecided,
                },
            )
            .await
    }
}

/// Why a sign-in could not be checked: the server, not the password.
#[derive(Debug, thiserror::Error)]
pub enum SignInFault {
    /// The password hashing queue is full (shed, retry in a moment).
    #[error("the password hashing queue is full")]
    Overloaded,
    /// The store failed.
    #[error(transparent)]
    Store(crate::store::StoreError),
}

/// Writes the configured users to the store (passwords hashed, the stored
/// hash kept when it still matches so a restart does not rehash; roles,
/// groups and claims as configured), and disables stored users the
/// configuration no longer lists (their personal tokens and console
/// sessions then authenticate nobody). An admin's
/// `admin_disabled` is kept either way (DTR-23).
async fn sync_users(
    store: &dyn crate::store::Store,
    config: &Config,
    hashing: &crate::password::HashPool,
) -> Result<(), String> {
    let existing: HashMap<String, crate::store::UserRecord> = store
        .list_users()
        .await
        .map_err(|x| x.to_string())?
        .into_iter()
        .map(|u| (u.username.clone(), u))
        .collect();
    for u in &config.users {
        let password_hash = match existing.get(&u.username) {
            Some(old)
                if hashing
                    .verify(u.password.clone(), Some(old.password_hash.clone()))
                    .await
                    .map_err(|x| x.to_string())? =>
            {
                old.password_hash.clone()
            }
            _ => hashing.hash(u.password.clone()).await?,
        };
        store
            .upsert_user(&crate::store::UserRecord {
                username: u.username.clone(),
                password_hash,
                enabled: true,
                admin_disabled: false,
                roles: u.roles.clone(),
                groups: u.groups.clone(),
                name: u.name.clone(),
                email: u.email.clone(),
            })
            .await
            .map_err(|x| x.to_string())?;
    }
    for (name, old) in existing {
        if old.enabled && !config.users.iter().any(|u| u.username == name) {
            store
                .upsert_user(&crate::store::UserRecord {
                    enabled: false,
                    ..old
                })
                .await
                .map_err(|x| x.to_string())?;
        }
    }
    Ok(())
}
