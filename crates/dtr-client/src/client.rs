//! The OAuth client: discovery (RFC 8414), token requests with client
//! authentication, polling (DTR-15), cancellation (DTR-31), revocation
//! (RFC 7009) and introspection (RFC 7662).

use crate::auth::ClientAuth;
use crate::clock::now_unix_ms;
use crate::deferral::TokenResult;
use crate::error::Error;
use crate::http::{classify_token_answer, parse_oauth_error, read_body, unexpected, Origin};
use dtr_proto::metadata::AuthorizationServerMetadata;
use dtr_proto::secret::{DeferralCode, NotificationToken};
use dtr_proto::{
    paths, GRANT_TYPE_CLIENT_CREDENTIALS, GRANT_TYPE_DEFERRED, TOKEN_TYPE_DEFERRAL_CODE,
};
use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use std::time::Duration;
use url::Url;

/// Connect timeout of the default HTTP client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Whole-request timeout of the default HTTP client. A poll is a quick
/// request: the server never holds it open while a deferral is pending.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client credentials token request (OAuth 2.1 section 4.2.1) with the
/// DTR opt-in.
#[derive(Clone, Debug, Default)]
pub struct ClientCredentialsRequest {
    /// Requested scope; `None` lets the server use the registered scope.
    pub scope: Option<String>,
    /// Send `completion_mode=deferred`: accept a deferred response (DTR-1).
    pub deferred: bool,
    /// `client_notification_token` for callback authentication (DTR-12).
    pub notification_token: Option<NotificationToken>,
    /// RFC 9396 `authorization_details` (a JSON array), sent as JSON text.
    pub authorization_details: Option<serde_json::Value>,
}

/// A token-endpoint answer with the HTTP details that tests and
/// diagnostics need alongside the [`TokenResult`].
#[derive(Clone, Debug)]
pub struct TokenReply {
    /// HTTP status code (200, 400, 401, ...).
    pub status: u16,
    /// The `WWW-Authenticate` header, sent with 401 `invalid_client`
    /// (OAuth 2.1 section 5.2).
    pub www_authenticate: Option<String>,
    /// The `Cache-Control` header (`no-store` on every answer, DTR-22).
    pub cache_control: Option<String>,
    /// The classified answer.
    pub result: TokenResult,
}

/// An OAuth client bound to one authorization server.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    metadata: AuthorizationServerMetadata,
    auth: ClientAuth,
}

/// The HTTP client used unless one is supplied: no redirects (a token or
/// revocation request must never be replayed with its credentials to
/// another place), finite timeouts.
pub fn default_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("dtr-client/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Where the metadata of `issuer` lives, in the order to try.
///
/// RFC 8414 section 3.1 inserts the well-known suffix between the host and
/// the issuer's path. Deployments that mount the server under a path behind
/// a proxy often serve it appended to the issuer instead (RFC 8414 section
/// 5 acknowledges that form), so it is the fallback.
pub fn metadata_urls(issuer: &str) -> Result<Vec<Url>, Error> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: issuer.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(issuer).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid(
            "the issuer must be an https (or, in development, http) URL",
        ));
    }
    // RFC 8414 section 2: no query or fragment in an issuer identifier.
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "an issuer has no query or fragment (RFC 8414 section 2)",
        ));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    let mut inserted = url.clone();
    inserted.set_path(&format!("{}{}", paths::METADATA, path));
    if path.is_empty() {
        return Ok(vec![inserted]);
    }
    let mut appended = url;
    appended.set_path(&format!("{}{}", path, paths::METADATA));
    Ok(vec![inserted, appended])
}

