//! The HTTP layer: thin handlers over the protocol and storage logic, one
//! router that tests drive directly with `oneshot`.

pub mod admin;
pub mod admin_users;
pub mod authorize;
pub mod authzen;
pub mod bc_authorize;
pub mod body;
pub mod ciba;
pub mod demo;
pub mod device;
pub mod discovery;
pub mod error;
pub mod form;
pub mod html;
pub mod interact;
pub mod introspect;
pub mod login;
pub mod observe;
pub mod protected;
pub mod register;
pub mod review;
pub mod review_tokens;
pub mod revoke;
pub mod server;
pub mod throttle_source;
pub mod token;
pub mod userinfo;

use crate::state::AppState;
use axum::routing::{get, post};
use axum::Router;
use dtr_proto::paths;

/// The whole application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(paths::METADATA, get(discovery::metadata_doc))
        .route(
            paths::OPENID_CONFIGURATION,
            get(discovery::openid_configuration),
        )
        .route(
            paths::USERINFO,
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route(paths::JWKS, get(discovery::jwks))
        .route(paths::HEALTHZ, get(discovery::healthz))
        .route(paths::METRICS, get(observe::metrics_doc))
        .route(paths::TOKEN, post(token::token))
        .route(paths::REVOKE, post(revoke::revoke))
        .route(paths::INTROSPECT, post(introspect::introspect))
        .route(demo::PATH, get(demo::resource))
        .route(paths::REGISTER, post(register::register))
        .route(
            &format!("{}/{{client_id}}", paths::REGISTER),
            get(register::read)
                .put(register::update)
                .delete(register::delete),
        )
        .route(
            &format!("{}/{{handle}}", paths::INTERACT),
            get(interact::show).post(interact::decide),
        )
        .route(paths::LOGIN, get(login::show).post(login::login))
        .route(paths::AUTHORIZE, get(authorize::authorize))
        .route(paths::AUTHORIZE_CONSENT, post(authorize::consent))
        .route(paths::PAR, post(authorize::par))
        .route(paths::LOGOUT, post(login::logout))
        .route(
            paths::DEVICE_AUTHORIZATION,
            post(device::device_authorization),
        )
        .route(paths::DEVICE, get(device::show).post(device::decide))
        .route(
            &format!("{}/{{secret}}", paths::AUTHZEN_CALLBACK),
            post(authzen::callback),
        )
        .route(paths::AUTHZEN_CONFIGURATION, get(authzen::configuration))
        .route(paths::ACCESS_REQUESTS, post(authzen::submit))
        .route(
            &format!("{}/{{id}}", paths::ACCESS_REQUESTS),
            get(authzen::status),
        )
        .route(
            &format!("{}/{{id}}/cancel", paths::ACCESS_REQUESTS),
            post(authzen::cancel).delete(authzen::cancel),
        )
        .route(paths::BC_AUTHORIZE, post(bc_authorize::bc_authorize))
        .route(paths::CIBA, get(ciba::show).post(ciba::decide))
        .merge(admin::router(state.clone()))
        .merge(review::router())
        // The source address the throttles key on.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            throttle_source::remember_source,
        ))
        // Bodies bounded in size and time, refused as OAuth JSON errors.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body::bounded_body,
        ))
        // Request id, span, access log line and request metrics; see
        // `observe` for what may be logged (DTR-36).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}
