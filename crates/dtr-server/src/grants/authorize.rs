//! The authorization request (OAuth 2.1 section 4.1.1) as `/authorize`
//! and `/par` (RFC 9126) receive it: validation, in the order that decides
//! whether an error may be redirected to the client (section 4.1.2.1: not
//! before the client and its redirect URI are known to be right), and the
//! authorization code that ends it.

use crate::error::Error;
use crate::session::SessionUser;
use crate::state::AppState;
use crate::store::{AuthorizationCodeRecord, AuthorizationRequestRecord, ClientRecord};
use dtr_proto::completion_mode::CompletionMode;
use dtr_proto::params::Params;
use dtr_proto::scope::Scope;
use dtr_proto::secret::{random_token, sha256_b64, AuthorizationCode};
use dtr_proto::{ErrorCode, OAuthError};
use serde::{Deserialize, Serialize};

/// RFC 9126 section 2.2: the `request_uri` of a pushed request.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// Lifetime of a pushed request (RFC 9126 section 2.2 `expires_in`).
pub const PAR_TTL_SECS: u64 = 60;
/// How long a request waits for login and consent.
pub const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
/// Lifetime of an authorization code (OAuth 2.1 section 4.1.2: short; one
/// minute is ample for a client's back channel).
pub const CODE_TTL_MS: i64 = 60 * 1000;

/// A validated authorization request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuthzRequest {
    /// The client.
    pub client_id: String,
    /// The redirect URI, exactly as registered.
    pub redirect_uri: String,
    /// Whether the request named it (then the token request must too,
    /// OAuth 2.1 section 4.1.3).
    pub redirect_uri_given: bool,
    /// Requested scope (canonical).
    pub scope: String,
    /// The client's `state`, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// PKCE S256 challenge (RFC 7636 section 4.2).
    pub code_challenge: String,
    /// RFC 9396 authorization details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    /// `completion_mode` included `deferred`: the token request must too
    /// (DTR-4, DTR-5).
    pub deferred_hint: bool,
    /// The OpenID Connect parameters, when `scope` has `openid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcParams>,
}

/// The OpenID Connect parameters of an authorization request (Core 1.0
/// section 3.1.2.1), read only when its scope has `openid`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcParams {
    /// Echoed in the ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// `prompt`, validated, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// `max_age` in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// `login_hint`: the username the client expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
    /// `id_token_hint`, verified when the request is answered (its key
    /// is read then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_hint: Option<String>,
    /// `acr_values`, as sent; the `acr` of the ID token is never claimed
    /// beyond what the login did, so it is only recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr_values: Option<String>,
}

impl OidcParams {
    /// The parsed `prompt` (validated when the request was).
    pub fn prompt(&self) -> dtr_proto::oidc::Prompt {
        dtr_proto::oidc::Prompt::parse(self.prompt.as_deref()).unwrap_or_default()
    }
}

/// What a code stands for (`grant_data` of the code).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeData {
    /// The request it ends.
    pub request: AuthzRequest,
    /// The user who consented.
    pub username: String,
    /// The login session it was issued in (re-checked on redemption, DTR-23).
    pub session_id_hash: String,
    /// The consent it rests on.
    pub consent_id: String,
    /// How the user authenticated, for the ID token (OpenID Connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<crate::oidc::Authentication>,
}

/// A failed authorization request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthzError {
    /// The client or redirect URI is not trustworthy: tell the user, never
    /// redirect (OAuth 2.1 section 4.1.2.1).
    Page(String),
    /// Redirect the error to the client.
    Redirect {
        /// Where.
        redirect_uri: String,
        /// The client's `state`.
        state: Option<String>,
        /// The error code (section 4.1.2.1).
        error: &'static str,
        /// What is wrong.
        description: String,
    },
}

impl AuthzError {
    /// The same error as a JSON answer (for `/par`).
    pub fn to_oauth(&self) -> OAuthError {
        match self {
            Self::Page(d) => OAuthError::invalid_request(d.clone()),
            Self::Redirect {
                error, description, ..
            } => {
                let code = match *error {
                    "invalid_scope" => ErrorCode::InvalidScope,
                    "login_required" | "consent_required" | "interaction_required" => {
                        ErrorCode::Other((*error).to_owned())
                    }
                    "unauthorized_client" => ErrorCode::UnauthorizedClient,
                    "access_denied" => ErrorCode::AccessDenied,
                    "invalid_request" => ErrorCode::InvalidRequest,
                    other => ErrorCode::Other(other.to_owned()),
                };
                OAuthError::with_description(code, description.clone())
            }
        }
    }
}

