//! `[[users]]`: the resource owners who can sign in.

use super::{err, ConfigError};
use serde::Deserialize;
use std::collections::HashSet;

/// One `[[users]]` table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name.
    pub username: String,
    /// Password (hashed in memory at start-up, never stored in clear).
    pub password: String,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Checks the `[[users]]` tables: names present and unique, passwords long
/// enough.
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
    }
    Ok(())
}
