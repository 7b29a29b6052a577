//! Issuing access tokens: JWTs per RFC 9068 signed with the server's ES256
//! key, recorded by `jti` so that revocation and introspection work.

use crate::state::AppState;
use crate::store::IssuedToken;
use dtr_proto::secret::random_token;
use dtr_proto::token::TokenResponse;

/// What a token is issued for, after every decision has been made.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The client.
    pub client_id: String,
    /// The subject: the resource owner, or the client itself for the client
    /// credentials grant (RFC 9068 section 2.2).
    pub subject: String,
    /// Final scope (possibly narrowed, DTR-24).
    pub scope: String,
    /// RFC 9396 authorization details granted.
    pub authorization_details: Option<serde_json::Value>,
    /// The deferral this token redeems, if any.
    pub deferral_id: Option<String>,
    /// DPoP key thumbprint the token is bound to (RFC 9449 section 6).
    pub dpop_jkt: Option<String>,
    /// The approval's `approved_until` (seconds since the epoch): the
    /// token, and a refresh token issued with it, never outlive it.
    pub not_after: Option<i64>,
}

/// Claims and response members that only some grants add.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenExtras {
    /// RFC 8693 section 4.1 `act`: who acts for the subject.
    pub act: Option<serde_json::Value>,
    /// Audience of the token; empty means this server's issuer (RFC 9068
    /// section 2.2: `aud` names the resource the token is for).
    pub audience: Vec<String>,
    /// RFC 8693 `issued_token_type` of the response (DTR-20).
    pub issued_token_type: Option<String>,
    /// The token expires no later than this (seconds since the epoch):
    /// a token made from another never outlives it.
    pub not_after: Option<i64>,
    /// `jti`s of the tokens it is made from (a token exchange's subject and
    /// actor tokens): it stays valid only while they do (RFC 8693 section
    /// 2.1, RFC 9700 section 2.3), see [`crate::store::TokenStore::token_revoked`].
    pub parents: Vec<String>,
}

/// An access token signed but not yet recorded: the response and the
/// record that makes it valid. Nothing is handed out before the record is
/// written (see [`crate::store::IssuanceStore`]).
#[derive(Clone, Debug)]
pub struct Minted {
    /// The token response.
    pub response: TokenResponse,
    /// What revocation and introspection know it by.
    pub record: IssuedToken,
}

/// Signs an access token for `grant` (RFC 9068) with the `extras` of its
/// grant type; writes nothing.
pub fn mint(state: &AppState, grant: &Grant, extras: &TokenExtras) -> Minted {
    let now = state.clock.now_ms();
    let iat = now / 1000;
    let not_after = match (extras.not_after, grant.not_after) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let ttl = match not_after {
        Some(t) => state
            .config
            .tokens
            .access_token_ttl
            .min(u64::try_from(t - iat).unwrap_or(0)),
        None => state.config.tokens.access_token_ttl,
    };
    let jti = random_token(16);
    let mut claims = serde_json::json!({
        "iss": state.issuer,
        "sub": grant.subject,
        "aud": state.issuer,
        "client_id": grant.client_id,
        "iat": iat,
        "exp": iat + ttl as i64,
        "jti": jti,
    });
    if !grant.scope.is_empty() {
        claims["scope"] = grant.scope.clone().into();
    }
    if let Some(ad) = &grant.authorization_details {
        claims["authorization_details"] = ad.clone();
    }
    // RFC 9449 section 6.1: the confirmation claim binds the token to the key.
    if let Some(jkt) = &grant.dpop_jkt {
        claims["cnf"] = serde_json::json!({ "jkt": jkt });
    }
    if let Some(act) = &extras.act {
        claims["act"] = act.clone();
    }
    match extras.audience.as_slice() {
        [] => {}
        [one] => claims["aud"] = one.clone().into(),
        many => claims["aud"] = serde_json::json!(many),
    }
    let access_token = state.signer.sign(&claims);
    let record = IssuedToken {
        jti,
        client_id: grant.client_id.clone(),
        issued_at: now,
        expires_at: now + ttl as i64 * 1000,
        deferral_id: grant.deferral_id.clone(),
        parents: extras.parents.clone(),
    };
    let response = TokenResponse {
        access_token,
        token_type: if grant.dpop_jkt.is_some() {
            "DPoP"
        } else {
            "Bearer"
        }
        .into(),
        expires_in: Some(ttl),
        refresh_token: None,
        scope: (!grant.scope.is_empty()).then(|| grant.scope.clone()),
        issued_token_type: extras.issued_token_type.clone(),
        authorization_details: grant.authorization_details.clone(),
        id_token: None,
    };
    Minted { response, record }
}

/// Verifies one of this server's access tokens as every consumer must
/// (introspection, token exchange): signature, issuer, expiry, a `jti`,
/// and not revoked, neither itself nor through its family, its user or any
/// token it was exchanged from. `None` for anything else, whatever the
/// reason, so callers tell nothing about why (RFC 7662 section 2.2).
pub async fn verify_live(
    state: &AppState,
    token: &str,
) -> Result<Option<serde_json::Value>, crate::error::Error> {
    use serde_json::Value;
    let Some(claims) = state.signer.verify(token) else {
        return Ok(None);
    };
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
    if claims.get("iss").and_then(Value::as_str) != Some(state.issuer.as_str())
        || exp <= state.clock.now_ms() / 1000
        || jti.is_empty()
    {
        return Ok(None);
    }
    if state.store.token_revoked(jti).await? {
        return Ok(None);
    }
    Ok(Some(claims))
}
