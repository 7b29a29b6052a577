//! The login, consent and interaction pages against a real server (port
//! 0, real sockets, SQLite file, system clock), driven as a browser would:
//! an HTTP client that keeps cookies and follows redirects itself, reads
//! the HTML forms (action and hidden inputs) and submits them. The client
//! side of each grant is the `dtr-client` library; reviewers use its
//! `AdminClient`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dtr_client::{
    AdminClient, Client, ClientAuth, ClientSecret, Deferral, ErrorCode, TokenResponse, TokenResult,
};
use rand::RngCore;
use reqwest::{header, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use url::Url;

#[path = "support/server.rs"]
mod server;

const ADMIN_TOKEN: &str = "browser-flows-admin-token-0123456789abcdefghij";
const REDIRECT_URI: &str = "http://127.0.0.1:9/cb";

const CONFIG: &str = r#"
[deferral]
expires_in = 60
interval = 1
[admin]
token = "browser-flows-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "web"
client_secret = "web-secret-1"
grant_types = ["authorization_code", "refresh_token"]
scope = "read payments profile"
redirect_uris = ["http://127.0.0.1:9/cb"]
[[users]]
username = "alice"
password = "alice-password"
[[users]]
username = "bob"
password = "bob-password"
[[policy]]
scope_any = ["payments"]
action = "review"
[[policy]]
scope_any = ["profile"]
action = "interaction"
"#;

/// A real server (`support/server.rs`) with its database directory.
struct Running {
    issuer: String,
    server: server::Running,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(self) {
        self.server.stop().await;
    }

    fn origin(&self) -> String {
        Url::parse(&self.issuer)
            .unwrap()
            .origin()
            .ascii_serialization()
    }

    async fn client(&self) -> Client {
        let auth = ClientAuth::SecretBasic {
            client_id: "web".into(),
            secret: ClientSecret::new("web-secret-1"),
        };
        Client::discover(&self.issuer, auth).await.unwrap()
    }

    fn admin(&self) -> AdminClient {
        AdminClient::new(&self.issuer, ADMIN_TOKEN).unwrap()
    }
}

async fn start(config: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let server = server::start(config, &dir.path().join("dtr.db")).await;
    Running {
        issuer: server.issuer.clone(),
        server,
        _dir: dir,
    }
}

/// Decodes the five entities the server's escaping produces.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in the tag text `tag` (double quotes).
fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// The first form of a page, read the minimal way: its action, hidden
/// inputs, the names of its other inputs and its submit buttons.
#[derive(Debug)]
struct HtmlForm {
    action: Option<String>,
    hidden: Vec<(String, String)>,
    inputs: Vec<String>,
    buttons: Vec<(String, String)>,
}

impl HtmlForm {
    fn parse(html: &str) -> Option<HtmlForm> {
        let start = html.find("<form")?;
        let end = html[start..].find("</form>")? + start;
        let body = &html[start..end];
        let open = &body[..body.find('>')?];
        let mut form = HtmlForm {
            action: attr(open, "action"),
            hidden: Vec::new(),
            inputs: Vec::new(),
            buttons: Vec::new(),
        };
        for (i, _) in body.match_indices("<input") {
            let tag = &body[i..i + body[i..].find('>').unwrap()];
            let Some(name) = attr(tag, "name") else {
                continue;
            };
            if attr(tag, "type").as_deref() == Some("hidden") {
                form.hidden
                    .push((name, attr(tag, "value").unwrap_or_default()));
            } else {
                form.inputs.push(name);
            }
        }
        for (i, _) in body.match_indices("<button") {
            let tag = &body[i..i + body[i..].find('>').unwrap()];
            if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
                form.buttons.push((n, v));
            }
        }
        Some(form)
    }

    fn hidden(&self, name: &str) -> Option<&str> {
        self.hidden
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Where the form posts to: its action resolved against the page, or
    /// the page itself without an action.
    fn target(&self, page: &Url) -> Url {
        match &self.action {
            Some(a) if !a.is_empty() => page.join(a).unwrap(),
            _ => page.clone(),
        }
    }
}

struct Page {
    url: Url,
    status: StatusCode,
    location: Option<Url>,
    csp: Option<String>,
    text: String,
}

impl Page {
    fn form(&self) -> HtmlForm {
        HtmlForm::parse(&self.text)
            .unwrap_or_else(|| panic!("no form at {}: {}", self.url, self.text))
    }
}

/// What a trip through the pages ended with.
struct Landing {
    /// The URL the browser was finally sent to, off the server.
    redirect: Url,
    /// Titles of the pages that were shown on the way.
    pages: Vec<String>,
    consent_csp: Option<String>,
}

impl Landing {
    fn query(&self) -> HashMap<String, String> {
        self.redirect
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

/// A browser: a cookie jar, no automatic redirects, one user's password.
struct Browser {
    http: reqwest::Client,
    origin: String,
    user: &'static str,
    password: &'static str,
}

impl Browser {
    fn new(s: &Running, user: &'static str, password: &'static str) -> Browser {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            http,
            origin: s.origin(),
            user,
            password,
        }
    }

    async fn page(&self, url: Url, r: reqwest::RequestBuilder) -> Page {
        let r = r.send().await.unwrap();
        let status = r.status();
        let location = r
            .headers()
            .get(header::LOCATION)
            .map(|l| url.join(l.to_str().unwrap()).unwrap());
        let csp = r
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .map(|v| v.to_str().unwrap().to_owned());
        let text = r.text().await.unwrap();
        Page {
            url,
            status,
            location,
            csp,
            text,
        }
    }

    async fn get(&self, url: Url) -> Page {
        let req = self.http.get(url.clone());
        self.page(url, req).await
    }

    async fn submit(&self, page: &Page, extra: &[(&str, &str)]) -> Page {
        let form = page.form();
        let target = form.target(&page.url);
        let mut pairs: Vec<(&str, &str)> = form
            .hidden
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        pairs.extend_from_slice(extra);
        let req = self.http.post(target.clone()).form(&pairs);
        self.page(target, req).await
    }

    /// Follows redirects on the server; returns the first page shown, or
    /// the page whose redirect leaves the server.
    async fn follow(&self, mut page: Page) -> Page {
        for _ in 0..10 {
            match &page.location {
                Some(next) if page.status.is_redirection() => {
                    if next.origin().ascii_serialization() != self.origin {
                        return page;
                    }
                    page = self.get(next.clone()).await;
                }
                _ => return page,
            }
        }
        panic!("redirect loop at {}", page.url)
    }

    /// Signs in on the login page `page`; returns where that leads.
    async fn sign_in(&self, page: &Page) -> Page {
        let form = page.form();
        assert!(
            form.inputs.contains(&"password".to_owned()),
            "{}",
            page.text
        );
        assert!(form.hidden("csrf").is_some(), "login form has a CSRF token");
        let done = self
            .submit(
                page,
                &[("username", self.user), ("password", self.password)],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
        self.follow(done).await
    }

    /// Opens `url` and goes through login and consent (answering
    /// `decision`) until the browser is sent off the server.
    async fn authorize(&self, url: Url, decision: &str) -> Landing {
        let mut pages = Vec::new();
        let mut consent_csp = None;
        let mut page = self.follow(self.get(url).await).await;
        for _ in 0..5 {
            if page.status.is_redirection() {
                return Landing {
                    redirect: page.location.clone().unwrap(),
                    pages,
                    consent_csp,
                };
            }
            assert_eq!(page.status, StatusCode::OK, "{}: {}", page.url, page.text);
            pages.push(title(&page.text));
            if page.url.path() == "/login" {
                page = self.sign_in(&page).await;
            } else {
                let form = page.form();
                assert!(form.hidden("request").is_some(), "{}", page.text);
                assert!(
                    form.hidden("csrf").is_some(),
                    "consent form has a CSRF token"
                );
                assert!(
                    form.buttons.contains(&("decision".into(), decision.into())),
                    "{form:?}"
                );
                consent_csp.clone_from(&page.csp);
                let done = self.submit(&page, &[("decision", decision)]).await;
                page = self.follow(done).await;
            }
        }
        panic!("no redirect to the client: {}", page.text)
    }
}

fn title(html: &str) -> String {
    let s = html.find("<h1>").map(|i| i + 4).unwrap_or(0);
    let e = html[s..].find("</h1>").map(|i| i + s).unwrap_or(s);
    unescape(&html[s..e])
}

/// The values of a scope string, sorted.
fn scopes(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.split(' ').collect();
    v.sort_unstable();
    v
}

/// A PKCE pair (S256).
fn pkce() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let verifier = URL_SAFE_NO_PAD.encode(raw);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

struct Request {
    url: Url,
    verifier: String,
    state: String,
}

fn authorize_url(s: &Running, scope: &str, extra: &[(&str, &str)]) -> Request {
    let (verifier, challenge) = pkce();
    let mut st = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut st);
    let state = URL_SAFE_NO_PAD.encode(st);
    let mut url = Url::parse(&format!("{}/authorize", s.issuer)).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "web")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", scope)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(extra);
    Request {
        url,
        verifier,
        state,
    }
}

/// The code from a landing on the client, after checking `state` and
/// `iss` and that the response has its usual shape (DTR-4).
fn code_from(s: &Running, req: &Request, landing: &Landing) -> String {
    assert!(
        landing.redirect.as_str().starts_with(REDIRECT_URI),
        "{}",
        landing.redirect
    );
    let q = landing.query();
    assert_eq!(q["state"], req.state);
    assert_eq!(q["iss"], s.issuer);
    let keys: BTreeSet<&str> = q.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["code", "iss", "state"]));
    q["code"].clone()
}

