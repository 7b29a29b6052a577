//! `private_key_jwt` client authentication (RFC 7523 section 2.2, RFC 7521
//! section 4.2): the client signs a short-lived JWT with a key whose public
//! half it registered. Pure checks here; single use of `jti` is applied by
//! the caller through the store.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

/// The `client_assertion_type` of JWT client assertions.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest accepted assertion lifetime: bounds how long its `jti` must be
/// remembered.
pub const MAX_LIFETIME_SECS: i64 = 600;

/// Clock skew tolerated between the client and us on `exp` and `nbf`
/// (RFC 7519 section 4.1.4 and 4.1.5: "some small leeway").
pub const SKEW_SECS: i64 = 30;

/// The verified facts of an assertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// `iss` = `sub` = the client.
    pub client_id: String,
    /// The single-use identifier.
    pub jti: String,
    /// Expiry (seconds).
    pub exp: i64,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    jti: String,
    exp: i64,
    aud: Audience,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
}

/// RFC 7519 section 4.1.3: `aud` is one string or an array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// RFC 7523 section 3 point 3 and draft-ietf-oauth-rfc7523bis section
    /// 4: the assertion must be meant for this server and nobody else. An
    /// array naming a foreign audience as well is refused, not "accepted
    /// because one member is ours": such an assertion was also handed to
    /// that other party, which could replay it here. An empty array names
    /// nobody.
    pub(crate) fn only_ours(&self, ours: &[String]) -> bool {
        let is_ours = |a: &String| ours.iter().any(|o| o == a);
        match self {
            Audience::One(a) => is_ours(a),
            Audience::Many(all) => !all.is_empty() && all.iter().all(is_ours),
        }
    }
}

/// The client an assertion claims to come from (its `iss`), unverified:
/// only used to find the keys to verify it with.
pub fn claimed_client(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let v: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    v.get("iss")?.as_str().map(str::to_owned)
}

/// Verifies an assertion with the client's JWKS. `audiences` are the
/// values this server accepts in `aud` (its issuer and endpoint URLs);
/// every member of `aud` must be one of them.
pub fn verify(
    assertion: &str,
    jwks: &serde_json::Value,
    audiences: &[String],
    now: i64,
) -> Result<VerifiedAssertion, String> {
    let (_, claims) = decode_signed::<Claims>(
        assertion,
        jwks,
        "client assertion",
        &["exp", "aud", "iss", "sub"],
    )?;
    if claims.iss != claims.sub {
        return Err("client assertion iss and sub must both be the client_id".into());
    }
    if !claims.aud.only_ours(audiences) {
        return Err("client assertion aud must name this server only".into());
    }
    if claims.exp + SKEW_SECS < now {
        return Err("client assertion expired".into());
    }
    // RFC 7519 section 4.1.5, RFC 7523 section 3 point 5: not before `nbf`.
    if claims.nbf.is_some_and(|nbf| nbf > now + SKEW_SECS) {
        return Err("client assertion not valid yet (nbf)".into());
    }
    if claims.exp - now > MAX_LIFETIME_SECS || claims.iat.is_some_and(|iat| iat > now + 60) {
        return Err("client assertion lifetime too long or issued in the future".into());
    }
    if claims.jti.is_empty() {
        return Err("client assertion needs a jti".into());
    }
    Ok(VerifiedAssertion {
        client_id: claims.iss,
        jti: claims.jti,
        exp: claims.exp,
    })
}