/// The S256 transformation of RFC 7636 section 4.2.
pub fn s256(verifier: &str) -> String {
    sha256_b64(verifier)
}

/// Validates an authorization request for `client` (looked up by the
/// caller from `client_id`).
pub fn validate(p: &Params, client: Option<&ClientRecord>) -> Result<AuthzRequest, AuthzError> {
    let Some(client_id) = p.get("client_id") else {
        return Err(AuthzError::Page(
            "The request names no client (client_id is missing).".into(),
        ));
    };
    let Some(client) = client.filter(|c| c.client_id == client_id) else {
        return Err(AuthzError::Page("The application is unknown.".into()));
    };
    // Exact string match against the registered URIs (OAuth 2.1 section
    // 2.3.1, RFC 9700 section 4.1.3), any port for loopback IPs (RFC 8252
    // section 7.3); with one registered URI it may be omitted.
    let (redirect_uri, given) = match p.get("redirect_uri") {
        Some(r)
            if client
                .redirect_uris
                .iter()
                .any(|u| dtr_proto::redirect_uri::matches(u, r)) =>
        {
            (r.to_owned(), true)
        }
        Some(_) => {
            return Err(AuthzError::Page(
                "The redirect URI is not registered for this application.".into(),
            ))
        }
        None if client.redirect_uris.len() == 1 => (client.redirect_uris[0].clone(), false),
        None => return Err(AuthzError::Page("The request has no redirect_uri.".into())),
    };
    // Checked again here, not only when the client was configured or
    // registered: a client stored before this rule existed may still hold
    // a `javascript:` URI, and nothing must ever redirect the browser there
    // (RFC 9700 section 4.1).
    if dtr_proto::redirect_uri::check(&redirect_uri).is_err() {
        return Err(AuthzError::Page(
            "The redirect URI registered for this application is not allowed.".into(),
        ));
    }
    let state = p.get("state").map(str::to_owned);
    let fail = |error: &'static str, description: &str| AuthzError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description: description.to_owned(),
    };
    if !client.is_active() {
        return Err(fail("unauthorized_client", "client is disabled"));
    }
    if !client
        .grant_types
        .iter()
        .any(|g| g == dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE)
    {
        return Err(fail(
            "unauthorized_client",
            "client is not allowed to use the authorization code grant",
        ));
    }
    if p.contains("request") {
        return Err(fail(
            "request_not_supported",
            "request objects are not supported; use /par",
        ));
    }
    match p.get("response_type") {
        Some("code") => {}
        None => return Err(fail("invalid_request", "response_type is missing")),
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
    }
    // PKCE is required, S256 only (OAuth 2.1 section 4.1.1, RFC 9700
    // section 2.1.1): a missing method means `plain` (RFC 7636 section 4.3).
    let Some(challenge) = p.get("code_challenge") else {
        return Err(fail(
            "invalid_request",
            "code_challenge is required (PKCE, S256)",
        ));
    };
    if p.get("code_challenge_method") != Some("S256") {
        return Err(fail(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(fail(
            "invalid_request",
            "code_challenge must be a base64url SHA-256 (43 characters)",
        ));
    }
    let requested = match p.get("scope") {
        None => None,
        Some(s) => Some(Scope::parse(s).map_err(|_| fail("invalid_scope", "malformed scope"))?),
    };
    let scope = super::scope_within_client(client, requested).map_err(|e| {
        fail(
            "invalid_scope",
            e.error_description.as_deref().unwrap_or("invalid scope"),
        )
    })?;
    let authorization_details = p
        .get("authorization_details")
        .map(dtr_proto::token::parse_authorization_details)
        .transpose()
        .map_err(|e| {
            fail(
                "invalid_request",
                e.error_description
                    .as_deref()
                    .unwrap_or("bad authorization_details"),
            )
        })?;
    // DTR-1, DTR-4: the hint is parsed like on the token endpoint.
    let mode = CompletionMode::parse(p.get("completion_mode")).map_err(|e| {
        fail(
            "invalid_request",
            e.error_description
                .as_deref()
                .unwrap_or("bad completion_mode"),
        )
    })?;
    let oidc = if crate::oidc::is_openid(&scope.to_string()) {
        let bad = |d: &str| fail("invalid_request", d);
        let prompt = p.get("prompt");
        dtr_proto::oidc::Prompt::parse(prompt).map_err(bad)?;
        let max_age = dtr_proto::oidc::parse_max_age(p.get("max_age")).map_err(bad)?;
        let text = |k: &str| -> Result<Option<String>, AuthzError> {
            match p.get(k) {
                Some(v) if v.len() > 2048 || v.chars().any(char::is_control) => {
                    Err(bad(&format!("{k} is malformed")))
                }
                v => Ok(v.map(str::to_owned)),
            }
        };
        Some(OidcParams {
            nonce: text("nonce")?,
            prompt: prompt.map(str::to_owned),
            max_age,
            login_hint: text("login_hint")?,
            id_token_hint: p.get("id_token_hint").map(str::to_owned),
            acr_values: text("acr_values")?,
        })
    } else {
        None
    };
    Ok(AuthzRequest {
        client_id: client_id.to_owned(),
        redirect_uri,
        redirect_uri_given: given,
        scope: scope.to_string(),
        state,
        code_challenge: challenge.to_owned(),
        authorization_details,
        deferred_hint: mode.deferred,
        oidc,
    })
}

/// Appends the response parameters to a redirect URI, with `iss` (RFC 9207)
/// so a client talking to several servers knows who answered.
pub fn redirect_with(
    state: &AppState,
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    client_state: Option<&str>,
) -> String {
    let Ok(mut u) = url::Url::parse(redirect_uri) else {
        return redirect_uri.to_owned();
    };
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        if let Some(s) = client_state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", &state.issuer);
    }
    u.to_string()
}

