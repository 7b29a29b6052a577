//! The AuthZEN and ARAP messages dtr builds and reads, as pure functions:
//! no I/O, so every rule here is unit-tested on JSON.
//!
//! - The batch evaluation of a token request (AuthZEN Authorization API
//!   1.0, "Access Evaluations API"), shaped as DESIGN.md fixes it: one
//!   gate evaluation for the grant, one per scope, one per RFC 9396
//!   authorization detail, action `request`, the client or the user as
//!   subject, `client_id` and `cnf` in the context.
//! - What the decisions come to ([`verdict`]): a token, the grant's own
//!   synchronous error, or a requestable denial (ARAP "Requestable
//!   Denial": `context.access_request`).
//! - The ARAP access request submission, the task handle, and what a task
//!   status means for the deferral ([`resolution`]).

use dtr_proto::scope::Scope;
use dtr_proto::ErrorCode;
use serde_json::{json, Map, Value};

/// The AuthZEN action of every evaluation dtr asks: issuing a token is
/// a request for access.
pub const ACTION: &str = "request";

/// Who the token would be for (DESIGN.md: the client for client
/// credentials, the user for user grants).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The client itself.
    Client(String),
    /// A resource owner, by username.
    User(String),
}

impl Subject {
    fn to_json(&self) -> Value {
        match self {
            Self::Client(id) => json!({"type": "client", "id": id}),
            Self::User(id) => json!({"type": "user", "id": id}),
        }
    }
}

/// What the PDP is asked about a token request.
#[derive(Clone, Debug)]
pub struct TokenAsk<'a> {
    /// The authenticated client.
    pub client_id: &'a str,
    /// The originating grant type.
    pub grant_type: &'a str,
    /// Its subject.
    pub subject: Subject,
    /// The requested scope.
    pub scope: &'a Scope,
    /// RFC 9396 authorization details (a JSON array of objects).
    pub authorization_details: Option<&'a Value>,
    /// Thumbprint of the request's DPoP key (RFC 9449 `cnf.jkt`).
    pub dpop_jkt: Option<&'a str>,
    /// The audience of the token (token exchange `resource` and
    /// `audience`), which the gate evaluation carries; empty: none named.
    pub audience: &'a [String],
}

/// What one evaluation of the batch is about, so that a denial can be
/// answered with the grant's own error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The gate evaluation: the grant itself.
    Gate,
    /// One requested scope.
    Scope(String),
    /// The authorization detail at this index.
    Detail(usize),
}

/// A batch evaluation request and what each of its evaluations is about.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluations {
    /// The JSON body for the `access_evaluations_endpoint`.
    pub body: Value,
    /// One target per entry of `body.evaluations`, in order.
    pub targets: Vec<Target>,
}

/// Builds the one batch evaluation of a token request. Never empty: the
/// gate evaluation is always there. Top-level `subject`, `action` and
/// `context` are the defaults every evaluation inherits (Authorization
/// API 1.0, "Access Evaluations API Request"), each evaluation naming
/// only its resource; `execute_all` so every denial is known, not only
/// the first.
pub fn evaluations(ask: &TokenAsk<'_>) -> Evaluations {
    let mut targets = vec![Target::Gate];
    let mut gate = json!({"type": "grant", "id": ask.grant_type});
    if !ask.audience.is_empty() {
        gate["properties"] = json!({"audience": ask.audience});
    }
    let mut items = vec![json!({"resource": gate})];
    for s in ask.scope.iter() {
        targets.push(Target::Scope(s.to_owned()));
        items.push(json!({"resource": {"type": "scope", "id": s}}));
    }
    if let Some(Value::Array(details)) = ask.authorization_details {
        for (i, d) in details.iter().enumerate() {
            let ty = d.get("type").and_then(Value::as_str).unwrap_or_default();
            let mut props = d.as_object().cloned().unwrap_or_default();
            props.remove("type");
            targets.push(Target::Detail(i));
            items.push(json!({"resource": {
                "type": ty,
                "id": format!("{ty}#{i}"),
                "properties": props,
            }}));
        }
    }
    let mut context = Map::new();
    context.insert("client_id".into(), ask.client_id.into());
    if let Some(jkt) = ask.dpop_jkt {
        context.insert("cnf".into(), json!({"jkt": jkt}));
    }
    Evaluations {
        body: json!({
            "subject": ask.subject.to_json(),
            "action": {"name": ACTION},
            "context": context,
            "evaluations": items,
            "options": {"evaluations_semantic": "execute_all"},
        }),
        targets,
    }
}

