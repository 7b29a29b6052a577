//! Token exchange (RFC 8693) with this server's own access tokens as the
//! subject and actor tokens, deferrable like every grant: the policy may
//! send an exchange to review, and the successful poll then carries the
//! exchange's `issued_token_type` (DTR-20).
//!
//! Rules beyond RFC 8693 that keep the exchange from widening anything
//! (DTR-24, DTR-38):
//! - the new scope is a subset of the subject token's scope and of what
//!   the exchanging client may ask for;
//! - the new token never outlives the subject (or actor) token;
//! - a DPoP-bound subject or actor token is only exchanged by a request
//!   proving its key, so a stolen bound token cannot be laundered into an
//!   unbound one;
//! - at redemption of a deferred exchange the subject and actor tokens
//!   must still be valid (not revoked, not expired) and the exchange still
//!   allowed, else `access_denied` (DTR-23).
//!
//! Who may exchange what is policy ([`crate::token_policy`], RFC 8693
//! sections 2.1 and 5, RFC 9700 section 2.3): by default a client uses
//! only tokens issued to it or addressed to it, and names no `audience`
//! or `resource`; `[[token_exchange]]` rules widen both, targets only
//! among `[[resource_servers]]`. The issued token records the tokens it
//! was made from, so it dies with them: revoking the subject or actor
//! token, revoking its family or disabling its user makes every token
//! exchanged from it, however many exchanges deep, inactive.

use super::{execute, GrantOutcome, GrantRequest, StoredGrant};
use crate::error::Error;
use crate::state::AppState;
use crate::store::ClientRecord;
use crate::token_policy::{audience_of, TokenParties, TokenPolicy};
use crate::tokens::{self, TokenExtras};
use dtr_proto::scope::Scope;
use dtr_proto::secret::AccessToken;
use dtr_proto::token::DeferralOptIn;
use dtr_proto::token_exchange::{act_claim, TokenExchangeRequest};
use dtr_proto::{ErrorCode, OAuthError, GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a deferred exchange needs at redemption, stored as the deferral's
/// `grant_context` under the key `token_exchange`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeContext {
    /// `jti` of the subject token, re-checked at redemption (DTR-23).
    pub subject_jti: String,
    /// Its expiry (seconds since the epoch).
    pub subject_exp: i64,
    /// `jti` of the actor token, if any.
    pub actor_jti: Option<String>,
    /// Its expiry (seconds).
    pub actor_exp: Option<i64>,
    /// The `act` claim of the new token (RFC 8693 section 4.1).
    pub act: Option<Value>,
    /// Audience of the new token (`resource` and `audience`).
    pub audience: Vec<String>,
    /// RFC 8693 `issued_token_type` of the response (DTR-20).
    pub issued_token_type: String,
    /// The exchanging client, whose rights are checked again at
    /// redemption (DTR-23); empty in contexts written before the exchange
    /// policy, which are then refused.
    #[serde(default)]
    pub client_id: String,
    /// `client_id` claim of the subject token.
    #[serde(default)]
    pub subject_client: Option<String>,
    /// `aud` claim of the subject token.
    #[serde(default)]
    pub subject_aud: Vec<String>,
    /// `client_id` claim of the actor token.
    #[serde(default)]
    pub actor_client: Option<String>,
    /// `aud` claim of the actor token.
    #[serde(default)]
    pub actor_aud: Vec<String>,
}

/// Key of the exchange context within `grant_context`.
const CONTEXT_KEY: &str = "token_exchange";

impl ExchangeContext {
    /// The `grant_context` document.
    pub fn to_grant_context(&self) -> Option<Value> {
        serde_json::to_value(self)
            .ok()
            .map(|v| serde_json::json!({ CONTEXT_KEY: v }))
    }

    /// Reads it back from a deferral's `grant_context`.
    pub fn from_grant_context(v: Option<&Value>) -> Option<Self> {
        serde_json::from_value(v?.get(CONTEXT_KEY)?.clone()).ok()
    }

