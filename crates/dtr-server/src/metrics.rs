//! Prometheus metrics of the server, served at `GET /metrics`.
//!
//! Every recording goes through a method of [`Metrics`] so that handlers
//! and the deferral service stay at one line per event and the metric
//! names, label sets and buckets live in this one file.
//!
//! Each server state owns its own recorder (no process-global one): tests
//! run many servers in one process and each `/metrics` must only show its
//! own server.
//!
//! Labels never carry secrets or per-user values (DTR-36): `client_id` is
//! configuration, grant types and outcomes come from fixed lists, and a
//! value a client sends (an unknown `grant_type`, an odd HTTP method) is
//! folded into `other` so that nobody can grow the label set at will.
//!
//! Not recorded yet: database pool usage (PostgreSQL). Its methods belong
//! in this file, beside the deferral and callback ones.

use dtr_proto::ErrorCode;
use metrics::{counter, gauge, histogram, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

/// `dtr_http_requests_total{endpoint, method, grant_type, outcome}`.
pub const HTTP_REQUESTS: &str = "dtr_http_requests_total";
/// `dtr_http_request_duration_seconds{endpoint, method, grant_type}`.
pub const HTTP_DURATION: &str = "dtr_http_request_duration_seconds";
/// `dtr_deferrals_created_total{client_id, grant_type}`.
pub const DEFERRALS_CREATED: &str = "dtr_deferrals_created_total";
/// `dtr_deferrals_resolved_total{outcome}`.
pub const DEFERRALS_RESOLVED: &str = "dtr_deferrals_resolved_total";
/// `dtr_deferral_resolution_seconds{outcome}`.
pub const RESOLUTION_SECONDS: &str = "dtr_deferral_resolution_seconds";
/// `dtr_deferrals_pending{client_id}`.
pub const DEFERRALS_PENDING: &str = "dtr_deferrals_pending";
/// `dtr_poll_slow_down_total{client_id}`.
pub const SLOW_DOWN: &str = "dtr_poll_slow_down_total";
/// Callback delivery attempts by outcome (delivered, retry, failed).
pub const CALLBACK_ATTEMPTS: &str = "dtr_callback_attempts_total";
/// Seconds from a deferral's resolution to its delivered callback.
pub const CALLBACK_LATENCY: &str = "dtr_callback_delivery_seconds";

/// Latency buckets (seconds): a poll answers in well under a millisecond,
/// token issuance signs a JWT, a bad day is seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Time-to-resolution buckets (seconds): from policy timers (seconds) to
/// human review (hours).
const RESOLUTION_BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0];

/// How a deferral ended (DESIGN.md state machine): the `outcome` label of
/// [`DEFERRALS_RESOLVED`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// `pending → approved`.
    Approved,
    /// `pending|approved → denied` (including DTR-19 escalation and DTR-23).
    Denied,
    /// Revoked by the client (DTR-32).
    Cancelled,
    /// Swept after its lifetime.
    Expired,
    /// `approved → redeemed`: the token went out (DTR-21).
    Redeemed,
}

impl Resolution {
    fn label(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Redeemed => "redeemed",
        }
    }
}

/// The outcome of a request as a handler saw it, carried to the metrics
/// middleware in the response's extensions (the body is already encoded).
#[derive(Clone, Debug)]
pub struct Outcome(pub ErrorCode);

/// The grant type of a token request, from the fixed list of
/// [`grant_label`], carried like [`Outcome`].
#[derive(Clone, Copy, Debug)]
pub struct GrantLabel(pub &'static str);

/// Marks a response with its OAuth outcome (`authorization_pending` of a
/// deferred response, for instance, which is not an `OAuthResponse`).
pub fn tag_outcome(resp: &mut axum::response::Response, code: ErrorCode) {
    resp.extensions_mut().insert(Outcome(code));
}

/// Marks a token endpoint response with its grant type.
pub fn tag_grant(resp: &mut axum::response::Response, grant_type: Option<&str>) {
    resp.extensions_mut()
        .insert(GrantLabel(grant_label(grant_type)));
}

/// Maps a client-supplied `grant_type` to a bounded label value.
pub fn grant_label(grant_type: Option<&str>) -> &'static str {
    match grant_type {
        None => "none",
        Some(dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS) => "client_credentials",
        Some(dtr_proto::GRANT_TYPE_DEFERRED) => "deferred",
        Some("authorization_code") => "authorization_code",
        Some("refresh_token") => "refresh_token",
        Some("urn:ietf:params:oauth:grant-type:device_code") => "device_code",
        Some("urn:ietf:params:oauth:grant-type:token-exchange") => "token_exchange",
        Some(dtr_proto::GRANT_TYPE_CIBA) => "ciba",
        Some(_) => "other",
    }
}

