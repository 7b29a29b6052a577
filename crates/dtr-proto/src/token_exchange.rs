//! Token exchange requests (RFC 8693 section 2.1) and the pure rules of
//! the exchange: which token types we accept, the `resource` syntax of
//! RFC 8707, and the `act` claim of a delegation (RFC 8693 section 4.1).

use crate::error::{ErrorCode, OAuthError};
use crate::params::{printable, Params};
use crate::scope::Scope;
use crate::secret::AccessToken;
use crate::TOKEN_TYPE_ACCESS_TOKEN;
use serde_json::Value;

/// A token exchange request, client authentication and the DTR opt-in
/// aside (the caller parses those).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenExchangeRequest {
    /// The token whose subject the new token is for; one of our access tokens.
    pub subject_token: AccessToken,
    /// The party acting for the subject (delegation), one of our access tokens.
    pub actor_token: Option<AccessToken>,
    /// Requested scope; `None` means the subject token's scope.
    pub scope: Option<Scope>,
    /// RFC 8707 resource indicator: an absolute URI without fragment.
    pub resource: Option<String>,
    /// Logical name of the target service.
    pub audience: Option<String>,
}

/// The only token type we take and give: our own access tokens.
fn check_token_type(p: &Params, name: &str) -> Result<(), OAuthError> {
    let t = p.require(name)?;
    if t != TOKEN_TYPE_ACCESS_TOKEN {
        return Err(OAuthError::invalid_request(format!(
            "{name} '{}' is not supported; only {TOKEN_TYPE_ACCESS_TOKEN}",
            printable(t)
        )));
    }
    Ok(())
}

impl TokenExchangeRequest {
    /// Parses the exchange-specific parameters (RFC 8693 section 2.1).
    pub fn parse(p: &Params) -> Result<Self, OAuthError> {
        let subject_token = AccessToken::new(p.require("subject_token")?);
        check_token_type(p, "subject_token_type")?;
        // RFC 8693 section 2.1: actor_token_type is required with an
        // actor_token and must not appear without one.
        let actor_token = match p.get("actor_token") {
            Some(t) => {
                check_token_type(p, "actor_token_type")?;
                Some(AccessToken::new(t))
            }
            None if p.contains("actor_token_type") => {
                return Err(OAuthError::invalid_request(
                    "actor_token_type without actor_token",
                ));
            }
            None => None,
        };
        if let Some(t) = p.get("requested_token_type") {
            if t != TOKEN_TYPE_ACCESS_TOKEN {
                return Err(OAuthError::invalid_request(format!(
                    "requested_token_type '{}' is not supported; only {TOKEN_TYPE_ACCESS_TOKEN}",
                    printable(t)
                )));
            }
        }
        let resource = p.get("resource").map(check_resource).transpose()?;
        Ok(Self {
            subject_token,
            actor_token,
            scope: p.get("scope").map(Scope::parse).transpose()?,
            resource,
            audience: p.get("audience").map(str::to_owned),
        })
    }

    /// The audience of the new token: `resource` and `audience` both name
    /// the target; either may be given (RFC 8693 section 2.1).
    pub fn target(&self) -> Vec<String> {
        self.resource
            .iter()
            .chain(self.audience.iter())
            .cloned()
            .collect()
    }
}

/// RFC 8707 section 2: an absolute URI without a fragment, else
/// `invalid_target`.
fn check_resource(r: &str) -> Result<String, OAuthError> {
    match url::Url::parse(r) {
        Ok(u) if u.fragment().is_none() && !u.cannot_be_a_base() => Ok(r.to_owned()),
        _ => Err(OAuthError::with_description(
            ErrorCode::InvalidTarget,
            "resource must be an absolute URI without a fragment (RFC 8707 section 2)",
        )),
    }
}

/// The `act` claim of the exchanged token (RFC 8693 section 4.1): the
/// current actor on top, the subject token's own delegation chain nested
/// under it, so earlier actors are never lost. Without an actor token the
/// subject token's chain is kept as it is.
pub fn act_claim(
    actor_sub: Option<&str>,
    actor_client: Option<&str>,
    subject_act: Option<&Value>,
) -> Option<Value> {
    match actor_sub {
        None => subject_act.cloned(),
        Some(sub) => {
            let mut act = serde_json::json!({ "sub": sub });
            if let Some(c) = actor_client {
                act["client_id"] = c.into();
            }
            if let Some(prior) = subject_act {
                act["act"] = prior.clone();
            }
            Some(act)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: &str = TOKEN_TYPE_ACCESS_TOKEN;

    fn parse(pairs: &[(&str, &str)]) -> Result<TokenExchangeRequest, OAuthError> {
        TokenExchangeRequest::parse(&Params::from_pairs(pairs.iter().copied()))
    }

    fn code(r: Result<TokenExchangeRequest, OAuthError>) -> Option<ErrorCode> {
        r.err().map(|e| e.error)
    }

    #[test]
    fn minimal_request() {
        let r = parse(&[("subject_token", "tok"), ("subject_token_type", AT)]).unwrap();
        assert_eq!(r.subject_token, AccessToken::new("tok"));
        assert!(r.actor_token.is_none() && r.scope.is_none() && r.target().is_empty());
        assert!(!format!("{r:?}").contains("tok\""));
    }

    #[test]
    fn full_request() {
        let r = parse(&[
            ("subject_token", "s"),
            ("subject_token_type", AT),
            ("actor_token", "a"),
            ("actor_token_type", AT),
            ("requested_token_type", AT),
            ("scope", "read"),
            ("resource", "https://api.example/v1"),
            ("audience", "billing"),
        ])
        .unwrap();
        assert_eq!(r.actor_token, Some(AccessToken::new("a")));
        assert_eq!(
            r.target(),
            vec!["https://api.example/v1".to_string(), "billing".into()]
        );
    }

    #[test]
    fn other_token_types_are_refused() {
        let id = "urn:ietf:params:oauth:token-type:id_token";
        assert_eq!(
            code(parse(&[("subject_token", "s")])),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(parse(&[("subject_token_type", AT)])),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(parse(&[("subject_token", "s"), ("subject_token_type", id)])),
            Some(ErrorCode::InvalidRequest)
        );
        let base = [("subject_token", "s"), ("subject_token_type", AT)];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            code(parse(&v))
        };
        assert_eq!(
            with(&[("actor_token", "a")]),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            with(&[("actor_token", "a"), ("actor_token_type", id)]),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            with(&[("actor_token_type", AT)]),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            with(&[(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token"
            )]),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            with(&[("resource", "not a uri")]),
            Some(ErrorCode::InvalidTarget)
        );
        assert_eq!(
            with(&[("resource", "https://api.example/#frag")]),
            Some(ErrorCode::InvalidTarget)
        );
    }

    #[test]
    fn act_claims_nest_prior_actors() {
        assert_eq!(act_claim(None, None, None), None);
        assert_eq!(
            act_claim(Some("agent"), Some("agent-client"), None),
            Some(serde_json::json!({"sub": "agent", "client_id": "agent-client"}))
        );
        let prior = serde_json::json!({"sub": "first"});
        assert_eq!(
            act_claim(Some("second"), None, Some(&prior)),
            Some(serde_json::json!({"sub": "second", "act": {"sub": "first"}}))
        );
        assert_eq!(act_claim(None, None, Some(&prior)), Some(prior));
    }
}