    /// Whether the exchange is still allowed by `policy`: the client may
    /// use the subject and actor tokens and ask for the audience.
    fn allowed(&self, policy: &TokenPolicy<'_>) -> bool {
        let subject = TokenParties {
            client_id: self.subject_client.as_deref(),
            audience: &self.subject_aud,
        };
        let actor = TokenParties {
            client_id: self.actor_client.as_deref(),
            audience: &self.actor_aud,
        };
        !self.client_id.is_empty()
            && policy.may_exchange(&self.client_id, subject)
            && (self.actor_jti.is_none() || policy.may_exchange(&self.client_id, actor))
            && policy
                .check_targets(&self.client_id, &self.audience)
                .is_ok()
    }

    /// What the issued token carries besides the common claims; it expires
    /// no later than the tokens it was made from, and is valid only while
    /// they are.
    pub fn extras(&self) -> TokenExtras {
        TokenExtras {
            act: self.act.clone(),
            audience: self.audience.clone(),
            issued_token_type: Some(self.issued_token_type.clone()),
            not_after: Some(
                self.actor_exp
                    .map_or(self.subject_exp, |a| a.min(self.subject_exp)),
            ),
            parents: std::iter::once(self.subject_jti.clone())
                .chain(self.actor_jti.clone())
                .collect(),
        }
    }
}

/// The claims of one of our access tokens that the exchange relies on.
#[derive(Clone, Debug)]
struct OwnToken {
    jti: String,
    exp: i64,
    sub: String,
    client_id: Option<String>,
    scope: Scope,
    act: Option<Value>,
    cnf_jkt: Option<String>,
    authorization_details: Option<Value>,
    audience: Vec<String>,
}

impl OwnToken {
    fn parties(&self) -> TokenParties<'_> {
        TokenParties {
            client_id: self.client_id.as_deref(),
            audience: &self.audience,
        }
    }
}

fn invalid_grant(what: &str) -> OAuthError {
    OAuthError::with_description(
        ErrorCode::InvalidGrant,
        format!("{what} is not a valid, unexpired and unrevoked access token of this server"),
    )
}

/// Verifies one of our access tokens ([`tokens::verify_live`]: signature,
/// issuer, expiry, revocation of it and of everything it descends from)
/// and that `client_id` may use it ([`TokenPolicy::may_exchange`]).
/// Anything else is `invalid_grant` (RFC 8693 section 2.2.2 refers to
/// RFC 6749 section 5.2), the same answer whatever the reason, so the
/// endpoint is no oracle for the validity of other clients' tokens.
async fn validate(
    state: &AppState,
    policy: &TokenPolicy<'_>,
    client_id: &str,
    token: &AccessToken,
    what: &str,
) -> Result<OwnToken, crate::error::Error> {
    let claims = tokens::verify_live(state, token.secret())
        .await?
        .ok_or_else(|| invalid_grant(what))?;
    let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let (Some(jti), Some(sub)) = (s("jti"), s("sub")) else {
        return Err(invalid_grant(what).into());
    };
    let t = OwnToken {
        jti,
        exp,
        sub,
        client_id: s("client_id"),
        scope: Scope::parse(&s("scope").unwrap_or_default()).unwrap_or_default(),
        act: claims.get("act").cloned(),
        cnf_jkt: claims
            .get("cnf")
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        authorization_details: claims.get("authorization_details").cloned(),
        audience: audience_of(&claims),
    };
    if !policy.may_exchange(client_id, t.parties()) {
        return Err(invalid_grant(what).into());
    }
    Ok(t)
}

/// A DPoP-bound token is only exchanged with a proof of its key (RFC 9449
/// section 6: the binding must survive, never be shed by an exchange).
fn check_binding(t: &OwnToken, proof_jkt: Option<&str>, what: &str) -> Result<(), OAuthError> {
    match (&t.cnf_jkt, proof_jkt) {
        (None, _) => Ok(()),
        (Some(bound), Some(jkt)) if dtr_proto::secret::ct_eq(bound.as_bytes(), jkt.as_bytes()) => {
            Ok(())
        }
        (Some(_), _) => Err(OAuthError::with_description(
            ErrorCode::InvalidGrant,
            format!("{what} is DPoP-bound: send a DPoP proof of its key"),
        )),
    }
}

