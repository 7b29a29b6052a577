//! The authorization code grant (OAuth 2.1 section 4.1) for native and
//! command-line clients, with the Deferred Token Response at either end.
//!
//! Steps, each usable on its own:
//! 1. [`Client::authorization_request`] builds the request for a redirect
//!    URI: PKCE S256 (RFC 7636 section 4.2), a fresh `state`, the
//!    `completion_mode` hint (DTR-4), `dpop_jkt` when the client has a
//!    DPoP key (RFC 9449 section 10: the code, or the deferral code, is
//!    bound to that key from the start), `response_mode=form_post` when
//!    asked; with `pushed`, the parameters go to the pushed authorization
//!    request endpoint (RFC 9126) and the browser only carries the
//!    `request_uri` ([`Client::pushed_authorization_request`]).
//! 2. The user's browser goes there; the response comes back to the
//!    redirect URI ([`crate::redirect`]).
//! 3. [`Client::redeem_authorization_response`] continues: a `code` is
//!    redeemed at the token endpoint (which may answer with tokens or defer,
//!    DTR-8); a `deferral_code` (the server deferred at the authorization
//!    endpoint) becomes a [`Deferral`] whose first poll, and only that one,
//!    carries the `code_verifier` and `redirect_uri`
//!    ([`DeferredAuthorization::poller`]).
//!
//! [`Client::authorize`] runs all three with a [`LoopbackReceiver`] (RFC
//! 8252 section 7.3) and a browser opener the caller supplies
//! ([`system_browser`] opens the system browser).

use crate::client::oauth_or_unexpected;
use crate::client::Client;
use crate::clock::{now_unix_ms, Clock};
pub use crate::completion_mode::CompletionMode;
use crate::deferral::{Deferral, TokenResult};
use crate::error::Error;
use crate::http::unexpected;
use crate::poller::{FirstPollParams, PollTransport, Poller};
use crate::redirect::{AuthorizationResponse, Expected, LoopbackReceiver};
use dtr_proto::secret::{random_token, sha256_b64, CodeVerifier, NotificationToken};
use dtr_proto::token::{DeferredResponse, TokenResponse};
use dtr_proto::{ErrorCode, OAuthError, GRANT_TYPE_AUTHORIZATION_CODE};
use std::fmt;
use std::time::Duration;
use url::Url;

/// Metadata member of the authorization endpoint (RFC 8414 section 2).
const AUTHORIZATION_ENDPOINT: &str = "authorization_endpoint";
/// Metadata member of the pushed authorization request endpoint (RFC 9126
/// section 5).
const PAR_ENDPOINT: &str = "pushed_authorization_request_endpoint";
/// Metadata member announcing `iss` in authorization responses (RFC 9207
/// section 3).
const ISS_PARAMETER_SUPPORTED: &str = "authorization_response_iss_parameter_supported";
/// Random bytes of a PKCE verifier: 32 give the 43 characters of RFC 7636
/// section 4.1's lower bound with 256 bits of entropy.
const VERIFIER_BYTES: usize = 32;
/// Random bytes of `state`: 128 bits.
const STATE_BYTES: usize = 16;

/// How the authorization response is delivered to the redirect URI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponseMode {
    /// In the query of a redirect (OAuth 2.1 section 4.1.2, the default).
    #[default]
    Query,
    /// As a form POST (OAuth 2.0 Form Post Response Mode): the code stays
    /// out of URLs, browser history and `Referer` headers.
    FormPost,
}

