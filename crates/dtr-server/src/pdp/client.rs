//! The client of the AuthZEN PDP and of the ARAP access request services
//! it sends dtr to: discovery, bearer credential, timeouts, bounded
//! retries and a circuit breaker, every call through
//! [`crate::outbound::SafeHttp`] (re-checked, pinned, no redirects,
//! bounded bodies).
//!
//! Failing closed: whatever goes wrong (unreachable, a 5xx, a body that
//! is not what the spec says, the circuit open) is a [`PdpError`], which
//! the token endpoint answers `temporarily_unavailable` (503): never a
//! token. Deferrals already approved do not call the PDP again, so they
//! stay redeemable while it is down.

use super::wire;
use crate::clock::Clock;
use crate::config::AuthzenConfig;
use crate::outbound::{JsonAnswer, SafeHttp};
use reqwest::Method;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The AuthZEN metadata path (Authorization API 1.0, "Policy Decision
/// Point Metadata").
pub const WELL_KNOWN: &str = "/.well-known/authzen-configuration";

/// How long discovered metadata is used before it is read again.
const METADATA_TTL_MS: i64 = 5 * 60 * 1000;

/// Pause before the first retry; doubled for each further one.
const RETRY_PAUSE_MS: u64 = 100;

/// Why the PDP or an access request service gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdpError {
    /// The circuit is open: recent calls failed, this one was not tried.
    #[error("circuit open after repeated failures")]
    CircuitOpen,
    /// No answer (network, timeout, SSRF refusal) or a 5xx after retries.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// An answer that is not what the spec says (status or body).
    #[error("nonsense: {0}")]
    Nonsense(String),
    /// The service refused the request itself (a 4xx), with its
    /// problem type (RFC 9457 `type`) when it gave one.
    #[error("refused with HTTP {status}{}", problem.as_deref().map(|p| format!(" ({p})")).unwrap_or_default())]
    Refused {
        /// The status.
        status: u16,
        /// The problem type.
        problem: Option<String>,
    },
}

/// The PDP's discovered endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// `access_evaluations_endpoint`.
    pub evaluations: String,
    /// `access_request_endpoint` (ARAP "PDP Metadata"), when listed.
    pub access_requests: Option<String>,
}

/// Reads a metadata document: `policy_decision_point` must be the PDP we
/// asked (so one PDP cannot speak for another), and the batch endpoint
/// must be there, since dtr asks one batch per token request.
pub fn metadata(pdp: &str, body: &Value) -> Result<Metadata, PdpError> {
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let claimed = s("policy_decision_point")
        .ok_or_else(|| PdpError::Nonsense("metadata without policy_decision_point".into()))?;
    if claimed.trim_end_matches('/') != pdp {
        return Err(PdpError::Nonsense(format!(
            "metadata names another policy_decision_point ({claimed})"
        )));
    }
    Ok(Metadata {
        evaluations: s("access_evaluations_endpoint").ok_or_else(|| {
            PdpError::Nonsense("the PDP lists no access_evaluations_endpoint (batch)".into())
        })?,
        access_requests: s("access_request_endpoint"),
    })
}

/// The circuit breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Circuit {
    /// Calls go through; `failures` consecutive ones failed.
    Closed { failures: u32 },
    /// Calls fail at once until `until`.
    Open { until: i64 },
    /// One probe call is out; others fail at once until it ends.
    HalfOpen,
}

/// A circuit breaker on the injected clock: opens after `threshold`
/// consecutive failures, refuses for `cooldown_ms`, then lets one probe
/// through; the probe's success closes it, its failure opens it again.
pub struct Breaker {
    threshold: u32,
    cooldown_ms: i64,
    state: Mutex<Circuit>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown_ms: u64) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown_ms: cooldown_ms as i64,
            state: Mutex::new(Circuit::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Circuit> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go out at `now` (taking the probe's place when
    /// the cooldown is over).
    pub fn admit(&self, now: i64) -> bool {
        let mut s = self.lock();
        match *s {
            Circuit::Closed { .. } => true,
            Circuit::Open { until } if now >= until => {
                *s = Circuit::HalfOpen;
                true
            }
            Circuit::Open { .. } | Circuit::HalfOpen => false,
        }
    }

    /// Records the outcome of an admitted call.
    pub fn record(&self, ok: bool, now: i64) {
        let mut s = self.lock();
        *s = match (*s, ok) {
            (_, true) => Circuit::Closed { failures: 0 },
            (Circuit::Closed { failures }, false) if failures + 1 < self.threshold => {
                Circuit::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => Circuit::Open {
                until: now + self.cooldown_ms,
            },
        };
    }

    /// Whether calls are being refused now.
    pub fn is_open(&self) -> bool {
        !matches!(*self.lock(), Circuit::Closed { .. })
    }
}

/// The PDP client.
pub struct Pdp {
    config: AuthzenConfig,
    http: SafeHttp,
    clock: Arc<dyn Clock>,
    breaker: Breaker,
    service_breaker: Breaker,
    metadata: Mutex<Option<(Metadata, i64)>>,
}

impl std::fmt::Debug for Pdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pdp")
            .field("pdp", &self.config.pdp)
            .finish()
    }
}

