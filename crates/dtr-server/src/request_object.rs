//! JWT-secured authorization requests (RFC 9101): the request object a
//! client signs with its registered key, sent by value in `request` at the
//! authorization endpoint or in a pushed request's body (RFC 9126 section
//! 3). Its claims are the authorization request: the parameters beside it
//! are not used (RFC 9101 section 6.3), so what the client signed is what
//! is decided, the deferral hint, `dpop_jkt`, `authorization_details` and
//! `client_notification_token` included. Pure checks here; the keys and
//! the single use of `jti` come from the caller.

use crate::client_assertion::{decode_signed, Audience, SKEW_SECS};
use dtr_proto::params::Params;
use serde_json::Value;

/// Longest accepted lifetime (`exp` from now): bounds how long its `jti`
/// is remembered. RFC 9101 sets none; one hour is what FAPI 2.0 allows.
pub const MAX_LIFETIME_SECS: i64 = 3600;

/// The `typ` RFC 9101 section 10.8 registers, so that a request object is
/// never taken for another kind of JWT the client signs (a DPoP proof, a
/// client assertion), and none of those for a request object.
pub const TYP: &str = "oauth-authz-req+jwt";

/// The verified request: its parameters, and what single use needs.
#[derive(Clone, Debug)]
pub struct VerifiedRequest {
    /// The authorization request parameters, `client_id` included.
    pub params: Params,
    /// The single-use identifier.
    pub jti: String,
    /// Expiry (seconds).
    pub exp: i64,
}

