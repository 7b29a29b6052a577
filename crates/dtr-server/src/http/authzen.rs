//! The AuthZEN surface of dtr: its metadata and ARAP access request
//! endpoint (`/access/v1/requests`, see [`crate::access_requests`]), and
//! where ARAP access request services call
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

/// `GET /.well-known/authzen-configuration`: dtr's AuthZEN metadata,
/// listing its `access_request_endpoint` (ARAP "PDP Metadata").
pub async fn configuration(State(state): State<AppState>) -> Response {
    axum::Json(crate::arap::metadata(&state.issuer)).into_response()
}

fn problem(p: &crate::arap::Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = serde_json::json!({
        "type": p.kind,
        "status": p.status,
        "detail": p.detail,
    });
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    r
}

fn answer(
    r: Result<serde_json::Value, crate::access_requests::Failure>,
    ok: StatusCode,
) -> Response {
    use crate::access_requests::Failure;
    match r {
        Ok(v) => {
            let mut resp = (ok, axum::Json(&v)).into_response();
            super::error::no_store(&mut resp);
            if ok == StatusCode::ACCEPTED || ok == StatusCode::CREATED {
                if let Some(loc) = v["task"]["status_endpoint"]
                    .as_str()
                    .and_then(|s| axum::http::HeaderValue::from_str(s).ok())
                {
                    resp.headers_mut().insert(axum::http::header::LOCATION, loc);
                }
            }
            resp
        }
        Err(Failure::Problem(p)) => problem(&p),
        Err(Failure::Fault(e)) => e.into_response(),
    }
}

/// The submitting enforcement point (ARAP "Endpoint Protection"): a
/// registered confidential client, authenticated with HTTP Basic
/// (`client_secret_basic`), or presenting an RFC 6750 bearer access
/// token dtr issued to it for itself (client credentials: `sub` is its
/// `client_id`; not sender-constrained, which would need its proof).
async fn enforcement_point(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    path: &str,
) -> Result<std::sync::Arc<crate::store::ClientRecord>, Response> {
    let refused = |why: &'static str| {
        crate::error::Error::from(dtr_proto::OAuthError::with_description(
            dtr_proto::ErrorCode::InvalidClient,
            why,
        ))
        .into_response()
    };
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(token) = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
    {
        let claims = crate::tokens::verify_live(state, token.trim())
            .await
            .map_err(IntoResponse::into_response)?
            .ok_or_else(|| refused("the access token is not valid"))?;
        let client_id = claims["client_id"].as_str().unwrap_or_default();
        if claims["sub"].as_str() != Some(client_id) || claims.get("cnf").is_some() {
            return Err(refused(
                "the access token must be the client's own, unbound",
            ));
        }
        return match state.store.get_client(client_id).await {
            Ok(Some(c)) if c.enabled && c.auth_method != "none" => Ok(std::sync::Arc::new(c)),
            Ok(_) => Err(refused("the client may not submit access requests")),
            Err(e) => Err(crate::error::Error::from(e).into_response()),
        };
    }
    let none = dtr_proto::params::Params::default();
    let client = state
        .client_auth()
        .authenticate(headers, &none, path)
        .await
        .map_err(IntoResponse::into_response)?;
    if client.auth_method == "none" {
        return Err(refused(
            "access requests need an authenticated confidential client",
        ));
    }
    Ok(client)
}

/// `POST /access/v1/requests` (ARAP "Access Request Submission"): 202
/// with the task (201 when it is already terminal), `Location` its
/// status endpoint.
pub async fn submit(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let client = match enforcement_point(&state, &headers, dtr_proto::paths::ACCESS_REQUESTS).await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    let json_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !json_type {
        return problem(&crate::arap::Problem::bad(
            "Content-Type must be application/json",
        ));
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return problem(&crate::arap::Problem::bad("the body is not JSON"));
    };
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    if key.is_some_and(|k| k.contains('\u{0}')) {
        return problem(&crate::arap::Problem::bad(
            "Idempotency-Key: printable characters only",
        ));
    }
    let r = crate::access_requests::submit(&state, &client, &value, key).await;
    let status = match &r {
        Ok(v) if v["task"]["status"] != "pending" => StatusCode::CREATED,
        _ => StatusCode::ACCEPTED,
    };
    answer(r, status)
}

/// `GET /access/v1/requests/{id}` (ARAP "Task Status Endpoint").
pub async fn status(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let client = match enforcement_point(&state, &headers, dtr_proto::paths::ACCESS_REQUESTS).await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    answer(
        crate::access_requests::status(&state, &client, &id).await,
        StatusCode::OK,
    )
}

/// `POST` (or `DELETE`) `/access/v1/requests/{id}/cancel` (ARAP
/// "Cancellation").
pub async fn cancel(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let client = match enforcement_point(&state, &headers, dtr_proto::paths::ACCESS_REQUESTS).await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    answer(
        crate::access_requests::cancel(&state, &client, &id).await,
        StatusCode::OK,
    )
}
