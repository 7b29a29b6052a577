//! Receiving callback notifications (DTR-25..30): an axum router that
//! accepts the authorization server's `POST {"deferral_code": "..."}` and
//! wakes the [`crate::Poller`] of that deferral.
//!
//! What it checks, and why:
//! - The bearer token must be the `client_notification_token` the client
//!   sent on the initial request of that very deferral (DTR-12, DTR-26: the
//!   client MUST validate it). The comparison is constant-time
//!   ([`dtr_proto::secret::ct_eq`]) so that a forger learns nothing from
//!   response times. A missing, malformed or wrong bearer, and a code the
//!   receiver does not know, all answer the same 401: a caller without the
//!   token cannot probe which codes are registered.
//! - The body must be a JSON object with a string `deferral_code`; other
//!   members are ignored (forward compatibility), anything else is 400.
//! - A valid callback is never taken as the result (DTR-30): it carries no
//!   token and says only "poll now". The receiver calls `notify_one()` on
//!   the deferral's [`Notify`], which a poller created with
//!   [`crate::Poller::with_waker`] turns into a poll as soon as the interval
//!   allows; polling stays the authoritative path.
//!
//! Registrations are kept by the SHA-256 of the code, so the map never
//! holds a deferral code in clear and a lookup does not compare code values
//! byte by byte.

use crate::deferral::Deferral;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use dtr_proto::secret::{ct_eq, sha256_b64, DeferralCode, NotificationToken};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The path [`CallbackReceiver::router`] answers on; register
/// `http(s)://HOST:PORT/callback` as the client's
/// `deferred_client_notification_endpoint`.
pub const CALLBACK_PATH: &str = "/callback";

/// Largest callback body accepted. The server sends one short member; a
/// bigger body is not a callback (answered 413 by axum).
pub const MAX_CALLBACK_BODY: usize = 8 * 1024;

/// What is known about one registered deferral.
struct Entry {
    token: NotificationToken,
    wake: Arc<Notify>,
    /// A CIBA push received for it (the first; a retry's copy is the same
    /// response and is not kept twice).
    pushed: Option<serde_json::Value>,
}

/// Receives callback notifications for any number of deferrals. Clones
/// share the registrations, so one clone can serve the router while
/// another registers new deferrals. `Debug` shows only how many are
/// registered.
#[derive(Clone, Default)]
pub struct CallbackReceiver {
    /// Keyed by the SHA-256 of the deferral code.
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl fmt::Debug for CallbackReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackReceiver")
            .field("registered", &self.len())
            .finish_non_exhaustive()
    }
}

/// Why a callback was refused; the HTTP answer of each is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// 401: no valid bearer for a registered deferral.
    Unauthorized,
    /// 400: the body is not a callback.
    Malformed,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            // RFC 6750 section 3: a 401 carries a Bearer challenge.
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
            )
                .into_response(),
            Self::Malformed => StatusCode::BAD_REQUEST.into_response(),
        }
    }
}

impl CallbackReceiver {
    /// A receiver with no registrations.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every change is one insert or remove), so a poisoned lock is
        // still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `deferral`, whose initial request carried `token` as its
    /// `client_notification_token` (DTR-12). Returns the handle a valid
    /// callback notifies; pass it to [`crate::Poller::with_waker`].
    /// Registering the same code again replaces the token and keeps the
    /// handle.
    pub fn register(&self, deferral: &Deferral, token: NotificationToken) -> Arc<Notify> {
        self.register_code(&deferral.code, token)
    }

    /// [`CallbackReceiver::register`] for a bare code.
    pub fn register_code(&self, code: &DeferralCode, token: NotificationToken) -> Arc<Notify> {
        let mut map = self.lock();
        let entry = map.entry(code.hash()).or_insert_with(|| Entry {
            token: token.clone(),
            wake: Arc::new(Notify::new()),
            pushed: None,
        });
        entry.token = token;
        Arc::clone(&entry.wake)
    }

