//! URL checks of configuration values: the issuer identifier, and the form
//! of outbound URLs chosen by clients.

use super::{err, ConfigError};

fn is_loopback_host(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// The issuer: an https URL (RFC 8414 section 2) without query or fragment;
/// http is accepted for loopback hosts, where no network sees it, and
/// anywhere in `dev_mode`.
pub(super) fn validate_issuer(raw: &str, dev_mode: bool) -> Result<String, ConfigError> {
    let u =
        url::Url::parse(raw).map_err(|e| err("issuer", format!("'{raw}' is not a URL: {e}")))?;
    if u.query().is_some() || u.fragment().is_some() {
        return Err(err(
            "issuer",
            "must not have a query or fragment (RFC 8414 section 2)",
        ));
    }
    match u.scheme() {
        "https" => {}
        "http" if dev_mode || is_loopback_host(&u) => {}
        _ => {
            return Err(err(
                "issuer",
                "must be https (http only on loopback or with dev_mode = true)",
            ))
        }
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// An outbound URL chosen by a client: https, or loopback http in dev mode
/// (DTR-25).
pub fn validate_https_or_dev(raw: &str, dev_mode: bool) -> Result<String, String> {
    crate::outbound::check_form(raw, dev_mode)
        .map(|_| raw.to_owned())
        .map_err(|e| e.to_string())
}