/// The granted scope: what was asked (by default everything the subject
/// token has that the client may ask for), never beyond the subject
/// token's scope nor the client's (no expansion, DTR-24).
fn granted_scope(
    requested: Option<Scope>,
    subject: &Scope,
    client: &Scope,
) -> Result<Scope, OAuthError> {
    let scope = match requested {
        Some(s) => s,
        None => Scope::parse(
            &subject
                .iter()
                .filter(|s| client.contains(s))
                .collect::<Vec<_>>()
                .join(" "),
        )?,
    };
    if !scope.is_subset(subject) {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidScope,
            "requested scope exceeds the subject token's scope",
        ));
    }
    if !scope.is_subset(client) {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidScope,
            "requested scope exceeds what the client may ask for",
        ));
    }
    Ok(scope)
}

/// Handles a token exchange request of an authenticated client.
pub async fn exchange(
    state: &AppState,
    client: &ClientRecord,
    req: TokenExchangeRequest,
    opt_in: DeferralOptIn,
    dpop_jkt: Option<String>,
) -> Result<GrantOutcome, Error> {
    let policy = TokenPolicy::new(&state.config.resource_servers, &state.config.token_exchange);
    let cid = client.client_id.as_str();
    let subject = validate(state, &policy, cid, &req.subject_token, "subject_token").await?;
    check_binding(&subject, dpop_jkt.as_deref(), "subject_token")?;
    let actor = match &req.actor_token {
        None => None,
        Some(t) => {
            let a = validate(state, &policy, cid, t, "actor_token").await?;
            check_binding(&a, dpop_jkt.as_deref(), "actor_token")?;
            Some(a)
        }
    };
    let audience = req.target();
    policy.check_targets(cid, &audience)?;
    let client_scope = Scope::parse(&client.scope).unwrap_or_default();
    let scope = granted_scope(req.scope.clone(), &subject.scope, &client_scope)?;
    let ctx = ExchangeContext {
        subject_jti: subject.jti.clone(),
        subject_exp: subject.exp,
        actor_jti: actor.as_ref().map(|a| a.jti.clone()),
        actor_exp: actor.as_ref().map(|a| a.exp),
        act: act_claim(
            actor.as_ref().map(|a| a.sub.as_str()),
            actor.as_ref().and_then(|a| a.client_id.as_deref()),
            subject.act.as_ref(),
        ),
        audience,
        issued_token_type: TOKEN_TYPE_ACCESS_TOKEN.into(),
        client_id: client.client_id.clone(),
        subject_client: subject.client_id.clone(),
        subject_aud: subject.audience.clone(),
        actor_client: actor.as_ref().and_then(|a| a.client_id.clone()),
        actor_aud: actor
            .as_ref()
            .map(|a| a.audience.clone())
            .unwrap_or_default(),
    };
    let request = GrantRequest {
        client,
        grant_type: GRANT_TYPE_TOKEN_EXCHANGE,
        scope,
        authorization_details: subject.authorization_details,
        subject: subject.sub,
        opt_in,
        dpop_jkt,
        grant: StoredGrant::Exchange(Box::new(ctx)),
        not_after: None,
    };
    let outcome = request.plan(state).await?;
    execute(state, request, outcome).await
}