/// Issuer comparison of the discovery check: RFC 8414 section 3.3 asks for
/// identity; a trailing slash is the one difference we forgive, because
/// configuration files and shells disagree about it.
fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl Client {
    /// Fetches the issuer's metadata (RFC 8414) and checks that its
    /// `issuer` member is the issuer asked for (section 3.3), which defeats
    /// a metadata document impersonating another server.
    pub async fn discover(issuer: &str, auth: ClientAuth) -> Result<Client, Error> {
        Self::discover_with(default_http_client(), issuer, auth).await
    }

    /// [`Client::discover`] with a caller-supplied HTTP client.
    pub async fn discover_with(
        http: reqwest::Client,
        issuer: &str,
        auth: ClientAuth,
    ) -> Result<Client, Error> {
        let mut last = None;
        for url in metadata_urls(issuer)? {
            let resp = http
                .get(url.clone())
                .header(ACCEPT, "application/json")
                .send()
                .await?;
            let status = resp.status().as_u16();
            let body = read_body(resp).await?;
            if status == 404 {
                last = Some(format!("{url} answered 404"));
                continue;
            }
            if status != 200 {
                return Err(Error::Discovery(format!(
                    "{url} answered HTTP {status}: {}",
                    crate::http::snippet(&body)
                )));
            }
            let metadata: AuthorizationServerMetadata = serde_json::from_slice(&body)
                .map_err(|e| Error::Discovery(format!("{url} is not a metadata document: {e}")))?;
            if !same_issuer(&metadata.issuer, issuer) {
                return Err(Error::Discovery(format!(
                    "metadata at {url} names issuer '{}', expected '{issuer}' (RFC 8414 section 3.3)",
                    metadata.issuer
                )));
            }
            return Ok(Self {
                http,
                metadata,
                auth,
            });
        }
        Err(Error::Discovery(last.unwrap_or_else(|| {
            format!("no metadata found for '{issuer}'")
        })))
    }

    /// A client for known metadata, without a network round trip.
    pub fn from_metadata(metadata: AuthorizationServerMetadata, auth: ClientAuth) -> Client {
        Self {
            http: default_http_client(),
            metadata,
            auth,
        }
    }

    /// Replaces the HTTP client (e.g. to add a proxy or a custom root CA).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Client {
        self.http = http;
        self
    }

    /// The server's metadata.
    pub fn metadata(&self) -> &AuthorizationServerMetadata {
        &self.metadata
    }

    /// The client authentication in use.
    pub fn auth(&self) -> &ClientAuth {
        &self.auth
    }

    /// Runs the client credentials grant (OAuth 2.1 section 4.2), opting in
    /// to a deferred response when `req.deferred` (DTR-1).
    pub async fn client_credentials(
        &self,
        req: &ClientCredentialsRequest,
    ) -> Result<TokenResult, Error> {
        Ok(self.client_credentials_reply(req).await?.result)
    }

    /// [`Client::client_credentials`] with the HTTP details.
    pub async fn client_credentials_reply(
        &self,
        req: &ClientCredentialsRequest,
    ) -> Result<TokenReply, Error> {
        let details = req
            .authorization_details
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| Error::InvalidParameter(format!("authorization_details: {e}")))?;
        let mut params: Vec<(&str, &str)> = vec![("grant_type", GRANT_TYPE_CLIENT_CREDENTIALS)];
        if let Some(scope) = &req.scope {
            params.push(("scope", scope));
        }
        if req.deferred {
            params.push(("completion_mode", dtr_proto::completion_mode::DEFERRED));
        }
        if let Some(t) = &req.notification_token {
            params.push(("client_notification_token", t.secret()));
        }
        if let Some(d) = &details {
            params.push(("authorization_details", d));
        }
        self.token_request_reply(&params).await
    }

    /// A raw form POST to the token endpoint, with client authentication
    /// added. Other grants are built on this.
    pub async fn token_request(&self, params: &[(&str, &str)]) -> Result<TokenResult, Error> {
        Ok(self.token_request_reply(params).await?.result)
    }

    /// [`Client::token_request`] with the HTTP details.
    pub async fn token_request_reply(&self, params: &[(&str, &str)]) -> Result<TokenReply, Error> {
        let endpoint = self
            .metadata
            .token_endpoint
            .as_deref()
            .ok_or(Error::MissingEndpoint("token_endpoint"))?;
        let resp = self.post_form(endpoint, params).await?;
        let received_at_unix_ms = now_unix_ms();
        let status = resp.status().as_u16();
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let www_authenticate = header(WWW_AUTHENTICATE);
        let cache_control = header(CACHE_CONTROL);
        let body = read_body(resp).await?;
        let result = classify_token_answer(
            status,
            &body,
            &Origin {
                issuer: &self.metadata.issuer,
                client_id: self.auth.client_id(),
                received_at_unix_ms,
            },
        )?;
        Ok(TokenReply {
            status,
            www_authenticate,
            cache_control,
            result,
        })
    }

    /// One polling request (DTR-15): `grant_type` and `deferral_code` only,
    /// plus client authentication. It never carries `completion_mode`
    /// (DTR-6) nor anything that would alter the originating request.
    pub async fn poll_once(&self, code: &DeferralCode) -> Result<TokenResult, Error> {
        Ok(self.poll_once_reply(code).await?.result)
    }

    /// [`Client::poll_once`] with the HTTP details.
    pub async fn poll_once_reply(&self, code: &DeferralCode) -> Result<TokenReply, Error> {
        self.token_request_reply(&[
            ("grant_type", GRANT_TYPE_DEFERRED),
            ("deferral_code", code.secret()),
        ])
        .await
    }

    /// Cancels a deferral by revoking its code (DTR-31). When the metadata
    /// does not list the deferral-code token type for revocation (DTR-7),
    /// nothing is sent and [`Error::CancellationUnsupported`] is returned:
    /// a server that does not know the type would answer 200 without
    /// cancelling anything (RFC 7009 section 2.2), a silent failure.
    pub async fn cancel(&self, code: &DeferralCode) -> Result<(), Error> {
        if !self.metadata.supports_deferral_cancellation() {
            return Err(Error::CancellationUnsupported);
        }
        self.revoke(code.secret(), Some(TOKEN_TYPE_DEFERRAL_CODE))
            .await
    }

    /// Revokes a token (RFC 7009 section 2.1). Success is any 2xx: the
    /// server answers 200 for unknown tokens too (section 2.2).
    pub async fn revoke(&self, token: &str, hint: Option<&str>) -> Result<(), Error> {
        let endpoint = self
            .metadata
            .revocation_endpoint
            .as_deref()
            .ok_or(Error::MissingEndpoint("revocation_endpoint"))?;
        let mut params = vec![("token", token)];
        if let Some(h) = hint {
            params.push(("token_type_hint", h));
        }
        let resp = self.post_form(endpoint, &params).await?;
        let status = resp.status().as_u16();
        let body = read_body(resp).await?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(oauth_or_unexpected(status, &body))
    }

    /// Introspects a token (RFC 7662 section 2.1) and returns the JSON
    /// answer (`{"active": false}` for unknown tokens).
    pub async fn introspect(&self, token: &str) -> Result<serde_json::Value, Error> {
        let endpoint = self
            .metadata
            .introspection_endpoint
            .as_deref()
            .ok_or(Error::MissingEndpoint("introspection_endpoint"))?;
        let resp = self.post_form(endpoint, &[("token", token)]).await?;
        let status = resp.status().as_u16();
        let body = read_body(resp).await?;
        if status != 200 {
            return Err(oauth_or_unexpected(status, &body));
        }
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v @ serde_json::Value::Object(_)) => Ok(v),
            _ => Err(unexpected(status, &body)),
        }
    }

    /// A form POST with this client's authentication.
    async fn post_form(
        &self,
        endpoint: &str,
        params: &[(&str, &str)],
    ) -> Result<reqwest::Response, Error> {
        let auth_params = self.auth.body_params();
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.extend(auth_params.iter().map(|(k, v)| (*k, v.as_str())));
        let mut rb = self
            .http
            .post(endpoint)
            .header(ACCEPT, "application/json")
            .form(&form);
        if let Some(h) = self.auth.authorization_header() {
            rb = rb.header(AUTHORIZATION, h);
        }
        Ok(rb.send().await?)
    }
}

