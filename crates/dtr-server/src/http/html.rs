//! Shared pieces of the server-rendered pages (interaction, review
//! console, login and consent): escaping and one page layout with the
//! security headers every page needs. Pages work without JavaScript.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// Escapes text for HTML element and attribute content.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The pages' style sheet: readable on a phone (the viewport meta, tables
/// that scroll sideways in their own box), with a visible focus ring.
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;line-height:1.4}\
dt{font-weight:600}dd{margin:0 0 .5rem 1rem;overflow-wrap:anywhere}label{display:block;margin:.5rem 0}\
button{margin:.25rem .5rem .25rem 0;padding:.4rem .8rem}input,select{font:inherit;padding:.3rem;max-width:100%}\
:focus-visible{outline:3px solid #1a5fb4;outline-offset:2px}a{color:#1a5fb4}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ccc;vertical-align:top}\
fieldset{margin:.5rem 0}.filters{display:flex;flex-wrap:wrap;gap:0 1rem;align-items:end}.filters label{margin:.25rem 0}\
@media (max-width:40rem){body{margin:1rem auto}th,td{padding:.25rem}}";

/// A complete page: `title` is escaped here, `body` must already be safe
/// HTML (escape every user-controlled value in it).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    page_with_script(status, title, body, None)
}

/// A page like [`page`], with an optional inline `script` (trusted text,
/// never user-controlled): the Content-Security-Policy allows exactly that
/// script by its SHA-256 hash, and `connect-src 'self'` for its requests.
/// Pages must keep working without it.
pub fn page_with_script(
    status: StatusCode,
    title: &str,
    body: &str,
    script: Option<&str>,
) -> Response {
    let script_tag = script
        .map(|s| format!("<script>{s}</script>"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>{STYLE}</style>\
         </head><body><main><h1>{t}</h1>{body}</main>{script_tag}</body></html>",
        t = escape(title)
    );
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The page must not be framed (clickjacking) nor leak the handle.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let base =
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";
    let csp = match script {
        None => base.to_owned(),
        Some(s) => {
            use base64::Engine;
            use sha2::Digest;
            let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s));
            format!("{base}; script-src 'sha256-{hash}'; connect-src 'self'")
        }
    };
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// The user who sent a decision form: signed in, and the form carries
/// their session's CSRF token. Otherwise the 403 page to answer, which
/// tells a signed-out user `signed_out_hint` (what to do next). Every
/// page where a user decides (consent, interaction, CIBA) checks here.
pub async fn form_user(
    state: &crate::state::AppState,
    headers: &axum::http::HeaderMap,
    csrf: Option<&str>,
    signed_out_hint: &str,
) -> Result<crate::session::SessionUser, Response> {
    let Some(user) = crate::session::current_user(state, headers).await else {
        return Err(page(
            StatusCode::FORBIDDEN,
            "Signed out",
            &format!("<p>Your session ended. {}</p>", escape(signed_out_hint)),
        ));
    };
    if !crate::session::csrf_ok(state, &user, csrf) {
        return Err(page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "<p>The form was not sent from this site.</p>",
        ));
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
