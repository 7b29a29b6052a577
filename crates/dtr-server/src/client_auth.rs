//! Client authentication at the token, revocation and introspection
//! endpoints (OAuth 2.1 section 2.4): `client_secret_basic`,
//! `client_secret_post` and `none`.
//!
//! Secrets are stored as Argon2id hashes. Because a poll may come every few
//! seconds from thousands of clients, a successful verification is
//! remembered as the SHA-256 of the secret, compared in constant time, so
//! the slow hash runs once per client and process, not once per request.

use crate::clock::Clock;
use crate::config::AuthMethod;
use crate::outbound::{JwksCache, SafeHttp};
use crate::password::HashPool;
use crate::store::{ClientRecord, Store};
use crate::throttle::Throttle;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use dtr_proto::params::Params;
use dtr_proto::secret::ct_eq;
use dtr_proto::{ErrorCode, OAuthError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Credentials as presented in one request, before verification.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    /// HTTP Basic.
    Basic {
        /// Client id.
        client_id: String,
        /// Secret.
        secret: String,
    },
    /// `client_id` and `client_secret` in the body.
    Post {
        /// Client id.
        client_id: String,
        /// Secret.
        secret: String,
    },
    /// Only `client_id` (public client).
    None {
        /// Client id.
        client_id: String,
    },
    /// A signed JWT (`private_key_jwt`, RFC 7523 section 2.2).
    Assertion {
        /// Client id (from the body, else the assertion's `iss`).
        client_id: String,
        /// The JWT.
        assertion: String,
    },
}

impl Presented {
    /// The client the credentials claim to be.
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. }
            | Self::Post { client_id, .. }
            | Self::None { client_id }
            | Self::Assertion { client_id, .. } => client_id,
        }
    }
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { client_id, .. } => write!(f, "Basic({client_id}, [redacted])"),
            Self::Post { client_id, .. } => write!(f, "Post({client_id}, [redacted])"),
            Self::None { client_id } => write!(f, "None({client_id})"),
            Self::Assertion { client_id, .. } => write!(f, "Assertion({client_id}, [redacted])"),
        }
    }
}

fn invalid_client(msg: &str) -> OAuthError {
    OAuthError::with_description(ErrorCode::InvalidClient, msg)
}

/// A full hashing queue: 503 `temporarily_unavailable` (OAuth 2.1 section
/// 4.1.2.1) with `Retry-After`, never taken for a wrong secret.
fn overloaded(_: crate::password::Overloaded) -> OAuthError {
    OAuthError::with_description(
        ErrorCode::TemporarilyUnavailable,
        "the server is busy; retry later",
    )
    .with_retry_after(crate::password::OVERLOADED_RETRY_AFTER_SECS)
}

/// Extracts the presented credentials from the `Authorization` header and
/// the body. Using more than one method is `invalid_request` (OAuth 2.1
/// section 2.4); none at all is `invalid_client`.
pub fn presented(authorization: Option<&str>, p: &Params) -> Result<Presented, OAuthError> {
    if p.contains("client_assertion") || p.contains("client_assertion_type") {
        if authorization.is_some() || p.contains("client_secret") {
            return Err(OAuthError::invalid_request(
                "client authenticated with more than one method",
            ));
        }
        if p.get("client_assertion_type") != Some(crate::client_assertion::JWT_BEARER) {
            return Err(invalid_client("client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
        }
        let assertion = p.require("client_assertion")?;
        let claimed = crate::client_assertion::claimed_client(assertion);
        let client_id = match (p.get("client_id"), claimed) {
            (Some(body), Some(iss)) if body != iss => {
                return Err(invalid_client(
                    "client_id differs from the client assertion's issuer",
                ))
            }
            (_, Some(iss)) => iss,
            _ => return Err(invalid_client("malformed client assertion")),
        };
        return Ok(Presented::Assertion {
            client_id,
            assertion: assertion.to_owned(),
        });
    }
    if let Some(h) = authorization {
        let Some(b64) = h
            .strip_prefix("Basic ")
            .or_else(|| h.strip_prefix("basic "))
        else {
            return Err(invalid_client(
                "unsupported Authorization scheme at this endpoint",
            ));
        };
        if p.contains("client_secret") {
            return Err(OAuthError::invalid_request(
                "client authenticated with more than one method",
            ));
        }
        let raw = STANDARD
            .decode(b64.trim())
            .map_err(|_| invalid_client("malformed Basic credentials"))?;
        let raw =
            String::from_utf8(raw).map_err(|_| invalid_client("malformed Basic credentials"))?;
        let (id, secret) = raw
            .split_once(':')
            .ok_or_else(|| invalid_client("malformed Basic credentials"))?;
        // RFC 6749 section 2.3.1: both parts are form-urlencoded first.
        let id = url_decode(id).ok_or_else(|| invalid_client("malformed Basic credentials"))?;
        let secret =
            url_decode(secret).ok_or_else(|| invalid_client("malformed Basic credentials"))?;
        if let Some(body_id) = p.get("client_id") {
            if body_id != id {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the Basic credentials",
                ));
            }
        }
        return Ok(Presented::Basic {
            client_id: id,
            secret,
        });
    }
    let Some(client_id) = p.get("client_id") else {
        return Err(invalid_client("client authentication required"));
    };
    Ok(match p.get("client_secret") {
        Some(s) => Presented::Post {
            client_id: client_id.to_owned(),
            secret: s.to_owned(),
        },
        None => Presented::None {
            client_id: client_id.to_owned(),
        },
    })
}

