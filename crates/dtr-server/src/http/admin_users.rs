//! The admin API for users, their consents, their sessions and their
//! personal API tokens. Disabling a user, revoking a consent or ending
//! sessions makes every grant resting on it stale: pending deferrals of
//! those grants end in `access_denied` at redemption, never in a token
//! (DTR-23). A personal token is shown once, at creation, and revoked at
//! once on every node (each use reads the store, see [`crate::identity`]).

use super::error::{json_no_store, AdminError};
use crate::clock::rfc3339;
use crate::state::AppState;
use crate::store::{ConsentRecord, UserRecord, UserTokenRecord};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde_json::{json, Value};

/// The routes; the caller puts them behind the admin token check.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list))
        .route("/admin/users/{username}/disable", post(disable))
        .route("/admin/users/{username}/enable", post(enable))
        .route("/admin/users/{username}/consents", get(consents))
        .route(
            "/admin/users/{username}/consents/{client_id}",
            delete(revoke_consent),
        )
        .route("/admin/users/{username}/sessions/end", post(end_sessions))
        .route(
            "/admin/users/{username}/tokens",
            get(list_tokens).post(create_token),
        )
        .route("/admin/users/{username}/tokens/{id}", delete(revoke_token))
}

fn user_json(u: &UserRecord) -> Value {
    json!({
        "username": u.username,
        "enabled": u.is_active(),
        "configured_enabled": u.enabled,
        "admin_disabled": u.admin_disabled,
        "roles": u.roles,
        "groups": u.groups,
        "name": u.name,
        "email": u.email,
    })
}

fn token_json(t: &UserTokenRecord) -> Value {
    let mut v = json!({ "id": t.id, "created_at": rfc3339(t.created_at) });
    if let Some(r) = t.revoked_at {
        v["revoked_at"] = rfc3339(r).into();
    }
    v
}

fn consent_json(c: &ConsentRecord) -> Value {
    json!({ "client_id": c.client_id, "scope": c.scope, "granted_at": rfc3339(c.granted_at) })
}

async fn known(state: &AppState, username: &str) -> Result<UserRecord, AdminError> {
    state
        .store
        .get_user(username)
        .await?
        .ok_or(AdminError::NotFound)
}

async fn list(State(state): State<AppState>) -> Result<Response, AdminError> {
    let all = state.store.list_users().await?;
    Ok(json_no_store(
        StatusCode::OK,
        &all.iter().map(user_json).collect::<Vec<_>>(),
    ))
}

async fn set_disabled(
    state: &AppState,
    username: &str,
    disabled: bool,
) -> Result<Response, AdminError> {
    if !state
        .store
        .set_user_admin_disabled(username, disabled)
        .await?
    {
        return Err(AdminError::NotFound);
    }
    tracing::info!(user = %username, disabled, "user admin override changed");
    Ok(json_no_store(
        StatusCode::OK,
        &user_json(&known(state, username).await?),
    ))
}

async fn disable(
    State(state): State<AppState>,
    Path(username): Path<String>,
) -> Result<Response, AdminError> {
    set_disabled(&state, &username, true).await
}

async fn enable(
    State(state): State<AppState>,
    Path(username): Path<String>,
) -> Result<Response, AdminError> {
    set_disabled(&state, &username, false).await
}

async fn consents(
    State(state): State<AppState>,
    Path(username): Path<String>,
) -> Result<Response, AdminError> {
    known(&state, &username).await?;
    let all = state.store.list_consents(&username).await?;
    Ok(json_no_store(
        StatusCode::OK,
        &all.iter().map(consent_json).collect::<Vec<_>>(),
    ))
}

async fn revoke_consent(
    State(state): State<AppState>,
    Path((username, client_id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    if !state.store.revoke_consent(&username, &client_id).await? {
        return Err(AdminError::NotFound);
    }
    tracing::info!(user = %username, client = %client_id, "consent revoked");
    Ok(json_no_store(StatusCode::OK, &json!({ "revoked": true })))
}

async fn end_sessions(
    State(state): State<AppState>,
    Path(username): Path<String>,
) -> Result<Response, AdminError> {
    known(&state, &username).await?;
    let n = state
        .store
        .end_user_sessions(&username, state.clock.now_ms())
        .await?
        + state.store.delete_user_console_sessions(&username).await?;
    tracing::info!(user = %username, ended = n, "sessions ended");
    Ok(json_no_store(StatusCode::OK, &json!({ "ended": n })))
}

async fn list_tokens(
    State(state): State<AppState>,
    Path(username): Path<String>,
) -> Result<Response, AdminError> {
    known(&state, &username).await?;
    let all = state.store.list_user_tokens(&username).await?;
    Ok(json_no_store(
        StatusCode::OK,
        &all.iter().map(token_json).collect::<Vec<_>>(),
    ))
}

/// 201 `{"id", "token"}`: the only time the token is shown.
async fn create_token(
    State(state): State<AppState>,
    Path(username): Path<String>,
) -> Result<Response, AdminError> {
    known(&state, &username).await?;
    let (record, token) = crate::identity::create_token(&state, &username).await?;
    tracing::info!(user = %username, token_id = %record.id, "personal token created");
    Ok(json_no_store(
        StatusCode::CREATED,
        &json!({ "id": record.id, "token": token.secret() }),
    ))
}

/// 204 once revoked (again: still 204), 404 when the user has no such
/// token.
async fn revoke_token(
    State(state): State<AppState>,
    Path((username, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    if !state
        .store
        .revoke_user_token(&username, &id, state.clock.now_ms())
        .await?
    {
        return Err(AdminError::NotFound);
    }
    tracing::info!(user = %username, token_id = %id, "personal token revoked");
    let mut r = StatusCode::NO_CONTENT.into_response();
    super::error::no_store(&mut r);
    Ok(r)
}
