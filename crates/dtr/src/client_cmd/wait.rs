//! Waiting for a deferral to finish: polls until the end with the progress
//! display, tolerating short network outages, and leaves the deferral
//! resumable on Ctrl-C.

use super::output::{print_json, print_token, report_error, report_failure, resumable};
use super::progress::{lock, Display, SPINNER_TICK};
use super::state::{finishes_deferral, forget_first_poll, forget_state};
use super::FAILED;
use dtr_client::{Deferral, Error, PollOutcome, PollTransport, Poller, SystemClock};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// How many consecutive network errors a waiting `dtr token` / `dtr poll`
/// tolerates before giving up; polls continue on the normal schedule in
/// between, so a short outage does not lose a long-running deferral.
const NETWORK_RETRIES: u32 = 3;

/// Polls until the end, showing progress on stderr; Ctrl-C leaves the
/// deferral pending and prints it on stdout so it can be resumed. A saved
/// state (`--state`) is removed once the deferral is finished.
/// `announce_first` shows the deferred response itself (for `dtr token`).
pub(super) async fn wait<T: PollTransport>(
    mut poller: Poller<T, SystemClock>,
    d: &Deferral,
    state: Option<&Path>,
    announce_first: bool,
) -> u8 {
    let tty =
        std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let display = Mutex::new(Display::new(tty, d));
    if announce_first {
        lock(&display).announce(d);
    }
    // After a deferral at the authorization endpoint the first poll carries
    // the PKCE verifier. Until it has been answered, only this process or
    // the --state file holds it; once sent, the saved copy must go, because
    // a resumed run presenting it again would end the deferral.
    let verifier_owed = poller.first_poll_pending();
    let answered = AtomicBool::new(false);
    let saved_first_poll = AtomicBool::new(verifier_owed && state.is_some());
    let first_poll_sent = || {
        if saved_first_poll.swap(false, Ordering::Relaxed) {
            if let Some(path) = state {
                if let Err(e) = forget_first_poll(path, d) {
                    eprintln!(
                        "warning: --state {}: cannot remove the sent code_verifier: {e}; do not resume from this file",
                        path.display()
                    );
                }
            }
        }
    };
    let mut failures = 0;
    let mut ticker = tokio::time::interval(SPINNER_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let outcome = loop {
        let r = {
            let run = poller.run(|p| {
                answered.store(true, Ordering::Relaxed);
                first_poll_sent();
                lock(&display).progress(p)
            });
            tokio::pin!(run);
            loop {
                tokio::select! {
                    r = &mut run => break r,
                    _ = ticker.tick(), if tty => lock(&display).redraw(),
                    _ = tokio::signal::ctrl_c() => {
                        lock(&display).clear();
                        let owed = verifier_owed && !answered.load(Ordering::Relaxed);
                        if owed && state.is_none() {
                            eprintln!("interrupted before the first poll, which must carry the PKCE code_verifier only this run had: the deferral cannot be resumed; start again (or use --state FILE)");
                            return FAILED;
                        }
                        // A bare code is no use while the first poll is
                        // owed: resuming needs the verifier in the file.
                        if d.expires_in > 0 && !owed {
                            print_json(&resumable(d));
                        }
                        match state {
                            Some(p) => eprintln!("interrupted: the deferral is still pending; resume with `dtr poll --state {0}` or cancel with `dtr cancel --state {0}`", p.display()),
                            None => eprintln!("interrupted: the deferral is still pending; resume with `dtr poll DEFERRAL_CODE` or cancel with `dtr cancel DEFERRAL_CODE`"),
                        }
                        return FAILED;
                    }
                }
            }
        };
        // The poller drops the first poll's parameters once a request may
        // have reached the server, answered or not.
        if !poller.first_poll_pending() {
            first_poll_sent();
        }
        match r {
            Err(Error::Http(e)) if failures < NETWORK_RETRIES => {
                failures += 1;
                lock(&display).line(&format!("network error ({e}); retrying at the next poll"));
            }
            other => break other,
        }
    };
    lock(&display).clear();
    match outcome {
        Ok(PollOutcome::Token(t)) => {
            forget_state(state);
            print_token(&t)
        }
        Ok(PollOutcome::Failed(e)) => {
            if finishes_deferral(&e.error) {
                forget_state(state);
            }
            report_failure(&e)
        }
        Ok(PollOutcome::Expired) => {
            forget_state(state);
            eprintln!("expired: the deferral code expired before the request was decided");
            FAILED
        }
        Err(e) => report_error(&e, &d.issuer),
    }
}
