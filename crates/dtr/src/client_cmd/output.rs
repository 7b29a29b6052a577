//! What the commands print: results as JSON on stdout, the interaction URI
//! and error reports on stderr (with the exit code of their kind), and
//! server text made safe for a terminal.

use super::{FAILED, NETWORK, OK, USAGE};
use dtr_client::{Deferral, Error, ErrorCode, OAuthError, TokenResponse};

/// What `--no-wait` (and an interrupted wait) prints: the deferred
/// response plus, for a DPoP-bound code, the `dpop_jkt` that `dtr poll`
/// and `dtr cancel` need.
pub(super) fn resumable(d: &Deferral) -> serde_json::Value {
    let mut v = serde_json::to_value(d.to_response()).unwrap_or_default();
    if let (Some(jkt), Some(obj)) = (&d.dpop_jkt, v.as_object_mut()) {
        obj.insert("dpop_jkt".into(), jkt.clone().into());
    }
    v
}

/// Makes the interaction URI stand out (DTR-11): the run cannot continue
/// until someone opens it.
pub(super) fn show_interaction(uri: &str) {
    eprintln!();
    eprintln!("  >>> ACTION REQUIRED: open this URL to continue:");
    eprintln!("  >>>   {}", safe(uri));
    eprintln!();
}

pub(super) fn print_token(t: &TokenResponse) -> u8 {
    print_json(&serde_json::to_value(t).unwrap_or_default());
    OK
}

pub(super) fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Reports a terminal OAuth error (exit 1).
pub(super) fn report_failure(e: &OAuthError) -> u8 {
    let what = match e.error {
        ErrorCode::AccessDenied => "denied",
        ErrorCode::ExpiredToken => "expired",
        _ => "failed",
    };
    eprintln!("{what}: {}", safe(&e.to_string()));
    FAILED
}

/// Reports a library error with the exit code of its kind.
pub(super) fn report_error(e: &Error, issuer: &str) -> u8 {
    match e {
        Error::Http(_) => {
            eprintln!(
                "error: cannot reach the authorization server at {}: {e}",
                safe(issuer)
            );
            NETWORK
        }
        Error::Discovery(_) | Error::InvalidUrl { .. } => {
            eprintln!("error: --issuer {}: {}", safe(issuer), safe(&e.to_string()));
            USAGE
        }
        Error::InvalidParameter(_) => {
            eprintln!("error: {e}");
            USAGE
        }
        Error::DpopKeyRequired { .. } | Error::DpopKeyMismatch { .. } => {
            eprintln!("error: {e}; pass the key it was obtained with as --dpop-key FILE; nothing was sent");
            USAGE
        }
        Error::Key(_) => {
            eprintln!("error: {e}");
            USAGE
        }
        Error::AuthorizationResponse(dtr_client::ResponseError::Denied(e)) => report_failure(e),
        Error::AuthorizationResponse(e) => {
            eprintln!(
                "failed: authorization response refused: {}",
                safe(&e.to_string())
            );
            FAILED
        }
        Error::Receiver(e) => {
            eprintln!("failed: {}", safe(e));
            FAILED
        }
        Error::MissingEndpoint(what) => {
            eprintln!(
                "error: --issuer {}: the metadata has no {what}",
                safe(issuer)
            );
            USAGE
        }
        Error::CancellationUnsupported => {
            eprintln!("error: {e} (DTR-7); nothing was sent");
            FAILED
        }
        _ => {
            eprintln!("error: {}", safe(&e.to_string()));
            FAILED
        }
    }
}

/// Server-supplied text with control characters replaced, so that a
/// response cannot move the cursor or rewrite earlier terminal output.
pub(super) fn safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumable_output_names_the_bound_key() {
        let d = Deferral::from_response(
            dtr_client::DeferredResponse {
                error: ErrorCode::AuthorizationPending,
                deferral_code: "DC".into(),
                expires_in: 60,
                interval: 5,
                interaction_uri: None,
                error_description: None,
            },
            0,
            "https://as",
            "svc",
        );
        assert!(resumable(&d).get("dpop_jkt").is_none());
        let v = resumable(&d.bound_to(Some("JKT".into())));
        assert_eq!(v["dpop_jkt"], "JKT");
        assert_eq!(v["deferral_code"], "DC");
    }

    #[test]
    fn control_characters_are_neutralised() {
        assert_eq!(safe("step=a\x1b[2J\n"), "step=a?[2J?");
    }
}
