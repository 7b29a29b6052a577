//! The OAuth client: discovery (RFC 8414), token requests with client
//! authentication, polling (DTR-15), cancellation (DTR-31), revocation
//! (RFC 7009) and introspection (RFC 7662), optionally sender-constrained
//! with DPoP (RFC 9449, DTR-13), and calls of DPoP-protected resources.

use crate::auth::ClientAuth;
use crate::clock::now_unix_ms;
use crate::completion_mode::CompletionMode;
use crate::deferral::{Deferral, TokenResult};
use crate::dpop::{DpopKey, DPOP_HEADER, DPOP_NONCE_HEADER};
use crate::error::Error;
use crate::http::{classify_token_answer, parse_oauth_error, read_body, unexpected, Origin};
use dtr_proto::metadata::AuthorizationServerMetadata;
use dtr_proto::secret::{DeferralCode, NotificationToken};
use dtr_proto::{
    paths, GRANT_TYPE_CLIENT_CREDENTIALS, GRANT_TYPE_DEFERRED, TOKEN_TYPE_DEFERRAL_CODE,
};
use reqwest::header::HeaderMap;
use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, RETRY_AFTER, WWW_AUTHENTICATE};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
///
/// Clones share the remembered DPoP nonces.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    metadata: AuthorizationServerMetadata,
    auth: ClientAuth,
    dpop: Option<DpopKey>,
    nonces: Nonces,
}

/// The latest `DPoP-Nonce` of each server (RFC 9449 section 8: the
/// authorization server and each resource server have their own nonces),
/// keyed by origin.
#[derive(Clone, Debug, Default)]
struct Nonces(Arc<Mutex<HashMap<String, String>>>);

impl Nonces {
    fn origin(url: &str) -> Option<String> {
        Url::parse(url)
            .ok()
            .map(|u| u.origin().ascii_serialization())
    }

    fn get(&self, url: &str) -> Option<String> {
        let origin = Self::origin(url)?;
        self.0.lock().ok()?.get(&origin).cloned()
    }

    /// Remembers the nonce of a response, if it has one. Returns whether
    /// it carried one.
    fn remember(&self, url: &str, headers: &HeaderMap) -> bool {
        let Some(nonce) = headers
            .get(DPOP_NONCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|n| !n.is_empty())
        else {
            return false;
        };
        if let (Some(origin), Ok(mut map)) = (Self::origin(url), self.0.lock()) {
            map.insert(origin, nonce.to_owned());
        }
        true
    }
}

/// An HTTP answer read to the end (bounded by [`crate::http::MAX_BODY`]).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: impl reqwest::header::AsHeaderName) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// The answer of a protected resource ([`Client::fetch_resource`]).
#[derive(Clone, Debug)]
pub struct ResourceResponse {
    /// HTTP status code.
    pub status: u16,
    /// The `WWW-Authenticate` challenge of a refusal (RFC 6750 section 3,
    /// RFC 9449 section 7.1).
    pub www_authenticate: Option<String>,
    /// The body (at most 1 MiB).
    pub body: Vec<u8>,
}

