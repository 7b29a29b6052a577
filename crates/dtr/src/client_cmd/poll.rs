//! `dtr poll`: resumes polling a deferral code, or the deferral saved in a
//! `--state` file; `--once` prints one answer.

use super::connection::{client_auth, client_for_code, discover};
use super::output::{print_json, print_token, report_error, report_failure, show_interaction};
use super::state::{
    finishes_deferral, forget_first_poll, forget_state, load_first_poll, load_state,
};
use super::wait::wait;
use super::{deferral_code, PollArgs, OK, USAGE};
use dtr_client::{Deferral, ErrorCode, Poller, SystemClock, TokenResult};
use std::path::Path;

/// Runs `dtr poll`.
pub async fn poll(args: PollArgs) -> u8 {
    if let Some(path) = args.state.clone() {
        return poll_state(args, &path).await;
    }
    let Some(code) = deferral_code(args.code, args.deferral_code) else {
        return USAGE;
    };
    let client = match client_for_code(&args.conn, args.dpop_jkt.as_deref()).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.once {
        return match client.poll_once(&code).await {
            Ok(TokenResult::Token(t)) => print_token(&t),
            Ok(TokenResult::Deferred(d)) => {
                print_json(&serde_json::to_value(d.to_response()).unwrap_or_default());
                OK
            }
            Ok(TokenResult::Error(e)) => {
                print_json(&serde_json::to_value(&e).unwrap_or_default());
                if is_pending(&e.error) {
                    if let Some(uri) = &e.interaction_uri {
                        show_interaction(uri);
                    }
                    OK
                } else {
                    report_failure(&e)
                }
            }
            Err(e) => report_error(&e, &args.conn.issuer),
        };
    }
    let now = dtr_client::clock::now_unix_ms();
    let expires_at = args
        .expires_in
        .map(|s| now.saturating_add(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)));
    let poller = Poller::resume(
        &client,
        SystemClock,
        code.clone(),
        args.interval,
        expires_at,
    )
    .with_dpop_jkt(args.dpop_jkt.clone());
    // When resuming we do not know when the code was last polled; one poll
    // at once shows the current state, and the first poll of a poller has
    // no previous poll to keep the interval from.
    poller.waker().notify_one();
    let d = Deferral {
        code,
        expires_in: args.expires_in.unwrap_or(0),
        interval: args.interval,
        interaction_uri: None,
        description: None,
        received_at_unix_ms: now,
        issuer: client.metadata().issuer.clone(),
        client_id: client.auth().client_id().to_owned(),
        error: ErrorCode::AuthorizationPending,
        dpop_jkt: args.dpop_jkt,
    };
    wait(poller, &d, None, false).await
}

/// `dtr poll --state FILE`: resumes a saved deferral with its own schedule
/// and expiry.
async fn poll_state(args: PollArgs, path: &Path) -> u8 {
    if args.code.is_some() {
        eprintln!(
            "error: DEFERRAL_CODE and --state both given; the code comes from the state file"
        );
        return USAGE;
    }
    let d = match load_state(path, &args.conn) {
        Ok(d) => d,
        Err(code) => return code,
    };
    // A deferral at the authorization endpoint whose first poll is owed.
    let first_poll = match load_first_poll(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if args.dpop_jkt.is_some() && args.dpop_jkt != d.dpop_jkt {
        eprintln!(
            "error: --dpop-jkt differs from the dpop_jkt saved in --state {}",
            path.display()
        );
        return USAGE;
    }
    let auth = match client_auth(&args.conn) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = match discover(&args.conn, auth).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    // DTR-13: refuse locally, before the code leaves the process.
    if let Err(e) = client.check_binding(d.dpop_jkt.as_deref()) {
        return report_error(&e, &args.conn.issuer);
    }
    if args.once {
        let answer = if first_poll.is_empty() {
            client.poll_deferral(&d).await
        } else {
            let sent = client
                .poll_once_with_reply(&d.code, &first_poll.pairs())
                .await
                .map(|r| r.result);
            // Never present the verifier twice (see `forget_first_poll`).
            if !matches!(&sent, Err(e) if e.nothing_sent()) {
                if let Err(e) = forget_first_poll(path, &d) {
                    eprintln!(
                        "warning: --state {}: cannot remove the sent code_verifier: {e}; do not resume from this file",
                        path.display()
                    );
                }
            }
            sent
        };
        return match answer {
            Ok(TokenResult::Token(t)) => {
                forget_state(Some(path));
                print_token(&t)
            }
            Ok(TokenResult::Deferred(p)) => {
                print_json(&serde_json::to_value(p.to_response()).unwrap_or_default());
                OK
            }
            Ok(TokenResult::Error(e)) => {
                print_json(&serde_json::to_value(&e).unwrap_or_default());
                if is_pending(&e.error) {
                    if let Some(uri) = &e.interaction_uri {
                        show_interaction(uri);
                    }
                    OK
                } else {
                    if finishes_deferral(&e.error) {
                        forget_state(Some(path));
                    }
                    report_failure(&e)
                }
            }
            Err(e) => report_error(&e, &args.conn.issuer),
        };
    }
    let poller = Poller::new(&client, SystemClock, &d).with_first_poll_params(first_poll);
    wait(poller, &d, Some(path), false).await
}

/// Everything but the terminal codes is a pending state, including the
/// ones this client does not know (the draft's profile rule; see
/// [`dtr_client::TERMINAL_POLL_ERRORS`]).
fn is_pending(code: &ErrorCode) -> bool {
    !dtr_client::is_terminal_poll_error(code)
}
