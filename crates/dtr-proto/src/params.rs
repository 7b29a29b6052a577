//! Parsing of `application/x-www-form-urlencoded` request bodies under the
//! rules of OAuth 2.1 section 3.2 / RFC 6749 section 3.2: parameters sent
//! without a value are treated as omitted, and a parameter must not appear
//! more than once.

use crate::error::OAuthError;
use std::collections::BTreeMap;

/// The parameters of one request, each present at most once.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

/// Parameter names whose values are secrets; `Debug` never prints them (DTR-36).
const SECRET_PARAMS: &[&str] = &[
    "deferral_code",
    "client_secret",
    "client_notification_token",
    "client_assertion",
    "token",
    "code",
    "code_verifier",
    "refresh_token",
    "device_code",
    "subject_token",
    "actor_token",
    "password",
];

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.map {
            if SECRET_PARAMS.contains(&k.as_str()) {
                m.entry(k, &"[redacted]");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl Params {
    /// Parses a form body. Invalid UTF-8 (after percent-decoding) and
    /// repeated parameters are `invalid_request`.
    pub fn parse_form(body: &[u8]) -> Result<Self, OAuthError> {
        let mut map = BTreeMap::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let k = decode(k)?;
            let v = decode(v)?;
            if k.is_empty() {
                return Err(OAuthError::invalid_request("empty parameter name"));
            }
            if map.contains_key(&k) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter '{}' is repeated",
                    printable(&k)
                )));
            }
            map.insert(k, v);
        }
        // Values sent empty count as omitted (RFC 6749 section 3.1); drop
        // them after the duplicate check so "a=&a=x" is still a repeat.
        map.retain(|_, v| !v.is_empty());
        Ok(Self { map })
    }

    /// Builds parameters from pairs (used by tests and the client side).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            map: pairs
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The value of a parameter, if present and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// The value of a required parameter, else `invalid_request` naming it.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter '{name}'")))
    }

    /// Removes and returns a parameter.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.map.remove(name)
    }

    /// Whether a parameter is present.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Parameter names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}

fn decode(raw: &[u8]) -> Result<String, OAuthError> {
    // '+' is a space in this media type (WHATWG URL, form-urlencoded parser).
    let plus_decoded: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes = percent_decode(&plus_decoded);
    String::from_utf8(bytes)
        .map_err(|_| OAuthError::invalid_request("request body is not valid UTF-8"))
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A short, log- and JSON-safe rendering of client-supplied text for error
/// descriptions: RFC 6749 limits `error_description` to %x20-21 / %x23-5B /
/// %x5D-7E, so anything else is replaced, and the text is cut at 64 chars.
pub fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| {
            if (' '..='~').contains(&c) && c != '"' && c != '\\' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn parses_and_decodes() {
        let p = Params::parse_form(b"grant_type=client_credentials&scope=read+write&x=%41%2b").ok();
        let p = p.unwrap_or_default();
        assert_eq!(p.get("grant_type"), Some("client_credentials"));
        assert_eq!(p.get("scope"), Some("read write"));
        assert_eq!(p.get("x"), Some("A+"));
    }

    #[test]
    fn empty_values_are_omitted() {
        let p = Params::parse_form(b"a=&b=1&c").unwrap_or_default();
        assert!(!p.contains("a"));
        assert!(!p.contains("c"));
        assert_eq!(p.get("b"), Some("1"));
    }

    #[test]
    fn duplicates_are_rejected() {
        for body in [&b"a=1&a=2"[..], b"a=&a=2", b"a=1&a=1"] {
            let e = Params::parse_form(body).err();
            assert_eq!(e.map(|e| e.error), Some(ErrorCode::InvalidRequest));
        }
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        assert!(Params::parse_form(b"a=%ff%fe").is_err());
        assert!(Params::parse_form(&[b'a', b'=', 0xff]).is_err());
    }

    #[test]
    fn broken_percent_escapes_pass_through() {
        let p = Params::parse_form(b"a=%zz&b=%4").unwrap_or_default();
        assert_eq!(p.get("a"), Some("%zz"));
        assert_eq!(p.get("b"), Some("%4"));
    }

    #[test]
    fn debug_redacts_secrets() {
        let p = Params::from_pairs([
            ("deferral_code", "s3cr3t"),
            ("client_secret", "x1"),
            ("scope", "read"),
        ]);
        let d = format!("{p:?}");
        assert!(!d.contains("s3cr3t") && !d.contains("x1"));
        assert!(d.contains("read"));
    }
}
