//! A policy decision point and ARAP access request service written for
//! the tests (a small axum server on a free loopback port): it answers
//! AuthZEN batch evaluations by a rule the test can read, gives
//! requestable denials for the scope `payments`, takes access requests
//! (idempotently, by `Idempotency-Key`), serves task status and
//! cancellation, and lets the test play the approver.
//!
//! Its rule: scope `forbidden` and authorization details of type
//! `blocked` are plain denials; the grant of client `other` is a plain
//! denial; scope `payments` is a requestable denial unless the
//! evaluation carries `context.approval` naming an approval this service
//! granted; everything else is allowed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a task is, as the approver left it.
#[derive(Clone, Debug)]
pub struct TaskState {
    pub status: String,
    pub step: Option<String>,
    pub approval: Option<Value>,
    pub submission: Value,
    pub idempotency_key: String,
    pub cancelled_by_pep: bool,
}

#[derive(Default)]
pub struct Inner {
    /// Every evaluation batch received.
    pub batches: Vec<Value>,
    /// Tasks by id.
    pub tasks: HashMap<String, TaskState>,
    /// Task ids by Idempotency-Key.
    pub keys: HashMap<String, String>,
    /// Submissions received (including idempotent repeats).
    pub submissions: u32,
    /// Approval ids granted.
    pub approvals: Vec<String>,
    /// Answer evaluations with this status (500: down) instead.
    pub evaluations_status: Option<u16>,
    /// Answer evaluations with this body instead (nonsense).
    pub evaluations_body: Option<Value>,
    /// `task.expires_at` of new tasks.
    pub task_expires_at: String,
    /// `access_request.expires_at` of requestable denials.
    pub denial_expires_at: String,
    /// `Retry-After` on status answers.
    pub retry_after: Option<u64>,
    /// Status polls received.
    pub status_polls: u32,
    /// The status endpoint answers with this HTTP status instead.
    pub status_http: Option<u16>,
    /// Answer this many submissions 503 after recording them (a service
    /// that failed after taking the request).
    pub fail_next_submissions: u32,
    /// Re-evaluations with a valid approval are denied with `next_action:
    /// "retry"` (the grant is not provisioned yet).
    pub grant_pending: bool,
    /// Approve at submission (201 with a terminal task and its result:
    /// ARAP's synchronous completion), until this RFC 3339 time.
    pub approve_on_submit: Option<String>,
    /// Answer every submission 503 (the service is down).
    pub submissions_down: bool,
    /// Refuse submissions with this status and `expired_denial`.
    pub refuse_submissions: Option<u16>,
    /// Requestable denials name this access request endpoint instead of
    /// the fixture's own (another service, such as a dtr server).
    pub access_request_endpoint: Option<String>,
    /// Re-evaluations allow any approval presented (a PDP sharing the
    /// approval state of that other service).
    pub accept_any_approval: bool,
    /// The `Authorization` header of the last evaluation request.
    pub last_authorization: Option<String>,
}

#[derive(Clone)]
pub struct Fixture {
    pub base: String,
    pub inner: Arc<Mutex<Inner>>,
}

impl Fixture {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// The only task, or the newest of several.
    pub fn task_id(&self) -> String {
        let g = self.lock();
        assert_eq!(g.tasks.len(), 1, "one task expected");
        g.tasks.keys().next().unwrap().clone()
    }

    pub fn task(&self, id: &str) -> TaskState {
        self.lock().tasks[id].clone()
    }

    pub fn set_status(&self, id: &str, status: &str) {
        self.lock().tasks.get_mut(id).unwrap().status = status.into();
    }

    pub fn set_step(&self, id: &str, step: &str) {
        self.lock().tasks.get_mut(id).unwrap().step = Some(step.into());
    }

    /// The approver approves, until `approved_until` (RFC 3339).
    pub fn approve(&self, id: &str, approved_until: &str) {
        let mut g = self.lock();
        let approval_id = format!("apr_{}", g.approvals.len() + 1);
        g.approvals.push(approval_id.clone());
        let t = g.tasks.get_mut(id).unwrap();
        t.status = "approved".into();
        t.approval = Some(json!({
            "id": approval_id,
            "approved_until": approved_until,
            "state": {"opaque": ["kept", "as", "is"]},
        }));
    }