/// What authenticating the client of a request reads: the registry, the
/// store (the registry's freshness, single use of assertion `jti`s), the
/// hashing pool, the throttle, the issuer (the audiences an assertion may
/// name), the clock, and the key sets of clients that publish a
/// `jwks_uri` with the SSRF-safe client that fetches them. The state hands
/// one out ([`crate::state::AppState::client_auth`]).
#[derive(Clone, Copy)]
pub struct Authenticator<'a> {
    /// The registry of clients.
    pub clients: &'a ClientRegistry,
    /// The database.
    pub store: &'a dyn Store,
    /// The password hashing threads and their bounded queue.
    pub hashing: &'a HashPool,
    /// Budgets of failed authentication.
    pub throttle: &'a Throttle,
    /// The issuer identifier, without a trailing slash.
    pub issuer: &'a str,
    /// The clock.
    pub clock: &'a dyn Clock,
    /// SSRF-safe client for URLs that clients chose (DTR-28).
    pub outbound: &'a SafeHttp,
    /// Clients' key sets fetched from their `jwks_uri`.
    pub jwks_cache: &'a JwksCache,
}

impl Authenticator<'_> {
    /// Authenticates the client of a request at `endpoint` (a path of
    /// [`dtr_proto::paths`]): secrets through the registry, assertions with
    /// the client's keys and a single-use `jti` kept in the store.
    pub async fn authenticate(
        &self,
        headers: &axum::http::HeaderMap,
        params: &Params,
        endpoint: &str,
    ) -> Result<Arc<ClientRecord>, crate::error::Error> {
        let auth = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let presented = presented(auth, params)?;
        // Failed authentication is throttled per client id and source address
        // (see `throttle` for the budgets and why the answer is
        // `invalid_client` with `Retry-After`).
        use crate::throttle::{Attempt, Outcome};
        let attempt = Attempt::Client(presented.client_id());
        let from = crate::throttle::source();
        let verified = self
            .throttle
            .guard(
                attempt,
                from,
                self.verify_presented(&presented, endpoint),
                |r| match r {
                    Ok(_) => Outcome::Success,
                    Err(crate::error::Error::OAuth(e)) if e.error == ErrorCode::InvalidClient => {
                        Outcome::Failure
                    }
                    Err(_) => Outcome::Undecided,
                },
            )
            .await;
        match verified {
            Ok(result) => result,
            Err(refused) => {
                // Credentials this node already verified (or is verifying for
                // a concurrent request) cost no hash: let them through, so
                // wrong secrets sent under a client's id do not lock the real
                // client out, nor does a burst of its own first requests.
                self.clients
                    .ensure_fresh(self.store, presented.client_id())
                    .await?;
                match self
                    .clients
                    .verified_or_in_flight(&presented, self.hashing)
                    .await
                {
                    Some(c) => Ok(c),
                    None => Err(invalid_client(
                        "too many failed authentication attempts; retry later",
                    )
                    .with_retry_after(refused.answered())
                    .into()),
                }
            }
        }
    }

    /// [`Self::authenticate`] without the throttle.
    async fn verify_presented(
        &self,
        presented: &Presented,
        endpoint: &str,
    ) -> Result<Arc<ClientRecord>, crate::error::Error> {
        self.clients
            .ensure_fresh(self.store, presented.client_id())
            .await?;
        let Presented::Assertion {
            client_id,
            assertion,
        } = presented
        else {
            return self.clients.authenticate(presented, self.hashing).await;
        };
        let failed = |why: &str| {
            tracing::info!(client = %client_id, reason = why, "client assertion refused");
            invalid_client("client authentication failed")
        };
        let client = self
            .clients
            .get(client_id)
            .ok_or_else(|| failed("unknown client"))?;
        if AuthMethod::parse(&client.auth_method) != Some(AuthMethod::PrivateKeyJwt) {
            return Err(failed("client is not registered for private_key_jwt").into());
        }
        // RFC 7523 section 3 point 3: the audience identifies this server. We
        // accept the issuer (draft-ietf-oauth-rfc7523bis prefers it), the
        // token endpoint URL (what clients send today) and the URL of the
        // endpoint being called (RFC 9126 section 2 names the PAR endpoint's;
        // revocation and introspection take the same assertions), alone or in
        // an array of only these (see `client_assertion::verify`).
        let audiences = vec![
            self.issuer.to_owned(),
            format!("{}{}", self.issuer, dtr_proto::paths::TOKEN),
            format!("{}{}", self.issuer, endpoint),
        ];
        let now_ms = self.clock.now_ms();
        let verified = self
            .with_client_keys(&client, |jwks| {
                crate::client_assertion::verify(assertion, jwks, &audiences, now_ms / 1000)
            })
            .await
            .map_err(|e| failed(&e))?;
        if !self
            .first_use(
                "assertion",
                &verified.client_id,
                &verified.jti,
                verified.exp,
            )
            .await?
        {
            return Err(failed("client assertion jti reused").into());
        }
        Ok(client)
    }

    /// Runs `verify` with the client's keys: its `jwks`, or the key set at
    /// its `jwks_uri`, fetched SSRF-safely and cached; a failure there may
    /// be a rotation, so it is tried once more with a fresh copy. Client
    /// assertions and request objects (RFC 9101) are verified through it.
    pub async fn with_client_keys<T>(
        &self,
        client: &ClientRecord,
        verify: impl Fn(&serde_json::Value) -> Result<T, String>,
    ) -> Result<T, String> {
        match (&client.jwks, &client.jwks_uri) {
            (Some(jwks), _) => verify(jwks),
            (None, Some(uri)) => {
                let fetch = |refresh| self.jwks_cache.get(self.outbound, uri, refresh);
                let jwks = fetch(false).await.map_err(|e| format!("jwks_uri: {e}"))?;
                match verify(&jwks) {
                    Ok(v) => Ok(v),
                    Err(_) => {
                        let jwks = fetch(true).await.map_err(|e| format!("jwks_uri: {e}"))?;
                        verify(&jwks)
                    }
                }
            }
            (None, None) => Err("client has no keys".into()),
        }
    }

    /// Records the single use of a signed JWT's `jti` (`kind` keeps client
    /// assertions and request objects apart) until shortly after its
    /// expiry `exp` (seconds); `false` when it was used before.
    pub async fn first_use(
        &self,
        kind: &str,
        client_id: &str,
        jti: &str,
        exp: i64,
    ) -> Result<bool, crate::store::StoreError> {
        let key = dtr_proto::secret::sha256_b64(&format!("{kind}\n{client_id}\n{jti}"));
        self.store
            .use_once(&key, (exp + 60) * 1000, self.clock.now_ms())
            .await
    }
}

