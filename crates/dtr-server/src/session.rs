//! Login sessions of the server's own pages (login, consent, interaction,
//! device): a random session id in the `dtr_session` cookie, its SHA-256 in
//! the store so every node sees a logout or an administrator ending it
//! (DTR-23), and CSRF tokens bound to the session.
//!
//! The cookie is `HttpOnly` (scripts never see it), `SameSite=Lax` (sent on
//! the top-level navigation from a client to `/authorize`, never on a
//! cross-site POST) and `Secure` when the issuer is https (RFC 9700
//! section 4.16 on session fixation: a new id at every login).

use crate::state::AppState;
use crate::store::SessionRecord;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::secret::{ct_eq, random_token, sha256_b64};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "dtr_session";
/// Name of the double-submit cookie of the login form (no session yet).
pub const LOGIN_CSRF_COOKIE: &str = "dtr_login_csrf";
/// How long a login lasts.
pub const SESSION_TTL_MS: i64 = 8 * 3600 * 1000;

/// The user behind a request's live session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionUser {
    /// The logged-in user.
    pub username: String,
    /// SHA-256 of the session id (never the id itself): what grants record
    /// to re-check the session later (DTR-23).
    pub session_id_hash: String,
    /// When the user signed in (seconds): a session starts at a login,
    /// so this is OpenID Connect's `auth_time`.
    pub auth_time: i64,
}

impl std::fmt::Debug for SessionUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionUser")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The value of cookie `name` in the request, if exactly one is sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            let Some((k, val)) = pair.trim().split_once('=') else {
                continue;
            };
            if k == name {
                // Two cookies of one name (one planted by a sibling
                // domain, say): trust neither.
                if found.is_some() {
                    return None;
                }
                found = Some(val);
            }
        }
    }
    found
}

/// The logged-in user: `None` without a session cookie, for an unknown,
/// expired or ended session, and for a disabled or unknown user.
pub async fn current_user(state: &AppState, headers: &HeaderMap) -> Option<SessionUser> {
    let id = cookie(headers, SESSION_COOKIE)?;
    if id.is_empty() || id.len() > 128 {
        return None;
    }
    let id_hash = sha256_b64(id);
    let now = state.clock.now_ms();
    // A store failure reads as "not signed in" to the page, but is logged
    // as the fault it is (the page then asks to sign in, which fails with
    // a 503 of its own while the database is away).
    let session = match state.store.session_by_hash(&id_hash).await {
        Ok(s) => s?,
        Err(e) => {
            tracing::error!(error = %e, "session lookup failed");
            return None;
        }
    };
    if !session.is_live(now) {
        return None;
    }
    let user = state
        .store
        .get_user(&session.username)
        .await
        .ok()
        .flatten()?;
    user.is_active().then_some(SessionUser {
        username: session.username,
        session_id_hash: id_hash,
        auth_time: session.created_at / 1000,
    })
}

/// Whether a `return_to` value is a path on this server: starts with one
/// `/`, and cannot be read as a scheme-relative URL (`//host`, `/\host`)
/// by a browser (an open redirect otherwise).
pub fn valid_return_to(r: &str) -> bool {
    r.starts_with('/')
        && !r.starts_with("//")
        && !r.starts_with("/\\")
        && r.len() <= 4096
        && !r.bytes().any(|b| b.is_ascii_control())
}

/// `303 See Other` to the login page, which comes back to `return_to` (a
/// path on this server; anything else comes back to nothing).
pub fn login_redirect(return_to: &str) -> Response {
    let target = if valid_return_to(return_to) {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", return_to)
            .finish();
        format!("{}?{q}", dtr_proto::paths::LOGIN)
    } else {
        dtr_proto::paths::LOGIN.to_owned()
    };
    see_other(&target)
}

/// The login form even for a signed-in user, then back to `return_to`:
/// OpenID Connect's `prompt=login` and `max_age` (Core 1.0 section
/// 3.1.2.1) ask for a fresh authentication, not for the session at hand.
pub fn reauth_redirect(return_to: &str) -> Response {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", return_to)
        .append_pair("prompt", "login")
        .finish();
    see_other(&format!("{}?{q}", dtr_proto::paths::LOGIN))
}

/// A `303 See Other` to `location`, not cached.
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Starts a session for `username` (always a fresh id: no fixation) and
/// returns the `Set-Cookie` value.
pub async fn start(state: &AppState, username: &str) -> Result<String, crate::store::StoreError> {
    let id = random_token(32);
    let now = state.clock.now_ms();
    state
        .store
        .insert_session(&SessionRecord {
            id_hash: sha256_b64(&id),
            username: username.to_owned(),
            created_at: now,
            expires_at: now + SESSION_TTL_MS,
            ended_at: None,
        })
        .await?;
    Ok(set_cookie(
        state,
        SESSION_COOKIE,
        &id,
        Some(SESSION_TTL_MS / 1000),
    ))
}

/// Ends the session of `user` (logout).
pub async fn end(state: &AppState, user: &SessionUser) -> Result<bool, crate::store::StoreError> {
    state
        .store
        .end_session(&user.session_id_hash, state.clock.now_ms())
        .await
}

/// A `Set-Cookie` value with this server's attributes; `max_age` `None`
/// makes a browser-session cookie, `Some(0)` deletes it.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; HttpOnly; SameSite=Lax; Path=/");
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    if state.issuer.starts_with("https://") {
        c.push_str("; Secure");
    }
    c
}

/// The key of CSRF tokens: derived from the server's DPoP nonce key (itself
/// derived from the signing key), so every node sharing the database
/// computes the same tokens and none is stored.
fn csrf_key(state: &AppState) -> [u8; 32] {
    let mut k = [0u8; 32];
    if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&state.dpop_nonce_key) {
        mac.update(b"dtr csrf v1");
        k.copy_from_slice(&mac.finalize().into_bytes());
    }
    k
}

fn hmac_b64(key: &[u8; 32], msg: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(msg.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// The CSRF token of a session: HMAC of the session id hash, so a form
/// posted from another site (which cannot read our pages) never carries it.
pub fn csrf_token(state: &AppState, user: &SessionUser) -> String {
    hmac_b64(
        &csrf_key(state),
        &format!("session\n{}", user.session_id_hash),
    )
}

/// Checks a presented CSRF token in constant time.
pub fn csrf_ok(state: &AppState, user: &SessionUser, presented: Option<&str>) -> bool {
    let expected = csrf_token(state, user);
    presented.is_some_and(|p| !expected.is_empty() && ct_eq(expected.as_bytes(), p.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_must_be_a_local_path() {
        assert!(valid_return_to("/authorize?client_id=a"));
        assert!(!valid_return_to("//evil.example/"));
        assert!(!valid_return_to("/\\evil.example/"));
        assert!(!valid_return_to("https://evil.example/"));
        assert!(!valid_return_to("authorize"));
        assert!(!valid_return_to("/a\r\nSet-Cookie: x=y"));
    }

    #[test]
    fn login_redirect_encodes_the_path() {
        let r = login_redirect("/authorize?a=1&b=2");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let loc = r
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok());
        assert_eq!(loc, Some("/login?return_to=%2Fauthorize%3Fa%3D1%26b%3D2"));
        let bad = login_redirect("//evil.example");
        assert_eq!(
            bad.headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok()),
            Some("/login")
        );
    }

    #[test]
    fn cookies_are_found_and_duplicates_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; dtr_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("dtr_session=other"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
    }
}
