//! The AuthZEN surface of dtr: where ARAP access request services call
//! dtr back about the tasks it submitted (`POST /authzen/callback/{secret}`,
//! ARAP "Callback Completion"). The unguessable per-task path segment is
//! the callback's authentication (ARAP: "Unauthenticated callbacks MUST
//! NOT be accepted"); it is stored only as its SHA-256. A callback is only
//! a "poll now": the task's status endpoint stays authoritative.

use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// `POST /authzen/callback/{secret}`: 204 for a task of ours, 404 for
/// any other secret (nothing changes), 503 when the store fails.
pub async fn callback(State(state): State<AppState>, Path(secret): Path<String>) -> Response {
    if secret.len() > 128 {
        return StatusCode::NOT_FOUND.into_response();
    }
    match crate::authzen::tasks::callback(&state, &secret).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "ARAP callback could not be recorded");
            super::error::fault_status(e).into_response()
        }
    }
}
