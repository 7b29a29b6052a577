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
use super::html::{escape, page, page_with_script};
use crate::approvers::Actor;
use crate::clock::rfc3339;
use crate::deferrals::{self, DecisionError};
use crate::policy::narrowing;
use crate::state::AppState;
use crate::store::{Approval, ConsoleSession, DeferralEvent, DeferralFilter, DeferralRecord};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dtr_proto::deferral::DeferralState;
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
        .route("/review/events", get(events))
        .route(
            "/review/tokens",
            get(super::review_tokens::list).post(super::review_tokens::create),
        )
        .route(
            "/review/tokens/{id}/revoke",
            post(super::review_tokens::revoke),
        )
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
pub(super) struct Reviewer {
    session_id: String,
    key: [u8; 32],
    pub(super) actor: Actor,
}

impl Reviewer {
    pub(super) fn csrf(&self) -> String {
        mac(&self.key, &[b"csrf", self.session_id.as_bytes()])
    }

    pub(super) fn csrf_ok(&self, presented: Option<&str>) -> bool {
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
pub(super) async fn reviewer(state: &AppState, headers: &HeaderMap) -> Option<Reviewer> {
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

/// The queue's filters, as GET query parameters so that a filtered view
/// is a link: `state` (`pending`, the default, or `history`), `client`,
/// `grant`, `scope` (a scope the request contains), `group` (routed to
/// `group:<name>`) and `order` (`oldest` for oldest first).
#[derive(Deserialize, Default)]
struct ListQuery {
    state: Option<String>,
    client: Option<String>,
    grant: Option<String>,
    scope: Option<String>,
    group: Option<String>,
    order: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ListQuery {
    fn history(&self) -> bool {
        given(&self.state) == Some("history")
    }

    fn keeps(&self, d: &DeferralRecord) -> bool {
        given(&self.client).is_none_or(|c| d.client_id == c)
            && given(&self.grant).is_none_or(|g| d.grant_type == g)
            && given(&self.scope).is_none_or(|s| d.scope.split(' ').any(|t| t == s))
            && given(&self.group)
                .is_none_or(|g| d.approvers.iter().any(|a| *a == format!("group:{g}")))
    }
}

/// "5 min", "2 h": how long `ms` is, for people.
fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// A `<time>` element: the absolute time in `datetime` and `title`, the
/// text relative to `now`, as `label` says ("waiting 5 min").
fn time_el(at: i64, text: &str) -> String {
    let abs = rfc3339(at);
    format!(
        "<time datetime=\"{abs}\" title=\"{abs}\">{}</time>",
        escape(text)
    )
}

fn waiting(created: i64, now: i64) -> String {
    time_el(created, &format!("waiting {}", span(now - created)))
}

fn expiry(expires: i64, now: i64) -> String {
    if expires > now {
        time_el(expires, &format!("expires in {}", span(expires - now)))
    } else {
        time_el(expires, &format!("expired {} ago", span(now - expires)))
    }
}

fn ago(at: i64, now: i64) -> String {
    time_el(at, &format!("{} ago", span(now - at)))
}

/// The client's display name (its registered `client_name`), else its id.
async fn client_name(state: &AppState, client_id: &str) -> String {
    match state.store.get_client(client_id).await {
        Ok(Some(c)) => c
            .metadata
            .as_ref()
            .and_then(|m| m.get("client_name"))
            .and_then(|n| n.as_str())
            .filter(|n| !n.trim().is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| client_id.to_owned()),
        _ => client_id.to_owned(),
    }
}

fn client_cell(name: &str, id: &str) -> String {
    if name == id {
        escape(id)
    } else {
        format!("{} <small>({})</small>", escape(name), escape(id))
    }
}

/// Four eyes: "1 of 2 approvals, by carol"; empty for one approver.
fn four_eyes(d: &DeferralRecord, approvals: &[Approval]) -> String {
    if d.approvals_required <= 1 {
        return String::new();
    }
    let by: Vec<&str> = approvals.iter().map(|a| a.by.as_str()).collect();
    let mut s = format!("{} of {} approvals", by.len(), d.approvals_required);
    if !by.is_empty() {
        s.push_str(", by ");
        s.push_str(&by.join(", "));
    }
    s
}

/// The pending queue `actor` may decide, at most 200, newest first.
async fn pending_queue(
    state: &AppState,
    actor: &Actor,
) -> Result<Vec<DeferralRecord>, crate::store::StoreError> {
    let filter = DeferralFilter {
        state: Some(DeferralState::Pending),
        client_id: None,
        limit: 200,
        ..Default::default()
    };
    super::admin::reviewable(state, actor, filter).await
}

/// A fingerprint of `actor`'s pending queue: what changes when a deferral
/// arrives, is decided or expires, or gets an approval, a step or an
/// interaction switch. The live updates compare it.
async fn queue_version(
    state: &AppState,
    actor: &Actor,
) -> Result<String, crate::store::StoreError> {
    let now = state.clock.now_ms();
    let mut h = Sha256::new();
    for d in pending_queue(state, actor).await? {
        if !d.effective_state(now).is_pending() {
            continue;
        }
        h.update(d.id.as_bytes());
        h.update(b"\n");
        h.update(d.progress.as_deref().unwrap_or("").as_bytes());
        h.update([u8::from(d.interaction_handle.is_some())]);
        if d.approvals_required > 1 {
            for a in state.store.approvals(&d.id).await? {
                h.update(a.by.as_bytes());
                h.update(b"\n");
            }
        }
        h.update(b"\0");
    }
    Ok(URL_SAFE_NO_PAD.encode(&h.finalize()[..12]))
}

/// Reloads the queue region when the server reports a new queue version
/// (`GET /review/events`); without JavaScript the page is a plain page.
const LIVE_SCRIPT: &str = "(function(){var q=document.getElementById('queue');\
if(!q||!window.EventSource||!window.fetch)return;var v=q.getAttribute('data-version');\
var es=new EventSource('/review/events');es.addEventListener('queue',function(e){\
if(e.data===v)return;v=e.data;fetch(location.href,{credentials:'same-origin'}).then(function(r){return r.text();})\
.then(function(t){var n=new DOMParser().parseFromString(t,'text/html').getElementById('queue');\
if(n){q.innerHTML=n.innerHTML;q.setAttribute('data-version',v);var s=document.getElementById('live');\
if(s)s.textContent='Queue updated.';}});});})();";

fn options(values: &[String], selected: Option<&str>, any: &str) -> String {
    let mut out = format!("<option value=\"\">{any}</option>");
    for v in values {
        let sel = if Some(v.as_str()) == selected {
            " selected"
        } else {
            ""
        };
        out.push_str(&format!(
            "<option value=\"{v}\"{sel}>{v}</option>",
            v = escape(v)
        ));
    }
    out
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let Some(rv) = reviewer(&state, &headers).await else {
        return login_page(&state, StatusCode::OK, "");
    };
    let history = q.history();
    let now = state.clock.now_ms();
    let filter = DeferralFilter {
        state: if history {
            None
        } else {
            Some(DeferralState::Pending)
        },
        client_id: given(&q.client).map(str::to_owned),
        limit: 200,
        ..Default::default()
    };
    let fault = |e| {
        page(
            super::error::fault_status(e),
            "Error",
            "<p>The list could not be read.</p>",
        )
    };
    // A reviewer's queue holds what they may decide.
    let mut rows = match super::admin::reviewable(&state, &rv.actor, filter).await {
        Ok(r) => r,
        Err(e) => return fault(e),
    };
    rows.retain(|d| d.effective_state(now).is_pending() != history);
    // The choices of the filters, from what this reviewer may see.
    let mut clients: Vec<String> = rows.iter().map(|d| d.client_id.clone()).collect();
    let mut grants: Vec<String> = rows.iter().map(|d| d.grant_type.clone()).collect();
    let mut groups: Vec<String> = rows
        .iter()
        .flat_map(|d| d.approvers.iter())
        .filter_map(|a| a.strip_prefix("group:").map(str::to_owned))
        .collect();
    for v in [&mut clients, &mut grants, &mut groups] {
        v.sort();
        v.dedup();
    }
    rows.retain(|d| q.keeps(d));
    let oldest = given(&q.order) == Some("oldest");
    if oldest {
        rows.sort_by_key(|d| (d.created_at, d.id.clone()));
    } else {
        rows.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id.clone())));
    }
    let mut names = std::collections::HashMap::new();
    let mut body = String::new();
    for d in &rows {
        if !names.contains_key(&d.client_id) {
            let n = client_name(&state, &d.client_id).await;
            names.insert(d.client_id.clone(), n);
        }
        let name = names.get(&d.client_id).map(String::as_str).unwrap_or("");
        let client = client_cell(name, &d.client_id);
        let id = escape(&d.id);
        if history {
            let st = d.effective_state(now);
            let at = match state.store.events(&d.id).await {
                Ok(ev) => ev.iter().map(|e| e.at).max().unwrap_or(d.created_at),
                Err(e) => return fault(e),
            };
            body.push_str(&format!(
                "<tr><th scope=\"row\"><a href=\"/review/{id}\">{id}</a></th><td>{client}</td><td>{grant}</td>\
                 <td>{scope}</td><td>{outcome}</td><td>{by}</td><td>{at}</td></tr>",
                grant = escape(&d.grant_type),
                scope = escape(&d.scope),
                outcome = st.as_str(),
                by = escape(d.decided_by.as_deref().unwrap_or("")),
                at = ago(at.min(now), now),
            ));
        } else {
            let approvals = if d.approvals_required > 1 {
                match state.store.approvals(&d.id).await {
                    Ok(a) => a,
                    Err(e) => return fault(e),
                }
            } else {
                Vec::new()
            };
            let user = if d.interaction_handle.is_some() {
                " (waiting for the user)"
            } else {
                ""
            };
            body.push_str(&format!(
                "<tr><th scope=\"row\"><a href=\"/review/{id}\">{id}</a></th><td>{client}</td><td>{grant}</td>\
                 <td>{scope}</td><td>{eyes}</td><td>{progress}{user}</td><td>{waiting}</td><td>{expires}</td></tr>",
                grant = escape(&d.grant_type),
                scope = escape(&d.scope),
                eyes = escape(&four_eyes(d, &approvals)),
                progress = escape(d.progress.as_deref().unwrap_or("")),
                waiting = waiting(d.created_at, now),
                expires = expiry(d.expires_at, now),
            ));
        }
    }
    let table = if rows.is_empty() {
        "<p>Nothing here.</p>".to_owned()
    } else if history {
        format!(
            "<div class=\"scroll\"><table><caption>Resolved deferrals ({n})</caption><thead><tr>\
             <th scope=\"col\">Id</th><th scope=\"col\">Client</th><th scope=\"col\">Grant</th>\
             <th scope=\"col\">Scope</th><th scope=\"col\">Outcome</th><th scope=\"col\">Decided by</th>\
             <th scope=\"col\">When</th></tr></thead><tbody>{body}</tbody></table></div>",
            n = rows.len()
        )
    } else {
        format!(
            "<div class=\"scroll\"><table><caption>Pending deferrals ({n})</caption><thead><tr>\
             <th scope=\"col\">Id</th><th scope=\"col\">Client</th><th scope=\"col\">Grant</th>\
             <th scope=\"col\">Scope</th><th scope=\"col\">Approvals</th><th scope=\"col\">Step</th>\
             <th scope=\"col\">Waiting</th><th scope=\"col\">Expires</th></tr></thead><tbody>{body}</tbody></table></div>",
            n = rows.len()
        )
    };
    let version = if history {
        String::new()
    } else {
        match queue_version(&state, &rv.actor).await {
            Ok(v) => v,
            Err(e) => return fault(e),
        }
    };
    let views = if history {
        "<a href=\"/review\">Pending</a> · <strong>History</strong>"
    } else {
        "<strong>Pending</strong> · <a href=\"/review?state=history\">History</a>"
    };
    let filters = format!(
        "<form method=\"get\" action=\"/review\" class=\"filters\" aria-label=\"Filters\">\
         <input type=\"hidden\" name=\"state\" value=\"{st}\">\
         <label>Client <select name=\"client\">{clients}</select></label>\
         <label>Grant type <select name=\"grant\">{grants}</select></label>\
         <label>Scope contains <input name=\"scope\" value=\"{scope}\" size=\"12\"></label>\
         <label>Approver group <select name=\"group\">{groups}</select></label>\
         <label>Order <select name=\"order\"><option value=\"\">newest first</option>\
         <option value=\"oldest\"{oldest}>oldest first</option></select></label>\
         <button>Filter</button> <a href=\"/review{reset}\">Clear filters</a></form>",
        st = if history { "history" } else { "pending" },
        clients = options(&clients, given(&q.client), "any"),
        grants = options(&grants, given(&q.grant), "any"),
        groups = options(&groups, given(&q.group), "any"),
        scope = escape(given(&q.scope).unwrap_or("")),
        oldest = if oldest { " selected" } else { "" },
        reset = if history { "?state=history" } else { "" },
    );
    let html = format!(
        "<p>Signed in as <strong>{who}</strong>.{tokens}</p><nav aria-label=\"Views\"><p>{views}</p></nav>\
         <h2>Filters</h2>{filters}\
         <h2>{heading}</h2><p id=\"live\" role=\"status\" aria-live=\"polite\"></p>\
         <div id=\"queue\" data-version=\"{version}\">{table}</div>\
         <form method=\"post\" action=\"/review/logout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button>Sign out</button></form>",
        who = escape(&rv.actor.by()),
        tokens = if matches!(rv.actor, Actor::User(_)) {
            " <a href=\"/review/tokens\">Your API tokens</a>"
        } else {
            ""
        },
        heading = if history { "History" } else { "Queue" },
        csrf = escape(&rv.csrf())
    );
    let title = if history {
        "Decided requests"
    } else {
        "Deferred requests"
    };
    let script = (!history).then_some(LIVE_SCRIPT);
    page_with_script(StatusCode::OK, title, &html, script)
}

/// Live streams per node: each polls the store once a second.
const MAX_STREAMS: usize = 64;
static STREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A held stream slot, given back when the stream ends.
struct StreamSlot;

impl StreamSlot {
    fn take() -> Option<Self> {
        use std::sync::atomic::Ordering;
        STREAMS
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_STREAMS).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        STREAMS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The body of an event stream: what the polling task sends.
struct EventBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// `GET /review/events`: server-sent events for the signed-in session's
/// queue. It sends `event: queue` with the queue's version at once and
/// whenever the version changes (checked every second), a comment every
/// 15 seconds to keep the connection open, and ends when the client goes
/// away or the session ends.
async fn events(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if reviewer(&state, &headers).await.is_none() {
        return (StatusCode::UNAUTHORIZED, "sign in at /review\n").into_response();
    }
    let Some(slot) = StreamSlot::take() else {
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, "too many live streams\n").into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return r;
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let _slot = slot;
        if tx
            .send(Bytes::from_static(b"retry: 5000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        let mut last = String::new();
        let mut quiet = 0u32;
        loop {
            // The session is checked on every round: signing out ends it.
            let Some(rv) = reviewer(&state, &headers).await else {
                break;
            };
            match queue_version(&state, &rv.actor).await {
                Ok(v) if v != last => {
                    let msg = format!("event: queue\ndata: {v}\n\n");
                    if tx.send(Bytes::from(msg)).await.is_err() {
                        break;
                    }
                    last = v;
                    quiet = 0;
                }
                Ok(_) => quiet += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "review console: the queue could not be read");
                    quiet += 1;
                }
            }
            if quiet >= 15 {
                quiet = 0;
                if tx
                    .send(Bytes::from_static(b": keep-alive\n\n"))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            tokio::select! {
                _ = tx.closed() => break,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    });
    let mut r = Response::new(axum::body::Body::new(EventBody(rx)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    r
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
    let details = d
        .authorization_details
        .as_ref()
        .map(render_details)
        .unwrap_or_default();
    let (approvals, log) =
        match tokio::try_join!(state.store.approvals(&d.id), state.store.events(&d.id)) {
            Ok(x) => x,
            Err(e) => {
                return page(
                    super::error::fault_status(e),
                    "Error",
                    "<p>The deferral could not be read.</p>",
                )
            }
        };
    let eyes = render_approvals(&d, &approvals);
    let log = render_events(&log);
    let notice = match (q.done.as_deref(), q.error.as_deref()) {
        (_, Some(e)) => format!("<p><strong>Not done: {}</strong></p>", escape(e)),
        (Some(done), _) => format!("<p><strong>Done: {}.</strong></p>", escape(done)),
        _ => String::new(),
    };
    let mut html = format!(
        "{notice}<p><a href=\"/review\">All pending</a></p><dl>\
         <dt>Id</dt><dd>{id}</dd><dt>Client</dt><dd>{client}</dd><dt>Grant</dt><dd>{grant}</dd>\
         <dt>Subject</dt><dd>{subject}</dd><dt>Requested scope</dt><dd>{scope}</dd>\
         <dt>State</dt><dd>{state}</dd><dt>Decided by</dt><dd>{decided_by}</dd>\
         <dt>Granted scope</dt><dd>{granted}</dd><dt>Approved until</dt><dd>{until}</dd>\
         <dt>Step</dt><dd>{progress}</dd>\
         <dt>Created</dt><dd>{created}</dd><dt>Expires</dt><dd>{expires}</dd></dl>{details}{eyes}{log}",
        id = escape(&d.id),
        client = client_cell(&client_name(&state, &d.client_id).await, &d.client_id),
        decided_by = escape(d.decided_by.as_deref().unwrap_or("(not decided)")),
        granted = escape(d.granted_scope.as_deref().unwrap_or("")),
        until = d.approved_until.map(|t| time_el(t, &rfc3339(t))).unwrap_or_else(|| "(no limit)".into()),
        grant = escape(&d.grant_type),
        subject = escape(d.subject.as_deref().unwrap_or("")),
        scope = escape(&d.scope),
        state = st.as_str(),
        progress = escape(d.progress.as_deref().unwrap_or("(none)")),
        created = waiting(d.created_at, now),
        expires = expiry(d.expires_at, now),
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
        let details = details_fields(&state, &d);
        html.push_str(&format!(
            "<h2>Decide</h2>\
             <form method=\"post\" action=\"/review/{id}/approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <fieldset><legend>Grant these scopes</legend>{boxes}</fieldset>{details}\
             <label>Approved until, UTC (optional; the token never outlives it) \
             <input type=\"datetime-local\" name=\"approved_until\" step=\"60\"></label>\
             <button>Approve</button></form>\
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

/// The form fields that narrow a deferral's authorization details, per
/// `[[authorization_details_types]]` (DTR-24): a number input, at most the
/// requested value, for each field that may only decrease, and a "keep"
/// checkbox for entries that may be left out. Entries without a rule are
/// granted as asked.
fn details_fields(state: &AppState, d: &DeferralRecord) -> String {
    let Some(serde_json::Value::Array(entries)) = &d.authorization_details else {
        return String::new();
    };
    let mut out = String::new();
    for (i, e) in entries.iter().enumerate() {
        let kind = e.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let Some(rule) = state.config.narrowing.rule(kind) else {
            continue;
        };
        let mut inner = String::new();
        if rule.droppable {
            inner.push_str(&format!(
                "<label><input type=\"checkbox\" name=\"ad_{i}_keep\" value=\"1\" checked> grant this {k}</label>",
                k = escape(kind)
            ));
        }
        for path in &rule.decrease {
            let Some(v) = narrowing::field(e, path).and_then(number_text) else {
                continue;
            };
            inner.push_str(&format!(
                "<label>{p} (at most {v}) <input type=\"number\" name=\"ad_{i}_{p}\" value=\"{v}\" max=\"{v}\" min=\"0\" step=\"any\" inputmode=\"decimal\"></label>",
                p = escape(path),
                v = escape(&v),
            ));
        }
        if !inner.is_empty() {
            out.push_str(&format!(
                "<fieldset><legend>Authorization detail {n}: {k}</legend>{inner}</fieldset>",
                n = i + 1,
                k = escape(kind)
            ));
        }
    }
    out
}

/// A number, or a numeric string, as the text a form shows.
fn number_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if s.parse::<f64>().is_ok() => Some(s.clone()),
        _ => None,
    }
}

/// The authorization details the form allows, or `None` when it leaves
/// them as asked; the rules' check happens in `deferrals::approve_narrowed`.
fn narrowed_details(
    state: &AppState,
    d: &DeferralRecord,
    p: &dtr_proto::params::Params,
) -> Option<serde_json::Value> {
    let serde_json::Value::Array(entries) = d.authorization_details.as_ref()? else {
        return None;
    };
    let mut changed = false;
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let kind = e.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let Some(rule) = state.config.narrowing.rule(kind) else {
            out.push(e.clone());
            continue;
        };
        if rule.droppable && p.get(&format!("ad_{i}_keep")).is_none() {
            changed = true;
            continue;
        }
        let mut entry = e.clone();
        for path in &rule.decrease {
            let (Some(asked), Some(given)) = (
                narrowing::field(e, path).cloned(),
                p.get(&format!("ad_{i}_{path}")).map(str::trim),
            ) else {
                continue;
            };
            if number_text(&asked).as_deref() == Some(given) {
                continue;
            }
            changed = true;
            // The type of the request's own value: a string amount stays a
            // string (RFC 9396 examples), a number a number.
            let value = match asked {
                serde_json::Value::String(_) => serde_json::Value::String(given.to_owned()),
                _ => serde_json::from_str::<serde_json::Value>(given)
                    .ok()
                    .filter(|v| v.is_number())
                    .unwrap_or_else(|| serde_json::Value::String(given.to_owned())),
            };
            narrowing::set_field(&mut entry, path, value);
        }
        out.push(entry);
    }
    changed.then_some(serde_json::Value::Array(out))
}

/// Flattens a JSON value into `(dotted.key, text)` pairs: nested objects
/// as `a.b`, arrays as `a.0`, `a.1`.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                flatten(&key(k), v, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                flatten(&key(&i.to_string()), v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

fn text_of(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// RFC 9396 authorization details, for people: a payment's amount and
/// creditor first, then every field of every entry as a definition list
/// (nested objects flattened to dotted keys). All of it escaped.
fn render_details(v: &serde_json::Value) -> String {
    let entries: Vec<&serde_json::Value> = match v {
        serde_json::Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut html = String::from("<h2>Authorization details</h2>");
    for (i, e) in entries.iter().enumerate() {
        let kind = e
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("(no type)");
        html.push_str(&format!(
            "<section class=\"detail\"><h3>{n}. {kind}</h3>",
            n = i + 1,
            kind = escape(kind)
        ));
        let amount = e.get("instructedAmount");
        let amount_text = text_of(amount.and_then(|a| a.get("amount")));
        let currency = text_of(amount.and_then(|a| a.get("currency"))).unwrap_or_default();
        let creditor = text_of(e.get("creditorName"));
        let iban = text_of(e.get("creditorAccount").and_then(|a| a.get("iban")));
        if amount_text.is_some() || creditor.is_some() || iban.is_some() {
            html.push_str("<p class=\"payment\">");
            if let Some(a) = &amount_text {
                html.push_str(&format!(
                    "Pay <strong class=\"amount\">{} {}</strong>",
                    escape(a),
                    escape(&currency)
                ));
            } else {
                html.push_str("Pay");
            }
            if let Some(c) = &creditor {
                html.push_str(&format!(
                    " to <strong class=\"creditor\">{}</strong>",
                    escape(c)
                ));
            }
            if let Some(iban) = &iban {
                html.push_str(&format!(
                    " (IBAN <span class=\"iban\">{}</span>)",
                    escape(iban)
                ));
            }
            html.push_str("</p>");
        }
        let mut fields = Vec::new();
        flatten("", e, &mut fields);
        html.push_str("<dl>");
        for (k, v) in fields {
            html.push_str(&format!("<dt>{}</dt><dd>{}</dd>", escape(&k), escape(&v)));
        }
        html.push_str("</dl></section>");
    }
    html
}

/// Four eyes: the progress and who approved what.
fn render_approvals(d: &DeferralRecord, approvals: &[Approval]) -> String {
    if d.approvals_required <= 1 && approvals.is_empty() {
        return String::new();
    }
    let items: String = approvals
        .iter()
        .map(|a| {
            let until = a
                .approved_until
                .map(|t| format!(", until {}", time_el(t, &rfc3339(t))))
                .unwrap_or_default();
            format!(
                "<li>{by} allowed <code>{scope}</code> at {at}{until}</li>",
                by = escape(&a.by),
                scope = escape(&a.scope),
                at = time_el(a.at, &rfc3339(a.at)),
            )
        })
        .collect();
    let list = if items.is_empty() {
        "<p>No approvals yet.</p>".to_owned()
    } else {
        format!("<ul>{items}</ul>")
    };
    format!(
        "<h2>Approvals</h2><p>{}</p>{list}",
        escape(&four_eyes(d, approvals))
    )
}

/// The audit trail, oldest first.
fn render_events(events: &[DeferralEvent]) -> String {
    if events.is_empty() {
        return String::new();
    }
    let items: String = events
        .iter()
        .map(|e| {
            let mut fields = Vec::new();
            if let Some(d) = &e.detail {
                flatten("", d, &mut fields);
            }
            let detail: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
                .collect();
            format!(
                "<li>{at} <strong>{kind}</strong>{by}{detail}</li>",
                at = time_el(e.at, &rfc3339(e.at)),
                kind = escape(&e.kind),
                by =
                    e.by.as_deref()
                        .map(|b| format!(" by {}", escape(b)))
                        .unwrap_or_default(),
                detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", detail.join(", "))
                },
            )
        })
        .collect();
    format!("<h2>Event log</h2><ol class=\"events\">{items}</ol>")
}

/// An `approved_until` field: RFC 3339, or a `datetime-local` value
/// (`2026-12-02T15:00`, read as UTC); empty is no limit.
fn parse_until(v: Option<&str>) -> Result<Option<i64>, String> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Some(t) = crate::clock::parse_rfc3339(v) {
        return Ok(Some(t));
    }
    let padded = match v.len() {
        16 => format!("{v}:00Z"),
        19 => format!("{v}Z"),
        _ => String::new(),
    };
    crate::clock::parse_rfc3339(&padded)
        .map(Some)
        .ok_or_else(|| "approved_until is not a time (use 2026-12-02T15:00 or RFC 3339)".to_owned())
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
            let rec = match state.store.deferral_by_id(&id).await {
                Ok(Some(d)) => d,
                Ok(None) => {
                    return page(
                        StatusCode::NOT_FOUND,
                        "Not found",
                        "<p>No such deferral.</p>",
                    )
                }
                Err(e) => return page(super::error::fault_status(e), "Error", "<p>Try again.</p>"),
            };
            let requested = Scope::parse(&rec.scope).unwrap_or_default();
            let kept: Vec<&str> = requested
                .iter()
                .filter(|s| p.get(&format!("scope_{s}")).is_some())
                .collect();
            if kept.is_empty() && !requested.is_empty() {
                Err(DecisionError::Invalid(
                    "tick at least one scope, or deny the request".into(),
                ))
            } else {
                match parse_until(p.get("approved_until")) {
                    Err(m) => Err(DecisionError::Invalid(m)),
                    Ok(until) => {
                        let req = deferrals::ApproveRequest {
                            scope: Some(kept.join(" ")),
                            approved_until: until,
                            authorization_details: narrowed_details(&state, &rec, &p),
                        };
                        deferrals::approve_narrowed(&state, &id, &req, &actor)
                            .await
                            .map(|_| "approved")
                    }
                }
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
        Err(DecisionError::NotPending(m)) => {
            // Lost a race, or came back to a stale page: say who decided.
            let m = match state.store.deferral_by_id(&id).await {
                Ok(Some(d)) if !d.effective_state(state.clock.now_ms()).is_pending() => {
                    let by = d
                        .decided_by
                        .as_ref()
                        .map(|b| format!(" by {b}"))
                        .unwrap_or_default();
                    format!(
                        "already decided: {}{by}",
                        d.effective_state(state.clock.now_ms())
                    )
                }
                _ => m,
            };
            redirect(&format!("{back}?error={}", urlencode(&m)))
        }
        Err(DecisionError::Invalid(m)) => redirect(&format!("{back}?error={}", urlencode(&m))),
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
