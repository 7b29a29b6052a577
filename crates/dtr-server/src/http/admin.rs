//! The admin API of DESIGN.md: reviewers list, inspect and decide
//! deferrals by their opaque id (never the code), and disable clients.

use super::error::{json_no_store, AdminError};
use crate::approvers::Actor;
use crate::clock::rfc3339;
use crate::deferrals::{self, DecisionError};
use crate::state::AppState;
use crate::store::{DeferralEvent, DeferralFilter, DeferralRecord};
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use dtr_proto::secret::ct_eq;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The admin routes, behind the bearer-token check. Deferrals answer
/// reviewers what they may see and decide; the rest is for admins only.
pub fn router(state: AppState) -> Router<AppState> {
    let admin_only = Router::new()
        .route("/admin/clients", get(list_clients))
        .route("/admin/clients/{client_id}/disable", post(disable_client))
        .route("/admin/clients/{client_id}/enable", post(enable_client))
        .merge(super::admin_users::routes())
        .route_layer(axum::middleware::from_fn(require_admin_role));
    Router::new()
        .route("/admin/deferrals", get(list))
        .route("/admin/deferrals/{id}", get(show))
        .route("/admin/deferrals/{id}/events", get(events))
        .route("/admin/events", get(events_since))
        .route("/admin/deferrals/{id}/approve", post(approve))
        .route("/admin/deferrals/{id}/deny", post(deny))
        .route("/admin/deferrals/{id}/progress", post(progress))
        .route("/admin/deferrals/{id}/interaction", post(interaction))
        .merge(admin_only)
        .layer(axum::middleware::from_fn_with_state(state, require_admin))
}

/// Checks `Authorization: Bearer <token>`: the admin token or a user's
/// personal token (see [`crate::identity`]), and inserts who acts as an
/// [`Actor`] extension.
async fn require_admin(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, AdminError> {
    if state.admin_token_sha256.is_none() {
        return Err(AdminError::Unauthorized(
            "admin API disabled: set [admin] token in the configuration",
        ));
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AdminError::Unauthorized("admin bearer token required"))?;
    // The bearer value is trimmed here, as the API always did; the
    // console's form field is taken as typed.
    let actor = match crate::identity::bearer_actor(&state, presented.trim()).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(AdminError::Unauthorized("bearer token rejected")),
        Err(crate::identity::BearerFault::Refused(r)) => {
            return Err(AdminError::Throttled(r.answered()))
        }
        Err(crate::identity::BearerFault::Store(e)) => return Err(e.into()),
    };
    // Who acts, for the decisions' audit trail and routing.
    req.extensions_mut().insert(actor);
    Ok(next.run(req).await)
}

/// Refuses (403, nothing done) every actor but an admin at the admin-only
/// endpoints (clients, users, personal tokens).
async fn require_admin_role(req: Request, next: Next) -> Result<Response, AdminError> {
    let admin = req.extensions().get::<Actor>().is_some_and(Actor::is_admin);
    if !admin {
        return Err(AdminError::Forbidden);
    }
    Ok(next.run(req).await)
}

/// Whether `presented` is the admin token (SHA-256, compared in constant
/// time), throttled per source address: wrong tokens spend the address's
/// failure budget and, once it is spent, every attempt is refused
/// unexamined until `Retry-After` (see [`crate::throttle`]). The one check
/// of the admin API and the review console's sign-in.
pub fn admin_token_ok(state: &AppState, presented: &str) -> Result<bool, crate::throttle::Refused> {
    use crate::throttle::{Attempt, Outcome};
    let Some(expected) = state.admin_token_sha256 else {
        return Ok(false);
    };
    let held = state
        .throttle
        .check(Attempt::AdminToken, crate::throttle::source())?;
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let ok = ct_eq(&digest, &expected);
    held.record(if ok {
        Outcome::Success
    } else {
        tracing::info!("admin token refused");
        Outcome::Failure
    });
    Ok(ok)
}