/// An authorization code request.
#[derive(Clone, Debug)]
pub struct AuthorizationCodeRequest {
    /// Requested scope; `None` lets the server use the registered scope.
    pub scope: Option<String>,
    /// The `completion_mode`, sent as the hint on the authorization request
    /// (DTR-4) and again on the token request (DTR-5).
    pub completion_mode: CompletionMode,
    /// RFC 9396 `authorization_details` (a JSON array).
    pub authorization_details: Option<serde_json::Value>,
    /// How the response comes back.
    pub response_mode: ResponseMode,
    /// Push the request to the pushed authorization request endpoint (RFC
    /// 9126): the parameters travel authenticated in the back channel, and
    /// the browser only sees `client_id` and `request_uri`.
    pub pushed: bool,
    /// `client_notification_token` for callbacks (DTR-12); only in a pushed
    /// request, never in a browser URL where anyone on the way could read
    /// it.
    pub notification_token: Option<NotificationToken>,
    /// How long [`Client::authorize`] waits for the user.
    pub timeout: Duration,
}

impl Default for AuthorizationCodeRequest {
    fn default() -> Self {
        Self {
            scope: None,
            completion_mode: CompletionMode::Synchronous,
            authorization_details: None,
            response_mode: ResponseMode::Query,
            pushed: false,
            notification_token: None,
            timeout: Duration::from_secs(300),
        }
    }
}

/// An authorization request on its way: the URL to open and what checking
/// the response and redeeming it need. `Debug` hides the verifier and the
/// state.
#[derive(Clone)]
pub struct PendingAuthorization {
    url: Url,
    redirect_uri: String,
    state: String,
    verifier: CodeVerifier,
    issuer: String,
    client_id: String,
    iss_required: bool,
    completion_mode: CompletionMode,
    dpop_jkt: Option<String>,
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("redirect_uri", &self.redirect_uri)
            .field("issuer", &self.issuer)
            .field("completion_mode", &self.completion_mode)
            .field("dpop_jkt", &self.dpop_jkt)
            .finish_non_exhaustive()
    }
}

impl PendingAuthorization {
    /// The URL to open in the user's browser. It carries the `state`, so
    /// show it only to the user it is for.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The redirect URI of the request.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The thumbprint of the DPoP key the request binds to (`dpop_jkt`).
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.dpop_jkt.as_deref()
    }

    /// What the response must match ([`crate::redirect::parse_response`]).
    pub fn expected(&self) -> Expected {
        Expected {
            state: self.state.clone(),
            issuer: self.issuer.clone(),
            iss_required: self.iss_required,
            deferral_allowed: self.completion_mode.is_deferred(),
        }
    }
}

/// Where the server deferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeferredAt {
    /// The redirect carried a `code`; the token request was deferred
    /// (DTR-8).
    TokenEndpoint,
    /// The redirect carried a `deferral_code` instead of a code: the
    /// server deferred at the authorization endpoint.
    AuthorizationEndpoint,
}

/// A deferred authorization code grant, ready to be polled.
#[derive(Clone, Debug)]
pub struct DeferredAuthorization {
    /// The deferral (bound to the DPoP key of the request, if any).
    pub deferral: Deferral,
    /// Where it was deferred.
    pub at: DeferredAt,
    first_poll: FirstPollParams,
}

impl DeferredAuthorization {
    /// What the first poll must carry besides the code: after a deferral
    /// at the authorization endpoint the `code_verifier` and `redirect_uri`
    /// (the server verifies PKCE there, RFC 7636 section 4.6); nothing
    /// after a deferral at the token endpoint, which already had them.
    pub fn first_poll_params(&self) -> &FirstPollParams {
        &self.first_poll
    }

    /// A poller for this deferral that sends [`Self::first_poll_params`]
    /// on its first poll and never again.
    pub fn poller<T: PollTransport, C: Clock>(&self, transport: T, clock: C) -> Poller<T, C> {
        Poller::new(transport, clock, &self.deferral)
            .with_first_poll_params(self.first_poll.clone())
    }
}

/// How an authorization code grant ended, or that it continues deferred.
#[derive(Clone, Debug)]
pub enum AuthorizationOutcome {
    /// The token endpoint issued tokens at once.
    Token(TokenResponse),
    /// The grant was deferred; poll it.
    Deferred(DeferredAuthorization),
    /// The token endpoint refused the code.
    Failed(OAuthError),
}