/// Whether a presented method satisfies the registered one.
fn same_kind(registered: AuthMethod, presented: AuthMethod) -> bool {
    use AuthMethod::*;
    matches!(
        (registered, presented),
        (
            ClientSecretBasic | ClientSecretPost,
            ClientSecretBasic | ClientSecretPost
        )
    ) || registered == presented
}

fn url_decode(s: &str) -> Option<String> {
    let p = Params::parse_form(format!("v={s}").as_bytes()).ok()?;
    Some(p.get("v").unwrap_or_default().to_owned())
}

/// The registry of clients, read from the store at start-up and kept in
/// memory for authentication. Decisions that must be fresh across nodes
/// (client still enabled when a deferral is redeemed, DTR-23) read the
/// store directly.
pub struct ClientRegistry {
    clients: RwLock<HashMap<String, (Arc<ClientRecord>, Instant)>>,
    /// SHA-256 of the secret last verified per client: Argon2 runs once
    /// per client and secret, not once per request.
    verified: Arc<RwLock<HashMap<String, [u8; 32]>>>,
    /// Verifications in progress, per client id and secret digest: a
    /// burst of requests with the same credentials (a client's first ones
    /// on this node) waits for one Argon2 run instead of queueing one each
    /// on the bounded hashing queue, where they would be shed.
    in_flight: InFlight,
    /// Key of the keyed hashes of generated (registered) client secrets.
    generated: crate::generated_secret::SecretHashKey,
}

