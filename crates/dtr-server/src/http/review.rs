//! `/review`: the review console where people approve, deny or narrow
//! deferred requests (DESIGN.md). It drives the same service functions as
//! the admin API, so both enforce the same rules (narrowing only, DTR-24;
//! decisions only while pending).
//!
//! Reviewers sign in with their username and password (users with the
//! `reviewer` or `admin` role) or with the admin token. A sign-in is a
//! server-side session ([`crate::store::ConsoleStore`]): the cookie holds a
//! random id, the database only its SHA-256, so the session works on every
//! node and ends at sign-out (the row is deleted, the old cookie is worth
//! nothing), at expiry (checked against the server's clock), when the
//! configured admin token changes (an admin-token session keeps a
//! fingerprint of the token it was opened with) and, for a user's session,
//! as soon as the user is disabled, no longer configured or loses both
//! roles (read from the store on every request). Every form carries a
//! CSRF token bound to the session. A user acts as themselves: the queue
//! lists what they may decide, and a decision is theirs in the audit
//! trail. Reviewers see the deferral's id, never its code (DTR-9).

use super::form::Form;
use super::html::{escape, page};
use crate::approvers::Actor;
use crate::clock::rfc3339;
use crate::deferrals::{self, DecisionError};
use crate::state::AppState;
use crate::store::{ConsoleSession, DeferralFilter, DeferralRecord};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dtr_proto::scope::Scope;
use dtr_proto::secret::{ct_eq, random_token, sha256_b64};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Cookie of a signed-in reviewer.
const COOKIE: &str = "dtr_review";
/// How long a sign-in lasts.
const SESSION_SECS: i64 = 8 * 3600;

/// The console's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/review", get(list))
        .route("/review/login", post(login))
        .route("/review/logout", post(logout))
        .route("/review/{id}", get(show))
        .route("/review/{id}/{action}", post(act))
}

fn key(state: &AppState) -> Option<[u8; 32]> {
    let admin = state.admin_token_sha256?;
    let mut h = Sha256::new();
    h.update(b"dtr review console v1");
    h.update(admin);
    Some(h.finalize().into())
}

fn mac(key: &[u8], parts: &[&[u8]]) -> String {
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        m.update(p);
        m.update(b"\n");
    }
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// A signed-in reviewer: the session id from the cookie, which also keys
/// the CSRF tokens of its forms, and who acts.
struct Reviewer {
    session_id: String,
    key: [u8; 32],
    actor: Actor,
}

impl Reviewer {
    fn csrf(&self) -> String {
        mac(&self.key, &[b"csrf", self.session_id.as_bytes()])
    }

    fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| ct_eq(p.as_bytes(), self.csrf().as_bytes()))
    }
}

/// The fingerprint of the admin token (its SHA-256) kept with a session,
/// keyed by the session id: only the holder of the cookie can recompute
/// it, so the stored value cannot be used to guess the token offline.
fn admin_fingerprint(session_id: &str, admin_sha256: &[u8; 32]) -> String {
    mac(session_id.as_bytes(), &[b"admin token", admin_sha256])
}

/// The reviewer of the request's console session, if it is a live one:
/// known to the store, not expired at the server's clock, and either
/// opened with the admin token configured now or belonging to an active
/// user who still has the `reviewer` or `admin` role.
async fn reviewer(state: &AppState, headers: &HeaderMap) -> Option<Reviewer> {
    let key = key(state)?;
    let admin = state.admin_token_sha256?;
    let session_id = cookie_value(headers)?;
    if session_id.is_empty() || session_id.len() > 128 {
        return None;
    }
    let stored = match state
        .store
        .console_session(&sha256_b64(&session_id), state.clock.now_ms())
        .await
    {
        Ok(s) => s?,
        Err(e) => {
            tracing::error!(error = %e, "review console: reading the session failed");
            return None;
        }
    };
    let actor = match &stored.username {
        Some(name) => {
            let user = match state.store.get_user(name).await {
                Ok(u) => u?,
                Err(e) => {
                    tracing::error!(error = %e, "review console: reading the user failed");
                    return None;
                }
            };
            let actor = crate::identity::user_actor(&user);
            if !user.is_active() || !actor.is_reviewer() {
                return None;
            }
            actor
        }
        None => {
            let expected = admin_fingerprint(&session_id, &admin);
            if !ct_eq(stored.admin_fingerprint.as_bytes(), expected.as_bytes()) {
                return None;
            }
            Actor::AdminToken
        }
    };
    Some(Reviewer {
        session_id,
        key,
        actor,
    })
}

