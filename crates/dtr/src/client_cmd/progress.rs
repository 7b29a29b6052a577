//! The progress display of a waiting `dtr token` / `dtr poll` on stderr: a
//! spinner line on a terminal, one plain line per poll otherwise.

use super::output::{safe, show_interaction};
use dtr_client::{Deferral, ErrorCode, PollProgress};
use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How often the spinner line is redrawn.
pub(super) const SPINNER_TICK: Duration = Duration::from_millis(125);

/// Frames of the spinner.
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

pub(super) fn lock(display: &Mutex<Display>) -> MutexGuard<'_, Display> {
    display.lock().unwrap_or_else(|e| e.into_inner())
}

/// The progress display of a waiting `dtr token` / `dtr poll` on stderr:
/// on a terminal one spinner line redrawn in place (elapsed time, current
/// answer and step, time to the next poll) with lasting lines printed
/// above it; otherwise one plain line per poll.
pub(super) struct Display {
    tty: bool,
    /// When the deferred response was received (the elapsed time counts
    /// from there, also for a resumed deferral).
    since_unix_ms: i64,
    /// When the next poll is due, in Unix milliseconds.
    next_poll_at: Option<i64>,
    /// The latest answer and step, e.g. `authorization_pending step=review`.
    status: String,
    shown_uri: Option<String>,
    frame: usize,
    drawn: bool,
}

impl Display {
    pub(super) fn new(tty: bool, d: &Deferral) -> Self {
        let first_poll = d.received_at_unix_ms.saturating_add(
            i64::try_from(d.interval.max(1).saturating_mul(1000)).unwrap_or(i64::MAX),
        );
        let mut status = d.error.to_string();
        if let Some(desc) = &d.description {
            status.push(' ');
            status.push_str(&safe(desc));
        }
        Self {
            tty,
            since_unix_ms: d.received_at_unix_ms,
            next_poll_at: Some(first_poll),
            status,
            shown_uri: None,
            frame: 0,
            drawn: false,
        }
    }

    /// The first lines shown for a deferred response.
    pub(super) fn announce(&mut self, d: &Deferral) {
        let mut line = format!(
            "deferred: {} (code valid {}s, polling every {}s)",
            d.error, d.expires_in, d.interval
        );
        if let Some(desc) = &d.description {
            line.push(' ');
            line.push_str(&safe(desc));
        }
        self.line(&line);
        if let Some(uri) = &d.interaction_uri {
            self.interaction(uri);
        }
    }

    /// After every poll: the interaction URI whenever it changes, then the
    /// spinner state or one plain line.
    pub(super) fn progress(&mut self, p: &PollProgress) {
        if p.interaction_uri.is_some() && p.interaction_uri != self.shown_uri {
            if let Some(uri) = &p.interaction_uri {
                self.interaction(uri);
            }
        }
        self.shown_uri.clone_from(&p.interaction_uri);
        let status = status_text(p);
        let now = dtr_client::clock::now_unix_ms();
        self.next_poll_at = p
            .next_poll_in
            .map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
        self.status = status;
        if self.tty {
            self.redraw();
            return;
        }
        let mut line = format!("waiting: {}", self.status);
        match p.next_poll_in {
            Some(d) => line.push_str(&format!(" next poll in {}s", secs_ceil(d))),
            None => line.push_str(" (the code expires before the next poll)"),
        }
        eprintln!("{line}");
    }

    /// Redraws the spinner line (terminal only).
    pub(super) fn redraw(&mut self) {
        if !self.tty {
            return;
        }
        let now = dtr_client::clock::now_unix_ms();
        let elapsed = u64::try_from(now.saturating_sub(self.since_unix_ms)).unwrap_or(0) / 1000;
        let next = match self.next_poll_at {
            Some(at) => {
                let ms = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
                if ms == 0 {
                    "polling now".to_owned()
                } else {
                    format!("next poll in {}s", secs_ceil(Duration::from_millis(ms)))
                }
            }
            None => "the code expires before the next poll".to_owned(),
        };
        let spinner = SPINNER[self.frame % SPINNER.len()];
        self.frame = self.frame.wrapping_add(1);
        let mut err = std::io::stderr().lock();
        // \r and "erase line" redraw in place.
        let _ = write!(
            err,
            "\r\x1b[2K{spinner} {:02}:{:02} waiting: {} | {next}",
            elapsed / 60,
            elapsed % 60,
            self.status
        );
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erases the spinner line, if one is drawn.
    pub(super) fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }

    /// A lasting line, above the spinner on a terminal.
    pub(super) fn line(&mut self, text: &str) {
        self.clear();
        eprintln!("{text}");
        self.redraw();
    }

    /// The interaction URI (DTR-11), made prominent.
    fn interaction(&mut self, uri: &str) {
        self.clear();
        if self.tty {
            // Bold on a terminal; the URI alone on its line so it can be
            // selected or clicked.
            eprintln!();
            eprintln!("  \x1b[1m>>> ACTION REQUIRED: open this URL to continue:\x1b[0m");
            eprintln!("  >>>   \x1b[1;4m{}\x1b[0m", safe(uri));
            eprintln!();
        } else {
            show_interaction(uri);
        }
        self.redraw();
    }
}

/// The answer of one poll as the display shows it: the error code by its
/// name, what it means when the name alone does not say, and the step.
fn status_text(p: &PollProgress) -> String {
    let mut status = p.error.to_string();
    match (&p.error, p.error.as_str()) {
        // DTR-19: the poller added 5 s.
        (ErrorCode::SlowDown, _) => {
            status.push_str(&format!(" (interval raised to {}s)", p.interval));
        }
        (ErrorCode::TemporarilyUnavailable, _) => {
            status.push_str(" (the server is busy; polling on)");
        }
        (_, "interaction_pending") => status.push_str(" (the user has been asked)"),
        // The draft's profile rule: a state the client does not know is
        // a pending state; its name is all there is to show.
        (ErrorCode::Other(_), _) => {
            status.push_str(" (a pending state this client does not know; polling on)");
        }
        _ => {}
    }
    if let Some(desc) = &p.error_description {
        status.push(' ');
        status.push_str(&safe(desc));
    }
    status
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs_f64().ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(code: &str, description: Option<&str>) -> PollProgress {
        PollProgress {
            attempt: 1,
            interval: 10,
            error: ErrorCode::parse(code),
            error_description: description.map(str::to_owned),
            interaction_uri: None,
            next_poll_in: None,
        }
    }

    #[test]
    fn states_are_shown_by_name() {
        assert_eq!(
            status_text(&progress("authorization_pending", Some("step=review"))),
            "authorization_pending step=review"
        );
        assert_eq!(
            status_text(&progress("slow_down", None)),
            "slow_down (interval raised to 10s)"
        );
        assert_eq!(
            status_text(&progress("interaction_pending", None)),
            "interaction_pending (the user has been asked)"
        );
        assert_eq!(
            status_text(&progress("x_profile_state", Some("step=\x1b[2J"))),
            "x_profile_state (a pending state this client does not know; polling on) step=?[2J"
        );
    }
}