/// One decision of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// `decision`.
    pub allowed: bool,
    /// The decision context, when the PDP gave one.
    pub context: Map<String, Value>,
}

/// A PDP answer that is not a batch of `n` decisions: fail closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the PDP's answer is not a batch evaluation response: {0}")]
pub struct Nonsense(pub String);

/// Reads a batch evaluation response: exactly `n` decisions, each with a
/// boolean `decision` (Authorization API 1.0, "Access Evaluations API
/// Response"). Anything else is [`Nonsense`], never a default.
pub fn decisions(body: &Value, n: usize) -> Result<Vec<Decision>, Nonsense> {
    let list = body
        .get("evaluations")
        .and_then(Value::as_array)
        .ok_or_else(|| Nonsense("no evaluations array".into()))?;
    if list.len() != n {
        return Err(Nonsense(format!(
            "{} decisions for {n} evaluations",
            list.len()
        )));
    }
    list.iter()
        .map(|d| {
            let allowed = d
                .get("decision")
                .and_then(Value::as_bool)
                .ok_or_else(|| Nonsense("a decision is not a boolean".into()))?;
            let context = match d.get("context") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => return Err(Nonsense("a decision context is not an object".into())),
            };
            Ok(Decision { allowed, context })
        })
        .collect()
}

/// A denied evaluation that may be requested (ARAP "Requestable Denial
/// Context"), with what the submission echoes.
#[derive(Clone, Debug, PartialEq)]
pub struct Requestable {
    /// Index of the evaluation in the batch.
    pub index: usize,
    /// `context.access_request`, as the PDP gave it.
    pub access_request: Map<String, Value>,
    /// `context.evaluation_id`.
    pub evaluation_id: Option<String>,
    /// `context.evaluated_at`.
    pub evaluated_at: Option<String>,
    /// `context.reason`.
    pub reason: Option<String>,
    /// `access_request.expires_at` (ms).
    pub expires_at: i64,
}

impl Requestable {
    /// `access_request.endpoint`, when the PDP named one.
    pub fn endpoint(&self) -> Option<&str> {
        self.access_request.get("endpoint").and_then(Value::as_str)
    }

    /// The `denial` member of the submission: each field echoed unchanged
    /// from the denied decision (ARAP "Access Request Submission"); the
    /// binding token byte for byte.
    pub fn denial(&self) -> Value {
        let mut d = Map::new();
        let ar = &self.access_request;
        if let Some(e) = &self.evaluation_id {
            d.insert("evaluation_id".into(), e.clone().into());
        }
        if let Some(e) = &self.evaluated_at {
            d.insert("evaluated_at".into(), e.clone().into());
        }
        for k in ["expires_at", "binding_token", "template"] {
            if let Some(v) = ar.get(k) {
                d.insert(k.into(), v.clone());
            }
        }
        if let Some(r) = &self.reason {
            d.insert("reason".into(), r.clone().into());
        }
        Value::Object(d)
    }
}

/// What a batch of decisions comes to.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Everything allowed: issue. `approved_until` (ms) is the earliest
    /// `context.approval.approved_until` the PDP returned, which bounds the
    /// token (ARAP "Approval and Re-evaluation").
    Allow {
        /// The bound, if any.
        approved_until: Option<i64>,
    },
    /// A plain denial: the grant's synchronous error, never a deferral.
    Deny(ErrorCode, String),
    /// Every denial is requestable: an access request may resolve them.
    Requestable(Vec<Requestable>),
}