impl Pdp {
    /// A client of the configured PDP, with its own timeouts.
    pub fn new(config: AuthzenConfig, http: &SafeHttp, clock: Arc<dyn Clock>) -> Self {
        let timeout = Duration::from_millis(config.timeout_ms);
        Self {
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown_ms),
            service_breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown_ms),
            http: http.with_timeouts(timeout.min(Duration::from_secs(3)), timeout),
            config,
            clock,
            metadata: Mutex::new(None),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AuthzenConfig {
        &self.config
    }

    /// Whether the circuit is refusing calls.
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// One call to the PDP with retries, under its breaker: a network
    /// failure or a 5xx is retried (`retries` times, short growing
    /// pauses); any other answer is returned as it is. Only unanswered
    /// calls count against the breaker.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<JsonAnswer, PdpError> {
        self.call_under(&self.breaker, method, url, body, headers)
            .await
    }

    /// [`Pdp::call`] to an access request service, under a breaker of its
    /// own: a service that is down must not stop the PDP's decisions.
    pub async fn call_service(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<JsonAnswer, PdpError> {
        self.call_under(&self.service_breaker, method, url, body, headers)
            .await
    }

    async fn call_under(
        &self,
        breaker: &Breaker,
        method: Method,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<JsonAnswer, PdpError> {
        let now = self.clock.now_ms();
        if !breaker.admit(now) {
            return Err(PdpError::CircuitOpen);
        }
        let mut last = String::new();
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS << (attempt - 1))).await;
            }
            match self
                .http
                .call_json(
                    method.clone(),
                    url,
                    body,
                    self.config.token.as_deref(),
                    headers,
                )
                .await
            {
                Ok(a) if a.status < 500 => {
                    breaker.record(true, self.clock.now_ms());
                    return Ok(a);
                }
                Ok(a) => last = format!("HTTP {}", a.status),
                // A URL refused by the SSRF rules will not change on retry
                // (recorded, so that a probe never leaves the breaker
                // half-open).
                Err(
                    e @ (crate::outbound::OutboundError::BadUrl(_)
                    | crate::outbound::OutboundError::Forbidden(_)),
                ) => {
                    breaker.record(false, self.clock.now_ms());
                    return Err(PdpError::Unreachable(e.to_string()));
                }
                Err(e) => last = e.to_string(),
            }
        }
        breaker.record(false, self.clock.now_ms());
        Err(PdpError::Unreachable(last))
    }

    /// The PDP's metadata, discovered at `{pdp}/.well-known/authzen-configuration`
    /// and kept for a while.
    pub async fn metadata(&self) -> Result<Metadata, PdpError> {
        let now = self.clock.now_ms();
        if let Some((m, at)) = self
            .metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if now - at < METADATA_TTL_MS {
                return Ok(m.clone());
            }
        }
        let url = format!("{}{WELL_KNOWN}", self.config.pdp);
        let a = self.call(Method::GET, &url, None, &[]).await?;
        let body = ok_json(&a, &[200])?;
        let m = metadata(&self.config.pdp, &body)?;
        *self.metadata.lock().unwrap_or_else(|p| p.into_inner()) = Some((m.clone(), now));
        Ok(m)
    }

    /// One batch evaluation: the decisions, exactly one per evaluation.
    pub async fn evaluate(&self, body: &Value) -> Result<Vec<wire::Decision>, PdpError> {
        let n = body["evaluations"].as_array().map_or(0, Vec::len);
        let m = self.metadata().await?;
        let a = self
            .call(Method::POST, &m.evaluations, Some(body), &[])
            .await?;
        let answer = ok_json(&a, &[200])?;
        wire::decisions(&answer, n).map_err(|e| PdpError::Nonsense(e.0))
    }

    /// Whether dtr may send the access request and its credential to
    /// `url`: the PDP's own origin, that of the metadata's
    /// `access_request_endpoint`, or one of `access_request_origins` (ARAP
    /// "Trusting URLs from the Requestable Denial").
    pub async fn trusted_origin(&self, url: &str) -> Result<bool, PdpError> {
        let Some(wanted) = origin(url) else {
            return Ok(false);
        };
        let m = self.metadata().await?;
        Ok(origin(&self.config.pdp).as_deref() == Some(wanted.as_str())
            || m.access_requests.as_deref().and_then(origin).as_deref() == Some(wanted.as_str())
            || self.config.access_request_origins.contains(&wanted))
    }
}

