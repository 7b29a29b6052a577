//! The deferral policy: which requests are issued at once, denied, or
//! deferred for a decision (DTR-3: deferring is the server's choice).
//! First matching rule wins; no match means `allow` (DESIGN.md).
//! Conditions on RFC 9396 `authorization_details` fields live in
//! [`details`]. The rules as written (`[[policy]]`) and the checks of
//! their keys are configuration ([`crate::config::RuleConfig`]); this
//! module evaluates the validated [`Rule`]s.

pub mod details;
pub mod narrowing;

use details::{DetailsMatch, Outcome};
use dtr_proto::scope::Scope;

/// What a rule does with a matching request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Issue synchronously.
    Allow,
    /// Refuse with `access_denied`.
    Deny,
    /// Defer until a reviewer decides (`authorization_pending`).
    Review,
    /// Defer until the user acts at the `interaction_uri` (DTR-11).
    Interaction,
    /// Defer, then approve by itself after this many seconds (demos, tests).
    ApproveAfter(u64),
    /// Ask the AuthZEN PDP of `[authzen]` ([`crate::authzen`]): issue
    /// when it allows, refuse on a plain denial, defer to an ARAP access
    /// request on a requestable one.
    Authzen,
}

impl Action {
    /// Whether the action needs a deferral (and therefore the client's
    /// opt-in, DTR-2). `Authzen` defers only on a requestable denial,
    /// which the PDP's answer decides, so it counts as deferring: its
    /// deferrals wait for an access request's task.
    pub fn defers(self) -> bool {
        matches!(
            self,
            Self::Review | Self::Interaction | Self::ApproveAfter(_) | Self::Authzen
        )
    }
}

/// A validated rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    routing: Routing,
    scope_any: Vec<String>,
    client_id: Option<String>,
    grant_type: Option<String>,
    authorization_details_type: Option<String>,
    details_match: Option<DetailsMatch>,
    action: Action,
}

/// Who decides what a rule defers: its `approvers` (empty: admins, and
/// the interaction page's default decider) and how many distinct ones
/// must approve (`approvals_required`, four eyes at 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routing {
    /// The rule's approvers.
    pub approvers: Vec<crate::approvers::Approver>,
    /// Distinct approvals needed; at least 1.
    pub approvals_required: u32,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            approvers: Vec::new(),
            approvals_required: 1,
        }
    }
}

impl Rule {
    /// The rule with its routing (`approvers`, `approvals_required`).
    pub fn with_routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        self
    }

    /// A rule of validated parts; the configuration builds them from a
    /// `[[policy]]` table (`RuleConfig::compile` in [`crate::config`]).
    pub fn new(
        scope_any: Vec<String>,
        client_id: Option<String>,
        grant_type: Option<String>,
        authorization_details_type: Option<String>,
        details_match: Option<DetailsMatch>,
        action: Action,
    ) -> Self {
        Self {
            routing: Routing::default(),
            scope_any,
            client_id,
            grant_type,
            authorization_details_type,
            details_match,
            action,
        }
    }

    /// The rule's action.
    pub fn action(&self) -> Action {
        self.action
    }

    fn matches(&self, r: &PolicyRequest<'_>) -> bool {
        let scope_ok =
            self.scope_any.is_empty() || self.scope_any.iter().any(|s| r.scope.contains(s));
        let client_ok = self.client_id.as_deref().is_none_or(|c| c == r.client_id);
        let grant_ok = self.grant_type.as_deref().is_none_or(|g| g == r.grant_type);
        scope_ok && client_ok && grant_ok && self.details_ok(r.authorization_details)
    }

    /// The type and field conditions hold for one and the same
    /// authorization detail. An indeterminate field (present, not
    /// comparable) matches every rule but `allow`, so a value the policy
    /// cannot read is decided by a person rather than waved through.
    fn details_ok(&self, details: Option<&serde_json::Value>) -> bool {
        if self.authorization_details_type.is_none() && self.details_match.is_none() {
            return true;
        }
        let objects = details
            .and_then(|d| d.as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        objects.iter().any(|d| {
            let type_ok = self
                .authorization_details_type
                .as_deref()
                .is_none_or(|t| d.get("type").and_then(|v| v.as_str()) == Some(t));
            type_ok
                && match self.details_match.as_ref().map(|m| m.evaluate(d)) {
                    None | Some(Outcome::Match) => true,
                    Some(Outcome::Indeterminate) => self.action != Action::Allow,
                    Some(Outcome::NoMatch) => false,
                }
        })
    }
}

/// What the policy sees of a request.
#[derive(Clone, Debug)]
pub struct PolicyRequest<'a> {
    /// The authenticated client.
    pub client_id: &'a str,
    /// The originating grant type.
    pub grant_type: &'a str,
    /// The requested scope.
    pub scope: &'a Scope,
    /// The RFC 9396 authorization details (a JSON array of objects).
    pub authorization_details: Option<&'a serde_json::Value>,
}