/// Maps an HTTP method to a bounded label value (clients may send any
/// token as a method).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// The outcome label: the OAuth error code, `ok` for a success, else the
/// HTTP status (admin API and HTML pages have no OAuth code).
pub fn outcome_label(outcome: Option<&Outcome>, status: u16) -> String {
    match outcome {
        Some(Outcome(ErrorCode::Other(_))) => "other".into(),
        Some(Outcome(code)) => code.as_str().to_owned(),
        None if status < 400 => "ok".into(),
        None => format!("http_{status}"),
    }
}

/// The server's metrics: a Prometheus recorder of its own and the set of
/// clients last seen with pending deferrals.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pending_clients: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with histogram buckets and help texts.
    pub fn new() -> Self {
        // Bucket settings only fail on an empty list; ours are constants,
        // so a failure falls back to summaries rather than stopping start-up.
        let builder = with_buckets().unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let m = Self {
            recorder,
            handle,
            pending_clients: Mutex::new(BTreeSet::new()),
        };
        m.with(describe);
        m
    }

    fn with(&self, f: impl FnOnce()) {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets. The background worker
    /// calls it every tick so memory stays flat between scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep()
    }

    /// One HTTP request, by route template (never the concrete path:
    /// interaction handles live in paths, DTR-36).
    pub fn http_request(
        &self,
        endpoint: &str,
        method: &'static str,
        grant_type: &'static str,
        outcome: String,
        elapsed: Duration,
    ) {
        let endpoint = endpoint.to_owned();
        self.with(|| {
            counter!(HTTP_REQUESTS, "endpoint" => endpoint.clone(), "method" => method,
                "grant_type" => grant_type, "outcome" => outcome)
            .increment(1);
            histogram!(HTTP_DURATION, "endpoint" => endpoint, "method" => method,
                "grant_type" => grant_type)
            .record(elapsed.as_secs_f64());
        })
    }

    /// A deferral was created (DTR-8).
    pub fn deferral_created(&self, client_id: &str, grant_type: &str) {
        let grant = grant_label(Some(grant_type));
        let client = client_id.to_owned();
        self.with(|| {
            counter!(DEFERRALS_CREATED, "client_id" => client, "grant_type" => grant).increment(1)
        })
    }

    /// One deferral resolved; `created_at`/`now` (ms) feed the
    /// time-to-resolution histogram.
    pub fn deferral_resolved(&self, how: Resolution, created_at: i64, now: i64) {
        let secs = (now - created_at).max(0) as f64 / 1000.0;
        self.with(|| {
            counter!(DEFERRALS_RESOLVED, "outcome" => how.label()).increment(1);
            histogram!(RESOLUTION_SECONDS, "outcome" => how.label()).record(secs);
        })
    }

    /// Deferrals resolved where the creation time is not at hand (set-based
    /// sweeps of the worker, the interaction page, cancellation by code):
    /// counted, not timed.
    pub fn deferrals_resolved(&self, how: Resolution, count: u64) {
        if count > 0 {
            self.with(|| counter!(DEFERRALS_RESOLVED, "outcome" => how.label()).increment(count))
        }
    }

    /// One callback delivery attempt (DTR-26), by outcome, with the time
    /// from the deferral's resolution to a successful delivery.
    pub fn callback_attempt(
        &self,
        outcome: &crate::store::CallbackOutcome,
        since_resolution_ms: i64,
    ) {
        use crate::store::CallbackOutcome::*;
        let label = match outcome {
            Delivered { .. } => "delivered",
            Retry { .. } => "retry",
            Failed { .. } => "failed",
        };
        let delivered = matches!(outcome, Delivered { .. });
        self.with(|| {
            counter!(CALLBACK_ATTEMPTS, "outcome" => label).increment(1);
            if delivered {
                histogram!(CALLBACK_LATENCY).record(since_resolution_ms as f64 / 1000.0);
            }
        })
    }

    /// A `slow_down` answer (DTR-19).
    pub fn slow_down(&self, client_id: &str) {
        let client = client_id.to_owned();
        self.with(|| counter!(SLOW_DOWN, "client_id" => client).increment(1))
    }

    /// Replaces the pending gauge with fresh counts; clients that no longer
    /// have pending deferrals drop to zero rather than keeping a stale value.
    pub fn set_pending(&self, counts: &[(String, u64)]) {
        let Ok(mut seen) = self.pending_clients.lock() else {
            return;
        };
        let now: BTreeSet<String> = counts.iter().map(|(c, _)| c.clone()).collect();
        self.with(|| {
            for gone in seen.difference(&now) {
                gauge!(DEFERRALS_PENDING, "client_id" => gone.clone()).set(0.0);
            }
            for (client, n) in counts {
                gauge!(DEFERRALS_PENDING, "client_id" => client.clone()).set(*n as f64);
            }
        });
        *seen = now;
    }
}

