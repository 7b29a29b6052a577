//! OpenID Connect Core 1.0 on this server: ID tokens (section 2) signed
//! with the client's `id_token_signed_response_alg` (RS256 by default,
//! section 3.1.3.7; or ES256 with the access token key), `id_token_hint`
//! verification (section 3.1.2.1), and the standard claims the UserInfo
//! endpoint releases per scope (section 5.4). The pure rules are in
//! `dtr_proto::oidc`.

use crate::error::Error;
use crate::state::AppState;
use crate::store::ClientRecord;
use dtr_proto::oidc::{half_hash, DEFAULT_ID_TOKEN_ALG, SCOPE_OPENID};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// `typ` of ID tokens: plain `JWT`, so that no ID token passes for an
/// access token (`at+jwt`, RFC 9068 section 2.1) or the other way round.
pub const ID_TOKEN_TYP: &str = "JWT";

/// What an ID token says about how the user authenticated, kept with the
/// grant (its code, deferral, refresh token) until the token is issued.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authentication {
    /// When the user authenticated (seconds since the epoch), section 2
    /// `auth_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The authorization request's `nonce`, echoed (section 3.1.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The authentication context class, when known (section 2 `acr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
}

impl Authentication {
    /// The same authentication for an ID token issued on refresh
    /// (section 12.2): `auth_time` of the original authentication, no
    /// `nonce` (it belonged to the authentication request).
    pub fn for_refresh(&self) -> Self {
        Self {
            nonce: None,
            ..self.clone()
        }
    }
}

/// Whether a space-separated scope asks for OpenID Connect.
pub fn is_openid(scope: &str) -> bool {
    scope.split(' ').any(|s| s == SCOPE_OPENID)
}

/// The ID token algorithm of a client (registered or configured
/// `id_token_signed_response_alg`, default RS256).
pub fn client_alg(client: &ClientRecord) -> &str {
    client
        .metadata
        .as_ref()
        .and_then(|m| m.get("id_token_signed_response_alg"))
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_ID_TOKEN_ALG)
}

/// What an ID token is issued for.
#[derive(Clone, Copy, Debug)]
pub struct IdTokenFor<'a> {
    /// The user (`sub`, section 2: the username here).
    pub username: &'a str,
    /// The client (`aud`).
    pub client_id: &'a str,
    /// How the user authenticated.
    pub auth: &'a Authentication,
    /// The access token issued with it, for `at_hash` (section 3.1.3.6;
    /// also CIBA Core section 10.1.1's token response).
    pub access_token: Option<&'a str>,
}

/// The claims of an ID token (section 2) issued at `iat` for `ttl`
/// seconds; pure, so tests read what is signed.
pub fn claims(issuer: &str, t: &IdTokenFor<'_>, iat: i64, ttl: i64) -> Value {
    let mut c = json!({
        "iss": issuer,
        "sub": t.username,
        "aud": t.client_id,
        "iat": iat,
        "exp": iat + ttl,
    });
    if let Some(a) = t.auth.auth_time {
        c["auth_time"] = a.into();
    }
    if let Some(n) = &t.auth.nonce {
        c["nonce"] = n.clone().into();
    }
    if let Some(a) = &t.auth.acr {
        c["acr"] = a.clone().into();
    }
    if let Some(at) = t.access_token {
        c["at_hash"] = half_hash(at).into();
    }
    c
}

/// Signs an ID token with the client's algorithm.
pub async fn id_token(state: &AppState, alg: &str, t: &IdTokenFor<'_>) -> Result<String, Error> {
    let iat = state.clock.now_ms() / 1000;
    let ttl = i64::try_from(state.config.tokens.access_token_ttl).unwrap_or(3600);
    let c = claims(&state.issuer, t, iat, ttl);
    let token = match alg {
        "ES256" => state.signer.sign_typed(ID_TOKEN_TYP, &c),
        _ => state.rsa_signer().await?.sign(&c),
    };
    if token.is_empty() {
        return Err(Error::internal("ID token signing failed"));
    }
    Ok(token)
}

/// The JWKS of `/jwks.json`: the access token key and the RS256 ID token
/// key (section 10.1.1: a `kid` each, since there are two).
pub async fn jwks(state: &AppState) -> Result<Value, Error> {
    let mut doc = state.signer.jwks();
    let rsa = state.rsa_signer().await?.jwk();
    if let Some(keys) = doc.get_mut("keys").and_then(Value::as_array_mut) {
        keys.push(rsa);
    }
    Ok(doc)
}

/// Verifies an `id_token_hint` (section 3.1.2.1; CIBA Core section 7.1):
/// an ID token this server issued to `client_id`, signature and issuer
/// checked. Expiry is not: the hint may be an expired ID token. The
/// user it names (`sub`), or `None` for anything else.
pub async fn verify_hint(
    state: &AppState,
    token: &str,
    client_id: &str,
) -> Result<Option<String>, Error> {
    let claims = match crate::keys::jws_alg(token).as_deref() {
        Some("ES256") => state.signer.verify_typed(ID_TOKEN_TYP, token),
        Some("RS256") => state.rsa_signer().await?.verify(token),
        _ => None,
    };
    let Some(c) = claims else { return Ok(None) };
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(client_id)),
        _ => false,
    };
    if c.get("iss").and_then(Value::as_str) != Some(state.issuer.as_str()) || !aud_ok {
        return Ok(None);
    }
    Ok(c.get("sub").and_then(Value::as_str).map(str::to_owned))
}

/// The claims UserInfo releases for `username` under `scope` (section
/// 5.4): always `sub`; the standard claims of the `[[users]]` entry that
/// the scope names and that are set.
pub fn userinfo(state: &AppState, username: &str, scope: &str) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("sub".into(), username.into());
    if let Some(u) = state.config.users.iter().find(|u| u.username == username) {
        let all = u.standard_claims();
        for s in scope.split(' ') {
            for name in dtr_proto::oidc::claims_of_scope(s) {
                if let Some(v) = all.get(*name) {
                    out.insert((*name).into(), v.clone());
                }
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_carry_what_was_known() {
        let auth = Authentication {
            auth_time: Some(90),
            nonce: Some("n-0S6_WzA2Mj".into()),
            acr: None,
        };
        let c = claims(
            "https://as.example",
            &IdTokenFor {
                username: "alice",
                client_id: "web",
                auth: &auth,
                access_token: Some("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            },
            100,
            60,
        );
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["aud"], "web");
        assert_eq!(c["exp"], 160);
        assert_eq!(c["auth_time"], 90);
        assert_eq!(c["nonce"], "n-0S6_WzA2Mj");
        assert_eq!(c["at_hash"], "77QmUPtjPfzWtF2AnpK9RQ");
        assert!(c.get("acr").is_none());
        assert!(auth.for_refresh().nonce.is_none());
        assert_eq!(auth.for_refresh().auth_time, Some(90));
    }

    #[test]
    fn openid_scope_is_a_whole_word() {
        assert!(is_openid("read openid"));
        assert!(!is_openid("openidx read"));
    }
}
