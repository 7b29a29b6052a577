//! Dynamic client registration (RFC 7591) and its management (RFC 7592):
//! validation of client metadata into a stored client. Every rule that a
//! configured client obeys holds for a registered one too; the callback
//! endpoint gets the SSRF checks of DTR-28.

use crate::config::{AuthMethod, SUPPORTED_GRANT_TYPES};
use crate::state::AppState;
use crate::store::ClientRecord;
use dtr_proto::scope::Scope;
use serde_json::{json, Map, Value};

/// An RFC 7591 section 3.2.2 error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataError {
    /// `invalid_redirect_uri` or `invalid_client_metadata`.
    pub error: &'static str,
    /// What is wrong, naming the member.
    pub description: String,
}

fn bad(member: &str, why: impl std::fmt::Display) -> MetadataError {
    MetadataError {
        error: "invalid_client_metadata",
        description: format!("{member}: {why}"),
    }
}

fn bad_redirect(why: impl std::fmt::Display) -> MetadataError {
    MetadataError {
        error: "invalid_redirect_uri",
        description: format!("redirect_uris: {why}"),
    }
}

/// Metadata members we understand and keep (RFC 7591 section 2, RFC 9449
/// section 5.2, and the draft's `deferred_client_notification_endpoint`).
const STRING_MEMBERS: &[&str] = &[
    "client_name",
    "client_uri",
    "logo_uri",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
];

/// The scopes registered clients may ask for.
pub fn allowed_scope(state: &AppState) -> Scope {
    match &state.config.registration.scope {
        Some(s) => Scope::parse(s).unwrap_or_default(),
        None => {
            let all: Vec<String> = state
                .config
                .clients
                .iter()
                .flat_map(|c| c.scope.iter().map(str::to_owned).collect::<Vec<_>>())
                .collect();
            Scope::parse(&all.join(" ")).unwrap_or_default()
        }
    }
}

/// A validated registration: the client fields and the metadata document
/// to answer with.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Authentication method.
    pub auth_method: AuthMethod,
    /// Grant types.
    pub grant_types: Vec<String>,
    /// Scope.
    pub scope: Scope,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// JWKS.
    pub jwks: Option<Value>,
    /// URL of the JWKS.
    pub jwks_uri: Option<String>,
    /// Callback endpoint.
    pub notification_endpoint: Option<String>,
    /// DPoP-bound tokens.
    pub dpop_bound: bool,
    /// The metadata as it will be returned.
    pub metadata: Map<String, Value>,
}