fn oauth_or_unexpected(status: u16, body: &[u8]) -> Error {
    match parse_oauth_error(body) {
        Some(error) => Error::OAuth { status, error },
        None => unexpected(status, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(issuer: &str) -> Vec<String> {
        metadata_urls(issuer)
            .unwrap()
            .into_iter()
            .map(|u| u.to_string())
            .collect()
    }

    #[test]
    fn metadata_url_of_a_host_issuer() {
        assert_eq!(
            urls("http://127.0.0.1:8080"),
            ["http://127.0.0.1:8080/.well-known/oauth-authorization-server"]
        );
        assert_eq!(
            urls("https://as.example/"),
            ["https://as.example/.well-known/oauth-authorization-server"]
        );
    }

    #[test]
    fn metadata_url_of_a_path_issuer() {
        // RFC 8414 section 3.1 first, the appended form second.
        assert_eq!(
            urls("https://as.example/tenant/"),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant",
                "https://as.example/tenant/.well-known/oauth-authorization-server",
            ]
        );
    }

    #[test]
    fn bad_issuers_are_refused() {
        for bad in ["not a url", "ftp://as", "https://as/?q=1", "https://as/#f"] {
            assert!(
                matches!(metadata_urls(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn issuer_comparison_forgives_only_a_trailing_slash() {
        assert!(same_issuer("https://as/", "https://as"));
        assert!(same_issuer("https://as", "https://as"));
        assert!(!same_issuer("https://as", "https://evil"));
        assert!(!same_issuer("https://as/a", "https://as"));
    }

    #[tokio::test]
    async fn cancel_without_advertised_support_sends_nothing() {
        // DTR-7: the revocation endpoint points at a closed port; if the
        // client sent anything the error would be Http, not this one.
        let md = AuthorizationServerMetadata {
            issuer: "http://127.0.0.1:9".into(),
            revocation_endpoint: Some("http://127.0.0.1:9/revoke".into()),
            ..Default::default()
        };
        let c = Client::from_metadata(
            md,
            ClientAuth::None {
                client_id: "c".into(),
            },
        );
        let r = c.cancel(&DeferralCode::new("x")).await;
        assert!(matches!(r, Err(Error::CancellationUnsupported)), "{r:?}");
    }

    #[tokio::test]
    async fn missing_endpoints_are_reported() {
        let c = Client::from_metadata(
            AuthorizationServerMetadata::default(),
            ClientAuth::None {
                client_id: "c".into(),
            },
        );
        assert!(matches!(
            c.poll_once(&DeferralCode::new("x")).await,
            Err(Error::MissingEndpoint("token_endpoint"))
        ));
        assert!(matches!(
            c.introspect("t").await,
            Err(Error::MissingEndpoint("introspection_endpoint"))
        ));
        assert!(matches!(
            c.revoke("t", None).await,
            Err(Error::MissingEndpoint("revocation_endpoint"))
        ));
    }
}
