//! `[[policy]]`: the ordered deferral rules as written ([`RuleConfig`]),
//! and their validation into the rules the policy evaluates.
//!
//! The `action` key is checked here; the `authorization_details_match`
//! conditions are compiled by [`crate::policy::details`], whose language
//! they are.

use super::{err, ConfigError, SUPPORTED_GRANT_TYPES};
use crate::approvers::Approver;
use crate::policy::details::DetailsMatch;
use crate::policy::{Action, Routing, Rule};
use dtr_proto::scope::Scope;
use serde::Deserialize;
use std::collections::BTreeMap;

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
    /// `{ "instructedAmount.amount" = { gt = 10000 } }`; see
    /// [`crate::policy::details`].
    #[serde(default)]
    pub authorization_details_match: Option<BTreeMap<String, serde_json::Value>>,
    /// `review | interaction | deny | allow | approve_after | authzen`.
    pub action: String,
    /// Seconds until an `approve_after` deferral approves itself.
    #[serde(default)]
    pub approve_after_seconds: Option<u64>,
    /// Who may decide what this rule defers: `group:<name>`,
    /// `user:<name>`, `subject`, `owner`; admins always may.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Distinct approvals needed (four eyes: 2); default 1.
    #[serde(default)]
    pub approvals_required: Option<u32>,
}

impl RuleConfig {
    /// Validates the rule into the policy's [`Rule`]; the error names the
    /// offending key below the rule (`action: ...`).
    pub fn compile(&self) -> Result<Rule, String> {
        let action = match (self.action.as_str(), self.approve_after_seconds) {
            ("allow", None) => Action::Allow,
            ("deny", None) => Action::Deny,
            ("review", None) => Action::Review,
            ("interaction", None) => Action::Interaction,
            ("authzen", None) => Action::Authzen,
            ("approve_after", Some(s)) => Action::ApproveAfter(s),
            ("approve_after", None) => {
                return Err("approve_after_seconds: required with action = \"approve_after\"".into())
            }
            ("allow" | "deny" | "review" | "interaction" | "authzen", Some(_)) => {
                return Err("approve_after_seconds: only allowed with action = \"approve_after\"".into())
            }
            (other, _) => {
                return Err(format!(
                    "action: unknown action '{other}' (expected review, interaction, deny, allow, approve_after or authzen)"
                ))
            }
        };
        let details_match = self
            .authorization_details_match
            .as_ref()
            .map(DetailsMatch::from_config)
            .transpose()?;
        let routing = self.routing(action)?;
        Ok(Rule::new(
            self.scope_any.clone(),
            self.client_id.clone(),
            self.grant_type.clone(),
            self.authorization_details_type.clone(),
            details_match,
            action,
        )
        .with_routing(routing))
    }

    /// `approvers` and `approvals_required`, checked: approvers only on
    /// rules a person decides (`review`, `interaction`), at least one
    /// approval, and more than one only where more than one person can
    /// approve (not `subject` or `owner` alone: one user each).
    fn routing(&self, action: Action) -> Result<Routing, String> {
        let approvers = self
            .approvers
            .iter()
            .map(|a| Approver::parse(a).map_err(|e| format!("approvers: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let required = self.approvals_required.unwrap_or(1);
        let decided_by_people = matches!(action, Action::Review | Action::Interaction);
        if !decided_by_people && (!approvers.is_empty() || self.approvals_required.is_some()) {
            return Err(format!(
                "{}: only on rules a person decides (action = \"review\" or \"interaction\")",
                if approvers.is_empty() {
                    "approvals_required"
                } else {
                    "approvers"
                }
            ));
        }
        if required == 0 {
            return Err("approvals_required: at least 1".into());
        }
        let single_person = !approvers.is_empty()
            && approvers
                .iter()
                .all(|a| matches!(a, Approver::Subject | Approver::Owner));
        if required > 1 && single_person {
            return Err(
                "approvals_required: more than 1 needs approvers that are more than the subject or owner alone"
                    .into(),
            );
        }
        Ok(Routing {
            approvers,
            approvals_required: required,
        })
    }
}

/// Checks the `[[policy]]` tables in order (each error names the key) and
/// turns them into the policy's rules.
pub(super) fn validate_policy(rules: &[RuleConfig]) -> Result<Vec<Rule>, ConfigError> {
    let mut policy = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let rule = r
            .compile()
            .map_err(|m| ConfigError(format!("config key `policy[{i}].{m}")))?;
        if let Some(g) = &r.grant_type {
            if !SUPPORTED_GRANT_TYPES.contains(&g.as_str()) {
                return Err(err(
                    &format!("policy[{i}].grant_type"),
                    format!("unsupported grant type '{g}'"),
                ));
            }
        }
        for (j, s) in r.scope_any.iter().enumerate() {
            if Scope::parse(s)
                .map(|p| p.iter().count() != 1)
                .unwrap_or(true)
            {
                return Err(err(
                    &format!("policy[{i}].scope_any[{j}]"),
                    "must be one scope token",
                ));
            }
        }
        policy.push(rule);
    }
    Ok(policy)
}
