//! `[[resource_servers]]` and `[[token_exchange]]`: the tables that say
//! who may use which access tokens beyond the client they were issued to
//! (decided by [`crate::token_policy`]), and their start-up checks.

use super::{err, AuthMethod, ConfigError, StaticClient};
use serde::Deserialize;
use std::collections::HashSet;

/// One `[[resource_servers]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceServerConfig {
    /// The resource server's identifier: the `aud` of tokens for it, and
    /// the only kind of value a token exchange accepts as `audience` or
    /// `resource` (RFC 8693 section 2.1, RFC 8707 section 2).
    pub identifier: String,
    /// The confidential client it introspects with (RFC 7662 section 2.1);
    /// it then sees the tokens whose `aud` includes `identifier`, and may
    /// exchange them.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// One `[[token_exchange]]` table: what one client may exchange.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeRule {
    /// The exchanging client.
    pub client_id: String,
    /// Clients whose tokens it may use as `subject_token` or
    /// `actor_token`, besides its own and those addressed to it; `"*"`
    /// for any client.
    #[serde(default)]
    pub subject_clients: Vec<String>,
    /// Resource server identifiers it may ask for as `audience` or
    /// `resource`; empty means none.
    #[serde(default)]
    pub audiences: Vec<String>,
}

/// Start-up checks of both tables (exit 2 on error, the key named).
pub(super) fn validate(
    resource_servers: &[ResourceServerConfig],
    rules: &[TokenExchangeRule],
    clients: &[StaticClient],
) -> Result<(), ConfigError> {
    let mut identifiers = HashSet::new();
    for (i, rs) in resource_servers.iter().enumerate() {
        let key = |k: &str| format!("resource_servers[{i}].{k}");
        if rs.identifier.is_empty() || rs.identifier.chars().any(|c| c.is_control() || c == ' ') {
            return Err(err(
                &key("identifier"),
                "must be non-empty, without spaces or control characters",
            ));
        }
        if !identifiers.insert(rs.identifier.as_str()) {
            return Err(err(
                &key("identifier"),
                format!("duplicate resource server '{}'", rs.identifier),
            ));
        }
        // A token's `aud` naming a client lets that client introspect and
        // exchange it: an identifier that is another client's id would
        // hand that client every token for this resource server.
        if let Some(c) = clients
            .iter()
            .find(|c| c.client_id == rs.identifier && rs.client_id.as_deref() != Some(&c.client_id))
        {
            return Err(err(
                &key("identifier"),
                format!(
                    "'{}' is the id of client '{}', which is not this resource server's client_id",
                    rs.identifier, c.client_id
                ),
            ));
        }
        match rs.client_id.as_deref() {
            Some("") => return Err(err(&key("client_id"), "must not be empty")),
            // A public client proves nothing: anyone could introspect as
            // the resource server (RFC 7662 section 2.1).
            Some(id)
                if clients
                    .iter()
                    .any(|c| c.client_id == id && c.auth_method == AuthMethod::None) =>
            {
                return Err(err(
                    &key("client_id"),
                    format!("client '{id}' is public; a resource server introspects with a confidential client"),
                ));
            }
            _ => {}
        }
    }
    let mut ruled = HashSet::new();
    for (i, r) in rules.iter().enumerate() {
        let key = |k: &str| format!("token_exchange[{i}].{k}");
        if r.client_id.is_empty() {
            return Err(err(&key("client_id"), "must not be empty"));
        }
        if !ruled.insert(r.client_id.as_str()) {
            return Err(err(
                &key("client_id"),
                format!("a second rule for client '{}'", r.client_id),
            ));
        }
        if let Some(j) = r.subject_clients.iter().position(String::is_empty) {
            return Err(err(
                &format!("token_exchange[{i}].subject_clients[{j}]"),
                "must not be empty",
            ));
        }
        for (j, a) in r.audiences.iter().enumerate() {
            if !identifiers.contains(a.as_str()) {
                return Err(err(
                    &format!("token_exchange[{i}].audiences[{j}]"),
                    format!("'{a}' is not the identifier of a [[resource_servers]] entry"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_policy::fixtures::*;

    #[test]
    fn validation_names_the_key() {
        let rs = servers();
        let ok = rules();
        assert!(validate(&rs, &ok, &[]).is_ok());
        let bad = vec![TokenExchangeRule {
            client_id: "gateway".into(),
            subject_clients: vec![],
            audiences: vec!["https://unknown/".into()],
        }];
        let e = validate(&rs, &bad, &[]).unwrap_err().0;
        assert!(e.contains("token_exchange[0].audiences[0]"), "{e}");
        let dup = vec![rs[0].clone(), rs[0].clone()];
        let e = validate(&dup, &[], &[]).unwrap_err().0;
        assert!(e.contains("resource_servers[1].identifier"), "{e}");
        let clash = vec![ResourceServerConfig {
            identifier: "svc".into(),
            client_id: None,
        }];
        let svc = crate::config::ConfigFile::parse(
            "[[clients]]\nclient_id = \"svc\"\nclient_secret = \"svc-secret\"",
        )
        .unwrap()
        .validate(&crate::config::Overrides::default())
        .unwrap()
        .clients;
        let e = validate(&clash, &[], &svc).unwrap_err().0;
        assert!(e.contains("resource_servers[0].identifier"), "{e}");
        let own = vec![ResourceServerConfig {
            identifier: "svc".into(),
            client_id: Some("svc".into()),
        }];
        assert!(validate(&own, &[], &svc).is_ok());
        let twice = vec![ok[0].clone(), ok[0].clone()];
        let e = validate(&rs, &twice, &[]).unwrap_err().0;
        assert!(e.contains("token_exchange[1].client_id"), "{e}");
    }
}
