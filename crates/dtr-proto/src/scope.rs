//! Scope values (RFC 6749 section 3.3): a set of scope tokens.

use crate::error::{ErrorCode, OAuthError};
use std::collections::BTreeSet;
use std::fmt;

/// A set of scope tokens. Order carries no meaning (RFC 6749 section 3.3),
/// so the set is kept sorted, which also makes its rendering canonical.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope(BTreeSet<String>);

impl Scope {
    /// Parses a space-delimited scope string; each token must be `NQCHAR`s
    /// (`%x21 / %x23-5B / %x5D-7E`), else `invalid_scope`.
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        let mut set = BTreeSet::new();
        for tok in s.split(' ').filter(|t| !t.is_empty()) {
            if !tok
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            {
                return Err(OAuthError::with_description(
                    ErrorCode::InvalidScope,
                    "scope contains characters outside RFC 6749 section 3.3",
                ));
            }
            set.insert(tok.to_owned());
        }
        Ok(Self(set))
    }

    /// Whether no scope token is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every token of `self` is in `other`.
    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether the set holds `token`.
    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    /// The tokens, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for t in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(t)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Scope {
        Scope::parse(v).unwrap_or_default()
    }

    #[test]
    fn parse_and_render_canonically() {
        assert_eq!(s("write  read").to_string(), "read write");
        assert!(s("").is_empty());
    }

    #[test]
    fn subset() {
        assert!(s("read").is_subset(&s("read write")));
        assert!(!s("read admin").is_subset(&s("read write")));
        assert!(s("").is_subset(&s("read")));
    }

    #[test]
    fn rejects_bad_characters() {
        assert!(Scope::parse("read \"quoted\"").is_err());
        assert!(Scope::parse("r\\w").is_err());
        assert!(Scope::parse("caf\u{e9}").is_err());
    }
}