async fn exchange(c: &Client, req: &Request, code: &str, deferred: bool) -> TokenResult {
    let mut params = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", req.verifier.as_str()),
        ("redirect_uri", REDIRECT_URI),
    ];
    if deferred {
        params.push(("completion_mode", "deferred"));
    }
    c.token_request(&params).await.unwrap()
}

fn token(r: TokenResult) -> TokenResponse {
    match r {
        TokenResult::Token(t) => t,
        other => panic!("expected a token, got {other:?}"),
    }
}

fn deferral(r: TokenResult) -> Deferral {
    match r {
        TokenResult::Deferred(d) => d,
        other => panic!("expected a deferral, got {other:?}"),
    }
}

/// Signs in, consents, exchanges the code with `completion_mode=deferred`
/// and returns the deferral with its reviewer-side id.
async fn deferred_code(s: &Running, b: &Browser, c: &Client, scope: &str) -> (Deferral, String) {
    let req = authorize_url(s, scope, &[("completion_mode", "deferred")]);
    let landing = b.authorize(req.url.clone(), "approve").await;
    let code = code_from(s, &req, &landing);
    let d = deferral(exchange(c, &req, &code, true).await);
    let pending = s.admin().list(Some("pending"), Some("web")).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    (d, pending[0]["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn login_consent_code_and_tokens() {
    let s = start(CONFIG).await;
    let b = Browser::new(&s, "alice", "alice-password");
    let c = s.client().await;
    let req = authorize_url(&s, "read", &[]);
    let landing = b.authorize(req.url.clone(), "approve").await;
    assert_eq!(landing.pages, ["Sign in", "Allow access?"]);
    // The consent page's form-action lets the browser follow the redirect
    // to the client after the POST.
    let csp = landing.consent_csp.clone().unwrap();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9"),
        "{csp}"
    );
    let code = code_from(&s, &req, &landing);

    let t = token(exchange(&c, &req, &code, false).await);
    assert_eq!(t.token_type, "Bearer");
    assert_eq!(t.scope.as_deref(), Some("read"));
    let refresh = t.refresh_token.clone().unwrap();
    let intro = c.introspect(&t.access_token).await.unwrap();
    assert_eq!(intro["active"], true);
    assert_eq!(intro["sub"], "alice");

    // Refresh with rotation.
    let r = token(
        c.token_request(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
            .await
            .unwrap(),
    );
    let rotated = r.refresh_token.unwrap();
    assert_ne!(rotated, refresh);

    // The code is single use; its replay revokes what it issued.
    let again = exchange(&c, &req, &code, false).await;
    assert_eq!(again.error_code(), Some(&ErrorCode::InvalidGrant));
    let intro = c.introspect(&t.access_token).await.unwrap();
    assert_eq!(intro["active"], false);
    let dead = c
        .token_request(&[("grant_type", "refresh_token"), ("refresh_token", &rotated)])
        .await
        .unwrap();
    assert_eq!(dead.error_code(), Some(&ErrorCode::InvalidGrant));

    // Signed in and consented already: straight back to the client.
    let req2 = authorize_url(&s, "read", &[]);
    let landing = b.authorize(req2.url.clone(), "approve").await;
    assert!(landing.pages.is_empty(), "{:?}", landing.pages);
    let code = code_from(&s, &req2, &landing);
    token(exchange(&c, &req2, &code, false).await);
    s.stop().await;
}

#[tokio::test]
async fn consent_denied_goes_back_with_access_denied() {
    let s = start(CONFIG).await;
    let b = Browser::new(&s, "alice", "alice-password");
    let req = authorize_url(&s, "read", &[]);
    let landing = b.authorize(req.url.clone(), "deny").await;
    let q = landing.query();
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], req.state);
    assert_eq!(q["iss"], s.issuer);
    assert!(!q.contains_key("code"));
    s.stop().await;
}