fn secure_attr(state: &AppState) -> &'static str {
    if state.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn login_page(state: &AppState, status: StatusCode, message: &str) -> Response {
    if key(state).is_none() {
        return page(
            StatusCode::FORBIDDEN,
            "Review console",
            "<p>The review console is off: set <code>[admin] token</code> in the configuration.</p>",
        );
    }
    let msg = if message.is_empty() {
        String::new()
    } else {
        format!("<p><strong>{}</strong></p>", escape(message))
    };
    page(
        status,
        "Review console",
        &format!(
            "{msg}<h2>Reviewers</h2><form method=\"post\" action=\"/review/login\">\
             <label>Username <input name=\"username\" autocomplete=\"username\" required></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button>Sign in</button></form>\
             <h2>Administrators</h2><form method=\"post\" action=\"/review/login\">\
             <label>Admin token <input name=\"token\" type=\"password\" autocomplete=\"off\" required></label>\
             <button>Sign in with the admin token</button></form>"
        ),
    )
}

async fn login(State(state): State<AppState>, Form(p): Form) -> Response {
    if let Some(username) = p.get("username").filter(|u| !u.is_empty()) {
        return user_login(&state, username, p.get("password").unwrap_or_default()).await;
    }
    // The admin API's check, throttled per source address (`throttle`).
    let token_ok = match super::admin::admin_token_ok(&state, p.get("token").unwrap_or_default()) {
        Ok(ok) => ok,
        Err(r) => {
            let msg = "Too many wrong tokens. Wait a moment and try again.";
            let page = login_page(&state, StatusCode::TOO_MANY_REQUESTS, msg);
            return super::error::with_retry_after(page, r.answered());
        }
    };
    let (Some(_), Some(expected)) = (key(&state), state.admin_token_sha256) else {
        return login_page(&state, StatusCode::FORBIDDEN, "");
    };
    if !token_ok {
        tracing::info!("review console sign-in refused");
        return login_page(&state, StatusCode::UNAUTHORIZED, "That token is not right.");
    }
    let session_id = random_token(32);
    let fingerprint = admin_fingerprint(&session_id, &expected);
    start_session(&state, session_id, fingerprint, None).await
}

/// A reviewer's sign-in with username and password: the sign-in page's
/// check (throttled per user and source address, hashed on the bounded
/// pool), then the role. A user with neither `reviewer` nor `admin` is
/// refused exactly like a wrong password.
async fn user_login(state: &AppState, username: &str, password: &str) -> Response {
    if key(state).is_none() {
        return login_page(state, StatusCode::FORBIDDEN, "");
    }
    let wrong = || {
        login_page(
            state,
            StatusCode::UNAUTHORIZED,
            "Wrong username or password, or not a reviewer.",
        )
    };
    match state.verify_user(username, password).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            tracing::info!("review console sign-in refused");
            return wrong();
        }
        Err(refused) => {
            let msg = "Too many failed sign-ins. Wait a moment and try again.";
            let page = login_page(state, StatusCode::TOO_MANY_REQUESTS, msg);
            return super::error::with_retry_after(page, refused.answered());
        }
        Ok(Err(fault)) => {
            if let crate::state::SignInFault::Store(e) = &fault {
                tracing::error!(error = %e, "review console sign-in could not be checked");
            }
            let page = login_page(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is busy. Try again in a moment.",
            );
            return super::error::with_retry_after(
                page,
                crate::password::OVERLOADED_RETRY_AFTER_SECS,
            );
        }
    }
    let user = match state.store.get_user(username).await {
        Ok(u) => u,
        Err(e) => {
            return page(
                super::error::fault_status(e),
                "Error",
                "<p>Something went wrong. Try again.</p>",
            )
        }
    };
    let Some(user) = user.filter(|u| crate::identity::user_actor(u).is_reviewer()) else {
        tracing::info!("review console sign-in refused");
        return wrong();
    };
    tracing::info!(user = %user.username, "reviewer signed in to the review console");
    start_session(state, random_token(32), String::new(), Some(user.username)).await
}

