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
use dtr_proto::secret::NotificationToken;
use dtr_proto::secret::{random_token, sha256_b64, AuthorizationCode};
use dtr_proto::token::DeferralOptIn;
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
    /// `completion_mode` included `deferred_interactive`.
    #[serde(default)]
    pub interactive_hint: bool,
    /// The client opted in to deferral at the authorization endpoint and
    /// this request asks for a deferral: if policy defers it, the redirect
    /// carries `deferral_code` instead of `code`.
    #[serde(default)]
    pub direct_deferral: bool,
    /// RFC 9449 section 10: the DPoP key (JWK SHA-256 thumbprint) the code,
    /// or the deferral, is bound to from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// How the response travels back: `query` (default) or `form_post`.
    #[serde(default)]
    pub response_mode: ResponseMode,
    /// The `client_notification_token` of a pushed request or a request
    /// object (never of a browser URL), sealed: it is a bearer secret and
    /// reaches the deferral it authenticates callbacks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_token_sealed: Option<String>,
    /// The OpenID Connect parameters, when `scope` has `openid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcParams>,
}

/// OAuth 2.0 Multiple Response Type Encoding Practices section 2.1 and
/// OAuth 2.0 Form Post Response Mode: where the authorization response
/// parameters go. `fragment` is not offered: the code flow's default is
/// `query`, and a deferral code must not sit in a fragment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// Appended to the redirect URI's query.
    #[default]
    Query,
    /// POSTed by the browser as an HTML form (auto-submitted).
    FormPost,
}

/// Where an authorization request's parameters came from: which decides
/// whether a bearer secret may be among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The browser's URL (`/authorize` query): seen by the browser, its
    /// history, proxies and referrers.
    Browser,
    /// A PAR body (RFC 9126) or a signed request object (RFC 9101): sent by
    /// the client itself or integrity-protected by its key.
    Client,
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
        /// How (`response_mode`).
        response_mode: ResponseMode,
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

/// Where a request's errors may be sent: its redirect URI when it is one
/// the client registered (OAuth 2.1 section 4.1.2.1: never before that is
/// known), and whether the request named it.
fn redirect_target(p: &Params, client: &ClientRecord) -> Result<(String, bool), AuthzError> {
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
    Ok((redirect_uri, given))
}

/// The error of a request whose parameters could not be read (a request
/// object that does not verify): redirected when the outer request names
/// the client's registered redirect URI (or it has only one), else shown.
pub fn refuse(
    p: &Params,
    client: &ClientRecord,
    error: &'static str,
    description: &str,
) -> AuthzError {
    match redirect_target(p, client) {
        Ok((redirect_uri, _)) => AuthzError::Redirect {
            redirect_uri,
            response_mode: ResponseMode::Query,
            state: p.get("state").map(str::to_owned),
            error,
            description: description.to_owned(),
        },
        Err(page) => page,
    }
}

