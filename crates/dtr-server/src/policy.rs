//! The deferral policy: which requests are issued at once, denied, or
//! deferred for a decision (DTR-3: deferring is the server's choice).
//! First matching rule wins; no match means `allow` (DESIGN.md).
//! Conditions on RFC 9396 `authorization_details` fields live in
//! [`details`].

pub mod details;

use details::{DetailsMatch, Outcome};
use dtr_proto::scope::Scope;
use serde::Deserialize;
use std::collections::BTreeMap;

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
}

impl Action {
    /// Whether the action needs a deferral (and therefore the client's
    /// opt-in, DTR-2).
    pub fn defers(self) -> bool {
        matches!(
            self,
            Self::Review | Self::Interaction | Self::ApproveAfter(_)
        )
    }
}

/// One `[[policy]]` table of the configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Matches when the request asks any of these scopes.
    #[serde(default)]
    pub scope_any: Vec<String>,
    /// Matches only this client.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Matches only this grant type.
    #[serde(default)]
    pub grant_type: Option<String>,
    /// Matches when an RFC 9396 authorization detail has this `type`.
    #[serde(default)]
    pub authorization_details_type: Option<String>,
    /// Conditions on fields of one authorization detail (of
    /// `authorization_details_type` when set), all of which must hold:
    /// `{ "instructedAmount.amount" = { gt = 10000 } }`; see [`details`].
    #[serde(default)]
    pub authorization_details_match: Option<BTreeMap<String, serde_json::Value>>,
    /// `review | interaction | deny | allow | approve_after`.
    pub action: String,
    /// Seconds until an `approve_after` deferral approves itself.
    #[serde(default)]
    pub approve_after_seconds: Option<u64>,
}

/// A validated rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    scope_any: Vec<String>,
    client_id: Option<String>,
    grant_type: Option<String>,
    authorization_details_type: Option<String>,
    details_match: Option<DetailsMatch>,
    action: Action,
}

impl Rule {
    /// Validates a configured rule; the error names the offending key.
    pub fn from_config(c: &RuleConfig) -> Result<Self, String> {
        let action = match (c.action.as_str(), c.approve_after_seconds) {
            ("allow", None) => Action::Allow,
            ("deny", None) => Action::Deny,
            ("review", None) => Action::Review,
            ("interaction", None) => Action::Interaction,
            ("approve_after", Some(s)) => Action::ApproveAfter(s),
            ("approve_after", None) => {
                return Err("approve_after_seconds: required with action = \"approve_after\"".into())
            }
            ("allow" | "deny" | "review" | "interaction", Some(_)) => {
                return Err("approve_after_seconds: only allowed with action = \"approve_after\"".into())
            }
            (other, _) => {
                return Err(format!(
                    "action: unknown action '{other}' (expected review, interaction, deny, allow or approve_after)"
                ))
            }
        };
        let details_match = c
            .authorization_details_match
            .as_ref()
            .map(DetailsMatch::from_config)
            .transpose()?;
        Ok(Self {
            scope_any: c.scope_any.clone(),
            client_id: c.client_id.clone(),
            grant_type: c.grant_type.clone(),
            authorization_details_type: c.authorization_details_type.clone(),
            details_match,
            action,
        })
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
        self.rules
            .iter()
            .find(|rule| rule.matches(r))
            .map(|rule| rule.action)
            .unwrap_or(Action::Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Rule::from_config(&rule("deny", &["admin"])).unwrap(),
            Rule::from_config(&rule("review", &["payments", "admin"])).unwrap(),
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
        let p = Policy::new(vec![Rule::from_config(&c).unwrap()]);
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
            .map(Rule::from_config)
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
        assert!(Rule::from_config(&c)
            .unwrap_err()
            .contains("approve_after_seconds"));
        c.approve_after_seconds = Some(2);
        assert_eq!(
            Rule::from_config(&c).map(|r| r.action),
            Ok(Action::ApproveAfter(2))
        );
        assert!(Rule::from_config(&rule("bogus", &[]))
            .unwrap_err()
            .starts_with("action"));
    }
}
