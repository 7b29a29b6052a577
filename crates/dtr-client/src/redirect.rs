//! The authorization response at the client's redirect URI: its checks as
//! a pure function ([`parse_response`]) and a loopback receiver
//! ([`LoopbackReceiver`]) for native and command-line clients.
//!
//! The response carries either `code` (OAuth 2.1 section 4.1.2) or, when
//! the client opted in and the server deferred at the authorization
//! endpoint, `deferral_code`, `expires_in` and `interval` instead; always
//! `state` and `iss`. An error carries `error` and `error_description`.
//! What is checked, and why:
//! - `state` must be the value the request carried, compared in constant
//!   time (OAuth 2.1 section 7.12: CSRF). A response with another `state`
//!   is not ours: the receiver answers it and goes on waiting, so a stray
//!   or forged request cannot end the login.
//! - `iss` must be the issuer the request went to (RFC 9207 section 2.4),
//!   by simple string comparison; without it, the response is refused when
//!   the server announces `authorization_response_iss_parameter_supported`.
//!   A mismatch ends the flow: the response is a mix-up attack or a
//!   misconfiguration, and its code must never reach our token endpoint.
//! - No parameter may appear twice (OAuth 2.1 section 3.1).
//! - A `deferral_code` is accepted only when the request opted in to
//!   deferral (DTR-4): a server must not change the response's shape for a
//!   client that did not ask.
//!
//! The receiver (RFC 8252 section 7.3) listens on `127.0.0.1` port 0 (an
//! IP literal, not `localhost`, which could resolve off the machine, RFC
//! 8252 section 8.3) at [`REDIRECT_PATH`], accepts the response as a GET
//! query or as an `application/x-www-form-urlencoded` POST (OAuth 2.0 Form
//! Post Response Mode), takes exactly one valid response, shows the
//! browser a short page, and gives up after a timeout.

use crate::error::Error;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dtr_proto::secret::{ct_eq, AuthorizationCode, DeferralCode};
use dtr_proto::{ErrorCode, OAuthError};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The path of the loopback redirect URI.
pub const REDIRECT_PATH: &str = "/callback";

/// Largest form_post body accepted: the response is a handful of short
/// parameters.
pub const MAX_RESPONSE_BODY: usize = 16 * 1024;

/// The default `interval` of a deferral whose redirect omits it: the 5 s
/// of RFC 8628 section 3.2, as at the token endpoint.
const DEFAULT_INTERVAL: u64 = 5;

/// How long the receiver keeps serving after the response, so that the
/// browser gets its page.
const DRAIN: Duration = Duration::from_secs(2);

/// A valid authorization response.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthorizationResponse {
    /// An authorization code, to be redeemed at the token endpoint.
    Code(AuthorizationCode),
    /// The server deferred at the authorization endpoint: poll the token
    /// endpoint with this code (the first poll carries the PKCE verifier).
    Deferred {
        /// The deferral code (DTR-9).
        deferral_code: DeferralCode,
        /// Its lifetime in seconds.
        expires_in: u64,
        /// Seconds between polls.
        interval: u64,
    },
}

impl fmt::Debug for AuthorizationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(_) => f.write_str("Code([redacted])"),
            Self::Deferred {
                expires_in,
                interval,
                ..
            } => f
                .debug_struct("Deferred")
                .field("deferral_code", &"[redacted]")
                .field("expires_in", expires_in)
                .field("interval", interval)
                .finish(),
        }
    }
}

impl AuthorizationResponse {
    /// `code` or `deferral_code`: which kind of response this is.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Code(_) => "code",
            Self::Deferred { .. } => "deferral_code",
        }
    }
}

/// What a response must match.
#[derive(Clone)]
pub struct Expected {
    /// The `state` of the request.
    pub state: String,
    /// The issuer the request went to (RFC 9207).
    pub issuer: String,
    /// Refuse a response without `iss` (the server announces
    /// `authorization_response_iss_parameter_supported`).
    pub iss_required: bool,
    /// The request opted in to deferral (`completion_mode`), so a
    /// `deferral_code` may come back instead of a code.
    pub deferral_allowed: bool,
}

impl fmt::Debug for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expected")
            .field("state", &"[redacted]")
            .field("issuer", &self.issuer)
            .field("iss_required", &self.iss_required)
            .field("deferral_allowed", &self.deferral_allowed)
            .finish()
    }
}

