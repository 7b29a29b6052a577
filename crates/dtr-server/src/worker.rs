//! Background upkeep: resolves `approve_after` deferrals when due, marks
//! expired ones, and prunes finished records (DTR-37). Every step is a
//! single set-based conditional update, safe to run on several nodes.

use crate::state::AppState;
use std::time::Duration;
use tokio::sync::watch;

/// How long finished deferrals are kept after their lifetime for audit
/// before they are deleted. Until `expires_at` they must stay (DTR-32).
const RETAIN_AFTER_EXPIRY_MS: i64 = 60 * 60 * 1000;

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
        match state.store.approve_due(now).await {
            Ok(n) if n > 0 => {
                tracing::info!(count = n, "deferrals approved by policy (approve_after)")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "approve_after sweep failed"),
        }
        if let Err(e) = state.store.expire_due(now).await {
            tracing::warn!(error = %e, "expiry sweep failed");
        }
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
        }
    }
}
