//! Which redirect URIs a client may have: the one rule that configured
//! clients (`[[clients]] redirect_uris`) and registered clients (RFC 7591
//! `redirect_uris`) both obey, so the two can never drift apart.
//!
//! A redirect URI is where the authorization server sends the browser with
//! an authorization code (or an error) in the query. Anything that is not a
//! plain navigation to a place the client controls turns that redirect into
//! an attack: `javascript:` and `vbscript:` run script in the server's
//! origin from the consent page, `data:`, `blob:` and `about:` render
//! content of the attacker's choosing, `file:` reads the user's disk,
//! `ws:` and `ftp:` leak the code in clear. So the rule is an allow-list,
//! not a block-list (RFC 9700 section 4.1, "insufficient redirect URI
//! validation"):
//!
//! - `https` with a host: web clients (OAuth 2.1 section 2.3.1).
//! - `http` only on a loopback host, any port: native apps receiving the
//!   redirect on a local listener (RFC 8252 section 7.3). Loopback means
//!   `127.0.0.0/8`, `[::1]`, and the name `localhost`. RFC 8252 section 8.3
//!   discourages `localhost` because a name can be resolved off the machine;
//!   we accept it anyway because many native and CLI clients use it, and
//!   current browsers pin `localhost` to the loopback interface instead of
//!   resolving it, so the code cannot leave the machine.
//! - A private-use scheme in reverse-domain form, such as
//!   `com.example.app:/cb`: native apps (RFC 8252 section 7.1). The scheme
//!   must contain a dot, which rules out every browser-internal scheme
//!   (none of them has one); the dangerous schemes are named anyway so the
//!   error says why.
//!
//! And whatever the scheme: no userinfo (`https://user@host` confuses
//! people and parsers about which host gets the code) and no fragment
//! (RFC 6749 section 3.1.2: the code travels in the query; a fragment would
//! be carried along by the browser).

use std::fmt;
use std::net::Ipv6Addr;

/// What kind of redirect URI passed the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectKind {
    /// `https` with a host.
    Https,
    /// `http` on a loopback host (RFC 8252 section 7.3).
    Loopback,
    /// A reverse-domain private-use scheme (RFC 8252 section 7.1).
    PrivateUse,
}

/// Why a redirect URI is refused. `Display` gives a sentence for the
/// `error_description` (RFC 7591 section 3.2.2 `invalid_redirect_uri`) or
/// the config error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedirectUriError {
    /// Not an absolute URI.
    NotAbsolute(String),
    /// Has a fragment.
    Fragment,
    /// Has a user name or password.
    Userinfo,
    /// `http` on a host that is not loopback.
    HttpNotLoopback,
    /// A scheme that must never receive a redirect.
    DangerousScheme(String),
    /// A scheme that is neither https, loopback http, nor reverse-domain.
    NotReverseDomain(String),
}

impl fmt::Display for RedirectUriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAbsolute(e) => write!(f, "not an absolute URI: {e}"),
            Self::Fragment => f.write_str("must not contain a fragment (RFC 6749 section 3.1.2)"),
            Self::Userinfo => f.write_str("must not contain a user name or password"),
            Self::HttpNotLoopback => f.write_str(
                "http is allowed only on a loopback host: 127.0.0.1, [::1] or localhost \
                 (RFC 8252 section 7.3); use https",
            ),
            Self::DangerousScheme(s) => write!(
                f,
                "the scheme '{s}' is never allowed (RFC 9700 section 4.1); use https"
            ),
            Self::NotReverseDomain(s) => write!(
                f,
                "the scheme '{s}' is not allowed: use https, loopback http, or a private-use \
                 scheme in reverse-domain form such as com.example.app (RFC 8252 section 7.1)"
            ),
        }
    }
}

impl std::error::Error for RedirectUriError {}

/// Schemes that run code, render attacker content, read local files or
/// carry the code unencrypted. None has a dot, so none could pass as a
/// private-use scheme; they are listed to give the precise reason.
const DANGEROUS_SCHEMES: &[&str] = &[
    "javascript",
    "vbscript",
    "data",
    "blob",
    "file",
    "filesystem",
    "about",
    "view-source",
    "ws",
    "wss",
    "ftp",
    "mailto",
    "chrome",
    "chrome-extension",
    "moz-extension",
    "intent",
];