/// Why a response at the redirect URI is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// `state` is missing or is not the request's (OAuth 2.1 section
    /// 7.12). The receiver ignores such a response and keeps waiting.
    #[error("the state does not match the request's (not this client's response)")]
    StateMismatch,
    /// `iss` is not the issuer the request went to (RFC 9207 section 2.4).
    #[error("iss '{0}' is not the issuer the request went to (RFC 9207)")]
    IssuerMismatch(String),
    /// No `iss`, though the server announces it (RFC 9207 section 2.4).
    #[error("the response has no iss, though the server announces it (RFC 9207)")]
    IssuerMissing,
    /// The server answered with an error (OAuth 2.1 section 4.1.2.1).
    #[error("the authorization server answered {0}")]
    Denied(OAuthError),
    /// Neither a code nor a usable deferral, a repeated parameter, or a
    /// deferral the request did not opt in to.
    #[error("{0}")]
    Malformed(String),
}

/// Checks the parameters of a response (query or form) against the
/// request; see the module header for the rules and their order.
pub fn parse_response(
    pairs: &[(String, String)],
    expected: &Expected,
) -> Result<AuthorizationResponse, ResponseError> {
    // Nothing else is looked at before the state matches: a request that
    // is not our response (another tab, a page probing local ports) must
    // not end or influence this flow, so even its malformations are only
    // "not ours".
    let mut states = pairs.iter().filter(|(k, _)| k == "state");
    match (states.next(), states.next()) {
        (Some((_, s)), None) if ct_eq(s.as_bytes(), expected.state.as_bytes()) => {}
        _ => return Err(ResponseError::StateMismatch),
    }
    for (i, (k, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(seen, _)| seen == k) {
            return Err(ResponseError::Malformed(format!(
                "the parameter '{k}' appears more than once (OAuth 2.1 section 3.1)"
            )));
        }
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match get("iss") {
        // RFC 9207 section 2.4: simple string comparison.
        Some(iss) if iss == expected.issuer => {}
        Some(iss) => return Err(ResponseError::IssuerMismatch(iss.to_owned())),
        None if expected.iss_required => return Err(ResponseError::IssuerMissing),
        None => {}
    }
    if let Some(error) = get("error") {
        return Err(ResponseError::Denied(OAuthError {
            error: ErrorCode::parse(error),
            error_description: get("error_description").map(str::to_owned),
            interaction_uri: None,
            retry_after: None,
        }));
    }
    match (get("code"), get("deferral_code")) {
        (Some(_), Some(_)) => Err(ResponseError::Malformed(
            "the response carries both code and deferral_code".into(),
        )),
        (Some(code), None) if !code.is_empty() => {
            Ok(AuthorizationResponse::Code(AuthorizationCode::new(code)))
        }
        (None, Some(dc)) if !dc.is_empty() => {
            if !expected.deferral_allowed {
                // DTR-4: without the opt-in the response keeps its shape.
                return Err(ResponseError::Malformed(
                    "a deferral_code came back, but the request did not opt in to deferral".into(),
                ));
            }
            let number = |name: &str| get(name).map(|v| v.parse::<u64>());
            let expires_in = match number("expires_in") {
                Some(Ok(n)) if n > 0 => n,
                _ => {
                    // A deferral we cannot time is worse than an error.
                    return Err(ResponseError::Malformed(
                        "the deferral_code comes without a valid expires_in".into(),
                    ));
                }
            };
            let interval = match number("interval") {
                None => DEFAULT_INTERVAL,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    return Err(ResponseError::Malformed(
                        "the interval is not a number of seconds".into(),
                    ))
                }
            };
            Ok(AuthorizationResponse::Deferred {
                deferral_code: DeferralCode::new(dc),
                expires_in,
                interval,
            })
        }
        _ => Err(ResponseError::Malformed(
            "the response carries neither a code nor a deferral_code".into(),
        )),
    }
}

/// A listener on a loopback port waiting for one authorization response.
#[derive(Debug)]
pub struct LoopbackReceiver {
    listener: TcpListener,
    redirect_uri: String,
}

/// What the handler shares with [`LoopbackReceiver::receive`].
struct Shared {
    expected: Expected,
    done: Mutex<Option<oneshot::Sender<Result<AuthorizationResponse, ResponseError>>>>,
}

