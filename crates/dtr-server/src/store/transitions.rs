//! The conditional updates of the deferral lifecycle, built from its
//! table ([`dtr_proto::lifecycle::TABLE`]) for both databases: the from
//! states, the timing, the columns set and cleared all come from the
//! table's row, so the stores hold no rule of their own. The callback
//! effect of a row (enqueue or suppress) is applied by each store in the
//! same transaction as the update.

use dtr_proto::lifecycle::{CallbackEffect, Cleared, Rule, Timing, Transition};

/// The SQL dialect, for its placeholders and its index hints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `?1`, `?2`, ...
    Sqlite,
    /// `$1`, `$2`, ...
    Postgres,
}

/// Which rows an update targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// One deferral by id; `handle` adds the condition that it still
    /// holds the presented interaction handle (single use, DTR-11).
    One {
        /// Whether the statement checks the interaction handle.
        handle: bool,
    },
    /// Every deferral that is due at `now` (the worker): for
    /// `auto_approve` those whose approval time came, for `expire` those
    /// whose lifetime ended.
    Due,
}

/// A value bound to a placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The deferral id.
    Id,
    /// The current time (ms).
    Now,
    /// Who decided.
    DecidedBy,
    /// The granted scope (`NULL` keeps the requested scope).
    GrantedScope,
    /// Until when the approval grants (ms), or `NULL`.
    ApprovedUntil,
    /// The authorization details granted (JSON), or `NULL`: as asked.
    GrantedDetails,
    /// The denial reason.
    DenyReason,
    /// SHA-256 of the presented interaction handle.
    Handle,
}

/// An update with the order of its placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The SQL.
    pub sql: String,
    /// What each placeholder (`1..`) is bound to.
    pub slots: Vec<Slot>,
}

/// What a transition reads back of each row it changed: `id,
/// created_at, client_id` (for its log line and resolution-time metric).
const RETURNING: &str = "RETURNING id, created_at, client_id";

/// PostgreSQL: the rows changed with what the callback needs.
const RETURNING_PG: &str =
    "RETURNING id, created_at, client_id, resolved_at, callback_not_before, code_sealed";

/// The columns behind each [`Cleared`].
fn columns(c: Cleared) -> &'static [&'static str] {
    match c {
        Cleared::InteractionHandle => &["interaction_handle", "interaction_handle_sealed"],
        Cleared::CallbackSecrets => &[
            "notification_token_hash",
            "code_sealed",
            "notification_token_sealed",
        ],
    }
}

struct Builder {
    dialect: Dialect,
    slots: Vec<Slot>,
}