/// Decodes a JWT a client signed with one of the keys of its `jwks`: an
/// asymmetric algorithm of our allow-list (never `none` nor a shared
/// secret), the key named by `kid` (or any, without one), and `required`
/// claims present. Audience and times are left to the caller, which
/// checks them on its own clock. Client assertions and request objects
/// (RFC 9101) share it.
pub(crate) fn decode_signed<C: serde::de::DeserializeOwned>(
    jwt: &str,
    jwks: &serde_json::Value,
    what: &str,
    required: &[&str],
) -> Result<(jsonwebtoken::Header, C), String> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| format!("malformed {what}"))?;
    if !dtr_proto::dpop::SUPPORTED_ALGS.contains(&format!("{:?}", header.alg).as_str()) {
        return Err(format!("{what} alg must be asymmetric"));
    }
    let set: JwkSet =
        serde_json::from_value(jwks.clone()).map_err(|_| "client has no usable jwks".to_owned())?;
    let candidates: Vec<_> = set
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .filter_map(|k| DecodingKey::from_jwk(k).ok())
        .collect();
    if candidates.is_empty() {
        return Err(format!("no registered key matches the {what}"));
    }
    let mut validation = Validation::new(header.alg);
    validation.set_required_spec_claims(required);
    // The library accepts an array when any one member matches; ours
    // wants every member to (see [`Audience::only_ours`]), checked after.
    validation.validate_aud = false;
    // Time checks use our clock, not the system's, so they are testable.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let claims = candidates
        .iter()
        .find_map(|k| jsonwebtoken::decode::<C>(jwt, k, &validation).ok())
        .ok_or_else(|| format!("{what} signature, audience or claims invalid"))?
        .claims;
    Ok((header, claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use p256::pkcs8::EncodePrivateKey;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn keypair() -> (EncodingKey, serde_json::Value) {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let p = sk.verifying_key().to_encoded_point(false);
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(p.x().unwrap()), "y": URL_SAFE_NO_PAD.encode(p.y().unwrap())}]});
        (
            EncodingKey::from_ec_der(sk.to_pkcs8_der().unwrap().as_bytes()),
            jwks,
        )
    }

    fn assertion(key: &EncodingKey, claims: serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, &claims, key).unwrap()
    }

    fn claims() -> serde_json::Value {
        json!({"iss": "c1", "sub": "c1", "aud": "https://as/token", "exp": NOW + 60, "iat": NOW, "jti": "a1"})
    }

    fn auds() -> Vec<String> {
        vec!["https://as".into(), "https://as/token".into()]
    }

    #[test]
    fn valid_assertion() {
        let (k, jwks) = keypair();
        let a = assertion(&k, claims());
        assert_eq!(claimed_client(&a).as_deref(), Some("c1"));
        let v = verify(&a, &jwks, &auds(), NOW).unwrap();
        assert_eq!(v.client_id, "c1");
        assert_eq!(v.jti, "a1");
    }

    #[test]
    fn audiences_of_only_this_server_and_nbf_within_skew() {
        let (k, jwks) = keypair();
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut c = claims();
            f(&mut c);
            assertion(&k, c)
        };
        let ok = [
            ("issuer alone", with(&|c| c["aud"] = "https://as".into())),
            (
                "array of ours",
                with(&|c| c["aud"] = json!(["https://as", "https://as/token"])),
            ),
            ("nbf now", with(&|c| c["nbf"] = NOW.into())),
            (
                "nbf within skew",
                with(&|c| c["nbf"] = (NOW + SKEW_SECS).into()),
            ),
        ];
        for (what, a) in ok {
            assert!(verify(&a, &jwks, &auds(), NOW).is_ok(), "{what}");
        }
    }

    #[test]
    fn refusals() {
        let (k, jwks) = keypair();
        let (other, _) = keypair();
        let cases = [
            ("wrong key", assertion(&other, claims())),
            (
                "wrong aud",
                assertion(&k, {
                    let mut c = claims();
                    c["aud"] = "https://evil".into();
                    c
                }),
            ),
            (
                "iss != sub",
                assertion(&k, {
                    let mut c = claims();
                    c["sub"] = "c2".into();
                    c
                }),
            ),
            (
                "expired",
                assertion(&k, {
                    let mut c = claims();
                    c["exp"] = (NOW - 120).into();
                    c
                }),
            ),
            (
                "too long",
                assertion(&k, {
                    let mut c = claims();
                    c["exp"] = (NOW + 3600).into();
                    c
                }),
            ),
            (
                "aud array with a foreign member",
                assertion(&k, {
                    let mut c = claims();
                    c["aud"] = json!(["https://as/token", "https://evil"]);
                    c
                }),
            ),
            (
                "empty aud array",
                assertion(&k, {
                    let mut c = claims();
                    c["aud"] = json!([]);
                    c
                }),
            ),
            (
                "no aud",
                assertion(&k, {
                    let mut c = claims();
                    c.as_object_mut().unwrap().remove("aud");
                    c
                }),
            ),
            (
                "nbf in the future",
                assertion(&k, {
                    let mut c = claims();
                    c["nbf"] = (NOW + SKEW_SECS + 1).into();
                    c
                }),
            ),
            (
                "no jti",
                assertion(&k, {
                    let mut c = claims();
                    c.as_object_mut().unwrap().remove("jti");
                    c
                }),
            ),
        ];
        for (what, a) in cases {
            assert!(verify(&a, &jwks, &auds(), NOW).is_err(), "{what}");
        }
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert!(verify(&hs, &jwks, &auds(), NOW).is_err(), "HMAC refused");
    }
}
