//! `[[users]]`: the resource owners who can sign in, with the roles and
//! groups that make them approvers and their standard claims.

use super::{err, ConfigError};
use crate::approvers::{ROLE_ADMIN, ROLE_REVIEWER};
use serde::Deserialize;
use std::collections::HashSet;

/// One `[[users]]` table.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name.
    pub username: String,
    /// Password (hashed in memory at start-up, never stored in clear).
    pub password: String,
    /// Roles: `reviewer` (decides routed deferrals through the admin API
    /// and the review console), `admin` (decides anything, administers).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Groups, which `[[policy]] approvers = ["group:<name>"]` names.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Display name (the OIDC `name` claim).
    #[serde(default)]
    pub name: Option<String>,
    /// E-mail address (the OIDC `email` claim).
    #[serde(default)]
    pub email: Option<String>,
    /// OIDC Core 1.0 section 5.1 `given_name`.
    #[serde(default)]
    pub given_name: Option<String>,
    /// OIDC Core 1.0 section 5.1 `family_name`.
    #[serde(default)]
    pub family_name: Option<String>,
    /// OIDC Core 1.0 section 5.1 `email_verified`.
    #[serde(default)]
    pub email_verified: Option<bool>,
    /// OIDC Core 1.0 section 5.1 `phone_number` (E.164 recommended).
    #[serde(default)]
    pub phone_number: Option<String>,
    /// OIDC Core 1.0 section 5.1 `phone_number_verified`.
    #[serde(default)]
    pub phone_number_verified: Option<bool>,
    /// OIDC Core 1.0 section 5.1 `locale` (BCP 47, e.g. `en-GB`).
    #[serde(default)]
    pub locale: Option<String>,
    /// CIBA Core 1.0 section 7.1 `user_code`: a secret the user gives the
    /// client, which backchannel requests for them must then carry.
    #[serde(default)]
    pub user_code: Option<String>,
}

impl UserConfig {
    /// The user's standard claims (OIDC Core 1.0 section 5.1) that are
    /// set; `preferred_username` is the username, which is also `sub`.
    pub fn standard_claims(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("preferred_username".into(), self.username.clone().into());
        let strings = [
            ("name", &self.name),
            ("given_name", &self.given_name),
            ("family_name", &self.family_name),
            ("email", &self.email),
            ("phone_number", &self.phone_number),
            ("locale", &self.locale),
        ];
        for (k, v) in strings {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        for (k, v) in [
            ("email_verified", self.email_verified),
            ("phone_number_verified", self.phone_number_verified),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.into());
            }
        }
        m
    }
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("roles", &self.roles)
            .field("groups", &self.groups)
            .field("name", &self.name)
            .field("email", &self.email)
            .field("user_code", &self.user_code.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Whether `s` is a name that fits a space-separated list: non-empty,
/// without whitespace or control characters.
fn is_list_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Checks the `[[users]]` tables: names present and unique, passwords long
/// enough, roles known, groups and claims well-formed.
pub(super) fn validate_users(users: &[UserConfig]) -> Result<(), ConfigError> {
    let mut seen_users = HashSet::new();
    for (i, u) in users.iter().enumerate() {
        if u.username.is_empty() {
            return Err(err(&format!("users[{i}].username"), "must not be empty"));
        }
        if !seen_users.insert(u.username.clone()) {
            return Err(err(
                &format!("users[{i}].username"),
                format!("duplicate user '{}'", u.username),
            ));
        }
        if u.password.len() < 8 {
            return Err(err(
                &format!("users[{i}].password"),
                "must be at least 8 characters",
            ));
        }
        for (j, r) in u.roles.iter().enumerate() {
            if r != ROLE_REVIEWER && r != ROLE_ADMIN {
                return Err(err(
                    &format!("users[{i}].roles[{j}]"),
                    format!("unknown role '{r}': use \"{ROLE_REVIEWER}\" or \"{ROLE_ADMIN}\""),
                ));
            }
        }
        for (j, g) in u.groups.iter().enumerate() {
            if !is_list_name(g) {
                return Err(err(
                    &format!("users[{i}].groups[{j}]"),
                    format!("'{g}': a group name is non-empty, without spaces"),
                ));
            }
        }
        if let Some(n) = &u.name {
            if n.trim().is_empty() || n.len() > 200 || n.chars().any(char::is_control) {
                return Err(err(
                    &format!("users[{i}].name"),
                    "must be non-empty, at most 200 bytes, without control characters",
                ));
            }
        }
        if let Some(e) = &u.email {
            let well_formed = e.len() <= 254
                && is_list_name(e)
                && e.split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
            if !well_formed {
                return Err(err(
                    &format!("users[{i}].email"),
                    format!("'{e}' is not an e-mail address"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserConfig {
        UserConfig {
            username: "alice".into(),
            password: "alice-password".into(),
            roles: vec!["reviewer".into()],
            groups: vec!["fraud".into()],
            name: Some("Alice Example".into()),
            email: Some("alice@example.com".into()),
            ..Default::default()
        }
    }

    fn key_of(u: UserConfig) -> String {
        match validate_users(&[u]) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn roles_groups_and_claims() {
        assert_eq!(key_of(user()), "");
        let bad_role = UserConfig {
            roles: vec!["reviewer".into(), "root".into()],
            ..user()
        };
        assert!(key_of(bad_role).contains("users[0].roles[1]"));
        let bad_group = UserConfig {
            groups: vec!["fraud team".into()],
            ..user()
        };
        assert!(key_of(bad_group).contains("users[0].groups[0]"));
        let bad_mail = UserConfig {
            email: Some("nobody".into()),
            ..user()
        };
        assert!(key_of(bad_mail).contains("users[0].email"));
        let bad_name = UserConfig {
            name: Some(" ".into()),
            ..user()
        };
        assert!(key_of(bad_name).contains("users[0].name"));
    }
}
