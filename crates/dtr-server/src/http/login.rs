//! `GET/POST /login` and `POST /logout`: the login form of the server's
//! pages. Without a session there is no session-bound CSRF token yet, so
//! the login form uses a double-submit cookie: a random value set as an
//! `HttpOnly` cookie and echoed in a hidden field; another site can make
//! a browser send the cookie but cannot read it to fill the field (login
//! CSRF, RFC 9700 section 4.4.1.8).

use super::form::Form;
use super::html::{escape, page};
use crate::session::{self, LOGIN_CSRF_COOKIE};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use dtr_proto::params::Params;
use dtr_proto::secret::{ct_eq, random_token};

/// The Content-Security-Policy of the login page: like the shared one but
/// without `form-action`, because a successful login redirects on to
/// `/authorize`, which may redirect to the client; browsers apply
/// `form-action` to every redirect after the submission.
const LOGIN_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

fn with_header(mut r: Response, name: header::HeaderName, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().append(name, v);
    }
    r
}

fn form_page(
    state: &AppState,
    status: StatusCode,
    return_to: &str,
    csrf: &str,
    message: Option<&str>,
) -> Response {
    let msg = message
        .map(|m| format!("<p role=\"alert\"><strong>{}</strong></p>", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "{msg}<form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"return_to\" value=\"{rt}\">\
         <label>Username <input name=\"username\" autocomplete=\"username\" required autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>",
        action = dtr_proto::paths::LOGIN,
        csrf = escape(csrf),
        rt = escape(return_to),
    );
    let r = page(status, "Sign in", &body);
    let mut r = with_header(
        r,
        header::SET_COOKIE,
        &session::set_cookie(state, LOGIN_CSRF_COOKIE, csrf, Some(3600)),
    );
    if let Ok(v) = HeaderValue::from_str(LOGIN_CSP) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

fn return_to_of(p: &Params) -> String {
    p.get("return_to")
        .filter(|r| session::valid_return_to(r))
        .unwrap_or("")
        .to_owned()
}

fn signed_in(state: &AppState, user: &session::SessionUser) -> Response {
    let body = format!(
        "<p>You are signed in as <strong>{}</strong>.</p>\
         <form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Sign out</button></form>",
        escape(&user.username),
        dtr_proto::paths::LOGOUT,
        escape(&session::csrf_token(state, user)),
    );
    page(StatusCode::OK, "Signed in", &body)
}

/// `GET /login?return_to=/path`: the form, or straight back to
/// `return_to` when already signed in.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::parse_form(q.unwrap_or_default().as_bytes()).unwrap_or_default();
    let return_to = return_to_of(&p);
    // `prompt=login`: the user signs in again although signed in.
    let reauth = p.get("prompt") == Some("login");
    if let Some(user) = session::current_user(&state, &headers)
        .await
        .filter(|_| !reauth)
    {
        return if return_to.is_empty() {
            signed_in(&state, &user)
        } else {
            session::see_other(&return_to)
        };
    }
    // Keep an existing double-submit value so two open tabs both work.
    let csrf = session::cookie(&headers, LOGIN_CSRF_COOKIE)
        .filter(|c| c.len() >= 22 && c.len() <= 64)
        .map(str::to_owned)
        .unwrap_or_else(|| random_token(24));
    form_page(&state, StatusCode::OK, &return_to, &csrf, None)
}

/// `POST /login`: checks the double-submit token and the password, starts
/// a fresh session and goes back to `return_to`.
pub async fn login(State(state): State<AppState>, headers: HeaderMap, Form(p): Form) -> Response {
    let return_to = return_to_of(&p);
    let cookie = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    let fresh = || random_token(24);
    if cookie.len() < 22
        || !p
            .get("csrf")
            .is_some_and(|f| ct_eq(f.as_bytes(), cookie.as_bytes()))
    {
        return form_page(
            &state,
            StatusCode::FORBIDDEN,
            &return_to,
            &fresh(),
            Some("The form expired or was not sent from this site. Please sign in again."),
        );
    }
    let (Some(username), Some(password)) = (p.get("username"), p.get("password")) else {
        return form_page(
            &state,
            StatusCode::BAD_REQUEST,
            &return_to,
            cookie,
            Some("Enter your username and password."),
        );
    };
    match state.verify_user(username, password).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            tracing::info!("login failed");
            return form_page(
                &state,
                StatusCode::UNAUTHORIZED,
                &return_to,
                cookie,
                Some("Wrong username or password."),
            );
        }
        // Too many failures for this user or from this address: refused
        // without looking at the password (`throttle`).
        Err(refused) => {
            let secs = refused.answered();
            let page = form_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &return_to,
                cookie,
                Some(&format!(
                    "Too many failed sign-ins. Try again in {secs} seconds."
                )),
            );
            return super::error::with_retry_after(page, secs);
        }
        Ok(Err(fault)) => {
            if let crate::state::SignInFault::Store(e) = &fault {
                tracing::error!(error = %e, "sign-in could not be checked");
            }
            let page = form_page(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                &return_to,
                cookie,
                Some("The server is busy. Try again in a moment."),
            );
            return super::error::with_retry_after(
                page,
                crate::password::OVERLOADED_RETRY_AFTER_SECS,
            );
        }
    }
    let set = match session::start(&state, username).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a session");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Error",
                "<p>Something went wrong. Try again.</p>",
            );
        }
    };
    tracing::info!(user = %username, "user signed in");
    let r = if return_to.is_empty() {
        page(
            StatusCode::OK,
            "Signed in",
            &format!(
                "<p>You are signed in as <strong>{}</strong>.</p>",
                escape(username)
            ),
        )
    } else {
        session::see_other(&return_to)
    };
    let r = with_header(r, header::SET_COOKIE, &set);
    with_header(
        r,
        header::SET_COOKIE,
        &session::set_cookie(&state, LOGIN_CSRF_COOKIE, "", Some(0)),
    )
}

/// `POST /logout`: ends the session (on every node: it is ended in the
/// store) and clears the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(p): Form) -> Response {
    let Some(user) = session::current_user(&state, &headers).await else {
        return page(
            StatusCode::OK,
            "Signed out",
            "<p>You are not signed in.</p>",
        );
    };
    if !session::csrf_ok(&state, &user, p.get("csrf")) {
        return page(
            StatusCode::FORBIDDEN,
            "Not signed out",
            "<p>The form was not sent from this site.</p>",
        );
    }
    if let Err(e) = session::end(&state, &user).await {
        tracing::error!(error = %e, "cannot end a session");
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Error",
            "<p>Something went wrong. Try again.</p>",
        );
    }
    let r = page(StatusCode::OK, "Signed out", "<p>You are signed out.</p>");
    with_header(
        r,
        header::SET_COOKIE,
        &session::set_cookie(&state, session::SESSION_COOKIE, "", Some(0)),
    )
}
