//! When each pending deferral was last polled, kept in memory by the
//! embedded store.
//!
//! A poll must leave a trace so that the next one can be answered
//! `slow_down` when it comes early (DTR-19, the `interval` of DTR-10).
//! Written to SQLite, that trace is one write transaction per poll on the
//! single writer. In the poll benchmark (200,000 pending deferrals) this
//! appended a page to the WAL per poll, 1.2 GB in ten seconds because the
//! steady readers starved the checkpoints, and it was most of a poll's
//! cost. A SQLite database serves one node, so the time of the last poll
//! can live in this process instead, and a poll becomes one indexed read.
//!
//! What stays in the database: `slow_down` counts and the escalation that
//! denies (rare, and they must survive a restart). What is lost on
//! restart: the last poll of each deferral, so a poll coming early right
//! after a restart is answered as if on time, once.
//!
//! Memory is bounded by the poll rate times the interval, not by the
//! number of pending deferrals: an entry older than its deferral's
//! interval can no longer make any poll early, so [`PollLedger::sweep`]
//! drops it.

use std::collections::HashMap;
use std::sync::Mutex;

/// The last poll per deferral id, for deferrals polled within their
/// interval.
#[derive(Default)]
pub(super) struct PollLedger {
    polls: Mutex<HashMap<String, Entry>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    /// When the last poll came (ms).
    at: i64,
    /// The deferral's interval (ms): how long the entry matters.
    interval_ms: i64,
}

impl PollLedger {
    /// The last poll of `id` recorded here, if still within its interval.
    pub(super) fn last_poll(&self, id: &str) -> Option<i64> {
        self.polls.lock().ok()?.get(id).map(|e| e.at)
    }

    /// The later of the database's last poll and this ledger's.
    pub(super) fn latest(&self, id: &str, in_database: Option<i64>) -> Option<i64> {
        match (in_database, self.last_poll(id)) {
            (Some(d), Some(l)) => Some(d.max(l)),
            (d, l) => d.or(l),
        }
    }

    /// Records a poll at `at` of a deferral whose last poll was read as
    /// `expected`, unless another poll was recorded since (compare and
    /// set, as the database's conditional update would). `write` runs
    /// under the same lock before the entry is set, for the polls that
    /// must also reach the database (a `slow_down` count, an
    /// escalation); its `false` (the row moved on) records nothing.
    ///
    /// A missing entry means nobody polled since `expected` was read, or
    /// that an entry was swept, which happens only once it is older than
    /// its interval: the poll being recorded is then not early whatever
    /// `expected` was, so letting it through changes no answer.
    pub(super) fn record<E>(
        &self,
        id: &str,
        expected: Option<i64>,
        at: i64,
        interval_ms: i64,
        write: impl FnOnce() -> Result<bool, E>,
    ) -> Result<bool, E> {
        let Ok(mut polls) = self.polls.lock() else {
            return Ok(false);
        };
        if let Some(e) = polls.get(id) {
            if expected.is_none_or(|x| x < e.at) {
                return Ok(false);
            }
        }
        if !write()? {
            return Ok(false);
        }
        polls.insert(id.to_owned(), Entry { at, interval_ms });
        Ok(true)
    }

    /// Drops the entries that can no longer make a poll early (the last
    /// poll is at least an interval old); returns how many remain.
    pub(super) fn sweep(&self, now: i64) -> usize {
        let Ok(mut polls) = self.polls.lock() else {
            return 0;
        };
        polls.retain(|_, e| now - e.at < e.interval_ms);
        polls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(l: &PollLedger, id: &str, expected: Option<i64>, at: i64) -> bool {
        l.record(id, expected, at, 1_000, || Ok::<_, ()>(true))
            .unwrap()
    }

    #[test]
    fn records_and_answers_the_latest_poll() {
        let l = PollLedger::default();
        assert_eq!(l.latest("d", None), None);
        assert!(plain(&l, "d", None, 100));
        assert_eq!(l.last_poll("d"), Some(100));
        assert_eq!(l.latest("d", Some(50)), Some(100));
        assert_eq!(l.latest("d", Some(150)), Some(150));
        assert_eq!(l.latest("other", Some(7)), Some(7));
    }

    #[test]
    fn a_stale_read_loses() {
        // Two polls read "never polled"; the first wins, the second must
        // read again (and will then see it is early).
        let l = PollLedger::default();
        assert!(plain(&l, "d", None, 100));
        assert!(!plain(&l, "d", None, 101));
        assert!(!plain(&l, "d", Some(99), 101));
        assert!(plain(&l, "d", Some(100), 101));
        assert_eq!(l.last_poll("d"), Some(101));
    }

    #[test]
    fn a_database_write_that_does_not_apply_records_nothing() {
        let l = PollLedger::default();
        assert!(!l
            .record("d", None, 100, 1_000, || Ok::<_, ()>(false))
            .unwrap());
        assert_eq!(l.last_poll("d"), None);
        assert_eq!(
            l.record("d", None, 100, 1_000, || Err("db down")),
            Err("db down")
        );
        assert_eq!(l.last_poll("d"), None);
    }

    #[test]
    fn the_write_is_not_run_for_a_stale_read() {
        let l = PollLedger::default();
        assert!(plain(&l, "d", None, 100));
        let mut ran = false;
        let ok = l
            .record("d", None, 101, 1_000, || {
                ran = true;
                Ok::<_, ()>(true)
            })
            .unwrap();
        assert!(!ok && !ran);
    }

    #[test]
    fn sweep_keeps_only_entries_within_their_interval() {
        let l = PollLedger::default();
        assert!(l
            .record("slow", None, 0, 5_000, || Ok::<_, ()>(true))
            .unwrap());
        assert!(l
            .record("fast", None, 0, 1_000, || Ok::<_, ()>(true))
            .unwrap());
        assert!(l.record("zero", None, 0, 0, || Ok::<_, ()>(true)).unwrap());
        assert_eq!(l.sweep(999), 2);
        assert_eq!(l.sweep(1_000), 1);
        assert_eq!(l.last_poll("slow"), Some(0));
        assert_eq!(l.sweep(5_000), 0);
    }
}
