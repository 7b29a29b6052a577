//! Request observation: a request id per request (`x-request-id`), a
//! tracing span carrying it, one access log line and the request metrics;
//! and `GET /metrics`.
//!
//! Nothing here logs a concrete path, query, header value or body: only
//! the route template, method, status and outcome (DTR-36).

use crate::metrics::{self, GrantLabel, Outcome};
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

/// The request id header: taken from the request when sane, else made up,
/// and always echoed in the response.
pub const REQUEST_ID: &str = "x-request-id";

/// An incoming request id is kept only if it is short and made of
/// characters that cannot forge log lines or JSON fields.
fn sane_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    ((1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
    .then_some(s)
}

/// Request id, span, access log and metrics around every request.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(sane_request_id)
        .map(str::to_owned)
        .unwrap_or_else(|| dtr_proto::secret::random_token(12));
    let method = metrics::method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let span = tracing::info_span!("request", request_id = %request_id, method, route = %route);
    let started = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let outcome = metrics::outcome_label(resp.extensions().get::<Outcome>(), status);
    let grant = resp
        .extensions()
        .get::<GrantLabel>()
        .map_or("none", |g| g.0);
    span.in_scope(|| {
        tracing::debug!(
            status,
            outcome = %outcome,
            grant_type = grant,
            micros = elapsed.as_micros() as u64,
            "request"
        )
    });
    state
        .metrics
        .http_request(&route, method, grant, outcome, elapsed);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// `GET /metrics`: Prometheus text format, unauthenticated (README,
/// "Metrics and logs": keep it off public networks).
pub async fn metrics_doc(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let ok = HeaderValue::from_static("3f2c9a1e-77b0-4c1e-9a55-1b2c3d4e5f60");
        assert_eq!(sane_request_id(&ok), Some(ok.to_str().unwrap_or("")));
        for bad in ["", "has space", "quote\"", "{\"json\":1}"] {
            let v = HeaderValue::from_str(bad).ok();
            assert!(v.as_ref().and_then(sane_request_id).is_none(), "{bad}");
        }
        let long = HeaderValue::from_str(&"a".repeat(65)).ok();
        assert!(long.as_ref().and_then(sane_request_id).is_none());
    }
}
