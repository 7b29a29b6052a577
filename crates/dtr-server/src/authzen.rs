//! Deferrals decided by an AuthZEN PDP and an ARAP access request
//! service (policy `action = "authzen"`).
//!
//! ```text
//!  token request ──> one batch evaluation (pdp::wire::evaluations)
//!     all allowed ─────────────> token (bounded by any approved_until)
//!     a plain denial ──────────> invalid_scope | invalid_authorization_details
//!                                | access_denied, at once (never deferred)
//!     requestable denials ─────> completion_mode=deferred?
//!        no ─> access_denied (needs completion_mode=deferred)
//!        yes ─> ARAP submission (Idempotency-Key from the deferral id,
//!               our callback URL with a per-task secret segment)
//!               ─> task stored, deferral created, DTR-8 answer with
//!                  expires_in <= task.expires_at
//!  task (callback or poll of status_endpoint, tasks::run)
//!     pending ──> progress step (DTR-10)
//!     approved ─> re-evaluation with context.approval ─> approve, token
//!                 lifetime capped by approved_until | deny
//!     expired ──> the deferral expires (expired_token)
//!     anything else ─> deny (access_denied)
//!  revocation of the deferral code ─> the task is cancelled at the service
//! ```
//!
//! PDP or service trouble fails closed (`temporarily_unavailable`);
//! approved deferrals need neither, so they stay redeemable.

pub mod tasks;

use crate::pdp::wire::{self, Evaluations, Requestable, TokenAsk, Verdict};
use crate::pdp::PdpError;
use crate::state::AppState;
use dtr_proto::{ErrorCode, OAuthError};

/// What the PDP makes of a token request that is not refused.
#[derive(Debug)]
pub enum Decided {
    /// Issue; never past `approved_until` (seconds), when the PDP bound it.
    Issue {
        /// The bound (seconds since the epoch).
        not_after: Option<i64>,
    },
    /// Every denial is requestable: submit an access request and defer.
    Requested(Box<AccessRequest>),
}

/// An access request to submit: the batch, its requestable denials and
/// where they go.
#[derive(Clone, Debug)]
pub struct AccessRequest {
    /// The batch evaluation (re-asked after approval).
    pub evaluations: Evaluations,
    /// The requestable denials.
    pub denied: Vec<Requestable>,
    /// The access request endpoint, trusted (same origin as the PDP, its
    /// metadata's endpoint, or `access_request_origins`).
    pub endpoint: String,
}

/// `temporarily_unavailable` for every way the PDP can fail: logged with
/// the cause, answered without it.
pub fn unavailable(e: &PdpError) -> OAuthError {
    tracing::warn!(error = %e, "AuthZEN PDP gave no usable answer: failing closed");
    OAuthError::with_description(
        ErrorCode::TemporarilyUnavailable,
        "the policy decision point is unavailable; retry later",
    )
}

/// Asks the PDP about a token request: one batch, never empty.
pub async fn decide(state: &AppState, ask: &TokenAsk<'_>) -> Result<Decided, OAuthError> {
    let pdp = state.pdp.as_ref().ok_or_else(|| {
        tracing::error!("policy action authzen without an [authzen] PDP");
        OAuthError::with_description(ErrorCode::ServerError, "no policy decision point")
    })?;
    let ev = wire::evaluations(ask);
    let decisions = pdp.evaluate(&ev.body).await.map_err(|e| unavailable(&e))?;
    let now = state.clock.now_ms();
    match wire::verdict(&ev.targets, &decisions, now) {
        Verdict::Allow { approved_until } => Ok(Decided::Issue {
            not_after: approved_until.map(|ms| ms / 1000),
        }),
        Verdict::Deny(code, description) => Err(OAuthError::with_description(code, description)),
        Verdict::Requestable(denied) => {
            let endpoint = endpoint_for(state, &denied).await?;
            Ok(Decided::Requested(Box::new(AccessRequest {
                evaluations: ev,
                denied,
                endpoint,
            })))
        }
    }
}

/// The one trusted endpoint all the denials name (or the metadata's);
/// without one the denial cannot be requested here, so it is refused as
/// a plain one (ARAP "PEP Processing Rules": the denial's endpoint, else
/// the metadata's; "Trusting URLs from the Requestable Denial").
async fn endpoint_for(state: &AppState, denied: &[Requestable]) -> Result<String, OAuthError> {
    let pdp = state.pdp.as_ref().ok_or_else(|| {
        OAuthError::with_description(ErrorCode::ServerError, "no policy decision point")
    })?;
    let metadata = pdp.metadata().await.map_err(|e| unavailable(&e))?;
    let mut named = denied.iter().map(|d| {
        d.endpoint()
            .map(str::to_owned)
            .or_else(|| metadata.access_requests.clone())
    });
    let first = named.next().flatten();
    let refuse = |why: &str| {
        tracing::warn!(why, "requestable AuthZEN denial refused");
        OAuthError::with_description(ErrorCode::AccessDenied, "request denied by policy")
    };
    let Some(endpoint) = first else {
        return Err(refuse("no access request endpoint"));
    };
    if named.any(|n| n.as_deref() != Some(endpoint.as_str())) {
        return Err(refuse(
            "the denials name different access request endpoints",
        ));
    }
    if !pdp
        .trusted_origin(&endpoint)
        .await
        .map_err(|e| unavailable(&e))?
    {
        return Err(refuse(
            "the access request endpoint is not a trusted origin",
        ));
    }
    Ok(endpoint)
}