impl Builder {
    /// The placeholder of `slot`, reusing its number when already bound.
    fn bind(&mut self, slot: Slot) -> String {
        let n = match self.slots.iter().position(|s| *s == slot) {
            Some(i) => i + 1,
            None => {
                self.slots.push(slot);
                self.slots.len()
            }
        };
        match self.dialect {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }
}

/// The statement of `t` for `target`; it answers one row `(id,
/// created_at, client_id)` per deferral changed. On PostgreSQL it applies
/// the row's callback effect in the same statement (a data-modifying
/// `WITH`, one round trip); SQLite runs [`SQLITE_ENQUEUE`] or
/// [`SQLITE_SUPPRESS`] per row in the same transaction.
pub fn update(t: Transition, dialect: Dialect, target: Target) -> Statement {
    let rule: &Rule = t.rule();
    let mut b = Builder {
        dialect,
        slots: Vec::new(),
    };
    // Placeholders are numbered in order of first use, the WHERE clause
    // first so that the id is always `1` for single-row updates.
    let mut conditions = Vec::new();
    // SQLite: the unary `+` keeps the planner on the index of the due
    // column (`deferrals_auto_approve`) instead of the state index.
    let hint =
        if dialect == Dialect::Sqlite && t == Transition::AutoApprove && target == Target::Due {
            "+"
        } else {
            ""
        };
    match target {
        Target::One { .. } => conditions.push(format!("id = {}", b.bind(Slot::Id))),
        Target::Due if t == Transition::AutoApprove => {
            let now = b.bind(Slot::Now);
            conditions.push(format!(
                "auto_approve_at IS NOT NULL AND auto_approve_at <= {now}"
            ));
        }
        Target::Due => {}
    }
    let states: Vec<String> = rule.from.iter().map(|s| format!("'{s}'")).collect();
    conditions.push(format!("{hint}state IN ({})", states.join(", ")));
    match rule.timing {
        Timing::Unexpired => {
            conditions.push(format!("{hint}expires_at > {}", b.bind(Slot::Now)));
        }
        Timing::Expired => conditions.push(format!("expires_at <= {}", b.bind(Slot::Now))),
    }
    if let Target::One { handle: true } = target {
        conditions.push(format!("interaction_handle = {}", b.bind(Slot::Handle)));
    }

    let mut sets = vec![format!("state = '{}'", rule.to)];
    if rule.resolves {
        sets.push(format!("resolved_at = {}", b.bind(Slot::Now)));
    }
    if rule.redeems {
        sets.push(format!("redeemed_at = {}", b.bind(Slot::Now)));
    }
    if rule.records_decider {
        sets.push(format!("decided_by = {}", b.bind(Slot::DecidedBy)));
    }
    if rule.to == dtr_proto::deferral::DeferralState::Approved && rule.resolves {
        // The scope granted, narrowed (DTR-24) or, by default, as asked.
        sets.push(format!(
            "granted_scope = COALESCE({}, scope)",
            b.bind(Slot::GrantedScope)
        ));
        sets.push(format!("approved_until = {}", b.bind(Slot::ApprovedUntil)));
        sets.push(format!(
            "granted_authorization_details = {}",
            b.bind(Slot::GrantedDetails)
        ));
    }
    if rule.to == dtr_proto::deferral::DeferralState::Denied {
        sets.push(format!("deny_reason = {}", b.bind(Slot::DenyReason)));
    }
    for c in rule.clears {
        for col in columns(*c) {
            sets.push(format!("{col} = NULL"));
        }
    }
    let update = format!(
        "UPDATE deferrals SET {} WHERE {}",
        sets.join(", "),
        conditions.join(" AND ")
    );
    let sql = match dialect {
        Dialect::Sqlite => format!("{update} {RETURNING}"),
        Dialect::Postgres => {
            let effect = match rule.callback {
                CallbackEffect::None => String::new(),
                CallbackEffect::Enqueue => format!(", cb AS ({PG_ENQUEUE})"),
                CallbackEffect::Suppress => format!(
                    ", cb AS (UPDATE callbacks SET state = 'suppressed', finished_at = {} \
                     WHERE deferral_id IN (SELECT id FROM t) AND state = 'pending' AND lease_until IS NULL)",
                    b.bind(Slot::Now)
                ),
            };
            format!("WITH t AS ({update} {RETURNING_PG}){effect} SELECT id, created_at, client_id FROM t")
        }
    };
    Statement {
        sql,
        slots: b.slots,
    }
}

/// PostgreSQL: queues the callback of the decided rows of `t` (DTR-26),
/// at most one per deferral, not before `callback_not_before` (DTR-27).
/// Only deferrals whose client has a notification endpoint keep their
/// code sealed, so `code_sealed` says whether to notify.
pub const PG_ENQUEUE: &str =
    "INSERT INTO callbacks (deferral_id, endpoint, state, created_at, next_attempt_at) \
     SELECT t.id, c.notification_endpoint, 'pending', t.resolved_at, \
     GREATEST(t.resolved_at, COALESCE(t.callback_not_before, 0)) \
     FROM t JOIN clients c ON c.client_id = t.client_id \
     WHERE t.code_sealed IS NOT NULL AND c.notification_endpoint IS NOT NULL \
     ON CONFLICT (deferral_id) DO NOTHING";

/// SQLite: [`PG_ENQUEUE`] for the deferral `?1`, just decided.
pub const SQLITE_ENQUEUE: &str =
    "INSERT OR IGNORE INTO callbacks (deferral_id, endpoint, state, created_at, next_attempt_at) \
     SELECT d.id, c.notification_endpoint, 'pending', d.resolved_at, \
     MAX(d.resolved_at, COALESCE(d.callback_not_before, 0)) \
     FROM deferrals d JOIN clients c ON c.client_id = d.client_id \
     WHERE d.id = ?1 AND d.code_sealed IS NOT NULL AND c.notification_endpoint IS NOT NULL";

/// SQLite: suppresses the queued callback of the deferral `?1` whose
/// delivery has not started (no live lease), at `?2`.
pub const SQLITE_SUPPRESS: &str = "UPDATE callbacks SET state = 'suppressed', finished_at = ?2 \
     WHERE deferral_id = ?1 AND state = 'pending' AND lease_until IS NULL";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_come_from_the_table() {
        let s = update(
            Transition::Redeem,
            Dialect::Postgres,
            Target::One { handle: false },
        );
        assert!(s.sql.starts_with(
            "WITH t AS (UPDATE deferrals SET state = 'redeemed', redeemed_at = $2, notification_token_hash = NULL, \
             code_sealed = NULL, notification_token_sealed = NULL WHERE id = $1 AND state IN ('approved') \
             AND expires_at > $2 RETURNING"
        ), "{}", s.sql);
        // The callback suppressed in the same statement (DTR-28).
        assert!(
            s.sql
                .contains("cb AS (UPDATE callbacks SET state = 'suppressed', finished_at = $2"),
            "{}",
            s.sql
        );
        assert_eq!(s.slots, vec![Slot::Id, Slot::Now]);

        let s = update(
            Transition::Deny,
            Dialect::Sqlite,
            Target::One { handle: true },
        );
        assert!(s.sql.contains("interaction_handle = ?3"), "{}", s.sql);
        assert!(s.sql.contains("decided_by = ?4"), "{}", s.sql);
        assert!(s.sql.contains("deny_reason = ?5"), "{}", s.sql);
        assert_eq!(
            s.slots,
            vec![
                Slot::Id,
                Slot::Now,
                Slot::Handle,
                Slot::DecidedBy,
                Slot::DenyReason
            ]
        );
    }

    #[test]
    fn due_updates() {
        let s = update(Transition::AutoApprove, Dialect::Sqlite, Target::Due);
        assert!(
            s.sql
                .contains("auto_approve_at <= ?1 AND +state IN ('pending') AND +expires_at > ?1"),
            "{}",
            s.sql
        );
        assert!(
            s.sql.contains("granted_scope = COALESCE(?3, scope)")
                || s.sql.contains("granted_scope = COALESCE(?2, scope)"),
            "{}",
            s.sql
        );
        let s = update(Transition::Expire, Dialect::Postgres, Target::Due);
        assert!(
            s.sql
                .contains("WHERE state IN ('pending', 'approved') AND expires_at <= $1"),
            "{}",
            s.sql
        );
        assert!(!s.sql.contains("resolved_at ="), "{}", s.sql);
    }
}
