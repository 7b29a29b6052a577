//! `/review/tokens`: a reviewer's own personal API tokens in the console.
//! They create one (shown once, stored only as its SHA-256, see
//! [`crate::identity`]), see when theirs were made, and revoke them; the
//! revocation holds at once on every node. An admin-token session has no
//! user to own tokens: admins create them for users through the admin API.

use super::form::Form;
use super::html::{escape, page};
use super::review::reviewer;
use crate::approvers::Actor;
use crate::clock::rfc3339;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

/// The signed-in user who owns tokens here, or the page saying why not.
async fn owner(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(super::review::Reviewer, String), Response> {
    let Some(rv) = reviewer(state, headers).await else {
        return Err(page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            "<p><a href=\"/review\">Sign in to the review console</a> first.</p>",
        ));
    };
    let Actor::User(u) = &rv.actor else {
        return Err(page(
            StatusCode::FORBIDDEN,
            "No personal tokens",
            "<p>This session uses the admin token, which owns no personal tokens. Admins create them for users with <code>POST /admin/users/{username}/tokens</code>.</p>",
        ));
    };
    let name = u.username.clone();
    Ok((rv, name))
}

/// The page: the user's tokens with a revoke button each, and a form to
/// create one; `fresh` is a token just created, shown this once.
async fn render(
    state: &AppState,
    rv: &super::review::Reviewer,
    username: &str,
    fresh: Option<&str>,
    status: StatusCode,
) -> Response {
    let tokens = match state.store.list_user_tokens(username).await {
        Ok(t) => t,
        Err(e) => {
            return page(
                super::error::fault_status(e),
                "Error",
                "<p>Your tokens could not be read. Try again.</p>",
            )
        }
    };
    let csrf = escape(&rv.csrf());
    let mut body = String::from("<p><a href=\"/review\">Back to the queue</a></p>");
    if let Some(t) = fresh {
        body.push_str(&format!(
            "<div role=\"status\"><p><strong>Your new token, shown only now:</strong></p>\
             <p><label for=\"fresh\">Token</label> <input id=\"fresh\" readonly size=\"60\" value=\"{}\"></p>\
             <p>Send it as <code>Authorization: Bearer &lt;token&gt;</code> to the admin API.</p></div>",
            escape(t)
        ));
    }
    body.push_str("<h2>Your tokens</h2>");
    let live: Vec<_> = tokens.iter().filter(|t| t.revoked_at.is_none()).collect();
    if live.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str(
            "<table><caption>Personal API tokens</caption><thead><tr><th scope=\"col\">Id</th>\
             <th scope=\"col\">Created</th><th scope=\"col\">Action</th></tr></thead><tbody>",
        );
        for t in live {
            let id = escape(&t.id);
            body.push_str(&format!(
                "<tr><th scope=\"row\"><code>{id}</code></th><td><time datetime=\"{at}\">{at}</time></td>\
                 <td><form method=\"post\" action=\"/review/tokens/{id}/revoke\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" aria-label=\"Revoke token {id}\">Revoke</button></form></td></tr>",
                at = escape(&rfc3339(t.created_at)),
            ));
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(&format!(
        "<h2>New token</h2><form method=\"post\" action=\"/review/tokens\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">Create a personal token</button></form>"
    ));
    // `page` escapes the title.
    page(status, &format!("Tokens of {username}"), &body)
}

/// `GET /review/tokens`.
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match owner(&state, &headers).await {
        Ok((rv, name)) => render(&state, &rv, &name, None, StatusCode::OK).await,
        Err(r) => r,
    }
}

/// `POST /review/tokens`: creates one, shown once.
pub async fn create(State(state): State<AppState>, headers: HeaderMap, Form(p): Form) -> Response {
    let (rv, name) = match owner(&state, &headers).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if !rv.csrf_ok(p.get("csrf")) {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<p>The form was stale. Go back and reload.</p>",
        );
    }
    match crate::identity::create_token(&state, &name).await {
        Ok((record, token)) => {
            tracing::info!(user = %name, token = %record.id, "personal token created in the console");
            render(
                &state,
                &rv,
                &name,
                Some(token.secret()),
                StatusCode::CREATED,
            )
            .await
        }
        Err(e) => page(
            super::error::fault_status(e),
            "Error",
            "<p>The token could not be created. Try again.</p>",
        ),
    }
}

/// `POST /review/tokens/{id}/revoke`: only the user's own.
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(p): Form,
) -> Response {
    let (rv, name) = match owner(&state, &headers).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if !rv.csrf_ok(p.get("csrf")) {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<p>The form was stale. Go back and reload.</p>",
        );
    }
    match state
        .store
        .revoke_user_token(&name, &id, state.clock.now_ms())
        .await
    {
        Ok(true) => {
            tracing::info!(user = %name, token = %id, "personal token revoked in the console");
            render(&state, &rv, &name, None, StatusCode::OK).await
        }
        Ok(false) => page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<p>You have no such token. <a href=\"/review/tokens\">Back</a></p>",
        ),
        Err(e) => page(
            super::error::fault_status(e),
            "Error",
            "<p>The token could not be revoked. Try again.</p>",
        ),
    }
}
