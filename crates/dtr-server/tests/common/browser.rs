//! A browser over `oneshot`: a cookie jar, forms followed, the login and
//! consent pages of the authorization code flow signed through as alice.

use super::{form, Harness, Resp};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use std::collections::HashMap;

/// PKCE verifier of every authorization request [`authorize_path`] makes.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// Its S256 challenge.
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A browser: a cookie jar over `oneshot`.
pub struct Browser<'a> {
    pub h: &'a Harness,
    pub jar: HashMap<String, String>,
}

pub fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + needle.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&amp;", "&")
}

pub fn location(r: &Resp) -> String {
    r.headers
        .get(header::LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

pub fn query_of(url: &str) -> HashMap<String, String> {
    let u = url::Url::parse(url).unwrap();
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl<'a> Browser<'a> {
    pub fn new(h: &'a Harness) -> Self {
        Self {
            h,
            jar: HashMap::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn keep(&mut self, r: &Resp) {
        for v in r.headers.get_all(header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        let r = self
            .h
            .send(
                Request::get(path)
                    .header(header::COOKIE, self.cookie_header())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        self.keep(&r);
        r
    }

    pub async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        let r = self
            .h
            .send(
                Request::post(path)
                    .header(header::COOKIE, self.cookie_header())
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form(pairs)))
                    .unwrap(),
            )
            .await;
        self.keep(&r);
        r
    }

    /// Follows the login redirect of `r` and signs in; returns the answer
    /// of the page it comes back to.
    pub async fn sign_in_from(&mut self, r: Resp, user: &str, password: &str) -> Resp {
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let login = self.get(&location(&r)).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text);
        let csrf = hidden(&login.text, "csrf");
        let return_to = hidden(&login.text, "return_to");
        let done = self
            .post(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("return_to", &return_to),
                    ("username", user),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
        self.get(&location(&done)).await
    }

    /// Approves (or denies) the consent page `page`; returns the redirect
    /// to the client.
    pub async fn consent(&mut self, page: &Resp, decision: &str) -> HashMap<String, String> {
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let request = hidden(&page.text, "request");
        let csrf = hidden(&page.text, "csrf");
        let r = self
            .post(
                "/authorize/consent",
                &[
                    ("request", &request),
                    ("csrf", &csrf),
                    ("decision", decision),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        query_of(&location(&r))
    }
}

pub fn authorize_path(client: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "st-1"),
    ];
    pairs.extend_from_slice(extra);
    format!("/authorize?{}", form(&pairs))
}

/// Signs alice in, consents, returns the code.
pub async fn code_for(b: &mut Browser<'_>, client: &str, extra: &[(&str, &str)]) -> String {
    let r = b.get(&authorize_path(client, extra)).await;
    let page = if r.status == StatusCode::SEE_OTHER && location(&r).starts_with("/login") {
        b.sign_in_from(r, "alice", "alice-password").await
    } else {
        r
    };
    if page.status == StatusCode::SEE_OTHER {
        return query_of(&location(&page))["code"].clone();
    }
    let q = b.consent(&page, "approve").await;
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], "http://127.0.0.1:8080");
    q["code"].clone()
}

pub async fn exchange_as(
    h: &Harness,
    client: (&str, &str),
    code: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", VERIFIER),
    ];
    pairs.extend_from_slice(extra);
    h.post("/token", client, &pairs).await
}