impl LoopbackReceiver {
    /// Listens on `127.0.0.1` on a port the system picks (RFC 8252 section
    /// 7.3).
    pub async fn bind() -> Result<LoopbackReceiver, Error> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::Receiver(format!("cannot listen on 127.0.0.1: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::Receiver(e.to_string()))?
            .port();
        Ok(LoopbackReceiver {
            listener,
            redirect_uri: format!("http://127.0.0.1:{port}{REDIRECT_PATH}"),
        })
    }

    /// The redirect URI to send in the authorization request,
    /// `http://127.0.0.1:{port}/callback`; the client registers
    /// `http://127.0.0.1/callback` and the server allows any port (RFC 8252
    /// section 7.3).
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits up to `timeout` for the first response whose `state` matches
    /// and returns it checked; responses with another `state` are answered
    /// and ignored. An error response, an `iss` mismatch or a malformed
    /// response ends the wait with [`Error::AuthorizationResponse`].
    pub async fn receive(
        self,
        expected: Expected,
        timeout: Duration,
    ) -> Result<AuthorizationResponse, Error> {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            expected,
            done: Mutex::new(Some(tx)),
        });
        let app = Router::new()
            .route(REDIRECT_PATH, get(handle).post(handle))
            .layer(DefaultBodyLimit::max(MAX_RESPONSE_BODY))
            .with_state(shared);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(self.listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        let outcome = tokio::time::timeout(timeout, rx).await;
        let _ = stop.send(());
        // The browser gets its page while the server drains; a connection
        // it keeps open does not hold the flow.
        let abort = server.abort_handle();
        if tokio::time::timeout(DRAIN, server).await.is_err() {
            abort.abort();
        }
        match outcome {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(e))) => Err(Error::AuthorizationResponse(e)),
            Ok(Err(_)) => Err(Error::Receiver("the receiver stopped".into())),
            Err(_) => Err(Error::Receiver(format!(
                "no authorization response within {} s",
                timeout.as_secs()
            ))),
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::GET && method != Method::POST {
        // axum routes HEAD to GET handlers; a HEAD (a link preview, a
        // prefetch) must not consume the one response.
        return page(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not an authorization response",
            "This address takes the authorization response as a GET or a form post.",
        );
    }
    let raw: &[u8] = if method == Method::POST {
        // Form Post Response Mode: an application/x-www-form-urlencoded body.
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim() == "application/x-www-form-urlencoded");
        if !form {
            return page(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Not an authorization response",
                "This address takes the authorization response as a form post.",
            );
        }
        &body
    } else {
        query.as_deref().unwrap_or("").as_bytes()
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let result = parse_response(&pairs, &shared.expected);
    if result == Err(ResponseError::StateMismatch) {
        return page(
            StatusCode::BAD_REQUEST,
            "Not the expected response",
            "This response does not belong to the sign-in this application is waiting for. Start again from the application if needed.",
        );
    }
    let Some(tx) = shared.done.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return page(
            StatusCode::CONFLICT,
            "Already received",
            "The application already has its authorization response. You can close this window.",
        );
    };
    let answer = match &result {
        Ok(_) => page(
            StatusCode::OK,
            "Signed in",
            "The application has received the authorization response. You can close this window.",
        ),
        Err(ResponseError::Denied(e)) => page(
            StatusCode::OK,
            "Authorization not granted",
            &format!(
                "The authorization server answered: {}. You can close this window.",
                e
            ),
        ),
        Err(e) => page(
            StatusCode::BAD_REQUEST,
            "Authorization response refused",
            &format!("{e}. You can close this window."),
        ),
    };
    let _ = tx.send(result);
    answer
}

