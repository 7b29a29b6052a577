//! The client's choice of `completion_mode` (DTR-1), for every request
//! that carries it: the token request of any grant and, as a hint, the
//! preceding request (DTR-4).

/// The `completion_mode` of the request (DTR-1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompletionMode {
    /// No `completion_mode`: the client needs an immediate answer (DTR-2).
    #[default]
    Synchronous,
    /// `deferred`: the client accepts a deferred response.
    Deferred,
    /// `deferred` and `deferred_interactive`: the client accepts a deferred
    /// response and can also send a user to an `interaction_uri`.
    DeferredInteractive,
}

impl CompletionMode {
    /// The parameter's value, `None` for [`CompletionMode::Synchronous`].
    ///
    /// `deferred_interactive` travels with `deferred`: the draft's base rule
    /// is that a list without `deferred` asks for synchronous handling and
    /// that unknown values are ignored (DTR-1, DTR-2), so a server that
    /// does not know `deferred_interactive` still sees the opt-in, and one
    /// that does sees both.
    pub fn param(self) -> Option<&'static str> {
        match self {
            Self::Synchronous => None,
            Self::Deferred => Some("deferred"),
            Self::DeferredInteractive => Some("deferred deferred_interactive"),
        }
    }

    /// Whether a deferral may come back.
    pub fn is_deferred(self) -> bool {
        self != Self::Synchronous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_on_the_wire() {
        assert_eq!(CompletionMode::Synchronous.param(), None);
        assert_eq!(CompletionMode::Deferred.param(), Some("deferred"));
        // DTR-1: a space-separated list without repeats; `deferred` keeps
        // the opt-in for servers that do not know the second value.
        assert_eq!(
            CompletionMode::DeferredInteractive.param(),
            Some("deferred deferred_interactive")
        );
        assert!(!CompletionMode::Synchronous.is_deferred());
        assert!(CompletionMode::DeferredInteractive.is_deferred());
    }
}