/// Opens `url` in the system browser (`xdg-open`, or `open` on macOS);
/// when that fails, prints the URL on stderr for the user to open.
/// Returns whether the browser was started.
pub fn system_browser(url: &Url) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let opened = std::process::Command::new(opener)
        .arg(url.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !opened {
        print_url(url);
    }
    opened
}

/// Prints `url` on stderr for the user to open.
pub fn print_url(url: &Url) {
    eprintln!("Open this URL in a browser to sign in and consent:\n\n  {url}\n");
}

impl Client {
    /// The authorization endpoint from the metadata (RFC 8414 section 2).
    pub fn authorization_endpoint(&self) -> Option<&str> {
        self.metadata()
            .other
            .get(AUTHORIZATION_ENDPOINT)
            .and_then(|v| v.as_str())
    }

    /// Builds an authorization request for `redirect_uri` (step 1 of the
    /// module header), all of it in the URL.
    pub fn authorization_request(
        &self,
        req: &AuthorizationCodeRequest,
        redirect_uri: &str,
    ) -> Result<PendingAuthorization, Error> {
        if req.notification_token.is_some() {
            return Err(Error::InvalidParameter(
                "client_notification_token goes only in a pushed request, never in a browser URL"
                    .into(),
            ));
        }
        let (params, mut pending) = self.prepare(req, redirect_uri)?;
        pending
            .url
            .query_pairs_mut()
            .append_pair("client_id", self.auth().client_id())
            .extend_pairs(&params);
        Ok(pending)
    }