/// A small page for the browser. `no-store` and `no-referrer` because the
/// URL of this page holds the code; no script, no external content.
fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1><p>{x}</p></body></html>",
        t = escape(title),
        x = escape(text)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
        ],
        html,
    )
        .into_response()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const ISS: &str = "https://as.example";

    fn expected(deferral_allowed: bool) -> Expected {
        Expected {
            state: "st-123".into(),
            issuer: ISS.into(),
            iss_required: true,
            deferral_allowed,
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn code_with_state_and_iss() {
        let r = parse_response(
            &pairs(&[("code", "C1"), ("state", "st-123"), ("iss", ISS)]),
            &expected(false),
        );
        match r {
            Ok(AuthorizationResponse::Code(c)) => assert_eq!(c.secret(), "C1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deferral_code_with_lifetime_and_interval() {
        let r = parse_response(
            &pairs(&[
                ("deferral_code", "DC"),
                ("expires_in", "600"),
                ("interval", "3"),
                ("state", "st-123"),
                ("iss", ISS),
            ]),
            &expected(true),
        )
        .unwrap();
        assert_eq!(r.kind(), "deferral_code");
        match r {
            AuthorizationResponse::Deferred {
                deferral_code,
                expires_in,
                interval,
            } => {
                assert_eq!(deferral_code.secret(), "DC");
                assert_eq!((expires_in, interval), (600, 3));
            }
            other => panic!("{other:?}"),
        }
        // Without interval: the 5 s default.
        let r = parse_response(
            &pairs(&[
                ("deferral_code", "DC"),
                ("expires_in", "60"),
                ("state", "st-123"),
                ("iss", ISS),
            ]),
            &expected(true),
        );
        assert!(matches!(
            r,
            Ok(AuthorizationResponse::Deferred { interval: 5, .. })
        ));
    }

    #[test]
    fn state_mismatch_missing_or_wrong() {
        for p in [
            pairs(&[("code", "C"), ("iss", ISS)]),
            pairs(&[("code", "C"), ("state", "st-124"), ("iss", ISS)]),
            pairs(&[("code", "C"), ("state", ""), ("iss", ISS)]),
        ] {
            assert_eq!(
                parse_response(&p, &expected(false)),
                Err(ResponseError::StateMismatch)
            );
        }
        // A repeated state, even with the right value, is not ours either.
        let p = pairs(&[
            ("code", "C"),
            ("state", "st-123"),
            ("state", "st-123"),
            ("iss", ISS),
        ]);
        assert_eq!(
            parse_response(&p, &expected(false)),
            Err(ResponseError::StateMismatch)
        );
        // The state is checked before anything else: a foreign error
        // response, or a foreign malformed one, is only "not ours".
        let p = pairs(&[("code", "C"), ("code", "D"), ("state", "x")]);
        assert_eq!(
            parse_response(&p, &expected(false)),
            Err(ResponseError::StateMismatch)
        );
        let p = pairs(&[("error", "access_denied"), ("state", "x"), ("iss", ISS)]);
        assert_eq!(
            parse_response(&p, &expected(false)),
            Err(ResponseError::StateMismatch)
        );
    }

    #[test]
    fn iss_mismatch_and_missing_iss() {
        // RFC 9207 section 2.4: exact comparison, a trailing slash differs.
        for iss in ["https://evil.example", "https://as.example/"] {
            let p = pairs(&[("code", "C"), ("state", "st-123"), ("iss", iss)]);
            assert_eq!(
                parse_response(&p, &expected(false)),
                Err(ResponseError::IssuerMismatch(iss.into()))
            );
        }
        let p = pairs(&[("code", "C"), ("state", "st-123")]);
        assert_eq!(
            parse_response(&p, &expected(false)),
            Err(ResponseError::IssuerMissing)
        );
        // A server that does not announce RFC 9207 may omit it.
        let lax = Expected {
            iss_required: false,
            ..expected(false)
        };
        assert!(matches!(
            parse_response(&p, &lax),
            Ok(AuthorizationResponse::Code(_))
        ));
    }

    #[test]
    fn error_redirect() {
        let p = pairs(&[
            ("error", "access_denied"),
            ("error_description", "the user said no"),
            ("state", "st-123"),
            ("iss", ISS),
        ]);
        match parse_response(&p, &expected(true)) {
            Err(ResponseError::Denied(e)) => {
                assert_eq!(e.error, ErrorCode::AccessDenied);
                assert_eq!(e.error_description.as_deref(), Some("the user said no"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_responses() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("state", "st-123"), ("iss", ISS)], true),
            (&[("code", ""), ("state", "st-123"), ("iss", ISS)], true),
            (
                &[
                    ("code", "C"),
                    ("code", "D"),
                    ("state", "st-123"),
                    ("iss", ISS),
                ],
                true,
            ),
            (
                &[
                    ("code", "C"),
                    ("deferral_code", "D"),
                    ("expires_in", "60"),
                    ("state", "st-123"),
                    ("iss", ISS),
                ],
                true,
            ),
            // No lifetime, a zero lifetime, a bad interval.
            (
                &[("deferral_code", "D"), ("state", "st-123"), ("iss", ISS)],
                true,
            ),
            (
                &[
                    ("deferral_code", "D"),
                    ("expires_in", "0"),
                    ("state", "st-123"),
                    ("iss", ISS),
                ],
                true,
            ),
            (
                &[
                    ("deferral_code", "D"),
                    ("expires_in", "60"),
                    ("interval", "soon"),
                    ("state", "st-123"),
                    ("iss", ISS),
                ],
                true,
            ),
            // DTR-4: a deferral the request did not opt in to.
            (
                &[
                    ("deferral_code", "D"),
                    ("expires_in", "60"),
                    ("state", "st-123"),
                    ("iss", ISS),
                ],
                false,
            ),
        ];
        for (p, allowed) in cases {
            let r = parse_response(&pairs(p), &expected(*allowed));
            assert!(
                matches!(r, Err(ResponseError::Malformed(_))),
                "{p:?}: {r:?}"
            );
        }
    }

    #[test]
    fn debug_redacts_codes_and_state() {
        let r = AuthorizationResponse::Deferred {
            deferral_code: DeferralCode::new("SECRET-DC"),
            expires_in: 1,
            interval: 1,
        };
        assert!(!format!("{r:?}").contains("SECRET-DC"));
        let c = AuthorizationResponse::Code(AuthorizationCode::new("SECRET-C"));
        assert!(!format!("{c:?}").contains("SECRET-C"));
        assert!(!format!("{:?}", expected(true)).contains("st-123"));
    }

    async fn receiver() -> (LoopbackReceiver, String) {
        let r = LoopbackReceiver::bind().await.unwrap();
        let uri = r.redirect_uri().to_owned();
        assert!(uri.starts_with("http://127.0.0.1:") && uri.ends_with(REDIRECT_PATH));
        (r, uri)
    }

    #[tokio::test]
    async fn form_post_deferral_after_a_foreign_response() {
        // The receiver on a real socket: a response with another state is
        // answered 400 and ignored; the form_post with the right state is
        // taken, and the browser is told it may close the window.
        let (r, uri) = receiver().await;
        let wait = tokio::spawn(r.receive(expected(true), Duration::from_secs(10)));
        let http = reqwest::Client::new();
        let head = http
            .head(format!("{uri}?code=X&state=st-123&iss={ISS}"))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status().as_u16(), 405);
        let foreign = http
            .get(format!("{uri}?code=X&state=other&iss={ISS}"))
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status().as_u16(), 400);
        let ok = http
            .post(&uri)
            .form(&[
                ("deferral_code", "DC-1"),
                ("expires_in", "120"),
                ("interval", "2"),
                ("state", "st-123"),
                ("iss", ISS),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status().as_u16(), 200);
        let headers = ok.headers().clone();
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert!(ok
            .text()
            .await
            .unwrap()
            .contains("You can close this window"));
        match wait.await.unwrap().unwrap() {
            AuthorizationResponse::Deferred {
                deferral_code,
                expires_in,
                interval,
            } => {
                assert_eq!(deferral_code.secret(), "DC-1");
                assert_eq!((expires_in, interval), (120, 2));
            }
            other => panic!("{other:?}"),
        }
        // Exactly one response: the listener is gone.
        assert!(http
            .get(format!("{uri}?state=st-123"))
            .send()
            .await
            .is_err());
    }

    #[tokio::test]
    async fn query_error_response_ends_the_wait() {
        let (r, uri) = receiver().await;
        let wait = tokio::spawn(r.receive(expected(false), Duration::from_secs(10)));
        let mut url = url::Url::parse(&uri).unwrap();
        url.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "<b>no</b>")
            .append_pair("state", "st-123")
            .append_pair("iss", ISS);
        let resp = reqwest::get(url).await.unwrap();
        let text = resp.text().await.unwrap();
        // Server text is escaped on the page.
        assert!(
            text.contains("&lt;b&gt;no&lt;/b&gt;") && !text.contains("<b>no"),
            "{text}"
        );
        match wait.await.unwrap() {
            Err(Error::AuthorizationResponse(ResponseError::Denied(e))) => {
                assert_eq!(e.error, ErrorCode::AccessDenied)
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn wrong_issuer_ends_the_wait() {
        let (r, uri) = receiver().await;
        let wait = tokio::spawn(r.receive(expected(false), Duration::from_secs(10)));
        let resp = reqwest::get(format!(
            "{uri}?code=C&state=st-123&iss=https%3A%2F%2Fevil.example"
        ))
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        assert!(matches!(
            wait.await.unwrap(),
            Err(Error::AuthorizationResponse(ResponseError::IssuerMismatch(
                _
            )))
        ));
    }

    #[tokio::test]
    async fn post_must_be_a_form() {
        let (r, uri) = receiver().await;
        let wait = tokio::spawn(r.receive(expected(false), Duration::from_secs(10)));
        let http = reqwest::Client::new();
        let json = http
            .post(&uri)
            .json(&serde_json::json!({"code": "C", "state": "st-123", "iss": ISS}))
            .send()
            .await
            .unwrap();
        assert_eq!(json.status().as_u16(), 415);
        let ok = http
            .post(&uri)
            .form(&[("code", "C"), ("state", "st-123"), ("iss", ISS)])
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status().as_u16(), 200);
        assert!(matches!(
            wait.await.unwrap(),
            Ok(AuthorizationResponse::Code(_))
        ));
    }

    #[tokio::test]
    async fn gives_up_after_the_timeout() {
        let (r, _) = receiver().await;
        let r = r.receive(expected(false), Duration::from_millis(50)).await;
        assert!(matches!(r, Err(Error::Receiver(_))), "{r:?}");
    }
}
