//! `GET /authorize`, the consent page and its `POST /authorize/consent`,
//! and `POST /par` (RFC 9126), with signed request objects (RFC 9101) in
//! either. The authorization response carries `code` (or `error`), `state`
//! and `iss`, whether or not the request carried the DTR hint (DTR-4); only
//! a client that opted in to deferral at the authorization endpoint may
//! get `deferral_code`, `expires_in` and `interval` instead of `code`. It
//! travels in the redirect's query, or as an auto-submitted form
//! (`response_mode=form_post`).

use super::error::json_no_store;
use super::form::Form;
use super::html::page_with_script;
use super::html::{escape, page};
use crate::grants::authorize::{
    self as authz, AuthzError, AuthzRequest, AuthzResponse, Channel, ResponseMode,
    REQUEST_URI_PREFIX,
};
use crate::session::{self, SessionUser};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::params::Params;
use dtr_proto::scope::Scope;
use dtr_proto::secret::NotificationToken;
use dtr_proto::{ErrorCode, OAuthError};

fn error_page(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Request refused",
        &format!(
            "<p>{}</p><p>Go back to the application and try again.</p>",
            escape(message)
        ),
    )
}

fn failed(state: &AppState, e: &AuthzError) -> Response {
    match (authz::error_response(state, e), e) {
        (Some(r), _) => respond(&r),
        (None, AuthzError::Page(m)) => error_page(m),
        (None, _) => error_page("The request is invalid."),
    }
}

/// Sends an authorization response: a redirect with the parameters in its
/// query, or (OAuth 2.0 Form Post Response Mode section 2) a page whose
/// form the browser posts to the redirect URI at once, so that nothing of
/// it lands in the URL, browser history or a referrer.
fn respond(r: &AuthzResponse) -> Response {
    match r.response_mode {
        ResponseMode::Query => session::see_other(&r.query_url()),
        ResponseMode::FormPost => {
            let fields: String = r
                .params
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                        escape(k),
                        escape(v)
                    )
                })
                .collect();
            let body = format!(
                "<form method=\"post\" action=\"{action}\">{fields}\
                 <noscript><button>Continue</button></noscript></form>",
                action = escape(&r.redirect_uri),
            );
            let mut resp = page_with_script(
                StatusCode::OK,
                "Returning to the application",
                &body,
                Some("document.forms[0].submit()"),
            );
            // The form goes to the client's redirect URI: allow exactly its
            // origin as a form target, and the one script by its hash.
            let origin = url::Url::parse(&r.redirect_uri)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default();
            if let Some(csp) = resp
                .headers()
                .get(header::CONTENT_SECURITY_POLICY)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.replace("form-action 'self'", &format!("form-action {origin}")))
            {
                if let Ok(v) = HeaderValue::from_str(&csp) {
                    resp.headers_mut()
                        .insert(header::CONTENT_SECURITY_POLICY, v);
                }
            }
            resp
        }
    }
}

/// A front-channel request, its notification token (only ever from a
/// request object), and the request object's single use to spend.
type FrontRequest = (
    AuthzRequest,
    Option<NotificationToken>,
    Option<authz::RequestObjectUse>,
);

/// The request of a front-channel `/authorize`: the verified request
/// object's claims when it carries one (RFC 9101 section 6.3: only those
/// count), else the query's parameters.
async fn front_request(
    state: &AppState,
    p: &Params,
    client: Option<&crate::store::ClientRecord>,
) -> Result<FrontRequest, Response> {
    let client = client.filter(|c| Some(c.client_id.as_str()) == p.get("client_id"));
    match (p.get("request"), client) {
        (Some(jwt), Some(c)) => match authz::request_object_params(state, c, jwt).await {
            Err(e) => Err(server_error(e)),
            Ok(Err(why)) => {
                tracing::info!(client = %c.client_id, reason = %why, "request object refused");
                Err(failed(
                    state,
                    &authz::refuse(p, c, "invalid_request_object", &why),
                ))
            }
            Ok(Ok((params, once))) => authz::validate(&params, Some(c), Channel::Client)
                .map(|(req, token)| (req, token, Some(once)))
                .map_err(|e| failed(state, &e)),
        },
        (None, Some(c)) if c.require_signed_request_object => Err(failed(
            state,
            &authz::refuse(
                p,
                c,
                "invalid_request",
                "this client must send its authorization requests as signed request objects (RFC 9101)",
            ),
        )),
        _ => authz::validate(p, client, Channel::Browser)
            .map(|(req, token)| (req, token, None))
            .map_err(|e| failed(state, &e)),
    }
}

fn server_error(e: impl Into<crate::error::Error>) -> Response {
    page(
        super::error::fault_status(e),
        "Error",
        "<p>Something went wrong. Try again.</p>",
    )
}

