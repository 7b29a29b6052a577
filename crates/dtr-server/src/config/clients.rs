//! `[[clients]]`: statically configured clients as written
//! ([`ClientConfig`]), their authentication methods ([`AuthMethod`]) and
//! their validated form ([`StaticClient`]).

use super::urls::validate_https_or_dev;
use super::{err, ConfigError, UserConfig, SUPPORTED_GRANT_TYPES};
use dtr_proto::scope::Scope;
use serde::Deserialize;
use std::collections::HashSet;

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
    /// Opts in to deferral at the authorization endpoint: a deferred
    /// request's redirect carries `deferral_code` instead of `code`.
    #[serde(default)]
    pub deferred_authorization_endpoint: bool,
    /// RFC 9101 section 10.5: authorization requests (front channel and
    /// PAR) must be signed request objects.
    #[serde(default)]
    pub require_signed_request_object: bool,
    /// OpenID Connect Registration 1.0 section 2: the JWS algorithm of
    /// this client's ID tokens, `RS256` (the default) or `ES256`.
    #[serde(default)]
    pub id_token_signed_response_alg: Option<String>,
    /// OpenID CIBA Core 1.0 section 4: `poll`, `ping` or `push`; the
    /// default is `poll`.
    #[serde(default)]
    pub backchannel_token_delivery_mode: Option<String>,
    /// CIBA Core section 4: where ping and push deliver (https, or
    /// loopback http in dev mode); required for those modes.
    #[serde(default)]
    pub backchannel_client_notification_endpoint: Option<String>,
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

pub(super) fn default_grant_types() -> Vec<String> {
    vec![dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS.to_owned()]
}

