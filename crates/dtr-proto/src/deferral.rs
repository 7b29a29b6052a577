//! The deferral state machine (DESIGN.md "Shape of the code") and the pure
//! decision of what a poll answers (draft, "Polling Request Validation";
//! DTR-16..21).
//!
//! ```text
//!   pending ──approve──▶ approved ──redeem (once)──▶ redeemed
//!      │  ╲──deny──────▶ denied
//!      │   ╲─cancel────▶ cancelled ◀──cancel── approved (DTR-34)
//!      ╰────expire─────▶ expired
//! ```
//! `pending` has a sub-state `interaction_required`. Storage performs each
//! arrow as one conditional update; this module only decides which arrow a
//! request asks for.

use crate::error::{ErrorCode, OAuthError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The states of a deferral.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeferralState {
    /// Not decided yet (possibly waiting for interaction).
    Pending,
    /// Decided in favour, token not collected yet.
    Approved,
    /// Decided against.
    Denied,
    /// Cancelled by the client through revocation (DTR-32).
    Cancelled,
    /// Lifetime over before a decision was collected.
    Expired,
    /// The token response was issued, exactly once (DTR-21).
    Redeemed,
}

impl DeferralState {
    /// The state's name in storage and in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Redeemed => "redeemed",
        }
    }

    /// Whether the deferral can still be decided by a reviewer.
    pub fn is_pending(self) -> bool {
        self == Self::Pending
    }
}

impl fmt::Display for DeferralState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeferralState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            "redeemed" => Self::Redeemed,
            other => return Err(format!("unknown deferral state '{other}'")),
        })
    }
}

/// What a poll needs to know about a stored deferral. Times are
/// milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollView {
    /// Stored state.
    pub state: DeferralState,
    /// When the code stops being valid.
    pub expires_at: i64,
    /// With policy `approve_after`: when the deferral approves itself.
    pub auto_approve_at: Option<i64>,
    /// Polling was escalated to `invalid_request` (DTR-19): the code is dead.
    pub polling_blocked: bool,
}

/// The branch a poll takes, before any write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollDecision {
    /// Decided in favour: try the conditional `approved → redeemed` update;
    /// only the poll that wins it issues a token (DTR-21).
    Redeem {
        /// The approval is due to `approve_after` and must be recorded first.
        auto_approve: bool,
    },
    /// Still pending: record the poll (which also detects `slow_down`).
    StillPending,
    /// A terminal answer that needs no write.
    Answer(PollAnswer),
}

/// Terminal answers of a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollAnswer {
    /// Unknown code, another client's code (DTR-17).
    Unknown,
    /// The code was redeemed before (DTR-21); only ever told to the owner.
    AlreadyRedeemed,
    /// Expired while pending or before collection (DTR-16).
    Expired,
    /// Denied or cancelled (DTR-16, DTR-32, DTR-34).
    Denied,
    /// Escalated after too many `slow_down`s (DTR-19).
    PollingBlocked,
}

impl PollAnswer {
    /// The error response of this answer.
    pub fn to_error(self) -> OAuthError {
        match self {
            // DTR-17: one description for unknown and foreign codes.
            Self::Unknown => {
                OAuthError::with_description(ErrorCode::InvalidGrant, "unknown deferral code")
            }
            Self::AlreadyRedeemed => OAuthError::with_description(
                ErrorCode::InvalidGrant,
                "deferral code already redeemed",
            ),
            Self::Expired => {
                OAuthError::with_description(ErrorCode::ExpiredToken, "deferral code expired")
            }
            Self::Denied => OAuthError::with_description(
                ErrorCode::AccessDenied,
                "the deferred request was denied",
            ),
            Self::PollingBlocked => OAuthError::invalid_request(
                "deferral code abandoned after repeated polling faster than interval",
            ),
        }
    }
}

/// Decides a poll of the caller's own deferral (ownership is checked
/// before: a foreign code is [`PollAnswer::Unknown`]).
///
/// Order (draft, "Polling Request Validation"): a dead code first; a code
/// already redeemed is `invalid_grant`; denied or cancelled is
/// `access_denied` whatever the time; an undecided or uncollected code past
/// its lifetime is `expired_token` (the `expires_in` definition: "after
/// this interval, the AS MUST reject polling requests ... with
/// `expired_token`"); an approved code is redeemed.
pub fn decide_poll(v: &PollView, now: i64) -> PollDecision {
    use DeferralState::*;
    if v.polling_blocked {
        return PollDecision::Answer(PollAnswer::PollingBlocked);
    }
    match v.state {
        Redeemed => PollDecision::Answer(PollAnswer::AlreadyRedeemed),
        Denied | Cancelled => PollDecision::Answer(PollAnswer::Denied),
        Expired => PollDecision::Answer(PollAnswer::Expired),
        _ if now >= v.expires_at => PollDecision::Answer(PollAnswer::Expired),
        Approved => PollDecision::Redeem {
            auto_approve: false,
        },
        Pending => match v.auto_approve_at {
            Some(at) if now >= at => PollDecision::Redeem { auto_approve: true },
            _ => PollDecision::StillPending,
        },
    }
}