/// The reviewer's view of a deferral (DESIGN.md).
pub fn deferral_json(state: &AppState, d: &DeferralRecord) -> Value {
    let now = state.clock.now_ms();
    let mut v = json!({
        "id": d.id,
        "client_id": d.client_id,
        "grant_type": d.grant_type,
        "scope": d.scope,
        "authorization_details": d.authorization_details,
        "state": d.effective_state(now).as_str(),
        "interaction_required": d.interaction_handle.is_some() && d.effective_state(now).is_pending(),
        "progress": d.progress,
        "created_at": rfc3339(d.created_at),
        "expires_at": rfc3339(d.expires_at),
        "subject": d.subject,
    });
    if let Some(g) = &d.granted_scope {
        v["granted_scope"] = g.clone().into();
    }
    if let Some(r) = &d.deny_reason {
        v["deny_reason"] = r.clone().into();
    }
    if let (Some(uri), true) = (
        deferrals::interaction_uri_of(state, d),
        d.effective_state(now).is_pending(),
    ) {
        v["interaction_uri"] = uri.into();
    }
    // Where the client got its code: on the authorization redirect (its
    // first poll owes the PKCE verifier until `pkce_verified_at`) or from
    // the token endpoint.
    if d.front_channel.is_some() {
        v["deferred_at"] = "authorization_endpoint".into();
    }
    if let Some(t) = d.interaction_started_at {
        v["interaction_started_at"] = rfc3339(t).into();
    }
    if !d.interactive {
        // The client did not say it can send a user to an interaction.
        v["interactive"] = false.into();
    }
    if let Some(t) = d.resolved_at {
        v["resolved_at"] = rfc3339(t).into();
    }
    if let Some(t) = d.redeemed_at {
        v["redeemed_at"] = rfc3339(t).into();
    }
    if let Some(by) = &d.decided_by {
        v["decided_by"] = by.clone().into();
    }
    if let Some(t) = d.approved_until {
        v["approved_until"] = rfc3339(t).into();
    }
    if let Some(g) = &d.granted_authorization_details {
        v["granted_authorization_details"] = g.clone();
    }
    if !d.approvers.is_empty() {
        v["approvers"] = json!(d.approvers);
    }
    v["approvals_required"] = d.approvals_required.into();
    v
}

/// [`deferral_json`] with the approvals so far (four eyes).
async fn deferral_with_approvals(
    state: &AppState,
    d: &DeferralRecord,
) -> Result<Value, AdminError> {
    let mut v = deferral_json(state, d);
    let approvals = state.store.approvals(&d.id).await?;
    v["approvals"] = approvals
        .iter()
        .map(|a| {
            let mut j = json!({"by": a.by, "at": rfc3339(a.at), "scope": a.scope});
            if let Some(t) = a.approved_until {
                j["approved_until"] = rfc3339(t).into();
            }
            j
        })
        .collect();
    Ok(v)
}

/// One event of a deferral's log as JSON: `type`, `by`, `at` and its
/// details.
fn event_json(e: &DeferralEvent) -> Value {
    let mut v = json!({
        "deferral_id": e.deferral_id,
        "type": e.kind,
        "by": e.by,
        "at": rfc3339(e.at),
    });
    if let Some(Value::Object(detail)) = &e.detail {
        for (k, x) in detail {
            if !matches!(k.as_str(), "deferral_id" | "type" | "by" | "at") {
                v[k] = x.clone();
            }
        }
    }
    v
}

/// `GET /admin/deferrals/{id}/events`: the deferral's audit trail, oldest
/// first, for those who may review it.
async fn events(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let d = visible(&state, &id, &actor).await?;
    let all = state.store.events(&id).await?;
    let mut out: Vec<Value> = all.iter().map(event_json).collect();
    // Polls are not logged one by one (a client polls every few seconds
    // for hours); their summary closes the trail.
    if let Some(last) = d.last_polled_at {
        out.push(json!({
            "deferral_id": d.id,
            "type": "polled",
            "by": d.client_id,
            "at": rfc3339(last),
            "slow_down_count": d.slow_down_count,
            "polling_blocked": d.polling_blocked,
        }));
    }
    Ok(json_no_store(StatusCode::OK, &out))
}