/// The redirect of an error (OAuth 2.1 section 4.1.2.1).
pub fn error_redirect(state: &AppState, e: &AuthzError) -> Option<String> {
    match e {
        AuthzError::Page(_) => None,
        AuthzError::Redirect {
            redirect_uri,
            state: s,
            error,
            description,
        } => Some(redirect_with(
            state,
            redirect_uri,
            &[("error", error), ("error_description", description)],
            s.as_deref(),
        )),
    }
}

/// Stores a request under a fresh handle; returns the handle.
pub async fn store_request(
    state: &AppState,
    req: &AuthzRequest,
    pushed: bool,
) -> Result<String, crate::error::Error> {
    let handle = random_token(24);
    let now = state.clock.now_ms();
    let ttl = if pushed {
        PAR_TTL_SECS as i64 * 1000
    } else {
        PENDING_TTL_MS
    };
    state
        .store
        .insert_authorization_request(&AuthorizationRequestRecord {
            id_hash: sha256_b64(&handle),
            client_id: req.client_id.clone(),
            request: serde_json::to_value(req).map_err(crate::error::Error::internal)?,
            pushed,
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
        })
        .await?;
    Ok(handle)
}

/// A stored, unused request by its handle.
pub async fn load_request(
    state: &AppState,
    handle: &str,
) -> Result<Option<(AuthzRequest, bool)>, crate::error::Error> {
    let rec = state
        .store
        .authorization_request(&sha256_b64(handle), state.clock.now_ms())
        .await?;
    Ok(rec.and_then(|r| {
        serde_json::from_value(r.request)
            .ok()
            .map(|q| (q, r.pushed))
    }))
}

/// Consumes a stored request (single use, RFC 9126 section 4).
pub async fn consume_request(state: &AppState, handle: &str) -> Result<bool, crate::error::Error> {
    state
        .store
        .consume_authorization_request(&sha256_b64(handle), state.clock.now_ms())
        .await
        .map_err(Error::from)
}

