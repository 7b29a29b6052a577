//! `[registration]`: dynamic client registration (RFC 7591, RFC 7592),
//! closed unless configured otherwise.

use super::{err, ConfigError, SUPPORTED_GRANT_TYPES};
use dtr_proto::scope::Scope;
use serde::Deserialize;

/// `[registration]`: dynamic client registration (RFC 7591, RFC 7592).
/// Closed by default: off unless `enabled`; when on, an initial access
/// token is required unless `open` says otherwise; and a registered client
/// gets only what `scope` and `grant_types` allow, both empty by default.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Whether `POST /register` is offered (default `false`). When it is
    /// not, `POST /register` and `PUT /register/{client_id}` answer 403
    /// `access_denied` and the metadata document does not list
    /// `registration_endpoint`.
    pub enabled: bool,
    /// Lets anyone register without an initial access token (default
    /// `false`). Start-up refuses `enabled = true` with neither this nor
    /// `initial_access_token`, and both at once: registration is never
    /// open by accident.
    pub open: bool,
    /// The initial access token (RFC 7591 section 3, at least 16
    /// characters): registration then requires `Authorization: Bearer
    /// <token>`. Required when `enabled = true` unless `open = true`.
    pub initial_access_token: Option<String>,
    /// The scopes a registered client may have (default: none). A
    /// registration without a `scope` member gets all of them; one asking
    /// for more is `invalid_client_metadata`.
    pub scope: String,
    /// The grant types a registered client may have (default: none but
    /// the polling grant, which is always implied and need not be listed).
    /// A registration naming another one is `invalid_client_metadata`.
    pub grant_types: Vec<String>,
}

impl RegistrationConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        Scope::parse(&self.scope).map_err(|e| err("registration.scope", e))?;
        for (i, g) in self.grant_types.iter().enumerate() {
            if g != dtr_proto::GRANT_TYPE_DEFERRED && !SUPPORTED_GRANT_TYPES.contains(&g.as_str()) {
                return Err(err(
                    &format!("registration.grant_types[{i}]"),
                    format!("unsupported grant type '{g}'"),
                ));
            }
        }
        if self
            .initial_access_token
            .as_ref()
            .is_some_and(|t| t.len() < 16)
        {
            return Err(err(
                "registration.initial_access_token",
                "must be at least 16 characters",
            ));
        }
        if self.open && self.initial_access_token.is_some() {
            return Err(err(
                "registration.open",
                "open = true and an initial_access_token contradict each other; keep one",
            ));
        }
        if self.enabled && !self.open && self.initial_access_token.is_none() {
            return Err(err(
                "registration.initial_access_token",
                "required with registration.enabled = true, unless registration.open = true \
                 allows anyone to register",
            ));
        }
        Ok(())
    }

    /// The scopes registered clients may have (validated at start-up).
    pub fn allowed_scope(&self) -> Scope {
        Scope::parse(&self.scope).unwrap_or_default()
    }

    /// The originating grant types registered clients may have; the
    /// polling grant is implied and not among them.
    pub fn allowed_grant_types(&self) -> impl Iterator<Item = &str> {
        self.grant_types
            .iter()
            .map(String::as_str)
            .filter(|g| *g != dtr_proto::GRANT_TYPE_DEFERRED)
    }
}

impl std::fmt::Debug for RegistrationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationConfig")
            .field("enabled", &self.enabled)
            .field("open", &self.open)
            .field(
                "initial_access_token",
                &self.initial_access_token.as_ref().map(|_| "[redacted]"),
            )
            .field("scope", &self.scope)
            .field("grant_types", &self.grant_types)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{msg, validate};

    #[test]
    fn registration_is_closed_by_default_and_never_open_by_accident() {
        let c = validate("").unwrap();
        assert!(!c.registration.enabled);
        assert!(!c.registration.open);
        assert!(c.registration.allowed_scope().is_empty());
        assert_eq!(c.registration.allowed_grant_types().count(), 0);
        // On, with neither an initial access token nor open = true.
        assert!(msg("[registration]\nenabled = true").contains("registration.initial_access_token"));
        assert!(msg(
            "[registration]\nenabled = true\nopen = true\ninitial_access_token = \"0123456789abcdef\""
        )
        .contains("registration.open"));
        assert!(msg("[registration]\ninitial_access_token = \"short\"")
            .contains("registration.initial_access_token"));
        assert!(msg("[registration]\ngrant_types = [\"password\"]")
            .contains("registration.grant_types[0]"));
        assert!(msg("[registration]\nscope = \"a\\\\b\"").contains("registration.scope"));
        let on = validate(
            "[registration]\nenabled = true\ninitial_access_token = \"0123456789abcdef\"\n\
             scope = \"read\"\ngrant_types = [\"client_credentials\", \"urn:ietf:params:oauth:grant-type:deferred\"]",
        )
        .unwrap();
        assert_eq!(
            on.registration.allowed_grant_types().collect::<Vec<_>>(),
            ["client_credentials"]
        );
        assert!(!format!("{:?}", on.registration).contains("0123456789abcdef"));
    }
}