#[tokio::test]
async fn deferred_code_grant_approved_by_a_reviewer() {
    let s = start(CONFIG).await;
    let b = Browser::new(&s, "alice", "alice-password");
    let c = s.client().await;
    let (d, id) = deferred_code(&s, &b, &c, "read payments").await;
    assert_eq!(d.error, ErrorCode::AuthorizationPending);
    assert!(d.interaction_uri.is_none());
    let pending = c.poll_once(&d.code).await.unwrap();
    assert_eq!(pending.error_code(), Some(&ErrorCode::AuthorizationPending));

    let shown = s.admin().show(&id).await.unwrap();
    assert_eq!(shown["grant_type"], "authorization_code");
    assert_eq!(shown["subject"], "alice");
    assert_eq!(
        scopes(shown["scope"].as_str().unwrap()),
        ["payments", "read"]
    );
    s.admin().approve(&id, None).await.unwrap();

    // DTR-20: the authorization code grant's own response, refresh token
    // included.
    let t = token(c.poll_once(&d.code).await.unwrap());
    assert_eq!(scopes(t.scope.as_deref().unwrap()), ["payments", "read"]);
    let refresh = t.refresh_token.unwrap();
    let intro = c.introspect(&t.access_token).await.unwrap();
    assert_eq!(intro["sub"], "alice");
    let again = c.poll_once(&d.code).await.unwrap();
    assert_eq!(again.error_code(), Some(&ErrorCode::InvalidGrant));
    // The refresh token from the deferred grant works.
    token(
        c.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("scope", "read"),
        ])
        .await
        .unwrap(),
    );
    s.stop().await;
}

