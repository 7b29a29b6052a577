//! End-to-end tests of the device grant and token exchange: a real server
//! on port 0 (real sockets, SQLite file), the device driven by our client
//! crate, and the user's side driven as a browser would: an HTTP client
//! that keeps cookies, follows redirects and submits the forms it finds
//! on the pages (hidden fields included), without JavaScript. The server
//! runs on a manual clock so expiry needs no sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/server.rs"]
mod server;

use dtr_client::{
    AdminClient, Client, ClientAuth, ClientSecret, DeviceAuthorizationRequest, ErrorCode,
    TokenResult,
};
use dtr_server::clock::ManualClock;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

const CONFIG: &str = r#"
[deferral]
expires_in = 60
interval = 1
[device]
expires_in = 60
interval = 1
[admin]
token = "e2e-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "tv"
client_secret = "tv-secret"
grant_types = ["urn:ietf:params:oauth:grant-type:device_code"]
scope = "read payments"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments"
[[clients]]
client_id = "broker"
client_secret = "broker-secret"
grant_types = ["urn:ietf:params:oauth:grant-type:token-exchange"]
scope = "read payments"
[[users]]
username = "alice"
password = "alice-password"
[[token_exchange]]
client_id = "broker"
subject_clients = ["svc"]
[[policy]]
grant_type = "urn:ietf:params:oauth:grant-type:device_code"
scope_any = ["payments"]
action = "review"
[[policy]]
grant_type = "urn:ietf:params:oauth:grant-type:token-exchange"
scope_any = ["payments"]
action = "review"
"#;

struct Running {
    issuer: String,
    clock: Arc<ManualClock>,
    server: server::Running,
}

impl Running {
    async fn stop(self) {
        self.server.stop().await;
    }

    async fn client(&self, id: &str, secret: &str) -> Client {
        let auth = ClientAuth::SecretBasic {
            client_id: id.into(),
            secret: ClientSecret::new(secret),
        };
        Client::discover(&self.issuer, auth).await.unwrap()
    }

    fn admin(&self) -> AdminClient {
        AdminClient::new(&self.issuer, "e2e-admin-token-0123456789abcdefghij").unwrap()
    }
}

async fn start(db: &Path) -> Running {
    let clock = Arc::new(ManualClock::new());
    let server = server::start_with_clock(CONFIG, db, clock.clone()).await;
    Running {
        issuer: server.issuer.clone(),
        clock,
        server,
    }
}

/// A form found on a page: where it posts and the fields it would send.
#[derive(Clone, Debug)]
struct HtmlForm {
    action: String,
    fields: BTreeMap<String, String>,
    /// Submit buttons: (name, value).
    buttons: Vec<(String, String)>,
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!(" {name}=\""))?;
    let rest = &tag[at + name.len() + 3..];
    Some(unescape(&rest[..rest.find('"')?]))
}

/// The forms of a page, read the way a browser sees them.
fn forms(html: &str) -> Vec<HtmlForm> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let end = rest[start..]
            .find("</form>")
            .map(|e| start + e)
            .unwrap_or(rest.len());
        let body = &rest[start..end];
        let open = &body[..body.find('>').unwrap()];
        let mut f = HtmlForm {
            action: attr(open, "action").unwrap_or_default(),
            fields: BTreeMap::new(),
            buttons: vec![],
        };
        for (kind, chunk) in body
            .match_indices('<')
            .map(|(i, _)| &body[i..])
            .filter_map(|t| {
                let tag = &t[..t.find('>')?];
                if tag.starts_with("<input") {
                    Some(("input", tag))
                } else if tag.starts_with("<button") {
                    Some(("button", tag))
                } else {
                    None
                }
            })
        {
            let Some(name) = attr(chunk, "name") else {
                continue;
            };
            let value = attr(chunk, "value").unwrap_or_default();
            if kind == "button" {
                f.buttons.push((name, value));
            } else {
                f.fields.insert(name, value);
            }
        }
        out.push(f);
        rest = &rest[end..];
    }
    out
}

/// A browser without JavaScript: keeps cookies, follows redirects.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: u16,
    url: String,
    html: String,
}

impl Page {
    fn form(&self) -> HtmlForm {
        forms(&self.html)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no form on {}: {}", self.url, self.html))
    }
}

