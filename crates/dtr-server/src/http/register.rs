//! `POST /register` (RFC 7591) and `GET/PUT/DELETE /register/{client_id}`
//! (RFC 7592).

use super::error::json_no_store;
use crate::registration::{self, uses_secret, MetadataError};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::secret::{ct_eq, random_token, sha256_b64};
use serde_json::{json, Value};

/// Largest accepted registration document: 16 KiB holds every member we
/// keep with room to spare (a few redirect URIs, a JWKS of a few keys);
/// anything bigger is refused before it is parsed. The body is read only up
/// to this size.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;

fn metadata_error(e: MetadataError) -> Response {
    json_no_store(
        StatusCode::BAD_REQUEST,
        &json!({"error": e.error, "error_description": e.description}),
    )
}

fn unauthorized(desc: &str) -> Response {
    let mut r = json_no_store(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "invalid_token", "error_description": desc}),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer error="invalid_token""#),
    );
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn disabled() -> Response {
    json_no_store(
        StatusCode::FORBIDDEN,
        &json!({"error": "access_denied", "error_description": "dynamic client registration is disabled"}),
    )
}

/// Reads the body, at most [`MAX_DOCUMENT_BYTES`] of it.
async fn read_body(body: Body) -> Result<Bytes, MetadataError> {
    axum::body::to_bytes(body, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|_| MetadataError {
            error: "invalid_client_metadata",
            description: format!(
                "the registration document is larger than {MAX_DOCUMENT_BYTES} bytes"
            ),
        })
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, MetadataError> {
    let bad = |description: String| MetadataError {
        error: "invalid_client_metadata",
        description,
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    {
        return Err(bad("Content-Type must be application/json".into()));
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))
}

fn client_uri(state: &AppState, client_id: &str) -> String {
    format!(
        "{}{}/{}",
        state.issuer,
        dtr_proto::paths::REGISTER,
        client_id
    )
}

/// Whether the request may register: closed unless `registration.open`,
/// else only with the initial access token (RFC 7591 section 3). Fails
/// closed: with neither (which start-up refuses) nobody registers.
fn admitted(state: &AppState, headers: &HeaderMap) -> bool {
    let cfg = &state.config.registration;
    if cfg.open {
        return true;
    }
    let Some(expected) = &cfg.initial_access_token else {
        return false;
    };
    // Digests of equal length, compared in constant time.
    bearer(headers)
        .is_some_and(|t| ct_eq(sha256_b64(t).as_bytes(), sha256_b64(expected).as_bytes()))
}

/// `POST /register`.
pub async fn register(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    // Each registration stores a client: rate-limited per source address
    // (`throttle`), before anything else is looked at.
    if let Err(r) = state.throttle.registration(crate::throttle::source()) {
        return super::error::too_many_requests(r);
    }
    if !state.config.registration.enabled {
        return disabled();
    }
    if !admitted(&state, &headers) {
        return unauthorized("an initial access token is required to register");
    }
    let doc = match read_body(body).await.and_then(|b| parse_body(&headers, &b)) {
        Ok(v) => v,
        Err(e) => return metadata_error(e),
    };
    let v = match registration::validate(&state, &doc).await {
        Ok(v) => v,
        Err(e) => return metadata_error(e),
    };
    let client_id = format!("dyn_{}", random_token(12));
    // Generated, so high-entropy: a keyed hash, not Argon2 (module
    // `generated_secret`).
    let secret = uses_secret(v.auth_method).then(crate::generated_secret::generate);
    let secret_hash = secret
        .as_ref()
        .map(|s| state.clients.hash_generated(&client_id, s));
    let rat = random_token(32);
    let record = registration::record(&client_id, &v, secret_hash, sha256_b64(&rat));
    if let Err(e) = state.store.upsert_client(&record).await {
        return crate::error::Error::from(e).into_response();
    }
    state.clients.refresh(record);
    tracing::info!(client = %client_id, method = v.auth_method.as_str(), "client registered");
    let mut out = Value::Object(v.metadata);
    out["client_id"] = json!(client_id);
    out["client_id_issued_at"] = json!(state.clock.now_ms() / 1000);
    if let Some(s) = secret {
        out["client_secret"] = json!(s.secret());
        out["client_secret_expires_at"] = json!(0);
    }
    out["registration_access_token"] = json!(rat);
    out["registration_client_uri"] = json!(client_uri(&state, &client_id));
    json_no_store(StatusCode::CREATED, &out)
}

/// Authenticates an RFC 7592 request: the client's registration access
/// token. An unknown client and a wrong token look the same (section 2).
async fn managed(
    state: &AppState,
    headers: &HeaderMap,
    client_id: &str,
) -> Result<crate::store::ClientRecord, Response> {
    let token =
        bearer(headers).ok_or_else(|| unauthorized("registration access token required"))?;
    let client = state
        .store
        .get_client(client_id)
        .await
        .map_err(|e| crate::error::Error::from(e).into_response())?;
    match client {
        Some(c)
            if c.registration_token_hash
                .as_deref()
                .is_some_and(|h| ct_eq(h.as_bytes(), sha256_b64(token).as_bytes())) =>
        {
            Ok(c)
        }
        _ => Err(unauthorized("invalid registration access token")),
    }
}

fn read_answer(state: &AppState, c: &crate::store::ClientRecord) -> Value {
    let mut out = c.metadata.clone().unwrap_or_else(|| json!({}));
    out["client_id"] = json!(c.client_id);
    out["registration_client_uri"] = json!(client_uri(state, &c.client_id));
    out
}

/// `GET /register/{client_id}` (RFC 7592 section 2.1).
pub async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Response {
    match managed(&state, &headers, &client_id).await {
        Ok(c) => json_no_store(StatusCode::OK, &read_answer(&state, &c)),
        Err(r) => r,
    }
}

/// `PUT /register/{client_id}` (RFC 7592 section 2.2): replaces the
/// metadata; the secret and the registration token stay. Refused while
/// registration is disabled, as it is a registration by another name;
/// reading and deleting one's registration keep working.
pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Body,
) -> Response {
    if !state.config.registration.enabled {
        return disabled();
    }
    let existing = match managed(&state, &headers, &client_id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let doc = match read_body(body).await.and_then(|b| parse_body(&headers, &b)) {
        Ok(v) => v,
        Err(e) => return metadata_error(e),
    };
    if doc.get("client_id").and_then(Value::as_str) != Some(client_id.as_str()) {
        return metadata_error(MetadataError {
            error: "invalid_client_metadata",
            description: "client_id: must be present and equal to the client's".into(),
        });
    }
    let v = match registration::validate(&state, &doc).await {
        Ok(v) => v,
        Err(e) => return metadata_error(e),
    };
    // A change of authentication method cannot mint a secret silently.
    if uses_secret(v.auth_method) != existing.secret_hash.is_some() {
        return metadata_error(MetadataError {
            error: "invalid_client_metadata",
            description: "token_endpoint_auth_method: cannot switch between secret and non-secret methods; register a new client".into(),
        });
    }
    let mut record = registration::record(
        &client_id,
        &v,
        existing.secret_hash.clone(),
        existing.registration_token_hash.clone().unwrap_or_default(),
    );
    record.admin_disabled = existing.admin_disabled;
    if let Err(e) = state.store.upsert_client(&record).await {
        return crate::error::Error::from(e).into_response();
    }
    state.clients.refresh(record.clone());
    tracing::info!(client = %client_id, "client registration updated");
    json_no_store(StatusCode::OK, &read_answer(&state, &record))
}

/// `DELETE /register/{client_id}` (RFC 7592 section 2.3).
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Response {
    if let Err(r) = managed(&state, &headers, &client_id).await {
        return r;
    }
    match state.store.delete_client(&client_id).await {
        Ok(_) => {
            state.clients.remove(&client_id);
            tracing::info!(client = %client_id, "client registration deleted");
            let mut r = StatusCode::NO_CONTENT.into_response();
            super::error::no_store(&mut r);
            r
        }
        Err(e) => crate::error::Error::from(e).into_response(),
    }
}
