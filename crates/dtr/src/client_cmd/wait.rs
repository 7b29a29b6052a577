//! Waiting for a deferral to finish: polls until the end with the progress
//! display, tolerating short network outages, and leaves the deferral
//! resumable on Ctrl-C.

use super::output::{print_json, print_token, report_error, report_failure, resumable};
use super::progress::{lock, Display, SPINNER_TICK};
use super::state::{finishes_deferral, forget_state};
use super::FAILED;
use dtr_client::{Deferral, Error, PollOutcome, PollTransport, Poller, SystemClock};
use std::io::IsTerminal;
use std::path::Path;
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
    let mut failures = 0;
    let mut ticker = tokio::time::interval(SPINNER_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let outcome = loop {
        let run = poller.run(|p| lock(&display).progress(p));
        tokio::pin!(run);
        let r = loop {
            tokio::select! {
                r = &mut run => break r,
                _ = ticker.tick(), if tty => lock(&display).redraw(),
                _ = tokio::signal::ctrl_c() => {
                    lock(&display).clear();
                    if d.expires_in > 0 {
                        print_json(&resumable(d));
                    }
                    match state {
                        Some(p) => eprintln!("interrupted: the deferral is still pending; resume with `dtr poll --state {0}` or cancel with `dtr cancel --state {0}`", p.display()),
                        None => eprintln!("interrupted: the deferral is still pending; resume with `dtr poll DEFERRAL_CODE` or cancel with `dtr cancel DEFERRAL_CODE`"),
                    }
                    return FAILED;
                }
            }
        };
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