/// Stores a console session and answers with its cookie.
async fn start_session(
    state: &AppState,
    session_id: String,
    admin_fingerprint: String,
    username: Option<String>,
) -> Response {
    let now = state.clock.now_ms();
    let session = ConsoleSession {
        id_hash: sha256_b64(&session_id),
        admin_fingerprint,
        username,
        created_at: now,
        expires_at: now + SESSION_SECS * 1000,
    };
    if let Err(e) = state.store.insert_console_session(&session).await {
        return page(
            super::error::fault_status(e),
            "Error",
            "<p>Something went wrong. Try again.</p>",
        );
    }
    let mut r = redirect("/review");
    let cookie = format!(
        "{COOKIE}={session_id}; HttpOnly; SameSite=Strict; Path=/review; Max-Age={SESSION_SECS}{}",
        secure_attr(state)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(p): Form) -> Response {
    if let Some(rv) = reviewer(&state, &headers).await {
        if !rv.csrf_ok(p.get("csrf")) {
            return page(
                StatusCode::FORBIDDEN,
                "Refused",
                "<p>The form was stale. Go back and reload.</p>",
            );
        }
        // The session ends here for every copy of the cookie, not only in
        // this browser.
        if let Err(e) = state
            .store
            .delete_console_session(&sha256_b64(&rv.session_id))
            .await
        {
            return page(
                super::error::fault_status(e),
                "Error",
                "<p>Signing out failed. Try again.</p>",
            );
        }
    }
    let mut r = redirect("/review");
    let cookie = format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/review; Max-Age=0{}",
        secure_attr(&state)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
}

fn summary_row(d: &DeferralRecord, now: i64) -> String {
    let st = d.effective_state(now);
    let waiting = if d.interaction_handle.is_some() && st.is_pending() {
        " (waiting for the user)"
    } else {
        ""
    };
    format!(
        "<tr><td><a href=\"/review/{id}\">{id}</a></td><td>{client}</td><td>{grant}</td><td>{scope}</td>\
         <td>{state}{waiting}</td><td>{progress}</td><td>{created}</td><td>{expires}</td></tr>",
        id = escape(&d.id),
        client = escape(&d.client_id),
        grant = escape(&d.grant_type),
        scope = escape(&d.scope),
        state = st.as_str(),
        progress = escape(d.progress.as_deref().unwrap_or("")),
        created = rfc3339(d.created_at),
        expires = rfc3339(d.expires_at),
    )
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let Some(rv) = reviewer(&state, &headers).await else {
        return login_page(&state, StatusCode::OK, "");
    };
    let wanted = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("pending");
    let filter = DeferralFilter {
        state: if wanted == "all" {
            None
        } else {
            wanted.parse().ok()
        },
        client_id: None,
        limit: 200,
    };
    let now = state.clock.now_ms();
    // A reviewer's queue holds what they may decide.
    let rows = match super::admin::reviewable(&state, &rv.actor, filter).await {
        Ok(r) => r,
        Err(e) => {
            return page(
                super::error::fault_status(e),
                "Error",
                "<p>The list could not be read.</p>",
            );
        }
    };
    let tabs: String = [
        "pending",
        "approved",
        "denied",
        "cancelled",
        "expired",
        "redeemed",
        "all",
    ]
    .iter()
    .map(|s| {
        if *s == wanted {
            format!("<strong>{s}</strong>")
        } else {
            format!("<a href=\"/review?state={s}\">{s}</a>")
        }
    })
    .collect::<Vec<_>>()
    .join(" · ");
    let body: String = rows.iter().map(|d| summary_row(d, now)).collect();
    let table = if rows.is_empty() {
        "<p>Nothing here.</p>".to_owned()
    } else {
        format!(
            "<table><thead><tr><th>Id</th><th>Client</th><th>Grant</th><th>Scope</th><th>State</th>\
             <th>Step</th><th>Created</th><th>Expires</th></tr></thead><tbody>{body}</tbody></table>"
        )
    };
    page(
        StatusCode::OK,
        "Deferred requests",
        &format!(
            "<p>Signed in as <strong>{who}</strong>.</p><p>{tabs}</p>{table}<form method=\"post\" action=\"/review/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button>Sign out</button></form>",
            who = escape(&rv.actor.by()),
            csrf = escape(&rv.csrf())
        ),
    )
}

#[derive(Deserialize)]
struct ShowQuery {
    done: Option<String>,
    error: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let Some(rv) = reviewer(&state, &headers).await else {
        return login_page(&state, StatusCode::OK, "");
    };
    let found = match state.store.deferral_by_id(&id).await {
        Ok(Some(d)) => deferrals::may_review(&state, &d, &rv.actor)
            .await
            .map(|ok| ok.then_some(d)),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    let d = match found {
        // One the reviewer may not decide is not shown, nor its existence.
        Ok(Some(d)) => d,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "Not found",
                "<p>No such deferral. <a href=\"/review\">Back</a></p>",
            )
        }
        Err(e) => {
            return page(
                super::error::fault_status(e),
                "Error",
                "<p>The deferral could not be read.</p>",
            );
        }
    };
    let now = state.clock.now_ms();
    let st = d.effective_state(now);
    let csrf = escape(&rv.csrf());
    let notice = match (q.done.as_deref(), q.error.as_deref()) {
        (_, Some(e)) => format!("<p><strong>Not done: {}</strong></p>", escape(e)),
        (Some(done), _) => format!("<p><strong>Done: {}.</strong></p>", escape(done)),
        _ => String::new(),
    };
    let details = d
        .authorization_details
        .as_ref()
        .map(|a| {
            format!(
                "<dt>Authorization details</dt><dd><pre>{}</pre></dd>",
                escape(&serde_json::to_string_pretty(a).unwrap_or_default())
            )
        })
        .unwrap_or_default();
    let mut html = format!(
        "{notice}<p><a href=\"/review\">All pending</a></p><dl>\
         <dt>Id</dt><dd>{id}</dd><dt>Client</dt><dd>{client}</dd><dt>Grant</dt><dd>{grant}</dd>\
         <dt>Subject</dt><dd>{subject}</dd><dt>Requested scope</dt><dd>{scope}</dd>{details}\
         <dt>State</dt><dd>{state}</dd><dt>Step</dt><dd>{progress}</dd>\
         <dt>Created</dt><dd>{created}</dd><dt>Expires</dt><dd>{expires}</dd></dl>",
        id = escape(&d.id),
        client = escape(&d.client_id),
        grant = escape(&d.grant_type),
        subject = escape(d.subject.as_deref().unwrap_or("")),
        scope = escape(&d.scope),
        state = st.as_str(),
        progress = escape(d.progress.as_deref().unwrap_or("(none)")),
        created = rfc3339(d.created_at),
        expires = rfc3339(d.expires_at),
    );
    if st.is_pending() {
        // Narrowing only (DTR-24): the reviewer can only untick requested scopes.
        let boxes: String = Scope::parse(&d.scope)
            .unwrap_or_default()
            .iter()
            .map(|s| format!("<label><input type=\"checkbox\" name=\"scope_{s}\" value=\"1\" checked> {s}</label>", s = escape(s)))
            .collect();
        let interaction = if d.interaction_handle.is_some() {
            format!("<form method=\"post\" action=\"/review/{id}/interaction\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input type=\"hidden\" name=\"required\" value=\"false\"><button>Stop waiting for the user</button></form>", id = escape(&d.id))
        } else {
            format!("<form method=\"post\" action=\"/review/{id}/interaction\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input type=\"hidden\" name=\"required\" value=\"true\"><button>Ask the user to act (interaction_required)</button></form>", id = escape(&d.id))
        };
        html.push_str(&format!(
            "<h2>Decide</h2>\
             <form method=\"post\" action=\"/review/{id}/approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <fieldset><legend>Grant these scopes</legend>{boxes}</fieldset><button>Approve</button></form>\
             <form method=\"post\" action=\"/review/{id}/deny\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>Reason (kept for audit, not sent to the client) <input name=\"reason\" maxlength=\"500\"></label><button>Deny</button></form>\
             <form method=\"post\" action=\"/review/{id}/progress\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>Progress step (an identifier such as document_review, never personal data) \
             <input name=\"step\" pattern=\"[A-Za-z0-9_.-]{{1,64}}\" required></label><button>Report step</button></form>{interaction}",
            id = escape(&d.id)
        ));
    }
    page(StatusCode::OK, "Deferred request", &html)
}

