//! The deferral lifecycle as a table: every state change a deferral can
//! undergo, from which states, to which state, what it clears and what it
//! does to the client's callback. Pure data and pure functions: the
//! server's `lifecycle` module acts on it, and both stores build their
//! conditional updates from it (and are tested against it), so a rule
//! written here holds whatever the code path and the database.
//!
//! ```text
//!            approve / auto_approve              redeem (DTR-21)
//!   pending ───────────────────────> approved ─────────────────> redeemed
//!      │  deny / block (DTR-19)         │   (with the token's records,
//!      │  lapse (DTR-23)                │    in one transaction)
//!      ├──────────> denied <────────────┤ lapse (DTR-23)
//!      ├──────────> cancelled <─────────┤ cancel (DTR-32, DTR-34)
//!      └──────────> expired <───────────┘ expire (past expires_in)
//! ```
//!
//! Every transition is applied as one conditional update (`... WHERE
//! state IN (from)`), so of two concurrent ones exactly one wins,
//! whatever the number of nodes (DTR-21, DTR-32).

use crate::deferral::DeferralState;
use DeferralState::{Approved, Cancelled, Denied, Expired, Pending, Redeemed};

/// A state change of a deferral.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    /// A reviewer or the user at the interaction page approves, possibly
    /// narrowed (DTR-24).
    Approve,
    /// Policy `approve_after`: the deferral approves itself when due.
    AutoApprove,
    /// A reviewer or the user at the interaction page denies.
    Deny,
    /// Polling escalated after repeated `slow_down` (DTR-19).
    Block,
    /// A precondition lapsed before the token was collected (DTR-23: the
    /// client disabled, the user, consent, session or subject token gone).
    Lapse,
    /// The exactly-once gate of token issuance (DTR-21).
    Redeem,
    /// The client revoked its deferral code (DTR-32, DTR-34).
    Cancel,
    /// The lifetime ended before a decision was collected.
    Expire,
}

/// What a transition clears, beyond the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cleared {
    /// The interaction handle (DTR-11: single use; no interaction once
    /// decided).
    InteractionHandle,
    /// The sealed code and notification token kept for the callback and
    /// the token's hash (DTR-29: dropped once no callback can follow).
    CallbackSecrets,
}

/// What a transition does to the client's callback (DTR-26..28).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallbackEffect {
    /// Nothing.
    None,
    /// A decision was made: queue the callback (at most one per deferral).
    Enqueue,
    /// Nothing is left to notify: suppress a queued callback whose
    /// delivery has not started.
    Suppress,
}

/// Which deferrals a transition may apply to, by time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timing {
    /// Only before `expires_at`.
    Unexpired,
    /// Only at or after `expires_at` (the sweeper).
    Expired,
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The transition.
    pub transition: Transition,
    /// States it applies from.
    pub from: &'static [DeferralState],
    /// The state it leaves.
    pub to: DeferralState,
    /// Which deferrals by time.
    pub timing: Timing,
    /// Columns it clears.
    pub clears: &'static [Cleared],
    /// Whether it records `resolved_at` (a decision or a cancellation).
    pub resolves: bool,
    /// Whether it records `redeemed_at`.
    pub redeems: bool,
    /// Whether it records who decided (`decided_by`).
    pub records_decider: bool,
    /// Its effect on the callback.
    pub callback: CallbackEffect,
}

const HANDLE: &[Cleared] = &[Cleared::InteractionHandle];
const ALL_SECRETS: &[Cleared] = &[Cleared::InteractionHandle, Cleared::CallbackSecrets];

/// The table: one row per transition.
pub const TABLE: &[Rule] = &[
    Rule {
        transition: Transition::Approve,
        from: &[Pending],
        to: Approved,
        timing: Timing::Unexpired,
        clears: HANDLE,
        resolves: true,
        redeems: false,
        records_decider: true,
        callback: CallbackEffect::Enqueue,
    },
    Rule {
        transition: Transition::AutoApprove,
        from: &[Pending],
        to: Approved,
        timing: Timing::Unexpired,
        clears: HANDLE,
        resolves: true,
        redeems: false,
        records_decider: true,
        callback: CallbackEffect::Enqueue,
    },
    Rule {
        transition: Transition::Deny,
        from: &[Pending],
        to: Denied,
        timing: Timing::Unexpired,
        clears: HANDLE,
        resolves: true,
        redeems: false,
        records_decider: true,
        callback: CallbackEffect::Enqueue,
    },
    Rule {
        transition: Transition::Block,
        from: &[Pending],
        to: Denied,
        timing: Timing::Unexpired,
        clears: HANDLE,
        resolves: true,
        redeems: false,
        records_decider: true,
        callback: CallbackEffect::Enqueue,
    },
    Rule {
        transition: Transition::Lapse,
        from: &[Pending, Approved],
        to: Denied,
        timing: Timing::Unexpired,
        clears: HANDLE,
        resolves: true,
        redeems: false,
        records_decider: true,
        callback: CallbackEffect::Enqueue,
    },
    Rule {
        transition: Transition::Redeem,
        from: &[Approved],
        to: Redeemed,
        timing: Timing::Unexpired,
        clears: &[Cleared::CallbackSecrets],
        resolves: false,
        redeems: true,
        records_decider: false,
        callback: CallbackEffect::Suppress,
    },
    Rule {
        transition: Transition::Cancel,
        from: &[Pending, Approved],
        to: Cancelled,
        timing: Timing::Unexpired,
        clears: ALL_SECRETS,
        resolves: true,
        redeems: false,
        records_decider: false,
        callback: CallbackEffect::Suppress,
    },
    Rule {
        transition: Transition::Expire,
        from: &[Pending, Approved],
        to: Expired,
        timing: Timing::Expired,
        clears: ALL_SECRETS,
        resolves: false,
        redeems: false,
        records_decider: false,
        callback: CallbackEffect::Suppress,
    },
];