/// One verification that concurrent requests with the same credentials
/// share.
type VerifyOnce = tokio::sync::OnceCell<Result<bool, crate::password::Overloaded>>;

/// Shared verifications by client id and SHA-256 of the secret.
type InFlight = std::sync::Mutex<HashMap<(String, [u8; 32]), Arc<VerifyOnce>>>;

/// Whether `digest` is the SHA-256 of the secret last verified for
/// `client_id` (compared in constant time).
fn cache_holds(
    verified: &RwLock<HashMap<String, [u8; 32]>>,
    client_id: &str,
    digest: &[u8; 32],
) -> bool {
    verified
        .read()
        .ok()
        .and_then(|m| m.get(client_id).copied())
        .is_some_and(|d| ct_eq(&d, digest))
}

/// How long a cached client is trusted before it is read again: a client
/// registered, changed or deleted on another node is seen here within
/// this time.
const CLIENT_CACHE_TTL: Duration = Duration::from_secs(10);

impl ClientRegistry {
    /// Loads every client from the store; `generated` verifies the
    /// secrets the server generated at registration.
    pub async fn load(
        store: &dyn Store,
        generated: crate::generated_secret::SecretHashKey,
    ) -> Result<Self, crate::store::StoreError> {
        let all = store.list_clients().await?;
        Ok(Self {
            clients: RwLock::new(
                all.into_iter()
                    .map(|c| (c.client_id.clone(), (Arc::new(c), Instant::now())))
                    .collect(),
            ),
            verified: Arc::new(RwLock::new(HashMap::new())),
            in_flight: std::sync::Mutex::new(HashMap::new()),
            generated,
        })
    }

    /// The stored form of a secret generated for a registered client
    /// (module `generated_secret`).
    pub fn hash_generated(
        &self,
        client_id: &str,
        secret: &dtr_proto::secret::ClientSecret,
    ) -> String {
        self.generated.hash(client_id, secret)
    }

    /// Replaces one client's record (after an admin change or a
    /// registration update). A changed secret forgets the verified one.
    pub fn refresh(&self, c: ClientRecord) {
        if let Ok(mut m) = self.clients.write() {
            let changed = m
                .get(&c.client_id)
                .is_none_or(|(old, _)| old.secret_hash != c.secret_hash);
            if changed {
                if let Ok(mut v) = self.verified.write() {
                    v.remove(&c.client_id);
                }
            }
            m.insert(c.client_id.clone(), (Arc::new(c), Instant::now()));
        }
    }

    /// Forgets a deleted client.
    pub fn remove(&self, client_id: &str) {
        if let Ok(mut m) = self.clients.write() {
            m.remove(client_id);
        }
        if let Ok(mut v) = self.verified.write() {
            v.remove(client_id);
        }
    }

    /// One client.
    pub fn get(&self, client_id: &str) -> Option<Arc<ClientRecord>> {
        self.clients
            .read()
            .ok()?
            .get(client_id)
            .map(|(c, _)| c.clone())
    }

    /// Reads a client from the store when it is not cached or its cache
    /// entry is older than [`CLIENT_CACHE_TTL`], so that clients registered,
    /// changed or deleted through another node are seen here too.
    pub async fn ensure_fresh(
        &self,
        store: &dyn Store,
        client_id: &str,
    ) -> Result<(), crate::store::StoreError> {
        let fresh = self
            .clients
            .read()
            .ok()
            .and_then(|m| {
                m.get(client_id)
                    .map(|(_, at)| at.elapsed() < CLIENT_CACHE_TTL)
            })
            .unwrap_or(false);
        if fresh {
            return Ok(());
        }
        match store.get_client(client_id).await? {
            Some(c) => self.refresh(c),
            None => self.remove(client_id),
        }
        Ok(())
    }

