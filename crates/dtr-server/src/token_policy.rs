//! Who may use which of our access tokens beyond the client they were
//! issued to: the configured resource servers (`[[resource_servers]]`, the
//! only valid `audience` and `resource` values of a token exchange, and
//! the clients they introspect with) and the token exchange rules
//! (`[[token_exchange]]`). Pure decisions over the configuration and a
//! token's claims; the exchange grant and the introspection endpoint act
//! on them, so both read "whom is this token for" the same way.
//!
//! Closed by default (RFC 8693 sections 2.1 and 5, RFC 9700 section 2.3):
//! - a client exchanges only tokens issued to it or whose `aud` names it
//!   (its `client_id`, or the identifier of a resource server it is the
//!   client of); a rule's `subject_clients` widens that, `"*"` to any.
//!   The same holds for an `actor_token`: it is evidence of who acts
//!   (RFC 8693 section 1.1), and a client presenting a token it may not
//!   use would make the `act` claim name a party that never consented;
//! - every `audience` and `resource` must be the identifier of a
//!   configured resource server that the client's rule lists in
//!   `audiences`; without a rule, none at all (`invalid_target`, RFC 8693
//!   section 2.2.2): the audience decides where a token is accepted, and
//!   no client should mint tokens for a service nobody said it serves;
//! - an introspecting client (RFC 7662 section 4 lets the server limit
//!   what it reveals) sees only tokens issued to it or whose `aud` names
//!   it, as above; every other token is `{"active": false}`.
//!
//! The tables themselves and their start-up checks are configuration
//! ([`crate::config::ResourceServerConfig`],
//! [`crate::config::TokenExchangeRule`]).

pub use crate::config::{ResourceServerConfig, TokenExchangeRule};
use dtr_proto::params::printable;
use dtr_proto::{ErrorCode, OAuthError};
use serde_json::Value;

/// `subject_clients` value that allows the tokens of any client.
pub const ANY_CLIENT: &str = "*";

/// The `aud` claim of a token as a list (RFC 7519 section 4.1.3: a string
/// or an array of strings).
pub fn audience_of(claims: &Value) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whom a token is for: the client it was issued to and its audience.
#[derive(Clone, Copy, Debug)]
pub struct TokenParties<'a> {
    /// The `client_id` claim.
    pub client_id: Option<&'a str>,
    /// The `aud` claim.
    pub audience: &'a [String],
}

/// The configured resource servers and exchange rules.
#[derive(Clone, Copy, Debug)]
pub struct TokenPolicy<'a> {
    resource_servers: &'a [ResourceServerConfig],
    rules: &'a [TokenExchangeRule],
}

impl<'a> TokenPolicy<'a> {
    /// The policy of these tables.
    pub fn new(
        resource_servers: &'a [ResourceServerConfig],
        rules: &'a [TokenExchangeRule],
    ) -> Self {
        Self {
            resource_servers,
            rules,
        }
    }