/// The ASCII origin of a URL.
pub fn origin(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

/// The JSON body of an answer whose status is one of `ok`; a 4xx is
/// [`PdpError::Refused`] (with its RFC 9457 problem type), anything else
/// [`PdpError::Nonsense`].
pub fn ok_json(a: &JsonAnswer, ok: &[u16]) -> Result<Value, PdpError> {
    if ok.contains(&a.status) {
        return a
            .body
            .clone()
            .ok_or_else(|| PdpError::Nonsense(format!("HTTP {} without a JSON body", a.status)));
    }
    if (400..500).contains(&a.status) {
        return Err(PdpError::Refused {
            status: a.status,
            problem: a
                .body
                .as_ref()
                .and_then(|b| b.get("type"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Err(PdpError::Nonsense(format!("unexpected HTTP {}", a.status)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_must_name_the_pdp_and_a_batch_endpoint() {
        let pdp = "https://pdp.example";
        let good = json!({"policy_decision_point": "https://pdp.example/",
            "access_evaluation_endpoint": "https://pdp.example/access/v1/evaluation",
            "access_evaluations_endpoint": "https://pdp.example/access/v1/evaluations",
            "access_request_endpoint": "https://ars.example/access/v1/requests"});
        let m = metadata(pdp, &good).unwrap();
        assert_eq!(m.evaluations, "https://pdp.example/access/v1/evaluations");
        assert_eq!(
            m.access_requests.as_deref(),
            Some("https://ars.example/access/v1/requests")
        );
        let mut other = good.clone();
        other["policy_decision_point"] = "https://evil.example".into();
        assert!(matches!(metadata(pdp, &other), Err(PdpError::Nonsense(_))));
        let mut no_batch = good.clone();
        no_batch
            .as_object_mut()
            .unwrap()
            .remove("access_evaluations_endpoint");
        assert!(matches!(
            metadata(pdp, &no_batch),
            Err(PdpError::Nonsense(_))
        ));
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_probes_once() {
        let b = Breaker::new(3, 1000);
        for _ in 0..2 {
            assert!(b.admit(0));
            b.record(false, 0);
        }
        // A success in between resets the count.
        assert!(b.admit(0));
        b.record(true, 0);
        for _ in 0..3 {
            assert!(b.admit(0));
            b.record(false, 0);
        }
        assert!(b.is_open());
        assert!(!b.admit(999));
        // Half-open: one probe, nobody else.
        assert!(b.admit(1000));
        assert!(!b.admit(1000));
        // The probe fails: open again for a full cooldown.
        b.record(false, 1000);
        assert!(!b.admit(1999));
        assert!(b.admit(2000));
        b.record(true, 2000);
        assert!(!b.is_open());
        assert!(b.admit(2000) && b.admit(2000));
    }

    #[test]
    fn answers_other_than_the_expected_are_errors() {
        let a = |status, body: Option<Value>| JsonAnswer {
            status,
            retry_after: None,
            body,
        };
        assert_eq!(
            ok_json(&a(200, Some(json!({"x": 1}))), &[200]).unwrap(),
            json!({"x": 1})
        );
        assert!(matches!(
            ok_json(&a(200, None), &[200]),
            Err(PdpError::Nonsense(_))
        ));
        assert!(matches!(
            ok_json(&a(302, None), &[200]),
            Err(PdpError::Nonsense(_))
        ));
        assert_eq!(
            ok_json(
                &a(
                    409,
                    Some(
                        json!({"type": "urn:openid:authzen:access-request:error:duplicate_request"})
                    )
                ),
                &[201, 202]
            ),
            Err(PdpError::Refused {
                status: 409,
                problem: Some("urn:openid:authzen:access-request:error:duplicate_request".into())
            })
        );
    }
}