    /// Whether `secret` matches the generated secret's keyed hash of `c`,
    /// or `None` when `c`'s secret is not a generated one (an Argon2 hash).
    /// A keyed hash is checked in constant time, never on the Argon2 pool.
    fn generated_match(&self, c: &ClientRecord, secret: &str) -> Option<bool> {
        let stored = c
            .secret_hash
            .as_deref()
            .filter(|h| crate::generated_secret::is_keyed(h))?;
        Some(self.generated.verify(&c.client_id, secret, stored))
    }

    /// Runs the verification `once` shared by the requests presenting these
    /// credentials (or waits for it when it is under way), and caches a
    /// success before returning, so a request that waited on it finds it.
    /// When the hash's turn comes the cache is asked first: a verification
    /// that just finished elsewhere is not repeated.
    async fn verify_shared(
        &self,
        once: &VerifyOnce,
        c: &ClientRecord,
        secret: &str,
        digest: [u8; 32],
        hashing: &crate::password::HashPool,
    ) -> Result<bool, crate::password::Overloaded> {
        let verified = self.verified.clone();
        let id = c.client_id.clone();
        let cached = move || cache_holds(&verified, &id, &digest);
        let outcome = *once
            .get_or_init(|| hashing.verify_unless(secret.to_owned(), c.secret_hash.clone(), cached))
            .await;
        if outcome == Ok(true) {
            if let Ok(mut m) = self.verified.write() {
                m.insert(c.client_id.clone(), digest);
            }
        }
        outcome
    }

    /// The client, when `presented` is a secret this node has already
    /// verified for it (a SHA-256 comparison in constant time), or a
    /// generated secret matching its keyed hash: a check without Argon2.
    pub fn already_verified(&self, presented: &Presented) -> Option<Arc<ClientRecord>> {
        let (client_id, secret, method) = match presented {
            Presented::Basic { client_id, secret } => {
                (client_id, secret, AuthMethod::ClientSecretBasic)
            }
            Presented::Post { client_id, secret } => {
                (client_id, secret, AuthMethod::ClientSecretPost)
            }
            Presented::None { .. } | Presented::Assertion { .. } => return None,
        };
        let c = self.get(client_id)?;
        if !AuthMethod::parse(&c.auth_method).is_some_and(|r| same_kind(r, method)) {
            return None;
        }
        if let Some(ok) = self.generated_match(&c, secret) {
            return ok.then_some(c);
        }
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        cache_holds(&self.verified, client_id, &digest).then_some(c)
    }

    /// [`ClientRegistry::already_verified`], after waiting for a
    /// verification of the same credentials that is in progress: a request
    /// refused by the throttle (whose cells the concurrent attempts hold)
    /// rides on it instead of failing while its twin is being hashed.
    pub async fn verified_or_in_flight(
        &self,
        presented: &Presented,
        hashing: &crate::password::HashPool,
    ) -> Option<Arc<ClientRecord>> {
        if let Presented::Basic { client_id, secret } | Presented::Post { client_id, secret } =
            presented
        {
            let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
            let once = self
                .in_flight
                .lock()
                .ok()
                .and_then(|m| m.get(&(client_id.clone(), digest)).cloned());
            if let (Some(once), Some(c)) = (once, self.get(client_id)) {
                // Should it not have started yet, this runs it: the same
                // credentials, one hash.
                let _ = self.verify_shared(&once, &c, secret, digest, hashing).await;
            }
        }
        self.already_verified(presented)
    }