/// Issues an authorization code for a consented request; returns the
/// redirect to the client.
pub async fn issue_code(
    state: &AppState,
    req: &AuthzRequest,
    user: &SessionUser,
    consent_id: &str,
) -> Result<String, crate::error::Error> {
    let code = AuthorizationCode::new(random_token(32));
    let now = state.clock.now_ms();
    let data = CodeData {
        request: req.clone(),
        username: user.username.clone(),
        session_id_hash: user.session_id_hash.clone(),
        consent_id: consent_id.to_owned(),
        oidc: req.oidc.as_ref().map(|o| crate::oidc::Authentication {
            auth_time: Some(user.auth_time),
            nonce: o.nonce.clone(),
            acr: None,
        }),
    };
    state
        .store
        .insert_authorization_code(&AuthorizationCodeRecord {
            code_hash: code.hash(),
            client_id: req.client_id.clone(),
            family_id: format!("fam_{}", random_token(12)),
            grant_data: serde_json::to_value(&data).map_err(crate::error::Error::internal)?,
            created_at: now,
            expires_at: now + CODE_TTL_MS,
            used_at: None,
        })
        .await?;
    tracing::info!(client = %req.client_id, user = %user.username, "authorization code issued");
    Ok(redirect_with(
        state,
        &req.redirect_uri,
        &[("code", code.secret())],
        req.state.as_deref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientRecord {
        ClientRecord {
            client_id: "app".into(),
            secret_hash: None,
            auth_method: "none".into(),
            grant_types: vec!["authorization_code".into()],
            scope: "read write".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            jwks: None,
            jwks_uri: None,
            notification_endpoint: None,
            enabled: true,
            admin_disabled: false,
            dpop_bound_access_tokens: false,
            registration_token_hash: None,
            metadata: None,
            require_par: false,
            owner: None,
        }
    }

    fn params(extra: &[(&str, &str)]) -> Params {
        let mut v = vec![
            ("client_id", "app"),
            ("response_type", "code"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ];
        v.extend_from_slice(extra);
        Params::from_pairs(v)
    }

    fn error_of(r: Result<AuthzRequest, AuthzError>) -> &'static str {
        match r {
            Err(AuthzError::Redirect { error, .. }) => error,
            Err(AuthzError::Page(_)) => "page",
            Ok(_) => "ok",
        }
    }

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn valid_request_with_hint() {
        let r = validate(
            &params(&[("state", "xyz"), ("completion_mode", "deferred")]),
            Some(&client()),
        );
        let r = r.ok().unwrap_or_else(|| panic!("valid"));
        assert_eq!(r.redirect_uri, "https://app.example/cb");
        assert!(!r.redirect_uri_given);
        assert!(r.deferred_hint);
        assert_eq!(r.scope, "read write");
        assert_eq!(r.state.as_deref(), Some("xyz"));
    }

    #[test]
    fn untrusted_client_or_redirect_is_a_page() {
        let c = client();
        assert_eq!(
            error_of(validate(
                &params(&[("redirect_uri", "https://evil.example/cb")]),
                Some(&c)
            )),
            "page"
        );
        // Prefixes and extra query parameters are not an exact match.
        assert_eq!(
            error_of(validate(
                &params(&[("redirect_uri", "https://app.example/cb?x=1")]),
                Some(&c)
            )),
            "page"
        );
        assert_eq!(error_of(validate(&params(&[]), None)), "page");
    }

    #[test]
    fn pkce_is_required_and_s256_only() {
        let c = client();
        let no_challenge = Params::from_pairs([("client_id", "app"), ("response_type", "code")]);
        assert_eq!(
            error_of(validate(&no_challenge, Some(&c))),
            "invalid_request"
        );
        let plain = Params::from_pairs([
            ("client_id", "app"),
            ("response_type", "code"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "plain"),
        ]);
        assert_eq!(error_of(validate(&plain, Some(&c))), "invalid_request");
        let no_method = Params::from_pairs([
            ("client_id", "app"),
            ("response_type", "code"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
        ]);
        assert_eq!(error_of(validate(&no_method, Some(&c))), "invalid_request");
    }

    #[test]
    fn other_errors_are_redirected() {
        let c = client();
        assert_eq!(
            error_of(validate(&params(&[("scope", "admin")]), Some(&c))),
            "invalid_scope"
        );
        assert_eq!(
            error_of(validate(
                &Params::from_pairs([("client_id", "app"), ("response_type", "token")]),
                Some(&c)
            )),
            "unsupported_response_type"
        );
        assert_eq!(
            error_of(validate(
                &params(&[("completion_mode", "deferred deferred")]),
                Some(&c)
            )),
            "invalid_request"
        );
    }
}
