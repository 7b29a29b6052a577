//! `GET /.well-known/oauth-authorization-server` (RFC 8414, DTR-7),
//! `GET /jwks.json` and `GET /healthz`.

use crate::config::SUPPORTED_GRANT_TYPES;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dtr_proto::metadata::AuthorizationServerMetadata;
use dtr_proto::paths;
use std::collections::BTreeSet;

/// Builds the metadata document from the shared path constants.
pub fn metadata(state: &AppState) -> AuthorizationServerMetadata {
    let url = |p: &str| format!("{}{}", state.issuer, p);
    let mut grants: Vec<String> = SUPPORTED_GRANT_TYPES
        .iter()
        .map(|s| s.to_string())
        .collect();
    grants.push(dtr_proto::GRANT_TYPE_DEFERRED.into());
    let auth_methods: Vec<String> = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let scopes: BTreeSet<String> = state
        .config
        .clients
        .iter()
        .flat_map(|c| c.scope.iter().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let mut other = serde_json::Map::new();
    // RFC 8414 section 2: algorithms of private_key_jwt assertions.
    other.insert(
        "token_endpoint_auth_signing_alg_values_supported".into(),
        serde_json::json!(dtr_proto::dpop::SUPPORTED_ALGS),
    );
    // OAuth 2.1 section 4.1 with PKCE S256 only, RFC 9126, RFC 9207.
    other.insert(
        "authorization_endpoint".into(),
        serde_json::json!(url(paths::AUTHORIZE)),
    );
    other.insert(
        "pushed_authorization_request_endpoint".into(),
        serde_json::json!(url(paths::PAR)),
    );
    other.insert(
        "code_challenge_methods_supported".into(),
        serde_json::json!(["S256"]),
    );
    other.insert(
        "authorization_response_iss_parameter_supported".into(),
        serde_json::json!(true),
    );
    // OAuth 2.0 Form Post Response Mode; `fragment` is not offered.
    other.insert(
        "response_modes_supported".into(),
        serde_json::json!(["query", "form_post"]),
    );
    // RFC 9101 section 10.5 (via RFC 8414): signed request objects by
    // value, with the algorithms of client keys; never by reference to an
    // arbitrary URL (only PAR's own `request_uri`).
    other.insert(
        "request_parameter_supported".into(),
        serde_json::json!(true),
    );
    other.insert(
        "request_uri_parameter_supported".into(),
        serde_json::json!(false),
    );
    other.insert(
        "request_object_signing_alg_values_supported".into(),
        serde_json::json!(dtr_proto::dpop::SUPPORTED_ALGS),
    );
    // Deferral at the authorization endpoint: the redirect may carry
    // `deferral_code` for a client that opted in.
    other.insert(
        "deferred_authorization_endpoint_supported".into(),
        serde_json::json!(true),
    );
    // RFC 8628 section 4.
    other.insert(
        "device_authorization_endpoint".into(),
        serde_json::json!(url(paths::DEVICE_AUTHORIZATION)),
    );
    // OpenID Connect Discovery 1.0 section 3.
    other.insert(
        "userinfo_endpoint".into(),
        serde_json::json!(url(paths::USERINFO)),
    );
    other.insert(
        "subject_types_supported".into(),
        serde_json::json!(["public"]),
    );
    other.insert(
        "id_token_signing_alg_values_supported".into(),
        serde_json::json!(dtr_proto::oidc::ID_TOKEN_ALGS),
    );
    other.insert(
        "claims_supported".into(),
        serde_json::json!(dtr_proto::oidc::CLAIMS_SUPPORTED),
    );
    other.insert(
        "claims_parameter_supported".into(),
        serde_json::json!(false),
    );
    other.insert(
        "prompt_values_supported".into(),
        serde_json::json!(["none", "login", "consent", "select_account"]),
    );
    // OpenID CIBA Core 1.0 section 4.
    other.insert(
        "backchannel_authentication_endpoint".into(),
        serde_json::json!(url(paths::BC_AUTHORIZE)),
    );
    other.insert(
        "backchannel_token_delivery_modes_supported".into(),
        serde_json::json!(["poll", "ping", "push"]),
    );
    // Section 7.1.1: signed authentication requests, verified like
    // request objects (RFC 9101) with the client's keys.
    other.insert(
        "backchannel_authentication_request_signing_alg_values_supported".into(),
        serde_json::json!(dtr_proto::dpop::SUPPORTED_ALGS),
    );
    other.insert(
        "backchannel_user_code_parameter_supported".into(),
        serde_json::json!(true),
    );
    // The deferral-to-CIBA bridge, an extension of this server.
    if state.config.ciba.bridge {
        other.insert(
            "dtr_ciba_deferral_bridge_supported".into(),
            serde_json::json!(true),
        );
        other.insert(
            "dtr_ciba_login_hint_token_prefix".into(),
            serde_json::json!(dtr_proto::ciba::DEFERRAL_HINT_PREFIX),
        );
    }
    if state.config.registration.enabled {
        // RFC 8414 section 2, RFC 7591.
        other.insert(
            "registration_endpoint".into(),
            serde_json::json!(url(paths::REGISTER)),
        );
    }
    AuthorizationServerMetadata {
        issuer: state.issuer.clone(),
        token_endpoint: Some(url(paths::TOKEN)),
        jwks_uri: Some(url(paths::JWKS)),
        revocation_endpoint: Some(url(paths::REVOKE)),
        introspection_endpoint: Some(url(paths::INTROSPECT)),
        scopes_supported: scopes.into_iter().collect(),
        response_types_supported: vec!["code".into()],
        grant_types_supported: grants,
        token_endpoint_auth_methods_supported: auth_methods.clone(),
        revocation_endpoint_auth_methods_supported: auth_methods.clone(),
        introspection_endpoint_auth_methods_supported: auth_methods,
        revocation_endpoint_token_type_values_supported: vec![
            dtr_proto::TOKEN_TYPE_HINT_ACCESS_TOKEN.into(),
            dtr_proto::TOKEN_TYPE_HINT_REFRESH_TOKEN.into(),
            dtr_proto::TOKEN_TYPE_DEFERRAL_CODE.into(),
        ],
        deferred_token_response_supported: true,
        dpop_signing_alg_values_supported: dtr_proto::dpop::SUPPORTED_ALGS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        other,
    }
}

/// The metadata endpoint.
pub async fn metadata_doc(State(state): State<AppState>) -> Json<AuthorizationServerMetadata> {
    Json(metadata(&state))
}

/// OpenID Connect Discovery 1.0 section 3: the same document (both carry
/// every member, DESIGN.md), at the path OpenID clients look.
pub async fn openid_configuration(
    State(state): State<AppState>,
) -> Json<AuthorizationServerMetadata> {
    Json(metadata(&state))
}

/// The JWKS endpoint: the access token key and the ID token RSA key.
pub async fn jwks(State(state): State<AppState>) -> Response {
    match crate::oidc::jwks(&state).await {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Liveness: answers 200 only when the database answers.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "database unavailable"})),
            )
                .into_response()
        }
    }
}
