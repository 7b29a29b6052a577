//! The HTTP layer: thin handlers over the protocol and storage logic, one
//! router that tests drive directly with `oneshot`.

pub mod admin;
pub mod discovery;
pub mod error;
pub mod form;
pub mod interact;
pub mod introspect;
pub mod revoke;
pub mod token;

use crate::state::AppState;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use dtr_proto::paths;

/// The whole application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(paths::METADATA, get(discovery::metadata_doc))
        .route(paths::JWKS, get(discovery::jwks))
        .route(paths::HEALTHZ, get(discovery::healthz))
        .route(paths::TOKEN, post(token::token))
        .route(paths::REVOKE, post(revoke::revoke))
        .route(paths::INTROSPECT, post(introspect::introspect))
        .route(
            &format!("{}/{{handle}}", paths::INTERACT),
            get(interact::show).post(interact::decide),
        )
        .merge(admin::router(state.clone()))
        .layer(axum::middleware::from_fn(access_log))
        .with_state(state)
}

/// One log line per request with the route template, never the concrete
/// path or query: interaction handles live in paths, and nothing secret
/// may reach the logs (DTR-36).
async fn access_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(
        %method,
        route = route.as_deref().unwrap_or("<unmatched>"),
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}
