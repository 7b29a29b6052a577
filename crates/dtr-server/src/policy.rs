//! The deferral policy: which requests are issued at once, denied, or
//! deferred for a decision (DTR-3: deferring is the server's choice).
//! First matching rule wins; no match means `allow` (DESIGN.md).

use dtr_proto::scope::Scope;
use serde::Deserialize;

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
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
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
    /// `review | interaction | deny | allow | approve_after`.
    pub action: String,
    /// Seconds until an `approve_after` deferral approves itself.
    #[serde(default)]
    pub approve_after_seconds: Option<u64>,
}

/// A validated rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    scope_any: Vec<String>,
    client_id: Option<String>,
    grant_type: Option<String>,
    authorization_details_type: Option<String>,
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
        Ok(Self {
            scope_any: c.scope_any.clone(),
            client_id: c.client_id.clone(),
            grant_type: c.grant_type.clone(),
            authorization_details_type: c.authorization_details_type.clone(),
            action,
        })
    }

    fn matches(&self, r: &PolicyRequest<'_>) -> bool {
        let scope_ok =
            self.scope_any.is_empty() || self.scope_any.iter().any(|s| r.scope.contains(s));
        let client_ok = self.client_id.as_deref().is_none_or(|c| c == r.client_id);
        let grant_ok = self.grant_type.as_deref().is_none_or(|g| g == r.grant_type);
        let ad_ok = self
            .authorization_details_type
            .as_deref()
            .is_none_or(|t| r.authorization_details_types.contains(&t));
        scope_ok && client_ok && grant_ok && ad_ok
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
    /// `type`s of the RFC 9396 authorization details.
    pub authorization_details_types: &'a [&'a str],
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
            client_id: None,
            grant_type: None,
            authorization_details_type: None,
            action: action.into(),
            approve_after_seconds: None,
        }
    }

    fn eval(p: &Policy, client: &str, scope: &str, ad: &[&str]) -> Action {
        let scope = Scope::parse(scope).unwrap_or_default();
        p.evaluate(&PolicyRequest {
            client_id: client,
            grant_type: "client_credentials",
            scope: &scope,
            authorization_details_types: ad,
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