/// Validates an authorization request for `client` (looked up by the
/// caller from `client_id`), whose parameters came through `channel`.
/// A `client_notification_token` (only ever from the client's own
/// channel) is returned beside the request, for the caller to seal.
pub fn validate(
    p: &Params,
    client: Option<&ClientRecord>,
    channel: Channel,
) -> Result<(AuthzRequest, Option<NotificationToken>), AuthzError> {
    let Some(client_id) = p.get("client_id") else {
        return Err(AuthzError::Page(
            "The request names no client (client_id is missing).".into(),
        ));
    };
    let Some(client) = client.filter(|c| c.client_id == client_id) else {
        return Err(AuthzError::Page("The application is unknown.".into()));
    };
    let (redirect_uri, given) = redirect_target(p, client)?;
    let state = p.get("state").map(str::to_owned);
    let (response_mode, mode_error) = match p.get("response_mode") {
        None | Some("query") => (ResponseMode::Query, None),
        Some("form_post") => (ResponseMode::FormPost, None),
        Some(_) => (
            ResponseMode::Query,
            Some("response_mode must be query or form_post"),
        ),
    };
    let fail = |error: &'static str, description: &str| AuthzError::Redirect {
        redirect_uri: redirect_uri.clone(),
        response_mode,
        state: state.clone(),
        error,
        description: description.to_owned(),
    };
    if let Some(d) = mode_error {
        return Err(fail("invalid_request", d));
    }
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
    // RFC 9101 section 6.3: a request object's claims are the request;
    // one nested inside another is not.
    if p.contains("request") || p.contains("request_uri") {
        return Err(fail(
            "invalid_request",
            "request and request_uri cannot be nested",
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
    // DTR-1, DTR-4: the hint is parsed like on the token endpoint, with
    // the client's notification token (DTR-12), a bearer secret that
    // must never ride in a browser URL.
    let opt_in = DeferralOptIn::parse(p).map_err(|e| {
        fail(
            "invalid_request",
            e.error_description
                .as_deref()
                .unwrap_or("bad completion_mode"),
        )
    })?;
    if opt_in.notification_token.is_some() && channel == Channel::Browser {
        return Err(fail(
            "invalid_request",
            "client_notification_token is a secret: send it in a pushed request (RFC 9126) or a signed request object (RFC 9101), never in the browser's URL",
        ));
    }
    let mode: CompletionMode = opt_in.completion_mode;
    // RFC 9449 section 10: the thumbprint of the key the code is bound to.
    let dpop_jkt = match p.get("dpop_jkt") {
        None => None,
        Some(j)
            if j.len() == 43
                && j.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Some(j.to_owned())
        }
        Some(_) => {
            return Err(fail(
                "invalid_request",
                "dpop_jkt must be a base64url JWK SHA-256 thumbprint (RFC 9449 section 10)",
            ))
        }
    };
    let direct_deferral = client.deferred_authorization_endpoint && mode.deferred;
    // A deferral code sent through the browser must be worth nothing to
    // whoever sees it there: a confidential client authenticates every
    // poll, a public client can only prove a key, so it must bind one now.
    if direct_deferral && client.auth_method == "none" && dpop_jkt.is_none() {
        return Err(fail(
            "invalid_request",
            "a public client asking for deferral at the authorization endpoint must send dpop_jkt (RFC 9449 section 10)",
        ));
    }
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
    let request = AuthzRequest {
        client_id: client_id.to_owned(),
        redirect_uri,
        redirect_uri_given: given,
        scope: scope.to_string(),
        state,
        code_challenge: challenge.to_owned(),
        authorization_details,
        deferred_hint: mode.deferred,
        interactive_hint: mode.interactive,
        direct_deferral,
        dpop_jkt,
        response_mode,
        notification_token_sealed: None,
        oidc,
    };
    Ok((request, opt_in.notification_token))
}

/// The associated data a request's sealed notification token is bound to.
fn notification_token_context(client_id: &str) -> String {
    format!("authorization request notification token\n{client_id}")
}

/// Seals the notification token into the request before it is stored.
pub fn seal_notification_token(
    state: &AppState,
    req: &mut AuthzRequest,
    token: Option<&NotificationToken>,
) {
    req.notification_token_sealed = token.map(|t| {
        state
            .seal_key
            .seal(t.secret(), &notification_token_context(&req.client_id))
    });
}

/// An authorization response (OAuth 2.1 section 4.1.2): its parameters,
/// with `state` and `iss` (RFC 9207, so a client talking to several
/// servers knows who answered), and how they travel to the redirect URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthzResponse {
    /// The client's redirect URI.
    pub redirect_uri: String,
    /// Query or form post.
    pub response_mode: ResponseMode,
    /// Every parameter, `state` and `iss` included.
    pub params: Vec<(String, String)>,
}

impl AuthzResponse {
    /// A response of `pairs` for the request's redirect URI and mode.
    pub fn new(
        state: &AppState,
        redirect_uri: &str,
        response_mode: ResponseMode,
        pairs: &[(&str, &str)],
        client_state: Option<&str>,
    ) -> Self {
        let mut params: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(s) = client_state {
            params.push(("state".into(), s.to_owned()));
        }
        params.push(("iss".into(), state.issuer.clone()));
        Self {
            redirect_uri: redirect_uri.to_owned(),
            response_mode,
            params,
        }
    }

