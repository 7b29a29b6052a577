//! The storage suite of the device authorization grant (`DeviceStore`),
//! run unchanged against SQLite and PostgreSQL like `storage.rs`: each
//! transition once and refused from the wrong state, one winner among
//! concurrent callers, attempt counters in their window, pruning.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/pg.rs"]
mod pg;

use dtr_proto::device::DeviceState;
use dtr_server::store::{NewDeviceCode, Store};
use std::sync::Arc;

const T0: i64 = 1_800_000_000_000;
const LIFE: i64 = 600_000;

fn new_code(n: u32) -> NewDeviceCode {
    NewDeviceCode {
        device_code_hash: format!("device-{n}"),
        user_code_hash: format!("user-{n}"),
        client_id: "tv".into(),
        scope: "read".into(),
        deferred_hint: n.is_multiple_of(2),
        created_at: T0,
        expires_at: T0 + LIFE,
        interval_ms: 5_000,
    }
}

mod suite {
    use super::*;

    pub async fn insert_and_lookup(s: Arc<dyn Store>) {
        assert!(s.insert_device_code(&new_code(2)).await.unwrap());
        let r = s.device_code_by_hash("device-2").await.unwrap().unwrap();
        assert_eq!(r.user_code_hash, "user-2");
        assert_eq!(r.client_id, "tv");
        assert_eq!(r.scope, "read");
        assert!(r.deferred_hint);
        assert_eq!(r.state, DeviceState::Pending);
        assert_eq!(
            (r.created_at, r.expires_at, r.interval_ms),
            (T0, T0 + LIFE, 5_000)
        );
        assert_eq!(
            (r.username, r.session_id_hash, r.last_polled_at),
            (None, None, None)
        );
        assert_eq!((r.decided_at, r.redeemed_at), (None, None));
        let by_user = s
            .pending_device_code_by_user_code("user-2", T0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_user.device_code_hash, "device-2");
        assert!(s.device_code_by_hash("nope").await.unwrap().is_none());
        // Expired codes are not found by their user code.
        assert!(s
            .pending_device_code_by_user_code("user-2", T0 + LIFE)
            .await
            .unwrap()
            .is_none());
    }

    pub async fn taken_user_code_is_refused_without_error(s: Arc<dyn Store>) {
        assert!(s.insert_device_code(&new_code(1)).await.unwrap());
        let mut again = new_code(9);
        again.user_code_hash = "user-1".into();
        assert!(!s.insert_device_code(&again).await.unwrap());
        assert!(s.device_code_by_hash("device-9").await.unwrap().is_none());
    }

    pub async fn decision_is_single_use(s: Arc<dyn Store>) {
        s.insert_device_code(&new_code(1)).await.unwrap();
        s.insert_device_code(&new_code(3)).await.unwrap();
        assert!(s
            .decide_device_code("user-1", true, "alice", "sess", T0 + 1)
            .await
            .unwrap());
        assert!(!s
            .decide_device_code("user-1", false, "mallory", "s2", T0 + 2)
            .await
            .unwrap());
        let r = s.device_code_by_hash("device-1").await.unwrap().unwrap();
        assert_eq!(r.state, DeviceState::Approved);
        assert_eq!(r.username.as_deref(), Some("alice"));
        assert_eq!(r.session_id_hash.as_deref(), Some("sess"));
        assert_eq!(r.decided_at, Some(T0 + 1));
        assert!(s
            .pending_device_code_by_user_code("user-1", T0 + 3)
            .await
            .unwrap()
            .is_none());
        // Deny, and never after expiry.
        assert!(s
            .decide_device_code("user-3", false, "alice", "sess", T0 + 1)
            .await
            .unwrap());
        assert_eq!(
            s.device_code_by_hash("device-3")
                .await
                .unwrap()
                .unwrap()
                .state,
            DeviceState::Denied
        );
        s.insert_device_code(&new_code(5)).await.unwrap();
        assert!(!s
            .decide_device_code("user-5", true, "alice", "sess", T0 + LIFE)
            .await
            .unwrap());
    }

    pub async fn redeem_only_approved_once(s: Arc<dyn Store>) {
        s.insert_device_code(&new_code(1)).await.unwrap();
        assert!(
            !s.redeem_device_code("device-1", T0 + 1).await.unwrap(),
            "pending is not collectable"
        );
        s.decide_device_code("user-1", true, "alice", "sess", T0 + 1)
            .await
            .unwrap();
        assert!(
            !s.redeem_device_code("device-1", T0 + LIFE).await.unwrap(),
            "not after expiry"
        );
        assert!(s.redeem_device_code("device-1", T0 + 2).await.unwrap());
        assert!(!s.redeem_device_code("device-1", T0 + 3).await.unwrap());
        let r = s.device_code_by_hash("device-1").await.unwrap().unwrap();
        assert_eq!(
            (r.state, r.redeemed_at),
            (DeviceState::Redeemed, Some(T0 + 2))
        );
    }