    fn rule(&self, client_id: &str) -> Option<&'a TokenExchangeRule> {
        self.rules.iter().find(|r| r.client_id == client_id)
    }

    /// Whether the token was issued to `client_id` or its `aud` names it
    /// (the client itself, or a resource server it is the client of). What
    /// a client may introspect (RFC 7662 section 4) and exchange by
    /// default.
    pub fn addressed_to(&self, client_id: &str, token: TokenParties<'_>) -> bool {
        token.client_id == Some(client_id)
            || token.audience.iter().any(|a| {
                a == client_id
                    || self
                        .resource_servers
                        .iter()
                        .any(|rs| rs.identifier == *a && rs.client_id.as_deref() == Some(client_id))
            })
    }

    /// Whether `client_id` may present this token as `subject_token` or
    /// `actor_token` (RFC 8693 section 5: no laundering of other clients'
    /// tokens): addressed to it, or issued to a client its rule lists.
    pub fn may_exchange(&self, client_id: &str, token: TokenParties<'_>) -> bool {
        self.addressed_to(client_id, token)
            || self.rule(client_id).is_some_and(|r| {
                r.subject_clients
                    .iter()
                    .any(|s| s == ANY_CLIENT || Some(s.as_str()) == token.client_id)
            })
    }

    /// Every requested `audience` and `resource` must be a configured
    /// resource server that the client's rule allows; else
    /// `invalid_target` (RFC 8693 section 2.2.2).
    pub fn check_targets(&self, client_id: &str, targets: &[String]) -> Result<(), OAuthError> {
        let allowed = self.rule(client_id).map_or(&[][..], |r| &r.audiences[..]);
        for t in targets {
            let known = self.resource_servers.iter().any(|rs| rs.identifier == *t);
            if !known || !allowed.contains(t) {
                return Err(OAuthError::with_description(
                    ErrorCode::InvalidTarget,
                    format!(
                        "'{}' is not a resource server this client may obtain tokens for",
                        printable(t)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Resource servers and exchange rules the tests of the policy and of its
/// start-up validation share.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub const API: &str = "https://api.example/";
    pub const BILLING: &str = "https://billing.example/";

    /// `api` (introspecting as client `api`) and `billing`.
    pub fn servers() -> Vec<ResourceServerConfig> {
        vec![
            ResourceServerConfig {
                identifier: API.into(),
                client_id: Some("api".into()),
            },
            ResourceServerConfig {
                identifier: BILLING.into(),
                client_id: None,
            },
        ]
    }

    /// `gateway` exchanges `svc`'s tokens for `api`; `broker` anyone's,
    /// for no target.
    pub fn rules() -> Vec<TokenExchangeRule> {
        vec![
            TokenExchangeRule {
                client_id: "gateway".into(),
                subject_clients: vec!["svc".into()],
                audiences: vec![API.into()],
            },
            TokenExchangeRule {
                client_id: "broker".into(),
                subject_clients: vec![ANY_CLIENT.into()],
                audiences: vec![],
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn token<'a>(client: &'a str, aud: &'a [String]) -> TokenParties<'a> {
        TokenParties {
            client_id: Some(client),
            audience: aud,
        }
    }

    #[test]
    fn by_default_only_own_or_addressed_tokens() {
        let (rs, r) = (servers(), rules());
        let p = TokenPolicy::new(&rs, &r);
        let issuer = vec!["https://as.example".to_string()];
        assert!(p.may_exchange("svc", token("svc", &issuer)));
        assert!(!p.may_exchange("other", token("svc", &issuer)));
        // Addressed to the client itself, or to a resource server it is.
        assert!(p.may_exchange("other", token("svc", &["other".to_string()])));
        assert!(p.may_exchange("api", token("svc", &[API.to_string()])));
        assert!(!p.may_exchange("other", token("svc", &[API.to_string()])));
        // A resource server without a client_id names nobody.
        assert!(!p.addressed_to("other", token("svc", &[BILLING.to_string()])));
        // Rules widen it.
        assert!(p.may_exchange("gateway", token("svc", &issuer)));
        assert!(!p.may_exchange("gateway", token("other", &issuer)));
        assert!(p.may_exchange("broker", token("other", &issuer)));
        // Introspection never follows the rules, only the addressing.
        assert!(!p.addressed_to("gateway", token("svc", &issuer)));
    }

    #[test]
    fn targets_are_configured_and_allowed() {
        let (rs, r) = (servers(), rules());
        let p = TokenPolicy::new(&rs, &r);
        assert!(p.check_targets("gateway", &[]).is_ok());
        assert!(p.check_targets("gateway", &[API.into()]).is_ok());
        let e = p.check_targets("gateway", &[BILLING.into()]).unwrap_err();
        assert_eq!(e.error, ErrorCode::InvalidTarget);
        assert!(p
            .check_targets("gateway", &[API.into(), "https://evil/".into()])
            .is_err());
        // No rule, or a rule without audiences: no target at all.
        assert!(p.check_targets("svc", &[API.into()]).is_err());
        assert!(p.check_targets("broker", &[API.into()]).is_err());
        assert!(p.check_targets("svc", &[]).is_ok());
    }

    #[test]
    fn audience_claim_as_list() {
        assert_eq!(audience_of(&serde_json::json!({"aud": "a"})), vec!["a"]);
        assert_eq!(
            audience_of(&serde_json::json!({"aud": ["a", 1, "b"]})),
            vec!["a", "b"]
        );
        assert!(audience_of(&serde_json::json!({})).is_empty());
    }
}
