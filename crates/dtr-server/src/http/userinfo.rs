//! `GET`/`POST /userinfo` (OpenID Connect Core 1.0 section 5.3): the
//! signed-in user's standard claims for an access token with `openid`,
//! presented as `Bearer` (RFC 6750) or `DPoP` (RFC 9449 section 7).

use super::protected;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use dtr_proto::oidc::SCOPE_OPENID;
use serde_json::Value;

/// The handler of both methods (section 5.3.1).
pub async fn userinfo(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let a = match protected::authorize(
        &state,
        &headers,
        method.as_str(),
        dtr_proto::paths::USERINFO,
    )
    .await
    {
        Ok(a) => a,
        Err(r) => return r,
    };
    let scope = a.claims.get("scope").and_then(Value::as_str).unwrap_or("");
    if !crate::oidc::is_openid(scope) {
        return protected::insufficient_scope(SCOPE_OPENID, a.dpop);
    }
    let sub = a.claims.get("sub").and_then(Value::as_str).unwrap_or("");
    // A token of a user who is gone or disabled names nobody any more;
    // verify_live already refused tokens revoked with their user.
    match state.store.get_user(sub).await {
        Ok(Some(u)) if u.is_active() => {}
        Ok(_) => {
            return protected::refuse(
                &dtr_proto::resource::ResourceError::InvalidToken("the user is no longer active"),
                a.dpop,
            )
        }
        Err(e) => {
            return crate::error::Error::from(e).into_response();
        }
    }
    let mut r = axum::Json(crate::oidc::userinfo(&state, sub, scope)).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}