/// Checks one redirect URI against the rule of the module header.
pub fn check(raw: &str) -> Result<RedirectKind, RedirectUriError> {
    let u = url::Url::parse(raw).map_err(|e| RedirectUriError::NotAbsolute(e.to_string()))?;
    // Any '#' is a fragment, an empty one included (`Some("")`).
    if u.fragment().is_some() {
        return Err(RedirectUriError::Fragment);
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(RedirectUriError::Userinfo);
    }
    // `Url` lowercases the scheme.
    let scheme = u.scheme();
    match scheme {
        "https" => Ok(RedirectKind::Https),
        "http" if is_loopback(&u) => Ok(RedirectKind::Loopback),
        "http" => Err(RedirectUriError::HttpNotLoopback),
        s if DANGEROUS_SCHEMES.contains(&s) => Err(RedirectUriError::DangerousScheme(s.into())),
        s if is_reverse_domain(s) => Ok(RedirectKind::PrivateUse),
        s => Err(RedirectUriError::NotReverseDomain(s.into())),
    }
}

/// Whether the redirect URI of an authorization request matches a
/// registered one: exactly (RFC 9700 section 4.1.1: no patterns, no
/// prefixes), except that a loopback IP redirect URI matches on any port,
/// because a native app listens on whatever port the OS gave it (RFC 8252
/// section 7.3: the server "MUST allow any port to be specified at the
/// time of the request for loopback IP redirect URIs").
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(mut reg), Ok(mut req)) = (url::Url::parse(registered), url::Url::parse(requested))
    else {
        return false;
    };
    // Section 7.3 covers IP literals; `localhost` is matched exactly.
    let ip_loopback = |u: &url::Url| {
        u.scheme() == "http"
            && matches!(u.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
            && is_loopback(u)
    };
    if !(ip_loopback(&reg) && ip_loopback(&req)) {
        return false;
    }
    // Both are http with an IP host, so a port can always be set.
    if reg.set_port(None).is_err() || req.set_port(None).is_err() {
        return false;
    }
    reg == req
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        // 127.0.0.0/8, the whole block (RFC 1122 section 3.2.1.3).
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a == Ipv6Addr::LOCALHOST,
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A private-use scheme "based on a domain name under their control,
/// expressed in reverse order" (RFC 8252 section 7.1): at least two
/// non-empty labels separated by dots, each starting with a letter or
/// digit (the URI scheme grammar of RFC 3986 section 3.1 already limits
/// the characters).
fn is_reverse_domain(scheme: &str) -> bool {
    let labels: Vec<&str> = scheme.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| l.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_as_a_table() {
        use RedirectKind::*;
        let ok: &[(&str, RedirectKind)] = &[
            ("https://app.example/cb", Https),
            ("https://app.example:8443/cb?x=1", Https),
            ("HTTPS://App.Example/cb", Https),
            ("http://127.0.0.1/cb", Loopback),
            ("http://127.0.0.1:51234/cb", Loopback),
            ("http://127.1.2.3:9/cb", Loopback),
            ("http://[::1]:8080/cb", Loopback),
            ("http://localhost:3000/cb", Loopback),
            ("http://LOCALHOST/cb", Loopback),
            ("com.example.app:/oauth2redirect", PrivateUse),
            ("com.example.app://cb", PrivateUse),
            ("org.example.my-app:/cb", PrivateUse),
        ];
        for (uri, kind) in ok {
            assert_eq!(check(uri), Ok(*kind), "{uri}");
        }
        // What each refusal must say.
        type Expect = fn(&RedirectUriError) -> bool;
        let refused: &[(&str, Expect)] = &[
            ("javascript:alert(document.cookie)", |e| {
                matches!(e, RedirectUriError::DangerousScheme(_))
            }),
            ("JavaScript://%0aalert(1)", |e| {
                matches!(e, RedirectUriError::DangerousScheme(_))
            }),
            ("vbscript:msgbox(1)", |e| {
                matches!(e, RedirectUriError::DangerousScheme(_))
            }),
            ("data:text/html,<script>alert(1)</script>", |e| {
                matches!(e, RedirectUriError::DangerousScheme(_))
            }),
            ("file:///etc/passwd", |e| {
                matches!(e, RedirectUriError::DangerousScheme(_))
            }),
            ("blob:https://app.example/1234", |e| {
                matches!(e, RedirectUriError::DangerousScheme(_))
            }),
            ("about:blank", |e| {
                matches!(e, RedirectUriError::DangerousScheme(_))
            }),
            ("ws://app.example/cb", |e| {
                matches!(e, RedirectUriError::DangerousScheme(_))
            }),
            ("wss://app.example/cb", |e| {
                matches!(e, RedirectUriError::DangerousScheme(_))
            }),
            ("ftp://app.example/cb", |e| {
                matches!(e, RedirectUriError::DangerousScheme(_))
            }),
            ("http://app.example/cb", |e| {
                *e == RedirectUriError::HttpNotLoopback
            }),
            ("http://10.0.0.1/cb", |e| {
                *e == RedirectUriError::HttpNotLoopback
            }),
            ("http://localhost.evil.example/cb", |e| {
                *e == RedirectUriError::HttpNotLoopback
            }),
            ("http://[::2]/cb", |e| {
                *e == RedirectUriError::HttpNotLoopback
            }),
            ("https://user:pw@app.example/cb", |e| {
                *e == RedirectUriError::Userinfo
            }),
            ("https://app.example@evil.example/cb", |e| {
                *e == RedirectUriError::Userinfo
            }),
            ("http://user@127.0.0.1/cb", |e| {
                *e == RedirectUriError::Userinfo
            }),
            ("com.example.app://user@cb", |e| {
                *e == RedirectUriError::Userinfo
            }),
            ("https://app.example/cb#x", |e| {
                *e == RedirectUriError::Fragment
            }),
            ("https://app.example/cb#", |e| {
                *e == RedirectUriError::Fragment
            }),
            ("com.example.app:/cb#frag", |e| {
                *e == RedirectUriError::Fragment
            }),
            ("myapp:/cb", |e| {
                matches!(e, RedirectUriError::NotReverseDomain(_))
            }),
            ("urn:ietf:wg:oauth:2.0:oob", |e| {
                matches!(e, RedirectUriError::NotReverseDomain(_))
            }),
            ("com.:/cb", |e| {
                matches!(e, RedirectUriError::NotReverseDomain(_))
            }),
            ("/relative/cb", |e| {
                matches!(e, RedirectUriError::NotAbsolute(_))
            }),
            ("", |e| matches!(e, RedirectUriError::NotAbsolute(_))),
        ];
        for (uri, expected) in refused {
            let e = check(uri).expect_err(uri);
            assert!(expected(&e), "{uri}: {e:?}");
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn loopback_ip_redirects_match_on_any_port_and_nothing_else_does() {
        let cases = [
            ("https://app.example/cb", "https://app.example/cb", true),
            ("https://app.example/cb", "https://app.example/cb/", false),
            (
                "https://app.example/cb",
                "https://app.example/cb?x=1",
                false,
            ),
            (
                "https://app.example/cb",
                "https://app.example:444/cb",
                false,
            ),
            ("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb", true),
            ("http://127.0.0.1:80/cb", "http://127.0.0.1:9/cb", true),
            ("http://[::1]/cb", "http://[::1]:4000/cb", true),
            ("http://127.0.0.1/cb", "http://127.0.0.1:9/other", false),
            ("http://127.0.0.1/cb", "http://127.0.0.2:9/cb", false),
            ("http://127.0.0.1/cb", "http://[::1]:9/cb", false),
            ("http://localhost/cb", "http://localhost:9/cb", false),
            ("http://127.0.0.1/cb", "https://127.0.0.1:9/cb", false),
            ("com.example.app:/cb", "com.example.app:/cb", true),
        ];
        for (registered, requested, expected) in cases {
            assert_eq!(
                matches(registered, requested),
                expected,
                "{registered} vs {requested}"
            );
        }
    }
}
