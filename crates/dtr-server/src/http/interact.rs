//! The page behind an `interaction_uri` (DTR-11): shows what the client
//! asks for to the signed-in user (through the login page first) and
//! records approve or deny. Opening the page decides nothing; the decision
//! is a CSRF-protected POST of the user's session, and the handle is
//! consumed by it (single use). The handle lives no longer than its
//! deferral, and only the user the request is about decides it
//! ([`crate::grants::deferred::page_decider`]): anyone else signed in gets a 403
//! page and the handle stays usable for that user; a deferral about no
//! user is left to admins. The handle is stored only as its SHA-256.

use super::form::Form;
use super::html::{escape, page};
use crate::approvers::Actor;
use crate::session;
use crate::state::AppState;
use crate::store::DeferralRecord;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

fn gone() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Nothing to do here",
        "<p>This link is unknown, was already used, or has expired.</p>",
    )
}

/// The signed-in user as the actor deciding `d` here, if they may;
/// otherwise the 403 page that says who does. Changes nothing, so the
/// handle stays usable for the right user.
async fn may_decide(
    state: &AppState,
    d: &DeferralRecord,
    username: &str,
) -> Result<Actor, Response> {
    let decided = async {
        let actor = crate::deferrals::user_actor(state, username).await?;
        let page_default = crate::grants::deferred::page_decider(state, d).await?;
        let ok =
            crate::deferrals::may_decide_at_page(state, d, &actor, page_default.as_deref()).await?;
        Ok::<_, crate::store::StoreError>((actor, ok, page_default))
    };
    match decided.await {
        Ok((actor, true, _)) => Ok(actor),
        Ok((_, false, page_default)) => {
            tracing::info!(deferral = %d.id, user = %username, "interaction page refused: not this user's to decide");
            Err(if d.approvers.is_empty() && page_default.is_none() {
                page(
                    StatusCode::FORBIDDEN,
                    "Decided by an administrator",
                    "<p>This request concerns no user who could decide it here: an administrator decides it.</p>",
                )
            } else {
                page(
                    StatusCode::FORBIDDEN,
                    "Not yours",
                    "<p>This request concerns another account, or is decided by other people. Sign in as one of them to decide it.</p>",
                )
            })
        }
        Err(e) => Err(page(
            super::error::fault_status(e),
            "Error",
            "<p>Something went wrong. Try again.</p>",
        )),
    }
}

async fn live(state: &AppState, handle: &str) -> Option<DeferralRecord> {
    let d = state
        .store
        .deferral_by_interaction(&crate::deferrals::interaction_handle_hash(handle))
        .await
        .ok()
        .flatten()?;
    d.effective_state(state.clock.now_ms())
        .is_pending()
        .then_some(d)
}

/// `GET /interact/{handle}`: shows the request to the signed-in user
/// (signing in first); changes nothing (DTR-11).
pub async fn show(
    State(state): State<AppState>,
    Path(handle): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(d) = live(&state, &handle).await else {
        return gone();
    };
    let Some(user) = session::current_user(&state, &headers).await else {
        return session::login_redirect(&format!("{}/{handle}", dtr_proto::paths::INTERACT));
    };
    if let Err(refused) = may_decide(&state, &d, &user.username).await {
        return refused;
    }
    // The user who decides now sees the request: the interaction has
    // begun, which polls report as `interaction_pending` (the server says
    // so only when it can observe it). Opening the page decides nothing.
    let now = state.clock.now_ms();
    match state.store.mark_interaction_started(&d.id, now).await {
        Ok(true) => {
            crate::lifecycle::record_event(
                &state,
                &d.id,
                "interaction_started",
                Some(&user.username),
                None,
                now,
            )
            .await;
        }
        Ok(false) => {}
        Err(e) => {
            return page(
                super::error::fault_status(e),
                "Error",
                "<p>Something went wrong. Try again.</p>",
            )
        }
    }
    let client = state.store.get_client(&d.client_id).await.ok().flatten();
    let name = client
        .as_ref()
        .and_then(|c| c.metadata.as_ref())
        .and_then(|m| m.get("client_name"))
        .and_then(|n| n.as_str())
        .unwrap_or(&d.client_id)
        .to_owned();
    let details = d
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
         <p>An application asks for access that needs your decision.</p>\
         <dl><dt>Application</dt><dd>{name} (<code>{client}</code>)</dd>\
         <dt>Access requested</dt><dd>{scope}</dd>{details}</dl>\
         <form method=\"post\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button name=\"decision\" value=\"approve\">Approve</button>\
         <button name=\"decision\" value=\"deny\">Deny</button></form>",
        user = escape(&user.username),
        name = escape(&name),
        client = escape(&d.client_id),
        scope = escape(if d.scope.is_empty() {
            "(no scope)"
        } else {
            &d.scope
        }),
        csrf = escape(&session::csrf_token(&state, &user)),
    );
    page(StatusCode::OK, "Review access request", &body)
}

/// `POST /interact/{handle}`: the signed-in user's decision, CSRF-checked;
/// consumes the handle (single use, DTR-11).
pub async fn decide(
    State(state): State<AppState>,
    Path(handle): Path<String>,
    headers: HeaderMap,
    Form(p): Form,
) -> Response {
    let Some(d) = live(&state, &handle).await else {
        return gone();
    };
    let session_user = match super::html::form_user(
        &state,
        &headers,
        p.get("csrf"),
        "Open the link again to sign in.",
    )
    .await
    {
        Ok(u) => u,
        Err(refused) => return refused,
    };
    let actor = match may_decide(&state, &d, &session_user.username).await {
        Ok(actor) => actor,
        Err(refused) => return refused,
    };
    let approve = match p.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "No decision",
                "<p>Choose approve or deny.</p>",
            )
        }
    };
    match crate::deferrals::decide_at_interaction(&state, &d, &handle, approve, &actor).await {
        Ok(true) => {
            let (title, text) = if approve && d.approvals_required > 1 {
                (
                    "Approval recorded",
                    "Your approval is recorded; the request needs more approvers before the application receives access.",
                )
            } else if approve {
                (
                    "Approved",
                    "The application will receive access when it next asks.",
                )
            } else {
                ("Denied", "The application's request was denied.")
            };
            page(
                StatusCode::OK,
                title,
                &format!("<p>{text} You can close this page.</p>"),
            )
        }
        Ok(false) => gone(),
        Err(crate::deferrals::DecisionError::Store(e)) => page(
            super::error::fault_status(e),
            "Error",
            "<p>Something went wrong. Try again.</p>",
        ),
        Err(crate::deferrals::DecisionError::Forbidden) => page(
            StatusCode::FORBIDDEN,
            "Not yours",
            "<p>You are not one of the people who decide this request.</p>",
        ),
        Err(
            crate::deferrals::DecisionError::NotPending(m)
            | crate::deferrals::DecisionError::Invalid(m),
        ) => page(
            StatusCode::CONFLICT,
            "Not applied",
            &format!("<p>{}</p>", escape(&m)),
        ),
        Err(crate::deferrals::DecisionError::NotFound) => gone(),
    }
}