    /// Calls dtr back about task `id` (ARAP "Callback Completion"): a
    /// notification without a result, as the spec's example; the status.
    pub async fn call_back(&self, id: &str) -> u16 {
        let url = self.callback_of(id);
        let status = self.lock().tasks[id].status.clone();
        reqwest::Client::new()
            .post(url)
            .json(&json!({"task": {"id": id, "status": status,
                "status_endpoint": format!("{}/access/v1/requests/{id}", self.base)}}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Waits (up to 10 s) until `pred` holds of the fixture's state.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Inner) -> bool) {
        for _ in 0..200 {
            if pred(&self.lock()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// The callback URL dtr gave in its submission.
    pub fn callback_of(&self, id: &str) -> String {
        self.lock().tasks[id].submission["callback"]["endpoint"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn problem(status: StatusCode, ty: &str) -> Response {
    (
        status,
        [("content-type", "application/problem+json")],
        Json(json!({"type": format!("urn:openid:authzen:access-request:error:{ty}"), "status": status.as_u16()})),
    )
        .into_response()
}

async fn metadata(State(f): State<Fixture>) -> Json<Value> {
    Json(json!({
        "policy_decision_point": f.base,
        "access_evaluation_endpoint": format!("{}/access/v1/evaluation", f.base),
        "access_evaluations_endpoint": format!("{}/access/v1/evaluations", f.base),
        "access_request_endpoint": format!("{}/access/v1/requests", f.base),
        "capabilities": ["urn:openid:authzen:capability:access-request"],
    }))
}

fn decide(f: &Fixture, g: &Inner, subject: &Value, resource: &Value, context: &Value) -> Value {
    let ty = resource["type"].as_str().unwrap_or_default();
    let id = resource["id"].as_str().unwrap_or_default();
    let client = context["client_id"].as_str().unwrap_or_default();
    if (ty == "scope" && id == "forbidden")
        || ty == "blocked"
        || (ty == "grant" && client == "other")
    {
        return json!({"decision": false, "context": {"reason": "policy_denied"}});
    }
    if ty == "scope" && id == "payments" {
        let approved = context["approval"]["id"]
            .as_str()
            .is_some_and(|a| g.accept_any_approval || g.approvals.iter().any(|x| x == a));
        if approved && g.grant_pending {
            return json!({"decision": false, "context": {
                "reason": "grant_pending", "next_action": "retry", "retry_after": 30}});
        }
        if approved {
            return json!({"decision": true, "context": {"approval": context["approval"]}});
        }
        return json!({"decision": false, "context": {
            "evaluation_id": format!("eval_{}_{}", subject["id"].as_str().unwrap_or_default(), id),
            "reason": "approval_required",
            "access_request": {
                "expires_at": g.denial_expires_at,
                "binding_token": "eyJhbGciOiJFUzI1NiJ9.eyJiIjoxfQ.c2ln",
                "template": "manager_approval",
                "endpoint": g.access_request_endpoint.clone()
                    .unwrap_or_else(|| format!("{}/access/v1/requests", f.base)),
            }
        }});
    }
    json!({"decision": true})
}

async fn evaluations(
    State(f): State<Fixture>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut g = f.lock();
    g.batches.push(body.clone());
    g.last_authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(s) = g.evaluations_status {
        return StatusCode::from_u16(s).unwrap().into_response();
    }
    if let Some(b) = &g.evaluations_body {
        return Json(b.clone()).into_response();
    }
    let decisions: Vec<Value> = body["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let pick = |k: &str| {
                if e.get(k).is_some() {
                    e[k].clone()
                } else {
                    body[k].clone()
                }
            };
            decide(
                &f,
                &g,
                &pick("subject"),
                &pick("resource"),
                &pick("context"),
            )
        })
        .collect();
    Json(json!({"evaluations": decisions})).into_response()
}

fn task_json(f: &Fixture, id: &str, t: &TaskState, expires_at: &str) -> Value {
    let mut task = json!({
        "id": id,
        "status": t.status,
        "status_endpoint": format!("{}/access/v1/requests/{id}", f.base),
        "expires_at": expires_at,
        "links": {"cancel": format!("{}/access/v1/requests/{id}/cancel", f.base)},
    });
    if let Some(s) = &t.step {
        task["progress"] = json!({"current_step": 1, "total_steps": 2, "step_name": s});
    }
    let mut out = json!({"task": task});
    if let (Some(a), "approved") = (&t.approval, t.status.as_str()) {
        out["result"] = json!({"mode": "reevaluate", "approval": a});
    }
    out
}

async fn submit(State(f): State<Fixture>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if body["denial"]["binding_token"].as_str().is_none() && body["items"].is_null() {
        return problem(StatusCode::BAD_REQUEST, "invalid_denial_binding");
    }
    let mut g = f.lock();
    g.submissions += 1;
    if g.submissions_down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Some(status) = g.refuse_submissions {
        return problem(StatusCode::from_u16(status).unwrap(), "expired_denial");
    }
    let expires = g.task_expires_at.clone();
    if let Some(existing) = g.keys.get(&key).cloned() {
        let t = g.tasks[&existing].clone();
        if t.submission != body {
            return problem(StatusCode::CONFLICT, "duplicate_request");
        }
        return (
            StatusCode::ACCEPTED,
            Json(task_json(&f, &existing, &t, &expires)),
        )
            .into_response();
    }
    let id = format!("arq_{}", g.tasks.len() + 1);
    let t = TaskState {
        status: "pending".into(),
        step: None,
        approval: None,
        submission: body,
        idempotency_key: key.clone(),
        cancelled_by_pep: false,
    };
    g.keys.insert(key, id.clone());
    g.tasks.insert(id.clone(), t.clone());
    if let Some(until) = g.approve_on_submit.clone() {
        drop(g);
        f.approve(&id, &until);
        let t = f.task(&id);
        return (StatusCode::CREATED, Json(task_json(&f, &id, &t, &expires))).into_response();
    }
    if g.fail_next_submissions > 0 {
        g.fail_next_submissions -= 1;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    (StatusCode::ACCEPTED, Json(task_json(&f, &id, &t, &expires))).into_response()
}

async fn status(State(f): State<Fixture>, Path(id): Path<String>) -> Response {
    let mut g = f.lock();
    g.status_polls += 1;
    if let Some(s) = g.status_http {
        return StatusCode::from_u16(s).unwrap().into_response();
    }
    let Some(t) = g.tasks.get(&id).cloned() else {
        return problem(StatusCode::NOT_FOUND, "unknown_task");
    };
    let body = task_json(&f, &id, &t, &g.task_expires_at);
    match g.retry_after {
        Some(s) => (StatusCode::OK, [("retry-after", s.to_string())], Json(body)).into_response(),
        None => Json(body).into_response(),
    }
}

async fn cancel(State(f): State<Fixture>, Path(id): Path<String>) -> Response {
    let mut g = f.lock();
    let expires = g.task_expires_at.clone();
    let Some(t) = g.tasks.get_mut(&id) else {
        return problem(StatusCode::NOT_FOUND, "unknown_task");
    };
    if t.status != "pending" {
        return problem(StatusCode::CONFLICT, "invalid_task_state");
    }
    t.status = "cancelled".into();
    t.cancelled_by_pep = true;
    let t = t.clone();
    Json(task_json(&f, &id, &t, &expires)).into_response()
}

/// Starts the fixture; `task_expires_at` and `denial_expires_at` are
/// RFC 3339.
pub async fn start(task_expires_at: &str, denial_expires_at: &str) -> Fixture {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    let f = Fixture {
        base,
        inner: Arc::new(Mutex::new(Inner {
            task_expires_at: task_expires_at.into(),
            denial_expires_at: denial_expires_at.into(),
            ..Inner::default()
        })),
    };
    let app = Router::new()
        .route("/.well-known/authzen-configuration", get(metadata))
        .route("/access/v1/evaluations", post(evaluations))
        .route("/access/v1/requests", post(submit))
        .route("/access/v1/requests/{id}", get(status))
        .route("/access/v1/requests/{id}/cancel", post(cancel))
        .with_state(f.clone());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    f
}