/// Decides what a batch of decisions means for the token request. A
/// plain denial anywhere wins over requestable ones (requesting the rest
/// could not make the request succeed); among plain denials the gate
/// comes first (`access_denied`), then scopes (`invalid_scope`), then
/// details (`invalid_authorization_details`), as DESIGN.md maps them. A
/// requestable denial needs `expires_at` and a denial binding
/// (`binding_token` or `evaluation_id`, ARAP "Requestable Denial
/// Context"); without them it is a plain denial.
pub fn verdict(targets: &[Target], decisions: &[Decision], now_ms: i64) -> Verdict {
    let mut plain: Vec<&Target> = Vec::new();
    let mut requestable = Vec::new();
    let mut until: Option<i64> = None;
    for (i, (t, d)) in targets.iter().zip(decisions).enumerate() {
        if d.allowed {
            if let Some(u) = d
                .context
                .get("approval")
                .and_then(|a| a.get("approved_until"))
                .and_then(Value::as_str)
                .and_then(parse_time)
            {
                until = Some(until.map_or(u, |x| x.min(u)));
            }
            continue;
        }
        match requestable_of(i, &d.context, now_ms) {
            Some(r) => requestable.push(r),
            None => plain.push(t),
        }
    }
    if let Some(t) = plain
        .iter()
        .find(|t| **t == &Target::Gate)
        .or_else(|| plain.iter().find(|t| matches!(t, Target::Scope(_))))
        .or_else(|| plain.first())
    {
        return match t {
            Target::Gate => {
                Verdict::Deny(ErrorCode::AccessDenied, "request denied by policy".into())
            }
            Target::Scope(s) => Verdict::Deny(
                ErrorCode::InvalidScope,
                format!("scope '{s}' is denied by policy"),
            ),
            Target::Detail(i) => Verdict::Deny(
                ErrorCode::InvalidAuthorizationDetails,
                format!("authorization_details[{i}] is denied by policy"),
            ),
        };
    }
    if requestable.is_empty() {
        Verdict::Allow {
            approved_until: until,
        }
    } else {
        Verdict::Requestable(requestable)
    }
}

fn requestable_of(index: usize, ctx: &Map<String, Value>, now_ms: i64) -> Option<Requestable> {
    let ar = ctx.get("access_request")?.as_object()?.clone();
    let expires_at = ar
        .get("expires_at")
        .and_then(Value::as_str)
        .and_then(parse_time)?;
    let s = |k: &str| ctx.get(k).and_then(Value::as_str).map(str::to_owned);
    let evaluation_id = s("evaluation_id");
    let bound =
        ar.get("binding_token").and_then(Value::as_str).is_some() || evaluation_id.is_some();
    (bound && expires_at > now_ms).then(|| Requestable {
        index,
        access_request: ar,
        evaluation_id,
        evaluated_at: s("evaluated_at"),
        reason: s("reason"),
        expires_at,
    })
}

/// Parses an RFC 3339 timestamp in UTC (`...Z`) into ms since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// An RFC 3339 timestamp of `ms` since the epoch.
pub fn format_time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The ARAP access request for the requestable denials of a batch:
/// subject, action and context of the denied evaluation, its resource
/// (or, for several denials, `items` each with its own `denial`: ARAP
/// "Bulk Submissions"), our callback and our client id.
pub fn submission(
    ev: &Evaluations,
    denied: &[Requestable],
    callback: &str,
    client_id: &str,
) -> Value {
    let b = &ev.body;
    let resource = |r: &Requestable| b["evaluations"][r.index]["resource"].clone();
    let mut s = json!({
        "subject": b["subject"],
        "context": b["context"],
        "callback": {"endpoint": callback},
        "client": {"id": client_id},
    });
    match denied {
        [one] => {
            s["resource"] = resource(one);
            s["action"] = b["action"].clone();
            s["denial"] = one.denial();
        }
        many => {
            s["items"] = many
                .iter()
                .map(|r| json!({"resource": resource(r), "action": b["action"], "denial": r.denial()}))
                .collect();
        }
    }
    s
}