/// An ordered list of rules.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// A policy from validated rules.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// The action of the first matching rule, `Allow` when none matches.
    pub fn evaluate(&self, r: &PolicyRequest<'_>) -> Action {
        self.decide(r).0
    }

    /// The first matching rule's action and who decides what it defers
    /// (its routing); no match allows, with no routing.
    pub fn decide(&self, r: &PolicyRequest<'_>) -> (Action, Routing) {
        self.rules
            .iter()
            .find(|rule| rule.matches(r))
            .map(|rule| (rule.action, rule.routing.clone()))
            .unwrap_or((Action::Allow, Routing::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleConfig;
    use serde::Deserialize;

    fn rule(action: &str, scopes: &[&str]) -> RuleConfig {
        RuleConfig {
            scope_any: scopes.iter().map(|s| s.to_string()).collect(),
            action: action.into(),
            ..Default::default()
        }
    }

    fn eval(p: &Policy, client: &str, scope: &str, ad: &[&str]) -> Action {
        let details: Vec<serde_json::Value> = ad
            .iter()
            .map(|t| serde_json::json!({ "type": t }))
            .collect();
        eval_details(
            p,
            client,
            scope,
            (!ad.is_empty()).then(|| serde_json::json!(details)),
        )
    }

    fn eval_details(
        p: &Policy,
        client: &str,
        scope: &str,
        ad: Option<serde_json::Value>,
    ) -> Action {
        let scope = Scope::parse(scope).unwrap_or_default();
        p.evaluate(&PolicyRequest {
            client_id: client,
            grant_type: "client_credentials",
            scope: &scope,
            authorization_details: ad.as_ref(),
        })
    }

    #[test]
    fn first_match_wins_and_default_allows() {
        let p = Policy::new(vec![
            rule("deny", &["admin"]).compile().unwrap(),
            rule("review", &["payments", "admin"]).compile().unwrap(),
        ]);
        assert_eq!(eval(&p, "svc", "read payments", &[]), Action::Review);
        assert_eq!(eval(&p, "svc", "admin payments", &[]), Action::Deny);
        assert_eq!(eval(&p, "svc", "read", &[]), Action::Allow);
    }

    #[test]
    fn conditions_combine() {
        let mut c = rule("interaction", &[]);
        c.client_id = Some("agent".into());
        c.authorization_details_type = Some("payment_initiation".into());
        let p = Policy::new(vec![c.compile().unwrap()]);
        assert_eq!(
            eval(&p, "agent", "read", &["payment_initiation"]),
            Action::Interaction
        );
        assert_eq!(eval(&p, "agent", "read", &["other"]), Action::Allow);
        assert_eq!(
            eval(&p, "svc", "read", &["payment_initiation"]),
            Action::Allow
        );
    }

    fn parse_rules(text: &str) -> Result<Policy, String> {
        #[derive(Deserialize)]
        struct File {
            policy: Vec<RuleConfig>,
        }
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        f.policy
            .iter()
            .map(RuleConfig::compile)
            .collect::<Result<Vec<_>, _>>()
            .map(Policy::new)
    }

    #[test]
    fn payments_over_ten_thousand_is_one_rule() {
        let p = parse_rules(
            r#"
[[policy]]
authorization_details_type = "payment_initiation"
authorization_details_match = { "instructedAmount.amount" = { gt = 10000 }, "instructedAmount.currency" = { in = ["EUR", "CHF"] } }
action = "review"
"#,
        )
        .unwrap();
        let pay = |amount: &str, currency: &str| {
            Some(serde_json::json!([
                {"type": "account_information"},
                {"type": "payment_initiation", "instructedAmount": {"amount": amount, "currency": currency}},
            ]))
        };
        assert_eq!(
            eval_details(&p, "svc", "read", pay("10000.50", "EUR")),
            Action::Review
        );
        assert_eq!(
            eval_details(&p, "svc", "read", pay("9999.99", "EUR")),
            Action::Allow
        );
        assert_eq!(
            eval_details(&p, "svc", "read", pay("50000", "USD")),
            Action::Allow
        );
        assert_eq!(eval_details(&p, "svc", "read", None), Action::Allow);
        // The type and the fields must hold for the same object.
        let split = serde_json::json!([
            {"type": "payment_initiation", "instructedAmount": {"amount": "5", "currency": "EUR"}},
            {"type": "other", "instructedAmount": {"amount": "50000", "currency": "EUR"}},
        ]);
        assert_eq!(eval_details(&p, "svc", "read", Some(split)), Action::Allow);
        // An amount the policy cannot read is reviewed, never waved through.
        assert_eq!(
            eval_details(&p, "svc", "read", pay("10 000", "EUR")),
            Action::Review
        );
    }

    #[test]
    fn indeterminate_fields_never_match_allow_rules() {
        let p = parse_rules(
            r#"
[[policy]]
authorization_details_match = { "amount" = { lt = 100 } }
action = "allow"
[[policy]]
authorization_details_type = "payment_initiation"
action = "review"
"#,
        )
        .unwrap();
        let ad = |amount: serde_json::Value| {
            Some(serde_json::json!([{"type": "payment_initiation", "amount": amount}]))
        };
        assert_eq!(
            eval_details(&p, "svc", "", ad(serde_json::json!(50))),
            Action::Allow
        );
        assert_eq!(
            eval_details(&p, "svc", "", ad(serde_json::json!("fifty"))),
            Action::Review
        );
        assert_eq!(
            eval_details(&p, "svc", "", ad(serde_json::json!(500))),
            Action::Review
        );
    }

    #[test]
    fn match_errors_name_the_key() {
        let e = parse_rules(
            "[[policy]]\naction = \"review\"\nauthorization_details_match = { \"amount\" = { above = 1 } }",
        )
        .unwrap_err();
        assert!(
            e.starts_with("authorization_details_match.\"amount\""),
            "{e}"
        );
    }

    #[test]
    fn approve_after_needs_seconds() {
        let mut c = rule("approve_after", &["x"]);
        assert!(c.compile().unwrap_err().contains("approve_after_seconds"));
        c.approve_after_seconds = Some(2);
        assert_eq!(c.compile().map(|r| r.action), Ok(Action::ApproveAfter(2)));
        assert!(rule("bogus", &[])
            .compile()
            .unwrap_err()
            .starts_with("action"));
    }
}