impl Browser {
    fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            base: base.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (k, val) = v.split(';').next().unwrap().split_once('=').unwrap();
            let expired = v.contains("Max-Age=0");
            if val.is_empty() || expired {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    async fn finish(&mut self, mut r: reqwest::Response, mut url: String) -> Page {
        loop {
            self.keep_cookies(&r);
            if r.status().is_redirection() {
                let loc = r.headers()[reqwest::header::LOCATION]
                    .to_str()
                    .unwrap()
                    .to_owned();
                url = self.absolute(&loc);
                r = self
                    .http
                    .get(&url)
                    .header("cookie", self.cookie_header())
                    .send()
                    .await
                    .unwrap();
                continue;
            }
            let status = r.status().as_u16();
            return Page {
                status,
                url,
                html: r.text().await.unwrap(),
            };
        }
    }

    async fn open(&mut self, url: &str) -> Page {
        let url = self.absolute(url);
        let r = self
            .http
            .get(&url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(r, url).await
    }

    /// Submits `form` with some fields typed in and one button pressed.
    async fn submit(
        &mut self,
        form: &HtmlForm,
        typed: &[(&str, &str)],
        button: Option<&str>,
    ) -> Page {
        let mut fields = form.fields.clone();
        for (k, v) in typed {
            fields.insert((*k).to_owned(), (*v).to_owned());
        }
        if let Some(label) = button {
            let (n, v) = form
                .buttons
                .iter()
                .find(|(_, v)| v == label)
                .unwrap_or_else(|| panic!("no button {label}"));
            fields.insert(n.clone(), v.clone());
        }
        let url = self.absolute(&form.action);
        let r = self
            .http
            .post(&url)
            .header("cookie", self.cookie_header())
            .form(&fields)
            .send()
            .await
            .unwrap();
        self.finish(r, url).await
    }

    /// The user's whole journey from `verification_uri_complete`: sign in
    /// when asked, continue with the filled-in code, then press `button`.
    async fn approve_or_deny(&mut self, complete_uri: &str, button: &str) -> Page {
        let mut page = self.open(complete_uri).await;
        if page.url.contains("/login") {
            let login = page.form();
            page = self
                .submit(
                    &login,
                    &[("username", "alice"), ("password", "alice-password")],
                    None,
                )
                .await;
        }
        assert_eq!(page.status, 200, "{}", page.html);
        assert!(page.url.contains("/device"), "{}", page.url);
        let entry = page.form();
        assert!(
            !entry.fields["user_code"].is_empty(),
            "the code is filled in"
        );
        let confirm = self.submit(&entry, &[], None).await;
        assert_eq!(confirm.status, 200, "{}", confirm.html);
        self.submit(&confirm.form(), &[], Some(button)).await
    }
}

fn device_req(scope: &str, deferred: bool) -> DeviceAuthorizationRequest {
    DeviceAuthorizationRequest {
        scope: Some(scope.into()),
        deferred,
    }
}

fn claims(jwt: &str) -> serde_json::Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn device_grant_synchronous_through_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("dtr.db")).await;
    let tv = s.client("tv", "tv-secret").await;
    let d = tv
        .device_authorization(&device_req("read", false))
        .await
        .unwrap();
    assert_eq!(d.verification_uri, format!("{}/device", s.issuer));
    let pending = tv.device_token(&d, false).await.unwrap();
    assert!(
        matches!(&pending, TokenResult::Error(e) if e.error == ErrorCode::AuthorizationPending),
        "{pending:?}"
    );

    let mut browser = Browser::new(&s.issuer);
    let done = browser
        .approve_or_deny(d.verification_uri_complete.as_deref().unwrap(), "approve")
        .await;
    assert_eq!(done.status, 200);
    assert!(done.html.contains("Device connected"), "{}", done.html);

    s.clock.advance_ms(1_000);
    let TokenResult::Token(t) = tv.device_token(&d, false).await.unwrap() else {
        panic!("expected a token")
    };
    assert_eq!(claims(&t.access_token)["sub"], "alice");
    assert_eq!(t.scope.as_deref(), Some("read"));
    let again = tv.device_token(&d, false).await.unwrap();
    assert_eq!(again.error_code(), Some(&ErrorCode::InvalidGrant));
    s.stop().await;
}