/// Validates a metadata document (RFC 7591 section 2).
pub async fn validate(state: &AppState, body: &Value) -> Result<Validated, MetadataError> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad("body", "must be a JSON object"))?;
    let str_member = |k: &str| -> Result<Option<String>, MetadataError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(k, "must be a string")),
        }
    };
    let method_raw =
        str_member("token_endpoint_auth_method")?.unwrap_or_else(|| "client_secret_basic".into());
    let auth_method = AuthMethod::parse(&method_raw).ok_or_else(|| {
        bad(
            "token_endpoint_auth_method",
            format!("unsupported method '{method_raw}'"),
        )
    })?;

    let grant_types: Vec<String> = match obj.get("grant_types") {
        None | Some(Value::Null) => vec![dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS.into()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|g| {
                g.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("grant_types", "must be an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("grant_types", "must be an array of strings")),
    };
    // The polling grant is implied; list it or not, it is not a grant type
    // a client registers for.
    let grant_types: Vec<String> = grant_types
        .into_iter()
        .filter(|g| g != dtr_proto::GRANT_TYPE_DEFERRED)
        .collect();
    if grant_types.is_empty() {
        return Err(bad(
            "grant_types",
            "must name at least one supported grant type",
        ));
    }
    for g in &grant_types {
        if !SUPPORTED_GRANT_TYPES.contains(&g.as_str()) {
            return Err(bad("grant_types", format!("unsupported grant type '{g}'")));
        }
    }
    if auth_method == AuthMethod::None
        && grant_types
            .iter()
            .any(|g| g == dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS)
    {
        return Err(bad(
            "grant_types",
            "a public client cannot use client_credentials",
        ));
    }

    let redirect_uris: Vec<String> = match obj.get("redirect_uris") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|u| {
                u.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad_redirect("must be an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad_redirect("must be an array of strings")),
    };
    for r in &redirect_uris {
        let u = url::Url::parse(r).map_err(|e| {
            bad_redirect(format!(
                "'{}' is not an absolute URL: {e}",
                dtr_proto::params::printable(r)
            ))
        })?;
        if u.fragment().is_some() {
            return Err(bad_redirect("must not contain a fragment"));
        }
        let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        if u.scheme() == "http" && !loopback {
            return Err(bad_redirect(
                "http is allowed only for loopback redirect URIs",
            ));
        }
    }

    let allowed = allowed_scope(state);
    let scope = match str_member("scope")? {
        None => allowed.clone(),
        Some(s) => Scope::parse(&s).map_err(|e| bad("scope", e))?,
    };
    if !scope.is_subset(&allowed) {
        return Err(bad("scope", format!("may only contain: {allowed}")));
    }

    if obj.get("jwks").is_some_and(|v| !v.is_null())
        && obj.get("jwks_uri").is_some_and(|v| !v.is_null())
    {
        return Err(bad(
            "jwks",
            "jwks and jwks_uri must not both be present (RFC 7591 section 2)",
        ));
    }
    let jwks_uri = match str_member("jwks_uri")? {
        None => None,
        Some(u) => {
            // Fetched later through the SSRF-safe client: the same checks
            // as a callback endpoint (DTR-28).
            state
                .outbound
                .validate(&u)
                .await
                .map_err(|x| bad("jwks_uri", x))?;
            Some(u)
        }
    };
    let jwks = match obj.get("jwks") {
        None | Some(Value::Null) => None,
        Some(j) => {
            let keys = j
                .get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("jwks", "must be an object with a keys array"))?;
            if keys.iter().any(|k| {
                ["d", "p", "q", "dp", "dq", "qi", "k"]
                    .iter()
                    .any(|m| k.get(*m).is_some())
            }) {
                return Err(bad("jwks", "must contain public keys only"));
            }
            Some(j.clone())
        }
    };
    if auth_method == AuthMethod::PrivateKeyJwt
        && jwks_uri.is_none()
        && jwks
            .as_ref()
            .and_then(|j| j.get("keys"))
            .and_then(Value::as_array)
            .is_none_or(|k| k.is_empty())
    {
        return Err(bad("jwks", "private_key_jwt needs at least one key"));
    }

    let notification_endpoint = match str_member("deferred_client_notification_endpoint")? {
        None => None,
        Some(e) if e.is_empty() => None,
        Some(e) => {
            state
                .outbound
                .validate(&e)
                .await
                .map_err(|x| bad("deferred_client_notification_endpoint", x))?;
            Some(e)
        }
    };
    let dpop_bound = match obj.get("dpop_bound_access_tokens") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("dpop_bound_access_tokens", "must be a boolean")),
    };

    let mut metadata = Map::new();
    for k in STRING_MEMBERS {
        if let Some(v) = str_member(k)? {
            metadata.insert((*k).to_owned(), Value::String(v));
        }
    }
    if let Some(c) = obj.get("contacts") {
        if !c.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            return Err(bad("contacts", "must be an array of strings"));
        }
        metadata.insert("contacts".into(), c.clone());
    }
    metadata.insert(
        "token_endpoint_auth_method".into(),
        json!(auth_method.as_str()),
    );
    metadata.insert("grant_types".into(), json!(grant_types));
    metadata.insert("redirect_uris".into(), json!(redirect_uris));
    metadata.insert("scope".into(), json!(scope.to_string()));
    if let Some(j) = &jwks {
        metadata.insert("jwks".into(), j.clone());
    }
    if let Some(u) = &jwks_uri {
        metadata.insert("jwks_uri".into(), json!(u));
    }
    if let Some(e) = &notification_endpoint {
        metadata.insert("deferred_client_notification_endpoint".into(), json!(e));
    }
    metadata.insert("dpop_bound_access_tokens".into(), json!(dpop_bound));
    // RFC 9126 section 6: the client must push its authorization requests.
    match obj.get("require_pushed_authorization_requests") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => {
            metadata.insert("require_pushed_authorization_requests".into(), json!(b));
        }
        Some(_) => {
            return Err(bad(
                "require_pushed_authorization_requests",
                "must be a boolean",
            ))
        }
    }
    Ok(Validated {
        auth_method,
        grant_types,
        scope,
        redirect_uris,
        jwks,
        jwks_uri,
        notification_endpoint,
        dpop_bound,
        metadata,
    })
}

/// The stored client of a validated registration.
pub fn record(
    client_id: &str,
    v: &Validated,
    secret_hash: Option<String>,
    registration_token_hash: String,
) -> ClientRecord {
    ClientRecord {
        client_id: client_id.to_owned(),
        secret_hash,
        auth_method: v.auth_method.as_str().to_owned(),
        grant_types: v.grant_types.clone(),
        scope: v.scope.to_string(),
        redirect_uris: v.redirect_uris.clone(),
        jwks: v.jwks.clone(),
        jwks_uri: v.jwks_uri.clone(),
        notification_endpoint: v.notification_endpoint.clone(),
        enabled: true,
        admin_disabled: false,
        dpop_bound_access_tokens: v.dpop_bound,
        registration_token_hash: Some(registration_token_hash),
        metadata: Some(Value::Object(v.metadata.clone())),
        require_par: v
            .metadata
            .get("require_pushed_authorization_requests")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        // A client cannot name the user it acts for: only configuration can.
        owner: None,
    }
}

/// Whether the method needs a client secret.
pub fn uses_secret(m: AuthMethod) -> bool {
    matches!(
        m,
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
    )
}