async fn client(state: &AppState, client_id: Option<&str>) -> Option<crate::store::ClientRecord> {
    let id = client_id?;
    state.store.get_client(id).await.ok().flatten()
}

/// `GET /authorize` (OAuth 2.1 section 4.1.1), or with `request_uri` the
/// continuation of a pushed request (RFC 9126 section 4).
pub async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let query = q.unwrap_or_default();
    let p = match Params::parse_form(query.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            return error_page(
                e.error_description
                    .as_deref()
                    .unwrap_or("malformed request"),
            )
        }
    };
    let client_rec = client(&state, p.get("client_id")).await;
    let user = session::current_user(&state, &headers).await;
    let mut request_object = None;
    let (req, pushed_handle) = match p.get("request_uri") {
        Some(uri) => {
            // RFC 9126 section 4: only client_id and request_uri count; the
            // pushed request must belong to that client.
            let found = match uri.strip_prefix(REQUEST_URI_PREFIX) {
                Some(h) => match authz::load_request(&state, h).await {
                    Ok(r) => r.map(|(req, pushed)| (req, pushed, h.to_owned())),
                    Err(e) => return server_error(e),
                },
                None => None,
            };
            match found {
                Some((req, true, h)) if Some(req.client_id.as_str()) == p.get("client_id") => {
                    (req, Some(h))
                }
                _ => return error_page("The request_uri is unknown, expired or already used."),
            }
        }
        None => match front_request(&state, &p, client_rec.as_ref()).await {
            Ok((mut req, token, once)) => {
                if client_rec.as_ref().is_some_and(|c| c.require_par) {
                    let e = AuthzError::Redirect {
                        redirect_uri: req.redirect_uri.clone(),
                        response_mode: req.response_mode,
                        state: req.state.clone(),
                        error: "invalid_request",
                        description: "this client must push its authorization requests (RFC 9126)"
                            .into(),
                    };
                    return failed(&state, &e);
                }
                authz::seal_notification_token(&state, &mut req, token.as_ref());
                request_object = once;
                (req, None)
            }
            Err(refused) => return refused,
        },
    };
    let oidc = req.oidc.clone().unwrap_or_default();
    let prompt = oidc.prompt();
    let user = match authentication(&state, &req, &oidc, &p, user).await {
        Ok(Some(user)) => user,
        Ok(None) if prompt.none => {
            return failed(
                &state,
                &redirect_error(&req, "login_required", "the user must sign in"),
            )
        }
        Ok(None) => {
            // OpenID Connect Core 1.0 section 3.1.2.3: authenticate (again)
            // and come back; the marker says when this round began, so
            // the login that follows satisfies `prompt=login` and
            // `max_age` once, not forever.
            let mut pairs: Vec<(String, String)> = p
                .names()
                .filter(|n| *n != AUTH_AFTER)
                .map(|n| (n.to_owned(), p.get(n).unwrap_or_default().to_owned()))
                .collect();
            pairs.push((AUTH_AFTER.into(), (state.clock.now_ms() / 1000).to_string()));
            let q: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            return session::reauth_redirect(&format!("{}?{q}", dtr_proto::paths::AUTHORIZE));
        }
        Err(e) => return failed(&state, &e),
    };
    // The user is known: the request object is used now, once.
    if let (Some(once), Some(c)) = (&request_object, client_rec.as_ref()) {
        match once.spend(&state).await {
            Ok(true) => {}
            Ok(false) => {
                return failed(
                    &state,
                    &authz::refuse(&p, c, "invalid_request_object", "request object jti reused"),
                )
            }
            Err(e) => return server_error(e),
        }
    }
    let consent = match state
        .store
        .get_consent(&user.username, &req.client_id)
        .await
    {
        Ok(c) => c,
        Err(e) => return server_error(e),
    };
    // A standing consent covers a later request within its scope; requests
    // with authorization details are transaction-specific and always ask.
    let covered = consent.as_ref().filter(|c| {
        // `prompt=consent`: ask although consent was given (Core 1.0
        // section 3.1.2.1).
        !prompt.consent
            && req.authorization_details.is_none()
            && Scope::parse(&req.scope)
                .unwrap_or_default()
                .is_subset(&Scope::parse(&c.scope).unwrap_or_default())
    });
    if let Some(c) = covered {
        if let Some(h) = &pushed_handle {
            if !authz::consume_request(&state, h).await.unwrap_or(false) {
                return error_page("The request_uri is unknown, expired or already used.");
            }
        }
        return match authz::complete(&state, &req, &user, &c.id).await {
            Ok(r) => respond(&r),
            Err(e) => server_error(e),
        };
    }
    if prompt.none {
        return failed(
            &state,
            &redirect_error(&req, "consent_required", "the user has not consented"),
        );
    }
    let handle = match pushed_handle {
        Some(h) => h,
        None => match authz::store_request(&state, &req, false).await {
            Ok(h) => h,
            Err(e) => return server_error(e),
        },
    };
    consent_page(&state, &user, &req, &handle, client_rec.as_ref()).await
}

