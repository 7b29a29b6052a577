//! Shared harness of the router tests: a server state on an in-memory
//! SQLite database with a manual clock, driven through `oneshot`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use dtr_server::clock::ManualClock;
use dtr_server::config::{ConfigFile, Overrides};
use dtr_server::store::sqlite::SqliteStore;
use dtr_server::AppState;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

pub const ADMIN: &str = "test-admin-token-0123456789abcdefghij";
pub const SVC: (&str, &str) = ("svc", "svc-secret");
pub const OTHER: (&str, &str) = ("other", "other-secret");
pub const POLL: &str = "urn:ietf:params:oauth:grant-type:deferred";

pub const CONFIG: &str = r#"
issuer = "http://127.0.0.1:8080"
[deferral]
expires_in = 600
interval = 5
slow_down_limit = 2
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read write payments identity reports forbidden"
owner = "alice"
[[clients]]
client_id = "other"
client_secret = "other-secret"
token_endpoint_auth_method = "client_secret_post"
scope = "read payments"
[[users]]
username = "alice"
password = "alice-password"
[[policy]]
scope_any = ["payments"]
action = "review"
[[policy]]
scope_any = ["identity"]
action = "interaction"
[[policy]]
scope_any = ["reports"]
action = "approve_after"
approve_after_seconds = 2
[[policy]]
scope_any = ["forbidden"]
action = "deny"
"#;

pub struct Harness {
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub app: Router,
}

pub async fn harness() -> Harness {
    harness_with(CONFIG).await
}

pub async fn harness_with(config: &str) -> Harness {
    harness_with_resolver(
        config,
        Arc::new(dtr_server::outbound::StaticResolver::default()),
    )
    .await
}

