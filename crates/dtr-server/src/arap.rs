//! The ARAP messages of dtr's own access request service (AuthZEN Access
//! Request and Approval Profile), as pure functions: the submission's
//! checks, task handles and results from a deferral, the metadata, the
//! problem types. The service itself is [`crate::access_requests`].

use crate::pdp::wire::{format_time, parse_time};
use crate::store::DeferralRecord;
use dtr_proto::deferral::DeferralState;
use dtr_proto::secret::sha256_b64;
use serde_json::{json, Map, Value};

/// The grant type of access request deferrals in the admin API.
pub const GRANT_TYPE: &str = "urn:openid:authzen:access-request";
/// The authorization detail type the policy and approvers see.
pub const DETAIL_TYPE: &str = "access_request";
/// Prefix of access request deferral ids.
pub const ID_PREFIX: &str = "arq_";
/// ARAP problem types ("Error Responses").
const PROBLEM: &str = "urn:openid:authzen:access-request:error:";
/// The capability URN of ARAP ("PDP Metadata").
pub const CAPABILITY: &str = "urn:openid:authzen:capability:access-request";

/// An RFC 9457 problem: status, `type`, `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// The problem type URI (`about:blank` for plain HTTP errors).
    pub kind: String,
    /// A description.
    pub detail: String,
}

impl Problem {
    pub fn arap(status: u16, name: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind: format!("{PROBLEM}{name}"),
            detail: detail.into(),
        }
    }
    pub fn bad(detail: impl Into<String>) -> Self {
        Self {
            status: 400,
            kind: "about:blank".into(),
            detail: detail.into(),
        }
    }
}

/// dtr's AuthZEN metadata (`/.well-known/authzen-configuration`): dtr
/// is no PDP, so no evaluation endpoints; its access request endpoint.
pub fn metadata(issuer: &str) -> Value {
    json!({
        "policy_decision_point": issuer,
        "access_request_endpoint": format!("{issuer}{}", dtr_proto::paths::ACCESS_REQUESTS),
        "capabilities": [CAPABILITY],
    })
}

/// The JSON value with object members sorted, for comparing submissions.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn entity(body: &Value, member: &str, needs_type: bool) -> Result<Value, Problem> {
    let v = body
        .get(member)
        .filter(|v| v.is_object())
        .ok_or_else(|| Problem::bad(format!("{member}: an object is required")))?;
    let ok = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if needs_type && !(ok("type") && ok("id")) {
        return Err(Problem::bad(format!("{member}: needs type and id")));
    }
    if !needs_type && !ok("name") {
        return Err(Problem::bad(format!("{member}: needs a name")));
    }
    Ok(v.clone())
}

/// A checked submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// `subject`.
    pub subject: Value,
    /// `resource`.
    pub resource: Value,
    /// `action`.
    pub action: Value,
    /// `denial`.
    pub denial: Value,
    /// `callback.endpoint`, when asked.
    pub callback: Option<String>,
    /// `denial.expires_at` (ms).
    pub denial_expires_at: i64,
    /// The whole body.
    pub body: Value,
}

/// Checks a submission body (ARAP "Access Request Submission") at `now`.
pub fn check(body: &Value, now: i64) -> Result<Submission, Problem> {
    if !body.is_object() {
        return Err(Problem::bad("the body must be a JSON object"));
    }
    if body.get("items").is_some() {
        return Err(Problem::bad("bulk submissions (items) are not supported"));
    }
    let subject = entity(body, "subject", true)?;
    let resource = entity(body, "resource", true)?;
    let action = entity(body, "action", false)?;
    let denial = body
        .get("denial")
        .filter(|d| d.is_object())
        .ok_or_else(|| Problem::arap(400, "invalid_denial_binding", "denial is required"))?
        .clone();
    let bound = denial
        .get("binding_token")
        .and_then(Value::as_str)
        .is_some()
        || denial
            .get("evaluation_id")
            .and_then(Value::as_str)
            .is_some();
    if !bound {
        return Err(Problem::arap(
            400,
            "invalid_denial_binding",
            "denial needs binding_token or evaluation_id",
        ));
    }
    let denial_expires_at = denial
        .get("expires_at")
        .and_then(Value::as_str)
        .and_then(parse_time)
        .ok_or_else(|| {
            Problem::arap(
                400,
                "invalid_denial_binding",
                "denial.expires_at (RFC 3339) is required",
            )
        })?;
    if denial_expires_at <= now {
        return Err(Problem::arap(
            410,
            "expired_denial",
            "the requestable denial has expired",
        ));
    }
    let callback = match body.get("callback") {
        None => None,
        Some(c) => Some(
            c.get("endpoint")
                .and_then(Value::as_str)
                .ok_or_else(|| Problem::bad("callback.endpoint is required with callback"))?
                .to_owned(),
        ),
    };
    Ok(Submission {
        subject,
        resource,
        action,
        denial,
        callback,
        denial_expires_at,
        body: body.clone(),
    })
}

/// The task status of a deferral (ARAP "Task Status Values").
pub fn task_status(s: DeferralState) -> &'static str {
    match s {
        DeferralState::Pending => "pending",
        // Never redeemed: an access request is approved, not collected.
        DeferralState::Approved | DeferralState::Redeemed => "approved",
        DeferralState::Denied => "denied",
        DeferralState::Cancelled => "cancelled",
        DeferralState::Expired => "expired",
    }
}

