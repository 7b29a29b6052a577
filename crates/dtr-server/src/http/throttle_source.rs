//! The layer that tells the throttles where a request comes from (see
//! [`crate::throttle`]).

use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use std::time::Duration;

/// Layer of every route: remembers the request's peer address (from
/// `ConnectInfo`, which `serve` provides) for the duration of the request,
/// so the checks deep inside client authentication need no plumbing
/// through every handler. Requests without `ConnectInfo` (the router
/// driven directly) count as one unknown source.
///
/// A request answered with a throttle's refusal is held for
/// `throttle.refusal_delay_ms` before its answer leaves (a tarpit): cheap
/// as a refusal is, a closed loop of guesses would otherwise get one as
/// fast as the server can answer and fill its cores with them, and the
/// legitimate requests queue behind (benchmark row 7).
pub async fn remember_source(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (resp, refused) = crate::throttle::with_source(addr, next.run(req)).await;
    let delay = state.config.throttle.refusal_delay_ms;
    if refused && delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    resp
}