    pub async fn redeem_has_one_winner_under_concurrency(s: Arc<dyn Store>) {
        s.insert_device_code(&new_code(1)).await.unwrap();
        s.decide_device_code("user-1", true, "alice", "sess", T0 + 1)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.redeem_device_code("device-1", T0 + 2).await.unwrap() })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1);
    }

    pub async fn record_poll_is_a_compare_and_set(s: Arc<dyn Store>) {
        s.insert_device_code(&new_code(1)).await.unwrap();
        assert!(s
            .record_device_poll("device-1", None, 5_000, T0 + 1)
            .await
            .unwrap());
        assert!(
            !s.record_device_poll("device-1", None, 5_000, T0 + 2)
                .await
                .unwrap(),
            "stale expectation"
        );
        assert!(s
            .record_device_poll("device-1", Some(T0 + 1), 10_000, T0 + 3)
            .await
            .unwrap());
        let r = s.device_code_by_hash("device-1").await.unwrap().unwrap();
        assert_eq!((r.last_polled_at, r.interval_ms), (Some(T0 + 3), 10_000));
        // Only while pending.
        s.decide_device_code("user-1", true, "alice", "sess", T0 + 4)
            .await
            .unwrap();
        assert!(!s
            .record_device_poll("device-1", Some(T0 + 3), 10_000, T0 + 5)
            .await
            .unwrap());
    }

    pub async fn failures_count_within_their_window(s: Arc<dyn Store>) {
        let w = 900_000;
        assert_eq!(s.user_code_failures("session:a", w, T0).await.unwrap(), 0);
        assert_eq!(
            s.count_user_code_failure("session:a", w, T0).await.unwrap(),
            1
        );
        assert_eq!(
            s.count_user_code_failure("session:a", w, T0 + 1)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            s.count_user_code_failure("session:b", w, T0 + 1)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            s.user_code_failures("session:a", w, T0 + 2).await.unwrap(),
            2
        );
        // The window is over: counting starts again.
        assert_eq!(
            s.user_code_failures("session:a", w, T0 + w).await.unwrap(),
            0
        );
        assert_eq!(
            s.count_user_code_failure("session:a", w, T0 + w)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            s.user_code_failures("session:a", w, T0 + w + 1)
                .await
                .unwrap(),
            1
        );
    }

    pub async fn concurrent_failures_are_all_counted(s: Arc<dyn Store>) {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.count_user_code_failure("user:alice", 900_000, T0 + i)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=20).collect::<Vec<u32>>());
    }

    pub async fn prune_removes_expired_codes_and_old_counters(s: Arc<dyn Store>) {
        s.insert_device_code(&new_code(1)).await.unwrap();
        let mut later = new_code(3);
        later.expires_at = T0 + 2 * LIFE;
        s.insert_device_code(&later).await.unwrap();
        s.count_user_code_failure("session:old", 1_000, T0)
            .await
            .unwrap();
        s.count_user_code_failure("session:new", 1_000, T0 + LIFE + 5)
            .await
            .unwrap();
        assert_eq!(s.prune_device_codes(T0 + LIFE + 1).await.unwrap(), 1);
        assert!(s.device_code_by_hash("device-1").await.unwrap().is_none());
        assert!(s.device_code_by_hash("device-3").await.unwrap().is_some());
        assert_eq!(
            s.user_code_failures("session:old", i64::MAX / 4, T0 + LIFE + 10)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            s.user_code_failures("session:new", 1_000, T0 + LIFE + 10)
                .await
                .unwrap(),
            1
        );
        // The user code of a pruned device code is free again.
        assert!(s.insert_device_code(&new_code(1)).await.unwrap());
    }
}

macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let s: std::sync::Arc<dyn dtr_server::store::Store> = std::sync::Arc::new(
                        dtr_server::store::sqlite::SqliteStore::in_memory().unwrap(),
                    );
                    super::suite::$name(s).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[cfg_attr(dtr_no_postgres, ignore = "needs PostgreSQL: set DTR_TEST_POSTGRES_URL")]
                async fn $name() {
                    let Some(db) = super::pg::TestDb::create(concat!("postgres::", stringify!($name))).await
                    else {
                        return;
                    };
                    let s: std::sync::Arc<dyn dtr_server::store::Store> = std::sync::Arc::new(
                        dtr_server::store::postgres::PostgresStore::open(&db.url, 16).await.unwrap(),
                    );
                    super::suite::$name(s).await;
                    drop(db);
                }
            )*
        }
    };
}

backends!(
    insert_and_lookup,
    taken_user_code_is_refused_without_error,
    decision_is_single_use,
    redeem_only_approved_once,
    redeem_has_one_winner_under_concurrency,
    record_poll_is_a_compare_and_set,
    failures_count_within_their_window,
    concurrent_failures_are_all_counted,
    prune_removes_expired_codes_and_old_counters,
);