fn default_true() -> bool {
    true
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
    /// Deferral at the authorization endpoint (`deferred_authorization_endpoint`).
    pub deferred_authorization_endpoint: bool,
    /// Signed request objects required (`require_signed_request_object`).
    pub require_signed_request_object: bool,
    /// OpenID Connect and CIBA client metadata
    /// (`id_token_signed_response_alg`, `backchannel_token_delivery_mode`,
    /// `backchannel_client_notification_endpoint`), stored as the
    /// client's metadata document so that registered and configured
    /// clients are read the same way.
    pub oidc_metadata: serde_json::Map<String, serde_json::Value>,
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

/// Checks the `[[clients]]` tables (each error names the key) and turns them
/// into [`StaticClient`]s. An `owner` must be one of `users`.
pub(super) fn validate_clients(
    configured: Vec<ClientConfig>,
    users: &[UserConfig],
    dev_mode: bool,
) -> Result<Vec<StaticClient>, ConfigError> {
    let usernames: HashSet<String> = users.iter().map(|u| u.username.clone()).collect();
    let mut seen = HashSet::new();
    let mut clients = Vec::new();
    for (i, c) in configured.into_iter().enumerate() {
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
        // A signed request object is verified with the client's keys
        // (RFC 9101 section 6.2): without keys nothing could pass.
        if c.require_signed_request_object && c.jwks.is_none() && c.jwks_uri.is_none() {
            return Err(err(
                &key("require_signed_request_object"),
                "needs the client's keys (jwks or jwks_uri)",
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
            Some(u) => {
                Some(validate_https_or_dev(&u, dev_mode).map_err(|m| err(&key("jwks_uri"), m))?)
            }
        };
        let notification_endpoint = match c
            .deferred_client_notification_endpoint
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(u) => Some(
                validate_https_or_dev(&u, dev_mode)
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
        let oidc_metadata = oidc_client_metadata(
            &c.id_token_signed_response_alg,
            &c.backchannel_token_delivery_mode,
            &c.backchannel_client_notification_endpoint,
            &c.grant_types,
            &scope,
            dev_mode,
        )
        .map_err(|(k, m)| err(&key(k), m))?;
        // One notification endpoint per client: CIBA's ping and push go
        // where the draft's callbacks go, through the same outbox, and the
        // body says which handle it names.
        let notification_endpoint = match (
            notification_endpoint,
            oidc_metadata
                .get("backchannel_client_notification_endpoint")
                .and_then(|v| v.as_str()),
        ) {
            (Some(a), Some(b)) if a != b => {
                return Err(err(
                    &key("deferred_client_notification_endpoint"),
                    "must equal backchannel_client_notification_endpoint (one notification endpoint per client)",
                ))
            }
            (a, b) => a.or_else(|| b.map(str::to_owned)),
        };
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
            deferred_authorization_endpoint: c.deferred_authorization_endpoint,
            require_signed_request_object: c.require_signed_request_object,
            oidc_metadata,
        });
    }
    Ok(clients)
}

/// Checks a client's OpenID Connect and CIBA metadata and returns it as
/// metadata members; an error names the key at fault.
pub fn oidc_client_metadata(
    alg: &Option<String>,
    mode: &Option<String>,
    endpoint: &Option<String>,
    grant_types: &[String],
    scope: &Scope,
    dev_mode: bool,
) -> Result<serde_json::Map<String, serde_json::Value>, (&'static str, String)> {
    let mut m = serde_json::Map::new();
    if let Some(a) = alg {
        if !dtr_proto::oidc::ID_TOKEN_ALGS.contains(&a.as_str()) {
            return Err((
                "id_token_signed_response_alg",
                format!("unsupported algorithm '{a}': use RS256 or ES256"),
            ));
        }
        m.insert("id_token_signed_response_alg".into(), a.clone().into());
    }
    let ciba = grant_types.iter().any(|g| g == dtr_proto::GRANT_TYPE_CIBA);
    // CIBA Core section 4: a CIBA client registers a delivery mode; we
    // default to poll, which needs nothing more.
    let mode = mode.as_deref().filter(|m| !m.is_empty());
    if let Some(md) = mode {
        if !["poll", "ping", "push"].contains(&md) {
            return Err((
                "backchannel_token_delivery_mode",
                format!("unknown mode '{md}': use poll, ping or push"),
            ));
        }
        if !ciba {
            return Err((
                "backchannel_token_delivery_mode",
                format!(
                    "set without the CIBA grant ({}) in grant_types",
                    dtr_proto::GRANT_TYPE_CIBA
                ),
            ));
        }
    }
    if ciba && !scope.contains(dtr_proto::oidc::SCOPE_OPENID) {
        // CIBA Core section 7.1: every authentication request has openid.
        return Err((
            "scope",
            "a CIBA client must have openid in its scope".to_owned(),
        ));
    }
    let endpoint = endpoint.as_deref().filter(|e| !e.is_empty());
    match (mode, endpoint) {
        (Some("ping" | "push"), None) => {
            return Err((
                "backchannel_client_notification_endpoint",
                "required with the ping and push modes (CIBA Core section 4)".to_owned(),
            ))
        }
        (Some("ping" | "push"), Some(e)) => {
            let e = super::urls::validate_https_or_dev(e, dev_mode)
                .map_err(|m| ("backchannel_client_notification_endpoint", m))?;
            m.insert("backchannel_client_notification_endpoint".into(), e.into());
        }
        (_, Some(_)) => {
            return Err((
                "backchannel_client_notification_endpoint",
                "only with backchannel_token_delivery_mode ping or push".to_owned(),
            ))
        }
        _ => {}
    }
    if ciba {
        m.insert(
            "backchannel_token_delivery_mode".into(),
            mode.unwrap_or("poll").into(),
        );
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{msg, validate};

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

    #[test]
    fn oidc_and_ciba_client_keys_are_checked() {
        let ciba = |extra: &str| {
            format!(
                "dev_mode = true\n[[clients]]\nclient_id = \"bank\"\nclient_secret = \"bank-secret\"\n\
                 grant_types = [\"urn:openid:params:grant-type:ciba\"]\nscope = \"openid payments\"\n{extra}"
            )
        };
        assert!(validate(&ciba("")).is_ok());
        assert!(validate(&ciba("backchannel_token_delivery_mode = \"ping\"\nbackchannel_client_notification_endpoint = \"http://127.0.0.1:9/cb\"")).is_ok());
        assert!(msg(&ciba("backchannel_token_delivery_mode = \"ping\""))
            .contains("clients[0].backchannel_client_notification_endpoint"));
        assert!(msg(&ciba("backchannel_token_delivery_mode = \"fax\""))
            .contains("clients[0].backchannel_token_delivery_mode"));
        assert!(msg(&ciba("id_token_signed_response_alg = \"none\""))
            .contains("clients[0].id_token_signed_response_alg"));
        assert!(validate(&ciba("id_token_signed_response_alg = \"ES256\"")).is_ok());
        let no_openid = "[[clients]]\nclient_id = \"bank\"\nclient_secret = \"bank-secret\"\n\
                         grant_types = [\"urn:openid:params:grant-type:ciba\"]\nscope = \"payments\"";
        assert!(msg(no_openid).contains("clients[0].scope"));
    }
}