#[tokio::test]
async fn deferred_code_grant_denied_or_cancelled() {
    let s = start(CONFIG).await;
    let b = Browser::new(&s, "alice", "alice-password");
    let c = s.client().await;
    let (d, id) = deferred_code(&s, &b, &c, "payments").await;
    s.admin().deny(&id, Some("not today")).await.unwrap();
    let r = c.poll_once(&d.code).await.unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::AccessDenied));
    assert_eq!(s.admin().show(&id).await.unwrap()["state"], "denied");

    // The client gives up through revocation (DTR-31).
    let (d, id) = deferred_code(&s, &b, &c, "payments").await;
    c.cancel_deferral(&d).await.unwrap();
    let r = c.poll_once(&d.code).await.unwrap();
    assert_eq!(r.error_code(), Some(&ErrorCode::AccessDenied));
    assert_ne!(s.admin().show(&id).await.unwrap()["state"], "pending");
    s.stop().await;
}

#[tokio::test]
async fn hint_on_authorize_needs_deferred_at_the_token_endpoint() {
    // DTR-5: the hint given at /authorize binds the token request.
    let s = start(CONFIG).await;
    let b = Browser::new(&s, "alice", "alice-password");
    let c = s.client().await;
    let req = authorize_url(&s, "read", &[("completion_mode", "deferred")]);
    let landing = b.authorize(req.url.clone(), "approve").await;
    let code = code_from(&s, &req, &landing);
    let r = exchange(&c, &req, &code, false).await;
    assert_eq!(r.error_code(), Some(&ErrorCode::InvalidRequest), "{r:?}");
    // With the hint repeated, a request that policy does not defer is
    // answered at once.
    let req = authorize_url(&s, "read", &[("completion_mode", "deferred")]);
    let landing = b.authorize(req.url.clone(), "approve").await;
    let code = code_from(&s, &req, &landing);
    let t = token(exchange(&c, &req, &code, true).await);
    assert_eq!(t.scope.as_deref(), Some("read"));
    s.stop().await;
}

