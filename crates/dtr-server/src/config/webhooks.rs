//! `[[webhooks]]`: approver webhooks, notified when a deferral lands in
//! the queue of the group or user they watch (see
//! [`crate::approver_hooks`]).

use super::{err, ConfigError};
use crate::approvers::Approver;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The shortest webhook secret accepted.
pub const WEBHOOK_SECRET_MIN_LEN: usize = 32;

/// One `[[webhooks]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Whose queue it watches: `group:<name>` or `user:<name>`, as a
    /// policy rule's `approvers` names it.
    pub approvers: String,
    /// Where notifications are POSTed: https (loopback http in `dev_mode`).
    pub url: String,
    /// Key of the HMAC-SHA-256 signature (`DTR-Signature`), at least 32
    /// characters.
    pub secret: String,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("approvers", &self.approvers)
            .field("url", &self.url)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl WebhookConfig {
    /// A stable identifier of the webhook (its approvers and URL, hashed),
    /// which the outbox rows name: it survives restarts and a rotation of
    /// the secret.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(format!("{}\n{}", self.approvers, self.url).as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Validates every entry; normalises `approvers` to its canonical form
/// (the one deferrals record).
pub(super) fn validate_webhooks(
    hooks: Vec<WebhookConfig>,
    dev_mode: bool,
) -> Result<Vec<WebhookConfig>, ConfigError> {
    let mut out: Vec<WebhookConfig> = Vec::with_capacity(hooks.len());
    for (i, mut h) in hooks.into_iter().enumerate() {
        let key = |k: &str| format!("webhooks[{i}].{k}");
        match Approver::parse(&h.approvers).map_err(|e| err(&key("approvers"), e))? {
            a @ (Approver::Group(_) | Approver::User(_)) => h.approvers = a.to_string(),
            _ => {
                return Err(err(
                    &key("approvers"),
                    "must name a group (\"group:<name>\") or a user (\"user:<name>\")",
                ))
            }
        }
        super::urls::validate_https_or_dev(&h.url, dev_mode).map_err(|e| {
            err(
                &key("url"),
                format!("{e} (https; http only on loopback with dev_mode = true)"),
            )
        })?;
        if h.secret.chars().count() < WEBHOOK_SECRET_MIN_LEN {
            return Err(err(
                &key("secret"),
                format!("must be at least {WEBHOOK_SECRET_MIN_LEN} characters"),
            ));
        }
        if out.iter().any(|o| o.id() == h.id()) {
            return Err(err(
                &key("url"),
                format!(
                    "a webhook for {} at this URL is already configured",
                    h.approvers
                ),
            ));
        }
        out.push(h);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{msg, validate};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn hook(approvers: &str, url: &str, secret: &str) -> String {
        format!(
            "[[webhooks]]\napprovers = \"{approvers}\"\nurl = \"{url}\"\nsecret = \"{secret}\"\n"
        )
    }

    #[test]
    fn valid_webhooks_are_kept_with_canonical_approvers() {
        let c = validate(&format!(
            "{}{}",
            hook("group:fraud", "https://hooks.example/fraud", SECRET),
            hook("user:carol", "https://hooks.example/carol", SECRET)
        ))
        .unwrap();
        assert_eq!(c.webhooks.len(), 2);
        assert_eq!(c.webhooks[0].approvers, "group:fraud");
        assert_ne!(c.webhooks[0].id(), c.webhooks[1].id());
        let dbg = format!("{:?}", c.webhooks[0]);
        assert!(!dbg.contains(SECRET) && dbg.contains("redacted"), "{dbg}");
    }

    #[test]
    fn errors_name_the_key() {
        let m = msg(&hook("subject", "https://h.example/", SECRET));
        assert!(m.contains("webhooks[0].approvers"), "{m}");
        let m = msg(&hook("team:x", "https://h.example/", SECRET));
        assert!(m.contains("webhooks[0].approvers"), "{m}");
        let m = msg(&hook("group:fraud", "http://hooks.example/", SECRET));
        assert!(m.contains("webhooks[0].url"), "{m}");
        let m = msg(&hook("group:fraud", "http://127.0.0.1:9/", SECRET));
        assert!(
            m.contains("webhooks[0].url"),
            "loopback needs dev_mode: {m}"
        );
        assert!(validate(&format!(
            "dev_mode = true\n{}",
            hook("group:fraud", "http://127.0.0.1:9/", SECRET)
        ))
        .is_ok());
        let m = msg(&hook("group:fraud", "https://h.example/", "short"));
        assert!(m.contains("webhooks[0].secret"), "{m}");
        let twice = format!(
            "{}{}",
            hook("group:fraud", "https://h.example/", SECRET),
            hook("group:fraud", "https://h.example/", SECRET)
        );
        assert!(msg(&twice).contains("webhooks[1].url"));
        let m = msg("[[webhooks]]\napprovers = \"group:x\"\nurl = \"https://h.example/\"\nsecret = \"0123456789abcdef0123456789abcdef\"\nextra = 1\n");
        assert!(m.contains("extra"), "{m}");
    }
}