impl ResourceResponse {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
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
                dpop: None,
                nonces: Nonces::default(),
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
            dpop: None,
            nonces: Nonces::default(),
        }
    }

    /// Sends a DPoP proof of `key` (RFC 9449) with every token request,
    /// poll and revocation: deferral codes and tokens obtained from then on
    /// are bound to the key (DTR-13, DTR-20).
    pub fn with_dpop(mut self, key: DpopKey) -> Client {
        self.dpop = Some(key);
        self
    }

    /// The DPoP key, if the client has one.
    pub fn dpop_key(&self) -> Option<&DpopKey> {
        self.dpop.as_ref()
    }

    /// The latest `DPoP-Nonce` the server at `url`'s origin sent, which
    /// the next proof for it carries (RFC 9449 section 8).
    pub fn dpop_nonce(&self, url: &str) -> Option<String> {
        self.nonces.get(url)
    }

    /// Checks locally that this client can prove the key a deferral is
    /// bound to (DTR-13), so that a bound code is never sent without its
    /// proof: [`Error::DpopKeyRequired`] without a key,
    /// [`Error::DpopKeyMismatch`] with another one.
    pub fn check_binding(&self, dpop_jkt: Option<&str>) -> Result<(), Error> {
        let Some(expected) = dpop_jkt else {
            return Ok(());
        };
        match &self.dpop {
            None => Err(Error::DpopKeyRequired {
                jkt: expected.to_owned(),
            }),
            Some(k) if k.thumbprint() == expected => Ok(()),
            Some(k) => Err(Error::DpopKeyMismatch {
                expected: expected.to_owned(),
                actual: k.thumbprint().to_owned(),
            }),
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
        let mode = if req.deferred {
            CompletionMode::Deferred
        } else {
            CompletionMode::Synchronous
        };
        self.client_credentials_with_mode(req, mode).await
    }

    /// [`Client::client_credentials_reply`] with the `completion_mode`
    /// given explicitly, e.g. [`CompletionMode::DeferredInteractive`] for a
    /// client that can show a user an `interaction_uri`; `req.deferred` is
    /// not looked at.
    pub async fn client_credentials_with_mode(
        &self,
        req: &ClientCredentialsRequest,
        mode: CompletionMode,
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
        if let Some(m) = mode.param() {
            params.push(("completion_mode", m));
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
        let answer = self.post_form(endpoint, params, true).await?;
        let received_at_unix_ms = now_unix_ms();
        let result = classify_token_answer(
            answer.status,
            &answer.body,
            &Origin {
                issuer: &self.metadata.issuer,
                client_id: self.auth.client_id(),
                received_at_unix_ms,
                dpop_jkt: self.dpop.as_ref().map(DpopKey::thumbprint),
            },
        )?;
        let result = match result {
            // RFC 9110 section 10.2.3: the delay travels as a header, and
            // the poller honours it (temporarily_unavailable, a throttled
            // client). Only the delay-seconds form is read; an HTTP date
            // would need the server's clock.
            TokenResult::Error(e) => TokenResult::Error(
                match answer
                    .header(RETRY_AFTER)
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    Some(secs) => e.with_retry_after(secs),
                    None => e,
                },
            ),
            other => other,
        };
        Ok(TokenReply {
            status: answer.status,
            www_authenticate: answer.header(WWW_AUTHENTICATE),
            cache_control: answer.header(CACHE_CONTROL),
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

    /// One polling request with parameters that belong to this poll alone:
    /// the first poll after a deferral at the authorization endpoint
    /// carries the PKCE `code_verifier` and the `redirect_uri` (see
    /// [`crate::FirstPollParams`]). Nothing else is added (DTR-6, DTR-15).
    pub async fn poll_once_with_reply(
        &self,
        code: &DeferralCode,
        params: &[(&str, &str)],
    ) -> Result<TokenReply, Error> {
        let mut form = vec![
            ("grant_type", GRANT_TYPE_DEFERRED),
            ("deferral_code", code.secret()),
        ];
        form.extend_from_slice(params);
        self.token_request_reply(&form).await
    }

    /// Polls a deferral once, with a proof of the key it is bound to
    /// (DTR-13); without that key nothing is sent (see
    /// [`Client::check_binding`]).
    pub async fn poll_deferral(&self, deferral: &Deferral) -> Result<TokenResult, Error> {
        self.check_binding(deferral.dpop_jkt.as_deref())?;
        self.poll_once(&deferral.code).await
    }

    /// Cancels a deferral (DTR-31), with a proof of the key it is bound to;
    /// without that key nothing is sent.
    pub async fn cancel_deferral(&self, deferral: &Deferral) -> Result<(), Error> {
        self.check_binding(deferral.dpop_jkt.as_deref())?;
        self.cancel(&deferral.code).await
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
        let answer = self.post_form(endpoint, &params, true).await?;
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        Err(oauth_or_unexpected(answer.status, &answer.body))
    }

    /// Introspects a token (RFC 7662 section 2.1) and returns the JSON
    /// answer (`{"active": false}` for unknown tokens).
    pub async fn introspect(&self, token: &str) -> Result<serde_json::Value, Error> {
        let endpoint = self
            .metadata
            .introspection_endpoint
            .as_deref()
            .ok_or(Error::MissingEndpoint("introspection_endpoint"))?;
        // RFC 9449 defines no proof for introspection, so none is sent.
        let answer = self.post_form(endpoint, &[("token", token)], false).await?;
        let (status, body) = (answer.status, answer.body);
        if status != 200 {
            return Err(oauth_or_unexpected(status, &body));
        }
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v @ serde_json::Value::Object(_)) => Ok(v),
            _ => Err(unexpected(status, &body)),
        }
    }

    /// Calls a protected resource with `GET` (RFC 6750 section 2.1, RFC
    /// 9449 section 7): a `DPoP` token goes as `Authorization: DPoP` with a
    /// proof whose `ath` is the token's hash, any other as `Bearer`. A
    /// `use_dpop_nonce` challenge (401, section 9) is answered with one
    /// retry carrying the resource server's nonce.
    pub async fn fetch_resource(
        &self,
        url: &str,
        access_token: &str,
        token_type: &str,
    ) -> Result<ResourceResponse, Error> {
        // RFC 6749 section 7.1: the token type is case-insensitive.
        let dpop = if token_type.eq_ignore_ascii_case("DPoP") {
            Some(self.dpop.as_ref().ok_or_else(|| Error::DpopKeyRequired {
                jkt: "(the access token's cnf.jkt)".to_owned(),
            })?)
        } else {
            None
        };
        let mut retried = false;
        loop {
            let mut rb = self.http.get(url);
            match dpop {
                Some(key) => {
                    let nonce = self.nonces.get(url);
                    let proof = key.proof("GET", url, nonce.as_deref(), Some(access_token))?;
                    rb = rb
                        .header(AUTHORIZATION, format!("DPoP {access_token}"))
                        .header(DPOP_HEADER, proof);
                }
                None => rb = rb.header(AUTHORIZATION, format!("Bearer {access_token}")),
            }
            let resp = rb.send().await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let fresh_nonce = dpop.is_some() && self.nonces.remember(url, &headers);
            let www_authenticate = headers
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let wants_nonce = status == 401
                && www_authenticate
                    .as_deref()
                    .is_some_and(|c| c.contains("use_dpop_nonce"));
            if wants_nonce && fresh_nonce && !retried {
                retried = true;
                continue;
            }
            let body = read_body(resp).await?;
            return Ok(ResourceResponse {
                status,
                www_authenticate,
                body,
            });
        }
    }

    /// A form POST with this client's authentication and, when `dpop` and
    /// the client has a key, a fresh proof for exactly this endpoint.
    ///
    /// RFC 9449 section 8: a `400 use_dpop_nonce` answer carries the nonce
    /// to use in a `DPoP-Nonce` header; the request is then repeated once,
    /// with a new proof (the server has seen the old `jti`) and a new
    /// client assertion (likewise single-use).
    pub(crate) async fn post_form(
        &self,
        endpoint: &str,
        params: &[(&str, &str)],
        dpop: bool,
    ) -> Result<Answer, Error> {
        let key = self.dpop.as_ref().filter(|_| dpop);
        let mut retried = false;
        loop {
            let answer = self.post_form_once(endpoint, params, key).await?;
            let fresh_nonce = key.is_some() && self.nonces.remember(endpoint, &answer.headers);
            let wants_nonce = answer.status == 400
                && parse_oauth_error(&answer.body)
                    .is_some_and(|e| e.error == dtr_proto::ErrorCode::UseDpopNonce);
            if wants_nonce && fresh_nonce && !retried {
                retried = true;
                continue;
            }
            return Ok(answer);
        }
    }

    async fn post_form_once(
        &self,
        endpoint: &str,
        params: &[(&str, &str)],
        key: Option<&DpopKey>,
    ) -> Result<Answer, Error> {
        let auth_params = self.auth.request_params(self.assertion_audience())?;
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
        if let Some(key) = key {
            let nonce = self.nonces.get(endpoint);
            rb = rb.header(
                DPOP_HEADER,
                key.proof("POST", endpoint, nonce.as_deref(), None)?,
            );
        }
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = read_body(resp).await?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// The `aud` of client assertions: the token endpoint URL (RFC 7523
    /// section 3 item 3), for revocation and introspection too, since the
    /// server accepts it everywhere; the issuer when no token endpoint is
    /// known.
    fn assertion_audience(&self) -> &str {
        self.metadata
            .token_endpoint
            .as_deref()
            .unwrap_or(&self.metadata.issuer)
    }
}

pub(crate) fn oauth_or_unexpected(status: u16, body: &[u8]) -> Error {
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
