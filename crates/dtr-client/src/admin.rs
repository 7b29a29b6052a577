//! Client of the server's admin API (DESIGN.md "Admin API"): list, show
//! and decide deferrals, report progress (DTR-10), switch a deferral to
//! `interaction_required` (DTR-11) and disable or enable clients (DTR-23).
//!
//! Reviewers address a deferral by its separate opaque `id`, never by the
//! deferral code.

use crate::client::default_http_client;
use crate::http::{read_body, snippet};
use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::Method;
use serde_json::{json, Value};
use url::Url;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The server answered with a non-2xx status: 401 (bad admin token),
    /// 404 (unknown id), 409 (no longer pending), 400 (e.g. a scope that
    /// widens the request, DTR-24), ...
    #[error("HTTP {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The response body (truncated).
        body: String,
    },
    /// The HTTP exchange failed.
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The base URL is not usable.
    #[error("invalid admin API URL '{url}': {reason}")]
    InvalidUrl {
        /// The offending URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A 2xx answer that is not the JSON expected.
    #[error("unexpected admin API answer: {0}")]
    UnexpectedBody(String),
}

impl AdminError {
    /// The HTTP status of a [`AdminError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `error_description` (or `error`) of a JSON error body, if any.
    pub fn description(&self) -> Option<String> {
        let Self::Status { body, .. } = self else {
            return None;
        };
        let v: Value = serde_json::from_str(body).ok()?;
        v.get("error_description")
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// An admin API client. `Debug` never prints the token.
#[derive(Clone)]
pub struct AdminClient {
    base_url: Url,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base_url", &self.base_url.as_str())
            .field("token", &"[redacted]")
            .finish()
    }
}

impl AdminClient {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`;
    /// a path prefix is kept) with the admin bearer `token`.
    pub fn new(base_url: &str, token: impl Into<String>) -> Result<Self, AdminError> {
        let invalid = |reason: String| AdminError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let mut url = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(invalid("must be an http or https URL".into()));
        }
        url.set_query(None);
        url.set_fragment(None);
        Ok(Self {
            base_url: url,
            token: token.into(),
            http: default_http_client(),
        })
    }

    /// Replaces the HTTP client.
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The URL of `/admin/<segments...>`; each segment is percent-encoded,
    /// so an id or client id cannot escape its place in the path.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty().push("admin").extend(segments);
        }
        url
    }

    /// `GET /admin/deferrals?state=..&client_id=..`, newest first.
    pub async fn list(
        &self,
        state: Option<&str>,
        client_id: Option<&str>,
    ) -> Result<Vec<Value>, AdminError> {
        let mut url = self.url(&["deferrals"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = state {
                q.append_pair("state", s);
            }
            if let Some(c) = client_id {
                q.append_pair("client_id", c);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        match self.send(Method::GET, url, None).await? {
            Value::Array(items) => Ok(items),
            other => Err(AdminError::UnexpectedBody(format!(
                "expected a JSON array, got {}",
                snippet(other.to_string().as_bytes())
            ))),
        }
    }

    /// `GET /admin/deferrals/{id}`.
    pub async fn show(&self, id: &str) -> Result<Value, AdminError> {
        self.send(Method::GET, self.url(&["deferrals", id]), None)
            .await
    }

    /// `GET /admin/deferrals/{id}/events`: the deferral's audit trail,
    /// oldest first.
    pub async fn events(&self, id: &str) -> Result<Vec<Value>, AdminError> {
        let v = self
            .send(Method::GET, self.url(&["deferrals", id, "events"]), None)
            .await?;
        array(v)
    }

    /// `GET /admin/events?since=<RFC 3339>`: every deferral's events from
    /// `since` on, oldest first (admins only).
    pub async fn events_since(&self, since: Option<&str>) -> Result<Vec<Value>, AdminError> {
        let mut url = self.url(&["events"]);
        if let Some(s) = since {
            url.query_pairs_mut().append_pair("since", s);
        }
        let v = self.send(Method::GET, url, None).await?;
        array(v)
    }

    /// `POST /admin/deferrals/{id}/approve`, optionally narrowing the scope
    /// (DTR-24: a scope that is not a subset is refused with 400).
    pub async fn approve(&self, id: &str, scope: Option<&str>) -> Result<Value, AdminError> {
        let body = match scope {
            Some(s) => json!({ "scope": s }),
            None => json!({}),
        };
        self.post(&["deferrals", id, "approve"], body).await
    }

    /// `POST /admin/deferrals/{id}/deny`.
    pub async fn deny(&self, id: &str, reason: Option<&str>) -> Result<Value, AdminError> {
        let body = match reason {
            Some(r) => json!({ "reason": r }),
            None => json!({}),
        };
        self.post(&["deferrals", id, "deny"], body).await
    }

    /// `POST /admin/deferrals/{id}/progress`: polls then carry
    /// `error_description` `step=<step>` (DTR-10).
    pub async fn progress(&self, id: &str, step: &str) -> Result<Value, AdminError> {
        self.post(&["deferrals", id, "progress"], json!({ "step": step }))
            .await
    }

    /// `POST /admin/deferrals/{id}/interaction`: switch to
    /// `interaction_required` with a fresh `interaction_uri` (DTR-11).
    pub async fn interaction(&self, id: &str) -> Result<Value, AdminError> {
        self.post(&["deferrals", id, "interaction"], json!({}))
            .await
    }

    /// `POST /admin/clients/{client_id}/disable` (DTR-23).
    pub async fn disable_client(&self, client_id: &str) -> Result<Value, AdminError> {
        self.post_client(client_id, "disable").await
    }

    /// `POST /admin/clients/{client_id}/enable`.
    pub async fn enable_client(&self, client_id: &str) -> Result<Value, AdminError> {
        self.post_client(client_id, "enable").await
    }

    /// `POST /admin/users/{username}/tokens` (admin only): a new personal
    /// API token, `{"id", "token"}`; the token is shown this once.
    pub async fn create_token(&self, username: &str) -> Result<Value, AdminError> {
        self.post(&["users", username, "tokens"], json!({})).await
    }

    /// `GET /admin/users/{username}/tokens` (admin only): `[{id,
    /// created_at, revoked_at?}]`, never the tokens themselves.
    pub async fn list_tokens(&self, username: &str) -> Result<Vec<Value>, AdminError> {
        match self
            .send(Method::GET, self.url(&["users", username, "tokens"]), None)
            .await?
        {
            Value::Array(items) => Ok(items),
            other => Err(AdminError::UnexpectedBody(format!(
                "expected a JSON array, got {}",
                snippet(other.to_string().as_bytes())
            ))),
        }
    }

    /// `DELETE /admin/users/{username}/tokens/{id}` (admin only): revoked
    /// at once on every node.
    pub async fn revoke_token(&self, username: &str, id: &str) -> Result<(), AdminError> {
        self.send(
            Method::DELETE,
            self.url(&["users", username, "tokens", id]),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn post_client(&self, client_id: &str, action: &str) -> Result<Value, AdminError> {
        self.post(&["clients", client_id, action], json!({})).await
    }

    async fn post(&self, segments: &[&str], body: Value) -> Result<Value, AdminError> {
        self.send(Method::POST, self.url(segments), Some(body))
            .await
    }

    /// Sends one request; non-2xx becomes [`AdminError::Status`]; an empty
    /// 2xx body (e.g. 204) becomes `null`.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let mut rb = self
            .http
            .request(method, url)
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(b) = &body {
            rb = rb.json(b);
        }
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        let bytes = read_body(resp).await.map_err(|e| match e {
            crate::Error::Http(h) => AdminError::Http(h),
            other => AdminError::UnexpectedBody(other.to_string()),
        })?;
        if !(200..300).contains(&status) {
            return Err(AdminError::Status {
                status,
                body: snippet(&bytes),
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| AdminError::UnexpectedBody(format!("not JSON ({e}): {}", snippet(&bytes))))
    }
}

/// A JSON array answer, or the error that it was not one.
fn array(v: Value) -> Result<Vec<Value>, AdminError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(AdminError::UnexpectedBody(format!(
            "expected a JSON array, got {}",
            snippet(other.to_string().as_bytes())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_each_segment_and_keep_a_prefix() {
        let a = AdminClient::new("http://127.0.0.1:8080", "t").unwrap();
        assert_eq!(
            a.url(&["deferrals", "ab/c?d", "approve"]).as_str(),
            "http://127.0.0.1:8080/admin/deferrals/ab%2Fc%3Fd/approve"
        );
        let b = AdminClient::new("https://as.example/base/", "t").unwrap();
        assert_eq!(
            b.url(&["clients", "svc", "disable"]).as_str(),
            "https://as.example/base/admin/clients/svc/disable"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for bad in ["nope", "ftp://x", "mailto:a@b"] {
            assert!(
                matches!(
                    AdminClient::new(bad, "t"),
                    Err(AdminError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let a = AdminClient::new("http://h", "s3cr3t-admin").unwrap();
        assert!(!format!("{a:?}").contains("s3cr3t-admin"));
    }

    #[test]
    fn status_error_exposes_description() {
        let e = AdminError::Status {
            status: 400,
            body: r#"{"error":"invalid_request","error_description":"scope widens"}"#.into(),
        };
        assert_eq!(e.status(), Some(400));
        assert_eq!(e.description().as_deref(), Some("scope widens"));
        let e = AdminError::Status {
            status: 500,
            body: "oops".into(),
        };
        assert_eq!(e.description(), None);
    }
}