#[tokio::test]
async fn device_grant_approved_by_the_user_then_deferred_then_approved_by_admin() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("dtr.db")).await;
    let tv = s.client("tv", "tv-secret").await;
    let d = tv
        .device_authorization(&device_req("read payments", true))
        .await
        .unwrap();
    // DTR-5: the hint binds the token request.
    let r = tv.device_token(&d, false).await.unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::InvalidRequest));
    // Before the user acts: the device grant's own pending state.
    let r = tv.device_token(&d, true).await.unwrap();
    assert!(
        matches!(&r, TokenResult::Error(e) if e.error == ErrorCode::AuthorizationPending),
        "{r:?}"
    );

    let mut browser = Browser::new(&s.issuer);
    // The user can type the code instead of following the complete URI.
    let page = browser.open(&d.verification_uri).await;
    let login = page.form();
    let page = browser
        .submit(
            &login,
            &[("username", "alice"), ("password", "alice-password")],
            None,
        )
        .await;
    let confirm = browser
        .submit(
            &page.form(),
            &[("user_code", &d.user_code.to_lowercase().replace('-', ""))],
            None,
        )
        .await;
    assert!(
        confirm.html.contains(&d.user_code) && confirm.html.contains("payments"),
        "{}",
        confirm.html
    );
    let done = browser.submit(&confirm.form(), &[], Some("approve")).await;
    assert!(done.html.contains("Device connected"));

    // Approved by the user, deferred by policy (fraud review): a deferral.
    s.clock.advance_ms(1_000);
    let TokenResult::Deferred(deferral) = tv.device_token(&d, true).await.unwrap() else {
        panic!("expected a deferral")
    };
    assert_eq!(deferral.error, ErrorCode::AuthorizationPending);
    // The device code is spent; only the deferral goes on.
    let r = tv.device_token(&d, true).await.unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::InvalidGrant));
    let r = tv.poll_once(&deferral.code).await.unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::AuthorizationPending));
    let list = s.admin().list(Some("pending"), Some("tv")).await.unwrap();
    assert_eq!(list[0]["subject"], "alice");
    s.admin()
        .approve(list[0]["id"].as_str().unwrap(), None)
        .await
        .unwrap();
    s.clock.advance_ms(1_000);
    let TokenResult::Token(t) = tv.poll_once(&deferral.code).await.unwrap() else {
        panic!("expected a token")
    };
    assert_eq!(claims(&t.access_token)["sub"], "alice");
    assert_eq!(t.scope.as_deref(), Some("payments read"));
    s.stop().await;
}

#[tokio::test]
async fn device_grant_denied_and_expired() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("dtr.db")).await;
    let tv = s.client("tv", "tv-secret").await;
    let mut browser = Browser::new(&s.issuer);

    let d = tv
        .device_authorization(&device_req("read", false))
        .await
        .unwrap();
    let done = browser
        .approve_or_deny(d.verification_uri_complete.as_deref().unwrap(), "deny")
        .await;
    assert!(done.html.contains("denied"), "{}", done.html);
    let r = tv.device_token(&d, false).await.unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::AccessDenied));

    let d = tv
        .device_authorization(&device_req("read", false))
        .await
        .unwrap();
    s.clock.advance_ms(61_000);
    let r = tv.device_token(&d, false).await.unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::ExpiredToken));
    let page = browser
        .open(d.verification_uri_complete.as_deref().unwrap())
        .await;
    let after = browser.submit(&page.form(), &[], None).await;
    assert_eq!(after.status, 400, "an expired code leads nowhere");
    s.stop().await;
}

#[tokio::test]
async fn token_exchange_synchronous_and_deferred() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("dtr.db")).await;
    let svc = s.client("svc", "svc-secret").await;
    let broker = s.client("broker", "broker-secret").await;
    let req = dtr_client::ClientCredentialsRequest {
        scope: Some("read payments".into()),
        ..Default::default()
    };
    let TokenResult::Token(subject) = svc.client_credentials(&req).await.unwrap() else {
        panic!("token")
    };

    let sync = [
        ("grant_type", EXCHANGE),
        ("subject_token", subject.access_token.as_str()),
        ("subject_token_type", AT),
        ("scope", "read"),
    ];
    let TokenResult::Token(t) = broker.token_request(&sync).await.unwrap() else {
        panic!("token")
    };
    assert_eq!(t.issued_token_type.as_deref(), Some(AT));
    assert_eq!(claims(&t.access_token)["sub"], "svc");

    let deferred = [
        ("grant_type", EXCHANGE),
        ("subject_token", subject.access_token.as_str()),
        ("subject_token_type", AT),
        ("scope", "payments"),
        ("completion_mode", "deferred"),
    ];
    let TokenResult::Deferred(d) = broker.token_request(&deferred).await.unwrap() else {
        panic!("deferral")
    };
    let list = s
        .admin()
        .list(Some("pending"), Some("broker"))
        .await
        .unwrap();
    assert_eq!(list[0]["grant_type"], EXCHANGE);
    s.admin()
        .approve(list[0]["id"].as_str().unwrap(), None)
        .await
        .unwrap();
    let TokenResult::Token(t) = broker.poll_once(&d.code).await.unwrap() else {
        panic!("token")
    };
    // DTR-20: the successful poll is token exchange's own response.
    assert_eq!(t.issued_token_type.as_deref(), Some(AT));
    assert_eq!(t.scope.as_deref(), Some("payments"));
    let i = broker.introspect(&t.access_token).await.unwrap();
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"], "broker");
    s.stop().await;
}