    /// The CIBA push received for `code` (OpenID CIBA Core 1.0 section
    /// 10.3.1: the token response with `auth_req_id`, or an error), taken:
    /// a second call, or a repeated delivery of the same push, gives
    /// nothing more.
    pub fn take_push(&self, code: &DeferralCode) -> Option<serde_json::Value> {
        let mut map = self.lock();
        let entry = map.get_mut(&code.hash())?;
        let p = entry.pushed.take();
        if p.is_some() {
            // Delivered once: later copies are dropped, not kept again.
            entry.pushed = Some(serde_json::Value::Null);
        }
        p.filter(|v| !v.is_null())
    }

    /// Forgets a deferral (after its final result): later callbacks for it
    /// answer 401. Returns whether it was registered.
    pub fn unregister(&self, code: &DeferralCode) -> bool {
        self.lock().remove(&code.hash()).is_some()
    }

    /// Number of registered deferrals.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no deferral is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks one callback and wakes the poller of its deferral.
    fn accept(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
        // A request without a bearer can never succeed; refuse it before
        // looking at the body.
        let presented = bearer(headers).ok_or(Refusal::Unauthorized)?;
        let (code, push) = parse_body(body).ok_or(Refusal::Malformed)?;
        let mut map = self.lock();
        let entry = map
            .get_mut(&sha256_b64(&code))
            .ok_or(Refusal::Unauthorized)?;
        if !ct_eq(presented.as_bytes(), entry.token.secret().as_bytes()) {
            return Err(Refusal::Unauthorized);
        }
        // CIBA Core 1.0 section 10.3: a push is the result itself; kept
        // once, for [`CallbackReceiver::take_push`].
        if let Some(p) = push {
            if entry.pushed.is_none() {
                entry.pushed = Some(p);
            }
        }
        // DTR-30: only "poll now". A permit is stored when the poller is
        // busy polling, so the notification is not lost.
        entry.wake.notify_one();
        Ok(())
    }

    /// The router: `POST` [`CALLBACK_PATH`] answers 204 for a valid
    /// callback, 401 for a missing or wrong bearer (or an unknown code),
    /// 400 for a malformed body. Merge or nest it into an application's
    /// router, or serve it with [`CallbackReceiver::serve`].
    pub fn router(&self) -> Router {
        self.router_at(CALLBACK_PATH)
    }

    /// [`CallbackReceiver::router`] answering on `path` instead.
    pub fn router_at(&self, path: &str) -> Router {
        Router::new()
            .route(path, post(handle))
            .layer(DefaultBodyLimit::max(MAX_CALLBACK_BODY))
            .with_state(self.clone())
    }

