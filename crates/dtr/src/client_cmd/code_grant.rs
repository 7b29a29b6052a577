//! `dtr token --grant authorization_code`: the authorization code grant
//! through the browser and a loopback redirect receiver (RFC 8252 section
//! 7.3), then the deferral, wherever the server deferred, polled to the end.

use super::output::{print_json, print_token, report_error, report_failure, resumable};
use super::state::save_state_with;
use super::wait::wait;
use super::{ResponseModeArg, TokenArgs, OK, USAGE};
use dtr_client::{
    print_url, system_browser, AuthorizationCodeRequest, AuthorizationOutcome,
    AuthorizationResponse, Client, CompletionMode, DeferredAt, ResponseMode, SystemClock,
};
use std::time::Duration;

/// Refuses the `dtr token` flags that do not apply to this grant, naming
/// them (exit 2), before anything is sent.
pub(super) fn check_flags(args: &TokenArgs) -> Result<(), u8> {
    let refused = [
        // The first poll of a deferral at the authorization endpoint
        // carries the PKCE verifier, which a printed deferral would have to
        // carry along; --state keeps it in the file instead.
        (
            args.no_wait && args.state.is_none(),
            "--no-wait without --state FILE",
        ),
        // A client_notification_token must never travel in a browser URL.
        (args.notification_token.is_some(), "--notification-token"),
        (args.callback_listen.is_some(), "--callback-listen"),
    ];
    if let Some((_, flag)) = refused.iter().find(|(given, _)| *given) {
        eprintln!("error: {flag} is not available with --grant authorization_code");
        return Err(USAGE);
    }
    Ok(())
}

/// What the progress display says about the redirect.
pub(super) fn describe(response: &AuthorizationResponse) -> String {
    match response {
        AuthorizationResponse::Code(_) => "authorization response: code".to_owned(),
        AuthorizationResponse::Deferred {
            expires_in,
            interval,
            ..
        } => format!(
            "authorization response: deferral_code (deferred at the authorization endpoint; code valid {expires_in}s, polling every {interval}s; the first poll carries the PKCE code_verifier)"
        ),
    }
}

/// Runs the grant and waits for its end.
pub(super) async fn run(
    client: &Client,
    args: TokenArgs,
    authorization_details: Option<serde_json::Value>,
) -> u8 {
    let completion_mode = if args.interactive {
        CompletionMode::DeferredInteractive
    } else if args.deferred {
        CompletionMode::Deferred
    } else {
        CompletionMode::Synchronous
    };
    let req = AuthorizationCodeRequest {
        scope: args.scope.clone(),
        completion_mode,
        authorization_details,
        response_mode: match args.response_mode {
            Some(ResponseModeArg::FormPost) => ResponseMode::FormPost,
            Some(ResponseModeArg::Query) | None => ResponseMode::Query,
        },
        pushed: args.par,
        notification_token: None,
        timeout: Duration::from_secs(args.login_timeout.max(1)),
    };
    let no_browser = args.no_browser;
    let outcome = client
        .authorize(
            &req,
            |url| {
                if no_browser {
                    print_url(url);
                } else if system_browser(url) {
                    // A started opener is no proof that a window appeared
                    // (no display, a text browser elsewhere).
                    eprintln!("opened the browser to sign in and consent; if no window appeared, open:\n\n  {url}\n");
                }
                eprintln!(
                    "waiting up to {}s for the authorization response",
                    req.timeout.as_secs()
                );
            },
            |response| eprintln!("{}", describe(response)),
        )
        .await;
    match outcome {
        Ok(AuthorizationOutcome::Token(t)) => print_token(&t),
        Ok(AuthorizationOutcome::Failed(e)) => report_failure(&e),
        Ok(AuthorizationOutcome::Deferred(d)) => {
            if d.at == DeferredAt::TokenEndpoint {
                eprintln!("the token request was deferred (DTR-8)");
            }
            if let Some(path) = &args.state {
                // The file holds the code and, until the first poll is
                // sent, the verifier it owes (mode 0600, DTR-29).
                if let Err(e) = save_state_with(path, &d.deferral, d.first_poll_params()) {
                    eprintln!("error: --state {}: cannot write: {e}", path.display());
                    return USAGE;
                }
                eprintln!(
                    "saved the deferral to {} (resume with `dtr poll --state`)",
                    path.display()
                );
            }
            if args.no_wait {
                // The verifier stays in the file; the printed deferral is
                // for showing and for `dtr cancel`.
                print_json(&resumable(&d.deferral));
                return OK;
            }
            let poller = d.poller(client, SystemClock);
            wait(poller, &d.deferral, args.state.as_deref(), true).await
        }
        Err(e) => report_error(&e, &args.conn.issuer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtr_client::DeferralCode;

    #[test]
    fn the_two_cases_are_told_apart() {
        let code = AuthorizationResponse::Code(dtr_proto::secret::AuthorizationCode::new("C"));
        assert_eq!(describe(&code), "authorization response: code");
        let deferred = AuthorizationResponse::Deferred {
            deferral_code: DeferralCode::new("SECRET"),
            expires_in: 600,
            interval: 5,
        };
        let text = describe(&deferred);
        assert!(text.starts_with(
            "authorization response: deferral_code (deferred at the authorization endpoint"
        ));
        assert!(!text.contains("SECRET"));
    }
}