/// The outcome of recording a poll of a pending deferral.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollRecord {
    /// This poll came sooner than `interval` after the previous poll.
    pub too_fast: bool,
    /// The number of `slow_down` answers so far, this one included.
    pub slow_down_count: u32,
    /// The poll was escalated to `invalid_request` (DTR-19).
    pub blocked: bool,
}

/// Whether a poll at `now` is too fast. The interval runs between two
/// consecutive *polling* requests (draft, "polling interval"), so the
/// first poll after the deferred response is never too fast.
pub fn is_too_fast(last_polled_at: Option<i64>, now: i64, interval_ms: i64) -> bool {
    matches!(last_polled_at, Some(last) if now - last < interval_ms)
}

/// Whether a too-fast poll, after `previous_slow_downs` earlier `slow_down`
/// answers, is escalated: `slow_down_limit` is how many `slow_down`s are
/// answered before `invalid_request` (DTR-19).
pub fn escalates(previous_slow_downs: u32, slow_down_limit: u32) -> bool {
    previous_slow_downs >= slow_down_limit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: DeferralState) -> PollView {
        PollView {
            state,
            expires_at: 1_000,
            auto_approve_at: None,
            polling_blocked: false,
        }
    }

    #[test]
    fn state_names_round_trip() {
        for s in [
            "pending",
            "approved",
            "denied",
            "cancelled",
            "expired",
            "redeemed",
        ] {
            assert_eq!(s.parse::<DeferralState>().map(|s| s.as_str()), Ok(s));
        }
        assert!("bogus".parse::<DeferralState>().is_err());
    }

    #[test]
    fn pending_before_expiry() {
        assert_eq!(
            decide_poll(&view(DeferralState::Pending), 999),
            PollDecision::StillPending
        );
    }

    #[test]
    fn pending_past_expiry_is_expired_token() {
        // DTR-16 step 3
        assert_eq!(
            decide_poll(&view(DeferralState::Pending), 1_000),
            PollDecision::Answer(PollAnswer::Expired)
        );
        assert_eq!(
            PollAnswer::Expired.to_error().error,
            ErrorCode::ExpiredToken
        );
    }

    #[test]
    fn approved_is_redeemed_until_expiry() {
        // DTR-16 step 4
        assert_eq!(
            decide_poll(&view(DeferralState::Approved), 10),
            PollDecision::Redeem {
                auto_approve: false
            }
        );
        assert_eq!(
            decide_poll(&view(DeferralState::Approved), 1_000),
            PollDecision::Answer(PollAnswer::Expired)
        );
    }

    #[test]
    fn denied_and_cancelled_are_access_denied_even_late() {
        // DTR-16, DTR-32: cancelled codes answer access_denied, not invalid_grant.
        for s in [DeferralState::Denied, DeferralState::Cancelled] {
            assert_eq!(
                decide_poll(&view(s), 10),
                PollDecision::Answer(PollAnswer::Denied)
            );
            assert_eq!(
                decide_poll(&view(s), 5_000),
                PollDecision::Answer(PollAnswer::Denied)
            );
        }
        assert_eq!(PollAnswer::Denied.to_error().error, ErrorCode::AccessDenied);
    }

    #[test]
    fn redeemed_is_invalid_grant() {
        // DTR-21
        let d = decide_poll(&view(DeferralState::Redeemed), 10);
        assert_eq!(d, PollDecision::Answer(PollAnswer::AlreadyRedeemed));
        assert_eq!(
            PollAnswer::AlreadyRedeemed.to_error().error,
            ErrorCode::InvalidGrant
        );
    }

    #[test]
    fn unknown_and_foreign_share_one_answer() {
        // DTR-17: the description must not tell them apart; redeemed (own) may differ.
        let e = PollAnswer::Unknown.to_error();
        assert_eq!(e.error, ErrorCode::InvalidGrant);
        assert_ne!(
            e.error_description,
            PollAnswer::AlreadyRedeemed.to_error().error_description
        );
    }

    #[test]
    fn approve_after_resolves_on_time() {
        let mut v = view(DeferralState::Pending);
        v.auto_approve_at = Some(500);
        assert_eq!(decide_poll(&v, 499), PollDecision::StillPending);
        assert_eq!(
            decide_poll(&v, 500),
            PollDecision::Redeem { auto_approve: true }
        );
    }

    #[test]
    fn blocked_code_is_dead() {
        // DTR-19: after escalation the code is dead for the client.
        let mut v = view(DeferralState::Pending);
        v.polling_blocked = true;
        assert_eq!(
            decide_poll(&v, 1),
            PollDecision::Answer(PollAnswer::PollingBlocked)
        );
        assert_eq!(
            PollAnswer::PollingBlocked.to_error().error,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn first_poll_is_never_too_fast() {
        // DTR-19: the interval runs between polls.
        assert!(!is_too_fast(None, 0, 5_000));
        assert!(is_too_fast(Some(0), 4_999, 5_000));
        assert!(!is_too_fast(Some(0), 5_000, 5_000));
    }

    #[test]
    fn escalation_after_limit() {
        // slow_down_limit = 3: three slow_downs, the fourth fast poll escalates.
        assert!(!escalates(0, 3));
        assert!(!escalates(2, 3));
        assert!(escalates(3, 3));
        assert!(escalates(0, 0));
    }
}