/// The query marker of a re-authentication round (seconds when it began).
const AUTH_AFTER: &str = "dtr_auth_after";
/// How long a re-authentication round may take.
const AUTH_ROUND_SECS: i64 = 600;

fn redirect_error(req: &AuthzRequest, error: &'static str, description: &str) -> AuthzError {
    AuthzError::Redirect {
        redirect_uri: req.redirect_uri.clone(),
        response_mode: req.response_mode,
        state: req.state.clone(),
        error,
        description: description.to_owned(),
    }
}

/// The user the request may proceed as, or `None` when someone must sign
/// in (again) first: nobody is signed in; `prompt=login` or `max_age`
/// asks for an authentication newer than the session's; or the signed-in
/// user is not the one `login_hint` or `id_token_hint` names (OpenID
/// Connect Core 1.0 section 3.1.2.1). A hint that is not one of our ID
/// tokens for this client is `invalid_request`.
async fn authentication(
    state: &AppState,
    req: &AuthzRequest,
    oidc: &authz::OidcParams,
    p: &Params,
    user: Option<SessionUser>,
) -> Result<Option<SessionUser>, AuthzError> {
    let hinted = match &oidc.id_token_hint {
        None => None,
        Some(h) => match crate::oidc::verify_hint(state, h, &req.client_id).await {
            Ok(Some(sub)) => Some(sub),
            Ok(None) => {
                return Err(redirect_error(
                    req,
                    "invalid_request",
                    "id_token_hint is not an ID token this server issued to this client",
                ))
            }
            Err(e) => {
                e.log();
                return Err(redirect_error(req, "server_error", "try again later"));
            }
        },
    };
    let Some(user) = user else { return Ok(None) };
    let now = state.clock.now_ms() / 1000;
    // Signed in during this round: the login that `prompt=login` or
    // `max_age` asked for has happened.
    let fresh = p
        .get(AUTH_AFTER)
        .and_then(|t| t.parse::<i64>().ok())
        .is_some_and(|t| t >= now - AUTH_ROUND_SECS && user.auth_time >= t);
    let stale = oidc.prompt().login || dtr_proto::oidc::too_old(user.auth_time, oidc.max_age, now);
    let other_user = hinted.is_some_and(|s| s != user.username)
        || oidc
            .login_hint
            .as_ref()
            .is_some_and(|h| *h != user.username);
    if (stale && !fresh) || other_user {
        return Ok(None);
    }
    Ok(Some(user))
}