#[tokio::test]
async fn interaction_page_approves_the_deferral() {
    let s = start(CONFIG).await;
    let c = s.client().await;
    let alice = Browser::new(&s, "alice", "alice-password");
    let req = authorize_url(&s, "profile", &[("completion_mode", "deferred")]);
    let landing = alice.authorize(req.url.clone(), "approve").await;
    let code = code_from(&s, &req, &landing);
    let d = deferral(exchange(&c, &req, &code, true).await);
    assert_eq!(d.error, ErrorCode::InteractionRequired);
    let uri = Url::parse(d.interaction_uri.as_deref().unwrap()).unwrap();
    assert_eq!(uri.origin().ascii_serialization(), s.origin());

    // Bob signs in on his own browser but may not decide alice's request:
    // the page is refused him, and so is a decision sent with his own
    // session's valid CSRF token (from another signed-in page).
    let bob = Browser::new(&s, "bob", "bob-password");
    let login = bob.follow(bob.get(uri.clone()).await).await;
    assert_eq!(login.url.path(), "/login");
    let page = bob.sign_in(&login).await;
    assert_eq!(page.url, uri);
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    let device = bob.get(uri.join("/device").unwrap()).await;
    let csrf = device.form().hidden("csrf").unwrap().to_owned();
    let refused = bob
        .page(
            uri.clone(),
            bob.http
                .post(uri.clone())
                .form(&[("csrf", csrf.as_str()), ("decision", "approve")]),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);

    // Alice, on a fresh browser: log in from the link, see the request.
    let phone = Browser::new(&s, "alice", "alice-password");
    let login = phone.follow(phone.get(uri.clone()).await).await;
    assert_eq!(login.url.path(), "/login", "{}", login.text);
    let page = phone.sign_in(&login).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.url, uri);
    assert!(page.text.contains("<dd>profile</dd>"), "{}", page.text);
    assert!(page.text.contains("<code>web</code>"), "{}", page.text);
    let form = page.form();
    assert!(form.hidden("csrf").is_some());
    // Opening the page decided nothing; the interaction has begun.
    let r = c.poll_once(&d.code).await.unwrap();
    assert_eq!(
        r.error_code(),
        Some(&ErrorCode::InteractionPending),
        "{r:?}"
    );
    // A forged submission without the CSRF token is refused.
    let forged = phone
        .page(
            uri.clone(),
            phone
                .http
                .post(uri.clone())
                .form(&[("decision", "approve")]),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let done = phone.submit(&page, &[("decision", "approve")]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    // The handle is single use.
    let again = phone.submit(&page, &[("decision", "approve")]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);

    let t = token(c.poll_once(&d.code).await.unwrap());
    assert_eq!(t.scope.as_deref(), Some("profile"));
    assert!(t.refresh_token.is_some());
    s.stop().await;
}
