//! `POST /device_authorization` (RFC 8628 section 3.1) and the user page
//! `GET/POST /device` (the `verification_uri`, section 3.3): enter the
//! user code, sign in, approve or deny. Plain forms, no JavaScript, every
//! value escaped; session-bound CSRF tokens on every POST; opening the
//! page (even `verification_uri_complete`) decides nothing.

use super::error::json_no_store;
use super::form::Form;
use super::html::{escape, page};
use crate::grants::device::{self, LookupError};
use crate::session::{self, SessionUser};
use crate::state::AppState;
use crate::store::DeviceCodeRecord;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dtr_proto::device::{DeviceAuthorizationRequest, UserCode};
use dtr_proto::params::Params;
use dtr_proto::paths;

/// The device authorization endpoint.
pub async fn device_authorization(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(params): Form,
) -> Response {
    let result = async {
        let client = state
            .client_auth()
            .authenticate(&headers, &params, paths::DEVICE_AUTHORIZATION)
            .await?;
        let req = DeviceAuthorizationRequest::parse(&params)?;
        device::authorize(&state, &client, req).await
    }
    .await;
    match result {
        // RFC 8628 section 3.2: 200 with JSON; the codes are credentials.
        Ok(r) => json_no_store(StatusCode::OK, &r),
        Err(e) => e.into_response(),
    }
}

/// The page's own path with the code the user came with, for the login
/// round trip.
fn return_to(user_code: Option<&str>) -> String {
    match user_code.and_then(UserCode::parse) {
        Some(c) => {
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("user_code", &c.display())
                .finish();
            format!("{}?{q}", paths::DEVICE)
        }
        None => paths::DEVICE.to_owned(),
    }
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
        escape(value)
    )
}

/// The form where the user types the code.
fn entry_page(
    state: &AppState,
    user: &SessionUser,
    status: StatusCode,
    prefill: &str,
    message: Option<&str>,
) -> Response {
    let msg = message
        .map(|m| format!("<p role=\"alert\"><strong>{}</strong></p>", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "{msg}<p>Signed in as <strong>{user}</strong>.</p>\
         <form method=\"post\" action=\"{action}\">{csrf}{act}\
         <label>Code shown on your device <input name=\"user_code\" value=\"{prefill}\" \
         autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\" maxlength=\"32\" required autofocus></label>\
         <button type=\"submit\">Continue</button></form>",
        user = escape(&user.username),
        action = paths::DEVICE,
        csrf = hidden("csrf", &session::csrf_token(state, user)),
        act = hidden("action", "lookup"),
        prefill = escape(prefill),
    );
    page(status, "Connect a device", &body)
}

/// The confirmation: which client asks for what, the code to compare with
/// the device (RFC 8628 section 5.4: remote phishing), approve or deny.
async fn confirm_page(
    state: &AppState,
    user: &SessionUser,
    code: &UserCode,
    rec: &DeviceCodeRecord,
) -> Response {
    let client_name = state
        .store
        .get_client(&rec.client_id)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.metadata)
        .and_then(|m| {
            m.get("client_name")
                .and_then(|n| n.as_str())
                .map(str::to_owned)
        });
    let scopes: String = rec
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    let scopes = if scopes.is_empty() {
        "<li>no particular scope</li>".to_owned()
    } else {
        scopes
    };
    let name = match client_name {
        Some(n) => format!(
            "<strong>{}</strong> (client <code>{}</code>)",
            escape(&n),
            escape(&rec.client_id)
        ),
        None => format!("client <code>{}</code>", escape(&rec.client_id)),
    };
    let body = format!(
        "<p>{name} asks to act for <strong>{user}</strong> with:</p><ul>{scopes}</ul>\
         <p>Code: <strong><code>{code}</code></strong>. Continue only if your device shows exactly this code \
         and you started this sign-in yourself.</p>\
         <form method=\"post\" action=\"{action}\">{csrf}{uc}\
         <button type=\"submit\" name=\"action\" value=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form>",
        user = escape(&user.username),
        code = escape(&code.display()),
        action = paths::DEVICE,
        csrf = hidden("csrf", &session::csrf_token(state, user)),
        uc = hidden("user_code", &code.display()),
    );
    page(StatusCode::OK, "Connect a device", &body)
}

fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    page(status, title, &format!("<p>{}</p>", escape(text)))
}

fn lookup_failed(state: &AppState, user: &SessionUser, e: LookupError) -> Response {
    match e {
        LookupError::Unknown => entry_page(
            state,
            user,
            StatusCode::BAD_REQUEST,
            "",
            Some("That code is not valid, was already used or has expired. Check your device and try again."),
        ),
        LookupError::TooManyAttempts => message_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many wrong codes were entered. Wait a few minutes, then start again on your device.",
        ),
    }
}

fn server_error(e: impl Into<crate::error::Error>) -> Response {
    message_page(
        super::error::fault_status(e),
        "Something went wrong",
        "Please try again later.",
    )
}

/// `GET /device[?user_code=...]`: sign in first, then the code form,
/// filled in when the user came through `verification_uri_complete`.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::parse_form(q.unwrap_or_default().as_bytes()).unwrap_or_default();
    let code = p.get("user_code");
    let Some(user) = session::current_user(&state, &headers).await else {
        return session::login_redirect(&return_to(code));
    };
    // Only a well-formed code is echoed back into the page.
    let prefill = code
        .and_then(UserCode::parse)
        .map(|c| c.display())
        .unwrap_or_default();
    entry_page(&state, &user, StatusCode::OK, &prefill, None)
}

/// `POST /device`: `action=lookup` shows the confirmation, `approve` or
/// `deny` records the decision. Each re-checks the code (counted against
/// the attempt limit when wrong).
pub async fn decide(State(state): State<AppState>, headers: HeaderMap, Form(p): Form) -> Response {
    let Some(user) = session::current_user(&state, &headers).await else {
        return session::login_redirect(&return_to(p.get("user_code")));
    };
    if !session::csrf_ok(&state, &user, p.get("csrf")) {
        return entry_page(
            &state,
            &user,
            StatusCode::FORBIDDEN,
            "",
            Some("The form expired or was not sent from this site. Please enter the code again."),
        );
    }
    let input = p.get("user_code").unwrap_or("");
    let approve = match p.get("action") {
        Some("lookup") => None,
        Some("approve") => Some(true),
        Some("deny") => Some(false),
        _ => {
            return entry_page(
                &state,
                &user,
                StatusCode::BAD_REQUEST,
                "",
                Some("Enter the code shown on your device."),
            )
        }
    };
    let (code, rec) = match device::lookup(&state, &user, input).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return lookup_failed(&state, &user, e),
        Err(e) => return server_error(e),
    };
    let Some(approve) = approve else {
        return confirm_page(&state, &user, &code, &rec).await;
    };
    match device::decide_user_code(&state, &user, &code, &rec, approve).await {
        Ok(true) if approve => message_page(
            StatusCode::OK,
            "Device connected",
            "You approved the request. You can close this page and return to your device.",
        ),
        Ok(true) => message_page(
            StatusCode::OK,
            "Request denied",
            "You denied the request. The device gets no access.",
        ),
        Ok(false) => message_page(
            StatusCode::CONFLICT,
            "Code already used",
            "This code was already used or has expired. Start again on your device.",
        ),
        Err(e) => server_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_keeps_only_a_wellformed_code() {
        assert_eq!(return_to(Some("bcdf-ghjk")), "/device?user_code=BCDF-GHJK");
        assert_eq!(return_to(Some("<script>")), "/device");
        assert_eq!(return_to(None), "/device");
        assert!(session::valid_return_to(&return_to(Some("BCDFGHJK"))));
    }
}