    /// The redirect URI with the parameters in its query (`query` mode).
    pub fn query_url(&self) -> String {
        let Ok(mut u) = url::Url::parse(&self.redirect_uri) else {
            return self.redirect_uri.clone();
        };
        u.query_pairs_mut().extend_pairs(&self.params);
        u.to_string()
    }

    /// The value of one parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The error response (OAuth 2.1 section 4.1.2.1), when it may be
/// redirected at all.
pub fn error_response(state: &AppState, e: &AuthzError) -> Option<AuthzResponse> {
    match e {
        AuthzError::Page(_) => None,
        AuthzError::Redirect {
            redirect_uri,
            response_mode,
            state: s,
            error,
            description,
        } => Some(AuthzResponse::new(
            state,
            redirect_uri,
            *response_mode,
            &[("error", error), ("error_description", description)],
            s.as_deref(),
        )),
    }
}

/// A verified request object's single use, still to be spent: at once
/// for a pushed request, once the user is known for one the browser
/// brought (a browser that must sign in first comes back with the same
/// request object).
#[derive(Clone, Debug)]
pub struct RequestObjectUse {
    client_id: String,
    jti: String,
    exp: i64,
}

impl RequestObjectUse {
    /// Spends it; `false` when its `jti` was used before (a replay).
    pub async fn spend(&self, state: &AppState) -> Result<bool, Error> {
        Ok(state
            .client_auth()
            .first_use("request object", &self.client_id, &self.jti, self.exp)
            .await?)
    }
}

/// The parameters of a request object `client` signed (RFC 9101 sections
/// 6.1 to 6.3), verified with the client's keys, and its single use (its
/// `jti`) for the caller to spend. `Ok(Err(why))` is a request object
/// that does not verify.
pub async fn request_object_params(
    state: &AppState,
    client: &ClientRecord,
    jwt: &str,
) -> Result<Result<(Params, RequestObjectUse), String>, Error> {
    let audiences = [
        state.issuer.clone(),
        format!("{}{}", state.issuer, dtr_proto::paths::AUTHORIZE),
        format!("{}{}", state.issuer, dtr_proto::paths::PAR),
    ];
    let now = state.clock.now_ms() / 1000;
    let verified = state
        .client_auth()
        .with_client_keys(client, |jwks| {
            crate::request_object::verify(jwt, jwks, &client.client_id, &audiences, now)
        })
        .await;
    Ok(verified.map(|v| {
        let once = RequestObjectUse {
            client_id: client.client_id.clone(),
            jti: v.jti,
            exp: v.exp,
        };
        (v.params, once)
    }))
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

/// Ends a consented request: with a deferral code when the client opted
/// in to deferral at the authorization endpoint and policy defers the
/// request, else with an authorization code (whose token request may
/// still be deferred, DTR-4: the response shape changes only for a client
/// that asked for it).
pub async fn complete(
    state: &AppState,
    req: &AuthzRequest,
    user: &SessionUser,
    consent_id: &str,
) -> Result<AuthzResponse, Error> {
    if req.direct_deferral {
        if let Some(r) = defer(state, req, user, consent_id).await? {
            return Ok(r);
        }
    }
    issue_code(state, req, user, consent_id).await
}

/// Deferral at the authorization endpoint: the policy is asked as the
/// token endpoint would ask it for this code's token request; when it
/// defers, the deferral is created now, bound to the client, to the
/// request's `dpop_jkt` and to its PKCE challenge (proved on the first
/// poll), and stands for the authorization code grant's token response
/// (refresh token included, DTR-20). `None`: issue a code instead.
async fn defer(
    state: &AppState,
    req: &AuthzRequest,
    user: &SessionUser,
    consent_id: &str,
) -> Result<Option<AuthzResponse>, Error> {
    let Some(client) = state.store.get_client(&req.client_id).await? else {
        return Ok(None);
    };
    let scope = Scope::parse(&req.scope).unwrap_or_default();
    let notification_token = match &req.notification_token_sealed {
        None => None,
        Some(sealed) => Some(NotificationToken::new(
            state
                .seal_key
                .open(sealed, &notification_token_context(&req.client_id))
                .ok_or_else(|| Error::internal("sealed notification token does not open"))?,
        )),
    };
    let opt_in = DeferralOptIn {
        completion_mode: CompletionMode {
            deferred: true,
            interactive: req.interactive_hint,
        },
        notification_token,
    };
    let is_public = client.auth_method == "none";
    let context = super::GrantContext {
        username: user.username.clone(),
        client_id: client.client_id.clone(),
        session_id_hash: Some(user.session_id_hash.clone()),
        consent_id: consent_id.to_owned(),
        family_id: format!("fam_{}", random_token(12)),
        // The ID token of the redemption tells how the user signed in
        // here (OpenID Connect Core 1.0 section 2), as a code's would.
        oidc: authentication(req, user),
        refresh: client
            .grant_types
            .iter()
            .any(|g| g == dtr_proto::GRANT_TYPE_REFRESH_TOKEN)
            .then(|| super::RefreshPlan {
                scope: None,
                // RFC 9449 section 5: a public client's refresh token is
                // bound to its key, here the one named by `dpop_jkt`.
                dpop_jkt: if is_public {
                    req.dpop_jkt.clone()
                } else {
                    None
                },
            }),
    };
    // The token request this code would make, asked of the policy now.
    let request = super::GrantRequest {
        client: &client,
        grant_type: dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE,
        scope,
        authorization_details: req.authorization_details.clone(),
        subject: user.username.clone(),
        opt_in,
        dpop_jkt: req.dpop_jkt.clone(),
        grant: super::StoredGrant::User(context),
        not_after: None,
    };
    // Anything but a deferral (issue, deny, a refused opt-in, an access
    // request to submit, a PDP that cannot answer) is left to the token
    // request of a code, where it is decided as for any code.
    let Ok(super::Outcome::Defer(action, routing)) = request.plan(state).await else {
        return Ok(None);
    };
    let (mut deferral, stored) = request.deferral(action, routing)?;
    deferral.front_channel = Some(crate::store::FrontChannel {
        pkce_challenge: req.code_challenge.clone(),
        redirect_uri: req.redirect_uri_given.then(|| req.redirect_uri.clone()),
    });
    let deferred = crate::deferrals::create(state, deferral, stored).await?;
    tracing::info!(client = %req.client_id, user = %user.username, "deferred at the authorization endpoint");
    let expires_in = deferred.expires_in.to_string();
    let interval = deferred.interval.to_string();
    Ok(Some(AuthzResponse::new(
        state,
        &req.redirect_uri,
        req.response_mode,
        &[
            ("deferral_code", &deferred.deferral_code),
            ("expires_in", &expires_in),
            ("interval", &interval),
        ],
        req.state.as_deref(),
    )))
}

/// How the user authenticated for an OpenID Connect request, which its ID
/// token tells (`auth_time`, `nonce`).
fn authentication(req: &AuthzRequest, user: &SessionUser) -> Option<crate::oidc::Authentication> {
    req.oidc.as_ref().map(|o| crate::oidc::Authentication {
        auth_time: Some(user.auth_time),
        nonce: o.nonce.clone(),
        acr: None,
    })
}

/// Issues an authorization code for a consented request.
async fn issue_code(
    state: &AppState,
    req: &AuthzRequest,
    user: &SessionUser,
    consent_id: &str,
) -> Result<AuthzResponse, crate::error::Error> {
    let code = AuthorizationCode::new(random_token(32));
    let now = state.clock.now_ms();
    let data = CodeData {
        request: req.clone(),
        username: user.username.clone(),
        session_id_hash: user.session_id_hash.clone(),
        consent_id: consent_id.to_owned(),
        oidc: authentication(req, user),
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
    Ok(AuthzResponse::new(
        state,
        &req.redirect_uri,
        req.response_mode,
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
            deferred_authorization_endpoint: false,
            require_signed_request_object: false,
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

    fn validate(p: &Params, c: Option<&ClientRecord>) -> Result<AuthzRequest, AuthzError> {
        super::validate(p, c, Channel::Browser).map(|(r, _)| r)
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
