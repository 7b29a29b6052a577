//! Dynamic client registration (RFC 7591) and its management (RFC 7592):
//! validation of client metadata into a stored client. Every rule that a
//! configured client obeys holds for a registered one too (redirect URIs
//! through `dtr_proto::redirect_uri`); the callback endpoint gets the SSRF
//! checks of DTR-28. A registered client never gets more than the operator
//! allows in `[registration]`: `scope` and `grant_types`, both empty by
//! default. Arrays are capped so that a document cannot make us check,
//! store and return thousands of entries.

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

/// Most redirect URIs one client may register. Native apps need one or
/// two, web apps a handful; each is checked and stored.
pub const MAX_REDIRECT_URIS: usize = 16;
/// Most `contacts` entries.
pub const MAX_CONTACTS: usize = 8;
/// Most keys in a registered `jwks` (rotation needs two or three).
pub const MAX_JWKS_KEYS: usize = 8;
/// Most `grant_types` entries (every grant this server knows, repeated
/// once or so, fits).
pub const MAX_GRANT_TYPES: usize = 8;

/// An array member of at most `max` strings.
fn string_array(
    obj: &Map<String, Value>,
    member: &str,
    max: usize,
    bad: impl Fn(String) -> MetadataError,
) -> Result<Option<Vec<String>>, MetadataError> {
    let a = match obj.get(member) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad(format!("{member}: must be an array of strings"))),
    };
    if a.len() > max {
        return Err(bad(format!("{member}: at most {max} entries")));
    }
    a.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("{member}: must be an array of strings")))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// The originating grant types of a registration, within what the