fn with_buckets() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(RESOLUTION_SECONDS.into()), RESOLUTION_BUCKETS)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by route template, method, grant type and outcome (OAuth error code or ok)"
    );
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency");
    describe_counter!(
        DEFERRALS_CREATED,
        "Deferrals created (deferred token responses)"
    );
    describe_counter!(
        DEFERRALS_RESOLVED,
        "Deferrals resolved by outcome: approved, denied, cancelled, expired, redeemed"
    );
    describe_histogram!(
        RESOLUTION_SECONDS,
        Unit::Seconds,
        "Time from creation to resolution of a deferral, where the resolving path knows the creation time"
    );
    describe_gauge!(
        DEFERRALS_PENDING,
        "Pending deferrals by client, refreshed by the background worker"
    );
    describe_counter!(SLOW_DOWN, "slow_down answers to polls (DTR-19)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::new();
        m.http_request(
            "/token",
            "POST",
            "deferred",
            "authorization_pending".into(),
            Duration::from_micros(300),
        );
        m.deferral_created("svc", dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS);
        m.deferral_resolved(Resolution::Approved, 0, 30_000);
        m.slow_down("svc");
        m.set_pending(&[("svc".into(), 3), ("other".into(), 1)]);
        m.set_pending(&[("svc".into(), 2)]);
        m.upkeep();
        let text = m.render();
        assert!(text.contains(
            r#"dtr_http_requests_total{endpoint="/token",method="POST",grant_type="deferred",outcome="authorization_pending"} 1"#
        ), "{text}");
        assert!(
            text.contains("dtr_http_request_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dtr_deferrals_created_total{client_id="svc",grant_type="client_credentials"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dtr_deferral_resolution_seconds_bucket{outcome="approved",le="60"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"dtr_deferrals_pending{client_id="svc"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"dtr_deferrals_pending{client_id="other"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"dtr_poll_slow_down_total{client_id="svc"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn client_values_cannot_grow_the_label_set() {
        assert_eq!(grant_label(Some("x-made-up-by-a-client")), "other");
        assert_eq!(
            grant_label(Some(dtr_proto::GRANT_TYPE_DEFERRED)),
            "deferred"
        );
        let odd = axum::http::Method::from_bytes(b"FROBNICATE").ok();
        assert_eq!(odd.as_ref().map(method_label), Some("other"));
        assert_eq!(outcome_label(None, 200), "ok");
        assert_eq!(outcome_label(None, 404), "http_404");
        assert_eq!(
            outcome_label(Some(&Outcome(ErrorCode::Other("made-up".into()))), 400),
            "other"
        );
        assert_eq!(
            outcome_label(Some(&Outcome(ErrorCode::SlowDown)), 400),
            "slow_down"
        );
    }

    #[test]
    fn separate_servers_keep_separate_registries() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.slow_down("only-in-a");
        assert!(a.render().contains("only-in-a"));
        assert!(!b.render().contains("only-in-a"));
    }
}