    /// Builds an authorization request for `redirect_uri` and pushes it
    /// (RFC 9126 section 2) with the client's authentication; the URL then
    /// carries only `client_id` and the `request_uri` (section 4). An OAuth
    /// error of the endpoint is [`Error::OAuth`].
    pub async fn pushed_authorization_request(
        &self,
        req: &AuthorizationCodeRequest,
        redirect_uri: &str,
    ) -> Result<PendingAuthorization, Error> {
        let endpoint = self
            .metadata()
            .other
            .get(PAR_ENDPOINT)
            .and_then(|v| v.as_str())
            .ok_or(Error::MissingEndpoint(PAR_ENDPOINT))?
            .to_owned();
        let (mut params, mut pending) = self.prepare(req, redirect_uri)?;
        if let Some(t) = &req.notification_token {
            params.push(("client_notification_token".into(), t.secret().to_owned()));
        }
        // The client authentication adds `client_id` where its method has
        // one in the body; the server takes it from the authentication
        // otherwise (RFC 9126 section 2.1).
        let form: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let answer = self.post_form(&endpoint, &form, false).await?;
        if answer.status != 201 && answer.status != 200 {
            return Err(oauth_or_unexpected(answer.status, &answer.body));
        }
        let request_uri = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("request_uri")?.as_str().map(str::to_owned))
            .ok_or_else(|| unexpected(answer.status, &answer.body))?;
        pending
            .url
            .query_pairs_mut()
            .append_pair("client_id", self.auth().client_id())
            .append_pair("request_uri", &request_uri);
        Ok(pending)
    }

    /// The request's parameters (all but `client_id`) and the pending
    /// authorization with the bare endpoint URL.
    fn prepare(
        &self,
        req: &AuthorizationCodeRequest,
        redirect_uri: &str,
    ) -> Result<(Vec<(String, String)>, PendingAuthorization), Error> {
        let endpoint = self
            .authorization_endpoint()
            .ok_or(Error::MissingEndpoint(AUTHORIZATION_ENDPOINT))?;
        let url = Url::parse(endpoint).map_err(|e| Error::InvalidUrl {
            url: endpoint.to_owned(),
            reason: e.to_string(),
        })?;
        let verifier = CodeVerifier::new(random_token(VERIFIER_BYTES));
        let state = random_token(STATE_BYTES);
        let details = req
            .authorization_details
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| Error::InvalidParameter(format!("authorization_details: {e}")))?;
        let dpop_jkt = self.dpop_key().map(|k| k.thumbprint().to_owned());
        let mut params: Vec<(String, String)> = vec![
            ("response_type".into(), "code".into()),
            ("redirect_uri".into(), redirect_uri.to_owned()),
            ("state".into(), state.clone()),
            // RFC 7636 section 4.2: S256, never plain.
            ("code_challenge".into(), sha256_b64(verifier.secret())),
            ("code_challenge_method".into(), "S256".into()),
        ];
        if let Some(scope) = &req.scope {
            params.push(("scope".into(), scope.clone()));
        }
        if let Some(d) = details {
            params.push(("authorization_details".into(), d));
        }
        if let Some(mode) = req.completion_mode.param() {
            params.push(("completion_mode".into(), mode.into()));
        }
        if req.response_mode == ResponseMode::FormPost {
            params.push(("response_mode".into(), "form_post".into()));
        }
        if let Some(jkt) = &dpop_jkt {
            // RFC 9449 section 10: the code is bound to this key.
            params.push(("dpop_jkt".into(), jkt.clone()));
        }
        let iss_required = self
            .metadata()
            .other
            .get(ISS_PARAMETER_SUPPORTED)
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let pending = PendingAuthorization {
            url,
            redirect_uri: redirect_uri.to_owned(),
            state,
            verifier,
            issuer: self.metadata().issuer.clone(),
            client_id: self.auth().client_id().to_owned(),
            iss_required,
            completion_mode: req.completion_mode,
            dpop_jkt,
        };
        Ok((params, pending))
    }

    /// Continues with a checked response (step 3 of the module header): a
    /// code is redeemed, a deferral code becomes a [`DeferredAuthorization`]
    /// whose first poll carries the verifier.
    pub async fn redeem_authorization_response(
        &self,
        pending: &PendingAuthorization,
        response: AuthorizationResponse,
    ) -> Result<AuthorizationOutcome, Error> {
        // A response bound to a key is used only with that key (DTR-13).
        self.check_binding(pending.dpop_jkt.as_deref())?;
        match response {
            AuthorizationResponse::Code(code) => {
                let mut params = vec![
                    ("grant_type", GRANT_TYPE_AUTHORIZATION_CODE),
                    ("code", code.secret()),
                    ("code_verifier", pending.verifier.secret()),
                    ("redirect_uri", pending.redirect_uri.as_str()),
                ];
                // DTR-5: the token request repeats the hint.
                if let Some(mode) = pending.completion_mode.param() {
                    params.push(("completion_mode", mode));
                }
                Ok(match self.token_request(&params).await? {
                    TokenResult::Token(t) => AuthorizationOutcome::Token(t),
                    TokenResult::Error(e) => AuthorizationOutcome::Failed(e),
                    TokenResult::Deferred(deferral) => {
                        AuthorizationOutcome::Deferred(DeferredAuthorization {
                            deferral,
                            at: DeferredAt::TokenEndpoint,
                            first_poll: FirstPollParams::new(),
                        })
                    }
                })
            }
            AuthorizationResponse::Deferred {
                deferral_code,
                expires_in,
                interval,
            } => {
                let deferral = Deferral::from_response(
                    DeferredResponse {
                        error: ErrorCode::AuthorizationPending,
                        deferral_code: deferral_code.secret().to_owned(),
                        expires_in,
                        interval,
                        interaction_uri: None,
                        error_description: None,
                    },
                    now_unix_ms(),
                    pending.issuer.clone(),
                    pending.client_id.clone(),
                )
                .bound_to(pending.dpop_jkt.clone());
                // RFC 7636 section 4.5 and OAuth 2.1 section 4.1.3: what
                // the token request of the code would have carried.
                let first_poll = FirstPollParams::new()
                    .with("code_verifier", pending.verifier.secret())
                    .with("redirect_uri", pending.redirect_uri.clone());
                Ok(AuthorizationOutcome::Deferred(DeferredAuthorization {
                    deferral,
                    at: DeferredAt::AuthorizationEndpoint,
                    first_poll,
                }))
            }
        }
    }

    /// Runs the authorization code grant with a loopback redirect receiver
    /// (RFC 8252 section 7.3): binds `127.0.0.1` on a free port, calls
    /// `open` with the authorization URL (a closure around
    /// [`system_browser`] or [`print_url`], or one that drives a browser of
    /// your own), waits up to `req.timeout` for the response, checks it and
    /// continues ([`Client::redeem_authorization_response`]).
    /// `on_response` is told which kind of response came back, before the
    /// token request.
    pub async fn authorize(
        &self,
        req: &AuthorizationCodeRequest,
        open: impl FnOnce(&Url),
        on_response: impl FnOnce(&AuthorizationResponse),
    ) -> Result<AuthorizationOutcome, Error> {
        let receiver = LoopbackReceiver::bind().await?;
        let pending = if req.pushed {
            self.pushed_authorization_request(req, receiver.redirect_uri())
                .await?
        } else {
            self.authorization_request(req, receiver.redirect_uri())?
        };
        open(pending.url());
        let response = receiver.receive(pending.expected(), req.timeout).await?;
        on_response(&response);
        self.redeem_authorization_response(&pending, response).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::auth::ClientAuth;
    use crate::dpop::DpopKey;
    use dtr_proto::metadata::AuthorizationServerMetadata;
    use std::collections::HashMap;

    fn client() -> Client {
        let mut md = AuthorizationServerMetadata {
            issuer: "https://as.example".into(),
            token_endpoint: Some("https://as.example/token".into()),
            ..Default::default()
        };
        md.other.insert(
            AUTHORIZATION_ENDPOINT.into(),
            "https://as.example/authorize".into(),
        );
        md.other.insert(ISS_PARAMETER_SUPPORTED.into(), true.into());
        Client::from_metadata(
            md,
            ClientAuth::None {
                client_id: "cli".into(),
            },
        )
    }

    fn query(p: &PendingAuthorization) -> HashMap<String, String> {
        p.url()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    const REDIRECT: &str = "http://127.0.0.1:4711/callback";

    #[test]
    fn request_carries_pkce_state_and_hint() {
        let c = client();
        let req = AuthorizationCodeRequest {
            scope: Some("read payments".into()),
            completion_mode: CompletionMode::Deferred,
            ..Default::default()
        };
        let p = c.authorization_request(&req, REDIRECT).unwrap();
        assert!(p
            .url()
            .as_str()
            .starts_with("https://as.example/authorize?"));
        let q = query(&p);
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "cli");
        assert_eq!(q["redirect_uri"], REDIRECT);
        assert_eq!(q["scope"], "read payments");
        assert_eq!(q["completion_mode"], "deferred");
        assert_eq!(q["code_challenge_method"], "S256");
        // RFC 7636 section 4.2: BASE64URL(SHA256(verifier)).
        assert_eq!(q["code_challenge"], sha256_b64(p.verifier.secret()));
        assert_eq!(p.verifier.secret().len(), 43);
        assert!(q["state"].len() >= 22);
        assert!(!q.contains_key("dpop_jkt") && !q.contains_key("response_mode"));
        let e = p.expected();
        assert_eq!(e.state, q["state"]);
        assert!(e.iss_required && e.deferral_allowed);
        // Fresh values every time.
        let again = c.authorization_request(&req, REDIRECT).unwrap();
        assert_ne!(query(&again)["state"], q["state"]);
        assert_ne!(again.verifier, p.verifier);
        // The verifier never shows in Debug.
        assert!(!format!("{p:?}").contains(p.verifier.secret()));
    }

    #[test]
    fn interactive_form_post_and_dpop_jkt() {
        let key = DpopKey::generate();
        let c = client().with_dpop(key.clone());
        let req = AuthorizationCodeRequest {
            completion_mode: CompletionMode::DeferredInteractive,
            response_mode: ResponseMode::FormPost,
            ..Default::default()
        };
        let p = c.authorization_request(&req, REDIRECT).unwrap();
        let q = query(&p);
        assert_eq!(q["completion_mode"], "deferred deferred_interactive");
        assert_eq!(q["response_mode"], "form_post");
        // RFC 9449 section 10.
        assert_eq!(q["dpop_jkt"], key.thumbprint());
        assert_eq!(p.dpop_jkt(), Some(key.thumbprint()));
        assert!(!q.contains_key("scope"));
        // Synchronous: no hint, and no deferral accepted back (DTR-4).
        let sync = c
            .authorization_request(&AuthorizationCodeRequest::default(), REDIRECT)
            .unwrap();
        assert!(!query(&sync).contains_key("completion_mode"));
        assert!(!sync.expected().deferral_allowed);
        // DTR-12: a notification token never goes into a browser URL.
        let with_token = AuthorizationCodeRequest {
            notification_token: Some(NotificationToken::generate()),
            ..Default::default()
        };
        assert!(matches!(
            c.authorization_request(&with_token, REDIRECT),
            Err(Error::InvalidParameter(_))
        ));
    }

    #[test]
    fn no_authorization_endpoint_is_reported() {
        let c = Client::from_metadata(
            AuthorizationServerMetadata::default(),
            ClientAuth::None {
                client_id: "cli".into(),
            },
        );
        assert!(matches!(
            c.authorization_request(&AuthorizationCodeRequest::default(), REDIRECT),
            Err(Error::MissingEndpoint(AUTHORIZATION_ENDPOINT))
        ));
    }

    #[tokio::test]
    async fn deferral_at_the_authorization_endpoint_polls_with_the_verifier_once() {
        let key = DpopKey::generate();
        let c = client().with_dpop(key.clone());
        let req = AuthorizationCodeRequest {
            completion_mode: CompletionMode::Deferred,
            ..Default::default()
        };
        let p = c.authorization_request(&req, REDIRECT).unwrap();
        let outcome = c
            .redeem_authorization_response(
                &p,
                AuthorizationResponse::Deferred {
                    deferral_code: dtr_proto::secret::DeferralCode::new("DC"),
                    expires_in: 300,
                    interval: 4,
                },
            )
            .await
            .unwrap();
        let AuthorizationOutcome::Deferred(d) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(d.at, DeferredAt::AuthorizationEndpoint);
        assert_eq!(d.deferral.code.secret(), "DC");
        assert_eq!((d.deferral.expires_in, d.deferral.interval), (300, 4));
        assert_eq!(d.deferral.issuer, "https://as.example");
        assert_eq!(d.deferral.client_id, "cli");
        // DTR-13: bound to the key of dpop_jkt.
        assert_eq!(d.deferral.dpop_jkt.as_deref(), Some(key.thumbprint()));
        let pairs = d.first_poll_params().pairs();
        assert_eq!(
            pairs,
            [
                ("code_verifier", p.verifier.secret()),
                ("redirect_uri", REDIRECT)
            ]
        );
        assert!(!format!("{d:?}").contains(p.verifier.secret()));
    }

    #[tokio::test]
    async fn a_bound_response_is_not_redeemed_with_another_key() {
        let p = client()
            .with_dpop(DpopKey::generate())
            .authorization_request(&AuthorizationCodeRequest::default(), REDIRECT)
            .unwrap();
        let other = client().with_dpop(DpopKey::generate());
        let r = other
            .redeem_authorization_response(
                &p,
                AuthorizationResponse::Code(dtr_proto::secret::AuthorizationCode::new("C")),
            )
            .await;
        assert!(matches!(r, Err(Error::DpopKeyMismatch { .. })), "{r:?}");
    }
}