#[derive(Deserialize)]
struct EventsQuery {
    since: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/events?since=<RFC 3339>`: every deferral's events from
/// then on, oldest first (admins; the export behind `dtr admin events`).
async fn events_since(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, AdminError> {
    if !actor.is_admin() {
        return Err(AdminError::Forbidden);
    }
    let since = match q.since.as_deref() {
        None => 0,
        Some(s) => chrono_ms(s).ok_or_else(|| {
            AdminError::BadRequest(format!("since: '{s}' is not an RFC 3339 time"))
        })?,
    };
    let all = state
        .store
        .events_since(since, q.limit.unwrap_or(1000).clamp(1, 10_000))
        .await?;
    Ok(json_no_store(
        StatusCode::OK,
        &all.iter().map(event_json).collect::<Vec<_>>(),
    ))
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn chrono_ms(s: &str) -> Option<i64> {
    crate::clock::parse_rfc3339(s)
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    client_id: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<ListQuery>,
) -> Result<Response, AdminError> {
    let st = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse().map_err(AdminError::BadRequest)?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = DeferralFilter {
        state: st,
        client_id: q.client_id.filter(|c| !c.is_empty()),
        limit,
        ..Default::default()
    };
    let rows = reviewable(&state, &actor, filter).await?;
    let out: Vec<Value> = rows.iter().map(|d| deferral_json(&state, d)).collect();
    Ok(json_no_store(StatusCode::OK, &out))
}

/// The deferrals of `filter` that `actor` may see, newest first, at most
/// `filter.limit`: all of them for an admin; for a reviewer those routed
/// to them, drawn from the newest 1000 that match the filter.
pub async fn reviewable(
    state: &AppState,
    actor: &Actor,
    mut filter: DeferralFilter,
) -> Result<Vec<DeferralRecord>, crate::store::StoreError> {
    let now = state.clock.now_ms();
    if actor.is_admin() {
        return state.store.list_deferrals(&filter, now).await;
    }
    if !actor.is_reviewer() {
        return Ok(Vec::new());
    }
    let limit = filter.limit as usize;
    filter.limit = 1000;
    let mut out = Vec::new();
    for d in state.store.list_deferrals(&filter, now).await? {
        if out.len() == limit {
            break;
        }
        if deferrals::may_review(state, &d, actor).await? {
            out.push(d);
        }
    }
    Ok(out)
}

/// The deferral `id` if `actor` may see it: one a reviewer may not
/// decide is not theirs to see either, and its existence is not revealed
/// (404 like an unknown id).
async fn visible(state: &AppState, id: &str, actor: &Actor) -> Result<DeferralRecord, AdminError> {
    let d = state
        .store
        .deferral_by_id(id)
        .await?
        .ok_or(AdminError::NotFound)?;
    if !deferrals::may_review(state, &d, actor).await? {
        return Err(AdminError::NotFound);
    }
    Ok(d)
}

async fn show(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let d = visible(&state, &id, &actor).await?;
    Ok(json_no_store(
        StatusCode::OK,
        &deferral_with_approvals(&state, &d).await?,
    ))
}

/// Parses an optional JSON body; empty means `{}`. Unknown members are
/// refused: a misspelt `scope` must not approve the full request.
fn body<T: for<'de> Deserialize<'de> + Default>(b: &Bytes) -> Result<T, AdminError> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn decided(
    state: &AppState,
    r: Result<DeferralRecord, DecisionError>,
) -> Result<Response, AdminError> {
    match r {
        Ok(d) => Ok(json_no_store(
            StatusCode::OK,
            &deferral_with_approvals(state, &d).await?,
        )),
        Err(DecisionError::NotFound) => Err(AdminError::NotFound),
        Err(DecisionError::NotPending(m)) => Err(AdminError::Conflict(m)),
        Err(DecisionError::Invalid(m)) => Err(AdminError::BadRequest(m)),
        Err(DecisionError::Forbidden) => Err(AdminError::Forbidden),
        Err(DecisionError::Store(e)) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    scope: Option<String>,
    /// RFC 3339: the token (and any refresh of it) never outlives it.
    approved_until: Option<String>,
    /// The requested authorization details, narrowed (DTR-24).
    authorization_details: Option<Value>,
}

async fn approve(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    b: Bytes,
) -> Result<Response, AdminError> {
    let b: ApproveBody = body(&b)?;
    let until = b
        .approved_until
        .as_deref()
        .map(|t| {
            chrono_ms(t).ok_or_else(|| {
                AdminError::BadRequest(format!("approved_until: '{t}' is not an RFC 3339 time"))
            })
        })
        .transpose()?;
    decided(
        &state,
        deferrals::approve_narrowed(
            &state,
            &id,
            &deferrals::ApproveRequest {
                scope: b.scope.clone(),
                approved_until: until,
                authorization_details: b.authorization_details.clone(),
            },
            &actor,
        )
        .await,
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    reason: Option<String>,
}

async fn deny(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    b: Bytes,
) -> Result<Response, AdminError> {
    let b: DenyBody = body(&b)?;
    if b.reason.as_ref().is_some_and(|r| r.len() > 500) {
        return Err(AdminError::BadRequest(
            "reason longer than 500 characters".into(),
        ));
    }
    decided(
        &state,
        deferrals::deny(&state, &id, b.reason.as_deref(), &actor).await,
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProgressBody {
    step: Option<String>,
}

async fn progress(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    b: Bytes,
) -> Result<Response, AdminError> {
    let b: ProgressBody = body(&b)?;
    let step = b
        .step
        .ok_or_else(|| AdminError::BadRequest("missing member 'step'".into()))?;
    decided(
        &state,
        deferrals::progress(&state, &id, &step, &actor).await,
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractionBody {
    #[serde(default = "yes")]
    required: bool,
}

impl Default for InteractionBody {
    fn default() -> Self {
        Self { required: true }
    }
}

fn yes() -> bool {
    true
}

async fn interaction(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    b: Bytes,
) -> Result<Response, AdminError> {
    let b: InteractionBody = body(&b)?;
    decided(
        &state,
        deferrals::set_interaction(&state, &id, b.required, &actor).await,
    )
    .await
}

fn client_json(c: &crate::store::ClientRecord) -> Value {
    json!({
        "client_id": c.client_id,
        "token_endpoint_auth_method": c.auth_method,
        "grant_types": c.grant_types,
        "scope": c.scope,
        "enabled": c.is_active(),
    })
}

async fn list_clients(State(state): State<AppState>) -> Result<Response, AdminError> {
    let all = state.store.list_clients().await?;
    Ok(json_no_store(
        StatusCode::OK,
        &all.iter().map(client_json).collect::<Vec<_>>(),
    ))
}

async fn set_disabled(
    state: &AppState,
    client_id: &str,
    disabled: bool,
) -> Result<Response, AdminError> {
    if !state
        .store
        .set_client_admin_disabled(client_id, disabled)
        .await?
    {
        return Err(AdminError::NotFound);
    }
    let c = state
        .store
        .get_client(client_id)
        .await?
        .ok_or(AdminError::NotFound)?;
    tracing::info!(client = %client_id, disabled, "client state changed by admin");
    state.clients.refresh(c.clone());
    Ok(json_no_store(StatusCode::OK, &client_json(&c)))
}

async fn disable_client(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    set_disabled(&state, &id, true).await
}

async fn enable_client(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    set_disabled(&state, &id, false).await
}