async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(p): Form,
) -> Response {
    let Some(rv) = reviewer(&state, &headers).await else {
        return login_page(&state, StatusCode::UNAUTHORIZED, "Sign in again.");
    };
    if !rv.csrf_ok(p.get("csrf")) {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<p>The form was stale. Go back and reload.</p>",
        );
    }
    // Who signed in acts: the admin token, or the reviewer themselves.
    let actor = rv.actor.clone();
    let result = match action.as_str() {
        "approve" => {
            let requested = match state.store.deferral_by_id(&id).await {
                Ok(Some(d)) => d.scope,
                Ok(None) => {
                    return page(
                        StatusCode::NOT_FOUND,
                        "Not found",
                        "<p>No such deferral.</p>",
                    )
                }
                Err(e) => return page(super::error::fault_status(e), "Error", "<p>Try again.</p>"),
            };
            let requested = Scope::parse(&requested).unwrap_or_default();
            let kept: Vec<&str> = requested
                .iter()
                .filter(|s| p.get(&format!("scope_{s}")).is_some())
                .collect();
            if kept.is_empty() && !requested.is_empty() {
                Err(DecisionError::Invalid(
                    "tick at least one scope, or deny the request".into(),
                ))
            } else {
                deferrals::approve(&state, &id, Some(&kept.join(" ")), None, &actor)
                    .await
                    .map(|_| "approved")
            }
        }
        "deny" => deferrals::deny(&state, &id, p.get("reason"), &actor)
            .await
            .map(|_| "denied"),
        "progress" => deferrals::progress(&state, &id, p.get("step").unwrap_or_default(), &actor)
            .await
            .map(|_| "step reported"),
        "interaction" => {
            let required = p.get("required") != Some("false");
            deferrals::set_interaction(&state, &id, required, &actor)
                .await
                .map(|_| "interaction updated")
        }
        _ => return page(StatusCode::NOT_FOUND, "Not found", "<p>Unknown action.</p>"),
    };
    let back = format!("/review/{}", urlencode(&id));
    match result {
        Ok(done) => redirect(&format!("{back}?done={}", urlencode(done))),
        Err(DecisionError::NotFound) => page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<p>No such deferral.</p>",
        ),
        Err(DecisionError::NotPending(m) | DecisionError::Invalid(m)) => {
            redirect(&format!("{back}?error={}", urlencode(&m)))
        }
        Err(DecisionError::Forbidden) => page(
            StatusCode::FORBIDDEN,
            "Not yours to decide",
            "<p>You are not an approver of this deferral.</p>",
        ),
        Err(DecisionError::Store(e)) => crate::error::Error::from(e).into_response(),
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