/// A harness whose outbound requests resolve names with `resolver`.
pub async fn harness_with_resolver(
    config: &str,
    resolver: Arc<dtr_server::outbound::StaticResolver>,
) -> Harness {
    let config = ConfigFile::parse(config)
        .unwrap()
        .validate(&Overrides::default())
        .unwrap();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = Arc::new(ManualClock::new());
    let issuer = config.issuer.clone().unwrap();
    let state = AppState::build_with_resolver(config, issuer, store, clock.clone(), resolver)
        .await
        .unwrap();
    let app = dtr_server::http::app(state.clone());
    Harness { state, clock, app }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Resp {
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
    pub fn no_store(&self) -> bool {
        self.headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            == Some("no-store")
    }
}

pub fn basic((id, secret): (&str, &str)) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

impl Harness {
    pub async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            json,
            text,
        }
    }

    pub async fn post_raw(
        &self,
        path: &str,
        auth: Option<String>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let mut b = Request::post(path).header(header::CONTENT_TYPE, content_type);
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    /// POST a form with HTTP Basic client authentication.
    pub async fn post(&self, path: &str, client: (&str, &str), pairs: &[(&str, &str)]) -> Resp {
        self.post_raw(
            path,
            Some(basic(client)),
            "application/x-www-form-urlencoded",
            form(pairs).into_bytes(),
        )
        .await
    }

    /// POST a form as the `other` client (client_secret_post).
    pub async fn post_other(&self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        let mut all = vec![("client_id", OTHER.0), ("client_secret", OTHER.1)];
        all.extend_from_slice(pairs);
        self.post_raw(
            path,
            None,
            "application/x-www-form-urlencoded",
            form(&all).into_bytes(),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
            .header(header::CONTENT_TYPE, "application/json");
        let body = body
            .map(|v| Body::from(v.to_string()))
            .unwrap_or_else(Body::empty);
        self.send(b.body(body).unwrap()).await
    }

    /// Requests `scope` with completion_mode=deferred as svc; returns the deferral code.
    pub async fn defer(&self, scope: &str) -> String {
        let r = self
            .post(
                "/token",
                SVC,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", scope),
                    ("completion_mode", "deferred"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        r.json["deferral_code"]
            .as_str()
            .expect("deferral_code")
            .to_owned()
    }

    pub async fn poll(&self, code: &str) -> Resp {
        self.post(
            "/token",
            SVC,
            &[("grant_type", POLL), ("deferral_code", code)],
        )
        .await
    }

    /// The id of the newest deferral, as a reviewer sees it.
    pub async fn newest_id(&self) -> String {
        let r = self.admin("GET", "/admin/deferrals", None).await;
        r.json[0]["id"].as_str().expect("a deferral").to_owned()
    }
}

/// A DPoP key for tests: makes proofs with any claim broken on purpose.
pub struct DpopKey {
    enc: jsonwebtoken::EncodingKey,
    pub jwk: Value,
}

impl DpopKey {
    pub fn new() -> Self {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        use p256::pkcs8::EncodePrivateKey;
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let point = sk.verifying_key().to_encoded_point(false);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        });
        let der = sk.to_pkcs8_der().unwrap();
        Self {
            enc: jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
            jwk,
        }
    }

    pub fn jkt(&self) -> String {
        dtr_proto::dpop::jwk_thumbprint(self.jwk.as_object().unwrap()).unwrap()
    }

    /// A proof with these claims (merged over valid defaults).
    pub fn proof_with(&self, htm: &str, url: &str, iat: i64, extra: Value) -> String {
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let mut claims = serde_json::json!({
            "jti": dtr_proto::secret::random_token(12), "htm": htm, "htu": url, "iat": iat,
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        self.sign(&header, &claims)
    }

    /// Signs any header and claims with this key (ES256).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let msg = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig =
            jsonwebtoken::crypto::sign(msg.as_bytes(), &self.enc, jsonwebtoken::Algorithm::ES256)
                .unwrap();
        format!("{msg}.{sig}")
    }
}

impl Harness {
    pub fn now_s(&self) -> i64 {
        use dtr_server::clock::Clock;
        self.clock.now_ms() / 1000
    }

    /// A valid proof for POST to `path` of the test issuer.
    pub fn proof(&self, key: &DpopKey, path: &str) -> String {
        key.proof_with(
            "POST",
            &format!("http://127.0.0.1:8080{path}"),
            self.now_s(),
            Value::Null,
        )
    }

    /// POST a form with Basic auth and optional DPoP proof.
    pub async fn post_dpop(
        &self,
        path: &str,
        client: (&str, &str),
        proof: Option<&str>,
        pairs: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, basic(client));
        if let Some(p) = proof {
            b = b.header("DPoP", p);
        }
        self.send(b.body(Body::from(form(pairs))).unwrap()).await
    }
}

impl Harness {
    /// Signs `user` in through the login form (double-submit cookie and
    /// all); returns the `Cookie` header value of the session.
    pub async fn sign_in(&self, user: &str, password: &str) -> String {
        let page = self.get("/login").await;
        let csrf_cookie = page
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("dtr_login_csrf="))
            .and_then(|v| v.split(';').next())
            .expect("login csrf cookie")
            .to_owned();
        let r = self
            .send(
                Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::COOKIE, format!("dtr_login_csrf={csrf_cookie}"))
                    .body(Body::from(form(&[
                        ("csrf", &csrf_cookie),
                        ("username", user),
                        ("password", password),
                    ])))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let session = r
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("dtr_session="))
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_owned();
        format!("dtr_session={session}")
    }

    /// GET with a cookie.
    pub async fn get_with_cookie(&self, path: &str, cookie: &str) -> Resp {
        self.send(
            Request::get(path)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// POST a form with a cookie.
    pub async fn post_with_cookie(&self, path: &str, cookie: &str, pairs: &[(&str, &str)]) -> Resp {
        self.send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, cookie)
                .body(Body::from(form(pairs)))
                .unwrap(),
        )
        .await
    }
}

/// The value of the hidden form field `name` in a page.
pub fn hidden_field(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no field {name}"))
        + needle.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}