impl Transition {
    /// Every transition.
    pub const ALL: [Transition; 8] = [
        Self::Approve,
        Self::AutoApprove,
        Self::Deny,
        Self::Block,
        Self::Lapse,
        Self::Redeem,
        Self::Cancel,
        Self::Expire,
    ];

    /// Its row of [`TABLE`] (the rows are in the order of the variants).
    pub fn rule(self) -> &'static Rule {
        &TABLE[self as usize]
    }

    /// Its name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::AutoApprove => "auto_approve",
            Self::Deny => "deny",
            Self::Block => "block",
            Self::Lapse => "lapse",
            Self::Redeem => "redeem",
            Self::Cancel => "cancel",
            Self::Expire => "expire",
        }
    }
}

/// Why a transition does not apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The deferral is in a state the transition does not leave from.
    WrongState(DeferralState),
    /// The deferral's lifetime is over (or, for `expire`, not yet).
    Timing,
}

/// The state `t` leads to from a deferral in `state` expiring at
/// `expires_at`, at time `now`; what the store's conditional update
/// decides, as a pure function (the stores are tested against it).
pub fn apply(
    t: Transition,
    state: DeferralState,
    expires_at: i64,
    now: i64,
) -> Result<DeferralState, Refused> {
    let rule = t.rule();
    if !rule.from.contains(&state) {
        return Err(Refused::WrongState(state));
    }
    let timely = match rule.timing {
        Timing::Unexpired => now < expires_at,
        Timing::Expired => now >= expires_at,
    };
    if !timely {
        return Err(Refused::Timing);
    }
    Ok(rule.to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [DeferralState; 6] = [Pending, Approved, Denied, Cancelled, Expired, Redeemed];

    #[test]
    fn every_transition_has_exactly_one_row() {
        assert_eq!(TABLE.len(), Transition::ALL.len());
        for t in Transition::ALL {
            assert_eq!(
                TABLE.iter().filter(|r| r.transition == t).count(),
                1,
                "{t:?}"
            );
        }
    }

    #[test]
    fn final_states_are_final() {
        // Nothing leaves denied, cancelled, expired or redeemed.
        for r in TABLE {
            for s in r.from {
                assert!(
                    matches!(s, Pending | Approved),
                    "{:?} leaves {s}",
                    r.transition
                );
            }
        }
    }

    #[test]
    fn legal_and_illegal_transitions() {
        let (exp, before, after) = (1_000, 999, 1_000);
        for t in Transition::ALL {
            let rule = t.rule();
            for s in STATES {
                let at = if rule.timing == Timing::Expired {
                    after
                } else {
                    before
                };
                let got = apply(t, s, exp, at);
                if rule.from.contains(&s) {
                    assert_eq!(got, Ok(rule.to), "{t:?} from {s}");
                } else {
                    assert_eq!(got, Err(Refused::WrongState(s)), "{t:?} from {s}");
                }
            }
        }
    }

    #[test]
    fn timing() {
        // Decisions, redemption and cancellation only while alive
        // (DTR-21, DTR-34); expiry only after.
        assert_eq!(
            apply(Transition::Approve, Pending, 10, 10),
            Err(Refused::Timing)
        );
        assert_eq!(
            apply(Transition::Redeem, Approved, 10, 10),
            Err(Refused::Timing)
        );
        assert_eq!(
            apply(Transition::Cancel, Approved, 10, 11),
            Err(Refused::Timing)
        );
        assert_eq!(
            apply(Transition::Expire, Pending, 10, 9),
            Err(Refused::Timing)
        );
        assert_eq!(apply(Transition::Expire, Approved, 10, 10), Ok(Expired));
    }

    #[test]
    fn secrets_go_when_no_callback_can_follow() {
        // DTR-29: whatever ends a deferral for good drops the sealed code
        // and token; decisions keep them for the callback they queue.
        for r in TABLE {
            let ends = matches!(r.to, Redeemed | Cancelled | Expired);
            assert_eq!(
                r.clears.contains(&Cleared::CallbackSecrets),
                ends,
                "{:?}",
                r.transition
            );
            assert_eq!(
                r.callback == CallbackEffect::Suppress,
                ends,
                "{:?}",
                r.transition
            );
            if r.to == Denied || (r.to == Approved && r.from == [Pending]) {
                assert_eq!(r.callback, CallbackEffect::Enqueue, "{:?}", r.transition);
            }
            // A decided deferral has no interaction left (DTR-11).
            if r.resolves {
                assert!(r.clears.contains(&Cleared::InteractionHandle));
            }
        }
    }
}