/// Verifies a request object of `client_id` with the client's `jwks`.
/// `audiences` are the values this server accepts in `aud` (its issuer,
/// RFC 9101 section 4, and its authorization and PAR endpoint URLs);
/// every member must be one of them. `now` is in seconds.
pub fn verify(
    jwt: &str,
    jwks: &Value,
    client_id: &str,
    audiences: &[String],
    now: i64,
) -> Result<VerifiedRequest, String> {
    let (header, claims) =
        decode_signed::<serde_json::Map<String, Value>>(jwt, jwks, "request object", &["exp"])?;
    // RFC 9101 section 10.8: explicit typing. A JWT typed for anything
    // else is not a request object.
    match header.typ.as_deref() {
        None => {}
        Some(t) if t.eq_ignore_ascii_case(TYP) || t.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(format!("request object typ must be {TYP}")),
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    // RFC 9101 section 6.3 and 10.2: signed by the client it names.
    if text("iss") != Some(client_id) {
        return Err("request object iss must be the client_id".into());
    }
    if claims.get("client_id").is_some() && text("client_id") != Some(client_id) {
        return Err("request object client_id differs from the request's".into());
    }
    let aud: Audience = claims
        .get("aud")
        .cloned()
        .and_then(|a| serde_json::from_value(a).ok())
        .ok_or("request object needs aud")?;
    if !aud.only_ours(audiences) {
        return Err("request object aud must name this server only".into());
    }
    let exp = number("exp").ok_or("request object exp must be a number")?;
    if exp + SKEW_SECS < now {
        return Err("request object expired".into());
    }
    if number("nbf").is_some_and(|nbf| nbf > now + SKEW_SECS) {
        return Err("request object not valid yet (nbf)".into());
    }
    if exp - now > MAX_LIFETIME_SECS || number("iat").is_some_and(|iat| iat > now + SKEW_SECS) {
        return Err("request object lifetime too long or issued in the future".into());
    }
    // A replayed request object would replay its client's request, hint
    // and notification token included: each is used once.
    let jti = text("jti")
        .filter(|j| !j.is_empty())
        .ok_or("request object needs a jti")?
        .to_owned();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, value) in &claims {
        if matches!(
            name.as_str(),
            "iss" | "aud" | "exp" | "nbf" | "iat" | "jti" | "sub"
        ) {
            continue;
        }
        if matches!(name.as_str(), "request" | "request_uri") {
            return Err(format!("request object must not contain {name}"));
        }
        // Parameters are strings; structured ones (authorization_details,
        // claims) travel as the JSON the query would carry.
        let v = match value {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => {
                value.to_string()
            }
        };
        pairs.push((name.clone(), v));
    }
    if !pairs.iter().any(|(k, _)| k == "client_id") {
        pairs.push(("client_id".into(), client_id.to_owned()));
    }
    Ok(VerifiedRequest {
        params: Params::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        jti,
        exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use p256::pkcs8::EncodePrivateKey;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn keypair() -> (EncodingKey, Value) {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let p = sk.verifying_key().to_encoded_point(false);
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(p.x().unwrap()), "y": URL_SAFE_NO_PAD.encode(p.y().unwrap())}]});
        (
            EncodingKey::from_ec_der(sk.to_pkcs8_der().unwrap().as_bytes()),
            jwks,
        )
    }

    fn sign(key: &EncodingKey, typ: Option<&str>, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        h.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&h, claims, key).unwrap()
    }

    fn claims() -> Value {
        json!({
            "iss": "app", "aud": "https://as", "exp": NOW + 60, "iat": NOW, "nbf": NOW,
            "jti": "r1", "client_id": "app", "response_type": "code",
            "completion_mode": "deferred", "max_age": 60,
            "authorization_details": [{"type": "payment", "amount": 10}],
        })
    }

    fn auds() -> Vec<String> {
        vec!["https://as".into(), "https://as/authorize".into()]
    }

    #[test]
    fn claims_become_the_request() {
        let (k, jwks) = keypair();
        let v = verify(&sign(&k, Some(TYP), &claims()), &jwks, "app", &auds(), NOW).unwrap();
        assert_eq!(v.jti, "r1");
        assert_eq!(v.params.get("completion_mode"), Some("deferred"));
        assert_eq!(v.params.get("max_age"), Some("60"));
        let ad: Value =
            serde_json::from_str(v.params.get("authorization_details").unwrap()).unwrap();
        assert_eq!(ad[0]["amount"], 10);
        // The JWT's own claims are not request parameters.
        assert_eq!(v.params.get("iss"), None);
        assert_eq!(v.params.get("jti"), None);
    }

    #[test]
    fn every_rfc9101_failure_is_refused() {
        let (k, jwks) = keypair();
        let (other, _) = keypair();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims();
            f(&mut c);
            c
        };
        let cases: Vec<(&str, String)> = vec![
            ("foreign key", sign(&other, Some(TYP), &claims())),
            ("wrong typ", sign(&k, Some("dpop+jwt"), &claims())),
            ("iss", sign(&k, None, &with(&|c| c["iss"] = json!("evil")))),
            (
                "client_id",
                sign(&k, None, &with(&|c| c["client_id"] = json!("evil"))),
            ),
            (
                "aud",
                sign(&k, None, &with(&|c| c["aud"] = json!("https://other"))),
            ),
            (
                "aud array",
                sign(
                    &k,
                    None,
                    &with(&|c| c["aud"] = json!(["https://as", "https://other"])),
                ),
            ),
            (
                "expired",
                sign(&k, None, &with(&|c| c["exp"] = json!(NOW - 600))),
            ),
            (
                "no exp",
                sign(
                    &k,
                    None,
                    &with(&|c| {
                        c.as_object_mut().unwrap().remove("exp");
                    }),
                ),
            ),
            (
                "nbf",
                sign(&k, None, &with(&|c| c["nbf"] = json!(NOW + 600))),
            ),
            (
                "lifetime",
                sign(&k, None, &with(&|c| c["exp"] = json!(NOW + 7200))),
            ),
            (
                "no jti",
                sign(
                    &k,
                    None,
                    &with(&|c| {
                        c.as_object_mut().unwrap().remove("jti");
                    }),
                ),
            ),
            (
                "nested",
                sign(&k, None, &with(&|c| c["request_uri"] = json!("https://x"))),
            ),
        ];
        for (what, jwt) in cases {
            assert!(verify(&jwt, &jwks, "app", &auds(), NOW).is_err(), "{what}");
        }
        // `alg: none` (and shared secrets) never verify.
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert!(verify(&unsigned, &jwks, "app", &auds(), NOW).is_err());
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(verify(&hs, &jwks, "app", &auds(), NOW).is_err());
    }
}
