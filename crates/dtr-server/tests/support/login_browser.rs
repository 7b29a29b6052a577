//! A browser for end-to-end tests of clients that send the user to the
//! authorization endpoint: it keeps cookies, follows redirects itself,
//! signs in on the login form, answers the consent form, and delivers the
//! authorization response to the client's redirect URI the way a browser
//! does: a GET of the redirect (query response mode) or the submission of
//! the auto-posting form (form_post response mode).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::{header, StatusCode};
use url::Url;

/// What the trip through the server's pages ended with.
#[derive(Debug)]
pub struct Delivery {
    /// Titles (`<h1>`) of the server's pages on the way.
    pub pages: Vec<String>,
    /// How the response reached the client: `GET` or `POST`.
    pub method: &'static str,
    /// The client's answer to the browser.
    pub status: StatusCode,
    /// The page the client showed.
    pub text: String,
}

/// A signed-out browser for one user.
pub struct LoginBrowser {
    http: reqwest::Client,
    user: String,
    password: String,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

fn title(html: &str) -> String {
    let s = html.find("<h1>").map(|i| i + 4).unwrap_or(0);
    let e = html[s..].find("</h1>").map(|i| i + s).unwrap_or(s);
    unescape(&html[s..e])
}

/// The first form of a page: its action and its hidden inputs.
fn form(page: &Url, html: &str) -> Option<(Url, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let end = html[start..].find("</form>")? + start;
    let body = &html[start..end];
    let open = &body[..body.find('>')?];
    let action = match attr(open, "action") {
        Some(a) if !a.is_empty() => page.join(&a).ok()?,
        _ => page.clone(),
    };
    let mut hidden = Vec::new();
    for (i, _) in body.match_indices("<input") {
        let tag = &body[i..i + body[i..].find('>')?];
        if attr(tag, "type").as_deref() == Some("hidden") {
            if let Some(name) = attr(tag, "name") {
                hidden.push((name, attr(tag, "value").unwrap_or_default()));
            }
        }
    }
    Some((action, hidden))
}

struct Page {
    url: Url,
    status: StatusCode,
    location: Option<Url>,
    text: String,
}

impl LoginBrowser {
    pub fn new(user: &str, password: &str) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    async fn page(&self, url: Url, r: reqwest::RequestBuilder) -> Page {
        let r = r.send().await.unwrap();
        let status = r.status();
        let location = r
            .headers()
            .get(header::LOCATION)
            .map(|l| url.join(l.to_str().unwrap()).unwrap());
        let text = r.text().await.unwrap();
        Page {
            url,
            status,
            location,
            text,
        }
    }

    async fn submit(&self, page: &Page, extra: &[(&str, &str)]) -> Page {
        let (target, hidden) =
            form(&page.url, &page.text).unwrap_or_else(|| panic!("no form: {}", page.text));
        let mut pairs: Vec<(&str, &str)> = hidden
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        pairs.extend_from_slice(extra);
        let req = self.http.post(target.clone()).form(&pairs);
        self.page(target, req).await
    }

    /// Opens the authorization URL, signs in, answers the consent page with
    /// `decision` (`approve` or `deny`) and delivers the response to the
    /// client. Everything on `server` (an origin) is the authorization
    /// server; the first step off it is the client's redirect URI.
    pub async fn authorize(&self, url: Url, server: &str, decision: &str) -> Delivery {
        let mut pages = Vec::new();
        let mut page = self.page(url.clone(), self.http.get(url)).await;
        for _ in 0..20 {
            let here = page.url.origin().ascii_serialization() == server;
            if page.status.is_redirection() {
                let next = page.location.clone().expect("a redirect has a location");
                if next.origin().ascii_serialization() != server {
                    // The query response mode: the browser follows the
                    // redirect to the client.
                    let r = self.page(next.clone(), self.http.get(next)).await;
                    return Delivery {
                        pages,
                        method: "GET",
                        status: r.status,
                        text: r.text,
                    };
                }
                page = self.page(next.clone(), self.http.get(next)).await;
                continue;
            }
            assert!(here, "left the server without a redirect: {}", page.url);
            assert_eq!(page.status, StatusCode::OK, "{}: {}", page.url, page.text);
            let (target, hidden) = form(&page.url, &page.text)
                .unwrap_or_else(|| panic!("no form at {}: {}", page.url, page.text));
            if target.origin().ascii_serialization() != server {
                // The form_post response mode: the page's form posts the
                // response to the client.
                let r = self.submit(&page, &[]).await;
                return Delivery {
                    pages,
                    method: "POST",
                    status: r.status,
                    text: r.text,
                };
            }
            pages.push(title(&page.text));
            page = if page.text.contains("name=\"password\"") {
                let (user, password) = (self.user.clone(), self.password.clone());
                self.submit(&page, &[("username", &user), ("password", &password)])
                    .await
            } else {
                assert!(
                    hidden.iter().any(|(n, _)| n == "request"),
                    "not a consent page: {}",
                    page.text
                );
                self.submit(&page, &[("decision", decision)]).await
            };
        }
        panic!("no response delivered to the client")
    }
}
