//! Background upkeep: resolves `approve_after` deferrals when due, marks
//! expired ones, and prunes finished records (DTR-37). Every step is a
//! single set-based conditional update, safe to run on several nodes.

use crate::state::AppState;
use dtr_proto::lifecycle::Transition;
use std::time::Duration;
use tokio::sync::watch;

/// How long finished deferrals are kept after their lifetime for audit
/// before they are deleted. Until `expires_at` they must stay (DTR-32).
const RETAIN_AFTER_EXPIRY_MS: i64 = 60 * 60 * 1000;

/// Ticks (of 500 ms) between refreshes of the pending-deferrals gauge:
/// 30 s. The count scans every pending deferral, which with a million of
/// them costs a good part of a core each time; a gauge that is half a
/// minute old is still what an operator needs.
const PENDING_GAUGE_ROUNDS: u64 = 60;

/// Recounts pending deferrals per client into the `dtr_deferrals_pending`
/// gauge. Public so tests can refresh it without running the worker.
pub async fn refresh_pending_gauge(state: &AppState) {
    match state
        .store
        .count_pending_by_client(state.clock.now_ms())
        .await
    {
        Ok(counts) => state.metrics.set_pending(&counts),
        Err(e) => tracing::warn!(error = %e, "counting pending deferrals failed"),
    }
}

/// Runs until `shutdown` turns true.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        rounds += 1;
        let now = state.clock.now_ms();
        if let Err(e) = state.store.maintain(now).await {
            tracing::warn!(error = %e, "database maintenance failed");
        }
        // The lifecycle applies both sweeps with their side effects (log,
        // metrics, callback wake-up); every node runs them, the table's
        // from-states make the second runner a no-op.
        for t in [Transition::AutoApprove, Transition::Expire] {
            if let Err(e) = crate::lifecycle::apply_due(&state, t, now).await {
                tracing::warn!(error = %e, transition = t.as_str(), "sweep failed");
            }
        }
        // The pending gauge costs a scan of the pending rows: every
        // PENDING_GAUGE_ROUNDS ticks, not per scrape.
        if rounds % PENDING_GAUGE_ROUNDS == 1 {
            refresh_pending_gauge(&state).await;
        }
        // Folds histogram samples into buckets so memory stays flat
        // however rarely /metrics is scraped.
        state.metrics.upkeep();
        // Pruning is cheaper done rarely: once a minute.
        if rounds.is_multiple_of(120) {
            let before = now - RETAIN_AFTER_EXPIRY_MS;
            match (
                state.store.prune_deferrals(before).await,
                state.store.prune_tokens(before).await,
            ) {
                (Ok(d), Ok(t)) if d + t > 0 => {
                    tracing::info!(deferrals = d, tokens = t, "pruned finished records")
                }
                (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "pruning failed"),
                _ => {}
            }
            // Expired sessions, authorization requests, codes and refresh
            // tokens (codes are kept a while past expiry, so that a late
            // replay still revokes its family).
            match state.store.prune_accounts(before).await {
                Ok(n) if n > 0 => tracing::info!(
                    count = n,
                    "pruned expired sessions, codes and refresh tokens"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning sessions and codes failed"),
            }
            // Device codes past their life, and wrong user-code counters
            // whose window is long over (RFC 8628).
            match state.store.prune_device_codes(before).await {
                Ok(n) if n > 0 => tracing::info!(count = n, "pruned expired device codes"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning device codes failed"),
            }
            // ARAP tasks and submission keys past their retention.
            match state.store.prune_authzen_tasks(before).await {
                Ok(n) if n > 0 => tracing::info!(count = n, "pruned access request tasks and keys"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning access request tasks failed"),
            }
            // Review console sessions past their end: refused from that
            // moment anyway, deleted so the table does not grow.
            match state.store.prune_console_sessions(now).await {
                Ok(n) if n > 0 => tracing::info!(count = n, "pruned ended console sessions"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning console sessions failed"),
            }
            // Single-use identifiers (DPoP proof and assertion `jti`s) are
            // dead the moment they expire: an expired proof is refused by
            // its `iat` anyway (RFC 9449 section 11.1), so no grace period.
            match state.store.prune_used(now).await {
                Ok(n) if n > 0 => tracing::info!(count = n, "pruned used single-use identifiers"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning single-use identifiers failed"),
            }
        }
    }
}