/// The consent page: who asks, for what, and approve / deny.
async fn consent_page(
    state: &AppState,
    user: &SessionUser,
    req: &AuthzRequest,
    handle: &str,
    client: Option<&crate::store::ClientRecord>,
) -> Response {
    let name = client
        .and_then(|c| c.metadata.as_ref())
        .and_then(|m| m.get("client_name"))
        .and_then(|n| n.as_str())
        .unwrap_or(&req.client_id);
    let scopes: String = Scope::parse(&req.scope)
        .unwrap_or_default()
        .iter()
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    let details = req
        .authorization_details
        .as_ref()
        .map(|a| {
            let pretty = serde_json::to_string_pretty(a).unwrap_or_default();
            format!(
                "<dt>Authorization details</dt><dd><pre>{}</pre></dd>",
                escape(&pretty)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<p>Signed in as <strong>{user}</strong>.</p>\
         <p><strong>{name}</strong> (<code>{cid}</code>) asks for access to your account.</p>\
         <dl><dt>Access requested</dt><dd><ul>{scopes}</ul></dd>{details}\
         <dt>Redirects to</dt><dd><code>{redirect}</code></dd></dl>\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"request\" value=\"{handle}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button name=\"decision\" value=\"approve\">Allow</button>\
         <button name=\"decision\" value=\"deny\">Deny</button></form>",
        user = escape(&user.username),
        name = escape(name),
        cid = escape(&req.client_id),
        redirect = escape(&req.redirect_uri),
        action = dtr_proto::paths::AUTHORIZE_CONSENT,
        handle = escape(handle),
        csrf = escape(&session::csrf_token(state, user)),
    );
    let mut r = page(StatusCode::OK, "Allow access?", &body);
    // Browsers apply `form-action` to the redirect that follows the POST:
    // allow exactly the client's redirect URI origin besides ourselves.
    let origin = url::Url::parse(&req.redirect_uri)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {origin}; frame-ancestors 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// `POST /authorize/consent`: the user's decision on the consent page.
pub async fn consent(State(state): State<AppState>, headers: HeaderMap, Form(p): Form) -> Response {
    let user = match super::html::form_user(
        &state,
        &headers,
        p.get("csrf"),
        "Go back to the application and start again.",
    )
    .await
    {
        Ok(u) => u,
        Err(refused) => return refused,
    };
    let Some(handle) = p.get("request") else {
        return error_page("The form is incomplete.");
    };
    let req = match authz::load_request(&state, handle).await {
        Ok(Some((req, _))) => req,
        Ok(None) => return error_page("This request was already answered or has expired."),
        Err(e) => return server_error(e),
    };
    let approve = match p.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => return error_page("Choose allow or deny."),
    };
    // Single use: a second submission (another tab, a replay) gets nothing.
    if !authz::consume_request(&state, handle)
        .await
        .unwrap_or(false)
    {
        return error_page("This request was already answered or has expired.");
    }
    if !approve {
        tracing::info!(client = %req.client_id, user = %user.username, "consent denied");
        let e = AuthzError::Redirect {
            redirect_uri: req.redirect_uri.clone(),
            response_mode: req.response_mode,
            state: req.state.clone(),
            error: "access_denied",
            description: "the user denied the request".into(),
        };
        return failed(&state, &e);
    }
    let store = &state.store;
    let previous = store
        .get_consent(&user.username, &req.client_id)
        .await
        .ok()
        .flatten();
    let merged = match &previous {
        Some(c) => format!("{} {}", c.scope, req.scope),
        None => req.scope.clone(),
    };
    let merged = Scope::parse(&merged).unwrap_or_default().to_string();
    let consent = match store
        .grant_consent(
            &user.username,
            &req.client_id,
            &merged,
            &crate::grants::new_consent_id(),
            state.clock.now_ms(),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return server_error(e),
    };
    tracing::info!(client = %req.client_id, user = %user.username, "consent given");
    match authz::complete(&state, &req, &user, &consent.id).await {
        Ok(r) => respond(&r),
        Err(e) => server_error(e),
    }
}

/// `POST /par` (RFC 9126 section 2): an authenticated client pushes its
/// authorization request and gets a single-use `request_uri`.
pub async fn par(State(state): State<AppState>, headers: HeaderMap, Form(p): Form) -> Response {
    match push(&state, &headers, &p).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn push(
    state: &AppState,
    headers: &HeaderMap,
    p: &Params,
) -> Result<Response, crate::error::Error> {
    let client = state
        .client_auth()
        .authenticate(headers, p, dtr_proto::paths::PAR)
        .await?;
    // RFC 9126 section 2.1: a request_uri cannot itself be pushed.
    if p.contains("request_uri") {
        return Err(
            OAuthError::invalid_request("request_uri is not allowed in a pushed request").into(),
        );
    }
    let mut p = p.clone();
    if p.get("client_id").is_some_and(|c| c != client.client_id) {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidRequest,
            "client_id differs from the authenticated client",
        )
        .into());
    }
    if !p.contains("client_id") {
        let mut pairs: Vec<(String, String)> = p
            .names()
            .map(|n| (n.to_owned(), p.get(n).unwrap_or_default().to_owned()))
            .collect();
        pairs.push(("client_id".into(), client.client_id.clone()));
        p = Params::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    // RFC 9126 section 3: a pushed request may be a request object, whose
    // claims are then the request (RFC 9101 section 6.3).
    let params = match p.get("request") {
        Some(jwt) => match authz::request_object_params(state, &client, jwt).await? {
            Ok((params, once)) if once.spend(state).await? => params,
            Ok(_) => {
                return Err(OAuthError::with_description(
                    ErrorCode::Other("invalid_request_object".into()),
                    "request object jti reused",
                )
                .into())
            }
            Err(why) => {
                tracing::info!(client = %client.client_id, reason = %why, "request object refused");
                return Err(OAuthError::with_description(
                    ErrorCode::Other("invalid_request_object".into()),
                    why,
                )
                .into());
            }
        },
        None if client.require_signed_request_object => return Err(OAuthError::invalid_request(
            "this client must send its authorization requests as signed request objects (RFC 9101)",
        )
        .into()),
        None => p,
    };
    let (mut req, token) =
        authz::validate(&params, Some(&client), Channel::Client).map_err(|e| e.to_oauth())?;
    authz::seal_notification_token(state, &mut req, token.as_ref());
    let handle = authz::store_request(state, &req, true).await?;
    let body = serde_json::json!({
        "request_uri": format!("{REQUEST_URI_PREFIX}{handle}"),
        "expires_in": authz::PAR_TTL_SECS,
    });
    Ok(json_no_store(StatusCode::CREATED, &body))
}
