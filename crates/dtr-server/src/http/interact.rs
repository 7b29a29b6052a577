//! The page behind an `interaction_uri` (DTR-11): shows what the client
//! asks for and lets a configured user log in and approve or deny.
//! Opening the page decides nothing; the decision is a POST with the
//! user's credentials, and the handle is consumed by it (single use). The
//! handle lives no longer than its deferral.

use super::form::Form;
use crate::state::AppState;
use crate::store::DeferralRecord;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use super::html::{escape, page};
use axum::response::Response;

fn gone() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Nothing to do here",
        "<p>This link is unknown, was already used, or has expired.</p>",
    )
}

async fn live(state: &AppState, handle: &str) -> Option<DeferralRecord> {
    let d = state
        .store
        .deferral_by_interaction(handle)
        .await
        .ok()
        .flatten()?;
    d.effective_state(state.clock.now_ms())
        .is_pending()
        .then_some(d)
}

/// `GET /interact/{handle}`: shows the request; changes nothing.
pub async fn show(State(state): State<AppState>, Path(handle): Path<String>) -> Response {
    let Some(d) = live(&state, &handle).await else {
        return gone();
    };
    let details = d
        .authorization_details
        .as_ref()
        .map(|a| {
            format!(
                "<dt>Authorization details</dt><dd><pre>{}</pre></dd>",
                escape(&a.to_string())
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<p>An application asks for access that needs your decision.</p>\
         <dl><dt>Application</dt><dd>{client}</dd><dt>Access requested</dt><dd>{scope}</dd>{details}</dl>\
         <form method=\"post\">\
         <label>Username <input name=\"username\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button name=\"decision\" value=\"approve\">Approve</button>\
         <button name=\"decision\" value=\"deny\">Deny</button></form>",
        client = escape(&d.client_id),
        scope = escape(if d.scope.is_empty() { "(no scope)" } else { &d.scope }),
    );
    page(StatusCode::OK, "Review access request", &body)
}

/// `POST /interact/{handle}`: the user's decision.
pub async fn decide(
    State(state): State<AppState>,
    Path(handle): Path<String>,
    Form(p): Form,
) -> Response {
    if live(&state, &handle).await.is_none() {
        return gone();
    }
    let (Some(user), Some(pass)) = (p.get("username"), p.get("password")) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Missing credentials",
            "<p>Enter your username and password.</p>",
        );
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
    if !state.verify_user(user, pass).await {
        return page(
            StatusCode::UNAUTHORIZED,
            "Login failed",
            "<p>Wrong username or password. Go back and try again.</p>",
        );
    }
    let now = state.clock.now_ms();
    match state
        .store
        .resolve_interaction(&handle, approve, &format!("user:{user}"), now)
        .await
    {
        Ok(true) => {
            tracing::info!(user = %user, approve, "deferral decided at interaction page");
            state.callback_wake.notify_one();
            state.metrics.deferrals_resolved(
                if approve {
                    crate::metrics::Resolution::Approved
                } else {
                    crate::metrics::Resolution::Denied
                },
                1,
            );
            let (title, text) = if approve {
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
        Err(e) => {
            tracing::error!(error = %e, "interaction decision failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                "<p>Something went wrong. Try again.</p>",
            )
        }
    }
}