    /// Verifies presented credentials. Every failure is the same
    /// `invalid_client` (answered 401 with `WWW-Authenticate`), so callers
    /// cannot tell an unknown client from a wrong secret.
    pub async fn authenticate(
        &self,
        presented: &Presented,
        hashing: &crate::password::HashPool,
    ) -> Result<Arc<ClientRecord>, crate::error::Error> {
        let failed = || invalid_client("client authentication failed");
        let (client_id, secret, method) = match presented {
            Presented::Basic { client_id, secret } => {
                (client_id, Some(secret), AuthMethod::ClientSecretBasic)
            }
            Presented::Post { client_id, secret } => {
                (client_id, Some(secret), AuthMethod::ClientSecretPost)
            }
            Presented::None { client_id } => (client_id, None, AuthMethod::None),
            // Assertions need the store (single-use jti): see `authenticate`.
            Presented::Assertion { .. } => return Err(failed().into()),
        };
        let client = self.get(client_id);
        let registered = client
            .as_ref()
            .and_then(|c| AuthMethod::parse(&c.auth_method));
        match (secret, client) {
            (None, Some(c)) if registered == Some(AuthMethod::None) => Ok(c),
            (None, _) => Err(failed().into()),
            // Either secret method is accepted for a client with a secret:
            // both carry the same secret over the same TLS channel (OAuth
            // 2.1 section 2.4.1), and refusing one would only break clients
            // that chose the other. `none` and private_key_jwt stay exact.
            (Some(secret), Some(c)) if registered.is_some_and(|r| same_kind(r, method)) => {
                // A secret the server generated: its keyed hash is checked
                // at once. This answers a wrong secret faster than an
                // unknown client id (which spends an Argon2 run below); that
                // tells only that a registered id exists, and client ids are
                // not secrets (RFC 6749 section 2.2), registered ones being
                // 96 random bits besides.
                if let Some(ok) = self.generated_match(&c, secret) {
                    return if ok { Ok(c) } else { Err(failed().into()) };
                }
                let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
                if cache_holds(&self.verified, client_id, &digest) {
                    return Ok(c);
                }
                // Concurrent requests with these credentials share one
                // verification.
                let key = (client_id.clone(), digest);
                let once = self
                    .in_flight
                    .lock()
                    .map(|mut m| m.entry(key.clone()).or_default().clone())
                    .unwrap_or_default();
                let outcome = self.verify_shared(&once, &c, secret, digest, hashing).await;
                if let Ok(mut m) = self.in_flight.lock() {
                    if m.get(&key).is_some_and(|o| Arc::ptr_eq(o, &once)) {
                        m.remove(&key);
                    }
                }
                if outcome.map_err(overloaded)? {
                    Ok(c)
                } else {
                    Err(failed().into())
                }
            }
            (Some(secret), _) => {
                // Unknown client or wrong method: spend the same time.
                hashing
                    .verify(secret.clone(), None)
                    .await
                    .map_err(overloaded)?;
                Err(failed().into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn basic_is_decoded_with_form_encoding() {
        // RFC 6749 section 2.3.1: "a b" / "p:w" are form-encoded before base64.
        let h = format!("Basic {}", STANDARD.encode("a+b:p%3Aw"));
        let p = presented(Some(&h), &params(&[])).unwrap();
        assert_eq!(
            p,
            Presented::Basic {
                client_id: "a b".into(),
                secret: "p:w".into()
            }
        );
    }

    #[test]
    fn two_methods_are_refused() {
        let h = format!("Basic {}", STANDARD.encode("a:b"));
        let e = presented(Some(&h), &params(&[("client_secret", "x")])).unwrap_err();
        assert_eq!(e.error, ErrorCode::InvalidRequest);
    }

    #[test]
    fn nothing_presented_is_invalid_client() {
        assert_eq!(
            presented(None, &params(&[])).unwrap_err().error,
            ErrorCode::InvalidClient
        );
        assert_eq!(
            presented(Some("Bearer x"), &params(&[])).unwrap_err().error,
            ErrorCode::InvalidClient
        );
        assert_eq!(
            presented(Some("Basic !!!"), &params(&[]))
                .unwrap_err()
                .error,
            ErrorCode::InvalidClient
        );
    }

    #[test]
    fn post_and_none() {
        let p = presented(None, &params(&[("client_id", "c"), ("client_secret", "s")])).unwrap();
        assert_eq!(
            p,
            Presented::Post {
                client_id: "c".into(),
                secret: "s".into()
            }
        );
        let p = presented(None, &params(&[("client_id", "c")])).unwrap();
        assert_eq!(
            p,
            Presented::None {
                client_id: "c".into()
            }
        );
        assert!(!format!(
            "{:?}",
            Presented::Post {
                client_id: "c".into(),
                secret: "hunter2".into()
            }
        )
        .contains("hunter2"));
    }
}