/// DTR-23 at redemption of a deferred exchange: the subject and actor
/// tokens must still be valid (through everything they descend from) and
/// the exchange still allowed by the configured policy. Returns the
/// token's extra claims, or why the deferral must be denied.
pub async fn recheck(
    state: &AppState,
    ctx: &ExchangeContext,
    now: i64,
) -> Result<Option<&'static str>, Error> {
    let now_s = now / 1000;
    let mut tokens = vec![(ctx.subject_jti.as_str(), ctx.subject_exp)];
    if let (Some(j), Some(e)) = (ctx.actor_jti.as_deref(), ctx.actor_exp) {
        tokens.push((j, e));
    }
    for (jti, exp) in tokens {
        if exp <= now_s {
            return Ok(Some("subject or actor token expired before redemption"));
        }
        // A storage error is an error: never issue unchecked, and never
        // deny an approval because the database was away.
        if state.store.token_revoked(jti).await? {
            return Ok(Some("subject or actor token revoked before redemption"));
        }
    }
    let policy = TokenPolicy::new(&state.config.resource_servers, &state.config.token_exchange);
    if !ctx.allowed(&policy) {
        return Ok(Some("token exchange no longer allowed for this client"));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[test]
    fn scope_never_widens() {
        let subject = scope("read write payments");
        let client = scope("read payments admin");
        assert_eq!(
            granted_scope(None, &subject, &client).unwrap(),
            scope("read payments")
        );
        assert_eq!(
            granted_scope(Some(scope("read")), &subject, &client).unwrap(),
            scope("read")
        );
        let e = granted_scope(Some(scope("admin")), &subject, &client).unwrap_err();
        assert_eq!(e.error, ErrorCode::InvalidScope);
        assert!(e.error_description.unwrap().contains("subject token"));
        let e = granted_scope(Some(scope("write")), &subject, &client).unwrap_err();
        assert!(e.error_description.unwrap().contains("client"));
    }

    #[test]
    fn context_round_trips_and_caps_expiry() {
        let ctx = ExchangeContext {
            subject_jti: "s".into(),
            subject_exp: 2_000,
            actor_jti: Some("a".into()),
            actor_exp: Some(1_500),
            act: Some(serde_json::json!({"sub": "agent"})),
            audience: vec!["https://api.example/".into()],
            issued_token_type: TOKEN_TYPE_ACCESS_TOKEN.into(),
            client_id: "gw".into(),
            subject_client: Some("svc".into()),
            subject_aud: vec![],
            actor_client: None,
            actor_aud: vec![],
        };
        let v = ctx.to_grant_context();
        assert_eq!(
            ExchangeContext::from_grant_context(v.as_ref()),
            Some(ctx.clone())
        );
        assert_eq!(
            ExchangeContext::from_grant_context(Some(&serde_json::json!({"other": 1}))),
            None
        );
        let x = ctx.extras();
        assert_eq!(x.not_after, Some(1_500));
        assert_eq!(x.parents, vec!["s".to_string(), "a".into()]);
        assert_eq!(
            x.issued_token_type.as_deref(),
            Some(TOKEN_TYPE_ACCESS_TOKEN)
        );
    }

    #[test]
    fn redemption_rechecks_the_exchange_policy() {
        use crate::token_policy::{ResourceServerConfig, TokenExchangeRule};
        let api = "https://api.example/".to_string();
        let rs = vec![ResourceServerConfig {
            identifier: api.clone(),
            client_id: None,
        }];
        let rules = vec![TokenExchangeRule {
            client_id: "gw".into(),
            subject_clients: vec!["svc".into()],
            audiences: vec![api.clone()],
        }];
        let policy = TokenPolicy::new(&rs, &rules);
        let ctx = ExchangeContext {
            subject_jti: "s".into(),
            subject_exp: 2_000,
            actor_jti: None,
            actor_exp: None,
            act: None,
            audience: vec![api.clone()],
            issued_token_type: TOKEN_TYPE_ACCESS_TOKEN.into(),
            client_id: "gw".into(),
            subject_client: Some("svc".into()),
            subject_aud: vec![],
            actor_client: None,
            actor_aud: vec![],
        };
        assert!(ctx.allowed(&policy));
        // The rule gone (configuration changed while deferred): refused.
        assert!(!ctx.allowed(&TokenPolicy::new(&rs, &[])));
        // A foreign actor token, a target no longer allowed, a context
        // written before the policy existed: refused.
        let foreign_actor = ExchangeContext {
            actor_jti: Some("a".into()),
            actor_client: Some("other".into()),
            ..ctx.clone()
        };
        assert!(!foreign_actor.allowed(&policy));
        let elsewhere = ExchangeContext {
            audience: vec!["https://elsewhere/".into()],
            ..ctx.clone()
        };
        assert!(!elsewhere.allowed(&policy));
        let old = ExchangeContext {
            client_id: String::new(),
            ..ctx
        };
        assert!(!old.allowed(&policy));
    }

    #[test]
    fn bound_tokens_need_their_key() {
        let t = OwnToken {
            jti: "j".into(),
            exp: 1,
            sub: "alice".into(),
            client_id: None,
            scope: Scope::default(),
            act: None,
            cnf_jkt: Some("thumb".into()),
            authorization_details: None,
            audience: vec![],
        };
        assert!(check_binding(&t, Some("thumb"), "subject_token").is_ok());
        assert_eq!(
            check_binding(&t, None, "subject_token").unwrap_err().error,
            ErrorCode::InvalidGrant
        );
        assert!(check_binding(&t, Some("other"), "subject_token").is_err());
        let unbound = OwnToken { cnf_jkt: None, ..t };
        assert!(check_binding(&unbound, None, "subject_token").is_ok());
    }
}
