//! The `completion_mode` request parameter (draft, "The `completion_mode`
//! Parameter"; DTR-1, DTR-2).

use crate::error::OAuthError;

/// The value that opts in to the Deferred Token Response.
pub const DEFERRED: &str = "deferred";

/// The value that opts in to a deferred response and, besides, says the
/// client can surface an `interaction_uri` to a user (the working group's
/// approved `deferred_interactive` proposal).
pub const DEFERRED_INTERACTIVE: &str = "deferred_interactive";

/// What a request's `completion_mode` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompletionMode {
    /// `deferred` or `deferred_interactive` is among the values: the client
    /// accepts a deferred response.
    pub deferred: bool,
    /// `deferred_interactive` is among the values: the client can send a
    /// user to an `interaction_uri` when answered `interaction_required`.
    pub interactive: bool,
}

impl CompletionMode {
    /// Parses the parameter. `None` (absent) means synchronous handling.
    ///
    /// DTR-1: the value is a space-separated list whose order does not
    /// matter; unknown values are ignored and never a reason to reject; a
    /// repeated value makes the parameter malformed (`invalid_request`).
    pub fn parse(value: Option<&str>) -> Result<Self, OAuthError> {
        let Some(value) = value else {
            return Ok(Self::default());
        };
        let mut seen: Vec<&str> = Vec::new();
        // RFC 6749 section 3.3 style lists: values separated by single
        // spaces; we tolerate runs of spaces but not other whitespace.
        for v in value.split(' ').filter(|v| !v.is_empty()) {
            if seen.contains(&v) {
                return Err(OAuthError::invalid_request(format!(
                    "completion_mode repeats the value '{}'",
                    crate::params::printable(v)
                )));
            }
            seen.push(v);
        }
        let interactive = seen.contains(&DEFERRED_INTERACTIVE);
        Ok(Self {
            deferred: interactive || seen.contains(&DEFERRED),
            interactive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_means_synchronous() {
        // DTR-2
        assert!(!CompletionMode::parse(None)
            .map(|m| m.deferred)
            .unwrap_or(true));
    }

    #[test]
    fn deferred_in_any_position() {
        // DTR-1: order does not matter.
        for v in ["deferred", "foo deferred", "deferred bar", "a deferred b"] {
            assert!(
                CompletionMode::parse(Some(v))
                    .map(|m| m.deferred)
                    .unwrap_or(false),
                "{v}"
            );
        }
    }

    #[test]
    fn unknown_values_are_ignored() {
        // DTR-1: never rejected because of an unknown value.
        let m = CompletionMode::parse(Some("sync future-thing")).ok();
        assert_eq!(m, Some(CompletionMode::default()));
    }

    #[test]
    fn deferred_interactive_accepts_deferral_and_interaction() {
        for v in ["deferred_interactive", "deferred deferred_interactive"] {
            let m = CompletionMode::parse(Some(v)).ok();
            assert_eq!(
                m,
                Some(CompletionMode {
                    deferred: true,
                    interactive: true
                }),
                "{v}"
            );
        }
        let plain = CompletionMode::parse(Some("deferred")).ok();
        assert_eq!(plain.map(|m| m.interactive), Some(false));
    }

    #[test]
    fn repeated_value_is_malformed() {
        // DTR-1
        let e = CompletionMode::parse(Some("deferred deferred")).err();
        assert_eq!(e.map(|e| e.error), Some(crate::ErrorCode::InvalidRequest));
        let e = CompletionMode::parse(Some("x x deferred")).err();
        assert_eq!(e.map(|e| e.error), Some(crate::ErrorCode::InvalidRequest));
    }
}