/// The re-evaluation after approval (ARAP "Approval and Re-evaluation"):
/// the same batch, with each approved evaluation carrying its `approval`
/// unchanged at `context.approval` (per evaluation, since each item of a
/// bulk request has its own).
pub fn reevaluation(ev: &Evaluations, approvals: &[(usize, Value)]) -> Value {
    let mut body = ev.body.clone();
    for (index, approval) in approvals {
        let mut ctx = ev.body["context"].clone();
        ctx["approval"] = approval.clone();
        body["evaluations"][*index]["context"] = ctx;
    }
    body
}

/// A task handle (ARAP "Access Request Response" and "Task Status
/// Endpoint"), as far as dtr reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// `task.id`.
    pub id: String,
    /// `task.status`.
    pub status: String,
    /// `task.status_endpoint`.
    pub status_endpoint: Option<String>,
    /// `task.expires_at` (ms).
    pub expires_at: Option<i64>,
    /// `task.links.cancel`.
    pub cancel: Option<String>,
    /// `task.progress.step_name`, when it is a safe step identifier.
    pub step: Option<String>,
    /// The whole answer, for [`resolution`].
    pub raw: Value,
}

/// Reads `{"task": {...}, "result"?}`.
pub fn task(body: &Value) -> Result<Task, Nonsense> {
    let t = body
        .get("task")
        .and_then(Value::as_object)
        .ok_or_else(|| Nonsense("no task object".into()))?;
    let s = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(Task {
        id: s("id").ok_or_else(|| Nonsense("task without id".into()))?,
        status: s("status").ok_or_else(|| Nonsense("task without status".into()))?,
        status_endpoint: s("status_endpoint"),
        expires_at: t
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(parse_time),
        cancel: t
            .get("links")
            .and_then(|l| l.get("cancel"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        step: t
            .get("progress")
            .and_then(|p| p.get("step_name"))
            .and_then(Value::as_str)
            .filter(|s| safe_step(s))
            .map(str::to_owned),
        raw: body.clone(),
    })
}

/// A step name that may go to the client as `error_description`
/// (DTR-10: an identifier, never personal data).
pub fn safe_step(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// What a task's status means for its deferral.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// Still pending; the step to show, if any (DTR-10).
    Pending(Option<String>),
    /// Approved with an enforceable result: re-evaluate with these
    /// approvals (evaluation index, `approval` object).
    Reevaluate(Vec<(usize, Value)>),
    /// Refused, cancelled, failed, partial, unknown, or approved without
    /// an enforceable result: `access_denied` (ARAP: "A PEP that receives
    /// an unknown status value MUST treat the task as not approved").
    Deny(String),
    /// The task expired: so does the deferral (`expired_token`).
    Expire,
}

/// Maps a task answer onto the deferral. `indices` are the batch indices
/// of the submitted denials, in submission order (one, or the `items`).
pub fn resolution(t: &Task, indices: &[usize]) -> Resolution {
    match t.status.as_str() {
        "pending" => Resolution::Pending(t.step.clone()),
        "expired" => Resolution::Expire,
        "approved" => {
            let results: Vec<Option<&Value>> = match indices {
                [_] => vec![t.raw.get("result")],
                many => {
                    let items = t.raw["task"].get("items").and_then(Value::as_array);
                    (0..many.len())
                        .map(|i| {
                            items
                                .and_then(|it| it.get(i))
                                .filter(|it| {
                                    it.get("status").and_then(Value::as_str) == Some("approved")
                                })
                                .and_then(|it| it.get("result"))
                        })
                        .collect()
                }
            };
            let approvals: Option<Vec<(usize, Value)>> = indices
                .iter()
                .zip(results)
                .map(|(i, r)| enforceable(r?).map(|a| (*i, a)))
                .collect();
            match approvals {
                Some(a) => Resolution::Reevaluate(a),
                None => Resolution::Deny("approved without an enforceable result".into()),
            }
        }
        other => Resolution::Deny(format!(
            "task {}",
            if safe_step(other) {
                other
            } else {
                "status unknown"
            }
        )),
    }
}

/// The `approval` of a `reevaluate` result with its required members
/// (`id`, `approved_until`); any other mode is not approval.
fn enforceable(result: &Value) -> Option<Value> {
    if result.get("mode").and_then(Value::as_str) != Some("reevaluate") {
        return None;
    }
    let a = result.get("approval")?;
    a.get("id").and_then(Value::as_str)?;
    a.get("approved_until")
        .and_then(Value::as_str)
        .and_then(parse_time)?;
    Some(a.clone())
}

/// What to do after a re-evaluation that presented an approval was
/// denied (ARAP "Approval and Re-evaluation": `next_action`, else the
/// default of a recognised `reason`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterDenial {
    /// `retry`: ask again after this many seconds (`retry_after`), or
    /// after the usual backoff.
    Retry(Option<u64>),
    /// `none`, or `request` (dtr does not resubmit on its own), or
    /// nothing recognised: the denial stands.
    Stop,
}

/// [`AfterDenial`] of the denied decisions of a re-evaluation: retry only
/// when every denied one says so (`next_action: "retry"`, or no
/// recognised `next_action` and `reason: "grant_pending"`), after the
/// longest `retry_after` they give.
pub fn after_denial(decisions: &[Decision]) -> AfterDenial {
    let mut wait: Option<u64> = None;
    let mut any = false;
    for d in decisions.iter().filter(|d| !d.allowed) {
        any = true;
        let next = d.context.get("next_action").and_then(Value::as_str);
        let retry = match next {
            Some("retry") => true,
            Some("request" | "none") => false,
            _ => d.context.get("reason").and_then(Value::as_str) == Some("grant_pending"),
        };
        if !retry {
            return AfterDenial::Stop;
        }
        if let Some(s) = d.context.get("retry_after").and_then(Value::as_u64) {
            wait = Some(wait.map_or(s, |w| w.max(s)));
        }
    }
    if any {
        AfterDenial::Retry(wait)
    } else {
        AfterDenial::Stop
    }
}

/// The earliest `approved_until` (ms) of a set of approvals.
pub fn approved_until(approvals: &[(usize, Value)]) -> Option<i64> {
    approvals
        .iter()
        .filter_map(|(_, a)| {
            a.get("approved_until")
                .and_then(Value::as_str)
                .and_then(parse_time)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    fn ask<'a>(scope: &'a Scope, details: Option<&'a Value>) -> TokenAsk<'a> {
        TokenAsk {
            client_id: "svc",
            grant_type: "client_credentials",
            subject: Subject::Client("svc".into()),
            scope,
            authorization_details: details,
            dpop_jkt: Some("jkt-1"),
            audience: &[],
        }
    }

    #[test]
    fn the_batch_has_the_gate_one_per_scope_and_one_per_detail() {
        let s = scope("read payments");
        let details = json!([{"type": "payment_initiation", "instructedAmount": {"amount": 50}}]);
        let ev = evaluations(&ask(&s, Some(&details)));
        assert_eq!(
            ev.body,
            json!({
                "subject": {"type": "client", "id": "svc"},
                "action": {"name": "request"},
                "context": {"client_id": "svc", "cnf": {"jkt": "jkt-1"}},
                "evaluations": [
                    {"resource": {"type": "grant", "id": "client_credentials"}},
                    {"resource": {"type": "scope", "id": "payments"}},
                    {"resource": {"type": "scope", "id": "read"}},
                    {"resource": {"type": "payment_initiation", "id": "payment_initiation#0",
                                  "properties": {"instructedAmount": {"amount": 50}}}},
                ],
                "options": {"evaluations_semantic": "execute_all"},
            })
        );
        assert_eq!(
            ev.targets,
            vec![
                Target::Gate,
                Target::Scope("payments".into()),
                Target::Scope("read".into()),
                Target::Detail(0)
            ]
        );
    }

    #[test]
    fn never_empty_and_a_user_subject_without_dpop() {
        let s = Scope::default();
        let mut a = ask(&s, None);
        a.subject = Subject::User("alice".into());
        a.dpop_jkt = None;
        let ev = evaluations(&a);
        assert_eq!(ev.targets, vec![Target::Gate]);
        assert_eq!(ev.body["subject"], json!({"type": "user", "id": "alice"}));
        assert_eq!(ev.body["context"], json!({"client_id": "svc"}));
        let aud = ["https://api.example/".to_owned()];
        a.audience = &aud;
        assert_eq!(
            evaluations(&a).body["evaluations"][0]["resource"],
            json!({"type": "grant", "id": "client_credentials",
                   "properties": {"audience": ["https://api.example/"]}})
        );
    }

    fn d(allowed: bool, ctx: Value) -> Decision {
        Decision {
            allowed,
            context: ctx.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn decisions_must_be_a_batch_of_the_right_size() {
        let ok = json!({"evaluations": [{"decision": true}, {"decision": false, "context": {"reason": "x"}}]});
        assert_eq!(decisions(&ok, 2).unwrap().len(), 2);
        for bad in [
            json!({}),
            json!({"evaluations": [{"decision": true}]}),
            json!({"evaluations": [{"decision": "true"}, {"decision": true}]}),
            json!({"evaluations": [{"decision": true, "context": 3}, {"decision": true}]}),
            json!({"decision": true}),
        ] {
            assert!(decisions(&bad, 2).is_err(), "{bad}");
        }
    }

    const NOW: i64 = 1_800_000_000_000;

    fn requestable_ctx() -> Value {
        json!({"evaluation_id": "ev1", "reason": "approval_required",
               "access_request": {"expires_at": "2030-01-01T00:00:00Z", "binding_token": "a.b.c"}})
    }

    #[test]
    fn denials_map_to_the_grants_errors() {
        let targets = [
            Target::Gate,
            Target::Scope("read".into()),
            Target::Detail(0),
        ];
        let v = |g, s, dd| {
            verdict(
                &targets,
                &[d(g, json!({})), d(s, json!({})), d(dd, json!({}))],
                NOW,
            )
        };
        assert_eq!(
            v(true, true, true),
            Verdict::Allow {
                approved_until: None
            }
        );
        assert!(matches!(
            v(false, false, false),
            Verdict::Deny(ErrorCode::AccessDenied, _)
        ));
        assert!(matches!(
            v(true, false, false),
            Verdict::Deny(ErrorCode::InvalidScope, _)
        ));
        assert!(matches!(
            v(true, true, false),
            Verdict::Deny(ErrorCode::InvalidAuthorizationDetails, _)
        ));
    }

    #[test]
    fn requestable_only_when_every_denial_is_and_it_is_bound_and_fresh() {
        let targets = [Target::Gate, Target::Scope("pay".into())];
        let got = verdict(
            &targets,
            &[d(true, json!({})), d(false, requestable_ctx())],
            NOW,
        );
        let Verdict::Requestable(r) = got else {
            panic!("{got:?}")
        };
        assert_eq!(r[0].index, 1);
        assert_eq!(
            r[0].denial(),
            json!({"evaluation_id": "ev1", "expires_at": "2030-01-01T00:00:00Z",
                   "binding_token": "a.b.c", "reason": "approval_required"})
        );
        // A plain denial beside it decides.
        let got = verdict(
            &targets,
            &[d(false, json!({})), d(false, requestable_ctx())],
            NOW,
        );
        assert!(matches!(got, Verdict::Deny(ErrorCode::AccessDenied, _)));
        // No binding, no expiry, or an expired hint: not requestable.
        for ctx in [
            json!({"access_request": {"expires_at": "2030-01-01T00:00:00Z"}}),
            json!({"evaluation_id": "e", "access_request": {}}),
            json!({"evaluation_id": "e", "access_request": {"expires_at": "2020-01-01T00:00:00Z"}}),
            json!({"evaluation_id": "e", "access_request": "yes"}),
        ] {
            let got = verdict(&targets, &[d(true, json!({})), d(false, ctx.clone())], NOW);
            assert!(
                matches!(got, Verdict::Deny(ErrorCode::InvalidScope, _)),
                "{ctx}"
            );
        }
    }

    #[test]
    fn an_allow_with_an_approval_bounds_the_token() {
        let targets = [Target::Gate, Target::Scope("pay".into())];
        let got = verdict(
            &targets,
            &[
                d(true, json!({})),
                d(
                    true,
                    json!({"approval": {"id": "a", "approved_until": "2027-01-01T00:00:00Z"}}),
                ),
            ],
            NOW,
        );
        assert_eq!(
            got,
            Verdict::Allow {
                approved_until: parse_time("2027-01-01T00:00:00Z")
            }
        );
    }

    #[test]
    fn submissions_echo_the_denial_untouched() {
        let s = scope("pay read");
        let ev = evaluations(&ask(&s, None));
        let r = requestable_of(1, requestable_ctx().as_object().unwrap(), NOW).unwrap();
        let sub = submission(&ev, std::slice::from_ref(&r), "https://as/cb/x", "svc");
        assert_eq!(sub["resource"], json!({"type": "scope", "id": "pay"}));
        assert_eq!(sub["action"], json!({"name": "request"}));
        assert_eq!(sub["denial"]["binding_token"], "a.b.c");
        assert_eq!(sub["callback"]["endpoint"], "https://as/cb/x");
        assert!(sub.get("items").is_none());
        let r2 = Requestable {
            index: 2,
            ..r.clone()
        };
        let bulk = submission(&ev, &[r, r2], "https://as/cb/x", "svc");
        assert!(bulk.get("resource").is_none());
        assert_eq!(
            bulk["items"][1]["resource"],
            json!({"type": "scope", "id": "read"})
        );
        assert_eq!(bulk["items"][1]["denial"]["evaluation_id"], "ev1");
    }

    #[test]
    fn reevaluation_carries_each_approval_unchanged() {
        let s = scope("pay");
        let ev = evaluations(&ask(&s, None));
        let approval = json!({"id": "apr", "approved_until": "2030-01-01T00:00:00Z", "state": {"opaque": [1]}});
        let body = reevaluation(&ev, &[(1, approval.clone())]);
        assert_eq!(body["evaluations"][1]["context"]["approval"], approval);
        assert_eq!(body["evaluations"][1]["context"]["client_id"], "svc");
        assert!(body["evaluations"][0].get("context").is_none());
    }

    fn t(v: Value) -> Task {
        task(&v).unwrap()
    }

    #[test]
    fn task_statuses_map_onto_the_deferral() {
        let pending = t(json!({"task": {"id": "t", "status": "pending",
            "status_endpoint": "https://ars/t", "expires_at": "2030-01-01T00:00:00Z",
            "links": {"cancel": "https://ars/t/cancel"},
            "progress": {"step_name": "manager_approval"}}}));
        assert_eq!(pending.cancel.as_deref(), Some("https://ars/t/cancel"));
        assert_eq!(
            resolution(&pending, &[1]),
            Resolution::Pending(Some("manager_approval".into()))
        );
        let approval = json!({"id": "apr", "approved_until": "2030-01-01T00:00:00Z"});
        let ok = t(json!({"task": {"id": "t", "status": "approved"},
            "result": {"mode": "reevaluate", "approval": approval}}));
        assert_eq!(
            resolution(&ok, &[1]),
            Resolution::Reevaluate(vec![(1, approval.clone())])
        );
        let no_result = t(json!({"task": {"id": "t", "status": "approved"}}));
        assert!(matches!(resolution(&no_result, &[1]), Resolution::Deny(_)));
        let other_mode = t(json!({"task": {"id": "t", "status": "approved"},
            "result": {"mode": "token", "approval": approval}}));
        assert!(matches!(resolution(&other_mode, &[1]), Resolution::Deny(_)));
        for s in ["denied", "cancelled", "failed", "partial", "on_hold"] {
            let x = t(json!({"task": {"id": "t", "status": s}}));
            assert!(matches!(resolution(&x, &[1]), Resolution::Deny(_)), "{s}");
        }
        let exp = t(json!({"task": {"id": "t", "status": "expired"}}));
        assert_eq!(resolution(&exp, &[1]), Resolution::Expire);
        // A step that is not an identifier never reaches the client.
        let leaky = t(json!({"task": {"id": "t", "status": "pending",
            "progress": {"step_name": "Alice Smith's manager"}}}));
        assert_eq!(resolution(&leaky, &[1]), Resolution::Pending(None));
        assert!(task(&json!({"task": {"status": "pending"}})).is_err());
    }

    #[test]
    fn bulk_tasks_need_every_item_approved() {
        let a = json!({"id": "a1", "approved_until": "2030-01-01T00:00:00Z"});
        let b = json!({"id": "a2", "approved_until": "2029-01-01T00:00:00Z"});
        let both = t(json!({"task": {"id": "t", "status": "approved", "items": [
            {"status": "approved", "result": {"mode": "reevaluate", "approval": a}},
            {"status": "approved", "result": {"mode": "reevaluate", "approval": b}}]}}));
        let Resolution::Reevaluate(got) = resolution(&both, &[1, 3]) else {
            panic!()
        };
        assert_eq!(got, vec![(1, a.clone()), (3, b.clone())]);
        assert_eq!(approved_until(&got), parse_time("2029-01-01T00:00:00Z"));
        let half = t(json!({"task": {"id": "t", "status": "approved", "items": [
            {"status": "approved", "result": {"mode": "reevaluate", "approval": a}},
            {"status": "denied"}]}}));
        assert!(matches!(resolution(&half, &[1, 3]), Resolution::Deny(_)));
    }

    #[test]
    fn a_denied_reevaluation_is_retried_only_when_it_says_so() {
        let retry = d(false, json!({"next_action": "retry", "retry_after": 30}));
        let pending = d(false, json!({"reason": "grant_pending"}));
        assert_eq!(
            after_denial(&[d(true, json!({})), retry.clone()]),
            AfterDenial::Retry(Some(30))
        );
        assert_eq!(
            after_denial(&[retry.clone(), pending.clone()]),
            AfterDenial::Retry(Some(30))
        );
        assert_eq!(after_denial(&[pending]), AfterDenial::Retry(None));
        for stop in [
            json!({"next_action": "none"}),
            json!({"next_action": "request", "reason": "grant_pending"}),
            json!({"reason": "policy_denied"}),
            json!({}),
        ] {
            assert_eq!(
                after_denial(&[retry.clone(), d(false, stop.clone())]),
                AfterDenial::Stop,
                "{stop}"
            );
        }
    }

    #[test]
    fn times_round_trip() {
        let ms = parse_time("2030-01-01T00:00:00Z").unwrap();
        assert_eq!(format_time(ms), "2030-01-01T00:00:00Z");
        assert!(parse_time("tomorrow").is_none());
    }
}