/// operator allows (`registration.grant_types`). The polling grant is
/// implied, so listing it changes nothing. An omitted `grant_types`
/// means `authorization_code` (RFC 7591 section 2); it is granted only
/// when allowed, else the registration must name what it wants, so a
/// client never silently gets a grant it did not ask for.
fn grant_types(
    requested: Option<Vec<String>>,
    allowed: &[&str],
) -> Result<Vec<String>, MetadataError> {
    let explicit = requested.is_some();
    let requested =
        requested.unwrap_or_else(|| vec![dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE.into()]);
    let mut out: Vec<String> = Vec::new();
    for g in requested {
        if g == dtr_proto::GRANT_TYPE_DEFERRED || out.contains(&g) {
            continue;
        }
        if !allowed.contains(&g.as_str()) {
            let allowed = if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            };
            return Err(bad(
                "grant_types",
                if explicit {
                    format!("'{g}' is not allowed for registered clients (allowed: {allowed})")
                } else {
                    format!(
                        "omitted means authorization_code (RFC 7591 section 2), which is not \
                         allowed for registered clients; name one of: {allowed}"
                    )
                },
            ));
        }
        out.push(g);
    }
    if out.is_empty() {
        return Err(bad(
            "grant_types",
            "must name at least one grant type besides the implied polling grant",
        ));
    }
    Ok(out)
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

    let reg = &state.config.registration;
    let allowed_grants: Vec<&str> = reg.allowed_grant_types().collect();
    let grant_types = grant_types(
        string_array(obj, "grant_types", MAX_GRANT_TYPES, |d| MetadataError {
            error: "invalid_client_metadata",
            description: d,
        })?,
        &allowed_grants,
    )?;
    // The operator's list is validated at start-up; this keeps a grant
    // the build cannot run from ever being stored.
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

    let redirect_uris = string_array(obj, "redirect_uris", MAX_REDIRECT_URIS, |d| MetadataError {
        error: "invalid_redirect_uri",
        description: d,
    })?
    .unwrap_or_default();
    // One rule for configured and registered clients (RFC 9700 section
    // 4.1, RFC 8252 sections 7.1 and 7.3): see `dtr_proto::redirect_uri`.
    for r in &redirect_uris {
        dtr_proto::redirect_uri::check(r)
            .map_err(|e| bad_redirect(format!("'{}': {e}", dtr_proto::params::printable(r))))?;
    }

    // Never more than the operator allows (`registration.scope`); without
    // a `scope` member the client gets exactly that.
    let allowed = reg.allowed_scope();
    let scope = match str_member("scope")? {
        None => allowed.clone(),
        Some(s) => Scope::parse(&s).map_err(|e| bad("scope", e))?,
    };
    if !scope.is_subset(&allowed) {
        return Err(bad(
            "scope",
            if allowed.is_empty() {
                "registered clients may not have any scope here".to_owned()
            } else {
                format!("may only contain: {allowed}")
            },
        ));
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
            if keys.len() > MAX_JWKS_KEYS {
                return Err(bad("jwks", format!("at most {MAX_JWKS_KEYS} keys")));
            }
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
    // OpenID Connect Registration 1.0 section 2 and CIBA Core 1.0 section
    // 4: the same rules as for a configured client; the endpoint is
    // checked like the callback endpoint (resolution included, DTR-28),
    // and is the client's one notification endpoint.
    let oidc = crate::config::oidc_client_metadata(
        &str_member("id_token_signed_response_alg")?,
        &str_member("backchannel_token_delivery_mode")?,
        &str_member("backchannel_client_notification_endpoint")?,
        &grant_types,
        &scope,
        state.config.dev_mode,
    )
    .map_err(|(k, m)| bad(k, m))?;
    let ciba_endpoint = oidc
        .get("backchannel_client_notification_endpoint")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let notification_endpoint = match (notification_endpoint, ciba_endpoint) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(
                "backchannel_client_notification_endpoint",
                "must equal deferred_client_notification_endpoint (one notification endpoint per client)",
            ))
        }
        (Some(a), _) => Some(a),
        (None, Some(b)) => {
            state
                .outbound
                .validate(&b)
                .await
                .map_err(|x| bad("backchannel_client_notification_endpoint", x))?;
            Some(b)
        }
        (None, None) => None,
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
    if let Some(c) = string_array(obj, "contacts", MAX_CONTACTS, |d| MetadataError {
        error: "invalid_client_metadata",
        description: d,
    })? {
        metadata.insert("contacts".into(), json!(c));
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
    metadata.extend(oidc);
    // Boolean client metadata: RFC 9126 section 6 (the client must push
    // its authorization requests), RFC 9101 section 10.5 (they must be
    // signed request objects), and the opt-in to deferral at the
    // authorization endpoint.
    for name in [
        "require_pushed_authorization_requests",
        "require_signed_request_object",
        "deferred_authorization_endpoint",
    ] {
        match obj.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => {
                metadata.insert(name.into(), json!(b));
            }
            Some(_) => return Err(bad(name, "must be a boolean")),
        }
    }
    // A signed request object is verified with the client's keys (RFC
    // 9101 section 6.2): without keys nothing could pass.
    if metadata.get("require_signed_request_object") == Some(&json!(true))
        && jwks.is_none()
        && jwks_uri.is_none()
    {
        return Err(bad(
            "require_signed_request_object",
            "needs the client's keys (jwks or jwks_uri)",
        ));
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
    let flag = |name: &str| v.metadata.get(name).and_then(Value::as_bool) == Some(true);
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
        require_par: flag("require_pushed_authorization_requests"),
        deferred_authorization_endpoint: flag("deferred_authorization_endpoint"),
        require_signed_request_object: flag("require_signed_request_object"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn g(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn grant_types_stay_within_the_allowed_ones() {
        let allowed = [
            dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS,
            dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE,
        ];
        assert_eq!(
            grant_types(g(&["client_credentials"]), &allowed).unwrap(),
            ["client_credentials"]
        );
        // The polling grant is implied; repeats count once.
        assert_eq!(
            grant_types(
                g(&[
                    dtr_proto::GRANT_TYPE_DEFERRED,
                    "client_credentials",
                    "client_credentials"
                ]),
                &allowed
            )
            .unwrap(),
            ["client_credentials"]
        );
        // Omitted: authorization_code (RFC 7591 section 2), when allowed.
        assert_eq!(grant_types(None, &allowed).unwrap(), ["authorization_code"]);
        let only_cc = [dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS];
        for (requested, allowed) in [
            (None, &only_cc[..]),
            (g(&["refresh_token"]), &allowed[..]),
            (g(&[dtr_proto::GRANT_TYPE_TOKEN_EXCHANGE]), &allowed[..]),
            (g(&[dtr_proto::GRANT_TYPE_DEFERRED]), &allowed[..]),
            (g(&[]), &allowed[..]),
            (g(&["client_credentials"]), &[][..]),
        ] {
            let e = grant_types(requested.clone(), allowed).unwrap_err();
            assert_eq!(e.error, "invalid_client_metadata", "{requested:?}");
            assert!(e.description.starts_with("grant_types: "));
        }
    }
}