/// The task handle and result of an access request deferral.
pub fn task_json(issuer: &str, task_id: &str, rec: &DeferralRecord, now: i64) -> Value {
    let state = rec.effective_state(now);
    let endpoint = format!("{issuer}{}/{task_id}", dtr_proto::paths::ACCESS_REQUESTS);
    let mut task = json!({
        "id": task_id,
        "status": task_status(state),
        "status_endpoint": endpoint,
        "expires_at": format_time(rec.expires_at),
    });
    if state == DeferralState::Pending {
        task["links"] = json!({"cancel": format!("{endpoint}/cancel")});
        if let Some(step) = &rec.progress {
            task["progress"] = json!({"step_name": step});
        }
    }
    let mut out = json!({"task": task});
    if state == DeferralState::Approved {
        // ARAP "Approval and Re-evaluation": the approval the PEP carries
        // to its PDP; valid until the approver's limit, else the task's.
        let until = rec
            .approved_until
            .unwrap_or(rec.expires_at)
            .min(rec.expires_at);
        let mut approval = json!({
            "id": format!("apr_{}", &sha256_b64(&format!("approval\n{}", rec.id))[..22]),
            "approved_until": format_time(until),
        });
        if let Some(at) = rec.resolved_at {
            approval["approved_at"] = format_time(at).into();
        }
        out["result"] = json!({"mode": "reevaluate", "approval": approval});
    }
    out
}

/// The sealing context of an access request's callback URL (kept sealed
/// with the deferral: it may carry the PEP's per-task secret).
pub fn callback_context(deferral_id: &str) -> String {
    format!("access request callback\n{deferral_id}")
}

/// Whether `callback` is the registered endpoint or a path below it, on
/// the same origin (ARAP "Callback Completion": "authorized for the
/// authenticated PEP ... by matching a pre-registered callback URI").
pub fn callback_allowed(registered: &str, callback: &str) -> bool {
    let (Ok(r), Ok(c)) = (url::Url::parse(registered), url::Url::parse(callback)) else {
        return false;
    };
    if r.origin() != c.origin() || c.query().is_some() || c.fragment().is_some() {
        return false;
    }
    let base = r.path().trim_end_matches('/');
    c.path() == r.path()
        || c.path()
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/') && !rest.contains(".."))
}

/// The callback body of an access request deferral (ARAP "Callback
/// Completion": the task without a result, so the PEP polls for it).
pub fn callback_body(issuer: &str, task_id: &str, rec: &DeferralRecord, now: i64) -> Value {
    let full = task_json(issuer, task_id, rec, now);
    json!({"task": {
        "id": task_id,
        "status": full["task"]["status"],
        "status_endpoint": full["task"]["status_endpoint"],
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn body() -> Value {
        json!({
            "subject": {"type": "user", "id": "alice"},
            "resource": {"type": "document", "id": "q4-plan"},
            "action": {"name": "can_read"},
            "denial": {"evaluation_id": "ev1", "expires_at": format_time(NOW + 60_000)},
        })
    }

    #[test]
    fn submissions_need_a_fresh_bound_denial() {
        assert!(check(&body(), NOW).is_ok());
        let kind = |b: &Value| check(b, NOW).unwrap_err().kind;
        let mut b = body();
        b["denial"] = json!({"expires_at": format_time(NOW + 60_000)});
        assert_eq!(kind(&b), format!("{PROBLEM}invalid_denial_binding"));
        let mut b = body();
        b["denial"]["expires_at"] = format_time(NOW - 1000).into();
        let p = check(&b, NOW).unwrap_err();
        assert_eq!(
            (p.status, p.kind),
            (410, format!("{PROBLEM}expired_denial"))
        );
        let mut b = body();
        b.as_object_mut().unwrap().remove("resource");
        assert_eq!(check(&b, NOW).unwrap_err().status, 400);
        let mut b = body();
        b["items"] = json!([]);
        assert_eq!(check(&b, NOW).unwrap_err().status, 400);
        assert_eq!(check(&json!([1]), NOW).unwrap_err().status, 400);
    }

    #[test]
    fn callbacks_must_be_at_or_below_the_registered_endpoint() {
        let reg = "https://pep.example/authzen/callback";
        assert!(callback_allowed(reg, reg));
        assert!(callback_allowed(
            reg,
            "https://pep.example/authzen/callback/s3cr3t"
        ));
        for bad in [
            "https://pep.example/authzen/callbackx",
            "https://pep.example/other",
            "https://evil.example/authzen/callback/x",
            "http://pep.example/authzen/callback/x",
            "https://pep.example/authzen/callback/../admin",
            "https://pep.example/authzen/callback/x?y=1",
            "not a url",
        ] {
            assert!(!callback_allowed(reg, bad), "{bad}");
        }
    }

    #[test]
    fn canonical_bodies_ignore_member_order() {
        let a: Value =
            serde_json::from_str(r#"{"a": 1, "b": {"y": 2, "x": [1, {"q": 1, "p": 2}]}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"b": {"x": [1, {"p": 2, "q": 1}], "y": 2}, "a": 1}"#).unwrap();
        assert_eq!(canonical(&a).to_string(), canonical(&b).to_string());
    }

    #[test]
    fn statuses_of_the_lifecycle() {
        assert_eq!(task_status(DeferralState::Pending), "pending");
        assert_eq!(task_status(DeferralState::Approved), "approved");
        assert_eq!(task_status(DeferralState::Denied), "denied");
        assert_eq!(task_status(DeferralState::Cancelled), "cancelled");
        assert_eq!(task_status(DeferralState::Expired), "expired");
    }
}
