//! `GET`/`POST /ciba`: the user's side of CIBA (the "authentication
//! device", OpenID CIBA Core 1.0 section 2). Signed in, the user sees the
//! backchannel requests waiting for them, each with its client, scope and
//! binding message (section 7.1: the same text the client shows, so the
//! user can tell the request is the one in front of them), and approves or
//! denies each with a CSRF-protected POST of their session. A request is
//! decided once, by the user or by an admin or routed reviewer in the
//! admin API who stands for them.

use super::form::Form;
use super::html::{escape, page};
use crate::deferrals::DecisionError;
use crate::grants::StoredGrant;
use crate::session;
use crate::state::AppState;
use crate::store::{DeferralFilter, DeferralRecord};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dtr_proto::deferral::DeferralState;

/// How many waiting requests the page lists.
const LIST_LIMIT: u32 = 50;

fn binding_message(d: &DeferralRecord) -> Option<String> {
    match StoredGrant::of(&d.grant_type, d.grant_context.as_ref()) {
        Ok(StoredGrant::Ciba(ctx)) => ctx.binding_message,
        _ => None,
    }
}

fn fault(e: impl Into<crate::error::Error>) -> Response {
    page(
        super::error::fault_status(e),
        "Error",
        "<p>Something went wrong. Try again.</p>",
    )
}

/// The list of the signed-in user's waiting requests.
pub async fn show(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(user) = session::current_user(&state, &headers).await else {
        return session::login_redirect(dtr_proto::paths::CIBA);
    };
    let filter = DeferralFilter {
        state: Some(DeferralState::Pending),
        subject: Some(user.username.clone()),
        grant_type: Some(dtr_proto::GRANT_TYPE_CIBA.into()),
        limit: LIST_LIMIT,
        ..Default::default()
    };
    let waiting = match state
        .store
        .list_deferrals(&filter, state.clock.now_ms())
        .await
    {
        Ok(w) => w,
        Err(e) => return fault(e),
    };
    let csrf = session::csrf_token(&state, &user);
    let now = state.clock.now_ms();
    let items: String = waiting
        .iter()
        .map(|d| {
            let message = binding_message(d)
                .map(|m| format!("<p>Code shown by the application: <strong class=\"binding\">{}</strong></p>", escape(&m)))
                .unwrap_or_default();
            format!(
                "<li><p><strong>{client}</strong> asks you to sign in and allow <code>{scope}</code> \
                 (expires in {mins} min).</p>{message}\
                 <form method=\"post\" action=\"{action}\">\
                 <input type=\"hidden\" name=\"id\" value=\"{id}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button name=\"decision\" value=\"approve\">Approve</button> \
                 <button name=\"decision\" value=\"deny\">Deny</button></form></li>",
                client = escape(&d.client_id),
                scope = escape(&d.scope),
                mins = ((d.expires_at - now).max(0) + 59_999) / 60_000,
                action = dtr_proto::paths::CIBA,
                id = escape(&d.id),
                csrf = escape(&csrf),
            )
        })
        .collect();
    let body = if items.is_empty() {
        format!(
            "<p>Signed in as <strong>{}</strong>. No request is waiting for you.</p>",
            escape(&user.username)
        )
    } else {
        format!(
            "<p>Signed in as <strong>{}</strong>. Check that the code matches what the application shows.</p><ul>{items}</ul>",
            escape(&user.username)
        )
    };
    page(StatusCode::OK, "Requests waiting for you", &body)
}

/// The user's decision of one request.
pub async fn decide(State(state): State<AppState>, headers: HeaderMap, Form(p): Form) -> Response {
    let user =
        match super::html::form_user(&state, &headers, p.get("csrf"), "Sign in and try again.")
            .await
        {
            Ok(u) => u,
            Err(refused) => return refused,
        };
    let approve = match p.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "Request refused",
                "<p>Choose approve or deny.</p>",
            )
        }
    };
    let Some(id) = p.get("id") else {
        return page(
            StatusCode::BAD_REQUEST,
            "Request refused",
            "<p>The form is incomplete.</p>",
        );
    };
    match crate::deferrals::decide_ciba(&state, id, &user.username, approve).await {
        Ok(_) => {
            tracing::info!(deferral = %id, user = %user.username, approve, "CIBA request decided by the user");
            session::see_other(dtr_proto::paths::CIBA)
        }
        Err(DecisionError::NotFound) => page(
            StatusCode::NOT_FOUND,
            "Nothing to do here",
            "<p>This request is unknown or not yours.</p>",
        ),
        Err(DecisionError::NotPending(_)) => page(
            StatusCode::CONFLICT,
            "Already decided",
            "<p>This request was already decided, cancelled or has expired.</p>",
        ),
        Err(DecisionError::Store(e)) => fault(e),
        Err(DecisionError::Invalid(m)) => page(
            StatusCode::BAD_REQUEST,
            "Request refused",
            &format!("<p>{}</p>", escape(&m)),
        ),
        Err(DecisionError::Forbidden) => page(
            StatusCode::FORBIDDEN,
            "Not yours",
            "<p>This request is decided by other people.</p>",
        ),
    }
}