    /// Serves [`CallbackReceiver::router`] on a bound listener until
    /// `shutdown` completes.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn handle(
    State(receiver): State<CallbackReceiver>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match receiver.accept(&headers, &body) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r.into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header (RFC 6750
/// section 2.1; the scheme is case-insensitive). Exactly one header.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The `deferral_code` of a callback body (DTR-26); unknown members are
/// ignored. The content type is not checked: the body decides.
/// The handle a notification names (`deferral_code`, DTR-26, or a CIBA
/// ping's or push's `auth_req_id`), and the body when it is a CIBA push
/// (it carries a token response or an error).
fn parse_body(body: &[u8]) -> Option<(String, Option<serde_json::Value>)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let o = v.as_object()?;
    if let Some(code) = o.get("deferral_code").and_then(|c| c.as_str()) {
        return (!code.is_empty()).then(|| (code.to_owned(), None));
    }
    let id = o.get("auth_req_id")?.as_str()?;
    if id.is_empty() {
        return None;
    }
    let push = (o.contains_key("access_token") || o.contains_key("error")).then(|| v.clone());
    Some((id.to_owned(), push))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::clock::ManualClock;
    use crate::deferral::TokenResult;
    use crate::error::Error;
    use crate::poller::{PollOutcome, PollTransport, Poller};
    use axum::body::Body;
    use axum::http::Request;
    use dtr_proto::token::TokenResponse;
    use dtr_proto::{ErrorCode, OAuthError};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;
    use tower::ServiceExt;

    fn deferral(code: &str) -> Deferral {
        Deferral {
            code: DeferralCode::new(code),
            expires_in: 600,
            interval: 5,
            interaction_uri: None,
            description: None,
            received_at_unix_ms: 0,
            issuer: "https://as".into(),
            client_id: "svc".into(),
            error: ErrorCode::AuthorizationPending,
            dpop_jkt: None,
        }
    }

    async fn call(r: &CallbackReceiver, auth: Option<&str>, body: &str) -> StatusCode {
        let mut req = Request::post(CALLBACK_PATH).header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = r
            .router()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        resp.status()
    }

    /// Whether `n` holds a stored permit (a notification nobody awaited).
    async fn notified(n: &Notify) -> bool {
        tokio::time::timeout(Duration::from_millis(20), n.notified())
            .await
            .is_ok()
    }

    const TOKEN: &str = "notification-token-0123456789abcdef";

    #[tokio::test]
    async fn valid_callback_is_204_and_wakes_the_deferral() {
        // DTR-26
        let r = CallbackReceiver::new();
        let wake = r.register(&deferral("CODE-A"), NotificationToken::new(TOKEN));
        let other = r.register(
            &deferral("CODE-B"),
            NotificationToken::new("other-token-0123456789abc"),
        );
        let status = call(
            &r,
            Some(&format!("Bearer {TOKEN}")),
            r#"{"deferral_code":"CODE-A"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(notified(&wake).await);
        assert!(!notified(&other).await, "only the matching deferral wakes");
    }

    #[tokio::test]
    async fn missing_or_wrong_bearer_is_401_and_wakes_nothing() {
        // DTR-26: the client MUST validate the token.
        let r = CallbackReceiver::new();
        let wake = r.register(&deferral("CODE-A"), NotificationToken::new(TOKEN));
        let body = r#"{"deferral_code":"CODE-A"}"#;
        for auth in [
            None,
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic Zm9vOmJhcg=="),
            Some("Bearer notification-token-0123456789abcdeX"),
            Some("Bearer notification-token"),
        ] {
            assert_eq!(
                call(&r, auth, body).await,
                StatusCode::UNAUTHORIZED,
                "{auth:?}"
            );
        }
        // The right token for another (unknown) code proves nothing.
        let status = call(
            &r,
            Some(&format!("Bearer {TOKEN}")),
            r#"{"deferral_code":"CODE-UNKNOWN"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(!notified(&wake).await);
    }

    #[tokio::test]
    async fn malformed_body_is_400() {
        let r = CallbackReceiver::new();
        let wake = r.register(&deferral("CODE-A"), NotificationToken::new(TOKEN));
        let auth = format!("Bearer {TOKEN}");
        for body in [
            "",
            "not json",
            "[]",
            r#"{"deferral_code":42}"#,
            r#"{"deferral_code":""}"#,
            r#"{"code":"CODE-A"}"#,
        ] {
            assert_eq!(
                call(&r, Some(&auth), body).await,
                StatusCode::BAD_REQUEST,
                "{body}"
            );
        }
        assert!(!notified(&wake).await);
    }

    #[tokio::test]
    async fn unknown_members_are_ignored_and_scheme_is_case_insensitive() {
        let r = CallbackReceiver::new();
        let wake = r.register(&deferral("CODE-A"), NotificationToken::new(TOKEN));
        let status = call(
            &r,
            Some(&format!("bearer {TOKEN}")),
            r#"{"deferral_code":"CODE-A","state":"approved","future":{"x":1}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(notified(&wake).await);
    }

    #[tokio::test]
    async fn other_methods_and_paths_are_refused() {
        let r = CallbackReceiver::new();
        let get = r
            .router()
            .oneshot(Request::get(CALLBACK_PATH).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
        let elsewhere = r
            .router()
            .oneshot(Request::post("/other").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn unregistered_deferral_is_refused_and_reregistering_replaces_the_token() {
        let r = CallbackReceiver::new();
        let d = deferral("CODE-A");
        let first = r.register(&d, NotificationToken::new(TOKEN));
        let second = r.register(&d, NotificationToken::new("replacement-token-0123456789"));
        assert!(Arc::ptr_eq(&first, &second));
        let body = r#"{"deferral_code":"CODE-A"}"#;
        assert_eq!(
            call(&r, Some(&format!("Bearer {TOKEN}")), body).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&r, Some("Bearer replacement-token-0123456789"), body).await,
            StatusCode::NO_CONTENT
        );
        assert!(r.unregister(&d.code));
        assert!(r.is_empty());
        assert_eq!(
            call(&r, Some("Bearer replacement-token-0123456789"), body).await,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        // DTR-29, DTR-36
        let r = CallbackReceiver::new();
        r.register(&deferral("CODE-SECRET"), NotificationToken::new(TOKEN));
        let s = format!("{r:?}");
        assert!(!s.contains("CODE-SECRET") && !s.contains(TOKEN), "{s}");
        assert!(s.contains("registered: 1"), "{s}");
    }

    /// Answers `authorization_pending` until `pending` polls were made,
    /// then a token; counts polls.
    struct Countdown {
        pending: u32,
        polls: AtomicU32,
    }

    impl PollTransport for Countdown {
        fn poll_once(
            &self,
            _code: &DeferralCode,
        ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
            let n = self.polls.fetch_add(1, Ordering::SeqCst);
            let answer = if n < self.pending {
                TokenResult::Error(OAuthError::new(ErrorCode::AuthorizationPending))
            } else {
                TokenResult::Token(TokenResponse {
                    access_token: "at".into(),
                    token_type: "Bearer".into(),
                    expires_in: Some(60),
                    refresh_token: None,
                    scope: None,
                    issued_token_type: None,
                    authorization_details: None,
                    id_token: None,
                })
            };
            async move { Ok(answer) }
        }
    }

    #[tokio::test]
    async fn callback_through_the_router_wakes_a_poller() {
        // The receiver and the poller together. The frozen clock never ends
        // a sleep, so without the callback the poller would wait forever:
        // the token can only come from the poll the callback triggered.
        let clock = ManualClock::frozen(60_000);
        let r = CallbackReceiver::new();
        let d = deferral("CODE-A");
        let wake = r.register(&d, NotificationToken::new(TOKEN));
        let t = Countdown {
            pending: 0,
            polls: AtomicU32::new(0),
        };
        let mut poller = Poller::new(&t, clock.clone(), &d)
            .with_relaxed_delay(Duration::from_secs(3600))
            .with_waker(wake);
        let callback = async {
            // A forged callback first: it must not wake anything.
            let forged = call(
                &r,
                Some("Bearer forged-token-0123456789abc"),
                r#"{"deferral_code":"CODE-A"}"#,
            )
            .await;
            assert_eq!(forged, StatusCode::UNAUTHORIZED);
            tokio::task::yield_now().await;
            assert_eq!(
                t.polls.load(Ordering::SeqCst),
                0,
                "a forged callback woke the poller"
            );
            call(
                &r,
                Some(&format!("Bearer {TOKEN}")),
                r#"{"deferral_code":"CODE-A"}"#,
            )
            .await
        };
        let (outcome, status) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(poller.run(|_| {}), callback)
        })
        .await
        .expect("the callback woke the poller");
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(matches!(outcome, Ok(PollOutcome::Token(_))), "{outcome:?}");
        // DTR-30: the token came from exactly one poll, not the callback.
        assert_eq!(t.polls.load(Ordering::SeqCst), 1);
        assert_eq!(poller.attempts(), 1);
    }

    #[tokio::test]
    async fn serve_answers_on_a_real_socket() {
        let r = CallbackReceiver::new();
        let wake = r.register(&deferral("CODE-A"), NotificationToken::new(TOKEN));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let r = r.clone();
            async move {
                r.serve(listener, async {
                    let _ = stopped.await;
                })
                .await
            }
        });
        let resp = reqwest::Client::new()
            .post(format!("http://{addr}{CALLBACK_PATH}"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"deferral_code": "CODE-A"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 204);
        assert!(notified(&wake).await);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
